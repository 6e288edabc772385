/** Small statistics and table helpers shared by the benches. */

/** Nearest-rank percentile (p in 0..100) of the values; NaN for none. */
export function pct(values: readonly number[], p: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * v.length);
  return v[Math.min(v.length - 1, Math.max(0, rank - 1))]!;
}

export const median = (values: readonly number[]): number => {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

export const mean = (values: readonly number[]): number => {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};

export const max = (values: readonly number[]): number => {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length ? Math.max(...v) : NaN;
};

export const min = (values: readonly number[]): number => {
  const v = values.filter((x) => Number.isFinite(x));
  return v.length ? Math.min(...v) : NaN;
};

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
  min: number;
  mean: number;
}

export function summarize(values: readonly number[], digits = 1): Summary {
  const v = values.filter((x) => Number.isFinite(x));
  const r = (x: number) => round(x, digits);
  return { n: v.length, p50: r(median(v)), p99: r(pct(v, 99)), max: r(max(v)), min: r(min(v)), mean: r(mean(v)) };
}

/** Rounds to `digits` decimals (default 1); keeps NaN as null-ish NaN. */
export function round(x: number, digits = 1): number {
  if (!Number.isFinite(x)) return NaN;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** ms as text: "1234" or "12.3" (below 100 ms), "-" for missing. */
export function ms(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1);
}

/** A plain text table (also valid Markdown). */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map((c) => String(c)))];
  const width = header.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join(' | ')} |`;
  const sep = `| ${width.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(cells[0]!), sep, ...cells.slice(1).map(line)].join('\n');
}
