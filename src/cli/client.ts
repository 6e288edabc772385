import { existsSync, readFileSync } from 'node:fs';
import { DEFAULTS, localStatePath, tokenFilePath } from '../defaults.js';
import { MAX_LOG_TAIL, type AppLogItem } from '../domain/logs.js';
import type { BerthEvent } from '../domain/release.js';
import { ApiError } from './errors.js';

/** The pause before `follow` reconnects after the daemon restarted or the link dropped. */
const RECONNECT_DELAY_MS = 1_000;

/**
 * BERTH_TOKEN, else the token file the daemon generated next to its database; `source`
 * says where the CLI looked, for a 401.
 */
function resolveToken(env: Record<string, string | undefined>): { token: string | null; source: string } {
  if (env.BERTH_TOKEN) return { token: env.BERTH_TOKEN, source: 'the token came from BERTH_TOKEN' };
  const file = tokenFilePath(localStatePath(env));
  if (existsSync(file)) return { token: readFileSync(file, 'utf8').trim(), source: `the token came from ${file} (BERTH_TOKEN is unset)` };
  return { token: null, source: `no token sent: BERTH_TOKEN is unset and ${file} does not exist (set BERTH_TOKEN, or BERTH_DB to the daemon's database)` };
}

/** The CLI's only way to berth: the HTTP API (BERTH_URL, BERTH_TOKEN). */
export class BerthClient {
  readonly baseUrl: string;
  private readonly token: string | null;
  /** Where the token came from (or was looked for), named on a 401. */
  private readonly tokenSource: string;
  private readonly actor: string;

  constructor(env: Record<string, string | undefined> = process.env) {
    this.baseUrl = (env.BERTH_URL || DEFAULTS.url).replace(/\/$/, '');
    ({ token: this.token, source: this.tokenSource } = resolveToken(env));
    this.actor = (env.USER || 'cli').replace(/[^\w.@-]/g, '').slice(0, 64) || 'cli';
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), 'x-berth-actor': this.actor, ...extra };
  }

  private unreachable(err: unknown): ApiError {
    const e = err as Error;
    const why = e.cause instanceof Error ? e.cause.message : e.message;
    return new ApiError(0, 'DAEMON_UNREACHABLE', `cannot reach berth at ${this.baseUrl} (${why}); is the daemon running? (npm start)`);
  }

  /**
   * A failed response as an ApiError: berth's JSON error body when there is one, else
   * (a proxy's HTML page, another server) the status and the start of what came.
   */
  private failure(res: Response, text: string): ApiError {
    const json = parseObject(text);
    if (!json || typeof json.message !== 'string') {
      const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 120);
      return new ApiError(res.status, 'HTTP_ERROR', `${this.baseUrl} answered ${res.status} ${res.statusText} without a berth error body (is BERTH_URL a berth daemon?)${snippet ? `: ${snippet}` : ''}`);
    }
    const message = json.message;
    // A 422's message already lists its issues one per line; add only what it lacks.
    const issues = Array.isArray(json.issues) ? (json.issues as Array<{ path: string; message: string }>) : [];
    const missing = issues.map((i) => `${i.path}: ${i.message}`).filter((line) => !message.includes(line));
    return new ApiError(
      res.status,
      'API_ERROR',
      `${message}${missing.map((l) => `\n  ${l}`).join('')}`,
      typeof json.code === 'string' ? json.code : null,
      res.status === 401 ? this.tokenSource : null,
    );
  }

  /**
   * Every item of a paged list route (`{[key]: T[], next}`, README.md "HTTP API"): reads
   * page after page, passing each page's `next` as `?<cursor>=`, until `next` is null.
   */
  async listAll<T>(path: string, key: string, cursor: string): Promise<T[]> {
    const items: T[] = [];
    let next: string | number | null = null;
    do {
      const url: string = next === null ? path : `${path}${path.includes('?') ? '&' : '?'}${cursor}=${encodeURIComponent(String(next))}`;
      const page = await this.request<Record<string, unknown>>('GET', url);
      const got = page[key];
      if (!Array.isArray(got)) throw new ApiError(0, 'API_ERROR', `GET ${path}: the answer has no "${key}" list`);
      items.push(...(got as T[]));
      const after: unknown = page.next ?? null;
      // A cursor that does not move would loop forever: an answer berth never gives.
      if (after !== null && (after === next || got.length === 0)) throw new ApiError(0, 'API_ERROR', `GET ${path}: the page after ${String(next)} did not move on`);
      next = after as string | number | null;
    } while (next !== null);
    return items;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: this.headers(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw this.unreachable(err);
    }
    const text = await res.text();
    if (!res.ok) throw this.failure(res, text);
    const json = text ? parseObject(text) : {};
    if (!json) throw new ApiError(res.status, 'NOT_BERTH', `${this.baseUrl} answered ${res.status} with something that is not JSON (is BERTH_URL a berth daemon?)`);
    return json as T;
  }

  /** Follows the app's SSE stream from `afterId`; stops when `onEvent` returns true or the signal aborts. */
  async follow(app: string, afterId: number, onEvent: (e: BerthEvent) => boolean | void, signal?: AbortSignal): Promise<void> {
    let last = afterId;
    await this.sse(
      () => ({ path: `/v1/apps/${encodeURIComponent(app)}/events`, headers: { accept: 'text/event-stream', 'last-event-id': String(last) } }),
      (frame) => {
        const e = JSON.parse(frame.data) as BerthEvent;
        last = e.id;
        return onEvent(e);
      },
      { reconnect: true, ...(signal ? { signal } : {}) },
    );
  }

  /**
   * The app's logs (GET /v1/apps/:app/logs) with `query`, each item to `onItem`. Followed,
   * a dropped stream (the daemon restarted) is asked again for what came after the newest
   * line seen, and lines a host sent before are not repeated.
   */
  async logs(app: string, query: { host?: string; process?: string; since?: string; tail?: number; follow: boolean }, onItem: (item: AppLogItem) => void, signal?: AbortSignal): Promise<void> {
    /** Per host, the timestamp of the last line passed on (Docker's fixed-width RFC 3339: they sort as text). */
    const seen = new Map<string, string>();
    await this.sse(
      () => {
        const q = new URLSearchParams();
        if (query.host !== undefined) q.set('host', query.host);
        if (query.process !== undefined) q.set('process', query.process);
        if (query.follow) q.set('follow', 'true');
        const times = [...seen.values()].sort();
        if (times.length > 0) {
          // Again after a drop: everything since the host that is furthest behind; the rest is dropped below.
          q.set('since', new Date(Date.parse(times[0]!)).toISOString());
          q.set('tail', String(MAX_LOG_TAIL));
        } else {
          if (query.since !== undefined) q.set('since', query.since);
          if (query.tail !== undefined) q.set('tail', String(query.tail));
        }
        return { path: `/v1/apps/${encodeURIComponent(app)}/logs?${q}`, headers: {} };
      },
      (frame) => {
        const item = { type: frame.event, ...JSON.parse(frame.data) } as AppLogItem;
        if (item.type === 'line' && item.time !== null) {
          const before = seen.get(item.host);
          if (before !== undefined && item.time <= before) return;
          seen.set(item.host, item.time);
        }
        onItem(item);
      },
      { reconnect: query.follow, ...(signal ? { signal } : {}) },
    );
  }

  /**
   * Reads an SSE route frame by frame. `open` says what to ask for at each connection.
   * Until the first connection works, failing is an answer (wrong URL, daemon down, wrong
   * token); after that, with `reconnect`, a dropped or ended stream is the daemon
   * restarting: connect again after RECONNECT_DELAY_MS. Ends when `onFrame` returns
   * true, the stream ends (without `reconnect`) or the signal aborts.
   */
  private async sse(open: () => { path: string; headers: Record<string, string> }, onFrame: (f: SseFrame) => boolean | void, opts: { reconnect: boolean; signal?: AbortSignal }): Promise<void> {
    const { signal } = opts;
    let connected = false;
    while (!signal?.aborted) {
      try {
        const { path, headers } = open();
        let res: Response;
        try {
          res = await fetch(this.baseUrl + path, { headers: this.headers(headers), ...(signal ? { signal } : {}) });
        } catch (err) {
          throw this.unreachable(err);
        }
        if (!res.ok || !res.body) throw this.failure(res, await res.text());
        connected = true;
        try {
          for await (const frame of sseFrames(res.body)) if (onFrame(frame) === true) return;
        } catch (err) {
          if (signal?.aborted) return;
          throw this.unreachable(err);
        }
        if (!opts.reconnect) return;
      } catch (err) {
        if (signal?.aborted) return;
        if (!connected || !opts.reconnect) throw err;
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
      }
      // The daemon restarted or the link dropped: connect again.
      await new Promise((r) => setTimeout(r, RECONNECT_DELAY_MS));
    }
  }
}

interface SseFrame {
  event: string;
  data: string;
}

/** The frames of a Server-Sent Events body that carry data (comments such as the keepalive are skipped). */
async function* sseFrames(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let sep: number;
    while ((sep = buf.indexOf('\n\n')) !== -1) {
      const lines = buf.slice(0, sep).split('\n');
      buf = buf.slice(sep + 2);
      const data = lines.find((l) => l.startsWith('data: '));
      if (data) yield { event: lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message', data: data.slice(6) };
    }
  }
}

/** JSON text -> an object, or null when it is not JSON or not an object. */
function parseObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
