import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAILURE_LAG_MS, judgeFailures, type FaultWindow } from '../chaos/windows.js';
import type { LoadFailure } from '../support/load.js';

/** The chaos run excuses a failed request only inside the fault window of its own host and app. */
const failure = (target: string, at: number, kind: LoadFailure['kind'] = 'timeout', what = 'GET /: timeout after 5000 ms'): LoadFailure => ({ target, at, kind, what, reusedSocket: false, request: 'GET /' });
const cut: FaultWindow = { why: 'net-cut h2', hosts: ['h2'], apps: ['ca', 'cb', 'cc'], from: 1_000, to: 9_000 };
const maint: FaultWindow = { why: 'maintenance cb', hosts: ['h1', 'h2', 'h3'], apps: ['cb'], from: 20_000, to: null, only503: 'chaos maintenance' };

describe('chaos fault windows', () => {
  const cases: Array<[string, LoadFailure, boolean]> = [
    ['a timeout on the cut host inside the window', failure('ca@h2', 5_000), true],
    ['a timeout on the cut host within the request timeout after the link returned', failure('cc@h2', 9_000 + FAILURE_LAG_MS), true],
    ['on the cut host later than that', failure('cc@h2', 9_001 + FAILURE_LAG_MS), false],
    ['on the cut host before the cut', failure('ca@h2', 999), false],
    ['on another host during the cut', failure('ca@h1', 5_000), false],
    ['the maintenance 503 of the app in maintenance (window still open)', failure('cb@h3', 30_000, 'http', 'GET /: HTTP 503: chaos maintenance'), true],
    ['a reset of the app in maintenance', failure('cb@h3', 30_000, 'reset', 'GET /: ECONNRESET'), false],
    ['another 503 of the app in maintenance', failure('cb@h3', 30_000, 'http', 'GET /: HTTP 503: no server available'), false],
    ['the maintenance 503 of another app', failure('ca@h3', 30_000, 'http', 'GET /: HTTP 503: chaos maintenance'), false],
  ];
  for (const [name, f, excused] of cases) {
    it(`${name}: ${excused ? 'excused' : 'a failure'}`, () => {
      const judged = judgeFailures([f], [cut, maint], 40_000);
      assert.equal(judged.excused, excused ? 1 : 0);
      assert.deepEqual(judged.unexcused, excused ? [] : [f]);
    });
  }
});
