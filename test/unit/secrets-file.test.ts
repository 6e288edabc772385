/**
 * Apps' secrets files (`<data dir>/secrets/<app>.env`): the format (table), the refusal
 * of a file others can access (as OpenSSH refuses a key), a re-read after every edit,
 * and a secret named but missing: an issue at its key path naming the file, at `PUT`
 * (422) and at config load (the daemon does not start). The daemon's environment is no
 * source: test/integration/secrets-exec.test.ts shows it on the test hosts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { secretsDirPath } from '../../src/defaults.js';
import type { TlsSpec } from '../../src/domain/app-spec.js';
import { SecretMissingError, SecretsFileError } from '../../src/domain/errors.js';
import { missingSecretIssues, secretValuesFrom } from '../../src/secrets/app-secrets.js';
import { parseSecretsFile } from '../../src/secrets/env-file.js';
import { appDoc, makeApi } from '../support/api.js';
import { DAEMON_CONFIG, daemonSandbox, killDaemon, waitReady } from '../support/daemon.js';
import { makeSpec } from '../support/fixtures.js';
import { secretsFileText, tempSecrets } from '../support/secrets.js';

const PEM = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+f\n-----END PRIVATE KEY-----';

describe('the secrets file format', () => {
  const ok: Array<[string, string, Record<string, string>]> = [
    ['NAME=value lines; blank lines and # comments skipped', '# db\n\nA=1\n  # indented comment\nB=two words\n', { A: '1', B: 'two words' }],
    ['spaces around the name and before the value go, trailing blanks of an unquoted value too', '  A =  x y  \t\n', { A: 'x y' }],
    ['an unquoted value is literal: #, $, quotes, backslashes and = are part of it', 'A=p#ss $HOME "q" \\n a=b\n', { A: 'p#ss $HOME "q" \\n a=b' }],
    ['an empty value is a value', 'A=\nB=""\n', { A: '', B: '' }],
    ['export prefix', 'export A=1\nexport\tB=2\n', { A: '1', B: '2' }],
    ['single quotes: literal, blanks kept', "A=' x\\n #y '\n", { A: ' x\\n #y ' }],
    ['double quotes: \\n, \\" and \\\\ are escapes, any other backslash stays', 'A="a\\nb \\"q\\" c\\\\d \\t"\n', { A: 'a\nb "q" c\\d \\t' }],
    ['a quoted value may span lines (a PEM)', `KEY="${PEM.split('\n').join('\n')}"\nNEXT=1\n`, { KEY: PEM, NEXT: '1' }],
    ['single-quoted over lines, blanks at line ends kept', "K='a  \n  b'\n", { K: 'a  \n  b' }],
    ['CRLF line ends and a byte order mark', '\uFEFFA=1\r\nB="x"\r\n', { A: '1', B: 'x' }],
    ['a name like __proto__ stays plain data', '__proto__=x\n', { ['__proto__']: 'x' }],
    ['the test helper writes any value so that it reads back', secretsFileText({ A: 'q"uo\\te\nnew line ', B: PEM }), { A: 'q"uo\\te\nnew line ', B: PEM }],
  ];
  for (const [what, text, values] of ok) {
    test(what, () => {
      const parsed = parseSecretsFile(text);
      assert.deepEqual(parsed.problems, []);
      assert.deepEqual(parsed.values, values);
      assert.equal(Object.getPrototypeOf(parsed.values), Object.prototype);
    });
  }

  const bad: Array<[string, string, string[]]> = [
    ['a line without =, which may be a pasted value: not quoted back', 'A=1\nhunter2-secret\n', ['line 2: expected NAME=value']],
    ['a bad name', '1A=x\nA-B=y\n=z\n', [1, 2, 3].map((n) => `line ${n}: expected a variable name before "=" (letters, digits and "_", not starting with a digit)`)],
    ['a name set twice', 'A=1\nB=2\nA=3\n', ['line 3: A is set again (first on line 1)']],
    ['no closing quote', 'A="abc\nB=1\n', ['line 1: A: no closing double quote']],
    ['text after the closing quote', "A='x' y\nB=\"m\nn\" #c\n", ['line 1: A: text after the closing quote (line 1)', 'line 2: B: text after the closing quote (line 3)']],
  ];
  for (const [what, text, problems] of bad) {
    test(`refused: ${what}`, () => {
      const parsed = parseSecretsFile(text);
      assert.deepEqual(parsed.problems, problems);
      for (const p of parsed.problems) assert.ok(!p.includes('hunter2') && !p.includes('abc'), `a problem never quotes the text: ${p}`);
    });
  }
});

describe('reading an app secrets file', () => {
  const s = tempSecrets();
  after(() => s.remove());

  test('no file: no values and no problem (an app without secrets needs none)', () => {
    const read = s.files.read('nofile');
    assert.deepEqual(read, { file: join(s.dir, 'nofile.env'), exists: false, values: {}, problem: null });
    assert.throws(() => secretValuesFrom(read, ['A']), (e: unknown) => e instanceof SecretMissingError && /^secret A is not in .*nofile\.env \(no such file\): add a line A=<value> to it \(mode 0600\)$/.test(e.message));
    assert.deepEqual(secretValuesFrom(read, []), {});
  });

  test('a file group or others can access is refused, as OpenSSH refuses a key: naming the file and the fix; 0600 and 0400 are read', () => {
    const file = s.write('web', { DB_PASSWORD: 'pw-1-abcdef' });
    assert.equal(statSync(s.dir).mode & 0o777, 0o700, 'the directory is 0700');
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602]) {
      chmodSync(file, mode);
      const read = s.files.read('web');
      assert.deepEqual(read.values, {}, `mode ${mode.toString(8)}: no value is used`);
      assert.equal(
        read.problem,
        `UNPROTECTED SECRETS FILE: permissions 0${mode.toString(8)} for ${file} are too open; a secrets file must not be accessible by group or others, so it is not used. Fix: chmod 600 ${file}`,
      );
      assert.throws(() => secretValuesFrom(read, ['DB_PASSWORD']), (e: unknown) => e instanceof SecretsFileError && e.code === 'SECRETS_FILE_INVALID' && e.message === read.problem);
    }
    for (const mode of [0o600, 0o400]) {
      chmodSync(file, mode);
      assert.deepEqual(s.files.read('web'), { file, exists: true, values: { DB_PASSWORD: 'pw-1-abcdef' }, problem: null }, mode.toString(8));
    }
  });

  test('every edit is read (rotation), a malformed file is refused whole, naming the file and line', () => {
    s.write('rot', { A: 'first-value' });
    assert.deepEqual(s.files.read('rot').values, { A: 'first-value' });
    assert.equal(s.files.read('rot'), s.files.read('rot'), 'unchanged: the cached read');
    s.write('rot', { A: 'second-val!' }); // same length, new inode
    assert.deepEqual(s.files.read('rot').values, { A: 'second-val!' });
    const file = join(s.dir, 'rot.env');
    writeFileSync(file, 'A=third-value\n'); // in place
    assert.deepEqual(s.files.read('rot').values, { A: 'third-value' });
    writeFileSync(file, 'A=1\nthe-password\n');
    const read = s.files.read('rot');
    assert.equal(read.problem, `${file} is not used: line 2: expected NAME=value`);
    assert.deepEqual(read.values, {});
  });
});

describe('a secret named but missing', () => {
  const s = tempSecrets();
  after(() => s.remove());
  const given: TlsSpec = { source: 'given', certificate: 'SHOP_CRT', privateKey: 'SHOP_KEY' };

  test('missingSecretIssues: one issue per missing name at its key path (secrets and a given certificate), naming the file', () => {
    const spec = makeSpec({ name: 'shop', secrets: ['DB_PASSWORD', 'API_KEY'], proxy: { port: 80, host: 'shop.test', pathPrefix: null, drainTimeoutMs: 0, tls: given } });
    const file = join(s.dir, 'shop.env');
    assert.deepEqual(
      missingSecretIssues(spec, s.files, 'apps.shop').map((i) => i.path),
      ['apps.shop.secrets[0]', 'apps.shop.secrets[1]', 'apps.shop.proxy.tls.certificate', 'apps.shop.proxy.tls.private_key'],
    );
    assert.equal(missingSecretIssues(spec, s.files, 'apps.shop')[0]!.message, `secret DB_PASSWORD is not in ${file} (no such file): add a line DB_PASSWORD=<value> to it (mode 0600)`);
    s.write('shop', { DB_PASSWORD: 'x', SHOP_CRT: 'c', SHOP_KEY: 'k' });
    assert.deepEqual(missingSecretIssues(spec, s.files, 'body'), [{ path: 'body.secrets[1]', message: `secret API_KEY is not in ${file}: add a line API_KEY=<value> to it (mode 0600)` }]);
    chmodSync(file, 0o644);
    assert.deepEqual(missingSecretIssues(spec, s.files, 'body').map((i) => [i.path, i.message.slice(0, 40)]), [['body.secrets[0]', 'UNPROTECTED SECRETS FILE: permissions 06']]);
    assert.deepEqual(missingSecretIssues(makeSpec({ name: 'plain' }), s.files, 'body'), [], 'an app that names no secret needs no file');
  });

  test('PUT /v1/apps/:app: 422 with the key path and the file, nothing stored; once the file has it, 201', async () => {
    const api = makeApi({ secrets: s.files });
    try {
      s.write('web', { DB_PASSWORD: 'pw-abcdef' });
      const doc = appDoc({ secrets: ['DB_PASSWORD', 'AWS_SECRET_ACCESS_KEY'] });
      const res = await api.call({ method: 'PUT', url: '/v1/apps/web', payload: doc });
      assert.equal(res.statusCode, 422, res.body);
      const body = JSON.parse(res.body) as { code: string; issues: Array<{ path: string; message: string }> };
      assert.equal(body.code, 'CONFIG_INVALID');
      assert.deepEqual(body.issues, [{ path: 'body.secrets[1]', message: `secret AWS_SECRET_ACCESS_KEY is not in ${join(s.dir, 'web.env')}: add a line AWS_SECRET_ACCESS_KEY=<value> to it (mode 0600)` }]);
      assert.equal(api.store.apps.getApp('web'), null, 'nothing stored');
      assert.ok(!res.body.includes('pw-abcdef'));

      s.write('web', { DB_PASSWORD: 'pw-abcdef', AWS_SECRET_ACCESS_KEY: 'k-123456' });
      assert.equal((await api.call({ method: 'PUT', url: '/v1/apps/web', payload: doc })).statusCode, 201);

      // berth exec when a value went missing since: 409 with the reason (not a 500 "see the log").
      for (const err of [new SecretMissingError('API_KEY', '/d/secrets/web.env', true), new SecretsFileError('/d/secrets/web.env', 'UNPROTECTED SECRETS FILE: …')]) {
        api.controller.exec = async () => {
          throw err;
        };
        const exec = await api.call({ method: 'POST', url: '/v1/apps/web/exec', payload: { command: 'true' } });
        assert.equal(exec.statusCode, 409, exec.body);
        assert.deepEqual(JSON.parse(exec.body), { error: 'Conflict', code: err.code, message: err.message });
      }
    } finally {
      await api.close();
    }
  });
});

describe('config load: every secret of every app in its file, or the daemon does not start', () => {
  const sandbox = daemonSandbox('berth-secrets-load-', 'secrets-load-token-0123456789abcdef-77');
  after(() => sandbox.cleanup());
  const config = sandbox.writeConfig('berth.yml', DAEMON_CONFIG.replace('    port: 3000\n', '    port: 3000\n    secrets: [DB_PASSWORD]\n'));

  test("missing (though set in the daemon's environment): exit non-zero, naming the key path and the file; with the file, it starts", async () => {
    const db = join(sandbox.path, 'data', 'berth.db');
    const file = join(secretsDirPath(db), 'web.env');
    const d = await sandbox.spawn({ config, db, env: { DB_PASSWORD: 'from-the-env-123' } });
    assert.notEqual((await d.exit(15_000)).code, 0);
    assert.ok(d.output().includes(`apps.web.secrets[0]: secret DB_PASSWORD is not in ${file} (no such file)`), d.output());
    assert.doesNotMatch(d.output(), /berth is running/);
    assert.equal(statSync(secretsDirPath(db)).mode & 0o777, 0o700, 'the secrets directory was made 0700');

    writeFileSync(file, 'DB_PASSWORD=from-the-file\n', { mode: 0o644 });
    const loose = await sandbox.spawn({ config, db });
    assert.notEqual((await loose.exit(15_000)).code, 0);
    assert.ok(loose.output().includes(`apps.web.secrets[0]: UNPROTECTED SECRETS FILE: permissions 0644 for ${file} are too open`), loose.output());
    assert.ok(loose.output().includes(`Fix: chmod 600 ${file}`));

    chmodSync(file, 0o600);
    const good = await sandbox.spawn({ config, db });
    try {
      await waitReady(good);
      assert.ok(existsSync(file));
      assert.ok(!good.output().includes('from-the-file'), 'the value is never logged');
    } finally {
      await killDaemon(good);
    }
  });
});
