import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { replayCommand, runChaos } from '../chaos/runner.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * The chaos run (test/chaos/runner.ts), 30 operations: a random seed each time, printed
 * first and in the failure message with the one-line replay. `npm run chaos -- --ops 200`
 * is the long run; BERTH_CHAOS_SEED picks the seed here.
 */
const skip = bedSkipReason();
const OPS = 30;

describe('chaos: 30 random operations on the real hosts, under load', { skip }, () => {
  it('every op settles within the bound, every invariant holds, no request fails outside its fault window', { timeout: 15 * 60_000 }, async () => {
    const seed = Number(process.env.BERTH_CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
    console.log(`# chaos seed ${seed}; replay: ${replayCommand(OPS, seed)}`);
    const r = await runChaos({ ops: OPS, seed, say: (l) => console.log(`# ${l}`) });
    console.log(`# chaos: requests ${r.requests}, failed ${r.failed} (${r.excused} in fault windows), longest convergence ${r.longestConvergenceMs} ms (op ${r.longestConvergenceOp}), ${Math.round(r.durationMs / 1000)} s`);
    assert.equal(r.ops, OPS);
    assert.ok(r.requests > 0);
  });
});
