import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Registry } from 'prom-client';

/**
 * The Prometheus text exposition (format 0.0.4) of a registry: the samples of
 * prom-client's registry.metrics(), written several times faster, in chunks of about
 * CHUNK_CHARS characters with a turn of the event loop between two chunks.
 *
 * A scrape's size grows with the fleet: 10,000 apps on 1,000 hosts are some 840,000
 * samples, 64 MB of text (docs/benchmarks.md, "A /metrics scrape at 10,000 apps").
 * Written in one piece that held the event loop for 0.2-1.2 s, and a cache of every
 * series' rendered text kept 222 MiB of heap between scrapes. Here nothing is kept from
 * one scrape to the next, no turn writes more than one chunk, and GET /metrics streams
 * the chunks (BerthMetrics.stream()), so the whole text never exists at once. A family's series are those of its `hashMap` when the family begins;
 * each is written with its values when its turn comes (a series removed meanwhile is
 * left out): a scrape is not a snapshot, as prom-client's is not either.
 *
 * The series are read from prom-client's internals (`hashMap` of {labels, value} or
 * {labels, bucketValues, sum, count}, and `upperBounds`; the same from v13 to v15),
 * where registry.metrics() builds an object per sample and formats its labels each
 * time. A metric without that shape, one of type summary, or a registry with default
 * labels goes through prom-client's public API (`onFallback` is told which, and why).
 * prom-client is pinned to an exact version in package.json for this;
 * test/unit/metrics.test.ts checks that both writers emit the same samples, that
 * berth's own and the process metrics all take the fast path (so an upgrade that moves
 * these fields fails there), and that the fallback matches registry.metrics().
 *
 * One deliberate difference: NaN is written `NaN` (the format's spelling), where
 * prom-client writes `Nan`.
 */
export async function* expositionChunks(registry: Registry, opts: ExpositionOptions = {}): AsyncGenerator<string, void, undefined> {
  const metrics = registry.getMetricsAsArray() as unknown as MetricLike[];
  const labels = defaultLabelsFallback(registry);
  if (labels) {
    for (const m of metrics) opts.onFallback?.(m.name, labels);
    yield await registry.metrics();
    return;
  }
  const out = new Chunks();
  for (const [i, m] of metrics.entries()) {
    if (i > 0) out.write('\n\n');
    yield* writeFamily(registry, m, out, opts.onFallback);
    if (out.full) {
      yield out.take();
      await nextTurn();
    }
  }
  out.write('\n');
  yield out.take();
}

/** The whole exposition as one string (for tests and benches; GET /metrics streams expositionChunks). */
export async function renderExposition(registry: Registry, opts: ExpositionOptions = {}): Promise<string> {
  const parts: string[] = [];
  for await (const chunk of expositionChunks(registry, opts)) parts.push(chunk);
  return parts.join('');
}

/**
 * About 64 K characters (~1,300 samples) a chunk: about half a millisecond of writing
 * on the 2-CPU machine of docs/benchmarks.md, and few enough chunks (~1,000 for the
 * 64 MB of 10,000 apps) that the turns between them cost nothing measurable.
 */
export const CHUNK_CHARS = 64 * 1024;

/**
 * The text being written, handed out a chunk at a time. Its pieces are joined when the
 * chunk is taken: one flat string, where `+=` would leave a tree of ~1,300 small strings
 * for the socket write to walk and the collector to trace.
 */
class Chunks {
  private parts: string[] = [];
  private size = 0;

  write(s: string): void {
    this.parts.push(s);
    this.size += s.length;
  }

  get full(): boolean {
    return this.size >= CHUNK_CHARS;
  }

  take(): string {
    const s = this.parts.join('');
    this.parts = [];
    this.size = 0;
    return s;
  }
}

/** Why a metric was written through prom-client's public API rather than from its internals. */
export type FallbackReason =
  /** The registry has default labels (merged into every series by prom-client's writer). */
  | 'default-labels'
  /** The registry has no `_defaultLabels` field: it may have default labels this writer cannot see. */
  | 'no-default-labels-field'
  /** A summary, or a type this writer does not know. */
  | 'type'
  /** The metric has no `hashMap` of series. */
  | 'no-hashMap'
  /** A histogram without `upperBounds`. */
  | 'no-upperBounds'
  /** A series in `hashMap` is not {labels, value} (counter, gauge) or {labels, bucketValues, sum, count} (histogram). */
  | 'series-shape';

export interface ExpositionOptions {
  /** Told about each metric that took the fallback, and why (for tests: see test/unit/metrics.test.ts). */
  onFallback?: (metric: string, reason: FallbackReason) => void;
}

type Labels = Record<string, string | number>;

interface MetricLike {
  name: string;
  help: string;
  type: string;
  hashMap?: unknown;
  upperBounds?: unknown;
  collect?: () => unknown;
  get?: () => Promise<{ values: Array<{ value: number; labels: Labels; metricName?: string }> }>;
}

interface HistogramChild {
  labels: Labels;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

interface ValueChild {
  labels: Labels;
  value: number;
}

function defaultLabelsFallback(registry: Registry): FallbackReason | null {
  const d = (registry as unknown as { _defaultLabels?: Record<string, unknown> })._defaultLabels;
  if (d === undefined) return 'no-default-labels-field';
  return Object.keys(d).length > 0 ? 'default-labels' : null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

const isHistogramChild = (c: unknown): c is HistogramChild =>
  isRecord(c) && isRecord(c.labels) && isRecord(c.bucketValues) && typeof c.count === 'number' && typeof c.sum === 'number';
const isValueChild = (c: unknown): c is ValueChild => isRecord(c) && isRecord(c.labels) && typeof c.value === 'number';

/** Why `m` cannot be written from prom-client's internals, as far as the metric object shows; null when it can. */
function metricFallback(m: MetricLike): FallbackReason | null {
  if (m.type !== 'counter' && m.type !== 'gauge' && m.type !== 'histogram') return 'type';
  if (!isRecord(m.hashMap)) return 'no-hashMap';
  if (m.type === 'histogram' && !Array.isArray(m.upperBounds)) return 'no-upperBounds';
  return null;
}

/**
 * Writes one family, handing out each chunk as it fills. Whether its series can be read
 * is decided before anything of it is written: a chunk handed out cannot be taken back.
 */
async function* writeFamily(registry: Registry, m: MetricLike, out: Chunks, onFallback: ExpositionOptions['onFallback']): AsyncGenerator<string, void, undefined> {
  const series = await seriesOf(m);
  if (typeof series === 'string') {
    onFallback?.(m.name, series);
    out.write(await renderPublic(registry, m));
    return;
  }
  out.write(`# HELP ${m.name} ${escapeHelp(m.help)}\n# TYPE ${m.name} ${m.type}`);
  for (const key of series.keys) {
    const text = series.write(series.hashMap[key]);
    // null: removed since the family began
    if (text === null) continue;
    out.write(text);
    if (out.full) {
      yield out.take();
      await nextTurn();
    }
  }
}

/** The family's series as prom-client holds them, with their writer; or why they cannot be read that way. */
async function seriesOf(m: MetricLike): Promise<{ hashMap: Record<string, unknown>; keys: string[]; write: SeriesWriter } | FallbackReason> {
  const reason = metricFallback(m);
  if (reason) return reason;
  // collect() (process metrics) refreshes hashMap before it is read.
  if (typeof m.collect === 'function') await m.collect();
  const hashMap = m.hashMap as Record<string, unknown>;
  // The one step that grows with a family in a single turn (~14 ms for 65,000 series on
  // the machine of docs/benchmarks.md: a dictionary's keys come sorted by insertion), so
  // it gets a turn of its own.
  await nextTurn();
  const keys = Object.keys(hashMap);
  await nextTurn();
  // Every series of a metric is made by the same prom-client code: the first tells the shape.
  const fits = m.type === 'histogram' ? isHistogramChild : isValueChild;
  if (keys.length > 0 && !fits(hashMap[keys[0]!])) return 'series-shape';
  return { hashMap, keys, write: m.type === 'histogram' ? histogramWriter(m) : valueWriter(m) };
}

/** A series' lines, each after a newline; null for anything but a series of the metric's shape. */
type SeriesWriter = (child: unknown) => string | null;

function valueWriter(m: MetricLike): SeriesWriter {
  return (child) => (isValueChild(child) ? `\n${m.name}${formatLabels(child.labels)} ${formatValue(child.value)}` : null);
}

function histogramWriter(m: MetricLike): SeriesWriter {
  const upperBounds = m.upperBounds as number[];
  const les = upperBounds.map(formatValue);
  return (child) => {
    if (!isHistogramChild(child)) return null;
    const labels = formatLabels(child.labels);
    // `{a="x"}` -> `{a="x",le="` ; `` -> `{le="`
    const bucket = labels === '' ? `${m.name}_bucket{le="` : `${m.name}_bucket${labels.slice(0, -1)},le="`;
    let text = '';
    let acc = 0;
    for (let i = 0; i < upperBounds.length; i++) {
      acc += child.bucketValues[upperBounds[i]!] ?? 0;
      text += `\n${bucket}${les[i]}"} ${formatValue(acc)}`;
    }
    return `${text}\n${bucket}+Inf"} ${formatValue(child.count)}\n${m.name}_sum${labels} ${formatValue(child.sum)}\n${m.name}_count${labels} ${formatValue(child.count)}`;
  };
}

/** Any other metric (summary, or internals of an unknown shape): prom-client's public API. */
async function renderPublic(registry: Registry, m: MetricLike): Promise<string> {
  if (m.type === 'summary' || typeof m.get !== 'function') return registry.getSingleMetricAsString(m.name);
  const lines = [`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`];
  const data = await m.get();
  for (const v of data.values) lines.push(`${v.metricName ?? m.name}${formatLabels(v.labels)} ${formatValue(v.value)}`);
  return lines.join('\n');
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  let s = '';
  for (const key of Object.keys(labels)) {
    const v = labels[key];
    if (v === undefined) continue;
    s += `${s === '' ? '' : ','}${key}="${escapeLabelValue(String(v))}"`;
  }
  return s === '' ? '' : `{${s}}`;
}

const LABEL_ESCAPES = /[\\\n"]/;
function escapeLabelValue(v: string): string {
  return LABEL_ESCAPES.test(v) ? v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : v;
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return `${v}`;
}
