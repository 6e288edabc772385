import { createRequire } from 'node:module';
import { Histogram, type HistogramConfiguration, type LabelValues } from 'prom-client';

/**
 * prom-client's series key (lib/util.js), so the series looked up is the one prom-client
 * keeps. Its internals are read here as in exposition.ts, and its version is pinned for
 * that; test/unit/metrics.test.ts fails if a series is no longer found or no longer small.
 */
const { hashObject } = createRequire(import.meta.url)('prom-client/lib/util.js') as {
  hashObject(labels: object, labelNames: readonly string[]): string;
};

interface Internals {
  hashMap: Record<string, { count: number; bucketValues: Record<number, number> } | undefined>;
  upperBounds: readonly number[];
  sortedLabelNames: readonly string[];
}

/**
 * A labelled prom-client Histogram whose bucket bounds are integers far apart (1 .. 1,800
 * s): the same series, samples and API, each series 15 times smaller.
 *
 * prom-client copies a new series' bucket counts from a template in ascending key order,
 * and V8 keeps integer keys in an array as long as the largest one: 1,800 slots, 14.6 KB
 * a series for 12 buckets. With one series per app (berth_rollout_duration_seconds
 * {app, result}) that was 146 MB of a 260 MB heap at 10,000 apps (docs/benchmarks.md,
 * "Memory at 10,000 apps"). Written largest bound first, the keys go to a dictionary
 * (~0.9 KB); the copy is made once, at a series' first observation. Only `observe(labels,
 * value)` is used on it; bounds below ~1,000 gain nothing (prom-client's copy is smaller).
 */
export class SparseBoundsHistogram<T extends string> extends Histogram<T> {
  constructor(config: HistogramConfiguration<T>) {
    super(config);
    const self = this as unknown as Internals;
    const observe = this.observe.bind(this) as (labels: LabelValues<T>, value: number) => void;
    const labelled = (labels: LabelValues<T>, value: number): void => {
      observe(labels, value);
      const series = self.hashMap[hashObject(labels, self.sortedLabelNames)];
      if (series?.count === 1) series.bucketValues = largestFirst(series.bucketValues, self.upperBounds);
    };
    this.observe = labelled as Histogram<T>['observe'];
  }
}

function largestFirst(counts: Record<number, number>, bounds: readonly number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (let i = bounds.length - 1; i >= 0; i--) out[bounds[i]!] = counts[bounds[i]!] ?? 0;
  return out;
}
