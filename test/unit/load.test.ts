import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { checkSlowVersions, holdIdleConnection, holdStream, startLoad, summarizeFailures, type LoadOptions, type LoadReport } from '../support/load.js';

/**
 * The load checker against local servers on 127.0.0.1: it must pass a server that is
 * fine, and it must FAIL (without retrying anything) when a server drops kept-alive
 * connections under a request.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Served {
  url: string;
  server: http.Server;
  /** Requests seen, in order, with the client port of their connection. */
  seen: Array<{ method: string; url: string; host: string; body: string; port: number; at: number }>;
  connections: number;
  close(): Promise<void>;
}

async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string, s: Served) => void): Promise<Served> {
  const s = { seen: [], connections: 0 } as unknown as Served;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      s.seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', body, port: req.socket.remotePort ?? 0, at: performance.now() });
      handler(req, res, body, s);
    });
  });
  server.on('connection', () => (s.connections += 1));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.server = server;
  s.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  s.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return s;
}

async function run(o: LoadOptions, ms: number): Promise<LoadReport> {
  const load = startLoad(o);
  await sleep(ms);
  return load.stop();
}

const text = (res: http.ServerResponse, body: string, status = 200) => {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
};

describe('load checker', () => {
  it('a healthy server: zero failures, kept-alive sockets reused, bounded sockets', async () => {
    const s = await serve((_req, res) => text(res, 'v1\n'));
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 3, slowClientsPerTarget: 0, pauseMs: 30 }, 800);
      assert.deepEqual(r.failures, []);
      assert.equal(r.requests, s.seen.length, 'every request reached the server exactly once');
      assert.equal(r.ok, r.requests);
      assert.deepEqual(r.versions, { v1: r.requests });
      assert.equal(r.last[s.url], 'v1');
      assert.ok(s.connections <= 3, `at most maxSockets (3) connections, saw ${s.connections}`);
      assert.equal(r.socketsReused, r.requests - s.connections, `every request but each connection's first reused a socket (${r.socketsReused}/${r.requests})`);
      assert.ok(r.socketsReused > 20, `sockets reused (${r.socketsReused})`);
      // Clients pause ~30 ms: ~3 x 800/30 requests, far from a tight loop.
      assert.ok(r.requests < (3 * 800) / 20, `clients pause between requests (${r.requests} requests)`);
      assert.deepEqual(r.byTarget[s.url], { requests: r.requests, ok: r.requests, failures: 0, versions: { v1: r.requests } });
    } finally {
      await s.close();
    }
  });

  it('one client: its kept-alive socket sits idle a whole jittered pause before each reuse', async () => {
    // With several clients on one agent the gap a socket sits idle depends on how many
    // connections the first requests happened to open (the clients' start is random), so
    // the idle time is checked on one client, where every gap is a pause.
    const s = await serve((_req, res) => text(res, 'v1\n'));
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 1, slowClientsPerTarget: 0, pauseMs: 30, pauseJitterMs: 5 }, 600);
      assert.deepEqual(r.failures, []);
      assert.equal(s.connections, 1);
      assert.equal(r.socketsReused, r.requests - 1);
      assert.ok(s.seen.length >= 10, `requests made (${s.seen.length})`);
      const gaps = s.seen.slice(1).map((q, i) => q.at - s.seen[i]!.at);
      // A timer never fires before its time; 1 ms covers its rounding.
      assert.ok(Math.min(...gaps) >= 30 - 5 - 1, `every reuse came after a pause (gaps ${gaps.map((g) => g.toFixed(1)).join(', ')} ms)`);
    } finally {
      await s.close();
    }
  });

  it('a server that drops a kept-alive socket as the client reuses it: reset failures on reused sockets, nothing re-sent', async () => {
    // Each connection serves 3 responses (all keep-alive), then is destroyed when its
    // 4th request arrives: the race a proxy reload loses with an idle connection.
    const perSocket = new Map<net.Socket, number>();
    let dropped = 0;
    const s = await serve((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      if (n === 4) {
        dropped += 1;
        req.socket.destroy();
        return;
      }
      text(res, 'v1\n');
    });
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 2, slowClientsPerTarget: 0, pauseMs: 20 }, 700);
      console.log(`dropping server: ${r.requests} requests, ${summarizeFailures(r.failures)}`);
      assert.ok(dropped >= 3, `the server dropped connections (${dropped})`);
      assert.equal(r.failures.length, dropped, 'every dropped request is a failure: none was re-sent');
      assert.equal(r.requests, s.seen.length, 'requests the server saw = requests counted (no retries)');
      assert.equal(r.ok, r.requests - dropped);
      for (const f of r.failures) {
        assert.equal(f.kind, 'reset', f.what);
        assert.equal(f.reusedSocket, true, f.what);
        assert.equal(f.request, 'GET /');
        assert.match(f.what, /^GET \/ on a reused socket: ECONNRESET/);
        assert.ok(f.at >= 0 && f.at < 2000);
      }
      assert.equal(r.byTarget[s.url]!.failures, dropped);
      assert.match(summarizeFailures(r.failures), new RegExp(`^${dropped} failed: reset ${dropped} \\(${dropped} on reused sockets\\)$`));
    } finally {
      await s.close();
    }
  });

  it('a server that closes kept-alive sockets while they are idle: not a failure, but counted', async () => {
    const perSocket = new Map<net.Socket, number>();
    const s = await serve((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      text(res, 'v1\n');
      if (n === 2) res.on('finish', () => setTimeout(() => req.socket.end(), 2));
    });
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 1, slowClientsPerTarget: 0, pauseMs: 40 }, 600);
      assert.deepEqual(r.failures, []);
      assert.ok(r.idleSocketsClosedByServer >= 3, `idle sockets closed by the server (${r.idleSocketsClosedByServer})`);
      assert.equal(r.requests, s.seen.length);
    } finally {
      await s.close();
    }
  });

  it('other failures are classified: http, refused, timeout', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/slow') return; // never answers
      text(res, 'boom', 502);
    });
    const closed = await serve(() => {});
    const refusedUrl = closed.url;
    await closed.close();
    try {
      const r = await run({ targets: [s.url, refusedUrl], clientsPerTarget: 1, slowClientsPerTarget: 1, slowPath: '/slow', timeoutMs: 150, pauseMs: 30 }, 500);
      const kinds = (target: string, request: string) => new Set(r.failures.filter((f) => f.target === target && f.request === request).map((f) => f.kind));
      assert.deepEqual(kinds(s.url, 'GET /'), new Set(['http']));
      assert.ok(r.failures.some((f) => f.kind === 'http' && f.what.includes('HTTP 502: boom')));
      assert.deepEqual(kinds(s.url, 'GET /slow'), new Set(['timeout']));
      assert.deepEqual(kinds(refusedUrl, 'GET /'), new Set(['refused']));
      assert.equal(r.ok, 0);
      assert.equal(r.failures.length, r.requests);
      assert.equal(r.slow.failed, r.slow.started);
    } finally {
      await s.close();
    }
  });

  it('a third of the slow requests are POSTs with a body, the rest GETs; fast ones are GETs', async () => {
    const s = await serve((req, res) => {
      if (req.url?.startsWith('/slow')) setTimeout(() => text(res, 'v1\n'), 40);
      else text(res, 'v1\n');
    });
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 1, slowClientsPerTarget: 3, slowPath: '/slow?s=0.04', pauseMs: 20 }, 1000);
      assert.deepEqual(r.failures, []);
      const slow = s.seen.filter((q) => q.url === '/slow?s=0.04');
      const posts = slow.filter((q) => q.method === 'POST');
      assert.equal(r.slow.started, slow.length);
      assert.equal(r.slow.completed, slow.length);
      assert.equal(r.slow.posts, posts.length, 'slow.posts counts the POSTs the server got');
      assert.ok(posts.length >= 5, `POSTs made (${posts.length})`);
      assert.ok(Math.abs(3 * posts.length - slow.length) <= 6, `about a third POST (${posts.length}/${slow.length})`);
      assert.ok(posts.every((q) => q.body.length > 0), 'POSTs carry a body');
      assert.ok(slow.filter((q) => q.method === 'GET').every((q) => q.body === ''));
      assert.ok(s.seen.filter((q) => q.url === '/').every((q) => q.method === 'GET'));
      assert.deepEqual(r.slow.versions, { v1: slow.length });
    } finally {
      await s.close();
    }
  });

  /**
   * A "deploy" every 250 ms (v1, v2, v3, ...): fast requests get the version of the moment;
   * a slow request either keeps the version it arrived on (a draining old container) or
   * gets the version of the moment it is answered (as if re-sent to the new container).
   */
  /**
   * A server whose version moves while slow requests are answered. `arrival`: a new version
   * every 250 ms, a slow request (120 ms) answered by the one it arrived on. `answer`: each
   * slow request itself moves the version 150 ms after it arrives and is answered 50 ms later
   * by the new one: beyond the checker's 100 ms of slack around its start however late a
   * loaded machine's timers fire. (On a 250 ms clock with 120 ms answers, only a switch in
   * the last 20 ms of one could be told from one near its start: 3 wrong answers of ~40 were
   * expected, and a busy run saw 1.)
   */
  async function switching(slowAnswers: 'arrival' | 'answer') {
    let version = 1;
    const tick = slowAnswers === 'arrival' ? setInterval(() => (version += 1), 250) : undefined;
    const s = await serve((req, res) => {
      if (!req.url?.startsWith('/slow')) return text(res, `v${version}\n`);
      const arrived = version;
      if (slowAnswers === 'arrival') return void setTimeout(() => text(res, `v${arrived}\n`), 120);
      setTimeout(() => (version += 1), 150);
      setTimeout(() => text(res, `v${version}\n`), 200);
    });
    return { s, close: () => (clearInterval(tick), s.close()) };
  }

  it('slow requests answered by the version they began on pass, across switches', async () => {
    const { s, close } = await switching('arrival');
    try {
      const r = await run({ targets: [s.url], clientsPerTarget: 3, slowClientsPerTarget: 3, slowPath: '/slow', pauseMs: 10 }, 1600);
      assert.deepEqual(r.failures, []);
      assert.equal(r.slow.wrongVersion, 0);
      assert.equal(r.slow.unchecked, 0);
      assert.ok(Object.keys(r.slow.began).length >= 4, `slow requests began on several versions: ${JSON.stringify(r.slow.began)}`);
      const began = Object.values(r.slow.began).reduce((a, b) => a + b, 0);
      assert.equal(began + r.slow.straddled, r.slow.completed, 'every completed slow request was checked');
      assert.ok(r.slow.straddled < r.slow.completed / 3, `few began during a switch (${r.slow.straddled}/${r.slow.completed})`);
    } finally {
      await close();
    }
  });

  it('a slow request answered by a version other than the one it began on is a failure', async () => {
    const { s, close } = await switching('answer');
    try {
      // (One slow client: each of its requests moves the version once, and no other's lands near its start.)
      const r = await run({ targets: [s.url], clientsPerTarget: 3, slowClientsPerTarget: 1, slowPath: '/slow', pauseMs: 10 }, 1600);
      console.log(`slow answered by the version of the moment: ${summarizeFailures(r.failures)}, slow ${JSON.stringify(r.slow)}`);
      assert.ok(r.slow.completed >= 3 && r.slow.wrongVersion >= r.slow.completed - 1, `wrong versions caught (${r.slow.wrongVersion} of ${r.slow.completed})`);
      assert.equal(r.failures.length, r.slow.wrongVersion);
      assert.equal(r.slow.failed, 0, 'transport failures are counted apart');
      assert.equal(r.byTarget[s.url]!.failures, r.slow.wrongVersion);
      for (const f of r.failures) {
        assert.equal(f.kind, 'version');
        assert.match(f.request, /^(GET|POST) \/slow$/);
        assert.match(f.what, /: began while v\d+ served, answered v\d+$/);
      }
      assert.match(summarizeFailures(r.failures), /failed: version \d+/);
    } finally {
      await close();
    }
  });

  it('checkSlowVersions: the fast answers before, in flight and after a slow request bound its version', () => {
    const fast = (sent: number, done: number, version: string) => ({ sent, done, version });
    const slow = (sent: number, version: string) => ({ target: 't', sent, at: sent, what: 'GET /slow', reusedSocket: false, version });
    // Completed in `done` order: v1 until 100, a switch between 100 and 110, v2 after.
    const tl = new Map([['t', [fast(80, 90, 'v1'), fast(95, 100, 'v1'), fast(110, 112, 'v2'), fast(120, 125, 'v2'), fast(200, 205, 'v2')]]]);
    const check = (sent: number, version: string) => checkSlowVersions(tl, [slow(sent, version)]);
    assert.deepEqual(check(50, 'v1'), { began: { v1: 1 }, straddled: 0, unchecked: 0, wrong: [] }, 'before any fast answer: the first one after');
    assert.deepEqual(check(92, 'v1'), { began: { v1: 1 }, straddled: 0, unchecked: 0, wrong: [] }, 'between two v1 answers');
    assert.deepEqual(check(92, 'v3').wrong.map((f) => f.what), ['GET /slow: began while v1 served, answered v3']);
    // Sent 18 ms before a fast request that got v2: the two may reach the proxy in either order.
    assert.deepEqual(check(92, 'v2').wrong, []);
    assert.deepEqual(check(105, 'v2'), { began: {}, straddled: 1, unchecked: 0, wrong: [] }, 'during the switch: either');
    assert.deepEqual(check(105, 'v1'), { began: {}, straddled: 1, unchecked: 0, wrong: [] });
    assert.deepEqual(check(111, 'v1'), { began: {}, straddled: 1, unchecked: 0, wrong: [] }, 'a v2 answer in flight, the last completed v1');
    assert.equal(check(250, 'v1').wrong.length, 1, 'after the switch, more than ORDER_SLACK_MS from any v1 request: v2 only');
    assert.deepEqual(check(300, 'v2'), { began: { v2: 1 }, straddled: 0, unchecked: 0, wrong: [] }, 'after the last fast answer: the last one');
    assert.deepEqual(checkSlowVersions(new Map(), [slow(1, 'v1')]), { began: {}, straddled: 0, unchecked: 1, wrong: [] }, 'no fast answers: unchecked');
  });

  it('targets with a Host header are routed by it and reported per name', async () => {
    const s = await serve((req, res) => text(res, `${req.headers.host}\n`));
    try {
      const r = await run(
        {
          targets: [{ url: s.url, host: 'a.test', name: 'a' }, { url: s.url, host: 'b.test', name: 'b' }, { url: s.url, host: 'c.test' }, s.url],
          clientsPerTarget: 2,
          slowClientsPerTarget: 0,
          pauseMs: 20,
        },
        500,
      );
      assert.deepEqual(r.failures, []);
      const plain = new URL(s.url).host;
      const cName = `c.test via ${s.url}`;
      assert.deepEqual(r.last, { a: 'a.test', b: 'b.test', [cName]: 'c.test', [s.url]: plain });
      assert.deepEqual(new Set(s.seen.map((q) => q.host)), new Set(['a.test', 'b.test', 'c.test', plain]));
      for (const [name, host] of [['a', 'a.test'], ['b', 'b.test'], [cName, 'c.test'], [s.url, plain]] as const) {
        const t = r.byTarget[name]!;
        assert.ok(t.requests > 5, `${name}: ${t.requests} requests`);
        assert.deepEqual(t, { requests: t.requests, ok: t.requests, failures: 0, versions: { [host]: t.requests } });
        assert.equal(t.requests, s.seen.filter((q) => q.host === host).length);
      }
      assert.equal(
        Object.values(r.byTarget).reduce((n, t) => n + t.requests, 0),
        r.requests,
      );
    } finally {
      await s.close();
    }
  });

  it('snapshot is a copy and stop ends promptly even mid-pause', async () => {
    const s = await serve((_req, res) => text(res, 'v1\n'));
    try {
      const load = startLoad({ targets: [s.url], clientsPerTarget: 2, slowClientsPerTarget: 0, pauseMs: 5_000, pauseJitterMs: 0 });
      await sleep(200);
      const snap = load.snapshot();
      snap.failures.push({ target: 'x', what: 'x', at: 0, kind: 'other', reusedSocket: false, request: 'GET /' });
      const t0 = Date.now();
      const r = await load.stop();
      assert.ok(Date.now() - t0 < 500, 'stop does not wait out a pause');
      assert.deepEqual(r.failures, []);
      assert.ok(r.requests <= 2, `${r.requests} requests: each client is in its first pause`);
      assert.equal(r.requests, s.seen.length);
    } finally {
      await s.close();
    }
  });
});

describe('holdStream', () => {
  async function streaming() {
    return serve((req, res) => {
      const chunks = req.url === '/cut' ? 2 : 5;
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const tick = setInterval(() => {
        n += 1;
        res.write('a');
        if (n < chunks) return;
        clearInterval(tick);
        if (req.url === '/cut') setTimeout(() => req.socket.destroy(), 20);
        else res.end();
      }, 40);
      if (req.url === '/before-head') {
        clearInterval(tick);
        setTimeout(() => req.socket.destroy(), 60);
      }
    });
  }

  it('a stream that completes is not closedEarly', async () => {
    const s = await streaming();
    try {
      const h = holdStream({ url: s.url, host: 'quiet.test', path: '/stream', seconds: 1 });
      await sleep(60);
      assert.equal(h.closedEarly(), false);
      const r = await h.done;
      assert.equal(r.closedEarly, false);
      assert.equal(h.closedEarly(), false);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'aaaaa');
      assert.equal(r.error, undefined);
      assert.equal(s.seen[0]!.host, 'quiet.test');
    } finally {
      await s.close();
    }
  });

  it('a stream the server cuts mid-way is closedEarly, with the body so far', async () => {
    const s = await streaming();
    try {
      const h = holdStream({ url: s.url, path: '/cut', seconds: 1 });
      await sleep(50);
      assert.equal(h.closedEarly(), false, 'open while streaming');
      const r = await h.done;
      assert.equal(r.closedEarly, true);
      assert.equal(h.closedEarly(), true);
      assert.equal(r.status, 200);
      assert.equal(r.body, 'aa');
      assert.equal(r.kind, 'reset');
      assert.ok(r.error);
    } finally {
      await s.close();
    }
  });

  it('a connection closed before any response is closedEarly; abort() is not', async () => {
    const s = await streaming();
    try {
      const r = await holdStream({ url: s.url, path: '/before-head', seconds: 1 }).done;
      assert.equal(r.closedEarly, true);
      assert.equal(r.status, 0);
      assert.equal(r.kind, 'reset');
      const h = holdStream({ url: s.url, path: '/stream', seconds: 1 });
      await sleep(50);
      h.abort();
      const a = await h.done;
      assert.equal(a.closedEarly, false);
      assert.equal(a.error, 'aborted by the test');
    } finally {
      await s.close();
    }
  });
});

describe('holdIdleConnection', () => {
  it('a connection that survives sitting idle: both requests on the same socket', async () => {
    const s = await serve((_req, res) => text(res, 'v1\n'));
    try {
      const r = await holdIdleConnection({ url: s.url, host: 'idle.test', idleMs: 150 });
      assert.deepEqual(r, { first: { status: 200, body: 'v1\n' }, second: { status: 200, body: 'v1\n' }, failed: false, closedWhileIdle: false });
      assert.equal(s.connections, 1);
      assert.equal(s.seen.length, 2);
      assert.equal(s.seen[0]!.port, s.seen[1]!.port);
      assert.deepEqual(s.seen.map((q) => q.host), ['idle.test', 'idle.test']);
    } finally {
      await s.close();
    }
  });

  it('the server closing the idle connection fails it', async () => {
    const s = await serve((_req, res) => text(res, 'v1\n'));
    try {
      const r = await holdIdleConnection({ url: s.url, idleMs: 150, onIdle: () => setTimeout(() => s.server.closeIdleConnections(), 30) });
      assert.equal(r.failed, true);
      assert.equal(r.closedWhileIdle, true);
      assert.equal(r.second, null);
      assert.equal(s.seen.length, 1, 'nothing re-sent on a new connection');
      assert.equal(s.connections, 1);
    } finally {
      await s.close();
    }
  });

  it('a reset when the second request arrives fails it', async () => {
    let n = 0;
    const s = await serve((req, res) => {
      n += 1;
      if (n === 2) req.socket.destroy();
      else text(res, 'v1\n');
    });
    try {
      const r = await holdIdleConnection({ url: s.url, idleMs: 100 });
      assert.equal(r.failed, true);
      assert.equal(r.closedWhileIdle, false);
      assert.equal(r.kind, 'reset');
      assert.equal(s.seen.length, 2);
      assert.equal(s.connections, 1, 'no second connection: nothing re-sent');
    } finally {
      await s.close();
    }
  });
});
