/**
 * The chaos run: a berth daemon on the bed's three hosts with three apps under no-retry
 * load, then `ops` random operations drawn from a seeded PRNG; after each, the fleet
 * must settle within a bound and every invariant hold, and no request may have failed
 * outside the fault windows of the ops that legitimately fail some. Used by
 * test/chaos/run.ts (npm run chaos) and test/faults/chaos.test.ts (CI, 30 ops).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mulberry32 } from '../../src/domain/prng.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { startLoad, summarizeFailures, type LoadFailure, type LoadRun } from '../support/load.js';
import { requireTestbed, testbedCommandAsync } from '../support/testbed.js';
import { drawOp } from './ops.js';
import { InvariantError, allEvents, settle, violations } from './invariants.js';
import { judgeFailures, type FaultWindow } from './windows.js';
import { APPS, SECRET_NAME, chaosApps, loadTargets, type World } from './world.js';

export interface ChaosOptions {
  ops: number;
  seed: number;
  /** Bound on each settle (ms). */
  settleBoundMs?: number;
  say?: (line: string) => void;
}

export interface ChaosResult {
  seed: number;
  ops: number;
  /** Op name -> how many times it ran. */
  byOp: Record<string, number>;
  requests: number;
  failed: number;
  /** Failed requests inside a fault window of their host and app (a cut link, a removed proxy or container, maintenance 503s). */
  excused: number;
  longestConvergenceMs: number;
  longestConvergenceOp: string;
  hookRuns: number;
  durationMs: number;
}

export const DEFAULT_SETTLE_BOUND_MS = 120_000;

export function replayCommand(ops: number, seed: number): string {
  return `flock /tmp/berth-bed.lock npm run chaos -- --ops ${ops} --seed ${seed}`;
}

export class ChaosFailure extends Error {
  readonly code = 'CHAOS_FAILED';
  constructor(readonly bare: string, readonly seed: number, readonly ops: number) {
    super(`${bare}\nseed ${seed}; replay: ${replayCommand(ops, seed)}`);
  }
}

/** The last events of each app, for a failure's story. */
async function recentEvents(daemon: BedDaemon): Promise<string> {
  const lines: string[] = [];
  for (const app of APPS) {
    const events = await allEvents(daemon, app);
    lines.push(`last events of ${app}:`, ...events.slice(-25).map((e) => `  ${e.createdAt.slice(11, 23)} r${e.revision ?? '-'} ${e.host ?? '-'} ${e.type}: ${e.message.slice(0, 160)}`));
  }
  return lines.join('\n');
}

/** Counts the pre_deploy hook's calls (the hook's container reaches the bridge address). */
async function startWitness(address: string): Promise<{ url: string; runs(): number; close(): Promise<void> }> {
  let runs = 0;
  const srv = http.createServer((req, res) => {
    if (req.url?.startsWith('/hook')) runs += 1;
    res.end('ok\n');
  });
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, address, resolve));
  const { port } = srv.address() as AddressInfo;
  return { url: `http://${address}:${port}`, runs: () => runs, close: () => new Promise((r) => srv.close(() => r())) };
}

function failureLines(failures: LoadFailure[]): string {
  return failures.slice(0, 20).map((f) => `  ${(f.at / 1000).toFixed(1)}s ${f.target} ${f.kind}: ${f.what}`).join('\n');
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const say = o.say ?? ((l: string) => console.log(l));
  const bound = o.settleBoundMs ?? DEFAULT_SETTLE_BOUND_MS;
  const fail = (message: string) => new ChaosFailure(message, o.seed, o.ops);
  say(`chaos: ${o.ops} operations, seed ${o.seed}; replay: ${replayCommand(o.ops, o.seed)}`);
  const bed = requireTestbed();
  const t0 = Date.now();
  await testbedCommandAsync('live-restore', 'on');
  const witness = await startWitness(bed.bridge.address ?? '10.77.0.1');
  const secret = `chaos-${randomBytes(12).toString('hex')}`;
  let daemon: BedDaemon | undefined;
  let load: LoadRun | undefined;
  const hosts = bed.hosts.slice(0, 3).map((h) => h.name);
  try {
    daemon = await startBedDaemonApps(chaosApps(witness.url), { bed, secrets: Object.fromEntries(APPS.map((app) => [app, { [SECRET_NAME]: secret }])) });
    let loadStart = Date.now();
    const windows: FaultWindow[] = [];
    const w: World = {
      bed,
      daemon,
      hosts,
      random: mulberry32(o.seed),
      secret,
      hookRuns: witness.runs,
      clock: () => Date.now() - loadStart,
      windows,
      openWindow(why, hs, apps, only503) {
        const win: FaultWindow = { why, hosts: hs, apps: [...apps], from: w.clock(), to: null, ...(only503 === undefined ? {} : { only503 }) };
        windows.push(win);
        return win;
      },
      say,
    };
    for (const app of APPS) await daemon.request('POST', `/v1/apps/${app}/releases`, { version: 'v1' });
    await settle(w, bound);
    loadStart = Date.now();
    load = startLoad({ targets: loadTargets(bed, hosts), clientsPerTarget: 2, slowClientsPerTarget: 1, slowPath: '/cgi-bin/slow?s=1', pauseMs: 40, maxDurationMs: o.ops * 10 * bound });
    const byOp: Record<string, number> = {};
    let longest = { ms: 0, op: '' };
    let seen = 0;
    for (let i = 1; i <= o.ops; i++) {
      const op = drawOp(w.random);
      byOp[op.name] = (byOp[op.name] ?? 0) + 1;
      const line = await op.run(w).catch((e: Error) => {
        throw fail(`op ${i} ${op.name}: ${e.message}`);
      });
      const ms = await settle(w, bound).catch((e: Error) => {
        throw fail(`after op ${i} ${op.name} (${line}): ${e.message}`);
      });
      for (const win of windows) win.to ??= w.clock();
      if (ms > longest.ms) longest = { ms, op: `${i} ${op.name}` };
      const bad = await violations(w);
      if (bad.length > 0) throw fail(`after op ${i} ${op.name} (${line}), settled in ${ms} ms:\n  ${bad.join('\n  ')}`);
      const snap = load.snapshot();
      const judged = judgeFailures(snap.failures, windows, w.clock());
      const fresh = snap.failures.slice(seen);
      seen = snap.failures.length;
      say(`[${i}/${o.ops}] ${op.name}: ${line}; settled in ${ms} ms; requests ${snap.requests}, failed ${snap.failures.length} (${judged.excused} in fault windows)`);
      if (fresh.length > 0) say(`  new: ${summarizeFailures(fresh)} on ${[...new Set(fresh.map((f) => f.target))].join(' ')}`);
      if (judged.unexcused.length > 0) throw fail(`after op ${i} ${op.name} (${line}): ${summarizeFailures(judged.unexcused)} outside any fault window:\n${failureLines(judged.unexcused)}`);
    }
    const report = await load.stop();
    load = undefined;
    const judged = judgeFailures(report.failures, windows, w.clock());
    if (judged.unexcused.length > 0) throw fail(`${summarizeFailures(judged.unexcused)} outside any fault window:\n${failureLines(judged.unexcused)}`);
    return {
      seed: o.seed,
      ops: o.ops,
      byOp,
      requests: report.requests,
      failed: report.failures.length,
      excused: judged.excused,
      longestConvergenceMs: longest.ms,
      longestConvergenceOp: longest.op,
      hookRuns: witness.runs(),
      durationMs: Date.now() - t0,
    };
  } catch (e) {
    const story = daemon ? await recentEvents(daemon).catch((err: Error) => `(no events: ${err.message})`) : '';
    if (e instanceof ChaosFailure) throw new ChaosFailure(`${e.bare}\n${story}`, o.seed, o.ops);
    throw fail(`${e instanceof InvariantError ? e.message : String((e as Error).stack ?? e)}\n${story}`);
  } finally {
    await load?.stop().catch(() => undefined);
    for (const h of hosts) await testbedCommandAsync('netup', h).catch(() => undefined);
    await daemon?.close().catch(() => undefined);
    await witness.close();
  }
}
