import { existsSync, readFileSync } from 'node:fs';
import { DEFAULTS, tokenFilePath } from '../defaults.js';
import { BerthError } from '../domain/errors.js';
import type { BerthEvent } from '../domain/release.js';

export class ApiError extends BerthError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** BERTH_TOKEN, else the token file the daemon generated next to its database. */
function resolveToken(env: Record<string, string | undefined>): string | null {
  if (env.BERTH_TOKEN) return env.BERTH_TOKEN;
  const file = tokenFilePath(env.BERTH_DB || DEFAULTS.db);
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : null;
}

/** The CLI's only way to berth: the HTTP API (BERTH_URL, BERTH_TOKEN). */
export class BerthClient {
  readonly baseUrl: string;
  private readonly token: string | null;
  private readonly actor: string;

  constructor(env: Record<string, string | undefined> = process.env) {
    this.baseUrl = (env.BERTH_URL || DEFAULTS.url).replace(/\/$/, '');
    this.token = resolveToken(env);
    this.actor = (env.USER || 'cli').replace(/[^\w.@-]/g, '').slice(0, 64) || 'cli';
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), 'x-berth-actor': this.actor, ...extra };
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
      throw new ApiError(0, 'DAEMON_UNREACHABLE', `cannot reach berth at ${this.baseUrl} (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}); is the daemon running? (npm start)`);
    }
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!res.ok) {
      const issues = Array.isArray(json.issues) ? `\n${(json.issues as Array<{ path: string; message: string }>).map((i) => `  ${i.path}: ${i.message}`).join('\n')}` : '';
      throw new ApiError(res.status, String(json.code ?? 'HTTP_ERROR'), `${String(json.message ?? res.statusText)}${issues && !String(json.message).includes('\n') ? issues : ''}`);
    }
    return json as T;
  }

  /** Follows the app's SSE stream from `afterId`; stops when `onEvent` returns true or the signal aborts. */
  async follow(app: string, afterId: number, onEvent: (e: BerthEvent) => boolean | void, signal?: AbortSignal): Promise<void> {
    let last = afterId;
    while (!signal?.aborted) {
      try {
        const res = await fetch(`${this.baseUrl}/v1/apps/${encodeURIComponent(app)}/events`, {
          headers: this.headers({ accept: 'text/event-stream', 'last-event-id': String(last) }),
          ...(signal ? { signal } : {}),
        });
        if (!res.ok || !res.body) throw new ApiError(res.status, 'HTTP_ERROR', `event stream answered ${res.status}`);
        const decoder = new TextDecoder();
        let buf = '';
        for await (const chunk of res.body) {
          buf += decoder.decode(chunk as Uint8Array, { stream: true });
          let sep: number;
          while ((sep = buf.indexOf('\n\n')) !== -1) {
            const frame = buf.slice(0, sep);
            buf = buf.slice(sep + 2);
            const data = frame.split('\n').find((l) => l.startsWith('data: '));
            if (!data) continue;
            const e = JSON.parse(data.slice(6)) as BerthEvent;
            last = e.id;
            if (onEvent(e) === true) return;
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
      }
      // The daemon restarted or the link dropped: reconnect and resume after the last id.
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
