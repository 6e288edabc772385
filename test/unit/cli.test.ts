/**
 * The `berth` CLI as a user runs it (a child process, BERTH_URL/BERTH_TOKEN in its
 * environment) against a real daemon child on a free loopback port. The daemon's
 * only host is a local Docker whose socket does not exist, so releases are
 * recorded and the controller runs, but nothing ever becomes healthy.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BERTH_VERSION } from '../../src/version.js';
import {
  BIN,
  DAEMON_CONFIG,
  ROOT,
  freePort,
  killDaemon,
  runCli,
  spawnDaemon,
  tempDir,
  waitReady,
  type DaemonChild,
} from '../support/daemon.js';

const TOKEN = 'cli-test-token-7d2e91c04b-86f3a0d2e5b7';
const dir = tempDir('berth-cli-test-');
const daemons: DaemonChild[] = [];
let daemon: DaemonChild;
let env: Record<string, string>;

before(async () => {
  const config = join(dir.path, 'berth.yml');
  writeFileSync(config, DAEMON_CONFIG);
  daemon = spawnDaemon({ config, db: join(dir.path, 'data', 'berth.db'), port: await freePort(), token: TOKEN });
  daemons.push(daemon);
  await waitReady(daemon);
  // BERTH_DB points at an empty directory so no token file is ever picked up by accident.
  env = { BERTH_URL: daemon.url, BERTH_TOKEN: TOKEN, BERTH_DB: join(dir.path, 'cli', 'berth.db'), USER: 'ci-tester' };
});
after(async () => {
  await Promise.all(daemons.map(killDaemon));
  dir.remove();
});

const berth = (...args: string[]) => runCli(args, env);

function ok(r: { code: number | null; stdout: string; stderr: string }): string {
  assert.equal(r.code, 0, `exit 0 expected; stderr: ${r.stderr}`);
  return r.stdout;
}

describe('berth CLI', () => {
  test('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await berth('--version');
    assert.equal(ok(r), `${pkg.version}\n`);
    assert.equal(BERTH_VERSION, pkg.version);
    assert.equal(r.stderr, '');
  });

  test('--help lists every command; no command at all prints it and exits 2', async () => {
    const out = ok(await berth('--help'));
    assert.match(out, /^Usage:$/m);
    for (const cmd of ['daemon', 'deploy APP VERSION', 'status', 'hosts', 'rollback APP', 'pause APP', 'resume APP', 'history APP', 'events APP']) {
      assert.ok(out.includes(`berth ${cmd}`), `help mentions "berth ${cmd}"`);
    }
    assert.match(out, /BERTH_URL/);
    const bare = await berth();
    assert.equal(bare.code, 2);
    assert.match(bare.stdout, /^Usage:$/m);
    assert.equal(ok(await berth('-h')), out);
  });

  test('deploy prints the new revision', async () => {
    assert.equal(ok(await berth('deploy', 'web', 'v1')), 'web: revision 1 asks for v1\n');
    assert.equal(ok(await berth('deploy', 'web', 'v2')), 'web: revision 2 asks for v2\n');
    const json = JSON.parse(ok(await berth('deploy', 'web', 'v3', '--json'))) as { revision: number; version: string; reason: string };
    assert.deepEqual([json.revision, json.version, json.reason], [3, 'v3', 'deploy']);
  });

  test('status: a table of apps; status APP --json: the API view', async () => {
    const out = ok(await berth('status'));
    const [head, ...rows] = out.trimEnd().split('\n');
    assert.match(head!, /^APP\s+PHASE\s+DESIRED\s+OBSERVED\s+HOSTS$/);
    assert.equal(rows.length, 1);
    assert.match(rows[0]!, /^web\s+(Progressing|NoRelease|Failed)\s+r3 v3\s+\S+\s+0\/1 healthy$/);

    const view = JSON.parse(ok(await berth('status', 'web', '--json'))) as {
      name: string;
      paused: boolean;
      desired: { revision: number; version: string };
      spec: { image: string; hosts: string[] };
      status: { hosts: Array<{ host: string; health: string; lastError: string | null }> } | null;
    };
    assert.equal(view.name, 'web');
    assert.equal(view.paused, false);
    assert.deepEqual([view.desired.revision, view.desired.version], [3, 'v3']);
    assert.deepEqual(view.spec.hosts, ['local']);
    assert.equal(view.spec.image, '10.77.0.1:5000/web');

    const human = ok(await berth('status', 'web'));
    assert.match(human, /^web: \w+ {2}desired r3 v3 {2}observed r-/m);
  });

  test('history: releases newest first with reason and actor', async () => {
    const out = ok(await berth('history', 'web'));
    const lines = out.trimEnd().split('\n');
    assert.match(lines[0]!, /^REV\s+VERSION\s+REASON\s+ACTOR\s+CREATED$/);
    assert.deepEqual(
      lines.slice(1).map((l) => l.split(/\s+/).slice(0, 4)),
      [['3', 'v3', 'deploy', 'ci-tester'], ['2', 'v2', 'deploy', 'ci-tester'], ['1', 'v1', 'deploy', 'ci-tester']],
    );
    assert.match(lines[1]!, /\d+s ago$/);
    const json = JSON.parse(ok(await berth('history', 'web', '--json'))) as { releases: Array<{ revision: number }> };
    assert.deepEqual(json.releases.map((r) => r.revision), [3, 2, 1]);
  });

  test('rollback: --to a named version as new revisions; without --to, only to a version whose rollout completed', async () => {
    // This daemon's hosts never answer: no release of web ever completed a rollout.
    const none = await berth('rollback', 'web');
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'berth: app "web" has no earlier version than v3 whose rollout completed; name the version to roll back to (HTTP 409 CONFLICT)\n');
    assert.equal(ok(await berth('rollback', 'web', '--to', 'v2')), 'web: revision 4 rolls back to v2\n');
    assert.equal(ok(await berth('rollback', 'web', '--to', 'v1')), 'web: revision 5 rolls back to v1\n');
    assert.equal(ok(await berth('rollback', 'web', '--to=v3')), 'web: revision 6 rolls back to v3\n');
    const history = ok(await berth('history', 'web'));
    assert.match(history, /^4\s+v2\s+rollback\s+ci-tester/m);
    assert.match(history, /^5\s+v1\s+rollback/m);
    const missing = await berth('rollback', 'web', '--to', 'v9');
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'berth: release with version "v9" of app "web" not found (HTTP 404 NOT_FOUND)\n');
  });

  test('pause and resume', async () => {
    assert.equal(ok(await berth('pause', 'web')), 'web: paused\n');
    assert.match(ok(await berth('status')), /^web \(paused\)\s/m);
    assert.match(ok(await berth('status', 'web')), /^web: \w+ \(paused\)/m);
    assert.equal(ok(await berth('resume', 'web')), 'web: resumed\n');
    assert.doesNotMatch(ok(await berth('status')), /paused/);
  });

  test('events: the audit trail, oldest first', async () => {
    const out = ok(await berth('events', 'web'));
    const lines = out.trimEnd().split('\n');
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z\s+AppCreated: app web created/);
    assert.match(out, /ReleaseCreated: revision 1: deploy version v1$/m);
    assert.match(out, /ReleaseCreated: revision 4: rollback to version v2$/m);
    assert.match(out, /AppPaused: app web paused$/m);
    assert.match(out, /AppResumed: app web resumed$/m);
    assert.ok(out.indexOf('AppPaused') < out.indexOf('AppResumed'));
    const json = JSON.parse(ok(await berth('events', 'web', '--json'))) as { events: Array<{ id: number; type: string }> };
    const ids = json.events.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  });

  test('events --follow streams new events live', async (t) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'events', 'web', '--follow'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => {
      proc.kill('SIGKILL');
    });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const waitFor = async (re: RegExp, ms = 10_000) => {
      const deadline = Date.now() + ms;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in --follow output within ${ms} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await waitFor(/AppResumed/); // the backlog
    ok(await berth('deploy', 'web', 'v7'));
    await waitFor(/ReleaseCreated: revision 7: deploy version v7/); // live
  });

  test('same version: deploy and rollback --to of the desired version say "already at revision N", nothing new', async () => {
    const before = ok(await berth('history', 'web'));
    assert.equal(ok(await berth('deploy', 'web', 'v7')), 'web: already at revision 7 (v7)\n');
    const json = JSON.parse(ok(await berth('deploy', 'web', 'v7', '--json'))) as { revision: number; unchanged: boolean };
    assert.deepEqual([json.revision, json.unchanged], [7, true]);
    assert.equal(ok(await berth('rollback', 'web', '--to', 'v7')), 'web: already at revision 7 (v7)\n');
    assert.equal(ok(await berth('history', 'web')).split('\n').length, before.split('\n').length, 'no new release');
  });

  test('usage errors exit 2 with ONE line: the reason and which --help to read', async () => {
    const oneLine = (r: { code: number | null; stdout: string; stderr: string }, re: RegExp) => {
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.match(r.stderr, re);
    };
    oneLine(await berth('frobnicate'), /^berth: unknown command "frobnicate"; see berth --help$/m);
    oneLine(await berth('deploi', 'web', 'v1'), /^berth: unknown command "deploi" \(did you mean "deploy"\?\); see berth --help$/m);
    oneLine(await berth('deploy', 'web'), /^berth: deploy needs APP VERSION; see berth deploy --help$/m);
    oneLine(await berth('history'), /^berth: history needs APP; see berth history --help$/m);
    oneLine(await berth('rollback', 'web', '--to'), /^berth: --to needs a value; see berth rollback --help$/m);
  });

  test('unknown options and extra arguments are errors (exit 2, one line, a hint), and nothing is sent', async () => {
    const wiat = await berth('deploy', 'web', 'v9', '--wiat');
    assert.equal(wiat.code, 2);
    assert.equal(wiat.stderr, 'berth: unknown option --wiat for "deploy" (did you mean --wait?); see berth deploy --help\n');
    assert.equal(wiat.stdout, '');
    const extra = await berth('deploy', 'web', 'v9', 'extra', 'args');
    assert.equal(extra.code, 2);
    assert.equal(extra.stderr, 'berth: unexpected arguments "extra" "args" for "deploy"; see berth deploy --help\n');
    const bogus = await berth('status', 'web', '--bogus');
    assert.equal(bogus.code, 2);
    assert.equal(bogus.stderr, 'berth: unknown option --bogus for "status"; see berth status --help\n');
    const valued = await berth('deploy', 'web', 'v9', '--wait=yes');
    assert.equal(valued.code, 2);
    assert.match(valued.stderr, /^berth: --wait takes no value/);
    const hots = await berth('exec', 'web', '--hots', 'h1', '--', 'ls', '--wait');
    assert.equal(hots.code, 2);
    assert.equal(hots.stderr, 'berth: unknown option --hots for "exec" (did you mean --host?); see berth exec --help\n');
    const noCmd = await berth('exec', 'web');
    assert.equal(noCmd.code, 2);
    assert.match(noCmd.stderr, /^berth: exec needs APP -- CMD; see berth exec --help\n$/);
    // After `--` the words are exec's command, not options: this reaches the daemon (no such host).
    const passed = await berth('exec', 'web', '--host', 'nohost', '--', 'ls', '--wiat');
    assert.equal(passed.code, 1, passed.stderr);
    assert.doesNotMatch(passed.stderr, /unknown option/);
    assert.doesNotMatch(ok(await berth('history', 'web')), /v9/);
  });

  test('-v prints the version; COMMAND --help / -h prints that command\'s usage only', async () => {
    assert.equal(ok(await berth('-v')), `${BERTH_VERSION}\n`);
    const deploy = ok(await berth('deploy', '--help'));
    assert.match(deploy, /^Usage: berth deploy APP VERSION \[--wait \[--timeout D\]\] \[--json\]$/m);
    assert.doesNotMatch(deploy, /berth status|berth rollback/);
    assert.equal(ok(await berth('rollback', 'web', '-h')), ok(await berth('help', 'rollback')));
    assert.match(ok(await berth('rollback', '-h')), /--to VERSION/);
    // --json before the command still works.
    assert.deepEqual(Object.keys(JSON.parse(ok(await berth('--json', 'status'))) as object), ['apps']);
  });

  test('API refusals exit 1 with the daemon\'s message', async () => {
    const bad = await berth('deploy', 'web', 'v1;rm -rf /');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^berth: body\.version: expected an image tag .*, got "v1;rm -rf \/" \(HTTP 400 INVALID_REQUEST\)$/m);
    const missing = await berth('deploy', 'nope', 'v1');
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'berth: app "nope" not found (HTTP 404 NOT_FOUND)\n');
    const badName = await berth('status', 'Web/../x');
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /params\.app: expected an app name/);
  });

  test('a wrong or missing token is a clear error, exit 1', async () => {
    const wrong = await runCli(['status'], { ...env, BERTH_TOKEN: 'not-the-token' });
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stderr, 'berth: invalid bearer token (HTTP 401 UNAUTHORIZED); the token came from BERTH_TOKEN\n');
    assert.equal(wrong.stdout, '');
    const { BERTH_TOKEN: _t, ...noToken } = env;
    const none = await runCli(['deploy', 'web', 'v9'], noToken);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^berth: missing Authorization: Bearer <token> header \(HTTP 401 UNAUTHORIZED\); no token sent: BERTH_TOKEN is unset and (\S+) does not exist/m);
    assert.ok(none.stderr.includes(join(dir.path, 'cli', 'token')), `names the token file it tried: ${none.stderr}`);
    // Nothing was deployed by either.
    assert.doesNotMatch(ok(await berth('history', 'web')), /v9/);
  });

  test('the daemon down is a clear "cannot reach berth" error, exit 1', async () => {
    const port = await freePort();
    const r = await runCli(['status'], { ...env, BERTH_URL: `http://127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^berth: cannot reach berth at http://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\); is the daemon running\\?`, 'm'));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  test('events --follow fails at once when it cannot connect or is refused, instead of retrying forever', async () => {
    const port = await freePort();
    const down = await runCli(['events', 'web', '--follow'], { ...env, BERTH_URL: `http://127.0.0.1:${port}` }, 8000);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^berth: cannot reach berth at http:\/\/127\.0\.0\.1:\d+ \(.*ECONNREFUSED.*\)/m);
    const refused = await runCli(['events', 'web', '--follow'], { ...env, BERTH_TOKEN: 'not-the-token' }, 8000);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'berth: invalid bearer token (HTTP 401 UNAUTHORIZED); the token came from BERTH_TOKEN\n');
  });

  test('a server that is not berth (a proxy error page) is reported plainly, without a stack trace', async (t) => {
    const server = http.createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const { port } = server.address() as AddressInfo;
    const r = await runCli(['status'], { ...env, BERTH_URL: `http://127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berth: http:\/\/127\.0\.0\.1:\d+ answered 502 Bad Gateway without a berth error body \(is BERTH_URL a berth daemon\?\): <html><body><h1>502 Bad Gateway/m);
    assert.doesNotMatch(r.stderr, /SyntaxError|\n\s+at /);
  });

  test('without BERTH_TOKEN the CLI uses the token the daemon generated next to its database', async () => {
    const config = join(dir.path, 'berth.yml');
    const db = join(dir.path, 'generated', 'berth.db');
    const d = spawnDaemon({ config, db, port: await freePort() }); // no token: the daemon makes one
    daemons.push(d);
    await waitReady(d);
    const token = readFileSync(join(dir.path, 'generated', 'token'), 'utf8').trim();
    assert.ok(token.length >= 32);
    assert.equal(d.output().includes(token), false, 'the generated token is not logged');
    const r = await runCli(['deploy', 'web', 'v1'], { BERTH_URL: d.url, BERTH_DB: db });
    assert.equal(ok(r), 'web: revision 1 asks for v1\n');
    d.proc.kill('SIGTERM');
    assert.equal((await d.exit(5000)).code, 0);
  });
  test('reload and remove: the file\'s app is refused naming the file; an invalid file lists its issue; remove --wait times out on a host it cannot reach', async () => {
    const config = join(dir.path, 'berth.yml');
    assert.equal(ok(await berth('reload')), 'config reloaded: no app changed\n');
    const refused = await berth('remove', 'web');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /declared in the config file .*berth\.yml: remove it there, then reload/);

    writeFileSync(config, DAEMON_CONFIG.replace('    port: 3000', '    port: 3000\n    replicas: 2'));
    try {
      const invalid = await berth('reload');
      assert.equal(invalid.code, 1);
      assert.match(invalid.stderr, /apps\.web\.replicas/);
    } finally {
      writeFileSync(config, DAEMON_CONFIG);
    }

    const put = await fetch(`${daemon.url}/v1/apps/blog`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: '10.77.0.1:5000/web', hosts: ['local'], port: 3000 }),
    });
    assert.equal(put.status, 201);
    const removing = await berth('remove', 'blog', '--wait', '--timeout', '1s');
    assert.equal(removing.code, 3, removing.stderr);
    assert.equal(removing.stdout, 'blog: being removed: draining its routes and removing its containers on local\n');
    assert.match(removing.stderr, /blog still being removed after 1s \(a host may be unreachable: berth hosts\)/);
  });

  test('status lists every app, following the API\'s pages (more apps than one page holds)', async () => {
    const d = spawnDaemon({ config: join(dir.path, 'berth.yml'), db: join(dir.path, 'paged', 'berth.db'), port: await freePort(), token: TOKEN });
    daemons.push(d);
    await waitReady(d);
    const names = Array.from({ length: 54 }, (_, i) => `app-${String(i).padStart(2, '0')}`);
    for (const name of names) {
      const res = await fetch(`${d.url}/v1/apps/${name}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ image: '10.77.0.1:5000/web', hosts: ['local'] }),
      });
      assert.equal(res.status, 201, await res.text());
    }
    const first = (await (await fetch(`${d.url}/v1/apps`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { apps: unknown[]; next: string | null };
    assert.ok(first.next !== null && first.apps.length < names.length + 1, 'the API answers more than one page');
    const paged = { ...env, BERTH_URL: d.url };
    const listed = JSON.parse(ok(await runCli(['status', '--json'], paged))) as { apps: Array<{ name: string }> };
    assert.deepEqual(listed.apps.map((a) => a.name), [...names, 'web']);
    const rows = ok(await runCli(['status'], paged)).trim().split('\n').slice(1);
    assert.equal(rows.length, names.length + 1);
    d.proc.kill('SIGTERM');
    assert.equal((await d.exit(5000)).code, 0);
  });
  test('logs: a host that cannot be read is said on stderr with its reason, exit 1; --json gives one object per line', async () => {
    const r = await berth('logs', 'web');
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^local: error: .*\/nonexistent\/docker\.sock/m);
    const json = await berth('logs', 'web', '--json', '--tail', '5');
    assert.equal(json.code, 1);
    const [item] = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual([item!.type, item!.host, item!.state, item!.code], ['host', 'local', 'error', 'HOST_UNREACHABLE']);
  });

  test('logs: usage mistakes exit 2 with one line and send nothing; a host the app does not run on is the daemon\'s 409', async () => {
    for (const [args, re] of [
      [['--tail', 'lots'], /^berth: --tail "lots" is not a number of lines from 0 to 10000; see berth logs --help\n$/],
      [['--tail', '10001'], /^berth: --tail "10001" is not a number/],
      [['--since', 'yesterday'], /^berth: --since "yesterday" is neither a duration like 10m nor an RFC 3339 time/],
    ] as Array<[string[], RegExp]>) {
      const r = await berth('logs', 'web', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    const other = await berth('logs', 'web', '--host', 'h9');
    assert.equal(other.code, 1);
    assert.equal(other.stderr, 'berth: host "h9" does not run app "web" (hosts: local) (HTTP 409 CONFLICT)\n');
    // An app without processes: --process is the daemon's refusal, not a filter that filters nothing.
    const processless = await berth('logs', 'web', '--process', 'worker');
    assert.equal(processless.code, 1);
    assert.equal(processless.stderr, 'berth: querystring.process: app "web" has no processes (it runs one, unnamed) (HTTP 400 INVALID_REQUEST)\n');
    assert.match(ok(await berth('logs', '--help')), /^Usage: berth logs APP \[--host H\] \[--process P\] \[--since D\] \[--tail N\] \[-f \| --follow\] \[--json\]$/m);
  });

  test('logs -f: each line after its host, states on stderr; after a dropped stream it asks again from the newest line seen, repeating none', async (t) => {
    const frame = (event: string, data: object) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    const line = (host: string, time: string, text: string) => frame('line', { host, container: 'web-r1', stream: 'stdout', time, text });
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      asked.push(req.url!);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (asked.length === 1) {
        res.write(frame('host', { host: 'h1', state: 'attached', container: 'web-r1', message: 'web-r1 (v1)', code: null }));
        res.write(frame('host', { host: 'h22', state: 'attached', container: 'web-r1', message: 'web-r1 (v1)', code: null }));
        res.write(line('h1', '2026-11-29T09:00:01.000000005Z', 'one'));
        res.write(line('h22', '2026-11-29T09:00:02.000000000Z', 'two'));
        res.end(); // the daemon restarts
      } else {
        res.write(line('h1', '2026-11-29T09:00:01.000000005Z', 'one'));
        res.write(line('h22', '2026-11-29T09:00:02.000000000Z', 'two'));
        res.write(line('h1', '2026-11-29T09:00:03.000000000Z', 'three'));
        res.write(frame('host', { host: 'h22', state: 'error', container: null, message: 'list containers: no answer', code: 'HOST_TIMEOUT' }));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const { port } = server.address() as AddressInfo;
    const proc = spawn(process.execPath, ['--import', 'tsx', BIN, 'logs', 'web', '-f', '--tail', '3'], { cwd: ROOT, env: { ...process.env, ...env, BERTH_URL: `http://127.0.0.1:${port}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => void proc.kill('SIGKILL'));
    let out = '';
    let errOut = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (errOut += d));
    const deadline = Date.now() + 10_000;
    while (!errOut.includes('h22: error:')) {
      assert.ok(Date.now() < deadline, `no end in sight: ${out} ${errOut}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(out, 'h1  | one\nh22 | two\nh1  | three\n');
    assert.equal(errOut, 'h1: attached: web-r1 (v1)\nh22: attached: web-r1 (v1)\nh22: error: list containers: no answer\n');
    assert.deepEqual(asked, ['/v1/apps/web/logs?follow=true&tail=3', '/v1/apps/web/logs?follow=true&since=2026-11-29T09%3A00%3A01.000Z&tail=10000']);
  });

  test("status APP shows the failed containers' last log lines: the status's, else the last failure's", async (t) => {
    const view = {
      name: 'web',
      paused: false,
      desired: { revision: 3, version: 'v1' },
      status: {
        app: 'web',
        phase: 'Paused',
        observedRevision: 1,
        conditions: [],
        hosts: [
          { host: 'h1', version: 'v1', revision: 1, containerId: 'c1', health: 'unhealthy', lastError: 'never healthy', lastLogs: ['booting', 'db: refused'] },
          { host: 'h2', version: 'v1', revision: 1, containerId: 'c2', health: 'healthy', lastError: null, lastLogs: null },
        ],
        updatedAt: new Date().toISOString(),
      },
      lastFailure: { reason: 'HealthCheckFailed', message: 'h1: never healthy', revision: 3, at: new Date().toISOString(), logs: [{ host: 'h1', lines: ['booting', 'db: refused'] }, { host: 'h3', lines: [] }] },
    };
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(view));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const { port } = server.address() as AddressInfo;
    const out = ok(await runCli(['status', 'web'], { ...env, BERTH_URL: `http://127.0.0.1:${port}` }));
    assert.match(out, /last failure: HealthCheckFailed \(revision 3\) \d+s ago: h1: never healthy\n {2}h1: the last 2 log lines of its failed container:\n {4}\| booting\n {4}\| db: refused\n {2}h3: its failed container wrote no log line\n$/);
  });

  test('check-config: a valid file exits 0 with what it holds; an invalid one lists every issue with its key path and exits 1; nothing is contacted', async () => {
    assert.equal(ok(await berth('check-config', join(ROOT, 'deploy', 'berth.yml'))), `${join(ROOT, 'deploy', 'berth.yml')}: valid (1 host, 1 app)\n`);
    const bad = join(dir.path, 'bad.yml');
    writeFileSync(bad, 'hosts:\n  h1: { address: 10.0.0.1 }\nregistries:\n  ghcr: { username: u }\napps:\n  web: { image: x, hosts: [h9], port: 99999, replicas: 2 }\n');
    const r = await berth('check-config', bad);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    for (const path of ['hosts.h1', 'registries.ghcr', 'registries.ghcr.password', 'apps.web.replicas', 'apps.web.hosts[0]', 'apps.web.port']) {
      assert.ok(lines.some((l) => l.startsWith(`${bad}: ${path}: `)), `${path} in:\n${r.stderr}`);
    }
    const json = JSON.parse((await berth('check-config', bad, '--json')).stdout) as { ok: boolean; issues: Array<{ path: string }> };
    assert.equal(json.ok, false);
    assert.ok(json.issues.length >= 4);
    assert.equal((await berth('check-config')).code, 2, 'FILE is required');
    // Registry passwords are names of lines of a file next to the daemon's database: not read here.
    const withRegistry = join(dir.path, 'registry.yml');
    writeFileSync(withRegistry, 'registries:\n  ghcr.io: { username: ci-bot, password: GHCR_TOKEN }\n');
    assert.equal(ok(await berth('check-config', withRegistry)), `${withRegistry}: valid (0 hosts, 0 apps)\n`);
  });

  test('check-config connects to nothing and reads no key, known_hosts or secrets file: a host whose SSH port listens gets no connection', async () => {
    let connections = 0;
    const sshd = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => sshd.listen(0, '127.0.0.1', resolve));
    const { port } = sshd.address() as AddressInfo;
    const file = join(dir.path, 'listening.yml');
    writeFileSync(file, `hosts:\n  h1: { address: 127.0.0.1, port: ${port}, ssh_key: /nonexistent/key, known_hosts: /nonexistent/known_hosts }\napps:\n  web: { image: x, hosts: [h1], secrets: [DB_URL] }\n`);
    try {
      assert.equal(ok(await berth('check-config', file)), `${file}: valid (1 host, 1 app)\n`);
    } finally {
      await new Promise((resolve) => sshd.close(resolve));
    }
    assert.equal(connections, 0);
  });

  test('import-kamal: the config on stdout passes check-config, each note on stderr is `key.path: why`; exit 1 when the file cannot be read, 2 without PATH', async () => {
    const project = join(dir.path, 'kamal');
    mkdirSync(join(project, 'config'), { recursive: true });
    writeFileSync(join(project, 'config', 'deploy.yml'), 'service: shop\nimage: shop\nservers: [ 10.0.0.1 ]\nbuilder:\n  arch: amd64\nregistry:\n  server: ghcr.io\n  username: ci\n  password: [ KAMAL_REGISTRY_PASSWORD ]\n');
    writeFileSync(join(project, 'config', 'deploy.staging.yml'), 'servers: [ 10.1.0.1, 10.1.0.2 ]\n');
    const r = await berth('import-kamal', project, '-d', 'staging');
    const file = join(dir.path, 'imported.yml');
    writeFileSync(file, ok(r));
    assert.equal(ok(await berth('check-config', file)), `${file}: valid (2 hosts, 1 app)\n`);
    const notes = r.stderr.trimEnd().split('\n');
    assert.ok(notes.every((l) => /^[^\s:]+(:\d+)?: \S/.test(l)), r.stderr);
    assert.ok(notes.includes('builder: berth deploys images you have built: build and push them (CI), then `berth deploy APP TAG`'), r.stderr);
    assert.ok(!r.stderr.includes('does not pass'), r.stderr);
    const missing = await berth('import-kamal', join(dir.path, 'nowhere'));
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.equal(missing.stderr, `berth: cannot read ${join(dir.path, 'nowhere')}: no such file\n`);
    assert.equal((await berth('import-kamal')).code, 2, 'PATH is required');
  });
});
