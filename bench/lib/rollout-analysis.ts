/**
 * Turns the spans of one berth rollout (bench/lib/timing.ts) into per-host steps, the
 * physical limit, and the critical path split into what it is made of.
 *
 * The critical path of a rollout is the chain of reconcile passes (one app is never in
 * two passes at once). Inside a pass: pre (desired state read) -> observe (list on every
 * host + the proxy route, in parallel) -> plan + record -> execute (actions in parallel;
 * the critical one is the action that ends last, i.e. the chain of calls on the host whose
 * last call ends last) -> post (fold results, record) -> queue gap -> next pass.
 *
 * Every instant of [POST, Complete] is put in exactly one bucket:
 *   physical   create+start of the new container up to its first passing probe (incl.
 *              the container IP lookup and the probe interval waits): what must happen;
 *   switch     the proxy switch (admin API calls over SSH);
 *   drain      waiting for the old upstream to have no request in flight, then dropping it;
 *   stop       `docker stop` of the old container;
 *   observe    listing containers / reading the proxy route at the start of each pass;
 *   otherRemote any other host call on the critical chain (image check, network check,
 *              inspect before a drain, prune removes);
 *   controller no remote call in flight on the critical chain: berth's own CPU, SQLite
 *              writes and scheduling (sqlite is also shown on its own).
 */
import type { Span } from './timing.js';

export interface HostSteps {
  host: string;
  batch: number;
  reused: boolean;
  /** hasImage + ensureNetwork before the create (updateHost's preparation). */
  prepMs: number | null;
  createMs: number | null;
  startMs: number | null;
  /** From the end of `start` to the end of the first passing probe (IP lookup + probes + interval waits). */
  readyMs: number | null;
  probeAttempts: number;
  /** create (or start, for a reused container) begins -> first passing probe ends. */
  physicalMs: number | null;
  switchMs: number | null;
  drainMs: number | null;
  stopMs: number | null;
  /** Times relative to the POST. */
  createAt: number | null;
  healthyAt: number | null;
  switchedAt: number | null;
  stoppedAt: number | null;
}

export interface PassBreakdown {
  index: number;
  /** Start relative to the POST. */
  at: number;
  durationMs: number;
  /** Since the previous pass ended (or since the POST for the first pass). */
  queueBeforeMs: number;
  preMs: number;
  observeMs: number;
  planRecordMs: number;
  execMs: number;
  /** Non-remote time inside the critical action chain (between its calls). */
  execGapMs: number;
  postMs: number;
  /** What the critical chain of the execute phase spent, by bucket. */
  exec: { physical: number; switch: number; drain: number; stop: number; otherRemote: number };
  /** Non-remote total charged to this pass: queueBefore + pre + planRecord + execGap + post. */
  controllerMs: number;
  sqliteMs: number;
  /** Action kinds of the pass, e.g. "update h1, retire h3". */
  actions: string;
  criticalHost: string | null;
}

export type Bucket = 'physical' | 'switch' | 'drain' | 'stop' | 'observe' | 'otherRemote' | 'controller';

export interface RolloutAnalysis {
  totalMs: number;
  lastSwitchMs: number | null;
  limitMs: number;
  ratio: number;
  buckets: Record<Bucket, number>;
  sqliteMs: number;
  /** total minus the sum of the buckets (should be ~0: a self-check). */
  residualMs: number;
  passes: PassBreakdown[];
  hosts: HostSteps[];
  /** Every non-remote stretch on the critical path, in ms (queue gaps, pre, plan+record, gaps in actions, post). */
  gapsMs: number[];
}

type Interval = [number, number];

function union(intervals: Interval[]): Interval[] {
  const v = intervals.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const out: Interval[] = [];
  for (const [a, b] of v) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

const length = (iv: Interval[]) => iv.reduce((s, [a, b]) => s + (b - a), 0);

function clip(iv: Interval[], from: number, to: number): Interval[] {
  return iv.map(([a, b]): Interval => [Math.max(a, from), Math.min(b, to)]).filter(([a, b]) => b > a);
}

/** Removes `cut` from `iv`. */
function minus(iv: Interval[], cut: Interval[]): Interval[] {
  let out = iv;
  for (const [c0, c1] of cut) {
    const next: Interval[] = [];
    for (const [a, b] of out) {
      if (c1 <= a || c0 >= b) next.push([a, b]);
      else {
        if (c0 > a) next.push([a, c0]);
        if (c1 < b) next.push([c1, b]);
      }
    }
    out = next;
  }
  return out;
}

const EPS = 0.5; // ms: span ends recorded on both sides of an await can differ by scheduling

const isObserve = (s: Span) => (s.kind === 'host' && s.op === 'listContainers') || (s.kind === 'proxy' && s.op === 'observeRoute');
/** Pings come from the periodic resync (reachability), never from a rollout step. */
const isBackground = (s: Span) => s.kind === 'host' && s.op === 'ping';

/** Physical windows per host: [create (or start) t0, first passing probe t1]. */
function physicalWindows(spans: Span[]): Map<string, { iv: Interval; steps: Partial<HostSteps> }> {
  const out = new Map<string, { iv: Interval; steps: Partial<HostSteps> }>();
  const hostSpans = spans.filter((s) => s.kind === 'host').sort((a, b) => a.t0 - b.t0);
  const hosts = [...new Set(hostSpans.map((s) => s.host!))];
  for (const h of hosts) {
    const mine = hostSpans.filter((s) => s.host === h);
    const create = mine.find((s) => s.op === 'createContainer');
    const start = mine.find((s) => s.op === 'startContainer' && (!create || s.t0 >= create.t1 - EPS));
    if (!start) continue;
    const probes: Span[] = [];
    for (const s of mine) {
      if (s.op !== 'httpGet' || s.t0 < start.t1 - EPS) continue;
      probes.push(s);
      if (s.ok && typeof s.detail === 'number' && s.detail >= 200 && s.detail < 300) break;
    }
    const pass = probes.find((s) => s.ok && typeof s.detail === 'number' && s.detail >= 200 && s.detail < 300);
    if (!pass) continue;
    const begin = create ?? start;
    // updateHost's preparation: the image and network checks just before the create.
    const prep = mine.filter((s) => (s.op === 'hasImage' || s.op === 'ensureNetwork') && s.t1 <= begin.t0 + EPS && begin.t0 - s.t0 < 1000);
    const lastPrep = prep.filter((s) => s.op === 'ensureNetwork').pop();
    const firstPrep = lastPrep ? prep.filter((s) => s.t1 <= lastPrep.t0 + EPS && s.op === 'hasImage').pop() : undefined;
    out.set(h, {
      iv: [begin.t0, pass.t1],
      steps: {
        reused: !create,
        createMs: create ? create.t1 - create.t0 : null,
        startMs: start.t1 - start.t0,
        readyMs: pass.t1 - start.t1,
        probeAttempts: probes.length,
        physicalMs: pass.t1 - begin.t0,
        prepMs: firstPrep && lastPrep ? lastPrep.t1 - firstPrep.t0 : null,
        createAt: begin.t0,
        healthyAt: pass.t1,
      },
    });
  }
  return out;
}

export function analyzeRollout(all: Span[], opts: { t0: number; tComplete: number; hosts: string[]; parallelism: number }): RolloutAnalysis {
  const { t0: T0, tComplete: Tc, hosts, parallelism } = opts;
  const spans = all.filter((s) => s.t1 >= T0 - EPS && s.t0 <= Tc + EPS && !isBackground(s));
  // The pass that records Complete goes on (prune removes may follow the commit): it counts up to Tc.
  const passes = spans
    .filter((s) => s.kind === 'pass' && s.t0 >= T0 - EPS && s.t0 < Tc)
    .map((s) => ({ ...s, t1: Math.min(s.t1, Tc) }))
    .sort((a, b) => a.t0 - b.t0);
  const work = spans.filter((s) => s.kind === 'host' || s.kind === 'proxy');
  const sqlite = spans.filter((s) => s.kind === 'sqlite');
  const phys = physicalWindows(work.filter((s) => s.t0 >= T0 - EPS));

  const buckets: Record<Bucket, number> = { physical: 0, switch: 0, drain: 0, stop: 0, observe: 0, otherRemote: 0, controller: 0 };
  const gapsMs: number[] = [];
  const out: PassBreakdown[] = [];
  let prevEnd = T0;
  let sqliteTotal = 0;

  for (const [i, p] of passes.entries()) {
    const inPass = work.filter((s) => s.t0 >= p.t0 - EPS && s.t1 <= p.t1 + EPS);
    const observe = inPass.filter(isObserve);
    const observeStart = observe.length ? Math.min(...observe.map((s) => s.t0)) : p.t0;
    const observeEnd = observe.length ? Math.max(...observe.map((s) => s.t1)) : p.t0;
    // Execute-phase calls: everything after observation that is not itself observation
    // (the admin requests inside observeRoute are covered by its proxy span).
    const exec = inPass.filter((s) => !isObserve(s) && s.t0 >= observeEnd - EPS);
    const execStart = exec.length ? Math.min(...exec.map((s) => s.t0)) : p.t1;
    const execEnd = exec.length ? Math.max(...exec.map((s) => s.t1)) : p.t1;
    const queueBefore = Math.max(0, p.t0 - prevEnd);
    const pre = Math.max(0, observeStart - p.t0);
    const observeMs = Math.max(0, observeEnd - observeStart);
    const planRecord = Math.max(0, execStart - observeEnd);
    const post = Math.max(0, p.t1 - execEnd);
    const execB = { physical: 0, switch: 0, drain: 0, stop: 0, otherRemote: 0 };
    let execGap = 0;
    let criticalHost: string | null = null;
    const gapsHere: number[] = [];
    if (exec.length) {
      const last = exec.reduce((a, b) => (b.t1 > a.t1 ? b : a));
      criticalHost = last.host;
      const chain = exec.filter((s) => s.host === criticalHost);
      const window: Interval = [execStart, execEnd];
      // Priority: physical > switch > stop > drain > other remote; what is left is non-remote.
      let remaining: Interval[] = [window];
      const take = (iv: Interval[]): number => {
        const got = clip(union(iv), window[0], window[1]);
        const inter = union(got.flatMap((g) => clip(remaining, g[0], g[1])));
        remaining = minus(remaining, inter);
        return length(inter);
      };
      const ph = criticalHost ? phys.get(criticalHost) : undefined;
      execB.physical = take(ph ? [ph.iv] : []);
      execB.switch = take(chain.filter((s) => s.kind === 'proxy' && s.op === 'switchTo').map((s): Interval => [s.t0, s.t1]));
      execB.stop = take(chain.filter((s) => s.kind === 'host' && s.op === 'stopContainer').map((s): Interval => [s.t0, s.t1]));
      execB.drain = take(chain.filter((s) => s.kind === 'proxy' && s.op === 'drain').map((s): Interval => [s.t0, s.t1]));
      execB.otherRemote = take(chain.map((s): Interval => [s.t0, s.t1]));
      execGap = length(remaining);
      for (const [a, b] of remaining) gapsHere.push(b - a);
    }
    const sqliteMs = length(clip(union(sqlite.map((s): Interval => [s.t0, s.t1])), prevEnd, p.t1));
    sqliteTotal += sqliteMs;
    const controllerMs = queueBefore + pre + planRecord + execGap + post;
    gapsMs.push(queueBefore, pre, planRecord, ...gapsHere, post);
    buckets.observe += observeMs;
    buckets.physical += execB.physical;
    buckets.switch += execB.switch;
    buckets.drain += execB.drain;
    buckets.stop += execB.stop;
    buckets.otherRemote += execB.otherRemote;
    buckets.controller += controllerMs;
    const byHost = new Map<string, Set<string>>();
    for (const s of exec) {
      const kind =
        s.op === 'createContainer' || s.op === 'startContainer' || s.op === 'httpGet' || s.op === 'switchTo'
          ? 'update'
          : s.op === 'drain' || s.op === 'stopContainer'
            ? 'retire'
            : s.op === 'removeContainer'
              ? 'prune'
              : s.op === 'hasImage' && !exec.some((o) => o.host === s.host && (o.op === 'createContainer' || o.op === 'startContainer'))
                ? 'pull-check'
                : null;
      if (kind && s.host) byHost.set(s.host, (byHost.get(s.host) ?? new Set()).add(kind));
    }
    const actions = [...byHost].sort(([a], [b]) => a.localeCompare(b)).map(([h, k]) => `${[...k].join('+')} ${h}`).join(', ') || 'none';
    out.push({
      index: i + 1,
      at: p.t0 - T0,
      durationMs: p.t1 - p.t0,
      queueBeforeMs: queueBefore,
      preMs: pre,
      observeMs,
      planRecordMs: planRecord,
      execMs: exec.length ? execEnd - execStart : 0,
      execGapMs: execGap,
      postMs: post,
      exec: execB,
      controllerMs,
      sqliteMs,
      actions,
      criticalHost,
    });
    prevEnd = p.t1;
  }

  // Per-host steps over the whole rollout.
  const hostSteps: HostSteps[] = hosts.map((h, idx) => {
    const ph = phys.get(h);
    const mine = work.filter((s) => s.host === h && s.t0 >= T0 - EPS);
    const sw = mine.find((s) => s.kind === 'proxy' && s.op === 'switchTo');
    const dr = mine.find((s) => s.kind === 'proxy' && s.op === 'drain');
    const st = mine.find((s) => s.kind === 'host' && s.op === 'stopContainer');
    return {
      host: h,
      batch: Math.floor(idx / Math.max(1, parallelism)),
      reused: ph?.steps.reused ?? false,
      prepMs: ph?.steps.prepMs ?? null,
      createMs: ph?.steps.createMs ?? null,
      startMs: ph?.steps.startMs ?? null,
      readyMs: ph?.steps.readyMs ?? null,
      probeAttempts: ph?.steps.probeAttempts ?? 0,
      physicalMs: ph?.steps.physicalMs ?? null,
      switchMs: sw ? sw.t1 - sw.t0 : null,
      drainMs: dr ? dr.t1 - dr.t0 : null,
      stopMs: st ? st.t1 - st.t0 : null,
      createAt: ph ? ph.steps.createAt! - T0 : null,
      healthyAt: ph ? ph.steps.healthyAt! - T0 : null,
      switchedAt: sw ? sw.t1 - T0 : null,
      stoppedAt: st ? st.t1 - T0 : null,
    };
  });

  // The physical limit: batches in order, each as long as its slowest host's create+start+first passing probe.
  const batches = new Map<number, number>();
  for (const h of hostSteps) batches.set(h.batch, Math.max(batches.get(h.batch) ?? 0, h.physicalMs ?? NaN));
  const limitMs = [...batches.values()].reduce((a, b) => a + b, 0);
  const totalMs = Tc - T0;
  const sum = Object.values(buckets).reduce((a, b) => a + b, 0);
  const switched = hostSteps.map((h) => h.switchedAt).filter((x): x is number => x !== null);
  return {
    totalMs,
    lastSwitchMs: switched.length === hosts.length ? Math.max(...switched) : null,
    limitMs,
    ratio: totalMs / limitMs,
    buckets,
    sqliteMs: sqliteTotal,
    residualMs: totalMs - sum,
    passes: out,
    hosts: hostSteps,
    gapsMs,
  };
}
