/**
 * The test bed's ACME CA (test/hosts/acme, started by testbed up): pebble's directory
 * answers over HTTPS with the bed's API CA (and only with it), its issuing root is the one
 * `up` saved, and names set through challtestsrv's management API resolve on its DNS server
 * (what pebble uses to find a name's HTTP-01 responder), and stop resolving when cleared.
 *
 * Without acme.json the suite is skipped, unless BERTH_TESTBED_REQUIRED=1 (then it fails).
 */
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { get } from 'node:https';
import { describe, test } from 'node:test';
import { acmeBedSkipReason, clearDns, countIssued, httpsGet, pebbleRoots, requireAcmeBed, setDnsA } from '../support/acme-bed.js';

const skip = acmeBedSkipReason();

describe('ACME CA of the test bed (pebble + challtestsrv)', { skip }, () => {
  test('the ACME directory answers over HTTPS, trusted through the API CA only', async () => {
    const acme = requireAcmeBed();
    const res = await httpsGet(acme.directory, acme.apiCa);
    assert.equal(res.status, 200);
    const dir = JSON.parse(res.body) as Record<string, unknown>;
    for (const key of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange']) {
      assert.equal(typeof dir[key], 'string', `directory lacks ${key}: ${res.body}`);
    }
    // without the API CA the certificate is not trusted (the public roots do not know it)
    await assert.rejects(
      new Promise((resolve, reject) => {
        get(acme.directory, (res) => {
          res.resume();
          resolve(res.statusCode);
        }).on('error', reject);
      }),
      /self[- ]signed|unable to (get|verify)|UNABLE_TO|certificate/i,
    );
  });

  test('the issuing root is the one saved at up, and issuance can be counted', async () => {
    const acme = requireAcmeBed();
    assert.equal((await pebbleRoots(acme)).trim(), readFileSync(acme.rootsFile, 'utf8').trim());
    const n = await countIssued(undefined, acme);
    assert.ok(Number.isInteger(n) && n >= 0);
  });

  test('setDnsA names resolve through challtestsrv; clearDns removes them', async () => {
    const acme = requireAcmeBed();
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([acme.dnsServer]);
    const name = `dns-check-${process.pid}.berth.test`;
    try {
      await setDnsA(name, ['10.77.0.11'], acme);
      assert.deepEqual(await resolver.resolve4(name), ['10.77.0.11']);
      // set replaces (challtestsrv's /add-a alone would append)
      await setDnsA(name, ['10.77.0.12', '10.77.0.13'], acme);
      assert.deepEqual((await resolver.resolve4(name)).sort(), ['10.77.0.12', '10.77.0.13']);
      // no AAAA answers: pebble tries AAAA first and dials only the first address
      await assert.rejects(resolver.resolve6(name), (e: NodeJS.ErrnoException) => e.code === 'ENODATA' || e.code === 'ENOTFOUND');
    } finally {
      await clearDns(name, acme);
    }
    // a name nobody set has no address (challtestsrv's default answers are off)
    await assert.rejects(resolver.resolve4(name), (e: NodeJS.ErrnoException) => e.code === 'ENODATA' || e.code === 'ENOTFOUND');
  });
});
