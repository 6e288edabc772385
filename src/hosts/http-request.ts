/**
 * One HTTP/1.1 request over a given stream (an SSH channel) or a direct TCP / Unix socket
 * connection. No connection reuse: every request opens and closes its own connection, so a
 * probe never rides on a stale socket to a container that is gone.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { HOST_ERROR_CODES, HostError } from '../domain/errors.js';
import type { HttpResult } from './host-driver.js';
import { errnoCode } from './host-errors.js';

/** Default cap on a response body kept: probes need the status, the proxy's admin API answers in KiB. */
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export type HttpTarget =
  | { kind: 'stream'; open: () => Promise<Duplex>; hostHeader: string; describe: string }
  | { kind: 'tcp'; ip: string; port: number }
  | { kind: 'unix'; socketPath: string };

export interface HttpRequestArgs {
  host: string;
  target: HttpTarget;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  signal: AbortSignal;
  /** Bodies beyond this are cut (the status is what probes need). Default 1 MiB. */
  maxBodyBytes?: number;
}

function describe(t: HttpTarget, path: string): string {
  switch (t.kind) {
    case 'stream':
      return `${t.describe}${path}`;
    case 'tcp':
      return `http://${t.ip}:${t.port}${path}`;
    case 'unix':
      return `unix:${t.socketPath}:${path}`;
  }
}

export async function httpRequest(args: HttpRequestArgs): Promise<HttpResult> {
  const { target, signal } = args;
  const path = args.path.startsWith('/') ? args.path : `/${args.path}`;
  const what = `${args.method} ${describe(target, path)}`;
  const max = args.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const headers: Record<string, string> = { ...(args.headers ?? {}) };
  if (args.body !== undefined) {
    headers['Content-Length'] = String(Buffer.byteLength(args.body));
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  }

  const options: http.RequestOptions = { method: args.method, path, headers, signal };
  // Node replaces an empty Host with `localhost` unless told not to set one itself.
  if (Object.keys(headers).some((h) => h.toLowerCase() === 'host')) options.setHost = false;
  if (target.kind === 'stream') {
    let stream: Duplex;
    try {
      stream = await target.open();
    } catch (e) {
      if (e instanceof HostError && e.code === HOST_ERROR_CODES.channelFailed) {
        throw new HostError(HOST_ERROR_CODES.httpFailed, args.host, `${what}: ${e.message}`, { cause: e });
      }
      throw e;
    }
    if (signal.aborted) {
      stream.destroy();
      throw signal.reason;
    }
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'host')) {
      headers.Host = target.hostHeader;
      options.setHost = false;
    }
    options.createConnection = () => stream;
  } else if (target.kind === 'tcp') {
    options.host = target.ip;
    options.port = target.port;
    options.agent = false;
  } else {
    options.socketPath = target.socketPath;
    options.agent = false;
  }

  return new Promise<HttpResult>((resolve, reject) => {
    const req = http.request(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < max) chunks.push(size + c.length > max ? c.subarray(0, max - size) : c);
        size += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => reject(fail(e)));
      res.on('aborted', () => reject(fail(new Error('response aborted'))));
    });
    const fail = (e: unknown): unknown => {
      if (signal.aborted) return signal.reason;
      if (e instanceof HostError) return e;
      const code = errnoCode(e);
      const msg = e instanceof Error ? e.message : String(e);
      return new HostError(HOST_ERROR_CODES.httpFailed, args.host, `${what} failed${code && !msg.includes(code) ? ` (${code})` : ''}: ${msg}`, {
        cause: e,
      });
    };
    req.on('error', (e) => reject(fail(e)));
    req.end(args.body);
  });
}
