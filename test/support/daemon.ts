/**
 * A real berth daemon as a child process (`berth daemon`, run through tsx), and the
 * CLI run as a user would. Nothing here needs the test hosts: tests without them use
 * DAEMON_CONFIG (one local host whose Docker socket does not exist); the daemon on the
 * test hosts (bed-daemon.ts) is built on the same spawnDaemon / waitReady / sandbox.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'src', 'cli', 'bin.ts');

/** The bearer token of test daemons and of the in-process API (api.ts), unless a test picks its own. */
export const TOKEN = 'test-token-0123456789abcdef-4c1e7a9b02d5';

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

/**
 * `node --import tsx src/cli/bin.ts ARGS...`, as [file, argv]; with `netns` (a test host's
 * network namespace, e.g. `berth-h1`) run inside it, so that "this machine" is that host:
 * its loopback, its Docker's container networks, its proxy's ports.
 */
function berthCommand(args: string[], netns?: string): [string, string[]] {
  const node = [process.execPath, '--import', 'tsx', BIN, ...args];
  return netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', ...node]] : [node[0]!, node.slice(1)];
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
  /** Path of the YAML config (BERTH_CONFIG). */
  config: string;
  /** Path of the database (BERTH_DB). */
  db: string;
  /** Listens on 127.0.0.1:port (BERTH_LISTEN; `env` may override it). */
  port: number;
  token?: string;
  /** More environment (BERTH_LOG_LEVEL, ...; apps' secrets are files: secrets.ts); the caller's BERTH_* variables are never passed on. */
  env?: Record<string, string>;
  /** Runs in this network namespace (a test host's, `berth-h1`): its url is then reachable only from there. */
  netns?: string;
}

export function spawnDaemon(o: DaemonOptions): DaemonChild {
  const [file, argv] = berthCommand(['daemon'], o.netns);
  const proc = spawn(file, argv, {
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

export interface WaitReadyOptions {
  /** `/healthz` (the process answers, the default) or `/readyz` (database open and reconcile loop running). */
  probe?: '/healthz' | '/readyz';
  timeoutMs?: number;
}

/** Polls the probe until it answers 200; fails early (with the daemon's output) if the daemon exits. */
export async function waitReady(d: DaemonChild, { probe = '/healthz', timeoutMs = 20_000 }: WaitReadyOptions = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let dead = false;
  void d.exited.then(() => (dead = true));
  while (Date.now() < deadline) {
    if (dead) throw new Error(`daemon exited before it was ready:\n${d.output()}`);
    try {
      const res = await fetch(`${d.url}${probe}`, { signal: AbortSignal.timeout(1000) });
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

/**
 * A scratch directory for a test file's daemons, all with one token: configs are
 * written into it, and cleanup() SIGKILLs every daemon spawned through it and
 * removes it (call it from `after`).
 */
export interface DaemonSandbox {
  path: string;
  /** Every daemon spawned through the sandbox so far, oldest first. */
  readonly daemons: readonly DaemonChild[];
  /** Writes `text` to the file `name` in the directory; returns its path. */
  writeConfig(name: string, text: string): string;
  /** spawnDaemon with the sandbox's token, on a free port unless one is given. Does not wait until it is ready. */
  spawn(o: Omit<DaemonOptions, 'port' | 'token'> & { port?: number }): Promise<DaemonChild>;
  cleanup(): Promise<void>;
}

export function daemonSandbox(prefix: string, token: string): DaemonSandbox {
  const dir = tempDir(prefix);
  const daemons: DaemonChild[] = [];
  return {
    path: dir.path,
    daemons,
    writeConfig(name, text) {
      const path = join(dir.path, name);
      writeFileSync(path, text);
      return path;
    },
    async spawn({ port, ...o }) {
      const d = spawnDaemon({ ...o, port: port ?? (await freePort()), token });
      daemons.push(d);
      return d;
    },
    async cleanup() {
      await Promise.all(daemons.map(killDaemon));
      dir.remove();
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout as it arrived: each chunk with the milliseconds since the start (what "live" output means). */
  stdoutChunks: Array<{ atMs: number; text: string }>;
}

/** Runs `berth ARGS...` as a user would, with only the given BERTH_* variables set (in `netns`, if given). */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 15_000, opts: { netns?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [file, argv] = berthCommand(args, opts.netns);
    const proc = spawn(file, argv, { cwd: ROOT, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(proc);
    const t0 = performance.now();
    let stdout = '';
    let stderr = '';
    const stdoutChunks: CliResult['stdoutChunks'] = [];
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      stdoutChunks.push({ atMs: performance.now() - t0, text: d });
    });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`berth ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('close', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      resolve({ code, stdout, stderr, stdoutChunks });
    });
  });
}
