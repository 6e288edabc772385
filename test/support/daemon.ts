/**
 * A real berth daemon in a child process (the CLI's `daemon` command), configured
 * from the test bed, for tests that kill it, restart it or talk to it over HTTP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Testbed } from './testbed.js';

const ROOT = new URL('../../', import.meta.url).pathname;
export const TOKEN = 'test-token-0123456789';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The YAML config for `apps` on the bed's first three hosts, as an operator would write it. */
export function bedConfig(bed: Testbed, apps: Record<string, unknown>): Record<string, unknown> {
  return {
    hosts: Object.fromEntries(
      bed.hosts.slice(0, 3).map((h) => [
        h.name,
        { address: h.address, port: h.sshPort, user: h.user, ssh_key: bed.clientKey, host_key: h.hostKey, docker_socket: h.dockerSocket, state_dir: h.stateDir },
      ]),
    ),
    proxy: { image: bed.images.proxy },
    controller: { resync_interval: '2s' },
    apps,
  };
}

export interface DaemonProcess {
  url: string;
  dir: string;
  child: ChildProcess;
  output(): string;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  kill9(): Promise<void>;
  stop(): Promise<number | null>;
  /** Starts a new daemon process on the same config and database. */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startDaemonProcess(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<DaemonProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-daemon-'));
  const port = await freePort();
  writeFileSync(join(dir, 'berth.yml'), stringify(config));
  const url = `http://127.0.0.1:${port}`;
  let out = '';
  let child!: ChildProcess;

  const launch = async () => {
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/bin.ts'), 'daemon'], {
      cwd: ROOT,
      env: { ...process.env, BERTH_CONFIG: join(dir, 'berth.yml'), BERTH_DB: join(dir, 'berth.db'), BERTH_LISTEN: `127.0.0.1:${port}`, BERTH_TOKEN: TOKEN, BERTH_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}:\n${out}`);
      const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`daemon not ready after 20 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const exited = () => new Promise<number | null>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

  await launch();
  return {
    url,
    dir,
    get child() {
      return child;
    },
    output: () => out,
    async request<T>(method: string, path: string, body?: unknown) {
      const res = await fetch(url + path, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
    },
    async kill9() {
      const done = exited();
      child.kill('SIGKILL');
      await done;
    },
    async stop() {
      const done = exited();
      child.kill('SIGTERM');
      return done;
    },
    restart: launch,
    async cleanup() {
      if (child.exitCode === null && child.signalCode === null) {
        const done = exited();
        child.kill('SIGKILL');
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
