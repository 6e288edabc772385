/**
 * Bounds of GET /v1/apps/:app/events as a live SSE stream, over a real listening
 * server on 127.0.0.1 (backpressure needs a real socket): the cap on concurrent
 * streams, a client that never reads, and a large backlog replayed page by page.
 * Small bounds are passed to buildApp so each limit is reached in milliseconds.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, test } from 'node:test';
import type { EventStreamLimits } from '../../src/api/routes/events.js';
import type { BerthEvent } from '../../src/domain/release.js';
import { AUTH, makeApi, seedApp, sseClient, type TestApi } from '../support/api.js';

interface StreamApi extends TestApi {
  port: number;
  url: string;
  /** The server side of every accepted connection, in order. */
  sockets: net.Socket[];
  /** Every limit passed to listEvents, in order. */
  pageCalls: number[];
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function streamApi(eventStreams: Partial<EventStreamLimits>): Promise<StreamApi> {
  const base = makeApi({ eventStreams });
  const { app, store } = base;
  const pageCalls: number[] = [];
  const list = store.events.listEvents.bind(store.events);
  store.events.listEvents = (name, opts = {}) => {
    pageCalls.push(opts.limit ?? -1);
    return list(name, opts);
  };
  const sockets: net.Socket[] = [];
  app.server.on('connection', (s: net.Socket) => sockets.push(s));
  const api: StreamApi = {
    ...base,
    close: async () => {
      for (const s of sockets) s.destroy();
      await base.close();
    },
    port: 0,
    url: '',
    sockets,
    pageCalls,
  };
  cleanups.push(() => api.close());
  await seedApp(api, 'web');
  await app.listen({ host: '127.0.0.1', port: 0 });
  api.port = (app.server.address() as AddressInfo).port;
  api.url = `http://127.0.0.1:${api.port}/v1/apps/web/events`;
  return api;
}

const STREAM = { ...AUTH, accept: 'text/event-stream' };
const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

/**
 * A client that sends the request and then never reads a byte. `closed` says the server cut it off
 * (seen on the server's side: a client that does not read does not notice the FIN either).
 */
async function deafClient(api: StreamApi, headers: Record<string, string> = {}, path = '/v1/apps/web/events'): Promise<{ socket: net.Socket; closed: () => boolean; server: net.Socket }> {
  const known = api.sockets.length;
  const socket = net.connect(api.port, '127.0.0.1');
  socket.on('error', () => {});
  cleanups.push(() => void socket.destroy());
  const lines = Object.entries({ ...STREAM, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${lines.join('')}\r\n`);
  socket.pause(); // no 'data' listener and paused: the kernel buffers fill, then the server's
  await until('the server accepted the connection', () => api.sockets.length > known);
  const server = api.sockets[known]!;
  return { socket, closed: () => server.destroyed, server };
}

const BIG = 'x'.repeat(64 * 1024);
const append = (api: StreamApi, message = BIG): BerthEvent => api.store.events.appendEvent({ app: 'web', type: 'Test', message });

/** The stream's slow-consumer log lines (pino JSON). */
function drops(api: StreamApi, kind = 'event'): Array<{ reason: string; queued: number; pendingBytes: number }> {
  return api
    .logs()
    .split('\n')
    .filter((l) => l.includes(`disconnecting a slow ${kind} stream`))
    .map((l) => JSON.parse(l) as { reason: string; queued: number; pendingBytes: number });
}

/** Appends big live events until the server side of `server` reports backpressure (write() returned false). */
async function fillUntilBlocked(api: StreamApi, server: net.Socket, max = 600): Promise<number> {
  // The stream is registered once its response head went out.
  await until('the stream is open', () => server.bytesWritten > 0 || server.writableLength > 0);
  for (let i = 1; i <= max; i++) {
    append(api);
    await tick();
    if (server.writableNeedDrain) return i;
  }
  throw new Error(`no backpressure after ${max} events of 64 KiB`);
}

describe('event streams: cap on concurrent streams', () => {
  test('the N+1-th stream is a 503 with Retry-After and a JSON error; a closed stream frees its slot', async () => {
    const api = await streamApi({ maxStreams: 2 });
    const a = sseClient(api.url, STREAM);
    const b = sseClient(api.url, STREAM);
    cleanups.push(() => a.close(), () => b.close());
    assert.equal((await a.response).statusCode, 200);
    assert.equal((await b.response).statusCode, 200);

    const refused = await fetch(api.url, { headers: STREAM });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.match(String(refused.headers.get('content-type')), /application\/json/);
    const body = (await refused.json()) as Record<string, string>;
    assert.equal(body.code, 'TOO_MANY_STREAMS');
    assert.match(String(body.message), /api\.max_event_streams = 2/);
    // The JSON list is not a stream and is not capped.
    assert.equal((await fetch(api.url, { headers: AUTH })).status, 200);

    a.close();
    // The slot is freed when the server sees the close: retry briefly, like a client honouring Retry-After.
    let c: ReturnType<typeof sseClient> | null = null;
    for (let i = 0; i < 100 && !c; i++) {
      const attempt = sseClient(api.url, { ...STREAM, 'last-event-id': String(api.store.events.latestEventId('web')) });
      cleanups.push(() => attempt.close());
      if ((await attempt.response).statusCode === 200) c = attempt;
      else {
        attempt.close();
        await sleep(20);
      }
    }
    assert.ok(c, 'a stream is accepted once a client disconnected');
    append(api, 'live');
    const [frame] = await c.next(1);
    assert.equal(JSON.parse(frame!.data).message, 'live');
  });
});

describe('event streams: a client that never reads', () => {
  test('live events beyond the queue bound disconnect it; the pending queue never passes the bound', async () => {
    const api = await streamApi({ maxStreams: 1, maxQueuedEvents: 5, drainTimeoutMs: 60_000 });
    const deaf = await deafClient(api);
    await fillUntilBlocked(api, deaf.server);
    // Blocked: the next events wait in the queue; the 6th one is one too many.
    for (let i = 0; i < 5; i++) append(api);
    await tick();
    assert.equal(deaf.closed(), false, 'still connected with a full queue');
    assert.equal(drops(api).length, 0);
    append(api);
    await until('the slow client is disconnected', () => deaf.closed());
    const [drop] = drops(api);
    assert.equal(drop!.reason, 'queue overflow');
    assert.ok(drop!.queued <= 6, `queued ${drop!.queued}`);
    // Nothing but the one frame whose write was refused is buffered in the response.
    assert.ok(drop!.pendingBytes < 2 * BIG.length, `pending bytes ${drop!.pendingBytes}`);
    // More events after the drop cost nothing, and the slot is free again.
    for (let i = 0; i < 50; i++) append(api);
    const next = sseClient(api.url, STREAM);
    cleanups.push(() => next.close());
    assert.equal((await next.response).statusCode, 200);
  });

  test('a stream that does not drain within the time bound is disconnected and its slot freed', async () => {
    const api = await streamApi({ maxStreams: 1, maxQueuedEvents: 1_000, drainTimeoutMs: 300 });
    const deaf = await deafClient(api);
    await fillUntilBlocked(api, deaf.server);
    const t0 = Date.now();
    await until('the stuck client is disconnected', () => deaf.closed(), 5000);
    assert.ok(Date.now() - t0 >= 200, 'not before the drain bound');
    assert.equal(drops(api)[0]!.reason, 'drain timeout');
    const next = sseClient(api.url, STREAM);
    cleanups.push(() => next.close());
    assert.equal((await next.response).statusCode, 200);
  });
});

describe('event streams: replay of a backlog', () => {
  test('5,000 events after Last-Event-ID arrive complete and in order, read from the store in pages', async () => {
    const api = await streamApi({ replayPageSize: 500 });
    const first = api.store.events.latestEventId('web');
    const expected: number[] = [];
    api.store.db.transaction(() => {
      for (let i = 0; i < 5000; i++) expected.push(append(api, `event ${i}`).id);
    })();
    api.pageCalls.length = 0;
    const client = sseClient(api.url, { ...STREAM, 'last-event-id': String(first) });
    cleanups.push(() => client.close());
    const frames = await client.next(5000, 20_000);
    assert.deepEqual(frames.map((f) => f.id), expected);
    assert.deepEqual(JSON.parse(frames[4999]!.data).message, 'event 4999');
    assert.ok(api.pageCalls.length >= 11, `pages read: ${api.pageCalls.length}`);
    assert.ok(api.pageCalls.every((limit) => limit === 500), `page sizes: ${api.pageCalls.join(',')}`);
    // Then live, without a gap or a duplicate.
    const live = append(api, 'after the replay');
    const [frame] = await client.next(1);
    assert.equal(frame!.id, live.id);
  });

  test('a client that does not read stops the replay: the next page is read only after a drain', async () => {
    const api = await streamApi({ replayPageSize: 100, drainTimeoutMs: 60_000 });
    const message = 'y'.repeat(16 * 1024);
    api.store.db.transaction(() => {
      for (let i = 0; i < 3000; i++) append(api, message); // ~48 MiB of backlog, 30 pages
    })();
    api.pageCalls.length = 0;
    const deaf = await deafClient(api, { 'last-event-id': '0' });
    await until('the stream blocks', () => deaf.server.writableNeedDrain);
    await sleep(200);
    assert.ok(api.pageCalls.length < 15, `pages read while the client reads nothing: ${api.pageCalls.length} of 30`);
    assert.ok(deaf.server.writableLength < 2 * 100 * (message.length + 300), `pending bytes ${deaf.server.writableLength}`);
  });
});

describe('log streams: the same bounds', () => {
  test('a log stream takes a slot of api.max_event_streams like an event stream', async () => {
    const api = await streamApi({ maxStreams: 1 });
    const events = sseClient(api.url, STREAM);
    cleanups.push(() => events.close());
    assert.equal((await events.response).statusCode, 200);
    const refused = await fetch(`http://127.0.0.1:${api.port}/v1/apps/web/logs?follow=true`, { headers: AUTH });
    assert.equal(refused.status, 503);
    assert.equal(((await refused.json()) as { code: string }).code, 'TOO_MANY_STREAMS');
    assert.equal(api.controller.openLogs, 0, 'the refused stream left no logs open');
  });

  test('a client that does not read: no line is asked of the hosts beyond what its socket takes, and it is cut off after the drain bound', async () => {
    const api = await streamApi({ maxStreams: 1, drainTimeoutMs: 400 });
    const big = 'z'.repeat(64 * 1024);
    api.controller.logItems = Array.from({ length: 2000 }, (_, i) => ({ type: 'line', host: 'h1', container: 'web-r1', stream: 'stdout', time: null, text: `${i} ${big}` }));
    const deaf = await deafClient(api, {}, '/v1/apps/web/logs?follow=true');
    await until('the stream blocks', () => deaf.server.writableNeedDrain);
    const taken = api.controller.logsTaken;
    await sleep(150);
    assert.equal(api.controller.logsTaken, taken, 'nothing more is read while the socket does not drain');
    assert.ok(taken < 2000, `read ${taken} of 2000 lines`);
    await until('the stuck client is disconnected', () => deaf.closed(), 5000);
    assert.equal(drops(api, 'log')[0]!.reason, 'drain timeout');
    await until('its logs are closed', () => api.controller.openLogs === 0);
  });
});
