/**
 * What the chaos run's operations and invariants share: the daemon on the bed, its three
 * apps, the load, the fault windows, the hook witness and the seeded PRNG.
 */
import http from 'node:http';
import type { AppStatus } from '../../src/domain/release.js';
import type { BedDaemon } from '../support/bed-daemon.js';
import type { LoadTarget } from '../support/load.js';
import type { Testbed } from '../support/testbed.js';
import { targetName, type FaultWindow } from './windows.js';

/** ca and cb share port 80 by Host; cc has its own port and the pre_deploy hook. */
export const APPS = ['ca', 'cb', 'cc'] as const;
export type ChaosApp = (typeof APPS)[number];
export const HOOK_APP: ChaosApp = 'cc';
export const PORT_ONLY = 8091;
export const GOOD_VERSIONS = ['v1', 'v2', 'v3'];
export const SECRET_NAME = 'CHAOS_SECRET';
export const MAINTENANCE_MESSAGE = 'chaos maintenance';
export const RETAIN = 2;

export interface AppView {
  spec: Record<string, unknown>;
  paused: boolean;
  maintenance: string | null;
  desired: { revision: number; version: string; reason: string } | null;
  status: AppStatus | null;
}

export interface World {
  bed: Testbed;
  daemon: BedDaemon;
  hosts: string[];
  random: () => number;
  secret: string;
  /** Pre_deploy hook runs seen by the witness server (each run calls it once). */
  hookRuns(): number;
  /** ms on the load's clock (failures' `at`). */
  clock(): number;
  windows: FaultWindow[];
  /** Opens a fault window now; close it with `w.to = world.clock()` (or leave it to the settle). */
  openWindow(why: string, hosts: string[], apps: readonly string[], only503?: string): FaultWindow;
  /** A line of the run's log. */
  say(line: string): void;
}

export const pick = <T>(random: () => number, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
export const between = (random: () => number, lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function hostAddress(bed: Testbed, host: string): string {
  return bed.hosts.find((h) => h.name === host)!.address;
}

/** How the load (and the served check) reaches `app` on `host`: through that host's proxy. */
export function appTarget(bed: Testbed, app: ChaosApp, host: string): { url: string; host?: string; name: string } {
  const addr = hostAddress(bed, host);
  if (app === HOOK_APP) return { url: `http://${addr}:${PORT_ONLY}`, name: targetName(app, host) };
  return { url: `http://${addr}:80`, host: `${app}.test`, name: targetName(app, host) };
}

export function loadTargets(bed: Testbed, hosts: string[]): LoadTarget[] {
  return APPS.flatMap((app) => hosts.map((h) => appTarget(bed, app, h)));
}

/** The YAML keys of the three apps (image and hosts come from bed-daemon.ts). */
export function chaosApps(witnessUrl: string): Record<ChaosApp, Record<string, unknown>> {
  const common = {
    // BOOT_DELAY: slowboot listens after 2 s; 10 probes 500 ms apart cover it, and a broken version fails in 5 s.
    env: { BOOT_DELAY: '2' },
    secrets: [SECRET_NAME],
    healthcheck: { interval: '500ms', timeout: '1s', max_attempts: 10 },
    rollout: { parallelism: 1 },
    retain_containers: RETAIN,
    stop_timeout: '3s',
  };
  return {
    ca: { ...common, proxy: { port: 80, host: 'ca.test', drain_timeout: '3s' } },
    cb: { ...common, proxy: { port: 80, host: 'cb.test', drain_timeout: '3s' } },
    cc: {
      ...common,
      proxy: { port: PORT_ONLY, drain_timeout: '3s' },
      // The witness counts runs; the echo puts the secret into the hook's output, which must come back redacted.
      hooks: { pre_deploy: [`wget -q -O /dev/null "${witnessUrl}/hook?v=$VERSION" && echo "pre_deploy $VERSION sees $${SECRET_NAME}"`], timeout: '30s' },
    },
  };
}

/** GET / through a host's proxy without retry: `200 v2`, `503 ...`, or the error code. */
export function getServed(t: { url: string; host?: string }, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(`${t.url}/`, { headers: t.host ? { host: t.host } : {}, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${body.trim().slice(0, 40)}`));
      res.on('error', () => resolve('error'));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}
