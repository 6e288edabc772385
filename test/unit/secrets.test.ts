/**
 * Secrets hardening, through the reconciler's real code paths: secret values never
 * reach hook/exec output tails, step errors, events or the log verbatim; a rotated
 * value changes the container config hash (so a rollback or a drift repair makes a
 * new container instead of restarting one with the old value); `BERTH_*` variables
 * cannot be named as secrets; `berth exec` container names do not collide.
 * Hosts are simulated; the real run is test/integration/secrets-exec.test.ts.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { pino, type Logger } from 'pino';
import { parseYaml } from '../../src/config/load.js';
import { validateAppDocument, validateConfigDocument } from '../../src/config/validate.js';
import { SEED_DEFAULTS, type AppSpec } from '../../src/domain/app-spec.js';
import { BerthError, ConfigError } from '../../src/domain/errors.js';
import { LABELS } from '../../src/domain/labels.js';
import type { RunOnceOptions, RunOnceResult } from '../../src/hosts/host-driver.js';
import { SimulatedHostDriver, simulatedFleet } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { execContext, readWanted, type ReconcilerDeps } from '../../src/reconciler/context.js';
import { Controller } from '../../src/reconciler/controller.js';
import { executeActions } from '../../src/reconciler/execute.js';
import { execInApp } from '../../src/reconciler/one-off.js';
import { newRecord, plan } from '../../src/reconciler/plan.js';
import { openStore, type Store } from '../../src/store/index.js';
import { appDoc, makeApi } from '../support/api.js';
import { makeContainer, makeSpec } from '../support/fixtures.js';
import { tempSecrets, type TempSecrets } from '../support/secrets.js';

const IMAGE = '10.77.0.1:5000/app';
const DB_PASSWORD = 'hunter2-correct-horse';
/** Contains DB_PASSWORD: the longer value must be redacted as a whole. */
const DATABASE_URL = `postgres://app:${DB_PASSWORD}@db:5432/app`;
const SHORT = 'ab';

/** A simulated host whose one-off runs print (or throw) what the test scripts. */
class ScriptedHost extends SimulatedHostDriver {
  readonly runs: RunOnceOptions[] = [];
  script: (o: RunOnceOptions) => RunOnceResult = () => ({ exitCode: 0, outputTail: '', timedOut: false });
  constructor(name: string) {
    super({ name, latencyMs: { hasImage: 0, pullImage: 0, ensureNetwork: 0 }, images: [`${IMAGE}:v1`] });
  }
  override async runOnce(o: RunOnceOptions): Promise<RunOnceResult> {
    this.runs.push(o);
    return this.script(o);
  }
}

function capturedLog(): { log: Logger; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: pino({ level: 'trace' }, sink), text: () => chunks.join('') };
}

interface Bed {
  store: Store;
  host: ScriptedHost;
  deps: ReconcilerDeps;
  logText: () => string;
  spec: AppSpec;
  close(): void;
}

/** App `web` on one scripted host, `values` in its secrets file. */
function bed(over: Partial<AppSpec> = {}, values: Record<string, string> = { DB_PASSWORD, DATABASE_URL, SHORT }): Bed {
  const store = openStore(':memory:');
  const secrets = tempSecrets();
  secrets.write('web', values);
  const host = new ScriptedHost('h1');
  const spec = makeSpec({ name: 'web', image: IMAGE, hosts: ['h1'], secrets: ['DB_PASSWORD', 'DATABASE_URL', 'SHORT'], ...over });
  store.apps.upsertApp(spec, 'test');
  store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
  const { log, text } = capturedLog();
  const deps: ReconcilerDeps = {
    store,
    drivers: new Map([['h1', host]]),
    traffic: directTraffic,
    metrics: new BerthMetrics('test', { processMetrics: false }),
    log,
    secrets: secrets.files,
    now: Date.now,
  };
  return {
    store,
    host,
    deps,
    logText: text,
    spec,
    close: () => {
      store.close();
      secrets.remove();
    },
  };
}

const eventsText = (store: Store) => JSON.stringify(store.events.listEvents('web', { limit: 1000 }));

function assertNoSecret(where: string, text: string): void {
  assert.ok(!text.includes(DB_PASSWORD), `DB_PASSWORD leaked into ${where}: ${text}`);
  assert.ok(!text.includes('db:5432'), `(the rest of) DATABASE_URL leaked into ${where}: ${text}`);
}

describe('secret values are redacted from hook and exec output and step errors', () => {
  let b: Bed;
  afterEach(() => b.close());

  test('berth exec: the output tail returned (API answer) has every secret value redacted, however often it appears', async () => {
    b = bed();
    b.host.script = () => ({
      exitCode: 0,
      outputTail: `DB_PASSWORD=${DB_PASSWORD}\nDATABASE_URL=${DATABASE_URL}\nagain: ${DB_PASSWORD}${DB_PASSWORD}\nSHORT=${SHORT}\n`,
      timedOut: false,
    });
    const out = await execInApp(b.deps, 'web', 'env');
    assertNoSecret('the exec answer', JSON.stringify(out));
    assert.equal(
      out.outputTail,
      'DB_PASSWORD=[redacted:DB_PASSWORD]\nDATABASE_URL=[redacted:DATABASE_URL]\nagain: [redacted:DB_PASSWORD][redacted:DB_PASSWORD]\nSHORT=ab\n',
      'the longer value (which contains the shorter) is redacted whole; a 2-character value is left alone',
    );
    assertNoSecret('events', eventsText(b.store));
    assertNoSecret('the log', b.logText());
    // The container itself still gets the values (only through the create body).
    assert.equal(b.host.runs[0]!.env.DB_PASSWORD, DB_PASSWORD);
  });

  test('a pre_deploy hook that prints the environment: the HookOutput event (store, API, log) shows [redacted:NAME]', async () => {
    b = bed({ hooks: { preDeploy: ['env'], postDeploy: [], timeoutMs: 60_000 } });
    b.host.script = (o) => ({ exitCode: 0, outputTail: Object.entries(o.env).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', timedOut: false });
    const wanted = readWanted(b.store.passInputs.one('web')!, b.deps.secrets);
    const [result] = await executeActions(execContext(b.deps, 'web', wanted.desired!, wanted.secrets), [{ type: 'hook', host: 'h1', phase: 'pre_deploy' }]);
    assert.equal(result!.ok, true);
    const hook = b.store.events.listEvents('web', { limit: 100 }).find((e) => e.type === 'HookOutput');
    assert.ok(hook, 'a HookOutput event was stored');
    assert.match(hook.message, /DB_PASSWORD=\[redacted:DB_PASSWORD\]/);
    assert.match(hook.message, /DATABASE_URL=\[redacted:DATABASE_URL\]/);
    assertNoSecret('events', eventsText(b.store));
    assertNoSecret('the log', b.logText());
  });

  test("a failing step's error message is redacted before it is stored, logged or returned", async () => {
    b = bed({ hooks: { preDeploy: ['migrate'], postDeploy: [], timeoutMs: 60_000 } });
    b.host.script = () => {
      throw new BerthError('DOCKER_ERROR', `create failed: bad env DATABASE_URL=${DATABASE_URL}`);
    };
    const wanted = readWanted(b.store.passInputs.one('web')!, b.deps.secrets);
    const [result] = await executeActions(execContext(b.deps, 'web', wanted.desired!, wanted.secrets), [{ type: 'hook', host: 'h1', phase: 'pre_deploy' }]);
    assert.ok(result && !result.ok);
    assert.equal(result.message, 'create failed: bad env DATABASE_URL=[redacted:DATABASE_URL]');
    assertNoSecret('the step log', b.logText());

    // berth exec: the error the API answers with is redacted too.
    await assert.rejects(execInApp(b.deps, 'web', 'true'), (err: Error) => {
      assert.equal(err.message, 'create failed: bad env DATABASE_URL=[redacted:DATABASE_URL]');
      assert.ok(!String(err.stack).includes(DB_PASSWORD), 'nor in the stack (which the API may log)');
      return true;
    });
  });
});

describe('the container config hash covers secret values', () => {
  test('readWanted: a rotated secret value (the file edited) changes the desired config hash; the hash never holds the value', () => {
    const store = openStore(':memory:');
    const secrets = tempSecrets();
    try {
      store.apps.upsertApp(makeSpec({ name: 'web', hosts: ['h1'], secrets: ['DB_PASSWORD'] }), 'test');
      store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
      const hash = (values: Record<string, string>) => {
        secrets.write('web', values);
        return readWanted(store.passInputs.one('web')!, secrets.files).desired!.configHash;
      };
      const before = hash({ DB_PASSWORD: 'old-value-1' });
      const same = hash({ DB_PASSWORD: 'old-value-1' });
      const rotated = hash({ DB_PASSWORD: 'new-value-2' });
      const missing = hash({});
      assert.equal(before, same, 'stable for the same values');
      assert.notEqual(before, rotated, 'a rotated value is a new container config');
      assert.notEqual(before, missing);
      for (const h of [before, rotated]) {
        assert.match(h, /^[0-9a-f]{16}$/);
        assert.ok(!h.includes('old-value') && !h.includes('new-value'));
      }
    } finally {
      store.close();
      secrets.remove();
    }
  });

  test('planner: a converged host whose container has another config gets a new container, named apart from the old one', () => {
    const spec = makeSpec({ hosts: ['h1'], secrets: ['DB_PASSWORD'] });
    const old = makeContainer(1, 'v1', { spec, id: 'old' }); // hashed without the rotated value
    const desired = { revision: 1, version: 'v1', spec, reason: 'deploy' as const, configHash: 'feedc0de12345678' };
    const record = { ...newRecord(1, 0), state: 'complete' as const, pulled: ['h1'], hosts: { h1: { step: 'switched' as const, containerId: 'old', at: 1 } }, finishedAt: 1 };
    const p = plan({
      app: 'web',
      desired,
      stable: { revision: 1, version: 'v1' },
      observed: [{ host: 'h1', reachable: true, containers: [old] }],
      record,
      paused: false,
      maintenance: null,
      now: 10,
      previousConditions: [],
    });
    assert.deepEqual(p.actions, [{ type: 'updateHost', host: 'h1', existingContainerId: null, containerName: 'web-r1-feedc0de', pull: false }]);
  });

  describe('with a simulated host and a live controller', () => {
    let store: Store;
    let controller: Controller;
    let drivers: Map<string, SimulatedHostDriver>;
    let secrets: TempSecrets;
    /** The operator edits web's secrets file (rename over it): the next pass reads it. */
    const setPassword = (value: string | null) => secrets.write('web', value === null ? {} : { DB_PASSWORD: value });
    const quiet = pino({ level: 'silent' });

    beforeEach(() => {
      secrets = tempSecrets();
      setPassword('old-password-1');
      drivers = simulatedFleet(1, {
        prefix: 'h',
        latencyMs: { pullImage: 1, startContainer: 1, stopContainer: 1 },
        // A container given the wrong password never turns healthy.
        httpHandler: (c) => (c.env.DB_PASSWORD === 'wrong-password' ? { status: 500, body: 'cannot reach the database' } : null),
      });
      store = openStore(':memory:');
      const healthcheck = { ...SEED_DEFAULTS.healthcheck, intervalMs: 20, maxAttempts: 2 };
      store.apps.upsertApp(makeSpec({ name: 'web', image: IMAGE, hosts: ['h1'], secrets: ['DB_PASSWORD'], healthcheck }), 'test');
      controller = new Controller({ store, drivers, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: quiet, resyncIntervalMs: 60_000, secrets: secrets.files });
    });
    afterEach(async () => {
      await controller.stop();
      store.close();
      secrets.remove();
    });

    const h1 = () => drivers.get('h1')!;
    const running = () => h1().containers().filter((c) => c.state === 'running' && c.labels[LABELS.role] === 'app');

    async function until(what: string, pred: () => boolean, ms = 5_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status ${JSON.stringify(store.status.readStatus('web'))}; containers ${JSON.stringify(h1().containers().map((c) => [c.name, c.state, c.labels[LABELS.version], c.env.DB_PASSWORD]))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    const converged = (revision: number) => () => {
      const s = store.status.readStatus('web');
      return (s?.phase === 'Complete' || s?.phase === 'RolledBack') && s.observedRevision === revision;
    };

    test('a rollback after a secret rotation creates a new container with the new value instead of restarting the retained one', async () => {
      controller.start();
      const r1 = store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
      controller.enqueue('web');
      await until('v1', converged(1));
      store.releases.createRelease({ app: 'web', version: 'v2', reason: 'deploy', actor: 'test' });
      controller.enqueue('web');
      await until('v2', converged(2));
      await controller.idle();
      const retainedV1 = h1().containers().find((c) => c.labels[LABELS.version] === 'v1');
      assert.ok(retainedV1 && retainedV1.state === 'exited', 'v1 is retained, stopped');

      // The operator rotates the password (edits the app's secrets file) and rolls back to v1.
      setPassword('new-password-2');
      store.releases.createRelease({ app: 'web', version: 'v1', spec: r1.spec, reason: 'rollback', actor: 'test' });
      controller.enqueue('web');
      await until('the rollback', () => converged(3)() && running().length === 1 && running()[0]!.labels[LABELS.version] === 'v1');
      const [serving] = running();
      assert.equal(serving!.env.DB_PASSWORD, 'new-password-2', 'the rolled-back container has the rotated value');
      assert.notEqual(serving!.id, retainedV1.id, 'a new container, not the retained one with the old value');
    });

    test('a rotated secret replaces the running containers of the current release, and the fleet converges', async () => {
      controller.start();
      store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
      controller.enqueue('web');
      await until('v1', converged(1));
      await controller.idle();
      const first = running()[0]!;
      assert.equal(first.env.DB_PASSWORD, 'old-password-1');

      setPassword('new-password-2');
      controller.enqueue('web');
      await until('the replacement', () => running().length === 1 && running()[0]!.env.DB_PASSWORD === 'new-password-2' && converged(1)());
      await controller.idle();
      // Converged for good: no create loop (the old container holds the name web-r1).
      const creates = h1().containers().length;
      controller.enqueue('web');
      await controller.idle();
      await new Promise((r) => setTimeout(r, 50));
      await controller.idle();
      assert.equal(h1().containers().length, creates, 'a further pass creates nothing');
      const names = h1().containers().map((c) => c.name).sort();
      assert.equal(names.length, 2);
      assert.equal(names[0], 'web-r1');
      assert.match(names[1]!, /^web-r1-[0-9a-f]{8}$/, 'the new container of the same revision gets a config-suffixed name');
      assert.notEqual(running()[0]!.id, first.id);
    });

    for (const [what, breakIt] of [
      ['rotated to a value the app rejects', () => setPassword('wrong-password')],
      ['removed from the file', () => setPassword(null)],
    ] as const) {
      test(`a secret ${what}, then put back: the replacement fails, and the container that served all along is kept`, async () => {
        controller.start();
        store.releases.createRelease({ app: 'web', version: 'v1', reason: 'deploy', actor: 'test' });
        controller.enqueue('web');
        await until('v1', converged(1));
        await controller.idle();
        const serving = running()[0]!;

        breakIt();
        controller.enqueue('web');
        await until('the failed replacement', () => store.status.readStatus('web')?.hosts[0]?.health === 'unhealthy');
        await controller.idle();
        assert.deepEqual(running().map((c) => c.id), [serving.id], 'the old container still serves');

        setPassword('old-password-1');
        for (let i = 0; i < 3; i++) {
          controller.enqueue('web');
          await controller.idle();
          await new Promise((r) => setTimeout(r, 20));
        }
        await controller.idle();
        assert.deepEqual(running().map((c) => c.id), [serving.id], 'still serving: not removed as the failed host\'s target');
      });
    }
  });
});

describe('BERTH_* variables cannot be secrets', () => {
  test('config load: a secret named BERTH_TOKEN is refused with the key path', () => {
    const yaml = [
      'hosts:',
      '  h1: { address: 10.77.0.11, host_key: "SHA256:XC9kx/Ie/V+149akmavl6sskiub28AhTh8mgVtEO9f0" }',
      'apps:',
      '  web:',
      '    image: 10.77.0.1:5000/web',
      '    hosts: [h1]',
      '    secrets: [BERTH_TOKEN, DB_PASSWORD, berth_db]',
      '',
    ].join('\n');
    try {
      validateConfigDocument(parseYaml(yaml), { homeDir: '/home/op', baseDir: '/etc/berth' });
      assert.fail('the config was accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      assert.deepEqual(
        err.issues.map((i) => i.path),
        ['apps.web.secrets[0]', 'apps.web.secrets[2]'],
      );
      assert.match(err.issues[0]!.message, /BERTH_TOKEN.*reserved/);
    }
  });

  test('validateAppDocument refuses it too (the API path)', () => {
    assert.throws(
      () => validateAppDocument('web', { image: IMAGE, hosts: ['h1'], secrets: ['BERTH_DB'] }, ['h1']),
      (err: unknown) => err instanceof ConfigError && err.issues[0]?.path === 'apps.web.secrets[0]',
    );
  });

  test('PUT /v1/apps/:app with secrets: [BERTH_TOKEN] answers 422 naming body.secrets[0]', async () => {
    const api = makeApi();
    try {
      const res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: appDoc({ secrets: ['BERTH_TOKEN'] }) });
      assert.equal(res.statusCode, 422, res.body);
      const body = JSON.parse(res.body) as { code: string; issues: Array<{ path: string }> };
      assert.equal(body.code, 'CONFIG_INVALID');
      assert.deepEqual(body.issues.map((i) => i.path), ['body.secrets[0]']);
      assert.equal(api.store.apps.getApp('web'), null, 'nothing stored');
    } finally {
      await api.close();
    }
  });

  test('secretValues refuses a BERTH_ name even from a spec stored before the rule (defence in depth)', () => {
    const b = bed({ secrets: ['DB_PASSWORD', 'BERTH_TOKEN'] }, { DB_PASSWORD, BERTH_TOKEN: 'the-api-token-123' });
    try {
      const wanted = readWanted(b.store.passInputs.one('web')!, b.deps.secrets);
      const ctx = execContext(b.deps, 'web', wanted.desired!, wanted.secrets);
      assert.deepEqual(ctx.secretValues(['DB_PASSWORD']), { DB_PASSWORD });
      assert.throws(() => ctx.secretValues(['DB_PASSWORD', 'BERTH_TOKEN']), (err: unknown) => err instanceof BerthError && /BERTH_TOKEN/.test(err.message) && !err.message.includes('the-api-token-123'));
    } finally {
      b.close();
    }
  });
});

describe('berth exec container names', () => {
  test('two execs started in the same millisecond get different container names', async () => {
    const b = bed();
    const now = mock.method(Date, 'now', () => 1_700_000_000_000);
    try {
      await execInApp(b.deps, 'web', 'true');
      await execInApp(b.deps, 'web', 'true');
      const [a, c] = b.host.runs.map((r) => r.name);
      assert.match(a!, /^web-exec-/);
      assert.notEqual(a, c);
    } finally {
      now.mock.restore();
      b.close();
    }
  });
});
