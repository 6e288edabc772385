export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** A page size within 1..MAX_LIMIT (default DEFAULT_LIMIT). */
export function clampLimit(limit: number | undefined, fallback = DEFAULT_LIMIT): number {
  if (limit === undefined || !Number.isFinite(limit)) return fallback;
  return Math.min(MAX_LIMIT, Math.max(1, Math.trunc(limit)));
}
