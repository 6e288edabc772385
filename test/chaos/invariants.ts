/**
 * After each operation: wait until the fleet has settled (converged per the daemon's
 * status AND as observed on the hosts and through their proxies), within a bound; then
 * check what must hold once it has: no duplicate or orphan container, hooks ran exactly
 * once per release, history/status/events/metrics agree, the secret appears nowhere.
 */
import type { BerthEvent } from '../../src/domain/release.js';
import { PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { PROXY_APP_LABEL } from '../../src/proxy/haproxy-proxy.js';
import type { BedDaemon } from '../support/bed-daemon.js';
import { APPS, HOOK_APP, RETAIN, SECRET_NAME, appTarget, getServed, sleep, type AppView, type ChaosApp, type World } from './world.js';

export class InvariantError extends Error {
  readonly code = 'CHAOS_INVARIANT';
}

async function views(w: World): Promise<Record<ChaosApp, AppView>> {
  const out = {} as Record<ChaosApp, AppView>;
  for (const app of APPS) out[app] = (await w.daemon.request<AppView>('GET', `/v1/apps/${app}`)).body;
  return out;
}

type Release = { revision: number; version: string; reason: string };

/**
 * The release the fleet must serve once settled: the desired one, converged; or, when the
 * desired release is a rollback whose rollout failed (a named version, or one that
 * completed once and fails now; a failed rollback is not rolled back again: plan.ts),
 * the stable release the status still observes, with the app Failed.
 * A string says why it is not settled yet.
 */
async function target(w: World, app: ChaosApp, v: AppView): Promise<Release | string> {
  const { desired, status } = v;
  if (!desired) return `${app}: no release`;
  if (status?.observedRevision === desired.revision && ['Complete', 'RolledBack'].includes(status.phase ?? '')) return desired;
  // Failed must be the desired rollback's own failure, not the one before it still shown (its rollback just created).
  const failedItself = async () => (await allEvents(w.daemon, app)).some((e) => e.type === 'RolloutFailed' && e.revision === desired.revision);
  if (status?.phase === 'Failed' && desired.reason === 'rollback' && status.observedRevision !== null && (await failedItself())) {
    const stable = (await w.daemon.request<{ releases: Release[] }>('GET', `/v1/apps/${app}/releases?before=${status.observedRevision + 1}&limit=1`)).body.releases[0];
    if (stable) return stable;
  }
  return `${app}: status r${status?.observedRevision} ${status?.phase}, desired r${desired.revision} ${desired.version}`;
}

/** Why the fleet has not converged yet ('' once it has). */
async function notConverged(w: World): Promise<string> {
  const all = await views(w);
  for (const app of APPS) {
    const { status, paused, maintenance } = all[app];
    if (paused || maintenance !== null) return `${app}: paused ${paused}, maintenance ${maintenance}`;
    const want = await target(w, app, all[app]);
    if (typeof want === 'string') return want;
    // A failed rollback's status keeps the failed attempt's health per host (seen: `h1:v1:unhealthy` while h1 served
    // v1): then the version must match, and the hosts and proxies below say whether it serves.
    const off = status!.hosts.filter((h) => h.version !== want.version || (want.revision === all[app].desired!.revision && h.health !== 'healthy'));
    if (status!.hosts.length !== w.hosts.length || off.length > 0) return `${app}: status hosts ${JSON.stringify(status!.hosts.map((h) => `${h.host}:${h.version}:${h.health}`))}, want ${want.version}`;
    for (const host of w.hosts) {
      const running = (await w.daemon.drivers.get(host)!.listContainers({ app })).filter((c) => c.role === 'app' && c.running);
      if (running.length !== 1 || running[0]!.version !== want.version) return `${app}@${host}: running ${running.map((c) => `${c.name}:${c.version}`).join(' ') || 'nothing'}, want ${want.version}`;
      const served = await getServed(appTarget(w.bed, app, host));
      if (served !== `200 ${want.version}`) return `${app}@${host}: proxy answers ${served}, want ${want.version}`;
    }
  }
  return '';
}

/** Waits until converged; the ms it took. Throws (with the last reason) after `boundMs`. */
export async function settle(w: World, boundMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    // The test's own SSH connection may still be reconnecting after a cut link or a dockerd restart: not converged yet.
    const why = await notConverged(w).catch((e: Error) => `looking: ${e.message}`);
    if (why === '') return Date.now() - t0;
    if (Date.now() - t0 > boundMs) throw new InvariantError(`not converged within ${boundMs} ms: ${why}`);
    await sleep(250);
  }
}

/** Every event of `app` so far (paged through ?after=). */
export async function allEvents(daemon: BedDaemon, app: string): Promise<BerthEvent[]> {
  const out: BerthEvent[] = [];
  let after = 0;
  for (;;) {
    const page = (await daemon.request<{ events: BerthEvent[]; next: number | null }>('GET', `/v1/apps/${app}/events?after=${after}&limit=1000`)).body;
    out.push(...page.events);
    if (page.next === null) return out;
    after = page.next;
  }
}

/** `name{a="x",b="y"} value` lines of the exposition, as label maps and values. */
function series(metrics: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of metrics.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    out.push({ labels: Object.fromEntries([...m[2]!.matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!])), value: Number(m[3]) });
  }
  return out;
}

const PRE_DEPLOY_OUTPUT = /^pre_deploy\[0\] /;

/** The invariants of a settled fleet; a list of violations (empty = all hold). */
export async function violations(w: World): Promise<string[]> {
  const bad: string[] = [];
  const all = await views(w);
  const metrics = await fetch(`${w.daemon.url}/metrics`).then((r) => r.text());
  const texts: Array<[string, string]> = [['GET /v1/apps/:app', JSON.stringify(all)], ['/metrics', metrics]];
  let hookOutputs = 0;
  for (const app of APPS) {
    const { desired, status } = all[app];
    const want = await target(w, app, all[app]);
    if (typeof want === 'string') throw new InvariantError(`settled, then not: ${want}`);
    const releases = (await w.daemon.request<{ releases: Array<{ revision: number; version: string; reason: string }> }>('GET', `/v1/apps/${app}/releases?limit=1000`)).body.releases;
    const events = await allEvents(w.daemon, app);
    texts.push([`${app} history`, JSON.stringify(releases)], [`${app} events`, JSON.stringify(events)]);
    // History, status, events and metrics agree.
    if (releases[0]?.revision !== desired!.revision || releases[0]?.version !== desired!.version) bad.push(`${app}: history head r${releases[0]?.revision} ${releases[0]?.version}, desired r${desired!.revision} ${desired!.version}`);
    if (!events.some((e) => e.type === 'RolloutComplete' && e.revision === want.revision)) bad.push(`${app}: no RolloutComplete event for the converged r${want.revision}`);
    if (want.revision !== desired!.revision && !events.some((e) => e.type === 'RolloutFailed' && e.revision === desired!.revision)) bad.push(`${app}: r${desired!.revision} Failed without a RolloutFailed event`);
    const gauge = (name: string) => series(metrics, name).find((s) => s.labels.app === app)?.value;
    if (gauge('berth_release_desired_revision') !== desired!.revision) bad.push(`${app}: berth_release_desired_revision ${gauge('berth_release_desired_revision')}, desired r${desired!.revision}`);
    if (gauge('berth_release_observed_revision') !== status!.observedRevision) bad.push(`${app}: berth_release_observed_revision ${gauge('berth_release_observed_revision')}, status r${status!.observedRevision}`);
    const phases = series(metrics, 'berth_rollout_phase').filter((s) => s.labels.app === app && s.value === 1).map((s) => s.labels.phase);
    if (phases.length !== 1 || phases[0] !== status!.phase) bad.push(`${app}: berth_rollout_phase current ${JSON.stringify(phases)}, status ${status!.phase}`);
    // Containers: one per revision, none of a revision history does not know, pruned, no one-off left.
    const known = new Set(releases.map((r) => r.revision));
    for (const host of w.hosts) {
      const cs = await w.daemon.drivers.get(host)!.listContainers({ app });
      const apps = cs.filter((c) => c.role === 'app');
      const revs = apps.map((c) => c.revision);
      if (new Set(revs).size !== revs.length) bad.push(`${app}@${host}: duplicate containers ${apps.map((c) => c.name).join(' ')}`);
      const orphans = cs.filter((c) => c.role !== 'app' || !known.has(c.revision));
      if (orphans.length > 0) bad.push(`${app}@${host}: orphan containers ${orphans.map((c) => `${c.name}(${c.role})`).join(' ')}`);
      if (apps.length > RETAIN + 1) bad.push(`${app}@${host}: ${apps.length} containers, retain_containers is ${RETAIN} (+1 running)`);
    }
    // Hooks: at most one run per revision, exactly one for a deploy that reached the hosts.
    if (app === HOOK_APP) {
      const runs = new Map<number, number>();
      for (const e of events) {
        if (e.type !== 'HookOutput' || !PRE_DEPLOY_OUTPUT.test(e.message)) continue;
        runs.set(e.revision!, (runs.get(e.revision!) ?? 0) + 1);
        // The hook echoes the secret: its output must come back with the value redacted.
        if (!e.message.includes(`[redacted:${SECRET_NAME}]`)) bad.push(`${app} r${e.revision}: hook output without the redacted secret: ${e.message.replaceAll(w.secret, `<${SECRET_NAME} value>`)}`);
      }
      hookOutputs = [...runs.values()].reduce((a, b) => a + b, 0);
      const started = new Set(events.filter((e) => e.type === 'ContainerStarted').map((e) => e.revision));
      for (const r of releases) {
        const n = runs.get(r.revision) ?? 0;
        if (n > 1) bad.push(`${app} r${r.revision}: pre_deploy ran ${n} times`);
        if (n === 0 && r.reason === 'deploy' && started.has(r.revision)) bad.push(`${app} r${r.revision} (${r.version}) reached the hosts without its pre_deploy hook`);
      }
    }
  }
  if (w.hookRuns() !== hookOutputs) bad.push(`${HOOK_APP}: the witness saw ${w.hookRuns()} pre_deploy runs, events record ${hookOutputs}`);
  // One proxy per host.
  for (const host of w.hosts) {
    const proxies = (await w.daemon.drivers.get(host)!.listContainers({ app: PROXY_APP_LABEL })).filter((c) => c.name === PROXY_CONTAINER_NAME && c.running);
    if (proxies.length !== 1) bad.push(`${host}: ${proxies.length} running proxies`);
  }
  // The secret: in no response, event or log line.
  texts.push(['the daemon log', w.daemon.output()]);
  for (const [where, text] of texts) if (text.includes(w.secret)) bad.push(`the value of ${SECRET_NAME} appears in ${where}`);
  return bad;
}
