import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import type { BerthEvent } from '../domain/release.js';

export type EventListener = (event: BerthEvent) => void;

function defaultListenerError(err: unknown): void {
  process.emitWarning(`berth store event subscriber threw: ${(err as Error | null)?.stack ?? String(err)}`);
}

/**
 * What the repositories share: the connection, the clock, and the write path.
 *
 * `write(fn)` runs `fn` in ONE `BEGIN IMMEDIATE` transaction (so concurrent
 * writers, even in other processes, serialise on the write lock before they read
 * what they are about to change). `fn` must be synchronous: better-sqlite3 refuses
 * a function that returns a promise, so a transaction can never span an await.
 * A `write` inside another `write` joins the outer transaction (no savepoint): if
 * it throws, the whole outer transaction rolls back unless the caller catches.
 *
 * Events appended inside a write are delivered to subscribers only after the
 * outermost transaction commits, and dropped if it rolls back.
 */
export class StoreContext {
  private depth = 0;
  private pending: BerthEvent[] = [];
  private readonly bus = new EventEmitter();
  private readonly runInTx: Database.Transaction<(fn: () => unknown) => unknown>;

  constructor(
    readonly db: Database.Database,
    private readonly clock: () => Date,
    private readonly onListenerError: (err: unknown) => void = defaultListenerError,
  ) {
    this.runInTx = db.transaction((fn: () => unknown) => fn());
    // Every SSE client subscribes; there is no leak to warn about.
    this.bus.setMaxListeners(0);
  }

  now(): string {
    return this.clock().toISOString();
  }

  write<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.depth++;
    let result: T;
    try {
      result = this.runInTx.immediate(fn) as T;
    } catch (err) {
      this.pending = [];
      throw err;
    } finally {
      this.depth--;
    }
    const committed = this.pending;
    this.pending = [];
    for (const ev of committed) this.bus.emit('event', ev);
    return result;
  }

  /**
   * `write`, for what the controller observed and would observe again after a power loss
   * (status, rollout records, step events, host status): committed without waiting for
   * the disk (`synchronous=NORMAL`; in WAL mode the commit is atomic and survives a crash
   * of berth, and the next `write`'s fsync makes it durable too). Inside another
   * transaction it joins that one, and that one's durability. docs/design.md ("The store").
   */
  writeObserved<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.db.pragma('synchronous = NORMAL');
    try {
      return this.write(fn);
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }

  /** Queue an event for delivery once the current transaction commits. */
  afterCommit(event: BerthEvent): void {
    this.pending.push(event);
  }

  subscribe(listener: EventListener): () => void {
    // A throwing subscriber must not make a committed write look failed to its caller.
    const safe = (ev: BerthEvent): void => {
      try {
        listener(ev);
      } catch (err) {
        this.onListenerError(err);
      }
    };
    this.bus.on('event', safe);
    return () => {
      this.bus.off('event', safe);
    };
  }

  listenerCount(): number {
    return this.bus.listenerCount('event');
  }

  removeAllListeners(): void {
    this.bus.removeAllListeners();
  }
}
