#!/usr/bin/env node
// `npm run bench`: runs every bench/*.ts, one after the other, with `node --import tsx`.
// Usage: node scripts/bench.mjs [NAME ...]   (NAME: a file in bench/ without .ts, e.g. scale)
//
// A bench whose header contains `bench:needs-testbed` runs on the real test hosts
// (test/hosts/testbed, docs/testbed.md). When the bed is not up, this script brings it up
// with `testbed up 3` if it runs as root (and takes it down again at the end, unless
// BERTH_TESTBED_KEEP=1), or skips that bench with a message saying why. Other benches
// (simulated hosts) always run. Each bench prints its tables and writes bench/results/*.json.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
/** V8's heap settings as the daemon is started with (docs/benchmarks.md, "Memory at 10,000 apps"). */
const DAEMON_HEAP = '--max-old-space-size=1536 --max-semi-space-size=4';
const benchDir = join(root, 'bench');
const testbed = join(root, 'test', 'hosts', 'testbed');
const hostCount = process.env.BERTH_TESTBED_HOSTS ?? '3';
const wanted = process.argv.slice(2).map((a) => a.replace(/^bench\//, '').replace(/\.ts$/, ''));

const all = readdirSync(benchDir, { withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
  .map((e) => e.name)
  .sort();
const unknown = wanted.filter((w) => !all.includes(`${w}.ts`));
if (unknown.length > 0) {
  console.error(`[bench] no such bench: ${unknown.join(', ')} (have: ${all.map((f) => f.replace(/\.ts$/, '')).join(', ')})`);
  process.exit(2);
}
const selected = wanted.length > 0 ? all.filter((f) => wanted.includes(f.replace(/\.ts$/, ''))) : all;
const needsBed = (file) => readFileSync(join(benchDir, file), 'utf8').slice(0, 2000).includes('bench:needs-testbed');

function bedStatus() {
  if (process.platform !== 'linux') return { up: false, why: 'not on Linux' };
  if (process.getuid?.() !== 0) return { up: false, why: 'not running as root (the test hosts need root)' };
  const st = spawnSync('bash', [testbed, 'status'], { encoding: 'utf8' });
  return st.status === 0 ? { up: true } : { up: false, why: 'the test bed is not up', canStart: true };
}

let broughtUp = false;
let bedReady = null; // null: not checked yet; true/false after the first bench that needs it
let bedWhy = '';
const results = [];
for (const file of selected) {
  const name = file.replace(/\.ts$/, '');
  if (needsBed(file)) {
    if (bedReady === null) {
      const st = bedStatus();
      if (st.up) bedReady = true;
      else if (st.canStart) {
        console.error(`[bench] ${name} needs the test hosts: bringing up ${hostCount} (test/hosts/testbed up ${hostCount})`);
        const up = spawnSync('bash', [testbed, 'up', hostCount], { stdio: 'inherit' });
        bedReady = up.status === 0;
        broughtUp = bedReady;
        if (!bedReady) bedWhy = 'test/hosts/testbed up failed';
      } else {
        bedReady = false;
        bedWhy = st.why;
      }
    }
    if (!bedReady) {
      console.error(`[bench] SKIP ${name}: it runs on the real test hosts and they are not available (${bedWhy})`);
      results.push([name, 'skipped']);
      continue;
    }
  }
  console.error(`[bench] ${name}: node ${DAEMON_HEAP} --import tsx ${relative(root, join(benchDir, file))}`);
  const t0 = Date.now();
  // The heap setting the daemon runs with (Dockerfile, systemd unit, npm start): memory figures are the daemon's.
  const res = spawnSync(process.execPath, [...DAEMON_HEAP.split(' '), '--import', 'tsx', join('bench', file)], { cwd: root, stdio: 'inherit', env: process.env });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  results.push([name, res.status === 0 ? `ok (${secs} s)` : `FAILED (exit ${res.status ?? res.signal}, ${secs} s)`]);
}

if (broughtUp && process.env.BERTH_TESTBED_KEEP !== '1') {
  console.error('[bench] taking the test hosts down again (BERTH_TESTBED_KEEP=1 keeps them)');
  spawnSync('bash', [testbed, 'down'], { stdio: 'inherit' });
}
console.error(`[bench] ${results.map(([n, r]) => `${n}: ${r}`).join('; ')}`);
if (!existsSync(join(benchDir, 'results'))) console.error('[bench] (no bench/results directory was written)');
process.exit(results.some(([, r]) => r.startsWith('FAILED')) ? 1 : 0);
