/**
 * The store's contract: what every engine behind the seam (src/store/sql.ts) does alike,
 * the same repositories with the same semantics (#15). test/unit/store.test.ts runs it on
 * SQLite, test/integration/store-postgres.test.ts on PostgreSQL; what only one engine has
 * (its migrations, SQLite's file lock, pragmas and permissions) is tested in those files.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, mock, test } from 'node:test';
import type { AppSpec } from '../../src/domain/app-spec.js';
import { ConflictError, NotFoundError, StoreError } from '../../src/domain/errors.js';
import type { AppStatus, BerthEvent } from '../../src/domain/release.js';
import { parseRolloutRecord, rolloutRecordProblem, type RolloutRecord } from '../../src/domain/rollout.js';
import { newRecord } from '../../src/reconciler/plan.js';
import { openStore, type OpenStoreOptions, type Store } from '../../src/store/index.js';
import { PassInputsRepo } from '../../src/store/pass-inputs.js';
import { AppsRepo } from '../../src/store/apps.js';
import type { Durability, Engine } from '../../src/store/sql.js';
import { makeSpec } from './fixtures.js';
import { child, collect, killHard, waitForLine } from './store-child.js';

/** How the contract gets databases of one engine. */
export interface StoreFixture {
  engine: Engine;
  /** A store on a new, empty database of its own (the contract closes it after the test). */
  open(opts?: OpenStoreOptions): Promise<Store>;
  /** A new, empty database that several stores and processes open (with `lock: false`): what they pass to openStore. */
  location(): Promise<string>;
  /** The engine's own consistency checks, after a crash or deletions (SQLite: integrity_check, foreign_key_check). */
  checkIntegrity(s: Store): void;
  /** What a commit made now would wait for: inside a transaction, that transaction's durability (sql.ts). */
  commitDurability(s: Store): Durability;
}

export function spec(name: string, over: Partial<AppSpec> = {}): AppSpec {
  return makeSpec({
    name,
    image: '10.77.0.1:5000/web',
    hosts: ['h1', 'h2'],
    proxy: { port: 80, host: null, drainTimeoutMs: 30_000 },
    env: { RAILS_ENV: 'production' },
    secrets: ['DATABASE_URL'],
    ...over,
  });
}

export function storeError(code: string, message?: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  };
}

export function status(app: string, observedRevision: number, phase: AppStatus['phase'] = 'Progressing'): AppStatus {
  return {
    app,
    phase,
    observedRevision,
    conditions: [
      { type: 'Progressing', status: 'True', reason: 'NewReleaseCreated', message: 'rolling', lastTransitionTime: '2025-01-01T00:00:00.000Z' },
    ],
    hosts: [
      { host: 'h1', version: 'v1', revision: observedRevision, containerId: 'abc', health: 'healthy', lastError: null, lastLogs: null },
    ],
    updatedAt: '2025-01-01T00:00:01.000Z',
  };
}

/** A valid rollout record of `revision`, as the planner starts one. */
export function rolloutRecord(revision: number, over: Partial<RolloutRecord> = {}): RolloutRecord {
  return { ...newRecord(revision, 1_700_000_000_000), ...over };
}

/** Registers the contract's tests, each on a new database of `fx`'s engine. */
export function storeContract(fx: StoreFixture): void {
  describe(`store contract (${fx.engine})`, () => {
    const opened: Store[] = [];
    const track = (s: Store): Store => {
      opened.push(s);
      return s;
    };
    const open = async (opts?: OpenStoreOptions): Promise<Store> => track(await fx.open(opts));
    /** Another store on `where`, as a second daemon sharing the database would open it. */
    const openAt = (where: string, opts: OpenStoreOptions = {}): Store => track(openStore(where, { lock: false, ...opts }));
    // A failed test leaves its stores open: closed here, so that its database can go.
    afterEach(() => {
      for (const s of opened.splice(0)) s.close();
    });

  // ---- apps ------------------------------------------------------------------

  describe('apps', () => {
    test('upsert: created, unchanged (no write, no event), updated', async () => {
      const s = await open();
      const r1 = s.apps.upsertApp(spec('web'), 'alice');
      assert.equal(r1.change, 'created');
      assert.deepEqual(r1.app.spec, spec('web'));
      assert.equal(r1.app.paused, false);
      // Same content, different key order: unchanged.
      const reordered = Object.fromEntries(Object.entries(spec('web')).reverse()) as unknown as AppSpec;
      assert.equal(s.apps.upsertApp(reordered, 'alice').change, 'unchanged');
      const r3 = s.apps.upsertApp(spec('web', { hosts: ['h1'] }), 'bob');
      assert.equal(r3.change, 'updated');
      assert.deepEqual(s.apps.getApp('web')?.spec.hosts, ['h1']);
      assert.deepEqual(
        s.events.listEvents('web').map((e) => [e.type, e.actor]),
        [
          ['AppCreated', 'alice'],
          ['AppUpdated', 'bob'],
        ],
      );
      assert.equal(s.apps.getApp('nope'), null);
      s.apps.upsertApp(spec('api'), 'alice');
      assert.deepEqual(
        s.apps.listApps().map((a) => a.name),
        ['api', 'web'],
      );
      s.close();
    });

    test('listRoutes and proxyRoutesOn: name, hosts and route of every app with a route, nothing else of its spec', async () => {
      const s = await open();
      const tls = { port: 80, host: 'a.example.com', pathPrefix: '/api', drainTimeoutMs: 5_000, tls: { source: 'acme' as const } };
      s.apps.upsertApp(spec('web', { hosts: ['h1', 'h2'], proxy: tls }), 'a');
      s.apps.upsertApp(spec('api', { hosts: ['h2'], proxy: { port: 8080, host: null, drainTimeoutMs: 30_000 } }), 'a');
      s.apps.upsertApp(spec('worker', { hosts: ['h1'], proxy: null }), 'a');
      assert.deepEqual(s.apps.listRoutes(), [
        { name: 'api', hosts: ['h2'], proxy: { port: 8080, host: null, drainTimeoutMs: 30_000 }, deleting: false },
        { name: 'web', hosts: ['h1', 'h2'], proxy: tls, deleting: false },
      ]);
      assert.deepEqual(s.apps.proxyRoutesOn('h1'), [{ app: 'web', route: tls }]);
      assert.deepEqual(s.apps.proxyRoutesOn('h2').map((r) => r.app), ['api', 'web']);
      // An app being deleted keeps its route for conflict checks, but no proxy routes it any more.
      s.apps.markDeleting('api', 'a');
      assert.equal(s.apps.listRoutes()[0]!.deleting, true);
      assert.deepEqual(s.apps.proxyRoutesOn('h2').map((r) => r.app), ['web']);
      s.close();
    });

    test('readAppStamps: every app, in byte order of names, over several pages, without holding the loop', async () => {
      const s = await open();
      const names = Array.from({ length: AppsRepo.STAMPS_PAGE + 1 }, (_, i) => `app-${i}`);
      s.transaction(() => {
        for (const name of names) s.apps.upsertApp(spec(name), 'a');
      });
      s.apps.upsertApp(spec('app-7', { hosts: ['h9'] }), 'b');
      let turned = false;
      const reading = s.apps.readAppStamps();
      setImmediate(() => (turned = true));
      const stamps = await reading;
      assert.ok(turned, 'the loop turned while the stamps were read');
      assert.deepEqual(stamps.map((a) => a.name), [...names].sort());
      const stampOf = (name: string) => stamps.find((a) => a.name === name)?.updatedAt;
      assert.equal(stampOf('app-7'), s.apps.getApp('app-7')!.updatedAt, 'the newest write of each app');
      assert.equal(stampOf(names.at(-1)!), s.apps.getApp(names.at(-1)!)!.updatedAt, 'the last page');
      s.close();
    });

    test('setPaused records an event only when it changes; unknown app is NotFound', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.equal(s.apps.setPaused('web', true, 'ops').paused, true);
      assert.equal(s.apps.setPaused('web', true, 'ops').paused, true);
      assert.equal(s.apps.setPaused('web', false, 'ops').paused, false);
      assert.deepEqual(
        s.events.listEvents('web').map((e) => e.type),
        ['AppCreated', 'AppPaused', 'AppResumed'],
      );
      assert.throws(() => s.apps.setPaused('nope', true, 'ops'), NotFoundError);
      s.close();
    });

    test('deleteApp cascades to releases, status and rollout; events stay', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
      s.status.recordStep('web', { status: status('web', 1), rollout: { revision: 1, state: rolloutRecord(1) } });
      assert.equal(s.apps.deleteApp('web', 'a'), true);
      assert.equal(s.apps.deleteApp('web', 'a'), false);
      assert.equal(s.releases.latestRelease('web'), null);
      assert.equal(s.status.readStatus('web'), null);
      assert.equal(s.status.getRollout('web'), null);
      assert.equal(s.events.listEvents('web').at(-1)?.type, 'AppDeleted');
      s.close();
    });
  });

  // ---- releases --------------------------------------------------------------

  describe('releases', () => {
    test('revisions grow from 1; spec snapshot defaults to the app spec; queries', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      const r1 = s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'alice' });
      assert.equal(r1.revision, 1);
      assert.deepEqual(r1.spec, spec('web'));
      s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
      const r2 = s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'alice' });
      assert.equal(r2.spec.port, 4000, 'snapshot of the spec at release time');
      s.releases.createRelease({ app: 'web', version: 'v3', reason: 'deploy', actor: 'alice' });
      const r4 = s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'bob', spec: r1.spec });
      assert.equal(r4.revision, 4);
      assert.equal(r4.reason, 'rollback');
      assert.equal(r4.spec.port, 3000);

      assert.deepEqual(s.releases.getRelease('web', 2), r2);
      assert.equal(s.releases.getRelease('web', 9), null);
      assert.equal(s.releases.latestRelease('web')?.revision, 4);
      assert.equal(s.releases.latestRelease('other'), null);
      assert.equal(s.releases.findLatestByVersion('web', 'v1')?.revision, 4);
      assert.equal(s.releases.findLatestByVersion('web', 'v2')?.revision, 2);
      assert.equal(s.releases.findLatestByVersion('web', 'v9'), null);

      assert.deepEqual(
        s.releases.listReleases('web', { limit: 3 }).map((r) => r.revision),
        [4, 3, 2],
      );
      assert.deepEqual(
        s.releases.listReleases('web', { limit: 3, before: 2 }).map((r) => r.revision),
        [1],
      );
      const evs = s.events.listEvents('web').filter((e) => e.type === 'ReleaseCreated');
      assert.deepEqual(
        evs.map((e) => [e.revision, e.actor]),
        [
          [1, 'alice'],
          [2, 'alice'],
          [3, 'alice'],
          [4, 'bob'],
        ],
      );
      assert.match(evs[3]?.message ?? '', /rollback to version v1/);
      s.close();
    });

    test('createReleaseUnlessCurrent: same version and spec as the newest release is unchanged, nothing written', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      const first = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
      assert.deepEqual([first.release.revision, first.unchanged], [1, false]);
      const eventsBefore = s.events.latestEventId();
      const same = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'b' });
      assert.equal(same.unchanged, true);
      assert.deepEqual(same.release, first.release);
      assert.equal(s.events.latestEventId(), eventsBefore, 'no event');
      assert.equal(s.releases.latestRelease('web')?.revision, 1);
      // expectedRevision is checked before anything else.
      assert.throws(
        () => s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 0 }),
        ConflictError,
      );
      // The same spec given explicitly, with keys in another order, is the same snapshot.
      const reordered = Object.fromEntries(Object.entries(first.release.spec).reverse()) as typeof first.release.spec;
      assert.equal(s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', spec: reordered, reason: 'rollback', actor: 'a' }).unchanged, true);
      // A changed spec with the same version is a new release.
      s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
      const changed = s.releases.createReleaseUnlessCurrent({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
      assert.deepEqual([changed.release.revision, changed.unchanged, changed.release.spec.port], [2, false, 4000]);
      // createRelease itself still always appends.
      assert.equal(s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' }).revision, 3);
      s.close();
    });

    test('unknown app: NotFoundError, nothing written', async () => {
      const s = await open();
      assert.throws(() => s.releases.createRelease({ app: 'nope', version: 'v1', reason: 'deploy', actor: 'a' }), NotFoundError);
      assert.equal(s.events.latestEventId(), 0);
      s.close();
    });

    test('expectedRevision mismatch: ConflictError with both numbers, nothing written', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.throws(
        () => s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 2 }),
        (err: unknown) => err instanceof ConflictError && /has no releases yet/.test(err.message),
      );
      assert.equal(
        s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a', expectedRevision: 0 }).revision,
        1,
      );
      for (const v of ['v2', 'v3', 'v4']) s.releases.createRelease({ app: 'web', version: v, reason: 'deploy', actor: 'a' });
      const eventsBefore = s.events.latestEventId();
      assert.throws(
        () => s.releases.createRelease({ app: 'web', version: 'v5', reason: 'deploy', actor: 'a', expectedRevision: 3 }),
        (err: unknown) => {
          assert.ok(err instanceof ConflictError);
          assert.equal(err.code, 'CONFLICT');
          assert.equal(err.message, 'expected revision 3 but the newest is 4');
          return true;
        },
      );
      assert.equal(s.releases.latestRelease('web')?.revision, 4);
      assert.equal(s.events.latestEventId(), eventsBefore);
      assert.equal(
        s.releases.createRelease({ app: 'web', version: 'v5', reason: 'deploy', actor: 'a', expectedRevision: 4 }).revision,
        5,
      );
      s.close();
    });

    test('concurrent writers in 3 processes: distinct, contiguous revisions 1..150', async (t) => {
      const file = await fx.location();
      const s = openAt(file);
      s.apps.upsertApp(spec('web'), 'test');
      s.close();
      const N = 50;
      const procs = [1, 2, 3].map((w) =>
        child(
          // lock: false — several writers on purpose; the daemon lock would (rightly) refuse them.
          // Each opens, says ready, and waits for "go" on stdin so all three write at the same time.
          `const s = store.openStore(env.DB, { lock: false });
           console.log('ready');
           await new Promise((r) => process.stdin.once('data', r));
           const revs = [];
           for (let i = 0; i < ${N}; i++) {
             if (i % 2 === 1) await new Promise((r) => setTimeout(r, Math.random() * 3)); // let the others in
             revs.push(s.releases.createRelease({ app: 'web', version: 'w' + env.W + '-' + i, reason: 'deploy', actor: 'writer' + env.W }).revision);
           }
           s.close();
           console.log(JSON.stringify(revs));
           process.exit(0);`,
          { DB: file, W: String(w) },
        ),
      );
      await Promise.all(procs.map((p) => waitForLine(p, /^ready$/)));
      const done = procs.map((p) => collect(p));
      for (const p of procs) p.stdin.write('go\n');
      const results = (await Promise.all(done)).map((r) => ({ ...r, stdout: r.stdout.trim().split('\n').at(-1) ?? '' }));
      const all: number[] = [];
      for (const r of results) {
        assert.equal(r.code, 0, r.stderr);
        const revs = JSON.parse(r.stdout) as number[];
        assert.equal(revs.length, N);
        for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! > revs[i - 1]!, 'each writer sees increasing revisions');
        all.push(...revs);
      }
      const interleaved = results.some((r) => {
        const revs = JSON.parse(r.stdout) as number[];
        return revs.at(-1)! - revs[0]! !== N - 1;
      });
      t.diagnostic(`writers interleaved: ${interleaved}`);
      assert.ok(interleaved, 'the writers overlapped (else this test proves nothing)');
      all.sort((a, b) => a - b);
      assert.deepEqual(
        all,
        Array.from({ length: 3 * N }, (_, i) => i + 1),
      );
      const check = openAt(file);
      const stored = check.releases.listReleases('web', { limit: 1000 });
      assert.equal(stored.length, 3 * N);
      // The version each writer stored under a revision is the one it was told it got.
      for (const r of results) {
        const revs = JSON.parse(r.stdout) as number[];
        const w = check.releases.getRelease('web', revs[0]!)!.actor;
        for (const rev of revs) assert.equal(check.releases.getRelease('web', rev)?.actor, w);
      }
      assert.equal(check.events.listEvents('web', { limit: 1000 }).filter((e) => e.type === 'ReleaseCreated').length, 3 * N);
      check.close();
    });

    test('a writer that waits for the write lock longer than its busy timeout fails; once the lock is free it writes again', async () => {
      const file = await fx.location();
      const s = openAt(file, { busyTimeoutMs: 300 });
      s.apps.upsertApp(spec('web'), 'test');
      // Another process holds the write lock for 1.5 s (its thread blocked inside the transaction).
      const holder = child(
        `const s = store.openStore(env.DB, { lock: false });
         s.transaction(() => {
           s.events.appendEvent({ type: 'Held', message: 'the write lock, held' });
           console.log('holding');
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_500);
         });
         console.log('released');
         s.close();
         process.exit(0);`,
        { DB: file },
      );
      try {
        await waitForLine(holder, /^holding$/);
        const t0 = performance.now();
        assert.throws(() => s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' }));
        assert.ok(performance.now() - t0 < 1_400, 'gave up after its busy timeout, before the lock was free');
        assert.equal(s.releases.latestRelease('web'), null, 'nothing written');
        await waitForLine(holder, /^released$/);
        assert.equal(s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' }).revision, 1);
        assert.deepEqual(s.events.listEvents(null).map((e) => e.type), ['AppCreated', 'Held', 'ReleaseCreated']);
      } finally {
        await killHard(holder);
      }
    });
  });

  // ---- crash safety ----------------------------------------------------------

  describe('crash safety', () => {
    test('an acknowledged write survives kill -9 right after the acknowledgement', async () => {
      const file = await fx.location();
      const writer = child(
        `const s = store.openStore(env.DB);
         s.apps.upsertApp(${JSON.stringify(spec('web'))}, 'crash');
         for (let i = 1; ; i++) {
           const r = s.releases.createRelease({ app: 'web', version: 'v' + i, reason: 'deploy', actor: 'crash' });
           s.status.recordStep('web', {
             status: { app: 'web', phase: 'Progressing', observedRevision: r.revision, conditions: [], hosts: [], updatedAt: new Date().toISOString() },
             rollout: { revision: r.revision, state: { ...${JSON.stringify(rolloutRecord(0))}, revision: r.revision, batch: i } },
             events: [{ type: 'Step', message: 'step ' + i, revision: r.revision }],
           });
           process.stdout.write(r.revision + '\\n'); // acknowledged: printed only after both commits
         }`,
        { DB: file },
      );
      const acked: number[] = [];
      let buf = '';
      await new Promise<void>((resolve, reject) => {
        writer.on('exit', (code) => reject(new Error(`writer exited early (${code})`)));
        writer.stderr.on('data', (d: Buffer) => process.stderr.write(d));
        writer.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop() ?? '';
          for (const l of lines) acked.push(Number(l));
          if (acked.length >= 40) {
            writer.kill('SIGKILL'); // immediately, mid-stream
            resolve();
          }
        });
      });
      await killHard(writer);
      assert.equal(writer.signalCode, 'SIGKILL');
      const newestAcked = Math.max(...acked);

      const s = track(openStore(file)); // (SQLite: the lock died with the writer)
      fx.checkIntegrity(s);
      const latest = s.releases.latestRelease('web');
      assert.ok(latest && latest.revision >= newestAcked, `acknowledged revision ${newestAcked} is stored`);
      for (const rev of acked) assert.equal(s.releases.getRelease('web', rev)?.version, `v${rev}`);
      // The record step of an acknowledged revision is all there.
      const rollout = s.status.getRollout('web');
      assert.ok(rollout && rollout.revision >= newestAcked);
      assert.equal(s.status.readStatus('web')?.observedRevision, rollout.revision);
      // Revisions stay contiguous across the crash.
      const next = s.releases.createRelease({ app: 'web', version: 'after', reason: 'deploy', actor: 't' });
      assert.equal(next.revision, latest.revision + 1);
      s.close();
    });
  });
  // ---- history: specs once, retention, rollback target ------------------------

  describe('history', () => {
    const specRows = (s: Store) => s.sql.prepare('SELECT count(*) FROM specs').pluck().get() as number;
    const digestOf = (s: Store, revision: number) => s.sql.prepare("SELECT spec_digest FROM releases WHERE app = 'web' AND revision = ?").pluck().get(revision) as string;

    test('a spec is stored once per distinct content: equal specs share one row, different ones do not', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      for (const version of ['v1', 'v2', 'v3']) s.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'a' });
      assert.equal(specRows(s), 1, 'three releases of one spec: one row');
      assert.equal(digestOf(s, 1), digestOf(s, 3));
      s.apps.upsertApp(spec('web', { port: 4000 }), 'a');
      s.releases.createRelease({ app: 'web', version: 'v4', reason: 'deploy', actor: 'a' });
      assert.equal(specRows(s), 2, 'a different spec: its own row');
      assert.notEqual(digestOf(s, 4), digestOf(s, 3));
      // A rollback to v1 carries v1's spec: the same content, the same row.
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'a', spec: s.releases.getRelease('web', 1)!.spec });
      assert.equal(specRows(s), 2);
      assert.equal(digestOf(s, 5), digestOf(s, 1));
      // Every release reads back its own snapshot.
      assert.equal(s.releases.getRelease('web', 4)?.spec.port, 4000);
      assert.equal(s.releases.getRelease('web', 5)?.spec.port, 3000);
      // Another app with the same spec text shares it too; deleting that app leaves the row to the first.
      s.apps.upsertApp(spec('api'), 'a');
      s.releases.createRelease({ app: 'api', version: 'v1', reason: 'deploy', actor: 'a', spec: s.releases.getRelease('web', 1)!.spec });
      assert.equal(specRows(s), 2);
      s.apps.deleteApp('api', 'a');
      assert.equal(specRows(s), 2, 'still used by web');
      s.apps.deleteApp('web', 'a');
      assert.equal(specRows(s), 0, 'an app deleted with its releases takes the specs only it used');
      s.close();
    });

    interface RetentionCase {
      name: string;
      /** Release i + 1 is of versions[i]. */
      versions: string[];
      limit: number;
      batch?: number;
      observedRevision?: number;
      hostRevisions?: number[];
      rolloutRevision?: number;
      keep?: number[];
      kept: number[];
      /** Revisions whose rollout completed (default: all). */
      completed?: number[];
    }
    const v = (n: number) => Array.from({ length: n }, (_, i) => `v${i + 1}`);
    const RETENTION: RetentionCase[] = [
      { name: 'under the limit: nothing goes', versions: v(3), limit: 5, kept: [1, 2, 3] },
      { name: 'over the limit: the oldest go', versions: v(6), limit: 3, kept: [4, 5, 6] },
      { name: 'limit 1: the desired release and the rollback target stay', versions: v(5), limit: 1, kept: [4, 5] },
      { name: 'the rollback target stays however old (restarts of the desired version since)', versions: ['v1', 'v2', 'v2', 'v2', 'v2'], limit: 2, kept: [1, 4, 5] },
      { name: 'the rollback target is the newest completed release: newer failed ones may go', versions: v(5), completed: [1, 2], limit: 1, kept: [2, 5] },
      { name: 'the converged revision (automatic rollback target) stays', versions: v(6), limit: 2, observedRevision: 2, kept: [2, 5, 6] },
      { name: 'a revision a host still serves stays', versions: v(6), limit: 2, hostRevisions: [1, 3], kept: [1, 3, 5, 6] },
      { name: "the rollout record's revision stays", versions: v(6), limit: 2, rolloutRevision: 2, kept: [2, 5, 6] },
      { name: 'revisions of retained containers stay', versions: v(6), limit: 2, keep: [1, 2], kept: [1, 2, 5, 6] },
      { name: 'one call removes at most a batch, oldest first', versions: v(10), limit: 2, batch: 3, kept: [4, 5, 6, 7, 8, 9, 10] },
      { name: 'a batch skips what stays', versions: v(10), limit: 2, batch: 3, hostRevisions: [1, 2], kept: [1, 2, 6, 7, 8, 9, 10] },
    ];
    for (const c of RETENTION) {
      test(`retention: ${c.name}`, async () => {
        const s = await open();
        s.apps.upsertApp(spec('web'), 'a');
        // Each release its own spec, so what goes takes its spec row with it.
        c.versions.forEach((version, i) => s.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'a', spec: spec('web', { port: 3000 + i }) }));
        // Every release rolled out unless the case says which did.
        for (const revision of c.completed ?? c.versions.map((_, i) => i + 1)) s.releases.markCompleted('web', revision, new Date());
        if (c.observedRevision !== undefined || c.hostRevisions) {
          s.status.writeStatus({
            app: 'web',
            phase: 'Complete',
            observedRevision: c.observedRevision ?? null,
            conditions: [],
            hosts: (c.hostRevisions ?? []).map((revision, i) => ({ host: `h${i + 1}`, version: `v${revision}`, revision, containerId: `c${i}`, health: 'healthy', lastError: null, lastLogs: null })),
            updatedAt: '',
          });
        }
        if (c.rolloutRevision !== undefined) s.status.putRollout('web', c.rolloutRevision, newRecord(c.rolloutRevision, 0));
        const removed = s.releases.pruneReleases('web', { limit: c.limit, ...(c.keep ? { keep: c.keep } : {}), ...(c.batch ? { batch: c.batch } : {}) });
        const kept = s.releases.listReleases('web', { limit: 1000 }).map((r) => r.revision).reverse();
        assert.deepEqual(kept, c.kept);
        assert.equal(removed, c.versions.length - c.kept.length);
        assert.equal(specRows(s), kept.length, 'the specs of removed releases are gone, the others stay');
        fx.checkIntegrity(s);
        s.close();
      });
    }

    test('rollbackTarget: the newest release of another version, however far back, reading one spec', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.equal(s.releases.rollbackTarget('web'), null, 'no release');
      s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
      assert.equal(s.releases.rollbackTarget('web'), null, 'only one version');
      s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'a', spec: spec('web', { port: 4000 }) });
      assert.equal(s.releases.rollbackTarget('web'), null, 'v1 never completed a rollout');
      s.releases.markCompleted('web', 1, new Date());
      // 1,200 more releases of v2 (restarts, each its own spec): the target is beyond any page of releases.
      s.transaction(() => {
        for (let i = 0; i < 1200; i++) s.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'a', spec: spec('web', { port: 5000 + i }) });
      });
      const parse = mock.method(JSON, 'parse');
      try {
        const target = s.releases.rollbackTarget('web');
        assert.equal(target?.revision, 1);
        assert.equal(target?.spec.port, 3000);
        assert.equal(parse.mock.callCount(), 1, 'one spec parsed, not the history');
      } finally {
        parse.mock.restore();
      }
      s.close();
    });
  });

  describe('observed writes (committed without waiting for the disk)', () => {
    // On a database with a disk for SQLite (':memory:' has none to wait for).
    const onDisk = async (): Promise<Store> => openAt(await fx.location());

    test('observed commits do not wait for the disk; every other write does again, also after a throw', async () => {
      const s = await onDisk();
      assert.equal(fx.commitDurability(s), 'durable', "the API's writes wait for the disk");
      assert.equal(s.observedTransaction(() => fx.commitDurability(s)), 'observed');
      assert.equal(fx.commitDurability(s), 'durable');
      assert.throws(() => s.observedTransaction(() => { throw new Error('boom'); }), /boom/);
      assert.equal(fx.commitDurability(s), 'durable');
    });

    test('inside a transaction it joins it, with its durability: a step that creates a rollback release is durable', async () => {
      const s = await onDisk();
      s.apps.upsertApp(spec('web'), 'a');
      const seen = s.transaction(() => {
        s.releases.createRelease({ app: 'web', version: 'v1', reason: 'rollback', actor: 'controller' });
        return s.status.recordStep('web', { events: [{ type: 'RollbackStarted', message: 'm', host: null, revision: 1, actor: 'controller' }] }) && fx.commitDurability(s);
      });
      assert.equal(seen, 'durable');
      assert.equal(s.events.listEvents('web', { limit: 10 }).at(-1)?.type, 'RollbackStarted');
    });

    test('what the controller records is observed: recordStep and host status; a release is durable', async () => {
      const s = await onDisk();
      s.apps.upsertApp(spec('web'), 'a');
      const spy = mock.method(s.sql, 'writeTransaction');
      try {
        s.status.recordStep('web', { events: [{ type: 'X', message: 'm', host: null, revision: null, actor: 'controller' }] });
        s.hostsStatus.upsert({ host: 'h1', up: true, lastError: null });
        s.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'a' });
      } finally {
        spy.mock.restore();
      }
      assert.deepEqual(spy.mock.calls.map((c) => c.arguments[1]), ['observed', 'observed', 'durable']);
    });
  });

  describe('status', () => {
    test('write/read round trip; unknown app is NotFound', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.equal(s.status.readStatus('web'), null);
      s.status.writeStatus(status('web', 1));
      assert.deepEqual(s.status.readStatus('web'), status('web', 1));
      s.status.writeStatus(status('web', 2, 'Complete'));
      assert.equal(s.status.readStatus('web')?.phase, 'Complete');
      assert.deepEqual(
        s.status.listStatus().map((x) => x.app),
        ['web'],
      );
      assert.throws(() => s.status.writeStatus(status('nope', 1)), NotFoundError);
      s.close();
    });

    test('a host status written before lastLogs existed reads with lastLogs null', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      s.status.writeStatus(status('web', 1));
      s.sql.prepare('UPDATE status SET hosts = ? WHERE app = ?').run(JSON.stringify([{ host: 'h1', version: 'v1', revision: 1, containerId: 'c1', health: 'healthy', lastError: null }]), 'web');
      assert.deepEqual(s.status.readStatus('web')?.hosts, [{ host: 'h1', version: 'v1', revision: 1, containerId: 'c1', health: 'healthy', lastError: null, lastLogs: null }]);
      s.close();
    });

    test('rollout record: put, get, replace, delete', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.equal(s.status.getRollout('web'), null);
      const first = rolloutRecord(3, { hosts: { h1: { step: 'switched', containerId: 'abc', at: 5 } } });
      s.status.putRollout('web', 3, first);
      const r = s.status.getRollout('web');
      assert.equal(r?.revision, 3);
      assert.deepEqual(r?.state, first);
      s.status.putRollout('web', 3, rolloutRecord(3, { batch: 1 }));
      assert.equal(s.status.getRollout('web')?.state.batch, 1);
      assert.equal(s.status.deleteRollout('web'), true);
      assert.equal(s.status.deleteRollout('web'), false);
      assert.throws(() => s.status.putRollout('nope', 1, rolloutRecord(1)), NotFoundError);
      s.close();
    });

    test('a valid rollout record round-trips field for field, in every state it can be in', async () => {
      const problems: string[] = [];
      const s = await open({ onInvalidRollout: (app, problem) => problems.push(`${app}: ${problem}`) });
      s.apps.upsertApp(spec('web'), 'a');
      const records: RolloutRecord[] = [
        rolloutRecord(1),
        rolloutRecord(7, {
          state: 'failed',
          pulled: ['h1', 'h2'],
          preDeployDone: true,
          postDeployDone: false,
          batch: 2,
          batchNotBefore: 1_700_000_060_000,
          hosts: {
            h1: { step: 'switched', containerId: 'c0ffee', at: 1_700_000_001_000 },
            h2: { step: 'failed', reason: 'HealthCheckFailed', message: 'GET /health: 503', at: 1_700_000_002_000 },
            h3: { step: 'failed', reason: 'StartFailed', message: 'exit 1', at: 1_700_000_003_000, logs: ['booting', 'fatal: no config'] },
          },
          failure: { reason: 'HealthCheckFailed', message: 'h2: GET /health: 503' },
          finishedAt: 1_700_000_004_000,
        }),
        rolloutRecord(8, { state: 'paused', failure: { reason: 'HealthCheckFailed', message: 'paused' } }),
        rolloutRecord(9, { state: 'complete', postDeployDone: true, finishedAt: 1_700_000_009_500 }),
      ];
      for (const rec of records) {
        s.status.recordStep('web', { rollout: { revision: rec.revision, state: rec } });
        const got = s.status.getRollout('web');
        assert.deepEqual(got?.state, rec, `revision ${rec.revision} (${rec.state})`);
        assert.equal(got?.revision, rec.revision);
        assert.equal(got?.app, 'web');
        assert.equal(rolloutRecordProblem(rec), null);
        assert.deepEqual(parseRolloutRecord(JSON.parse(JSON.stringify(rec))), rec);
      }
      assert.deepEqual(problems, [], 'no valid record was reported');
      s.close();
    });

    test('a malformed stored rollout record reads as absent and is reported, never thrown', async () => {
      const problems: Array<[string, string]> = [];
      const s = await open({ onInvalidRollout: (app, problem) => problems.push([app, problem]) });
      s.apps.upsertApp(spec('web'), 'a');
      const good = rolloutRecord(4);
      // Written with raw SQL, as a corrupt row or another berth's shape would be; the CHECK
      // that the state is JSON is switched off (this database is the test's own) so that text
      // that is not JSON gets in too.
      if (s.engine === 'sqlite') s.db.pragma('ignore_check_constraints = ON');
      else s.sql.prepare('ALTER TABLE rollouts DROP CONSTRAINT rollouts_state_check').run();
      const write = (revision: number, text: string) => {
        s.sql.prepare('DELETE FROM rollouts WHERE app = ?').run('web');
        s.sql.prepare('INSERT INTO rollouts (app, revision, state, updated_at) VALUES (?, ?, ?, ?)').run('web', revision, text, '2025-01-01T00:00:00.000Z');
      };
      const cases: Array<[string, number, string, RegExp]> = [
        ['not JSON', 4, '{"revision":4,', /^not JSON/],
        ['JSON null', 4, 'null', /^not an object/],
        ['an array', 4, '[]', /^not an object/],
        ['the old opaque shape', 4, '{"batch":0,"hosts":{"h1":"started"}}', /^revision/],
        ['an unknown state', 4, JSON.stringify({ ...good, state: 'rolling' }), /^state: "rolling"/],
        ['a missing field', 4, JSON.stringify({ ...good, pulled: undefined }), /^pulled/],
        ['a fractional batch', 4, JSON.stringify({ ...good, batch: 0.5 }), /^batch/],
        ['a host step the planner never writes', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'started', at: 1 } } }), /^hosts\.h1\.step "started"/],
        ['a host failure without a message', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'failed', reason: 'StartFailed', at: 1 } } }), /^hosts\.h1\.message/],
        ['a host failure whose logs are not lines', 4, JSON.stringify({ ...good, hosts: { h1: { step: 'failed', reason: 'StartFailed', message: 'x', at: 1, logs: 'boom' } } }), /^hosts\.h1\.logs is not a list of lines/],
        ['a failure without a message', 4, JSON.stringify({ ...good, state: 'failed', failure: { reason: 'X' } }), /^failure/],
        ['finishedAt a string', 4, JSON.stringify({ ...good, finishedAt: 'yesterday' }), /^finishedAt/],
        ['another revision than its row', 5, JSON.stringify(good), /^revision: 4, but the row is revision 5/],
      ];
      for (const [what, revision, text, problem] of cases) {
        problems.length = 0;
        write(revision, text);
        assert.equal(s.status.getRollout('web'), null, `${what} reads as absent`);
        assert.equal(problems.length, 1, `${what} is reported once`);
        assert.equal(problems[0]![0], 'web');
        assert.match(problems[0]![1], problem, what);
        if (what !== 'not JSON' && revision === 4) assert.equal(parseRolloutRecord(JSON.parse(text)), null, `parseRolloutRecord: ${what}`);
      }
      // The controller's next record step replaces the bad row, and it reads again.
      s.status.recordStep('web', { rollout: { revision: 4, state: good } });
      problems.length = 0;
      assert.deepEqual(s.status.getRollout('web')?.state, good);
      assert.deepEqual(problems, []);
      s.close();
    });

    test('recordStep writes status, rollout and events together, or nothing at all', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      const seen: BerthEvent[] = [];
      s.events.subscribe((e) => seen.push(e));
      const res = s.status.recordStep('web', {
        status: status('web', 1),
        rollout: { revision: 1, state: rolloutRecord(1) },
        events: [
          { type: 'ContainerStarted', message: 'started web-r1', host: 'h1', revision: 1, actor: 'controller' },
          { type: 'HostDown', message: 'h2 unreachable', app: null, host: 'h2' },
        ],
      });
      assert.deepEqual(
        res.events.map((e) => [e.app, e.type]),
        [
          ['web', 'ContainerStarted'],
          [null, 'HostDown'],
        ],
      );
      assert.deepEqual(seen, res.events);

      const before = { status: s.status.readStatus('web'), rollout: s.status.getRollout('web'), lastEvent: s.events.latestEventId() };
      assert.throws(() =>
        s.status.recordStep('web', {
          status: status('web', 2, 'Complete'),
          rollout: null,
          // type is NOT NULL: this event fails after status and rollout were written in the transaction.
          events: [{ type: 'Fine', message: 'ok' }, { type: null as unknown as string, message: 'bad' }],
        }),
      );
      assert.deepEqual(s.status.readStatus('web'), before.status);
      assert.deepEqual(s.status.getRollout('web'), before.rollout);
      assert.equal(s.events.latestEventId(), before.lastEvent);
      assert.equal(seen.length, 2, 'rolled-back events are not delivered');

      s.status.recordStep('web', { rollout: null, events: [] });
      assert.equal(s.status.getRollout('web'), null);
      assert.deepEqual(s.status.readStatus('web'), before.status, 'status untouched when omitted');
      assert.throws(() => s.status.recordStep('web', { status: status('api', 1) }), storeError('INVALID_STEP'));
      s.close();
    });
  });

  // ---- events ----------------------------------------------------------------

  describe('pass inputs (one row per app: what a reconcile pass reads)', () => {
    test('one(): the app, its newest release, status, stable release, rollout record and release count, as the repositories answer them one by one', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web', { historyLimit: 7 }), 'a');
      for (const v of ['v1', 'v2', 'v3']) s.releases.createRelease({ app: 'web', version: v, reason: 'deploy', actor: 'a' });
      s.apps.setPaused('web', true, 'a');
      s.apps.setMaintenance('web', 'back soon', 'a');
      s.status.writeStatus(status('web', 2, 'Complete'));
      s.status.putRollout('web', 3, rolloutRecord(3, { batch: 1 }));
      assert.deepEqual(s.passInputs.one('web'), {
        name: 'web',
        paused: true,
        maintenance: 'back soon',
        deletingSince: null,
        historyLimit: 7,
        latest: s.releases.latestRelease('web'),
        status: s.status.readStatus('web'),
        stable: { revision: 2, version: 'v2' },
        rollout: s.status.getRollout('web'),
        releaseCount: 3,
      });
      s.apps.markDeleting('web', 'a');
      assert.equal(s.passInputs.one('web')?.deletingSince, s.apps.getApp('web')?.deletingSince);
      assert.equal(s.passInputs.one('nope'), null);
    });

    test('one(): an app with no release, status or record yet, and no history_limit of its own', async () => {
      const s = await open();
      s.apps.upsertApp(spec('web'), 'a');
      assert.deepEqual(s.passInputs.one('web'), {
        name: 'web',
        paused: false,
        maintenance: null,
        deletingSince: null,
        historyLimit: null,
        latest: null,
        status: null,
        stable: null,
        rollout: null,
        releaseCount: 0,
      });
    });

    test('page(): from a name (inclusive) in byte order of names, PAGE_APPS at most, each row parsed as one() parses it', async () => {
      const s = await open();
      const names = ['web-b', 'Web-a', 'web_c', 'web-a', 'api'];
      for (const n of names) {
        s.apps.upsertApp(spec(n), 'a');
        s.releases.createRelease({ app: n, version: 'v1', reason: 'deploy', actor: 'a' });
      }
      assert.deepEqual(
        (await s.passInputs.page('')).map((p) => p.name),
        [...names].sort(),
      );
      const page = await s.passInputs.page('web-a');
      assert.deepEqual(
        page.map((p) => p.name),
        ['web-a', 'web-b', 'web_c'],
      );
      assert.deepEqual(page[1]!.rows(), s.passInputs.one('web-b'));
      const more = Array.from({ length: PassInputsRepo.PAGE_APPS }, (_, i) => `z-${String(i).padStart(3, '0')}`);
      s.transaction(() => {
        for (const n of more) s.apps.upsertApp(spec(n), 'a');
      });
      assert.deepEqual(
        (await s.passInputs.page('web_c')).map((p) => p.name),
        ['web_c', ...more.slice(0, -1)],
      );
    });

    test('an invalid stored rollout record reads as absent and is reported, as getRollout does', async () => {
      const problems: string[] = [];
      const s = await open({ onInvalidRollout: (app, problem) => problems.push(`${app}: ${problem}`) });
      s.apps.upsertApp(spec('web'), 'a');
      s.status.putRollout('web', 1, rolloutRecord(1));
      s.sql.prepare('UPDATE rollouts SET state = ? WHERE app = ?').run(JSON.stringify({ ...rolloutRecord(1), revision: 2 }), 'web');
      assert.equal(s.passInputs.one('web')?.rollout, null);
      assert.equal((await s.passInputs.page('web'))[0]!.rows().rollout, null);
      assert.deepEqual(problems, ['web: revision: 2, but the row is revision 1', 'web: revision: 2, but the row is revision 1']);
    });
  });

  describe('events', () => {
    test('paging: ascending after an id (SSE resume), newest first before an id, per app or global', async () => {
      let t = Date.parse('2025-01-01T00:00:00Z');
      const s = await open({ clock: () => new Date((t += 1000)) });
      for (let i = 1; i <= 25; i++) {
        s.events.appendEvent({ app: i % 5 === 0 ? 'api' : 'web', type: 'Step', message: `m${i}`, revision: i });
      }
      const web = s.events.listEvents('web', { limit: 1000 });
      assert.equal(web.length, 20);
      assert.ok(web.every((e, i) => i === 0 || e.id > web[i - 1]!.id));
      assert.equal(web[0]?.createdAt, '2025-01-01T00:00:01.000Z');

      // Resume: pages of 7 after the last id seen give everything exactly once, in order.
      const resumed: number[] = [];
      let last = 0;
      for (;;) {
        const page = s.events.listEvents('web', { afterId: last, limit: 7 });
        if (page.length === 0) break;
        resumed.push(...page.map((e) => e.id));
        last = page.at(-1)!.id;
      }
      assert.deepEqual(resumed, web.map((e) => e.id));

      const newest = s.events.pageEvents('web', { limit: 3 });
      assert.deepEqual(newest.map((e) => e.message), ['m24', 'm23', 'm22']);
      const older = s.events.pageEvents('web', { limit: 3, beforeId: newest.at(-1)!.id });
      assert.deepEqual(older.map((e) => e.message), ['m21', 'm19', 'm18']);

      assert.equal(s.events.listEvents(null, { limit: 1000 }).length, 25);
      assert.deepEqual(s.events.listEvents('api').map((e) => e.message), ['m5', 'm10', 'm15', 'm20', 'm25']);
      assert.equal(s.events.listEvents(null, { afterId: s.events.latestEventId() }).length, 0);
      assert.equal(s.events.latestEventId('api'), 25);
      assert.equal(s.events.listEvents('web', { limit: 0 }).length, 1, 'limit clamps to at least 1');
      s.close();
    });

    test('newestOfTypes: the newest event of the given types among the app\'s newest N, or null', async () => {
      const s = await open();
      const add = (app: string, type: string, message: string) => s.events.appendEvent({ app, type, message });
      add('web', 'RolloutFailed', 'old failure');
      add('web', 'RolloutPaused', 'newer pause');
      add('api', 'RolloutFailed', 'another app');
      for (let i = 0; i < 5; i++) add('web', 'Step', `s${i}`);
      const types = ['RolloutFailed', 'RolloutPaused'];
      assert.equal(s.events.newestOfTypes('web', types, 10)?.message, 'newer pause');
      assert.equal(s.events.newestOfTypes('web', ['RolloutFailed'], 10)?.message, 'old failure');
      assert.equal(s.events.newestOfTypes('web', types, 6)?.message, 'newer pause', 'the 6th newest is the pause');
      assert.equal(s.events.newestOfTypes('web', types, 5), null, 'beyond the lookback');
      assert.equal(s.events.newestOfTypes('api', types, 10)?.message, 'another app');
      assert.equal(s.events.newestOfTypes('nope', types, 10), null);
      s.close();
    });

    test('subscribe: delivered after commit, not on rollback; a throwing listener does not fail the write', async () => {
      const listenerErrors: unknown[] = [];
      const where = await fx.location();
      const s = openAt(where, { onListenerError: (err) => listenerErrors.push(err) });
      // Another connection sees only what was committed.
      const observer = openAt(where);
      s.apps.upsertApp(spec('web'), 'a');
      const seen: string[] = [];
      const committedWhenDelivered: boolean[] = [];
      const off = s.events.subscribe((e) => {
        committedWhenDelivered.push(observer.events.listEvents('web', { afterId: e.id - 1, limit: 1 })[0]?.id === e.id);
        seen.push(e.message);
      });
      const offBad = s.events.subscribe(() => {
        throw new Error('listener bug');
      });

      s.transaction(() => {
        s.events.appendEvent({ app: 'web', type: 'A', message: 'one' });
        s.events.appendEvent({ app: 'web', type: 'A', message: 'two' });
        assert.deepEqual(seen, [], 'nothing delivered before the commit');
      });
      assert.deepEqual(seen, ['one', 'two']);
      assert.deepEqual(committedWhenDelivered, [true, true]);
      assert.equal(listenerErrors.length, 2, 'the throwing listener was reported, once per event');

      assert.throws(() =>
        s.transaction(() => {
          s.events.appendEvent({ app: 'web', type: 'A', message: 'rolled back' });
          throw new Error('abort');
        }),
      );
      assert.deepEqual(seen, ['one', 'two']);
      assert.equal(s.events.listEvents('web').filter((e) => e.message === 'rolled back').length, 0);

      off();
      offBad();
      s.events.appendEvent({ app: 'web', type: 'A', message: 'after unsubscribe' });
      assert.deepEqual(seen, ['one', 'two']);
      s.close();
    });

    test('a transaction cannot span an await: refused, what it wrote rolled back, the write lock let go', async () => {
      const where = await fx.location();
      const s = openAt(where);
      const seen: string[] = [];
      s.events.subscribe((e) => seen.push(e.message));
      const spansAwait = async (): Promise<void> => {
        s.events.appendEvent({ type: 'Early', message: 'before the await' });
        await null;
      };
      assert.throws(() => s.transaction(spansAwait as unknown as () => void), /promise/i);
      assert.equal(s.events.latestEventId(), 0, 'rolled back');
      assert.deepEqual(seen, [], 'not delivered');
      // Another writer gets the write lock at once (a transaction left open would hold it).
      const other = openAt(where, { busyTimeoutMs: 1_000 });
      assert.equal(other.events.appendEvent({ type: 'Later', message: 'another writer' }).type, 'Later');
      assert.equal(s.events.appendEvent({ type: 'Later', message: 'the same store again' }).type, 'Later');
      assert.equal(other.events.listEvents(null).length, 2);
    });
  });

  // ---- hosts -----------------------------------------------------------------

  describe('hosts status', () => {
    test('upsert and list; a down host keeps its last docker version', async () => {
      const s = await open();
      s.hostsStatus.upsert({ host: 'h2', up: true, dockerVersion: '24.0.7', checkedAt: '2025-01-01T00:00:00.000Z' });
      s.hostsStatus.upsert({ host: 'h1', up: true, dockerVersion: '24.0.7' });
      const down = s.hostsStatus.upsert({ host: 'h2', up: false, lastError: 'connect ECONNREFUSED' });
      assert.deepEqual(
        { up: down.up, dockerVersion: down.dockerVersion, lastError: down.lastError },
        { up: false, dockerVersion: '24.0.7', lastError: 'connect ECONNREFUSED' },
      );
      assert.deepEqual(
        s.hostsStatus.list().map((h) => [h.host, h.up]),
        [
          ['h1', true],
          ['h2', false],
        ],
      );
      assert.equal(s.hostsStatus.upsert({ host: 'h2', up: true }).lastError, null);
      assert.equal(s.hostsStatus.get('h3'), null);
      assert.equal(s.hostsStatus.delete('h1'), true);
      assert.equal(s.hostsStatus.list().length, 1);
      s.close();
    });

    test('refresh: many hosts in one write, new and known, each checked now; nothing for no hosts', async () => {
      const clock = { now: new Date('2026-01-01T00:00:00.000Z') };
      const s = await open({ clock: () => clock.now });
      s.hostsStatus.upsert({ host: 'h1', up: false, dockerVersion: '20.10', lastError: 'refused' });
      clock.now = new Date('2026-01-01T00:01:00.000Z');
      s.hostsStatus.refresh([
        { host: 'h1', up: true, dockerVersion: '24.0.7', lastError: null },
        { host: "h'2", up: false, dockerVersion: null, lastError: 'no route' },
      ]);
      s.hostsStatus.refresh([]);
      assert.deepEqual(s.hostsStatus.list(), [
        { host: "h'2", up: false, dockerVersion: null, lastError: 'no route', checkedAt: '2026-01-01T00:01:00.000Z' },
        { host: 'h1', up: true, dockerVersion: '24.0.7', lastError: null, checkedAt: '2026-01-01T00:01:00.000Z' },
      ]);
    });
  });
  });
}
