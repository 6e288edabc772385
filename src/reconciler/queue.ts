/**
 * A keyed work queue in the style of client-go's workqueue: keys (app names) only,
 * de-duplicated, never processed by two workers at once, a bounded number of keys in
 * parallel, delayed re-adds, and per-key exponential backoff on errors.
 */
/** A failing pass retries after 1 s, 2 s, 4 s ... (client-go's per-item backoff), at most once a minute. */
const DEFAULT_BACKOFF_BASE_MS = 1_000;
const DEFAULT_BACKOFF_MAX_MS = 60_000;

export interface WorkQueueOptions {
  concurrency: number;
  /**
   * Workers beyond `concurrency` that only keys added at the front may take: an operator's
   * request starts at once even while every other worker is busy (a resync's passes waiting
   * on their hosts). Default 0.
   */
  frontSlots?: number;
  /**
   * For this long after a front key's pass starts, and while it runs, no routine key's pass
   * starts: the operator's pass shares the event loop only with passes already running, not
   * with a resync's thousands (each of its awaits waited behind them: a deploy's first
   * action took 80-130 ms during a resync of 10,000 apps, 15-30 ms otherwise). Bounded,
   * since a pass may wait minutes on a host. Default 0.
   */
  frontHeadStartMs?: number;
  /** Called whenever the number of waiting keys changes. */
  onDepth?: (depth: number) => void;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** A worker returns when to look at the key again (null: not until something enqueues it). */
export type Worker = (key: string) => Promise<number | null>;

export class WorkQueue {
  private readonly waiting: string[] = [];
  private readonly queued = new Set<string>();
  /** Waiting keys added at the front (they may take a front slot). */
  private readonly urgent = new Set<string>();
  private readonly active = new Set<string>();
  /** Keys added while being processed: run again once the current pass ends. */
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private readonly idleWaiters: Array<() => void> = [];
  /** Front keys whose pass is running; while the newest one's head start lasts, its timer is set. */
  private readonly activeFront = new Set<string>();
  private headStartTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly worker: Worker,
    private readonly onError: (key: string, err: unknown) => void,
    private readonly opts: WorkQueueOptions,
  ) {}

  /** `front`: jump the line (an operator's request should not wait behind a full resync). */
  add(key: string, opts: { front?: boolean } = {}): void {
    if (this.stopped) return;
    this.clearTimer(key);
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) {
      if (!opts.front) return;
      this.waiting.splice(this.waiting.indexOf(key), 1);
    }
    this.queued.add(key);
    if (opts.front) {
      this.urgent.add(key);
      this.waiting.unshift(key);
    } else this.waiting.push(key);
    this.opts.onDepth?.(this.waiting.length);
    this.pump();
  }

  /** Adds the key after `ms`, unless an earlier add is already due. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    if (this.timers.has(key) || this.queued.has(key)) return;
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.timers.set(key, t);
  }

  /** Whether the key's pass is running now. */
  isActive(key: string): boolean {
    return this.active.has(key);
  }

  get depth(): number {
    return this.waiting.length;
  }

  /** Stops accepting work and resolves once the passes in flight have finished. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    if (this.headStartTimer) clearTimeout(this.headStartTimer);
    this.headStartTimer = null;
    this.waiting.length = 0;
    this.queued.clear();
    this.urgent.clear();
    this.opts.onDepth?.(0);
    await this.idle();
  }

  /** Resolves when no pass is running (used by shutdown and by tests). */
  idle(): Promise<void> {
    if (this.active.size === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private clearTimer(key: string): void {
    const t = this.timers.get(key);
    if (t) {
      clearTimeout(t);
      this.timers.delete(key);
    }
  }

  private pump(): void {
    while (this.waiting.length > 0) {
      // Keys added at the front are at the head: while one is there, the front slots are open too.
      const front = this.urgent.has(this.waiting[0]!);
      const workers = this.opts.concurrency + (front ? (this.opts.frontSlots ?? 0) : 0);
      if (this.active.size >= workers) break;
      if (!front && this.activeFront.size > 0 && this.headStartTimer) break;
      // A key whose pass is running waits in `dirty`, so the head is always free to run.
      const key = this.waiting.shift()!;
      this.queued.delete(key);
      this.urgent.delete(key);
      this.opts.onDepth?.(this.waiting.length);
      this.active.add(key);
      if (front) this.giveHeadStart(key);
      // On a macrotask of its own: passes that never wait on a host (a resync's snapshot is
      // already read) would otherwise run back to back as microtasks, and the API, the
      // timers and every socket would wait for the whole resync.
      setImmediate(() => void this.run(key));
    }
    if (this.active.size === 0 && this.waiting.length === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private giveHeadStart(key: string): void {
    const ms = this.opts.frontHeadStartMs ?? 0;
    if (ms <= 0) return;
    this.activeFront.add(key);
    if (this.headStartTimer) clearTimeout(this.headStartTimer);
    this.headStartTimer = setTimeout(() => {
      this.headStartTimer = null;
      this.pump();
    }, ms);
    this.headStartTimer.unref();
  }

  private async run(key: string): Promise<void> {
    let again: number | null = null;
    try {
      again = await this.worker(key);
      this.failures.delete(key);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      const base = this.opts.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS;
      again = Math.min(base * 2 ** (n - 1), this.opts.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS);
      this.onError(key, err);
    } finally {
      this.active.delete(key);
      this.activeFront.delete(key);
    }
    if (this.dirty.delete(key)) this.add(key);
    else if (again !== null) this.addAfter(key, again);
    this.pump();
  }
}
