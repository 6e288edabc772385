/** A page of events when the caller names no size: a screenful or two. */
export const DEFAULT_LIMIT = 100;
/** A page of releases when the caller names no size: history is read newest first, rarely far back. */
export const DEFAULT_RELEASES_LIMIT = 50;
/** A page of apps when the caller names no size: each carries its spec, status and last failure. */
export const DEFAULT_APPS_LIMIT = 50;
/**
 * The most apps one page returns, whatever it asks: an app's view costs ~0.15-0.5 ms of the
 * event loop (spec, status, last failure, JSON) depending on the machine's load; a page of
 * 100 took up to 54 ms of CPU on a loaded 2-core machine, 1000 took 70-100 ms on a quieter
 * one (docs/benchmarks.md, "History").
 */
export const MAX_APPS_LIMIT = 50;
/**
 * A page of apps ends early, with a cursor to the rest, once the specs on it reach this
 * many bytes of stored JSON: a spec can be hundreds of KB, and a page of 1000 of them
 * would take seconds of the event loop to read and serialise (docs/benchmarks.md, "History").
 */
export const PAGE_SPEC_BYTES = 1_000_000;
/** The most rows one call returns, whatever it asks: bounds the memory and the time of one API response. */
export const MAX_LIMIT = 1000;

/** A page size within 1..max (default DEFAULT_LIMIT, max MAX_LIMIT). */
export function clampLimit(limit: number | undefined, fallback = DEFAULT_LIMIT, max = MAX_LIMIT): number {
  if (limit === undefined || !Number.isFinite(limit)) return fallback;
  return Math.min(max, Math.max(1, Math.trunc(limit)));
}
