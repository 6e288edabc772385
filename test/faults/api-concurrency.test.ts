/**
 * Concurrent writers against a real daemon process over real HTTP (fetch; its pool
 * opens a connection per request in flight): 50 parallel `POST /v1/apps/web/releases` get 50
 * distinct, contiguous revisions and the newest is the desired release ("last
 * wins"); 20 parallel posts with the same `expectedRevision` let exactly one
 * through and refuse the other 19 with a 409 that names both revisions.
 *
 * The one host is a local Docker whose socket does not exist, so no test bed is
 * needed: the controller runs and finds the host down.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DAEMON_CONFIG, freePort, killDaemon, spawnDaemon, tempDir, waitReady, type DaemonChild } from '../support/daemon.js';

const TOKEN = 'concurrency-test-token-8d2e61f0-3a9c47b1';
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface Release {
  revision: number;
  version: string;
  reason: string;
  actor: string;
}

const dir = tempDir('berth-concurrency-');
let daemon: DaemonChild | undefined;

before(async () => {
  const config = join(dir.path, 'berth.yml');
  writeFileSync(config, DAEMON_CONFIG);
  daemon = spawnDaemon({ config, db: join(dir.path, 'berth.db'), port: await freePort(), token: TOKEN });
  await waitReady(daemon);
});

after(async () => {
  if (daemon) await killDaemon(daemon);
  dir.remove();
});

async function post(path: string, body: unknown, actor?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${daemon!.url}${path}`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json', ...(actor ? { 'x-berth-actor': actor } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function get<T>(path: string): Promise<T> {
  const res = await fetch(`${daemon!.url}${path}`, { headers: AUTH });
  assert.equal(res.status, 200, `GET ${path}`);
  return (await res.json()) as T;
}

const releases = async () => (await get<{ releases: Release[] }>('/v1/apps/web/releases?limit=1000')).releases;
const newest = async () => (await releases())[0]?.revision ?? 0;

describe('concurrent writers on a real daemon', () => {
  test('50 parallel releases: all 202, revisions N+1..N+50 exactly once, newest = desired = the highest revision (last wins)', async () => {
    // Some history first, so N is not 0.
    for (const v of ['v1', 'v2', 'v3']) assert.equal((await post('/v1/apps/web/releases', { version: v })).status, 202);
    const n = await newest();
    assert.equal(n, 3);

    const versions = Array.from({ length: 50 }, (_, i) => `burst-${i + 1}`);
    const results = await Promise.all(versions.map((version, i) => post('/v1/apps/web/releases', { version }, `client-${i + 1}`)));

    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 202, `request ${i + 1}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.version, versions[i], 'each answer is about its own request');
      assert.equal(r.body.app, 'web');
    }
    const revisions = results.map((r) => r.body.revision as number);
    assert.ok(revisions.every(Number.isInteger));
    assert.equal(new Set(revisions).size, 50, `distinct revisions: ${revisions.join(',')}`);
    assert.deepEqual([...revisions].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => n + 1 + i), 'exactly N+1..N+50');

    // The history holds each of them once, with the version that request sent.
    const history = await releases();
    assert.equal(history.length, n + 50, 'no release lost, none duplicated');
    assert.equal(new Set(history.map((r) => r.revision)).size, history.length, 'no duplicate revision in the history');
    assert.deepEqual(
      history.map((r) => r.revision),
      Array.from({ length: n + 50 }, (_, i) => n + 50 - i),
      'newest first, contiguous',
    );
    const byRevision = new Map(history.map((r) => [r.revision, r]));
    for (const [i, r] of results.entries()) {
      const stored = byRevision.get(r.body.revision as number);
      assert.equal(stored?.version, versions[i], `revision ${String(r.body.revision)} stores ${versions[i]}`);
      assert.equal(stored?.actor, `client-${i + 1}`, 'and the actor who asked (no token id: docs/design.md, "API and security")');
      assert.equal(stored?.reason, 'deploy');
    }

    // Last wins: the desired release is the one with the highest revision handed out.
    const max = Math.max(...revisions);
    const winner = results.find((r) => r.body.revision === max)!;
    assert.equal(history[0]!.revision, max);
    assert.equal(history[0]!.version, winner.body.version);
    const app = await get<{ desired: { revision: number; version: string } }>('/v1/apps/web');
    assert.deepEqual({ revision: app.desired.revision, version: app.desired.version }, { revision: max, version: winner.body.version });

    // The audit trail has one ReleaseCreated per new revision.
    const { events } = await get<{ events: Array<{ type: string; revision: number | null }> }>('/v1/apps/web/events?limit=1000');
    const created = events.filter((e) => e.type === 'ReleaseCreated' && e.revision !== null && e.revision > n).map((e) => e.revision);
    assert.deepEqual([...created].sort((a, b) => a! - b!), Array.from({ length: 50 }, (_, i) => n + 1 + i), 'one ReleaseCreated event per revision');
  });

  test('20 parallel releases with the same expectedRevision: exactly one 202, 19 409s naming both revisions', async () => {
    const m = await newest();
    assert.ok(m > 0);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post('/v1/apps/web/releases', { version: `race-${i + 1}`, expectedRevision: m })),
    );
    const accepted = results.filter((r) => r.status === 202);
    const refused = results.filter((r) => r.status === 409);
    assert.equal(accepted.length, 1, `exactly one accepted: ${results.map((r) => r.status).join(',')}`);
    assert.equal(refused.length, 19, `the other 19 refused: ${results.map((r) => r.status).join(',')}`);
    assert.equal(accepted[0]!.body.revision, m + 1);
    for (const r of refused) {
      assert.equal(r.body.code, 'CONFLICT');
      assert.equal(r.body.error, 'Conflict');
      const message = String(r.body.message);
      assert.match(message, new RegExp(`\\b${m}\\b`), `names the expected revision ${m}: ${message}`);
      assert.match(message, new RegExp(`\\b${m + 1}\\b`), `names the newest revision ${m + 1}: ${message}`);
      assert.equal(message, `expected revision ${m} but the newest is ${m + 1}`);
    }
    // Only the winner was written.
    const history = await releases();
    assert.equal(history.length, m + 1);
    assert.equal(history[0]!.revision, m + 1);
    assert.equal(history[0]!.version, accepted[0]!.body.version);
    assert.equal(history.filter((r) => r.version.startsWith('race-')).length, 1, 'no loser was stored');
  });
});
