import type { AppPassInputs } from '../store/index.js';

/** A page is read when a pass first needs it, then used within a page's worth of passes; older rows are not used. */
const MAX_AGE_MS = 5_000;
/**
 * Rows a pass kept serve the app's passes this long at most, then one reads them again: a
 * write to the database by anything but berth (by hand, a restored backup) sends no event,
 * and shows within this.
 */
const KEPT_MAX_AGE_MS = 10 * 60_000;

/** The store's bulk read of pass inputs (PassInputsRepo.page): the apps from `from` in name order, a page of them. */
export type ReadPage = (from: string) => Promise<Array<{ name: string; rows: () => AppPassInputs }>>;

/**
 * The store's half of a resync (resync-snapshot.ts is the hosts' half): each app's pass
 * inputs read a page of apps at a time rather than app by app. On PostgreSQL every read is
 * a round trip that holds the event loop; a no-op pass made six, and a resync of 10,000
 * apps spent ~20 s in them (docs/benchmarks.md). With this, a page of passes costs one,
 * and the loop runs on while it is read (3-30 ms): the passes that need it wait for it.
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
 * - rows older than MAX_AGE_MS are not used, nor a page still being read when the next
 *   resync starts (an app's pass may have run between its read and the new resync).
 *
 * And between resyncs, an informer's cache: a pass that wrote none of its app's rows keeps
 * the rows it used (`keep`), and they serve the app's next passes, without a read or a
 * parse, until an event of the app drops them (the same rule as above) or KEPT_MAX_AGE_MS
 * passes. A converged app's pass writes nothing, so a resync of converged apps reads no rows
 * at all (at 10,000 apps, 130 of the 460 MB a resync allocated were its rows and their parsing).
 * Kept rows are frozen: a pass that changed its inputs would otherwise change its next pass's.
 */
export class ResyncRows {
  /** Apps whose first pass since the resync has not started. */
  private unused = new Set<string>();
  private readonly loaded = new Map<string, { readAt: number; rows: () => AppPassInputs }>();
  /**
   * The page being read, and the last name it brought once read (null: none, so it covers
   * every app from `from` on). Passes start in name order: one of an app from `from` on
   * waits for it rather than read a page of its own.
   */
  private reading: { from: string; done: Promise<string | null> } | null = null;
  /** Moves at every take and clear: a page read for an earlier resync is not used. */
  private generation = 0;
  /** Rows a pass used and wrote nothing of (keep), by app. */
  private readonly kept = new Map<string, { keptAt: number; rows: AppPassInputs }>();
  /** Apps whose pass took its rows (use) with no event of the app since: only such a pass may keep them. */
  private readonly passing = new Set<string>();
  /** When rows were first kept: passes that keep them again do not make them younger. */
  private readonly firstKept = new WeakMap<AppPassInputs, number>();

  constructor(
    private readonly readPage: ReadPage,
    private readonly now: () => number,
  ) {}

  /** A resync starts: `apps` in the order their passes were queued; `skip`: an app whose pass is in flight. */
  take(apps: readonly string[], skip: (app: string) => boolean): void {
    this.forget();
    this.unused = new Set(apps.filter((app) => !skip(app)));
  }

  /**
   * The app's inputs for its pass: those its last pass kept, or for its first pass since the
   * resync, read with the next page of apps when not read yet; null: the pass reads its own
   * (also when the page's read failed: the pass's own read reports what is wrong). Whatever
   * the pass reads from here on, its own read included, it may keep.
   */
  async use(app: string): Promise<AppPassInputs | null> {
    this.passing.add(app);
    const kept = this.kept.get(app);
    if (kept) {
      this.kept.delete(app);
      this.unused.delete(app);
      if (this.now() - kept.keptAt <= KEPT_MAX_AGE_MS) return kept.rows;
    }
    try {
      await this.pageOf(app);
    } catch {
      this.dropApp(app);
      return null;
    }
    this.unused.delete(app);
    const entry = this.loaded.get(app);
    this.loaded.delete(app);
    // No entry: the app was dropped (an event of it, an operator's request) before or while its
    // page was read, or deleted since the resync (its pass finds that out itself).
    if (!entry || this.now() - entry.readAt > MAX_AGE_MS) return null;
    return entry.rows();
  }

  /**
   * The app's pass used `rows` and wrote none of them: they serve its next pass too, unless
   * an event of the app came since the pass took them. Kept as they were first kept (the
   * time, and frozen).
   */
  keep(app: string, rows: AppPassInputs): void {
    if (!this.passing.delete(app)) return;
    const keptAt = this.firstKept.get(rows) ?? this.now();
    this.firstKept.set(rows, keptAt);
    this.kept.set(app, { keptAt, rows: deepFreeze(rows) });
  }

  /** Something wrote the app's rows (an event of it), or an operator asked for it: its pass reads its own. */
  dropApp(app: string): void {
    this.unused.delete(app);
    this.loaded.delete(app);
    this.kept.delete(app);
    this.passing.delete(app);
  }

  /** Forgets everything (the controller stands by). */
  clear(): void {
    this.forget();
    this.unused.clear();
    this.kept.clear();
    this.passing.clear();
  }

  /** Apps whose rows a pass kept (tests). */
  get keptApps(): number {
    return this.kept.size;
  }

  /** Apps whose rows are read and not yet used (tests). */
  get heldApps(): number {
    return this.loaded.size;
  }

  private forget(): void {
    this.generation += 1;
    this.reading = null;
    this.loaded.clear();
  }

  /** Returns once the app's rows are loaded, or a page that would hold them was read without them. */
  private async pageOf(app: string): Promise<void> {
    while (this.unused.has(app) && !this.loaded.has(app)) {
      const reading = this.reading;
      if (!reading || app < reading.from) {
        await this.read(app);
        return;
      }
      const last = await reading.done;
      if (last === null || app <= last) return;
    }
  }

  private read(from: string): Promise<string | null> {
    const generation = this.generation;
    const readAt = this.now();
    const done: Promise<string | null> = this.readPage(from)
      .then((page) => {
        if (generation === this.generation) {
          for (const { name, rows } of page) if (this.unused.has(name) && !this.loaded.has(name)) this.loaded.set(name, { readAt, rows });
        }
        return page.at(-1)?.name ?? null;
      })
      .finally(() => {
        if (this.reading?.done === done) this.reading = null;
      });
    this.reading = { from, done };
    return done;
  }
}

/** Freezes `value` and everything it holds (once: a frozen object is taken as frozen through). */
function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  Object.freeze(value);
  for (const v of Object.values(value)) deepFreeze(v);
  return value;
}
