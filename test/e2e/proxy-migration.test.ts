import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { LABELS, PROXY_CONTAINER_NAME } from '../../src/domain/labels.js';
import { PROXY_APP_LABEL } from '../../src/proxy/haproxy-proxy.js';
import { makeSpec } from '../support/fixtures.js';
import { startFleet, type Fleet } from '../support/fleet.js';
import { bedSkipReason } from '../support/testbed.js';

/**
 * A host that still runs the Caddy proxy of berth before HAProxy: the first pass that
 * needs the proxy replaces it, automatically. Not zero-downtime (docs/design.md, "The
 * proxy"): the test measures the gap and reports it; it asserts the outcome.
 */
const skip = bedSkipReason();

describe('migration from the Caddy proxy', { skip, concurrency: false }, () => {
  let f: Fleet | undefined;

  after(async () => {
    await f?.stop();
  });

  it('a Caddy berth-proxy is replaced by HAProxy, which then routes the app', async () => {
    f = await startFleet('mig', { proxy: { port: 80, host: null, pathPrefix: null, drainTimeoutMs: 5_000 }, healthcheck: { ...makeSpec().healthcheck, intervalMs: 500 } }, { proxy: true });
    const h3 = f.bed.hosts[2]!;
    const d = f.drivers.get(h3.name)!;
    // The old proxy as berth ran it: Caddy on the host network, serving :80.
    const old = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
    if (old) await d.removeContainer(old.id);
    if (!(await d.hasImage(f.bed.images.proxy))) await d.pullImage(f.bed.images.proxy);
    const id = await d.createContainer({
      name: PROXY_CONTAINER_NAME,
      image: f.bed.images.proxy,
      env: {},
      labels: { [LABELS.app]: PROXY_APP_LABEL, [LABELS.role]: 'proxy', [LABELS.revision]: '0', [LABELS.version]: f.bed.images.proxy },
      network: 'host',
      init: true,
      restartPolicy: 'unless-stopped',
    });
    await d.startContainer(id);
    const caddy = async () => (await fetch(`http://${h3.address}/`).then((r) => r.text(), () => '')).trim();
    for (let i = 0; i < 50 && (await caddy()) !== 'berth test proxy'; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await caddy(), 'berth test proxy', 'the Caddy proxy serves on h3 before the migration');

    // What :80 answers every 20 ms while the first deploy replaces the proxy: the gap is the refused stretch.
    const seen: Array<{ at: number; what: string }> = [];
    let polling = true;
    const t0 = Date.now();
    const poller = (async () => {
      while (polling) {
        const what = await fetch(`http://${h3.address}/`, { signal: AbortSignal.timeout(1000) }).then(
          async (x) => `${x.status} ${(await x.text()).trim().slice(0, 20)}`,
          () => 'refused',
        );
        seen.push({ at: Date.now() - t0, what });
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const r = f.deploy('v1');
    assert.equal((await f.settle(r)).phase, 'Complete');
    polling = false;
    await poller;
    const proxy = (await d.listContainers({ app: PROXY_APP_LABEL })).find((c) => c.name === PROXY_CONTAINER_NAME);
    assert.equal(proxy?.version, f.bed.images.haproxy, 'h3 runs the HAProxy image now');
    assert.equal(proxy?.running, true);
    assert.equal(await caddy(), 'v1', 'HAProxy routes the app on :80');
    const stretch = (pred: (w: string) => boolean) => {
      const hits = seen.filter((s) => pred(s.what));
      return hits.length === 0 ? 0 : hits[hits.length - 1]!.at - hits[0]!.at;
    };
    console.log(
      `# migration on h3: Caddy answered until ${seen.filter((s) => s.what.includes('berth test proxy')).at(-1)?.at ?? '-'} ms, connections refused for ${stretch((w) => w === 'refused')} ms, 503 (HAProxy up, app not yet switched) for ${stretch((w) => w.startsWith('503'))} ms, v1 from ${seen.find((s) => s.what === '200 v1')?.at ?? '-'} ms`,
    );
  });
});
