/**
 * The Docker event watcher behind HostDriver.watchEvents: one GET /events stream of
 * berth-managed container events, re-subscribed with backoff whenever it fails or ends,
 * resuming from the last event seen and announcing `resubscribed` so callers resync.
 */
import type { Readable } from 'node:stream';
import { LABELS } from '../../domain/labels.js';
import type { Logger } from '../../log.js';
import type { DockerEvent, HostOperation } from '../host-driver.js';
import { backoffMs, boundedCall, toHostError } from '../host-errors.js';
import { jsonLines, type DialArgs } from './framing.js';

/**
 * Failures in a row re-subscribed at once: a stream that simply ended (dockerd restarted,
 * the SSH link dropped) is re-opened without delay; backoff starts with the next failure.
 */
const IMMEDIATE_RESUBSCRIBES = 1;
/** First backoff step after the immediate retries; doubles (with jitter) up to the cap. */
const RESUBSCRIBE_BACKOFF_BASE_MS = 500;
/** Default cap of the re-subscription backoff: a host that comes back is watched again within ~10 s. */
export const DEFAULT_RESUBSCRIBE_BACKOFF_MAX_MS = 10_000;

const WHAT = 'subscribe to docker events';

/** What the watcher needs of the driver. */
export interface EventsHost {
  readonly name: string;
  readonly log: Logger;
  /** Deadline of opening the stream (not of the stream, which stays open). */
  readonly subscribeTimeoutMs: number;
  /** Cap of the re-subscription backoff. */
  readonly backoffMaxMs: number;
  /** Whether the driver was closed (no more subscriptions). */
  isClosed(): boolean;
  dial<T>(a: DialArgs): Promise<T>;
  observe(op: HostOperation, seconds: number, ok: boolean): void;
}

export class DockerEventWatcher {
  /** Set by stop(): no more subscriptions, and the open stream is aborted. */
  private stopped = false;
  /** Subscriptions in a row that failed or ended; a subscription that opens resets it. */
  private failures = 0;
  /** Whether a stream was open before: the next one announces `resubscribed`. */
  private subscribedOnce = false;
  /** Docker's `time` of the last event seen: a re-subscription asks for events since then. */
  private since: number | null = null;
  /** Aborts the current subscription attempt or open stream. */
  private current: AbortController | null = null;
  /** The pending re-subscription. */
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly host: EventsHost,
    private readonly onEvent: (e: DockerEvent) => void,
    /** Called once, by the first stop(). */
    private readonly onStop: () => void,
  ) {}

  start(): void {
    this.subscribe();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.current?.abort(new Error('unsubscribed'));
    this.onStop();
  }

  private subscribe(): void {
    this.retryTimer = null;
    if (this.stopped || this.host.isClosed()) return;
    const mine = new AbortController();
    this.current = mine;
    const filters = { type: ['container'], label: [`${LABELS.managed}=true`] };
    const since = this.since;
    const started = performance.now();
    boundedCall(this.host.name, WHAT, this.host.subscribeTimeoutMs, (signal) => {
      // The deadline covers opening the stream; `mine` also aborts it once open (stop()).
      signal.addEventListener('abort', () => mine.abort(signal.reason), { once: true });
      return this.host.dial<Readable>({
        method: 'GET',
        path: '/events',
        query: since !== null ? { filters, since } : { filters },
        ok: [200],
        stream: true,
        signal: mine.signal,
      });
    }).then(
      (stream) => {
        this.host.observe('events_subscribe', (performance.now() - started) / 1000, true);
        if (this.stopped) {
          stream.destroy();
          return;
        }
        if (this.subscribedOnce) this.onEvent({ id: null, app: null, action: 'resubscribed' });
        this.subscribedOnce = true;
        this.failures = 0;
        this.consume(stream);
      },
      (e: unknown) => {
        this.host.observe('events_subscribe', (performance.now() - started) / 1000, false);
        const he = toHostError(e, this.host.name, WHAT);
        this.host.log.debug({ code: he.code }, he.message);
        if (!this.stopped) this.retry(he.message);
      },
    );
  }

  /** Delivers the stream's events until it ends or fails, then re-subscribes. */
  private consume(stream: Readable): void {
    jsonLines(stream, (o) => this.deliver(o)).then(
      () => this.retry('end'),
      (e: unknown) => this.retry((e as Error).message),
    );
  }

  private deliver(o: Record<string, unknown>): void {
    const actor = (o.Actor ?? {}) as { ID?: string; Attributes?: Record<string, string> };
    if (typeof o.time === 'number') this.since = o.time;
    if (o.Type !== undefined && o.Type !== 'container') return;
    const action = typeof o.Action === 'string' ? o.Action : typeof o.status === 'string' ? o.status : 'unknown';
    try {
      this.onEvent({
        id: actor.ID ?? (typeof o.id === 'string' ? o.id : null),
        app: actor.Attributes?.[LABELS.app] ?? null,
        action,
      });
    } catch (e) {
      this.host.log.error({ err: (e as Error).message }, 'docker event handler threw');
    }
  }

  private retry(why: string): void {
    if (this.stopped || this.host.isClosed()) return;
    this.failures += 1;
    const delay =
      this.failures <= IMMEDIATE_RESUBSCRIBES ? 0 : backoffMs(this.failures - IMMEDIATE_RESUBSCRIBES, RESUBSCRIBE_BACKOFF_BASE_MS, this.host.backoffMaxMs);
    this.host.log.debug({ failures: this.failures, retryInMs: delay }, `docker events stream ended (${why}); re-subscribing`);
    this.retryTimer = setTimeout(() => this.subscribe(), delay);
  }
}
