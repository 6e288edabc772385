/**
 * The API under test: buildApp with an in-memory store, a metrics registry, a
 * logger whose output is captured, and a recording controller seam (the API only
 * ever nudges the controller and asks whether it runs; nothing else is faked).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/api/app.js';
import { tokenIdOf } from '../../src/api/auth.js';
import type { ControllerHandle, ExecResult } from '../../src/api/context.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { openStore, type Store } from '../../src/store/index.js';

export const TOKEN = 'test-token-0123456789abcdef';
export const AUTH = { authorization: `Bearer ${TOKEN}` } as const;
/** How the audit trail names an actor who used TOKEN. */
export const actorWithToken = (name: string, token: string = TOKEN) => `${name} (token ${tokenIdOf(token)})`;

/** Records every enqueue and exec; `running` answers /readyz. Real execs are tested on the test hosts. */
export class RecordingController implements ControllerHandle {
  readonly enqueued: string[] = [];
  readonly execs: Array<{ app: string; command: string; host?: string }> = [];
  running = true;
  async exec(app: string, command: string, host?: string): Promise<ExecResult> {
    this.execs.push({ app, command, ...(host ? { host } : {}) });
    return { host: host ?? 'h1', version: 'v1', exitCode: 0, outputTail: '', timedOut: false };
  }
  enqueue(app: string): void {
    this.enqueued.push(app);
  }
  isRunning(): boolean {
    return this.running;
  }
}

export interface TestApi {
  app: FastifyInstance;
  store: Store;
  controller: RecordingController;
  metrics: BerthMetrics;
  /** Every log line the app wrote so far (pino JSON, level trace and up). */
  logs(): string;
  /** Shorthand for app.inject with the bearer token (unless `headers.authorization` is given). */
  call(opts: InjectOptions & { auth?: boolean }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestApiOptions {
  token?: string | null;
  openReads?: boolean;
  hosts?: string[];
}

export const DEFAULT_HOSTS = ['h1', 'h2', 'h3'];

export function makeApi(opts: TestApiOptions = {}): TestApi {
  const store = openStore(':memory:');
  const controller = new RecordingController();
  const metrics = new BerthMetrics('0.0.0-test', { processMetrics: false });
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = pino({ level: 'trace' }, sink);
  const hosts = opts.hosts ?? DEFAULT_HOSTS;
  const app = buildApp({
    store,
    metrics,
    log,
    controller,
    auth: { token: opts.token === undefined ? TOKEN : opts.token, openReads: opts.openReads ?? false },
    hostNames: () => hosts,
    version: '0.0.0-test',
  });
  return {
    app,
    store,
    controller,
    metrics,
    logs: () => chunks.join(''),
    call: ({ auth = true, headers, ...rest }) =>
      app.inject({ ...rest, headers: { ...(auth ? AUTH : {}), ...(headers ?? {}) } }),
    close: async () => {
      await app.close();
      store.close();
    },
  };
}

/** A valid app document (the PUT /v1/apps/:app body), hosts h1..h2. */
export function appDoc(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    image: '10.77.0.1:5000/web',
    hosts: ['h1', 'h2'],
    port: 3000,
    healthcheck: { path: '/health', interval: '1s', timeout: '500ms', max_attempts: 3 },
    ...over,
  };
}

/**
 * Every row of every table (sqlite_sequence included, so even a rolled-back
 * AUTOINCREMENT shows), as sorted JSON lines: for "nothing was written" assertions.
 */
export function snapshotDb(store: Store): Record<string, string[]> {
  const tables = store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
  return Object.fromEntries(
    tables.map((t) => [t, (store.db.prepare(`SELECT * FROM "${t}"`).all() as unknown[]).map((r) => JSON.stringify(r)).sort()]),
  );
}

/** Creates app `name` (PUT) and optionally deploys `versions` in order; throws unless each step succeeds. */
export async function seedApp(api: TestApi, name = 'web', versions: string[] = [], doc = appDoc()): Promise<void> {
  const put = await api.call({ method: 'PUT', url: `/v1/apps/${name}`, payload: doc });
  if (put.statusCode !== 201 && put.statusCode !== 200) throw new Error(`seed PUT ${name}: ${put.statusCode} ${put.body}`);
  for (const version of versions) {
    const res = await api.call({ method: 'POST', url: `/v1/apps/${name}/releases`, payload: { version } });
    if (res.statusCode !== 202) throw new Error(`seed release ${name}@${version}: ${res.statusCode} ${res.body}`);
  }
}

export interface SseFrame {
  id: number;
  event: string;
  data: string;
}

export interface SseClient {
  /** The response head (status, headers). */
  response: Promise<IncomingMessage>;
  /** The next `n` frames not yet taken (comments/heartbeats skipped); rejects after `timeoutMs`. */
  next(n: number, timeoutMs?: number): Promise<SseFrame[]>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

/** A minimal text/event-stream reader over node:http, for tests against a real listening server. */
export function sseClient(url: string, headers: Record<string, string>): SseClient {
  const frames: SseFrame[] = [];
  let taken = 0;
  let wake: (() => void) | null = null;
  let buf = '';
  let endedResolve: () => void = () => {};
  const ended = new Promise<void>((r) => (endedResolve = r));
  const req = http.get(url, { headers });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let sep: number;
        while ((sep = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          const fields = new Map<string, string>();
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(': ');
            if (i > 0) fields.set(line.slice(0, i), line.slice(i + 2));
          }
          if (fields.has('data')) frames.push({ id: Number(fields.get('id')), event: fields.get('event') ?? 'message', data: fields.get('data')! });
        }
        wake?.();
      });
      res.on('end', endedResolve);
      res.on('close', endedResolve);
      resolve(res);
    });
    req.once('error', (err) => {
      endedResolve();
      reject(err);
    });
  });
  response.catch(() => {});
  return {
    response,
    ended,
    async next(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (frames.length - taken < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${n} SSE frames; have ${frames.length - taken}: ${JSON.stringify(frames.slice(taken))}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
      const out = frames.slice(taken, taken + n);
      taken += n;
      return out;
    },
    close: () => req.destroy(),
  };
}

// ---- a real daemon as a child process (`berth daemon`), for crash and CLI tests ----

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'src', 'cli', 'bin.ts');

/** One app on a local host whose Docker socket does not exist: the host is simply down. */
export const DAEMON_CONFIG = `hosts:
  local: { local: true, docker_socket: /nonexistent/docker.sock }
apps:
  web:
    image: 10.77.0.1:5000/web
    hosts: [local]
    port: 3000
    healthcheck: { path: /health, interval: 1s, timeout: 500ms, max_attempts: 2 }
`;

const children = new Set<ChildProcess>();
// Last line of defence: never leave a daemon behind, whatever happened to the test.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** The environment without any BERTH_* variable of the caller (a developer's BERTH_TOKEN must not leak in). */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('BERTH_')) env[k] = v;
  return { ...env, ...extra };
}

export function tempDir(prefix = 'berth-api-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A port nobody listens on right now (bound and released by the kernel's choice). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonChild {
  proc: ChildProcess;
  url: string;
  /** stdout + stderr so far. */
  output(): string;
  exited: Promise<Exit>;
  /** Resolves with the exit, or rejects after `ms`. */
  exit(ms: number): Promise<Exit>;
}

export interface DaemonOptions {
  config: string;
  db: string;
  port: number;
  token?: string;
  env?: Record<string, string>;
}

export function spawnDaemon(o: DaemonOptions): DaemonChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'daemon'], {
    cwd: ROOT,
    env: cleanEnv({
      BERTH_CONFIG: o.config,
      BERTH_DB: o.db,
      BERTH_LISTEN: `127.0.0.1:${o.port}`,
      ...(o.token ? { BERTH_TOKEN: o.token } : {}),
      ...(o.env ?? {}),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<Exit>((resolve) =>
    proc.once('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    url: `http://127.0.0.1:${o.port}`,
    output: () => out,
    exited,
    exit: (ms) =>
      Promise.race([
        exited,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`daemon did not exit within ${ms} ms; output:\n${out}`)), ms).unref()),
      ]),
  };
}

/** Polls /healthz until it answers 200; fails early (with the daemon's output) if the daemon exits. */
export async function waitReady(d: DaemonChild, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let dead = false;
  void d.exited.then(() => (dead = true));
  while (Date.now() < deadline) {
    if (dead) throw new Error(`daemon exited before it was ready:\n${d.output()}`);
    try {
      const res = await fetch(`${d.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`daemon not ready within ${timeoutMs} ms:\n${d.output()}`);
}

/** SIGKILLs the daemon if it still runs and waits for it to be gone. */
export async function killDaemon(d: DaemonChild): Promise<void> {
  if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  await d.exited;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `berth ARGS...` as a user would, with only the given BERTH_* variables set. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 15_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`berth ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('close', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      resolve({ code, stdout, stderr });
    });
  });
}
