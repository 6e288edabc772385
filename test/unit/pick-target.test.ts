import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../src/domain/prng.js';
import type { ObservedContainer } from '../../src/hosts/host-driver.js';
import { pickTarget } from '../../src/reconciler/plan.js';
import { makeContainer } from '../support/fixtures.js';

test('pickTarget: of the containers of the version and config, the running one, then the newest revision, then the newest; the first of equals', () => {
  const next = mulberry32(4);
  const desired = { version: 'v2', configHash: makeContainer(1, 'v2').configHash };
  for (let i = 0; i < 5_000; i += 1) {
    const containers: ObservedContainer[] = Array.from({ length: Math.floor(next() * 6) }, () => {
      const c = makeContainer(1 + Math.floor(next() * 3), next() < 0.8 ? 'v2' : 'v1', { running: next() < 0.5, createdAt: Math.floor(next() * 3) });
      if (next() < 0.1) return { ...c, configHash: 'other' };
      return next() < 0.1 ? { ...c, role: 'proxy' as const } : c;
    });
    // The rule as a stable sort states it.
    const expected =
      containers
        .filter((c) => c.role === 'app' && c.version === desired.version && c.configHash === desired.configHash)
        .sort((a, b) => Number(b.running) - Number(a.running) || b.revision - a.revision || b.createdAt - a.createdAt)[0] ?? null;
    assert.equal(pickTarget(containers, desired), expected);
  }
});
