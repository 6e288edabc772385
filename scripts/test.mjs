#!/usr/bin/env node
// The whole suite: unit tests, then (with the test hosts) integration and e2e tests.
// Usage: node scripts/test.mjs [unit|integration|e2e ...]
//
// The test hosts need root and network namespaces. With BERTH_TESTBED_REQUIRED=1
// (set by .ci/run) a missing bed is a failure; without it, the suites that need the
// bed are skipped with a message saying so (and the summary counts them as skipped).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const layers = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unit', 'integration', 'e2e', 'faults'];
const needsBed = (layer) => layer !== 'unit';
const required = process.env.BERTH_TESTBED_REQUIRED === '1';
const testbed = join(root, 'test', 'hosts', 'testbed');
const hostCount = process.env.BERTH_TESTBED_HOSTS ?? '3';

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'hosts' ? [] : files(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}

function bedPossible() {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (process.platform !== 'linux') return 'not on Linux';
  return null;
}

let selected = [];
let bedUp = false;
let failed = false;
for (const layer of layers) {
  const tests = files(join(root, 'test', layer)).sort();
  if (tests.length === 0) continue;
  if (needsBed(layer) && !bedUp) {
    const why = bedPossible();
    if (why) {
      if (required) {
        console.error(`[berth] FAIL: ${layer} tests need the test hosts, which cannot run here (${why})`);
        failed = true;
        continue;
      }
      console.error(`[berth] SKIP ${tests.length} ${layer} test files: the test hosts need root on Linux (${why}); BERTH_TESTBED_REQUIRED=1 makes this a failure`);
      continue;
    }
    console.error(`[berth] bringing up ${hostCount} test hosts`);
    const up = spawnSync('bash', [testbed, 'up', hostCount], { stdio: 'inherit' });
    if (up.status !== 0) {
      console.error('[berth] FAIL: test hosts did not come up');
      failed = true;
      continue;
    }
    bedUp = true;
  }
  selected = selected.concat(tests);
}

if (!failed && selected.length > 0) {
  console.error(`[berth] running ${selected.length} test files`);
  // One runner invocation so its closing summary counts the whole suite.
  const res = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...selected.map((t) => relative(root, t))],
    { cwd: root, stdio: 'inherit', env: { ...process.env, BERTH_TESTBED: bedUp ? '1' : '' } },
  );
  if (res.status !== 0) failed = true;
}
if (bedUp && process.env.BERTH_TESTBED_KEEP !== '1') spawnSync('bash', [testbed, 'down'], { stdio: 'inherit' });
process.exit(failed ? 1 : 0);
