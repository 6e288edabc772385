import { EventEmitter } from 'node:events';
import { activeFence } from '../cluster/fence.js';
import type { BerthEvent } from '../domain/release.js';
import type { Durability, SqlDatabase } from './sql.js';

export type EventListener = (event: BerthEvent) => void;

function defaultListenerError(err: unknown): void {
  process.emitWarning(`berth store event subscriber threw: ${(err as Error | null)?.stack ?? String(err)}`);
}

/**
 * What the repositories share: the database, the clock, and the write path.
 *
 * `write(fn)` runs `fn` in ONE write transaction (SqlDatabase.writeTransaction: concurrent
 * writers, even in other processes, serialise before they read what they are about to
 * change). `fn` must be synchronous, so a transaction can never span an await. A write
 * made as the leader's work (src/cluster/fence.ts) checks the fence first, inside it.
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

  constructor(
    readonly sql: SqlDatabase,
    private readonly clock: () => Date,
    private readonly onListenerError: (err: unknown) => void = defaultListenerError,
  ) {
    // Every SSE client subscribes; there is no leak to warn about.
    this.bus.setMaxListeners(0);
  }

  now(): string {
    return this.clock().toISOString();
  }

  write<T>(fn: () => T, durability: Durability = 'durable'): T {
    if (this.depth > 0) return fn();
    const fence = activeFence();
    this.depth++;
    let result: T;
    try {
      result = this.sql.writeTransaction(
        fence
          ? () => {
              fence.beforeWrite();
              return fn();
            }
          : fn,
        durability,
      );
    } catch (err) {
      this.pending = [];
      throw err;
    } finally {
      this.depth--;
    }
    const committed = this.pending;
    this.pending = [];
    for (const ev of committed) this.emit(ev);
    return result;
  }

  /** Delivers an event to the subscribers (after its commit; or one another daemon committed: follow.ts). */
  emit(event: BerthEvent): void {
    this.bus.emit('event', event);
  }

  /**
   * `write`, for what the controller observed and would observe again after a power loss
   * (status, rollout records, step events, host status): committed without waiting for
   * the disk (Durability `observed`, sql.ts). Inside another
   * transaction it joins that one, and that one's durability. docs/design.md ("The store").
   */
  writeObserved<T>(fn: () => T): T {
    return this.write(fn, 'observed');
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
