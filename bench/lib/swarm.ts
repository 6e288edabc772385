/**
 * Docker Swarm on the test hosts, as a peer to compare berth's rollout with
 * (docs/benchmarks.md): the three hosts' dockerds joined into one swarm, a global
 * service of the test app with a Docker HEALTHCHECK, and `docker service update
 * --image` timed to convergence. Per-host steps come from each daemon's own event
 * stream (create, start, health_status, kill, die), read live over the Docker socket
 * while the update runs.
 */
import { execFile, spawn } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import type { Testbed, TestbedHost } from '../../test/support/testbed.js';
import { cpuMeter } from './machine.js';
import { testbedCommand } from '../../test/support/testbed.js';

const pexec = promisify(execFile);

export async function docker(host: TestbedHost, args: string[], timeoutMs = 120_000): Promise<string> {
  const { stdout } = await pexec('docker', ['-H', `unix://${host.dockerSocket}`, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
  return stdout.trim();
}

async function dockerOk(host: TestbedHost, args: string[]): Promise<boolean> {
  return docker(host, args).then(
    () => true,
    () => false,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SwarmServiceConfig {
  name: string;
  /** Extra `docker service create` flags (health check timing, update config). */
  flags: string[];
  /** What the flags mean, for the report. */
  describe: string;
}

export interface DockerEventLite {
  host: string;
  action: string;
  id: string;
  image: string;
  service: string;
  /** Unix ms (daemon clock = this machine's clock). */
  at: number;
}

/** Streams container events of swarm services from every host until stopped. */
export function watchSwarmEvents(hosts: TestbedHost[]): { events: DockerEventLite[]; stop(): void; ready: Promise<void> } {
  const events: DockerEventLite[] = [];
  const reqs: http.ClientRequest[] = [];
  const readies: Promise<void>[] = [];
  for (const h of hosts) {
    const filters = JSON.stringify({ type: ['container'], label: ['com.docker.swarm.service.name'] });
    readies.push(
      new Promise<void>((resolve) => {
        const req = http.get({ socketPath: h.dockerSocket, path: `/events?filters=${encodeURIComponent(filters)}` }, (res) => {
          resolve();
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (!line) continue;
              try {
                const e = JSON.parse(line) as { Action?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; timeNano?: number };
                const attrs = e.Actor?.Attributes ?? {};
                if (!e.Action || e.Action.startsWith('exec_')) continue;
                events.push({
                  host: h.name,
                  action: e.Action,
                  id: e.Actor?.ID ?? '',
                  image: attrs.image ?? '',
                  service: attrs['com.docker.swarm.service.name'] ?? '',
                  at: (e.timeNano ?? 0) / 1e6,
                });
              } catch {
                /* a partial or odd line: ignore */
              }
            }
          });
          res.on('error', () => undefined);
        });
        req.on('error', () => resolve());
        reqs.push(req);
      }),
    );
  }
  return {
    events,
    ready: Promise.all(readies).then(() => undefined),
    stop: () => {
      for (const r of reqs) r.destroy();
    },
  };
}

export interface SwarmHostSteps {
  host: string;
  /** Times relative to the `docker service update` start, ms. */
  createdAt: number | null;
  startedAt: number | null;
  healthyAt: number | null;
  oldKillAt: number | null;
  oldDiedAt: number | null;
  /** The old container's `stop` event (or `die` when there is none). */
  oldStoppedAt: number | null;
  /** start event - create event (the create itself is before its event: not measurable here). */
  startMs: number | null;
  /** healthy - start: the first passing Docker health check. */
  readyMs: number | null;
  /** healthy - create: this host's share of the physical limit. */
  physicalMs: number | null;
  /** old kill - new healthy: how long Swarm took to begin stopping the old task. */
  stopAfterHealthyMs: number | null;
  /** old kill -> old stop event: the `docker stop` the agent runs. */
  stopMs: number | null;
}

export interface SwarmRun {
  service: string;
  from: string;
  to: string;
  /** `docker service update` wall time: what a user waits for. */
  cliMs: number;
  /** Last new task healthy (traffic could all be on the new version). */
  lastHealthyMs: number | null;
  /** Last old container stopped (the analogue of berth's Complete: old containers stopped). */
  lastOldStoppedMs: number | null;
  /** swarmkit's UpdateStatus: started relative to the command, and completed - started. */
  updateStartedMs: number | null;
  updateCompletedMs: number | null;
  limitMs: number | null;
  /** Between one host's new task healthy and the next host's new container created (parallelism 1). */
  handoverMs: number[];
  hosts: SwarmHostSteps[];
  converged: boolean;
  tasks: string;
  /** CPU use while the CLI ran: the whole machine and this (idle, waiting) process. */
  cpu: { machineBusyPct: number; thisProcessPct: number };
}

export class Swarm {
  private readonly hosts: TestbedHost[];
  private readonly manager: TestbedHost;
  private liveRestoreTouched = false;
  readonly log: string[] = [];

  constructor(
    bed: Testbed,
    hostCount = 3,
  ) {
    this.hosts = bed.hosts.slice(0, hostCount);
    this.manager = this.hosts[0]!;
  }

  private note(msg: string): void {
    this.log.push(msg);
    console.error(`[swarm] ${msg}`);
  }

  async liveRestore(host: TestbedHost): Promise<boolean> {
    return (await docker(host, ['info', '--format', '{{.LiveRestoreEnabled}}'])) === 'true';
  }

  async swarmState(host: TestbedHost): Promise<string> {
    return docker(host, ['info', '--format', '{{.Swarm.LocalNodeState}}']);
  }

  /** live-restore off (dockerd reloads it on SIGHUP), then init on h1 and join the others as workers. */
  async up(): Promise<void> {
    for (const h of this.hosts) if ((await this.swarmState(h)) !== 'inactive') await docker(h, ['swarm', 'leave', '--force']).catch(() => '');
    this.liveRestoreTouched = true;
    testbedCommand('live-restore', 'off');
    for (const h of this.hosts) {
      const deadline = Date.now() + 15_000;
      while (await this.liveRestore(h)) {
        if (Date.now() > deadline) throw new Error(`${h.name}: live-restore still on after SIGHUP`);
        await sleep(200);
      }
    }
    await docker(this.manager, ['swarm', 'init', '--advertise-addr', this.manager.address, '--listen-addr', `${this.manager.address}:2377`]);
    const token = await docker(this.manager, ['swarm', 'join-token', '-q', 'worker']);
    for (const h of this.hosts.slice(1)) {
      await docker(h, ['swarm', 'join', '--token', token, '--advertise-addr', h.address, '--listen-addr', `${h.address}:2377`, `${this.manager.address}:2377`]);
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const nodes = (await docker(this.manager, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}} {{.Availability}}'])).split('\n');
      const ready = nodes.filter((l) => / Ready Active$/.test(l)).length;
      if (ready === this.hosts.length) break;
      if (Date.now() > deadline) throw new Error(`swarm nodes not ready: ${nodes.join('; ')}`);
      await sleep(250);
    }
    this.note(`swarm of ${this.hosts.length} nodes (manager ${this.manager.name} ${this.manager.address}), live-restore off`);
  }

  /** The image has busybox: wget for the health check when its applet is there, else nc. */
  async healthCmd(image: string): Promise<string> {
    const hasWget = await dockerOk(this.manager, ['run', '--rm', '--entrypoint', '/bin/sh', image, '-c', 'command -v wget']);
    if (hasWget) return 'wget -q -O- http://127.0.0.1:3000/health || exit 1';
    return "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 3000 | head -1 | grep -q ' 200 ' || exit 1";
  }

  async createService(cfg: SwarmServiceConfig, image: string): Promise<void> {
    await docker(this.manager, ['service', 'rm', cfg.name]).catch(() => '');
    await docker(this.manager, ['service', 'create', '--detach=false', '-q', '--name', cfg.name, '--mode', 'global', '--init', ...cfg.flags, image], 180_000);
    this.note(`service ${cfg.name} created (${cfg.describe})`);
  }

  /** The daemons' API version, e.g. "1.41" (health start intervals need 1.44, Docker 25). */
  async apiVersion(): Promise<number> {
    return Number(await docker(this.manager, ['version', '--format', '{{.Server.APIVersion}}']));
  }

  private async spawnTimed(args: string[]): Promise<{ ms: number; code: number; out: string; t0: number }> {
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
      const p = spawn('docker', ['-H', `unix://${this.manager.dockerSocket}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('error', reject);
      p.on('close', (code) => resolve({ ms: Date.now() - t0, code: code ?? -1, out, t0 }));
    });
  }

  /** `docker service update --image` to convergence, timed, with per-host steps from the daemons' events. */
  async update(service: string, repo: string, from: string, to: string): Promise<SwarmRun> {
    const watcher = watchSwarmEvents(this.hosts);
    await watcher.ready;
    await sleep(50);
    const meter = cpuMeter();
    const r = await this.spawnTimed(['service', 'update', '--detach=false', '-q', '--image', `${repo}:${to}`, service]);
    const cpu = meter.stop();
    // Old tasks are stopped after the CLI may have returned: wait until every old container died (bounded).
    const deadline = Date.now() + 20_000;
    const isNew = (e: DockerEventLite) => e.image.startsWith(`${repo}:${to}`);
    const isOld = (e: DockerEventLite) => e.image.startsWith(`${repo}:${from}`);
    while (Date.now() < deadline) {
      const died = new Set(watcher.events.filter((e) => e.service === service && isOld(e) && e.action === 'stop' && e.at >= r.t0).map((e) => e.host));
      if (died.size >= this.hosts.length) break;
      await sleep(100);
    }
    await sleep(300);
    watcher.stop();
    if (r.code !== 0) throw new Error(`docker service update ${service} failed (${r.code}): ${r.out.trim()}`);

    const tasks = await docker(this.manager, ['service', 'ps', service, '--filter', 'desired-state=running', '--format', '{{.Node}} {{.Image}} {{.CurrentState}}']);
    const lines = tasks.split('\n').filter(Boolean);
    const converged = lines.length === this.hosts.length && lines.every((l) => l.includes(`${repo}:${to}`) && / Running /.test(` ${l} `));
    const status = JSON.parse(await docker(this.manager, ['service', 'inspect', service, '--format', '{{json .UpdateStatus}}'])) as { State?: string; StartedAt?: string; CompletedAt?: string } | null;
    const startedAt = status?.StartedAt ? Date.parse(status.StartedAt) : NaN;
    const completedAt = status?.CompletedAt ? Date.parse(status.CompletedAt) : NaN;

    const ev = watcher.events.filter((e) => e.service === service && e.at >= r.t0 - 5);
    const rel = (x: number | undefined) => (x === undefined ? null : x - r.t0);
    const hosts: SwarmHostSteps[] = this.hosts.map((h) => {
      const mine = ev.filter((e) => e.host === h.name);
      const created = mine.find((e) => isNew(e) && e.action === 'create');
      const started = mine.find((e) => isNew(e) && e.action === 'start' && (!created || e.id === created.id));
      const healthy = mine.find((e) => isNew(e) && e.action === 'health_status: healthy' && (!created || e.id === created.id));
      const oldKill = mine.find((e) => isOld(e) && e.action === 'kill');
      const oldDie = mine.find((e) => isOld(e) && e.action === 'die');
      // `stop` follows `die` once the daemon has cleaned up (network etc.), as berth's stop call returns then.
      const oldStop = mine.find((e) => isOld(e) && e.action === 'stop') ?? oldDie;
      const d = (a?: DockerEventLite, b?: DockerEventLite) => (a && b ? b.at - a.at : null);
      return {
        host: h.name,
        createdAt: rel(created?.at),
        startedAt: rel(started?.at),
        healthyAt: rel(healthy?.at),
        oldKillAt: rel(oldKill?.at),
        oldDiedAt: rel(oldDie?.at),
        oldStoppedAt: rel(oldStop?.at),
        startMs: d(created, started),
        readyMs: d(started, healthy),
        physicalMs: d(created, healthy),
        stopAfterHealthyMs: d(healthy, oldKill),
        stopMs: d(oldKill, oldStop),
      };
    });
    const order = [...hosts].filter((h) => h.createdAt !== null).sort((a, b) => a.createdAt! - b.createdAt!);
    const handoverMs: number[] = [];
    for (let i = 1; i < order.length; i++) if (order[i - 1]!.healthyAt !== null) handoverMs.push(order[i]!.createdAt! - order[i - 1]!.healthyAt!);
    const healthyAll = hosts.every((h) => h.healthyAt !== null);
    const stoppedAll = hosts.every((h) => h.oldStoppedAt !== null);
    const phys = hosts.map((h) => h.physicalMs);
    return {
      service,
      from,
      to,
      cliMs: r.ms,
      lastHealthyMs: healthyAll ? Math.max(...hosts.map((h) => h.healthyAt!)) : null,
      lastOldStoppedMs: stoppedAll ? Math.max(...hosts.map((h) => h.oldStoppedAt!)) : null,
      updateStartedMs: Number.isFinite(startedAt) ? startedAt - r.t0 : null,
      updateCompletedMs: Number.isFinite(completedAt - startedAt) ? completedAt - startedAt : null,
      limitMs: phys.every((x) => x !== null) ? phys.reduce((a, b) => a! + b!, 0) : null,
      handoverMs,
      hosts,
      converged: converged && status?.State === 'completed',
      tasks: lines.join('; '),
      cpu,
    };
  }

  async removeService(name: string): Promise<void> {
    await docker(this.manager, ['service', 'rm', name]).catch(() => '');
  }

  /**
   * Leaves the swarm on every host (workers first), waits for the service containers to
   * go, drops the networks swarm made, and turns live-restore back on. Safe to call twice.
   */
  async down(services: string[]): Promise<void> {
    for (const s of services) await this.removeService(s);
    // Service containers are removed by each node's agent: wait for them (bounded).
    const deadline = Date.now() + 30_000;
    for (const h of this.hosts) {
      while (Date.now() < deadline) {
        const left = await docker(h, ['ps', '-aq', '--filter', 'label=com.docker.swarm.service.name']).catch(() => '');
        if (!left) break;
        await sleep(250);
      }
    }
    for (const h of [...this.hosts.slice(1), this.manager]) {
      if ((await this.swarmState(h).catch(() => 'unknown')) !== 'inactive') await docker(h, ['swarm', 'leave', '--force']).catch((e: Error) => this.note(`${h.name}: swarm leave: ${e.message}`));
    }
    for (const h of this.hosts) {
      // Leftovers of swarm mode: containers it did not clean, the gateway bridge.
      const left = await docker(h, ['ps', '-aq', '--filter', 'label=com.docker.swarm.service.name']).catch(() => '');
      if (left) await docker(h, ['rm', '-f', ...left.split('\n')]).catch(() => '');
      await docker(h, ['network', 'rm', 'docker_gwbridge']).catch(() => '');
    }
    if (this.liveRestoreTouched) {
      testbedCommand('live-restore', 'on');
      for (const h of this.hosts) {
        const until = Date.now() + 15_000;
        while (!(await this.liveRestore(h).catch(() => false)) && Date.now() < until) await sleep(200);
      }
      this.liveRestoreTouched = false;
    }
    const states = await Promise.all(this.hosts.map(async (h) => `${h.name}=${await this.swarmState(h).catch(() => '?')}/live-restore=${await this.liveRestore(h).catch(() => '?')}`));
    this.note(`swarm left: ${states.join(' ')}`);
  }
}
