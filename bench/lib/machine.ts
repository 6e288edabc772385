/** What the numbers were taken on: recorded in every results file. */
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

function sh(cmd: string): string {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return '?';
  }
}

export interface Machine {
  nproc: string;
  cpu: string;
  free: string;
  node: string;
  kernel: string;
  docker: { client: string; server: string };
  commit: string;
  /** `git status --porcelain -- src` at the start: empty when the measured code is the commit's. */
  srcChanges: string;
  loadavg: number[];
  date: string;
}

export function machine(dockerSocket?: string): Machine {
  const host = dockerSocket ? `-H unix://${dockerSocket} ` : '';
  return {
    nproc: sh('nproc'),
    cpu: os.cpus()[0]?.model ?? '?',
    free: sh('free -h'),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    docker: {
      client: sh(`docker ${host}version --format '{{.Client.Version}}'`),
      server: sh(`docker ${host}version --format '{{.Server.Version}}'`),
    },
    commit: process.env.BENCH_COMMIT ?? sh('git rev-parse --short HEAD'),
    srcChanges: process.env.BENCH_SRC_CHANGES ?? sh('git status --porcelain -- src'),
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Jiffies of all CPUs from /proc/stat: busy and total. */
function cpuTimes(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/**
 * How busy the machine and this process were between start() and stop(): the share of all
 * CPUs in use (any process: the hosts' dockerds, containerd, sshd, HAProxy, other jobs) and the
 * share this process used, both in % of the whole machine.
 */
export function cpuMeter(): { stop(): { machineBusyPct: number; thisProcessPct: number } } {
  const m0 = cpuTimes();
  const p0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  return {
    stop() {
      const m1 = cpuTimes();
      const p = process.cpuUsage(p0);
      const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
      const cpus = os.cpus().length || 1;
      return {
        machineBusyPct: Math.round((1000 * (m1.busy - m0.busy)) / (m1.total - m0.total)) / 10,
        thisProcessPct: Math.round((1000 * (p.user + p.system)) / (wallUs * cpus)) / 10,
      };
    },
  };
}
