import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { startLoad } from '../support/load.js';

/**
 * The load checker over HTTPS (test/e2e/tls.test.ts uses it through the hosts' proxies):
 * against a local TLS server with the test certificate for shop.test, it sends the Host
 * header as SNI, verifies against the given CA and keeps connections alive; with no CA
 * to trust, every request is a failure.
 */
const fixture = (f: string) => readFileSync(new URL(`../fixtures/tls/${f}`, import.meta.url), 'utf8');
const CRT = fixture('shop.crt');

describe('load checker over HTTPS', () => {
  it('SNI from the Host header, the given CA trusted, sessions kept alive; without the CA every request fails', async () => {
    const names: string[] = [];
    const server = https.createServer({ cert: CRT, key: fixture('shop.key') }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('v1\n');
    });
    server.on('secureConnection', (socket) => names.push((socket as unknown as { servername?: string }).servername ?? ''));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const ok = startLoad({ targets: [{ url, host: 'www.shop.test', ca: CRT }], clientsPerTarget: 2, slowClientsPerTarget: 0 });
      await new Promise((r) => setTimeout(r, 600));
      const good = await ok.stop();
      assert.deepEqual(good.failures, []);
      assert.ok(good.requests > 10, `requests: ${good.requests}`);
      assert.ok(good.socketsReused > good.requests / 2, `kept alive: ${good.socketsReused}/${good.requests}`);
      assert.ok(names.length > 0 && names.every((n) => n === 'www.shop.test'), `SNI: ${names.join(', ')}`);

      const untrusted = startLoad({ targets: [{ url, host: 'www.shop.test' }], clientsPerTarget: 1, slowClientsPerTarget: 0 });
      await new Promise((r) => setTimeout(r, 300));
      const bad = await untrusted.stop();
      assert.ok(bad.requests > 0);
      assert.equal(bad.failures.length, bad.requests, 'a certificate nobody trusts fails every request');
      assert.match(bad.failures[0]!.what, /self-signed certificate/);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
