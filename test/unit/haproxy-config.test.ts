import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ProxyRouteSpec } from '../../src/domain/app-spec.js';
import { countAnswers, countOldWorkers, parseShowMap, parseShowStat, renderProxy, routeKey, switchCommands, type HostRoute, type Slot } from '../../src/proxy/haproxy-config.js';

const route = (app: string, port: number | null, host: string | null, pathPrefix: string | null = null): HostRoute => ({
  app,
  route: { port, host, pathPrefix, drainTimeoutMs: 1000 } satisfies ProxyRouteSpec,
});
const slot = (backend: string, server: string, addr: string | null, state: Slot['state'], inFlight = 0): Slot => ({ backend, server, addr, state, inFlight });

const tlsRoute = (app: string, host: string): HostRoute => ({ app, route: { port: null, host, pathPrefix: null, drainTimeoutMs: 1000, tls: { source: 'acme' } } });
const ROUTES = [route('web', 80, 'a.test'), route('api', 80, 'a.test', '/api'), route('blog', null, '*.example.com'), route('solo', 8080, null), tlsRoute('shop', 'shop.test')];
const SLOTS = [slot('app_web', 's1', '10.0.0.5:3000', 'ready'), slot('app_web', 's2', '10.0.0.6:3000', 'drain', 2)];

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const haproxy = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
const haveHaproxy = haproxy.status === 0;
const requireHaproxy = process.env.BERTH_TESTBED_REQUIRED === '1';

describe('HAProxy config (pure)', () => {
  const files = renderProxy(ROUTES, SLOTS, new Map([['web', 'Back soon; #1']]), '/state/admin.sock', ['shop.test', '*.example.com']);

  it('haproxy -c accepts the generated config with its maps', { skip: !haveHaproxy && !requireHaproxy ? 'haproxy is not installed (CI installs it)' : false }, () => {
    assert.ok(haveHaproxy, 'haproxy on PATH (BERTH_TESTBED_REQUIRED=1 requires it)');
    const dir = mkdtempSync(join(tmpdir(), 'berth-haproxy-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'haproxy.cfg'), files.config.replaceAll('/state/', `${dir}/`));
    writeFileSync(join(dir, 'maintenance.map'), files.maintenanceMap);
    writeFileSync(join(dir, 'routes.map'), files.routesMap);
    writeFileSync(join(dir, 'acme.map'), '');
    writeFileSync(join(dir, 'certs.list'), files.certList.replaceAll('/state/', `${dir}/`));
    // A listed certificate must exist: the same test pair for both names.
    const pem = ['shop.crt', 'shop.key'].map((f) => readFileSync(new URL(`../fixtures/tls/${f}`, import.meta.url), 'utf8')).join('');
    mkdirSync(join(dir, 'certs'));
    for (const line of files.certList.trim().split('\n')) writeFileSync(line.replace('/state/', `${dir}/`), pem);
    const check = spawnSync('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')], { encoding: 'utf8' });
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}\n${files.config}`);
  });

  it('the proxy never re-sends or re-routes a request: retries 0, no retry-on, no redispatch', () => {
    const defaults = files.config.slice(files.config.indexOf('defaults'), files.config.indexOf('frontend ')).split('\n').map((l) => l.trim());
    assert.ok(defaults.includes('retries 0'), defaults.join('\n'));
    assert.doesNotMatch(files.config, /retry-on|redispatch/);
  });

  it('one frontend per port; exact hosts before wildcards, longer paths first, whole path segments; a hostless route is the default', () => {
    const fe80 = files.config.slice(files.config.indexOf('frontend fe_80'), files.config.indexOf('frontend fe_8080'));
    const uses = fe80.split('\n').filter((l) => l.includes('use_backend') || l.includes('default_backend')).map((l) => l.trim());
    assert.deepEqual(uses, [
      'use_backend app_shop if { var(txn.host) -m str shop.test }',
      'use_backend app_api if { var(txn.host) -m str a.test } { path -m str /api } || { var(txn.host) -m str a.test } { path -m beg /api/ }',
      'use_backend app_web if { var(txn.host) -m str a.test }',
      'use_backend app_blog if { var(txn.host) -m end .example.com }',
      'default_backend be_no_route',
    ]);
    assert.match(files.config, /frontend fe_8080\n {4}bind :8080\n.*\n {4}default_backend app_solo/);
  });

  it('TLS: port 80 answers ACME challenges first and redirects the TLS host; port 443 routes only TLS routes with certificates from the list', () => {
    const fe80 = files.config.slice(files.config.indexOf('frontend fe_80'), files.config.indexOf('frontend fe_8080')).split('\n').map((l) => l.trim());
    assert.equal(fe80[3], 'http-request return status 200 content-type text/plain lf-string "%[path,field(4,/),map(/state/acme.map)]" if { path_beg /.well-known/acme-challenge/ } { path,field(4,/),map(/state/acme.map) -m found }');
    assert.equal(fe80[4], 'http-request redirect scheme https code 301 if { var(txn.host) -m str shop.test }');
    assert.doesNotMatch(files.config.slice(files.config.indexOf('frontend fe_8080'), files.config.indexOf('frontend fe_https')), /acme|redirect/, 'only port 80 answers challenges');
    const https = files.config.slice(files.config.indexOf('frontend fe_https'), files.config.indexOf('\nbackend be_no_route'));
    assert.match(https, /bind :443 ssl crt-list \/state\/certs\.list alpn http\/1\.1\n/);
    assert.deepEqual(https.split('\n').filter((l) => l.includes('_backend')).map((l) => l.trim()), ['use_backend app_shop if { var(txn.host) -m str shop.test }', 'default_backend be_no_route']);
    assert.equal(files.certList, '/state/certs/_.example.com.pem\n/state/certs/shop.test.pem\n');
    assert.equal(routeKey(tlsRoute('shop', 'shop.test').route), '80|shop.test|/|tls');
  });

  it('no TLS route, no HTTPS listener', () => {
    assert.doesNotMatch(renderProxy(ROUTES.slice(0, 4), [], new Map(), '/state/admin.sock').config, /fe_https|:443/);
  });

  it('servers keep their addresses across a rewrite: the serving one enabled, a draining one and an empty slot disabled', () => {
    assert.match(files.config, /backend app_web\n.*\n {4}server s1 10\.0\.0\.5:3000\n {4}server s2 10\.0\.0\.6:3000 disabled\n {4}server s3 127\.0\.0\.1:1 disabled/);
    assert.match(files.config, /backend app_blog\n.*\n {4}server s1 127\.0\.0\.1:1 disabled/);
  });

  it('maintenance answers 503 with the map value as literal text; the maps record messages and routes', () => {
    assert.match(files.config, /lf-string "%\[str\(app_web\),map\(\/state\/maintenance\.map\)\]"/);
    assert.equal(files.maintenanceMap, 'app_web Back soon; #1\n');
    assert.equal(files.routesMap, 'web 80|a.test|/\napi 80|a.test|/api\nblog 80|*.example.com|/\nsolo 8080|*|/\nshop 80|shop.test|/|tls\n');
    assert.equal(routeKey({ port: null, host: 'x.test', pathPrefix: '/', drainTimeoutMs: 0 }), '80|x.test|/');
  });
});

describe('switching by runtime commands', () => {
  it('a new address takes an empty slot, becomes ready, and the serving one drains', () => {
    assert.deepEqual(switchCommands('web', [...SLOTS, slot('app_web', 's3', null, 'maint')], '10.0.0.7:3000'), [
      'set server app_web/s3 addr 10.0.0.7 port 3000',
      'set server app_web/s3 state ready',
      'set server app_web/s1 state drain',
    ]);
  });

  it('switching back to a draining container reuses its slot (rollback)', () => {
    assert.deepEqual(switchCommands('web', SLOTS, '10.0.0.6:3000'), ['set server app_web/s2 state ready', 'set server app_web/s1 state drain']);
  });

  it('a switch to what already serves is no command at all', () => {
    assert.deepEqual(switchCommands('web', SLOTS, '10.0.0.5:3000'), []);
  });

  it('with no empty slot, one whose drain is over is taken', () => {
    const full = [slot('app_web', 's1', 'a:1', 'ready'), slot('app_web', 's2', 'b:1', 'drain', 1), slot('app_web', 's3', 'c:1', 'drain', 0)];
    assert.deepEqual(switchCommands('web', full, 'd:1'), ['set server app_web/s3 addr d port 1', 'set server app_web/s3 state ready', 'set server app_web/s1 state drain']);
  });

  it('no free slot while three containers still hold requests', () => {
    const busy = [slot('app_web', 's1', 'a:1', 'ready'), slot('app_web', 's2', 'b:1', 'drain', 1), slot('app_web', 's3', 'c:1', 'maint', 1)];
    assert.equal(switchCommands('web', busy, 'd:1'), null);
  });
});

describe('parsing the runtime API', () => {
  it('show stat: servers with address, state and requests in flight; frontends and backends dropped', () => {
    const csv = [
      '# pxname,svname,qcur,qmax,scur,smax,status,addr,',
      'fe_80,FRONTEND,,,3,9,OPEN,,',
      'app_web,s1,0,0,2,5,no check,10.0.0.5:3000,',
      'app_web,s2,0,0,1,3,DRAIN,10.0.0.6:3000,',
      'app_web,s3,0,0,0,0,MAINT,127.0.0.1:1,',
      'app_web,BACKEND,0,0,3,9,UP,,',
      '',
    ].join('\n');
    assert.deepEqual(parseShowStat(csv), [
      slot('app_web', 's1', '10.0.0.5:3000', 'ready', 2),
      slot('app_web', 's2', '10.0.0.6:3000', 'drain', 1),
      slot('app_web', 's3', null, 'maint', 0),
    ]);
  });

  it('show map: keys and values with spaces', () => {
    assert.deepEqual(parseShowMap('0x55d0c8a0 app_web Back soon; really\n0x55d0c8b0 web 80|a.test|/\n\n'), new Map([['app_web', 'Back soon; really'], ['web', '80|a.test|/']]));
  });

  it('show proc: workers a reload left behind', () => {
    const head = '#<PID>          <type>          <reloads>       <uptime>        <version>\n8               master          1 [failed: 0]   0d00h00m12s     2.6.12\n# workers\n14              worker          0               0d00h00m01s     2.6.12\n';
    assert.equal(countOldWorkers(`${head}# programs\n`), 0);
    assert.equal(countOldWorkers(`${head}# old workers\n10              worker          1               0d00h00m11s     2.6.12\n9               worker          2               0d00h00m20s     2.6.12\n# programs\n`), 2);
  });

  it('counts the answers of a non-interactive exchange (each ends with a blank line)', () => {
    assert.equal(countAnswers(''), 0);
    assert.equal(countAnswers('\n'), 1);
    assert.equal(countAnswers("IP changed from 'a' to 'b'\n\n\n\n"), 3);
    assert.equal(countAnswers('# pxname,svname\nfe,FRONTEND\n'), 0, 'not complete until its blank line');
    assert.equal(countAnswers('# pxname,svname\nfe,FRONTEND\n\n'), 1);
    assert.equal(countAnswers('No such backend.\n\n'), 1);
  });
});
