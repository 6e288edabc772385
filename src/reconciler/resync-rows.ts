import type { AppPassInputs } from '../store/index.js';

/**
 * Apps whose rows one read brings. A resync's passes start in name order (the queue runs the
 * resync's apps in the order it added them), so one page serves the next ~100 passes.
 * Bounded because a page is one answer held in memory: some specs are hundreds of KB.
 */
const PAGE_APPS = 128;

/** A page is read when a pass first needs it, then used within a page's worth of passes; older rows are not used. */
const MAX_AGE_MS = 5_000;

/** The store's bulk read of pass inputs (PassInputsRepo.page). */
export type ReadPage = (from: string, limit: number) => Array<{ name: string; rows: () => AppPassInputs }>;

/**
 * The store's half of a resync (resync-snapshot.ts is the hosts' half): each app's pass
 * inputs read a page of apps at a time rather than app by app. On PostgreSQL every read is
 * a round trip that holds the event loop; a no-op pass made six, and a resync of 10,000
 * apps spent ~20 s in them (docs/benchmarks.md). With this, a page of passes costs one.
 *
 * Why a pass may use rows read before it began, and when it may not:
 * - an app's status, rollout record and completed marks are written only by its own passes,
 *   one at a time (the work queue), so an app whose pass is in flight when the resync starts
 *   gets no rows, and each app's rows serve only its first pass after the resync started;
 * - everything else that writes an app's rows (an API request, here or on another daemon,
 *   a host's change) appends an event for the app, and the controller drops the app's rows
 *   on it: that pass reads its own. An event another daemon wrote arrives by the follower
 *   (store/follow.ts) up to ~200 ms late; a pass that used rows read before such a write
 *   acts as a pass that started before it would have, which the level-triggered loop
 *   already allows (the write's event enqueues the app again);
 * - rows older than MAX_AGE_MS are not used.
 */
export class ResyncRows {
  /** Apps whose first pass since the resync has not started. */
  private unused = new Set<string>();
  private readonly loaded = new Map<string, { readAt: number; rows: () => AppPassInputs }>();

  constructor(
    private readonly readPage: ReadPage,
    private readonly now: () => number,
  ) {}

  /** A resync starts: `apps` in the order their passes were queued; `skip`: an app whose pass is in flight. */
  take(apps: readonly string[], skip: (app: string) => boolean): void {
    this.loaded.clear();
    this.unused = new Set(apps.filter((app) => !skip(app)));
  }

  /** The app's inputs for its first pass since the resync, read with the next page of apps when not read yet; null: the pass reads its own. */
  use(app: string): AppPassInputs | null {
    if (!this.unused.has(app)) return null;
    if (!this.loaded.has(app)) this.load(app);
    this.unused.delete(app);
    const entry = this.loaded.get(app);
    this.loaded.delete(app);
    // (No entry: the app was deleted since the resync; its pass finds that out itself.)
    if (!entry || this.now() - entry.readAt > MAX_AGE_MS) return null;
    return entry.rows();
  }

  /** Something wrote the app's rows (an event of it), or an operator asked for it: its pass reads its own. */
  dropApp(app: string): void {
    this.unused.delete(app);
    this.loaded.delete(app);
  }

  /** Forgets everything (the controller stands by). */
  clear(): void {
    this.unused.clear();
    this.loaded.clear();
  }

  /** Apps whose rows are read and not yet used (tests). */
  get heldApps(): number {
    return this.loaded.size;
  }

  private load(from: string): void {
    const readAt = this.now();
    for (const { name, rows } of this.readPage(from, PAGE_APPS)) {
      if (this.unused.has(name) && !this.loaded.has(name)) this.loaded.set(name, { readAt, rows });
    }
  }
}
