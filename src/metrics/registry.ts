import { Readable } from 'node:stream';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AppPhase } from '../domain/release.js';
import { expositionChunks, renderExposition } from './exposition.js';
import { SparseBoundsHistogram } from './sparse-histogram.js';

export const PHASES: readonly AppPhase[] = ['Progressing', 'Complete', 'Failed', 'Paused', 'RolledBack'];

/** Seconds buckets for whole rollouts (1 s .. 30 min). */
const ROLLOUT_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800];
/** Seconds buckets for single steps and remote calls (5 ms .. 60 s). */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * berth's own registry (never prom-client's global one), holding every series of
 * docs/observability.md ("Metrics reference"; README.md "Metrics" lists the same) plus
 * the process_* / nodejs_* metrics of prom-client's collectDefaultMetrics. Label values are app names, host
 * names, phases and small enums only: never revisions or container ids.
 */
export interface RolloutGauges {
  desiredRevision: number;
  observedRevision: number | null;
  phase: AppPhase | null;
  hostsTotal: number;
  hostsUpdated: number;
}

export class BerthMetrics {
  readonly registry = new Registry();

  readonly reconcileTotal = new Counter({
    name: 'berth_reconcile_total',
    help: 'Reconcile passes by result (acted, waiting, converged, error).',
    labelNames: ['app', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'berth_reconcile_duration_seconds',
    help: 'Wall time of one reconcile pass (observe + plan + execute + record).',
    labelNames: ['app'] as const,
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'berth_queue_depth',
    help: 'Apps waiting in the reconcile work queue.',
    registers: [this.registry],
  });
  readonly desiredRevision = new Gauge({
    name: 'berth_release_desired_revision',
    help: 'Newest (desired) release revision of the app.',
    labelNames: ['app'] as const,
    registers: [this.registry],
  });
  readonly observedRevision = new Gauge({
    name: 'berth_release_observed_revision',
    help: 'Release revision the controller last finished reconciling for the app.',
    labelNames: ['app'] as const,
    registers: [this.registry],
  });
  readonly rolloutHosts = new Gauge({
    name: 'berth_rollout_hosts',
    help: 'Hosts the current rollout of the app covers.',
    labelNames: ['app'] as const,
    registers: [this.registry],
  });
  readonly rolloutHostsUpdated = new Gauge({
    name: 'berth_rollout_hosts_updated',
    help: 'Hosts serving the desired release of the app.',
    labelNames: ['app'] as const,
    registers: [this.registry],
  });
  readonly rolloutPhase = new Gauge({
    name: 'berth_rollout_phase',
    help: 'Current phase of the app (1 for the current phase, 0 for the others).',
    labelNames: ['app', 'phase'] as const,
    registers: [this.registry],
  });
  // One series per app and result, with bounds up to 1,800: kept small (sparse-histogram.ts).
  readonly rolloutDuration = new SparseBoundsHistogram({
    name: 'berth_rollout_duration_seconds',
    help: 'Wall time of finished rollouts by result (complete, failed, rolled_back).',
    labelNames: ['app', 'result'] as const,
    buckets: ROLLOUT_BUCKETS,
    registers: [this.registry],
  });
  readonly healthChecksTotal = new Counter({
    name: 'berth_health_checks_total',
    help: 'Health probe attempts by result (pass, fail).',
    labelNames: ['app', 'host', 'result'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'berth_leader',
    help: '1 while this daemon leads (reconciles), 0 while it stands by (several daemons on one PostgreSQL store).',
    registers: [this.registry],
  });
  readonly hostUp = new Gauge({
    name: 'berth_host_up',
    help: '1 when the host answered its last Docker call over its connection, 0 when not.',
    labelNames: ['host'] as const,
    registers: [this.registry],
  });
  readonly hostOperationDuration = new Histogram({
    name: 'berth_host_operation_duration_seconds',
    help: 'Duration of remote Docker operations by host and operation.',
    labelNames: ['host', 'op'] as const,
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });
  readonly rollbacksTotal = new Counter({
    name: 'berth_rollbacks_total',
    help: 'Rollback releases by reason: health_check_failed, progress_deadline (automatic) or manual (asked for).',
    labelNames: ['app', 'reason'] as const,
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: 'berth_certificate_expiry_timestamp_seconds',
    help: 'When the certificate the proxies serve for the host name stops being valid (Unix time), per app routed by it.',
    labelNames: ['app', 'host_name'] as const,
    registers: [this.registry],
  });
  readonly certificateOrdersTotal = new Counter({
    name: 'berth_certificate_orders_total',
    help: 'ACME orders by result: issued or failed.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly buildInfo = new Gauge({
    name: 'berth_build_info',
    help: 'Always 1; the version label names the running berth.',
    labelNames: ['version'] as const,
    registers: [this.registry],
  });
  readonly httpRequestDuration = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'API request duration by method, route template and status class.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: STEP_BUCKETS,
    registers: [this.registry],
  });

  constructor(version: string, opts: { processMetrics?: boolean } = {}) {
    this.buildInfo.set({ version }, 1);
    // prom-client's standard process_* / nodejs_* names, unprefixed: what stock Node.js dashboards query.
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * What setRollout last set, per app: a converged app's pass sets the same values every
   * resync, and each of prom-client's 9 sets hashes its labels anew (6% of what a no-op
   * pass allocated at 10,000 apps). Nothing else sets these gauges.
   */
  private readonly rolloutSet = new Map<string, RolloutGauges>();

  /** The per-app rollout gauges, set after every pass (and at start from the stored status). */
  setRollout(app: string, r: RolloutGauges): void {
    const last = this.rolloutSet.get(app);
    if (last && last.desiredRevision === r.desiredRevision && last.observedRevision === r.observedRevision && last.phase === r.phase && last.hostsTotal === r.hostsTotal && last.hostsUpdated === r.hostsUpdated) return;
    this.rolloutSet.set(app, { ...r });
    this.desiredRevision.set({ app }, r.desiredRevision);
    if (r.observedRevision !== null) this.observedRevision.set({ app }, r.observedRevision);
    this.rolloutHosts.set({ app }, r.hostsTotal);
    this.rolloutHostsUpdated.set({ app }, r.hostsUpdated);
    this.setPhase(app, r.phase);
  }

  setPhase(app: string, phase: AppPhase | null): void {
    for (const p of PHASES) this.rolloutPhase.set({ app, phase: p }, p === phase ? 1 : 0);
  }

  /** Drops every series labelled with `app` (a deleted app): a dashboard must not show it frozen at its last values. */
  async forgetApp(app: string): Promise<void> {
    // getMetricsAsArray is typed as plain descriptions; the objects are the metrics registered above.
    for (const metric of this.registry.getMetricsAsArray() as unknown as Array<Counter | Gauge | Histogram>) {
      const { values } = await metric.get();
      // Histograms list each series once per bucket, _sum and _count: one remove per label set.
      const labelSets = new Map<string, Record<string, string | number>>();
      for (const v of values) {
        if (v.labels.app !== app) continue;
        const labels: Record<string, string | number> = {};
        for (const [k, val] of Object.entries(v.labels)) if (k !== 'le' && val !== undefined) labels[k] = val;
        labelSets.set(JSON.stringify(labels), labels);
      }
      for (const labels of labelSets.values()) metric.remove(labels);
    }
    // After the removes: a pass that set the gauges meanwhile sets them again next time.
    this.rolloutSet.delete(app);
  }

  /** The host driver's onOperation hook for `host`. */
  hostOperationObserver(host: string): (op: string, seconds: number) => void {
    return (op, seconds) => this.hostOperationDuration.observe({ host, op }, seconds);
  }

  /**
   * The text exposition served on /metrics, as a byte stream written a chunk per turn of
   * the event loop (same samples as registry.metrics(), faster: see exposition.ts).
   * Written as it is read: a slow reader slows the writing, and destroying the stream
   * stops it.
   */
  stream(): Readable {
    return Readable.from(expositionChunks(this.registry), { objectMode: false });
  }

  /** The same text, whole (tests and benches). */
  async text(): Promise<string> {
    return renderExposition(this.registry);
  }
}
