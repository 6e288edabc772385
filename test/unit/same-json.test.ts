import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../src/domain/prng.js';
import { sameJson } from '../../src/domain/same-json.js';
import { canonicalJson } from '../../src/store/json.js';

/** A random JSON-ish value: the shapes a status or rollout record has, and the values JSON.stringify bends. */
function randomValue(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 3 ? 7 : 10));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return [undefined, NaN, Infinity, 0, 1, 2.5, -0][Math.floor(next() * 7)];
    case 2:
      return ['', 'a', 'b', 'web@h1'][Math.floor(next() * 4)];
    case 3:
      return next() < 0.5;
    case 4:
      return Math.floor(next() * 3);
    case 5:
      return next() < 0.2 ? new Date(Math.floor(next() * 2) * 1000) : 'h1';
    case 6:
      return next() < 0.1 ? () => 1 : 'h2';
    case 7:
    case 8: {
      const o: Record<string, unknown> = {};
      for (const k of ['step', 'at', 'logs', 'host', 'process'].filter(() => next() < 0.5)) o[k] = randomValue(next, depth + 1);
      return o;
    }
    default:
      return Array.from({ length: Math.floor(next() * 3) }, () => randomValue(next, depth + 1));
  }
}

/** The same value with its objects' keys in reverse order (canonicalJson does not care). */
function reordered(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reordered);
  if (v && typeof v === 'object' && v.constructor === Object) return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reordered(x)]));
  return v;
}

test('sameJson answers what comparing canonicalJson texts answers', () => {
  const next = mulberry32(15);
  let equal = 0;
  for (let i = 0; i < 20_000; i += 1) {
    const a = randomValue(next, 0);
    const b = next() < 0.3 ? reordered(a) : randomValue(next, 0);
    const expected = canonicalJson(a) === canonicalJson(b);
    if (expected) equal += 1;
    assert.equal(sameJson(a, b), expected, `${canonicalJson(a)} vs ${canonicalJson(b)}`);
    assert.equal(sameJson(b, a), expected, `${canonicalJson(b)} vs ${canonicalJson(a)}`);
  }
  // Both answers are exercised, not only "different".
  assert.ok(equal > 5_000, `only ${equal} equal pairs`);
});

test('sameJson: what JSON leaves out or rewrites compares as JSON does', () => {
  assert.equal(sameJson({ a: 1, b: undefined }, { a: 1 }), true);
  assert.equal(sameJson({ a: 1 }, { a: 1, b: () => 2 }), true);
  assert.equal(sameJson([undefined], [null]), true);
  assert.equal(sameJson([NaN, Infinity], [null, null]), true);
  assert.equal(sameJson(new Date(0), '1970-01-01T00:00:00.000Z'), true);
  assert.equal(sameJson({ a: 1, b: 2 }, { b: 2, a: 1 }), true);
  assert.equal(sameJson({ a: 1 }, { a: 1, b: null }), false);
  assert.equal(sameJson([1, 2], [2, 1]), false);
  assert.equal(sameJson([], {}), false);
  assert.equal(sameJson({ a: [1] }, { a: [1, 2] }), false);
  assert.equal(sameJson('1', 1), false);
  assert.equal(sameJson(null, undefined), false);
});
