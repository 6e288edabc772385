import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { acmeBedSkipReason, countIssued, pebbleRoots, requireAcmeBed, setDnsA, type AcmeBed } from '../support/acme-bed.js';
import { startBedDaemonApps, type BedDaemon } from '../support/bed-daemon.js';
import { startLoad, summarizeFailures, type LoadReport, type LoadTarget } from '../support/load.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * TLS through the hosts' proxies, for real: a daemon orders ONE certificate for `shop`'s
 * host name from the bed's ACME CA (pebble, validating HTTP-01 against the hosts' port 80),
 * every host serves it on 443, HTTP redirects, a given certificate comes from the
 * environment, a deploy switches HTTPS traffic without a failed request, and a renewal
 * installs a new certificate on every host without a reload or a failed request.
 */
const skip = bedSkipReason() || acmeBedSkipReason();
// A name of its own per run: pebble's issuance count for it starts at 0 even on a reused bed.
const NAME = `shop-${process.pid}.berth.test`;
const GIVEN = 'www.shop.test';
const fixture = (f: string) => readFileSync(new URL(`../fixtures/tls/${f}`, import.meta.url), 'utf8');
const SHOP_CRT = fixture('shop.crt');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The serial of the certificate `addr:443` presents for `servername`, verified against `ca`. */
function servedSerial(addr: string, servername: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: addr, port: 443, servername, ca, timeout: 5000 }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on('timeout', () => socket.destroy(new Error(`${addr}:443 ${servername}: handshake timeout`)));
    socket.on('error', reject);
  });
}

/** The pid of each host's current HAProxy worker (`show proc` on the master CLI): a reload changes it. */
async function workerPids(daemon: BedDaemon): Promise<string[]> {
  const pids: string[] = [];
  for (const h of daemon.bed.hosts.slice(0, 3)) {
    const proc = await daemon.drivers.get(h.name)!.unixCommand(`${h.stateDir}/proxy/master.sock`, 'show proc', 5000);
    const workers = proc.split('# workers')[1] ?? '';
    pids.push(/^\s*(\d+)\s+worker/m.exec(workers)?.[1] ?? `none on ${h.name}`);
  }
  return pids;
}

/** One request with its own connection: status, Location and body. */
function get(url: string, host: string, ca?: string): Promise<{ status: number; location: string | undefined; body: string }> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.get(url, { headers: { host }, agent: false, ...(ca ? { ca, servername: host } : {}) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body: body.trim() }));
    });
    req.on('error', reject);
  });
}

describe('TLS: one ACME certificate per host name for the fleet, served by every host', { skip, concurrency: false }, () => {
  let acme: AcmeBed;
  let roots: string;
  let daemon: BedDaemon;
  let addrs: string[];
  const acmeConfig = (renewBefore: string) => ({ acme: { directory: acme.directory, email: 'ops@berth.test', ca_certificate: acme.apiCaFile, renew_before: renewBefore } });

  type View = { status: { observedRevision: number | null; phase: string | null } | null };
  async function converge(app: string, version: string): Promise<void> {
    const { status, body } = await daemon.request<{ revision: number }>('POST', `/v1/apps/${app}/releases`, { version });
    assert.equal(status, 202, JSON.stringify(body));
    const deadline = Date.now() + 90_000;
    for (;;) {
      const s = (await daemon.request<View>('GET', `/v1/apps/${app}`)).body.status;
      if (s?.observedRevision === body.revision && s.phase === 'Complete') return;
      assert.ok(Date.now() < deadline, `${app} ${version} did not converge: ${JSON.stringify(s)}`);
      await sleep(200);
    }
  }

  /** Waits until every host presents a certificate for NAME other than `not` (the first one when null); returns its serial. */
  async function waitServed(not: string | null, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const serials = await Promise.all(addrs.map((a) => servedSerial(a, NAME, roots).catch((e: Error) => `error: ${e.message}`)));
      last = serials.join(', ');
      if (serials.every((s) => s === serials[0] && !s.startsWith('error') && s !== not)) return serials[0]!;
      assert.ok(Date.now() < deadline, `hosts did not all serve a ${not ? 'new ' : ''}certificate for ${NAME}: ${last}\n${daemon.output().split('\n').filter((l) => /certificate|ACME|acme/i.test(l)).slice(-10).join('\n')}`);
      await sleep(500);
    }
  }

  before(async () => {
    acme = requireAcmeBed();
    roots = await pebbleRoots(acme);
    daemon = await startBedDaemonApps(
      {
        shop: { proxy: { host: NAME, tls: true, drain_timeout: '10s' }, healthcheck: { interval: '500ms', max_attempts: 6 }, stop_timeout: '5s' },
        given: { proxy: { host: GIVEN, tls: { certificate: 'SHOP_CRT', private_key: 'SHOP_KEY' } }, healthcheck: { interval: '500ms', max_attempts: 6 } },
        blog: { proxy: { host: 'blog.berth.test' }, healthcheck: { interval: '500ms', max_attempts: 6 } },
      },
      { config: acmeConfig('30d'), secrets: { given: { SHOP_CRT, SHOP_KEY: fixture('shop.key') } } },
    );
    addrs = daemon.bed.hosts.slice(0, 3).map((h) => h.address);
    // Pebble validates against the first address: h1 for the first order.
    await setDnsA(NAME, addrs, acme);
    await Promise.all([converge('shop', 'v1'), converge('given', 'v1'), converge('blog', 'v3')]);
  });

  after(async () => {
    await daemon?.close();
  });

  it('one order for three hosts; each serves v1 over HTTPS under pebble\'s root; HTTP redirects; the given certificate and the expiry metric', async () => {
    const serial = await waitServed(null);
    assert.equal(await countIssued(NAME, acme), 1, 'one ACME order for the three hosts');
    for (const addr of addrs) {
      assert.deepEqual(await get(`https://${addr}/`, NAME, roots), { status: 200, location: undefined, body: 'v1' }, `${addr} HTTPS`);
      const plain = await get(`http://${addr}/a/b?c=1`, NAME);
      assert.equal(plain.status, 301, `${addr} HTTP -> HTTPS`);
      assert.equal(plain.location, `https://${NAME}/a/b?c=1`);
      assert.equal((await get(`https://${addr}/`, GIVEN, SHOP_CRT)).body, 'v1', `${addr} given certificate`);
      assert.equal(await servedSerial(addr, GIVEN, SHOP_CRT), '3BCCFCB60F5C225E5D504EAA50DA85CB232FD5BF');
      assert.deepEqual(await get(`http://${addr}/`, 'blog.berth.test'), { status: 200, location: undefined, body: 'v3' }, `${addr} plain app untouched`);
    }
    const metrics = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
    const expiry = new RegExp(`berth_certificate_expiry_timestamp_seconds\\{app="shop",host_name="${NAME.replaceAll('.', '\\.')}"\\} (\\d+)`).exec(metrics);
    assert.ok(expiry, 'expiry metric for shop');
    assert.ok(Number(expiry[1]) * 1000 > Date.now() + 365 * 86_400_000, `expiry ${expiry[1]} is years ahead (pebble: 5 years)`);
    assert.match(metrics, /berth_certificate_expiry_timestamp_seconds\{app="given",host_name="www\.shop\.test"\} 4949532673/);
    console.log(`# ${NAME}: serial ${serial} on ${addrs.length} hosts from ${await countIssued(NAME, acme)} order(s)`);
  });

  it('a deploy switches HTTPS traffic with 0 failed requests (no retries)', async () => {
    const targets: LoadTarget[] = addrs.flatMap((addr, i) => [
      { url: `https://${addr}`, host: NAME, ca: roots, name: `shop-https@h${i + 1}` },
      { url: `http://${addr}`, host: 'blog.berth.test', name: `blog@h${i + 1}` },
    ]);
    const load = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 1, maxDurationMs: 120_000 });
    let report: LoadReport;
    try {
      await sleep(1000);
      await converge('shop', 'v2');
      await sleep(500);
    } finally {
      report = await load.stop();
    }
    console.log(`# HTTPS deploy: ${report.requests} requests (${report.socketsReused} reused), ${summarizeFailures(report.failures)}, slow ${report.slow.completed}/${report.slow.started} ${JSON.stringify(report.slow.versions)}`);
    assert.deepEqual(report.failures, []);
    assert.equal(report.slow.failed, 0);
    assert.ok((report.slow.versions.v1 ?? 0) > 0 && (report.slow.versions.v2 ?? 0) > 0, 'slow HTTPS requests finished on v1 and on v2');
  });

  it('renewal: a window longer than the remaining life orders once, every host serves the new certificate, 0 failed requests', async () => {
    const old = await waitServed(null);
    const ordersBefore = await countIssued(NAME, acme);
    // This order is validated against h2: the challenge is answered by every host, not only the first.
    await setDnsA(NAME, [addrs[1]!, addrs[0]!, addrs[2]!], acme);
    const targets: LoadTarget[] = addrs.map((addr, i) => ({ url: `https://${addr}`, host: NAME, ca: roots, name: `shop-https@h${i + 1}` }));
    const workersBefore = await workerPids(daemon);
    const load = startLoad({ targets, clientsPerTarget: 3, slowClientsPerTarget: 1, maxDurationMs: 120_000 });
    let report: LoadReport;
    let renewed: string;
    try {
      // Pebble's certificates live 5 years: a 10-year window puts this one inside it.
      await daemon.restart({ config: acmeConfig('3650d') });
      renewed = await waitServed(old);
      // Two more resyncs (2 s each): the new certificate is inside the window too, and is not renewed again.
      await sleep(5000);
    } finally {
      report = await load.stop();
    }
    console.log(`# renewal: ${old} -> ${renewed}; HTTPS ${report.requests} requests, ${summarizeFailures(report.failures)}`);
    assert.equal(await countIssued(NAME, acme), ordersBefore + 1, 'exactly one renewal order');
    assert.deepEqual(await workerPids(daemon), workersBefore, 'installed without a reload: the same HAProxy worker on every host');
    assert.deepEqual(report.failures, []);
    for (const addr of addrs) assert.equal((await get(`https://${addr}/`, NAME, roots)).body, 'v2');
    const events = (await daemon.request<{ events: Array<{ type: string; message: string }> }>('GET', '/v1/apps/shop/events?limit=200')).body.events;
    assert.deepEqual(events.filter((e) => e.type === 'CertificateIssued').map((e) => /\((\w+)\)/.exec(e.message)?.[1]).sort(), ['missing', 'renew']);
  });
});
