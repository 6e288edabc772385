/**
 * Looking at one app of a real daemon on the test bed (bed-daemon.ts) the way an operator
 * does: its API view and events, what its hosts run, and what each host's proxy serves.
 *
 *   const app = bedApp(daemon, 'web', { proxyPort: 8201 });
 *   const r = await app.deploy('v2');
 *   await app.settled(r);                      // Complete, RolledBack, Failed or Paused
 *   assert.deepEqual(await app.served(), { h1: 'v2', h2: 'v2', h3: 'v2' });
 */
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import { bedNetworkView } from './testbed.js';
import { waitUntil } from './wait.js';
import type { BedDaemon } from './bed-daemon.js';

/** GET /v1/apps/:app, the fields tests read. */
export interface AppView {
  paused: boolean;
  status: AppStatus | null;
  desired: { revision: number; version: string } | null;
}

export interface BedApp {
  name: string;
  view(): Promise<AppView>;
  /** Every event of the app, oldest first. */
  events(): Promise<BerthEvent[]>;
  /** `revision's TYPE@host` lines since `revision`, for assertion messages. */
  story(revision: number): Promise<string>;
  /** POST /releases; the new revision. */
  deploy(version: string): Promise<number>;
  /** POST /pause or /resume. */
  setPaused(paused: boolean): Promise<void>;
  /**
   * Waits until `revision`'s rollout is over: Complete or RolledBack with it observed,
   * Failed or Paused (the app paused) while it is desired, or a newer revision (a rollback) observed.
   */
  settled(revision: number, timeoutMs?: number): Promise<AppView>;
  /** The app's containers (role app) per host. */
  containers(): Promise<Record<string, ObservedContainer[]>>;
  /** What GET / answers per host: through the host's proxy on `proxyPort`. */
  served(): Promise<Record<string, string>>;
}

/** `revision's TYPE@host: message` lines of an app's events since `revision`, for assertion messages. */
export async function appStory(daemon: BedDaemon, name: string, revision: number): Promise<string> {
  return (await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${name}/events?limit=1000`)).body.events
    .filter((e) => (e.revision ?? 0) >= revision)
    .map((e) => `r${e.revision} ${e.type}@${e.host ?? '-'}: ${e.message}`)
    .join('\n');
}

export function bedApp(daemon: BedDaemon, name: string, opts: { proxyPort: number }): BedApp {
  const hosts = daemon.bed.hosts.slice(0, 3);
  const app: BedApp = {
    name,
    view: async () => (await daemon.request<AppView>('GET', `/v1/apps/${name}`)).body,
    events: async () => (await daemon.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${name}/events?limit=1000`)).body.events,
    story: (revision) => appStory(daemon, name, revision),
    async deploy(version) {
      const res = await daemon.request<{ revision: number }>('POST', `/v1/apps/${name}/releases`, { version });
      if (res.status !== 202) throw new Error(`deploy ${name} ${version}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.revision;
    },
    async setPaused(paused) {
      const res = await daemon.request('POST', `/v1/apps/${name}/${paused ? 'pause' : 'resume'}`, {});
      if (res.status !== 200) throw new Error(`${paused ? 'pause' : 'resume'} ${name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    },
    async settled(revision, timeoutMs = 60_000) {
      try {
        return await waitUntil(
          `${name} revision ${revision} to settle`,
          async () => {
            const v = await app.view().catch(() => null);
            const s = v?.status;
            if (!v || !s) return null;
            const desired = v.desired?.revision ?? 0;
            if ((s.phase === 'Complete' || s.phase === 'RolledBack') && (s.observedRevision ?? 0) >= revision && s.observedRevision === desired) return v;
            if (s.phase === 'Failed' && desired === revision) return v;
            // Paused only while the app is: right after a resume the status still says Paused until the next pass.
            if (s.phase === 'Paused' && v.paused && desired === revision) return v;
            return null;
          },
          { timeoutMs },
        );
      } catch (e) {
        throw new Error(`${(e as Error).message}; status ${JSON.stringify((await app.view()).status)}\n${await app.story(revision)}\n${bedNetworkView(daemon.bed)}`);
      }
    },
    async containers() {
      const out: Record<string, ObservedContainer[]> = {};
      await Promise.all([...daemon.drivers].map(async ([h, d]) => (out[h] = (await d.listContainers({ app: name })).filter((c) => c.role === 'app'))));
      return out;
    },
    async served() {
      const out: Record<string, string> = {};
      await Promise.all(
        hosts.map(async (h) => {
          const res = await fetch(`http://${h.address}:${opts.proxyPort}/`, { signal: AbortSignal.timeout(3000) }).catch((e: Error) => e);
          out[h.name] = res instanceof Error ? `error ${res.message}` : res.ok ? (await res.text()).trim() : `HTTP ${res.status}`;
        }),
      );
      return out;
    },
  };
  return app;
}
