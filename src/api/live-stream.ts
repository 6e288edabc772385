import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { errorBody } from './errors.js';

/**
 * The live Server-Sent Events answers (event streams, log streams) and what bounds them
 * whatever a client does: one cap on open streams for all of them, and per stream a
 * bounded queue for a socket that does not drain, a time bound on that, and a heartbeat.
 */
export interface LiveStreamLimits {
  /** Concurrent streams over all apps and kinds (config `api.max_event_streams`); one more is a 503 with Retry-After. */
  maxStreams: number;
  /** Frames held for a stream whose socket is not draining; one more disconnects it. */
  maxQueued: number;
  /** How long a stream may stay blocked (write() returned false, no 'drain') before it is disconnected. */
  drainTimeoutMs: number;
  heartbeatMs: number;
}

/** What a client refused a stream slot is told to wait, in seconds. */
export const RETRY_AFTER_S = 5;

/** The comment frame every heartbeat writes: keeps proxies from closing a quiet stream and finds clients that left. */
const HEARTBEAT = ': keepalive\n\n';

/** The open streams of one API: their slots, and closing them all at shutdown (live streams never end by themselves). */
export class LiveStreams {
  private readonly open = new Set<LiveStream>();

  constructor(private readonly limits: LiveStreamLimits) {}

  /**
   * A new stream on `reply` (the SSE head is sent at once), or null when every slot is
   * taken: then the reply is a 503 TOO_MANY_STREAMS with Retry-After, already sent.
   */
  start(reply: FastifyReply, log: Logger, kind: 'event' | 'log'): LiveStream | null {
    if (this.open.size >= this.limits.maxStreams) {
      reply.log.warn({ open: this.open.size, max: this.limits.maxStreams }, 'stream refused: too many open streams');
      void reply
        .status(503)
        .header('retry-after', String(RETRY_AFTER_S))
        .send(errorBody(503, 'TOO_MANY_STREAMS', `too many open streams (api.max_event_streams = ${this.limits.maxStreams}, events and logs together); retry later`));
      return null;
    }
    const s = new LiveStream(reply, this.limits, log.child({ stream: kind }), kind, () => this.open.delete(s));
    this.open.add(s);
    return s;
  }

  closeAll(): void {
    for (const s of [...this.open]) s.end();
  }
}

/**
 * One open SSE answer. `write` sends a frame now, or queues it while the socket pushes
 * back (at most maxQueued; one more disconnects the client, as does a socket that has not
 * drained within drainTimeoutMs). Writers that can wait (a backlog, a log) write only
 * while `writable`, and go on from `whenWritable`.
 */
export class LiveStream {
  private blocked = false;
  private ended = false;
  private drainTimer: NodeJS.Timeout | null = null;
  private readonly queue: string[] = [];
  private readonly onWritable: Array<() => void> = [];
  /** One-shot waiters of writableAgain: true on a drain, false at the end. */
  private waiters: Array<(writable: boolean) => void> = [];
  private readonly onEnd: Array<() => void> = [];
  private readonly heartbeat: NodeJS.Timeout;
  private readonly res: FastifyReply['raw'];

  constructor(
    reply: FastifyReply,
    private readonly limits: LiveStreamLimits,
    private readonly log: Logger,
    private readonly kind: 'event' | 'log',
    private readonly release: () => void,
  ) {
    reply.hijack();
    this.res = reply.raw;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // Send the head now: a quiet stream writes nothing else until a frame or the heartbeat.
    this.res.flushHeaders();
    this.heartbeat = setInterval(() => {
      if (!this.blocked) this.send(HEARTBEAT);
    }, limits.heartbeatMs);
    this.heartbeat.unref();
    this.res.on('close', () => this.end());
    // The client going away (a destroyed request is how app.inject reports it, too).
    reply.request.raw.on('close', () => this.end());
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Nothing waits to be written and the socket takes more: a writer that can wait may write. */
  get writable(): boolean {
    return !this.ended && !this.blocked && this.queue.length === 0;
  }

  /** Writes `frame` now, or queues it behind a socket that pushes back; false when it had to wait. */
  write(frame: string): boolean {
    if (this.ended) return false;
    if (!this.writable) {
      this.queue.push(frame);
      if (this.queue.length > this.limits.maxQueued) this.drop('queue overflow', `more than ${this.limits.maxQueued} frames pending`);
      return false;
    }
    return this.send(frame);
  }

  /** Calls `fn` each time the socket has drained everything queued. */
  whenWritable(fn: () => void): void {
    this.onWritable.push(fn);
  }

  /** Calls `fn` once when the stream ends, whoever ends it. */
  whenEnded(fn: () => void): void {
    if (this.ended) fn();
    else this.onEnd.push(fn);
  }

  /** Resolves true once writable again, false if the stream ends first. */
  writableAgain(): Promise<boolean> {
    if (this.writable || this.ended) return Promise.resolve(!this.ended);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(writable: boolean): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w(writable);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.heartbeat);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.res.off('drain', this.drained);
    this.queue.length = 0;
    this.release();
    for (const fn of this.onEnd.splice(0)) fn();
    this.onWritable.length = 0;
    this.wake(false);
    // A blocked socket is cut off: end() would wait for a client that does not read.
    if (this.blocked) this.res.destroy();
    else this.res.end();
  }

  private send(chunk: string): boolean {
    if (this.res.write(chunk)) return true;
    this.blocked = true;
    this.res.once('drain', this.drained);
    this.drainTimer = setTimeout(() => this.drop('drain timeout', `not drained within ${this.limits.drainTimeoutMs} ms`), this.limits.drainTimeoutMs);
    this.drainTimer.unref();
    return false;
  }

  private readonly drained = () => {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.blocked = false;
    while (!this.ended && !this.blocked && this.queue.length > 0) this.send(this.queue.shift()!);
    if (!this.writable) return;
    for (const fn of [...this.onWritable]) fn();
    if (this.writable) this.wake(true);
  };

  /** A consumer too slow to keep up (only ever while blocked): disconnect it, freeing its slot. */
  private drop(reason: string, detail: string): void {
    this.log.warn({ reason, queued: this.queue.length, pendingBytes: this.res.writableLength }, `disconnecting a slow ${this.kind} stream: ${detail}`);
    this.end();
  }
}
