/**
 * Whether two values are the same JSON document, key order aside: what
 * `canonicalJson(a) === canonicalJson(b)` answers (store/json.ts), without writing either
 * out. A converged app's pass compares its status and rollout record with the stored ones
 * this way on every resync; serialising both (a sorted copy of every object, then the
 * text) was 40% of what a no-op pass allocated (bench/scale.ts, BENCH_ALLOC=1).
 *
 * As JSON.stringify sees values: a key whose value is undefined, a function or a symbol is
 * absent (null in an array), a number that is not finite is null, an object's toJSON()
 * stands for it, only own enumerable string keys count.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const x = asJson(a);
  const y = asJson(b);
  if (x === y) return true;
  if (absent(x) || absent(y)) return absent(x) && absent(y);
  if (typeof x !== 'object' || typeof y !== 'object' || x === null || y === null) return false;
  const xArray = Array.isArray(x);
  if (xArray !== Array.isArray(y)) return false;
  if (xArray) {
    const ys = y as unknown[];
    if (x.length !== ys.length) return false;
    for (let i = 0; i < x.length; i += 1) if (!sameJson(inArray(x[i]), inArray(ys[i]))) return false;
    return true;
  }
  const xo = x as Record<string, unknown>;
  const yo = y as Record<string, unknown>;
  let keys = 0;
  for (const k in xo) {
    if (!Object.hasOwn(xo, k) || absent(asJson(xo[k]))) continue;
    keys += 1;
    if (!Object.hasOwn(yo, k) || !sameJson(xo[k], yo[k])) return false;
  }
  for (const k in yo) if (Object.hasOwn(yo, k) && !absent(asJson(yo[k]))) keys -= 1;
  return keys === 0;
}

/** A value (as asJson gives it) that JSON.stringify leaves out of an object. */
function absent(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** JSON.stringify writes null in an array where it leaves a key out of an object. */
function inArray(v: unknown): unknown {
  return absent(asJson(v)) ? null : v;
}

/** What JSON.stringify writes for `v`, as far as comparing goes: toJSON()'s value, null for a number that is not finite. */
function asJson(v: unknown): unknown {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (v !== null && typeof v === 'object') {
    const toJson = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJson === 'function') return asJson((toJson as () => unknown).call(v));
  }
  return v;
}
