/**
 * Durations in config and API bodies: strings with a unit, e.g. `500ms`, `5s`,
 * `1.5s`, `2m`, `1h`, or combinations largest unit first, `1m30s`, `1h2m3s500ms`.
 *
 * Decisions:
 * - A unit is always required. A bare YAML number (`interval: 5`) is rejected,
 *   as is the string `"5"`: nobody can tell whether 5 means seconds or
 *   milliseconds, and guessing wrong makes a health check 1000x too eager.
 *   Zero is written `0s`.
 * - Units: `ms`, `s`, `m`, `h`, `d` (24 hours; certificate windows). Each at most once, in that order from largest
 *   to smallest, so `5s5s` and `30s1m` (likely typos) are rejected.
 * - Resolution is one millisecond; a value that is not a whole number of
 *   milliseconds (`1.0005s`, `0.5ms`) is rejected rather than rounded.
 * - No sign, no spaces, lowercase units only.
 */

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
const UNIT_ORDER: readonly Unit[] = ['d', 'h', 'm', 's', 'ms'];

// `ms` before `m` in the alternation so `5ms` is not read as `5m` + junk.
const PART = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/y;

/** Milliseconds, or null when `s` is not a duration as described above. */
export function parseDuration(s: string): number | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 64) return null;
  let pos = 0;
  let lastRank = -1;
  let total = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) return null;
    const unit = m[2] as Unit;
    const rank = UNIT_ORDER.indexOf(unit);
    if (rank <= lastRank) return null;
    lastRank = rank;
    total += Number(m[1]) * UNIT_MS[unit];
    pos = PART.lastIndex;
  }
  // Decimal fractions are inexact in binary (1.1 * 1000 = 1100.0000000000002):
  // accept values within a hair of a whole millisecond.
  const ms = Math.round(total);
  if (Math.abs(total - ms) > 1e-6 || !Number.isSafeInteger(ms)) return null;
  return ms;
}

/** The canonical spelling of `ms`, e.g. `1m30s`, `1s500ms`, `0s`. `parseDuration` reads it back exactly. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  const sign = rest < 0 ? '-' : '';
  rest = Math.abs(rest);
  let out = '';
  for (const unit of UNIT_ORDER) {
    const n = Math.floor(rest / UNIT_MS[unit]);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit];
  }
  return sign + out;
}

/** An RFC 3339 date-time with a zone (`2026-11-29T09:30:00Z`, `...T09:30:00.5+01:00`). */
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)$/i;

/**
 * A point in time given as a duration before `now` (`10m`: ten minutes ago) or as an
 * RFC 3339 date-time: Unix ms, or null when `s` is neither (`berth logs --since`).
 */
export function parseSince(s: string, now: number): number | null {
  const ago = parseDuration(s);
  if (ago !== null) return now - ago;
  if (!RFC3339.test(s)) return null;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : null;
}
