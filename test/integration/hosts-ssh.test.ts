/**
 * The SSH layer against a real OpenSSH server of its own (sshd on 127.0.0.1, a throwaway
 * host key), no Docker needed: host key checks (fingerprint pin, known_hosts plain / hashed /
 * [addr]:port), auth failure, streamlocal + direct-tcpip channels carrying HTTP, reconnect
 * after the server restarts, and the fail-fast backoff while it is down.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { HostSpec } from '../../src/domain/app-spec.js';
import { HostError } from '../../src/domain/errors.js';
import { createLogger } from '../../src/log.js';
import { httpRequest } from '../../src/hosts/http-request.js';
import { fingerprintOf } from '../../src/hosts/host-keys.js';
import { keyPermissionProblem, SshConnection } from '../../src/hosts/ssh-connection.js';
import { createSshDriver } from '../../src/hosts/docker/driver.js';
import type { DockerEvent } from '../../src/hosts/host-driver.js';

const SSHD = '/usr/sbin/sshd';
const skip =
  process.platform !== 'linux' || process.getuid?.() !== 0
    ? 'needs root on Linux (runs its own sshd)'
    : !existsSync(SSHD) || spawnSync('ssh-keygen', ['-?']).error
      ? 'needs openssh-server and ssh-keygen'
      : false;
const log = createLogger({ level: process.env.BERTH_LOG_LEVEL ?? 'error', pretty: false });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function keygen(path: string): string {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(`${path}.pub`, 'utf8').trim();
}

async function expectCode(p: Promise<unknown>, code: string): Promise<HostError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HostError, `expected HostError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe('SSH connection against a throwaway sshd', { skip }, () => {
  let dir: string;
  let port: number;
  let sshd: ChildProcess | null = null;
  let hostPub: string;
  let hostFp: string;
  let httpSrv: http.Server;
  let httpPort: number;
  let unixSrv: http.Server;
  let sock: string;
  const conns: SshConnection[] = [];

  const startSshd = async (): Promise<void> => {
    mkdirSync('/run/sshd', { recursive: true });
    sshd = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let errText = '';
    sshd.stderr?.on('data', (c: Buffer) => (errText += c.toString()));
    const until = Date.now() + 5_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(true)); // port taken: sshd listens
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
      });
      if (up) return;
      if (Date.now() > until) throw new Error(`sshd did not start: ${errText}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stopSshd = async (): Promise<void> => {
    const p = sshd;
    sshd = null;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  };

  const spec = (over: Partial<HostSpec> = {}): HostSpec => {
    const s = {
      name: 'lo',
      local: false,
      address: '127.0.0.1',
      sshPort: port,
      user: 'root',
      sshKeyPath: join(dir, 'client'),
      hostKey: hostFp,
      knownHostsPath: null,
      dockerSocket: '/var/run/docker.sock',
      stateDir: '/var/lib/berth',
      ...over,
    };
    return s;
  };
  const conn = (over: Partial<HostSpec> = {}, opts: ConstructorParameters<typeof SshConnection>[2] = {}): SshConnection => {
    const c = new SshConnection(spec(over), log, opts);
    conns.push(c);
    return c;
  };
  const get = async (c: SshConnection, target: 'tcp' | 'unix', path: string) => {
    const ac = new AbortController();
    return httpRequest({
      host: 'lo',
      target:
        target === 'tcp'
          ? { kind: 'stream', open: () => c.forwardTcp('127.0.0.1', httpPort), hostHeader: `127.0.0.1:${httpPort}`, describe: 'tcp' }
          : { kind: 'stream', open: () => c.forwardUnix(sock), hostHeader: '', describe: 'unix' },
      method: 'GET',
      path,
      signal: ac.signal,
    });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-sshd-'));
    port = await freePort();
    hostPub = keygen(join(dir, 'host'));
    const blob = Buffer.from(hostPub.split(/\s+/)[1]!, 'base64');
    hostFp = fingerprintOf(blob);
    const printed = spawnSync('ssh-keygen', ['-lf', join(dir, 'host.pub')], { encoding: 'utf8' }).stdout.split(/\s+/)[1];
    assert.equal(hostFp, printed, 'our fingerprint is what ssh-keygen -lf prints');
    writeFileSync(join(dir, 'authorized_keys'), `${keygen(join(dir, 'client'))}\n`);
    keygen(join(dir, 'stranger'));
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${join(dir, 'host')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'AllowTcpForwarding yes',
        'AllowStreamLocalForwarding yes',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    httpSrv = http.createServer((req, res) => res.end(`tcp ${req.url} host=${req.headers.host ?? '-'}`));
    await new Promise<void>((r) => httpSrv.listen(0, '127.0.0.1', r));
    httpPort = (httpSrv.address() as AddressInfo).port;
    sock = join(dir, 'admin.sock');
    unixSrv = http.createServer((req, res) => res.end(`unix ${req.url} host=${JSON.stringify(req.headers.host ?? null)}`));
    await new Promise<void>((r) => unixSrv.listen(sock, r));
    await startSshd();
  });

  after(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await stopSshd();
    httpSrv?.close();
    unixSrv?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('pinned key: connects, and carries HTTP over direct-tcpip and streamlocal channels', async () => {
    const c = conn();
    const t0 = performance.now();
    const tcp = await get(c, 'tcp', '/health');
    const tConnect = performance.now() - t0;
    assert.equal(tcp.status, 200);
    assert.equal(tcp.body, `tcp /health host=127.0.0.1:${httpPort}`);
    const unix = await get(c, 'unix', '/config/');
    assert.equal(unix.body, 'unix /config/ host=""', 'no Host header invented for a Unix socket');
    // Many concurrent channels on the one connection.
    const t1 = performance.now();
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => get(c, 'tcp', `/${i}`)));
    assert.deepEqual(
      many.map((r) => r.body.split(' ')[1]),
      Array.from({ length: 50 }, (_, i) => `/${i}`),
    );
    console.log(`  ssh: connect+first request ${tConnect.toFixed(0)} ms, 50 concurrent requests ${(performance.now() - t1).toFixed(0)} ms`);
    assert.equal(c.state, 'ready');
  });

  test('a closed port is a channel failure, not a hang', async () => {
    const c = conn();
    const closed = await freePort();
    await expectCode(c.forwardTcp('127.0.0.1', closed), 'SSH_CHANNEL_FAILED');
    await expectCode(c.forwardUnix(join(dir, 'nope.sock')), 'SSH_CHANNEL_FAILED');
    assert.equal(c.state, 'ready', 'the connection itself is fine');
  });

  test('host keys: a wrong pin, an unknown host and a changed known_hosts key are refused', async () => {
    const wrong = `SHA256:${Buffer.alloc(32, 1).toString('base64').replace(/=+$/, '')}`;
    const e1 = await expectCode(conn({ hostKey: wrong }).ready(), 'HOST_KEY_MISMATCH');
    assert.ok(e1.message.includes(hostFp) && e1.message.includes(wrong), e1.message);

    const strangerPub = readFileSync(join(dir, 'stranger.pub'), 'utf8').split(/\s+/).slice(0, 2).join(' ');
    const myPub = hostPub.split(/\s+/).slice(0, 2).join(' ');
    const kh = (name: string, text: string): string => {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    // [addr]:port form, the right key: accepted.
    await conn({ hostKey: null, knownHostsPath: kh('kh-ok', `# comment\nother.example ${strangerPub}\n[127.0.0.1]:${port} ${myPub}\n`) }).ready();
    // Hashed entry (ssh-keygen -H): accepted.
    const hashed = kh('kh-hashed', `[127.0.0.1]:${port} ${myPub}\n`);
    assert.equal(spawnSync('ssh-keygen', ['-H', '-f', hashed]).status, 0);
    assert.match(readFileSync(hashed, 'utf8'), /^\|1\|/);
    await conn({ hostKey: null, knownHostsPath: hashed }).ready();
    // Bare address without the port means port 22 only: unknown here.
    await expectCode(conn({ hostKey: null, knownHostsPath: kh('kh-port22', `127.0.0.1 ${myPub}\n`) }).ready(), 'HOST_KEY_UNKNOWN');
    // Listed with another key: changed.
    const e2 = await expectCode(
      conn({ hostKey: null, knownHostsPath: kh('kh-changed', `[127.0.0.1]:${port} ${strangerPub}\n`) }).ready(),
      'HOST_KEY_MISMATCH',
    );
    assert.match(e2.message, /kh-changed line 1/);
    // Revoked.
    await expectCode(
      conn({ hostKey: null, knownHostsPath: kh('kh-revoked', `[127.0.0.1]:${port} ${myPub}\n@revoked * ${myPub}\n`) }).ready(),
      'HOST_KEY_MISMATCH',
    );
  });

  test('a key the server does not accept is HOST_AUTH_FAILED', async () => {
    await expectCode(conn({ sshKeyPath: join(dir, 'stranger') }).ready(), 'HOST_AUTH_FAILED');
    await expectCode(conn({ sshKeyPath: join(dir, 'missing-key') }).ready(), 'HOST_CONFIG_INVALID');
  });

  test('a private key file accessible by group or others is refused (UNPROTECTED PRIVATE KEY FILE), as a host error; 0600 is accepted', async () => {
    const key = join(dir, 'client-perm');
    copyFileSync(join(dir, 'client'), key);
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      chmodSync(key, mode);
      const c = conn({ sshKeyPath: key });
      const e = await expectCode(c.ready(), 'HOST_CONFIG_INVALID');
      assert.equal(e.host, 'lo');
      assert.match(e.message, /UNPROTECTED PRIVATE KEY FILE/);
      assert.ok(e.message.includes(`0${mode.toString(8)} for ${key}`), e.message);
      assert.ok(e.message.includes(`chmod 600 ${key}`), e.message);
      assert.equal(c.state, 'backoff', 'the host is down, nothing crashed');
      assert.equal(c.lastFailure?.code, 'HOST_CONFIG_INVALID');
    }
    chmodSync(key, 0o600);
    const ok = conn({ sshKeyPath: key });
    await ok.ready();
    assert.equal(ok.state, 'ready');
    chmodSync(key, 0o400);
    await conn({ sshKeyPath: key }).ready();
  });

  test('the SSH driver: Docker API through the agent; events re-subscribe after the stream ends', async () => {
    const dockerSock = join(dir, 'docker.sock');
    const eventQueries: URLSearchParams[] = [];
    let eventsOpen = 0;
    const fake = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/version') return res.end(JSON.stringify({ Version: '99.0.1', ApiVersion: '1.99' }));
      if (url.pathname === '/events') {
        eventQueries.push(url.searchParams);
        eventsOpen += 1;
        res.on('close', () => (eventsOpen -= 1));
        res.writeHead(200, { 'Content-Type': 'application/json' });
        const n = eventQueries.length;
        const ev = { Type: 'container', Action: 'start', Actor: { ID: `c${n}`, Attributes: { 'berth.app': 'web' } }, time: 1700000000 + n };
        // Split one event across two writes: the reader must join lines.
        const line = `${JSON.stringify(ev)}\n`;
        res.write(line.slice(0, 10));
        setTimeout(() => res.write(line.slice(10)), 20);
        if (n === 1) setTimeout(() => res.end(), 100); // the daemon "restarts"
        return;
      }
      res.writeHead(404).end(JSON.stringify({ message: 'not here' }));
    });
    await new Promise<void>((r) => fake.listen(dockerSock, r));
    const ops: string[] = [];
    const d = createSshDriver(spec({ dockerSocket: dockerSock }), log, { onOperation: (op, _s, ok) => ops.push(`${op}:${ok}`) });
    try {
      assert.deepEqual(await d.ping(), { dockerVersion: '99.0.1' });
      assert.equal(await d.inspectContainer('nope'), null);
      const seen: DockerEvent[] = [];
      const stop = d.watchEvents((e) => seen.push(e));
      await waitUntil(() => seen.length >= 3, 5_000);
      assert.deepEqual(seen.slice(0, 3), [
        { id: 'c1', app: 'web', action: 'start' },
        { id: null, app: null, action: 'resubscribed' },
        { id: 'c2', app: 'web', action: 'start' },
      ]);
      assert.equal(eventQueries[0]?.get('since'), null);
      assert.equal(eventQueries[1]?.get('since'), '1700000001', 're-subscribes from the last event seen');
      assert.deepEqual(JSON.parse(eventQueries[1]?.get('filters') ?? '{}'), { type: ['container'], label: ['berth.managed=true'] });
      stop();
      await waitUntil(() => eventsOpen === 0, 2_000);
      assert.ok(ops.includes('connect:true') && ops.includes('ping:true') && ops.includes('events_subscribe:true'), ops.join(' '));
    } finally {
      await d.close();
      fake.close();
    }
  });

  test('reconnects lazily after the link drops; fails fast during the backoff', async () => {
    const c = conn({}, { backoffBaseMs: 1_000, backoffMaxMs: 2_000 });
    assert.equal((await get(c, 'tcp', '/a')).status, 200);
    // Stopping sshd leaves established sessions alive (OpenSSH forks one per connection):
    // end those too, by pid, so our link really drops.
    const master = sshd?.pid;
    assert.ok(master);
    const sessions = childrenOf(master);
    await stopSshd();
    for (const pid of sessions) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    await waitUntil(() => c.state !== 'ready', 5_000);
    const e1 = await expectCode(get(c, 'tcp', '/b'), 'HOST_UNREACHABLE');
    assert.match(e1.message, /ECONNREFUSED/);
    assert.equal(c.state, 'backoff');
    const t0 = performance.now();
    const e2 = await expectCode(c.ready(), 'HOST_UNREACHABLE');
    assert.ok(performance.now() - t0 < 50, 'fails fast');
    assert.match(e2.message, /next reconnect attempt in/);
    await startSshd();
    await waitUntil(() => c.state === 'idle', 3_000);
    assert.equal((await get(c, 'tcp', '/c')).status, 200);
    assert.equal(c.state, 'ready');
  });
});

test('private key permissions: what is too open, as OpenSSH judges it (no sshd needed)', () => {
  const me = 1000;
  // Our own key: no access for group or others at all.
  for (const mode of [0o600, 0o400, 0o700]) assert.equal(keyPermissionProblem('/k', 0o100000 | mode, me, me), null, mode.toString(8));
  for (const mode of [0o644, 0o640, 0o604, 0o610, 0o601, 0o660, 0o666]) {
    const p = keyPermissionProblem('/k', 0o100000 | mode, me, me);
    assert.equal(p, `UNPROTECTED PRIVATE KEY FILE: permissions 0${mode.toString(8)} for /k are too open; a private key must not be accessible by group or others, so it is not used. Fix: chmod 600 /k`);
  }
  // Someone else's key (root:berth 0640, read through the group): a group may share it, everyone may not.
  assert.equal(keyPermissionProblem('/k', 0o100640, 0, me), null);
  assert.equal(keyPermissionProblem('/k', 0o100600, 0, me), null);
  const open = keyPermissionProblem('/k', 0o100644, 0, me);
  assert.match(open ?? '', /^UNPROTECTED PRIVATE KEY FILE: permissions 0644 for \/k are too open; .* by others.* Fix: chown 1000 \/k && chmod 600 \/k /);
  // No POSIX ownership (Windows): no check.
  assert.equal(keyPermissionProblem('/k', 0o100644, 0, null), null);
});

/** Direct children of a process (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* exited */
    }
  }
  return out;
}

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 25));
  }
}
