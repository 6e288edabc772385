/**
 * An in-process berth (store + controller + real SSH host drivers) over the test
 * hosts, for integration tests that need to look inside while a rollout runs. The
 * hosts, registry and containers are all real; only the HTTP layer is skipped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { AppSpec } from '../../src/domain/app-spec.js';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { createSshDriver } from '../../src/hosts/docker/driver.js';
import type { HostDriver, ObservedContainer } from '../../src/hosts/host-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { HaproxyProxy } from '../../src/proxy/haproxy-proxy.js';
import { directTraffic, type TrafficSwitch } from '../../src/proxy/traffic.js';
import { Controller } from '../../src/reconciler/controller.js';
import { AppSecretFiles } from '../../src/secrets/app-secrets.js';
import { openStore, type Store } from '../../src/store/index.js';
import { secretsDirPath } from '../../src/defaults.js';
import { makeSpec } from './fixtures.js';
import { hostSpecFor, requireTestbed, type Testbed } from './testbed.js';

export interface Fleet {
  bed: Testbed;
  store: Store;
  traffic: TrafficSwitch;
  controller: Controller;
  drivers: Map<string, HostDriver>;
  metrics: BerthMetrics;
  /** The app's secrets file lives here (writeAppSecrets(fleet.secrets.dir, …), test/support/secrets.ts). */
  secrets: AppSecretFiles;
  spec: AppSpec;
  deploy(version: string): number;
  rollback(version: string): number;
  waitFor(pred: (s: AppStatus, desiredRevision: number) => boolean, timeoutMs?: number): Promise<AppStatus>;
  /** Waits until the app's status is final for `revision`. */
  settle(revision: number, timeoutMs?: number): Promise<AppStatus>;
  containers(): Promise<Record<string, ObservedContainer[]>>;
  /** What each host's running app container(s) answer on GET /. */
  serving(): Promise<Record<string, string[]>>;
  events(): BerthEvent[];
  stop(): Promise<void>;
}

const quiet = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });

/** Removes every container of `app` on the bed's hosts (between tests). */
export async function clearApp(drivers: Map<string, HostDriver>, app: string): Promise<void> {
  await Promise.all(
    [...drivers.values()].map(async (d) => {
      for (const c of await d.listContainers({ app })) await d.removeContainer(c.id);
    }),
  );
}

export interface BedDrivers {
  drivers: Map<string, HostDriver>;
  /** Removes the app's containers and closes the connections. */
  close(): Promise<void>;
}

/** Real SSH drivers to the bed's first three hosts, with `app`'s leftovers removed first. */
export async function openBedDrivers(bed: Testbed, app: string, metrics?: BerthMetrics): Promise<BedDrivers> {
  const drivers = new Map<string, HostDriver>(
    bed.hosts.slice(0, 3).map((h) => [h.name, createSshDriver(hostSpecFor(bed, h), quiet, metrics ? { onOperation: metrics.hostOperationObserver(h.name) } : {})]),
  );
  await clearApp(drivers, app);
  return {
    drivers,
    async close() {
      await clearApp(drivers, app).finally(() => Promise.all([...drivers.values()].map((d) => d.close())));
    },
  };
}

export async function startFleet(app: string, overrides: Partial<AppSpec> = {}, opts: { proxy?: boolean } = {}): Promise<Fleet> {
  const bed = requireTestbed();
  const dir = mkdtempSync(join(tmpdir(), 'berth-fleet-'));
  const store = openStore(join(dir, 'berth.db'));
  const secrets = new AppSecretFiles(secretsDirPath(join(dir, 'berth.db')));
  const metrics = new BerthMetrics('test', { processMetrics: false });
  const { drivers } = await openBedDrivers(bed, app, metrics);
  const spec = makeSpec({ name: app, image: bed.images.app, hosts: [...drivers.keys()], ...overrides });
  store.apps.upsertApp(spec, 'test');
  const hostSpecs = Object.fromEntries(bed.hosts.slice(0, 3).map((h) => [h.name, hostSpecFor(bed, h)]));
  const traffic: TrafficSwitch = opts.proxy
    ? new HaproxyProxy({ drivers, hosts: hostSpecs, image: bed.images.haproxy, log: quiet, routesOn: (host) => store.apps.proxyRoutesOn(host), certificatesOn: () => [] })
    : directTraffic;
  const controller = new Controller({ store, drivers, traffic, metrics, log: quiet, resyncIntervalMs: 2_000, secrets });
  controller.start();

  const release = (version: string, reason: 'deploy' | 'rollback') => {
    const target = reason === 'rollback' ? store.releases.findLatestByVersion(app, version) : null;
    const r = store.releases.createRelease({ app, version, reason, actor: 'test', ...(target ? { spec: target.spec } : {}) });
    controller.enqueue(app);
    return r.revision;
  };

  const fleet: Fleet = {
    bed,
    store,
    traffic,
    controller,
    drivers,
    metrics,
    secrets,
    spec,
    deploy: (v) => release(v, 'deploy'),
    rollback: (v) => release(v, 'rollback'),
    async waitFor(pred, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = store.status.readStatus(app);
        const desired = store.releases.latestRelease(app)?.revision ?? 0;
        if (s && pred(s, desired)) return s;
        if (Date.now() > deadline) throw new Error(`timed out; last status: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async settle(revision, timeoutMs) {
      // Final when the rollout record of this revision reached a final state (or a newer revision took over),
      // and the pass that records it into the status has run.
      await fleet.waitFor((_s, desired) => {
        if (desired > revision) return true;
        const rec = store.status.getRollout(app);
        return rec?.revision === revision && ['complete', 'failed', 'paused'].includes(rec.state.state);
      }, timeoutMs);
      await controller.idle();
      return store.status.readStatus(app)!;
    },
    async containers() {
      const out: Record<string, ObservedContainer[]> = {};
      await Promise.all([...drivers].map(async ([h, d]) => (out[h] = (await d.listContainers({ app })).filter((c) => c.role === 'app'))));
      return out;
    },
    async serving() {
      const out: Record<string, string[]> = {};
      const all = await fleet.containers();
      await Promise.all(
        Object.entries(all).map(async ([h, cs]) => {
          const d = drivers.get(h)!;
          out[h] = await Promise.all(cs.filter((c) => c.running && c.ip).map(async (c) => (await d.httpGet(c.ip!, spec.port, '/', 3000)).body.trim()));
        }),
      );
      return out;
    },
    events: () => store.events.listEvents(app, { limit: 1000 }),
    async stop() {
      // The controller closed its drivers: clean up through fresh connections.
      await controller.stop();
      await (await openBedDrivers(bed, app)).close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fleet;
}

