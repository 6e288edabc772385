/**
 * npm run chaos -- --ops 200 [--seed S] [--settle-bound 120s]
 * The chaos run on the test bed (runner.ts); run it under the bed lock:
 *   flock /tmp/berth-bed.lock npm run chaos -- --ops 200 --seed 7
 * Prints the seed and a one-line replay first, a line per operation, the figures last;
 * exits 1 on the first broken invariant or unexcused failed request.
 */
import { parseArgs } from 'node:util';
import { parseDuration } from '../../src/config/duration.js';
import { ChaosFailure, DEFAULT_SETTLE_BOUND_MS, runChaos } from './runner.js';

function positiveInt(raw: string, what: string): number {
  if (!/^[0-9]{1,9}$/.test(raw) || Number(raw) < 1) throw new Error(`${what} must be a positive integer, got "${raw}"`);
  return Number(raw);
}

let args;
try {
  args = parseArgs({
    strict: true,
    allowPositionals: false,
    options: { ops: { type: 'string', default: '200' }, seed: { type: 'string' }, 'settle-bound': { type: 'string' } },
  }).values;
  args = {
    ops: positiveInt(args.ops, '--ops'),
    seed: args.seed === undefined ? Math.floor(Math.random() * 1_000_000) : positiveInt(args.seed, '--seed'),
    bound: args['settle-bound'] === undefined ? DEFAULT_SETTLE_BOUND_MS : parseDuration(args['settle-bound']),
  };
  if (args.bound === null) throw new Error('--settle-bound must be a duration like 90s or 2m');
} catch (e) {
  console.error(`chaos: ${(e as Error).message}\nusage: npm run chaos -- --ops N [--seed S] [--settle-bound 120s]`);
  process.exit(2);
}

try {
  const r = await runChaos({ ops: args.ops, seed: args.seed, settleBoundMs: args.bound ?? DEFAULT_SETTLE_BOUND_MS });
  console.log(
    `chaos passed: seed ${r.seed}, ${r.ops} operations (${Object.entries(r.byOp).map(([k, n]) => `${k} ${n}`).join(', ')}); ` +
      `requests ${r.requests}, failed ${r.failed} (all ${r.excused} in fault windows of their host and app); ` +
      `longest convergence ${r.longestConvergenceMs} ms (op ${r.longestConvergenceOp}); pre_deploy runs ${r.hookRuns}; duration ${(r.durationMs / 1000).toFixed(0)} s`,
  );
} catch (e) {
  console.error(e instanceof ChaosFailure ? `chaos FAILED: ${e.message}` : e);
  process.exit(1);
}
