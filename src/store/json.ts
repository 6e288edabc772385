import { createHash } from 'node:crypto';
import { StoreError } from '../domain/errors.js';

/** JSON with object keys sorted, so equal documents have equal text (change detection). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

/** Parses a JSON column; the caller names the shape it stored there. */
export function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new StoreError('DB_CORRUPT', `stored ${what} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** The key of a stored spec (table `specs`): sha256 of its text, hex. Migrations call it as berth_sha256(text). */
export function textDigest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
