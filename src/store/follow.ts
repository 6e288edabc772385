import type { Logger } from 'pino';
import type { Store } from './store.js';

/** How many events one look reads at most; a backlog is read over the next looks. */
const FOLLOW_BATCH = 500;

/**
 * Delivers to this daemon's subscribers (SSE streams, the controller, the certificate
 * manager) the events other daemons commit to a shared PostgreSQL store, by reading the
 * events table every `intervalMs`. Writers commit one at a time (the store's write lock),
 * so event ids grow in commit order and a watermark misses none; this daemon's own events,
 * already delivered at their commit, are recognised by id and not delivered twice.
 */
export class EventFollower {
  private watermark = 0;
  private readonly delivered = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  /** The database stopped answering: said once, and once more when it answers again. */
  private failing = false;

  constructor(
    private readonly store: Store,
    private readonly o: { intervalMs: number; log: Logger },
  ) {}

  start(): void {
    if (this.timer) return;
    this.watermark = this.store.events.latestEventId();
    this.unsubscribe = this.store.events.subscribe((e) => {
      if (e.id > this.watermark) this.delivered.add(e.id);
    });
    this.timer = setInterval(() => this.look(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Reads and delivers what other daemons committed since the last look. */
  look(): void {
    let events;
    try {
      events = this.store.events.listEvents(null, { afterId: this.watermark, limit: FOLLOW_BATCH });
    } catch (err) {
      if (!this.failing) this.o.log.warn({ err: (err as Error).message }, 'cannot read events from the database; retrying');
      this.failing = true;
      return;
    }
    if (this.failing) this.o.log.info('reading events from the database again');
    this.failing = false;
    for (const e of events) {
      this.watermark = e.id;
      if (this.delivered.delete(e.id)) continue;
      this.store.deliver(e);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
