import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it, test } from 'node:test';
import pino from 'pino';
import type { ProxyRouteSpec, TlsSpec } from '../../src/domain/app-spec.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { openStore, MEMORY, type StoredCertificate } from '../../src/store/index.js';
import type { CertificateIssuer, ChallengeResponder, IssuedCertificate } from '../../src/tls/acme-issuer.js';
import { certificateCovers, checkGivenCertificate, proxyPem, readCertificate } from '../../src/tls/certificate.js';
import { CertificateManager, type CertificateProxy } from '../../src/tls/manager.js';
import { MIN_REORDER_MS, orderBackoffMs, orderReason, tlsNames } from '../../src/tls/plan.js';
import { makeSpec } from '../support/fixtures.js';
import { tempSecrets, type TempSecrets } from '../support/secrets.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url), 'utf8');
const SHOP_CRT = fixture('shop.crt');
const SHOP_KEY = fixture('shop.key');
const OTHER_KEY = fixture('other.key');
const DAY = 86_400_000;
const NOW = Date.parse('2026-06-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

const tlsRoute = (host: string, tls: TlsSpec = { source: 'acme' }): ProxyRouteSpec => ({ port: null, host, pathPrefix: null, drainTimeoutMs: 1000, tls });

describe('certificate facts (pure)', () => {
  test('serial, end of validity and DNS names of the leaf', () => {
    const facts = readCertificate(SHOP_CRT, 'shop.test');
    assert.equal(facts.serial, '3BCCFCB60F5C225E5D504EAA50DA85CB232FD5BF');
    assert.equal(facts.notAfter.toISOString(), '2126-11-05T06:11:13.000Z');
    assert.deepEqual(facts.names, ['shop.test', '*.shop.test']);
  });

  test('a wildcard SAN covers one label, never the bare name below it or two labels', () => {
    const names = ['*.shop.test'];
    assert.equal(certificateCovers(names, 'a.shop.test'), true);
    assert.equal(certificateCovers(names, 'a.b.shop.test'), false);
    assert.equal(certificateCovers(names, 'shop.test'), false);
    assert.equal(certificateCovers(names, '*.shop.test'), true);
  });

  test('given certificates: the name must be covered and the key must be the certificate\'s; errors never hold PEM', () => {
    assert.equal(checkGivenCertificate(SHOP_CRT, SHOP_KEY, 'www.shop.test').serial, '3BCCFCB60F5C225E5D504EAA50DA85CB232FD5BF');
    const cases: Array<[string, string, string, RegExp]> = [
      [SHOP_CRT, SHOP_KEY, 'other.test', /given for other\.test is for shop\.test, \*\.shop\.test/],
      [SHOP_CRT, OTHER_KEY, 'shop.test', /does not belong to its certificate/],
      [SHOP_CRT, 'not a key', 'shop.test', /not a PEM private key/],
      ['garbage', SHOP_KEY, 'shop.test', /no PEM certificate/],
    ];
    for (const [crt, key, host, message] of cases) {
      assert.throws(
        () => checkGivenCertificate(crt, key, host),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'CERTIFICATE_INVALID');
          assert.match(err.message, message);
          assert.doesNotMatch(err.message, /BEGIN|PRIVATE/);
          return true;
        },
      );
    }
  });

  test('the proxy PEM is chain then key without a blank line (the runtime API would end the payload there)', () => {
    const pem = proxyPem(`${SHOP_CRT}\n\n`, `\n${SHOP_KEY}`);
    assert.doesNotMatch(pem, /\n\s*\n/);
    assert.match(pem, /^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----[\s\S]+-----END PRIVATE KEY-----$/);
  });
});

describe('which names need certificates (pure)', () => {
  test('one entry per host name: the apps routed by it and the union of their hosts; apps without TLS are not there', () => {
    const names = tlsNames([
      makeSpec({ name: 'web', hosts: ['h1', 'h2'], proxy: tlsRoute('a.test') }),
      makeSpec({ name: 'api', hosts: ['h2', 'h3'], proxy: { ...tlsRoute('a.test'), pathPrefix: '/api' } }),
      makeSpec({ name: 'shop', hosts: ['h3'], proxy: tlsRoute('shop.test', { source: 'given', certificate: 'SHOP_CRT', privateKey: 'SHOP_KEY' }) }),
      makeSpec({ name: 'plain', hosts: ['h1'], proxy: { port: 8080, host: null, pathPrefix: null, drainTimeoutMs: 1 } }),
      makeSpec({ name: 'worker', hosts: ['h1'], proxy: null }),
    ]);
    assert.deepEqual(names, [
      { hostName: 'a.test', tls: { source: 'acme' }, apps: ['api', 'web'], hosts: ['h2', 'h3', 'h1'] },
      { hostName: 'shop.test', tls: { source: 'given', certificate: 'SHOP_CRT', privateKey: 'SHOP_KEY' }, apps: ['shop'], hosts: ['h3'] },
    ]);
  });
});

describe('when an ACME certificate is ordered (pure, table)', () => {
  const WINDOW = 30 * DAY;
  /** A 90-day certificate issued `ageDays` ago under `window`. */
  const cert = (ageDays: number, lifeDays = 90, window = WINDOW): StoredCertificate => ({
    hostName: 'a.test',
    certificate: '',
    privateKey: '',
    serial: '1',
    issuedAt: iso(NOW - ageDays * DAY),
    notAfter: iso(NOW - ageDays * DAY + lifeDays * DAY),
    renewBeforeMs: window,
  });
  const cases: Array<[string, StoredCertificate | null, number, ReturnType<typeof orderReason>]> = [
    ['none stored', null, WINDOW, 'missing'],
    ['fresh (1 day of 90)', cert(1), WINDOW, null],
    ['just outside the window (59 days old)', cert(59), WINDOW, null],
    ['inside the window (61 days old)', cert(61), WINDOW, 'renew'],
    ['past its end', cert(91), WINDOW, 'expired'],
    ['window longer than the life, just issued under that window: no loop', cert(0.01, 90, 100 * DAY), 100 * DAY, null],
    ['window longer than the life, a day old: renewed daily', cert(MIN_REORDER_MS / DAY, 90, 100 * DAY), 100 * DAY, 'renew'],
    ['window changed since the order, now longer than the remaining life: renewed at once', cert(0.01), 100 * DAY, 'renew'],
    ['window changed but the certificate is outside the new one', cert(1), 20 * DAY, null],
  ];
  for (const [what, stored, window, expected] of cases) {
    test(`${what} -> ${expected ?? 'nothing'}`, () => assert.equal(orderReason(stored, NOW, window), expected));
  }

  test('failed orders back off from 30 s doubling to an hour', () => {
    assert.deepEqual([1, 2, 3, 4, 7, 8, 20].map(orderBackoffMs), [30_000, 60_000, 120_000, 240_000, 1_920_000, 3_600_000, 3_600_000]);
  });
});

/**
 * The manager's decisions around a SIMULATED issuer and proxy (no ACME server, no host):
 * what it orders, where it answers challenges, what it reports. That certificates are
 * really ordered and served is test/e2e/tls.test.ts, on the test hosts with pebble.
 */
describe('certificate manager (simulated issuer and proxy)', () => {
  const secretDirs: TempSecrets[] = [];
  after(() => secretDirs.forEach((s) => s.remove()));

  /** `secrets`: the given certificate's values in the secrets file of the app `shop`. */
  function setup(opts: { issuer?: 'ok' | 'fail'; secrets?: Record<string, string> } = {}) {
    const store = openStore(MEMORY);
    const secrets = tempSecrets();
    secretDirs.push(secrets);
    if (opts.secrets) secrets.write('shop', opts.secrets);
    const metrics = new BerthMetrics('test', { processMetrics: false });
    let clock = NOW;
    const orders: string[] = [];
    const challenges: string[] = [];
    const syncs: string[] = [];
    const issuer: CertificateIssuer = {
      async order(hostName: string, responder: ChallengeResponder): Promise<IssuedCertificate> {
        orders.push(hostName);
        await responder.set(`tok-${orders.length}`, `auth-${orders.length}`);
        await responder.clear(`tok-${orders.length}`);
        if (opts.issuer === 'fail') throw new Error('urn:ietf:params:acme:error:connection: refused');
        return { certificate: SHOP_CRT, privateKey: SHOP_KEY };
      },
    };
    const proxy: CertificateProxy = {
      async syncCertificates(host) {
        syncs.push(host);
        return [];
      },
      async setChallenge(host, token, value) {
        challenges.push(`${host} ${token} ${value ?? '-'}`);
      },
    };
    const manager = new CertificateManager({
      store,
      proxy,
      issuer,
      renewBeforeMs: 30 * DAY,
      metrics,
      log: pino({ level: 'silent' }),
      intervalMs: 60_000,
      secrets: secrets.files,
      now: () => clock,
    });
    const events = () => store.events.listEvents('shop').filter((e) => e.type.startsWith('Certificate')).map((e) => `${e.type}: ${e.message}`);
    return { store, metrics, manager, orders, challenges, syncs, events, advance: (ms: number) => (clock += ms) };
  }

  it('orders a missing certificate once for the whole fleet, answering the challenge on every host; installs on every host; sets the metric', async () => {
    const t = setup();
    t.store.apps.upsertApp(makeSpec({ name: 'shop', hosts: ['h1', 'h2', 'h3'], proxy: tlsRoute('shop.test') }), 'test');
    await t.manager.tick();
    assert.deepEqual(t.orders, ['shop.test']);
    assert.deepEqual(t.challenges, ['h1 tok-1 auth-1', 'h2 tok-1 auth-1', 'h3 tok-1 auth-1', 'h1 tok-1 -', 'h2 tok-1 -', 'h3 tok-1 -']);
    assert.deepEqual(t.syncs.sort(), ['h1', 'h2', 'h3']);
    assert.equal(t.store.certificates.get('shop.test')?.serial, '3BCCFCB60F5C225E5D504EAA50DA85CB232FD5BF');
    assert.equal(t.manager.certificatesOn('h2')[0]?.hostName, 'shop.test');
    assert.deepEqual(t.manager.certificatesOn('h4'), []);
    const metric = (await t.metrics.registry.getSingleMetricAsString('berth_certificate_expiry_timestamp_seconds')).split('\n').at(-1);
    assert.equal(metric, `berth_certificate_expiry_timestamp_seconds{app="shop",host_name="shop.test"} ${Date.parse('2126-11-05T06:11:13Z') / 1000}`);
    assert.match(t.events().join('\n'), /CertificateIssued: certificate for shop\.test issued \(missing\), valid until 2126/);
    await t.manager.tick();
    assert.deepEqual(t.orders, ['shop.test'], 'not ordered again');
  });

  it('a failed order is an event and a warning, retried only after its backoff', async () => {
    const t = setup({ issuer: 'fail' });
    t.store.apps.upsertApp(makeSpec({ name: 'shop', hosts: ['h1'], proxy: tlsRoute('shop.test') }), 'test');
    await t.manager.tick();
    await t.manager.tick();
    assert.deepEqual(t.orders, ['shop.test'], 'the second tick is inside the 30 s backoff');
    t.advance(30_000);
    await t.manager.tick();
    assert.deepEqual(t.orders, ['shop.test', 'shop.test']);
    assert.match(t.events().join('\n'), /CertificateFailed: .*connection: refused \(attempt 2; next in 60 s\)/);
  });

  it("given certificates come from the app's secrets file, are never ordered, and a missing secret is reported once, naming the file", async () => {
    const given: TlsSpec = { source: 'given', certificate: 'SHOP_CRT', privateKey: 'SHOP_KEY' };
    const t = setup({ secrets: { SHOP_CRT } });
    t.store.apps.upsertApp(makeSpec({ name: 'shop', hosts: ['h1'], proxy: tlsRoute('shop.test', given) }), 'test');
    await t.manager.tick();
    await t.manager.tick();
    assert.deepEqual(t.orders, []);
    assert.deepEqual(t.manager.certificatesOn('h1'), []);
    assert.equal(t.events().length, 1);
    assert.match(t.events()[0]!, /^CertificateFailed: certificate for shop\.test: secret SHOP_KEY is not in \/.*\/secrets\/shop\.env: add a line SHOP_KEY=<value> to it \(mode 0600\)$/);

    const ok = setup({ secrets: { SHOP_CRT, SHOP_KEY } });
    ok.store.apps.upsertApp(makeSpec({ name: 'shop', hosts: ['h1'], proxy: tlsRoute('shop.test', given) }), 'test');
    await ok.manager.tick();
    assert.deepEqual(ok.manager.certificatesOn('h1').map((c) => c.serial), ['3BCCFCB60F5C225E5D504EAA50DA85CB232FD5BF']);
    assert.deepEqual(ok.orders, []);
  });
});
