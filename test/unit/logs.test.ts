/**
 * Container logs below the API: Docker's log framing read incrementally and split into
 * lines (src/hosts/docker/framing.ts, logs.ts), the merge of several hosts' lines by time
 * (src/reconciler/log-merge.ts), and an app's logs through the reconciler's real code
 * (src/reconciler/app-logs.ts) on simulated hosts whose containers print what the test
 * says. The real run is test/integration/logs.test.ts.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { afterEach, describe, test } from 'node:test';
import { pino } from 'pino';
import { ConflictError, HOST_ERROR_CODES, HostError, SecretsFileError } from '../../src/domain/errors.js';
import type { AppLogItem } from '../../src/domain/logs.js';
import { LABELS } from '../../src/domain/labels.js';
import { DockerLogDemuxer, demuxDockerLog } from '../../src/hosts/docker/framing.js';
import { logLines } from '../../src/hosts/docker/logs.js';
import { MAX_LOG_LINE_BYTES, type LogLine, type LogOptions, type LogStream } from '../../src/hosts/host-driver.js';
import { HostReachability } from '../../src/hosts/reachability.js';
import { SimulatedHostDriver, type SimulatedHostOptions } from '../../src/hosts/simulated-driver.js';
import { BerthMetrics } from '../../src/metrics/registry.js';
import { directTraffic } from '../../src/proxy/traffic.js';
import { openAppLogs, type AppLogs } from '../../src/reconciler/app-logs.js';
import { Controller } from '../../src/reconciler/controller.js';
import { mergeByTime } from '../../src/reconciler/log-merge.js';
import type { PassDeps } from '../../src/reconciler/pass.js';
import { openStore, type Store } from '../../src/store/index.js';
import { makeSpec } from '../support/fixtures.js';
import { validateAppDocument } from '../../src/config/app.js';
import { tempSecrets, type TempSecrets } from '../support/secrets.js';

/** One frame of Docker's multiplexed log: [stream, 0, 0, 0, length BE32] + payload. */
function frame(stream: 1 | 2, payload: string): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("Docker's log framing and lines", () => {
  test('frames split anywhere across chunks come out whole, stdout and stderr apart', () => {
    const bytes = Buffer.concat([frame(1, 'out one\n'), frame(2, 'err one\n'), frame(1, 'out two\n')]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new DockerLogDemuxer();
      const frames = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut)), ...d.end()];
      assert.deepEqual(
        frames.map((f) => [f.stream, f.payload.toString()]),
        [
          ['stdout', 'out one\n'],
          ['stderr', 'err one\n'],
          ['stdout', 'out two\n'],
        ],
        `cut at byte ${cut}`,
      );
    }
  });

  test('a TTY container (no framing) is raw stdout, even shorter than a header', () => {
    const d = new DockerLogDemuxer();
    assert.deepEqual(d.push(Buffer.from('hi\n')).map((f) => [f.stream, f.payload.toString()]), [['stdout', 'hi\n']]);
    assert.deepEqual(d.push(Buffer.from([1, 0, 0, 0])).map((f) => f.payload.length), [4], 'raw once raw');
    assert.equal(demuxDockerLog(Buffer.from('ok')).toString(), 'ok');
    assert.equal(demuxDockerLog(Buffer.concat([frame(1, 'a'), frame(2, 'b')])).toString(), 'ab');
  });

  test("lines: Docker's timestamp taken off, CR LF and a last line without newline, a line over the bound cut with …", async () => {
    const res = new PassThrough();
    const stream = logLines(res, 'h1', 'logs of container c1');
    const long = 'x'.repeat(MAX_LOG_LINE_BYTES + 100);
    res.write(frame(1, '2026-11-29T09:31:54.123456789Z hello\r\n2026-11-29T09:31:54.2'));
    res.write(frame(1, '00000000Z second\n'));
    res.write(frame(2, `2026-11-29T09:31:55.000000000Z ${long}\n`));
    res.end(frame(1, 'no timestamp, no newline'));
    const lines = await collect(stream);
    assert.deepEqual(lines.slice(0, 2), [
      { stream: 'stdout', time: '2026-11-29T09:31:54.123456789Z', text: 'hello' },
      { stream: 'stdout', time: '2026-11-29T09:31:54.200000000Z', text: 'second' },
    ]);
    assert.equal(lines[2]!.stream, 'stderr');
    assert.equal(lines[2]!.text, `${'x'.repeat(MAX_LOG_LINE_BYTES)}…`);
    assert.deepEqual(lines[3], { stream: 'stdout', time: null, text: 'no timestamp, no newline' });
  });

  test('close() ends a followed stream that is waiting, without an error; a broken one fails with a HostError', async () => {
    const res = new PassThrough();
    const stream = logLines(res, 'h1', 'logs of container c1');
    res.write(frame(1, '2026-11-29T09:31:54.000000000Z one\n'));
    const got: string[] = [];
    const done = (async () => {
      for await (const l of stream) {
        got.push(l.text);
        setImmediate(() => stream.close());
      }
    })();
    await done;
    assert.deepEqual(got, ['one']);
    assert.equal(res.destroyed, true, 'the response (its connection) is closed');

    const broken = new PassThrough();
    const failing = logLines(broken, 'h2', 'logs of container c2');
    setImmediate(() => broken.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })));
    await assert.rejects(collect(failing), (e: unknown) => e instanceof HostError && e.code === HOST_ERROR_CODES.unreachable && e.host === 'h2' && /logs of container c2/.test(e.message));
  });
});

/** A source that yields what `push` gives it, until `end`. */
function source<T>() {
  const queue: T[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  let taken = 0;
  return {
    push(...items: T[]) {
      queue.push(...items);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    /** Items the merge has read from it. */
    taken: () => taken,
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          taken += 1;
          yield next;
        } else if (ended) return;
        else await new Promise<void>((r) => (wake = r));
      }
    },
  };
}

type Timed = { src: string; t: number | null };
const timeOf = (i: Timed) => i.t;

describe('merging hosts by time', () => {
  test('finished sources merge in time order; ties keep their order of arrival', async () => {
    const ac = new AbortController();
    const a = source<Timed>();
    const b = source<Timed>();
    a.push({ src: 'a', t: 1 }, { src: 'a', t: 4 }, { src: 'a', t: 5 });
    b.push({ src: 'b', t: 2 }, { src: 'b', t: 4 }, { src: 'b', t: 9 });
    a.end();
    b.end();
    const out = await collect(mergeByTime([a, b], { timeOf, windowMs: 10_000, maxQueued: 100, signal: ac.signal }));
    assert.deepEqual(out.map((i) => `${i.src}${i.t}`), ['a1', 'b2', 'a4', 'b4', 'a5', 'b9']);
  });

  test('a quiet open source holds the others back at most the window; an item without a time goes at once', async () => {
    const ac = new AbortController();
    const quiet = source<Timed>();
    const busy = source<Timed>();
    const merged = mergeByTime([quiet, busy], { timeOf, windowMs: 150, maxQueued: 100, signal: ac.signal })[Symbol.asyncIterator]();
    const t0 = Date.now();
    busy.push({ src: 'busy', t: null });
    assert.deepEqual((await merged.next()).value, { src: 'busy', t: null });
    assert.ok(Date.now() - t0 < 100, 'untimed: at once');
    busy.push({ src: 'busy', t: 1 });
    const t1 = Date.now();
    assert.deepEqual((await merged.next()).value, { src: 'busy', t: 1 });
    const waited = Date.now() - t1;
    assert.ok(waited >= 140 && waited < 600, `waited ${waited} ms for the quiet source`);
    ac.abort();
    assert.equal((await merged.next()).done, true, 'aborted: the merge ends');
  });

  test('a source whose items wait is not read past maxQueued', async () => {
    const ac = new AbortController();
    const quiet = source<Timed>();
    const flood = source<Timed>();
    flood.push(...Array.from({ length: 50 }, (_, i) => ({ src: 'flood', t: i })));
    const merged = mergeByTime([quiet, flood], { timeOf, windowMs: 60_000, maxQueued: 5, signal: ac.signal })[Symbol.asyncIterator]();
    const first = merged.next();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(flood.taken(), 5, 'read up to the bound, then left on the source');
    quiet.end();
    assert.deepEqual((await first).value, { src: 'flood', t: 0 });
    ac.abort();
  });
});

/** A simulated host whose containers print what the test writes, read as Docker would (tail, since, follow until the container stops). */
class PrintingHost extends SimulatedHostDriver {
  private readonly printed = new Map<string, LogLine[]>();
  private readonly waiting = new Set<() => void>();
  readonly opened: Array<LogOptions & { id: string }> = [];
  open = 0;

  /** What a container of an image prints when it starts, and whether it then exits (the test's script). */
  boot: (image: string) => { lines: string[]; exits?: boolean } = () => ({ lines: [] });

  constructor(name: string, opts: Partial<SimulatedHostOptions> = {}) {
    // Each container is created a millisecond after the one before: "newest" is never a tie.
    let clock = Date.now();
    super({ name, latencyMs: { listContainers: 0, startContainer: 0, stopContainer: 0, createContainer: 0 }, images: ['img:v0', 'img:v1', 'img:v2', 'img:v3'], now: () => (clock += 1), ...opts });
  }

  override async startContainer(id: string): Promise<void> {
    await super.startContainer(id);
    const c = this.containers().find((x) => x.id === id)!;
    const { lines, exits } = this.boot(c.image);
    for (const line of lines) this.print(id, line);
    if (exits) await this.stopContainer(id, 0);
  }

  /** The container prints `text` (at `time`, default now). */
  print(id: string, text: string, time = new Date().toISOString()): void {
    const lines = this.printed.get(id) ?? [];
    lines.push({ stream: 'stdout', time, text });
    this.printed.set(id, lines);
    for (const w of this.waiting) w();
  }

  /** Ends every open log stream while the containers run on (dockerd restarting under live-restore). */
  cutStreams(): void {
    this.cut += 1;
    for (const w of this.waiting) w();
  }
  private cut = 0;

  override async stopContainer(id: string, timeoutMs: number): Promise<void> {
    await super.stopContainer(id, timeoutMs);
    for (const w of this.waiting) w();
  }

  override async containerLogs(id: string, opts: LogOptions): Promise<LogStream> {
    await super.containerLogs(id, { ...opts, follow: false });
    this.opened.push({ id, ...opts });
    const lines = this.printed.get(id) ?? [];
    this.printed.set(id, lines);
    const since = opts.sinceMs ?? 0;
    const first = lines.filter((l) => Date.parse(l.time!) >= since);
    let at = lines.length - Math.min(opts.tail, first.length);
    let closed = false;
    let wake = () => {};
    const self = this;
    const running = () => this.containers().some((c) => c.id === id && c.state === 'running');
    const cutAt = this.cut;
    const cut = () => this.cut !== cutAt;
    this.open += 1;
    async function* read(): AsyncGenerator<LogLine> {
      const waiter = () => wake();
      self.waiting.add(waiter);
      try {
        while (!closed) {
          if (at < lines.length) yield lines[at++]!;
          else if (!opts.follow || !running() || cut()) return;
          else await new Promise<void>((r) => (wake = r));
        }
      } finally {
        self.waiting.delete(waiter);
        self.open -= 1;
      }
    }
    const it = read();
    return {
      [Symbol.asyncIterator]: () => it,
      close: () => {
        closed = true;
        wake();
      },
    };
  }

  /** Starts a container of `app` at `version` (revision `rev`), as a rollout would. */
  async run(app: string, rev: number, version: string): Promise<string> {
    const labels = { [LABELS.app]: app, [LABELS.revision]: String(rev), [LABELS.version]: version, [LABELS.role]: 'app', [LABELS.config]: 'h' };
    const id = await this.createContainer({ name: `${app}-r${rev}`, image: `img:${version}`, env: {}, labels, network: 'berth', init: true });
    await this.startContainer(id);
    return id;
  }
}

describe("an app's logs from its hosts", () => {
  const SECRET = 'pa55word-from-the-file';
  let store: Store;
  let secrets: TempSecrets;
  let hosts: Map<string, PrintingHost>;
  let deps: PassDeps;
  const opened: AppLogs[] = [];

  function setup(hostNames = ['h1', 'h2', 'h3']): void {
    store = openStore(':memory:');
    secrets = tempSecrets();
    secrets.write('web', { DB_PASSWORD: SECRET, CERT: '-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----' });
    hosts = new Map(hostNames.map((n) => [n, new PrintingHost(n)]));
    store.apps.upsertApp(makeSpec({ name: 'web', image: 'img', hosts: hostNames, secrets: ['DB_PASSWORD', 'CERT'] }), 'test');
    const log = pino({ level: 'silent' });
    const reachability = new HostReachability({ drivers: hosts, rows: store.hostsStatus, setUp: () => {}, onBack: () => {}, onChange: () => {}, log });
    deps = { store, drivers: hosts, traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log, secrets: secrets.files, now: Date.now, reachability, snapshot: null, rows: null };
  }
  const logs = (req: Parameters<typeof openAppLogs>[2]) => {
    const l = openAppLogs(deps, 'web', req);
    opened.push(l);
    return l;
  };
  const host = (name: string) => hosts.get(name)!;

  afterEach(() => {
    for (const l of opened.splice(0)) l.close();
    store.close();
    secrets.remove();
  });

  /** Reads items until `pred` holds for what was read (or fails after `ms`). */
  async function readUntil(it: AsyncIterator<AppLogItem>, got: AppLogItem[], pred: (got: AppLogItem[]) => boolean, ms = 3_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(got)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; read so far: ${JSON.stringify(got)}`);
      const next = await Promise.race([it.next(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), left))]);
      if (next === 'timeout' || next.done) throw new Error(`${next === 'timeout' ? 'timed out' : 'ended'}; read so far: ${JSON.stringify(got)}`);
      got.push(next.value);
    }
  }
  const texts = (got: AppLogItem[]) => got.flatMap((i) => (i.type === 'line' ? [`${i.host} ${i.text}`] : []));

  test("every host's serving container, merged by Docker's time, each line redacted; a host that cannot be read says so and the others go on", async () => {
    setup();
    const ids = new Map<string, string>();
    for (const [name, h] of hosts) ids.set(name, await h.run('web', 1, 'v1'));
    // A newer, stopped container of the app (a failed one, say) is not the one read.
    const old = await host('h1').run('web', 0, 'v0');
    await host('h1').stopContainer(old, 0);
    host('h1').print(old, 'old container');
    const t = Date.parse('2026-11-29T09:00:00Z');
    const at = (s: number) => new Date(t + s * 1000).toISOString();
    host('h1').print(ids.get('h1')!, `h1 first, password ${SECRET}`, at(1));
    host('h2').print(ids.get('h2')!, 'h2 second', at(2));
    host('h1').print(ids.get('h1')!, 'h1 third: MIIBOgIBAAJBAKj34GkxFhD9', at(3));
    host('h2').print(ids.get('h2')!, 'h2 fourth', at(4));
    host('h3').setReachable(false);
    // Mid-rollout on h2: a newer container runs beside the one the status says serves; the serving one is read.
    const booting = await host('h2').run('web', 2, 'v2');
    host('h2').print(booting, 'booting r2');
    store.status.writeStatus({ app: 'web', phase: 'Progressing', observedRevision: 1, conditions: [], updatedAt: '', hosts: [{ host: 'h2', version: 'v1', revision: 1, containerId: ids.get('h2')!, health: 'unknown', lastError: null, lastLogs: null }] });

    const got = await collect(logs({ tail: 100, follow: false }).items);
    assert.deepEqual(texts(got), ['h1 h1 first, password [redacted:DB_PASSWORD]', 'h2 h2 second', 'h1 h1 third: [redacted:CERT]', 'h2 h2 fourth']);
    const states = got.filter((i) => i.type === 'host').map((i) => [i.host, i.state, i.container, i.code]);
    assert.deepEqual(states.sort(), [
      ['h1', 'attached', 'web-r1', null],
      ['h2', 'attached', 'web-r1', null],
      ['h3', 'error', null, HOST_ERROR_CODES.unreachable],
    ]);
    assert.ok(JSON.stringify(got).indexOf('"h1","state":"attached"') < JSON.stringify(got).indexOf('h1 first'), "a host's state comes before its lines");
    // Only h2, its last line, since a time.
    assert.deepEqual(texts(await collect(logs({ host: 'h2', tail: 1, follow: false }).items)), ['h2 h2 fourth']);
    assert.deepEqual(texts(await collect(logs({ tail: 100, sinceMs: t + 2500, follow: false }).items)), ['h1 h1 third: [redacted:CERT]', 'h2 h2 fourth']);
    for (const h of hosts.values()) assert.equal(h.open, 0, `${h.name}: no stream left open`);
  });

  test("followed: a new line arrives at once; when the container stops, the host's next container is followed; close() ends every host's stream", async () => {
    setup(['h1', 'h2']);
    const first = await host('h1').run('web', 1, 'v1');
    await host('h2').run('web', 1, 'v1');
    const l = logs({ tail: 0, follow: true });
    const it = l.items[Symbol.asyncIterator]();
    const got: AppLogItem[] = [];
    await readUntil(it, got, (g) => g.filter((i) => i.type === 'host' && i.state === 'attached').length === 2);

    const wrote = Date.now();
    host('h1').print(first, 'live line');
    await readUntil(it, got, (g) => texts(g).includes('h1 live line'));
    const ms = Date.now() - wrote;
    // h2 is quiet: the line waits out the merge window, no more.
    assert.ok(ms < 1_000, `arrived after ${ms} ms`);

    // A rollout on h1: the new container starts, the old one stops.
    const next = await host('h1').run('web', 2, 'v2');
    host('h1').print(next, 'booted v2');
    await host('h1').stopContainer(first, 0);
    await readUntil(it, got, (g) => texts(g).includes('h1 booted v2'));
    const h1States = got.filter((i) => i.type === 'host' && i.host === 'h1').map((i) => (i.type === 'host' ? `${i.state} ${i.message}` : ''));
    assert.deepEqual(h1States, ['attached web-r1 (v1)', 'detached web-r1 stopped; following the next container of web on h1', 'attached web-r2 (v2)']);

    l.close();
    await new Promise((r) => setTimeout(r, 50));
    for (const h of hosts.values()) assert.equal(h.open, 0, `${h.name}: its stream is closed`);
    assert.equal((await it.next()).done, true);
  });

  test('followed: a log that ends while its container runs on (Docker restarted) or that restarts goes on after its last line, repeating none', async () => {
    setup(['h1']);
    const id = await host('h1').run('web', 1, 'v1');
    host('h1').print(id, 'before', new Date(Date.now() - 10).toISOString());
    const l = logs({ tail: 10, follow: true });
    const it = l.items[Symbol.asyncIterator]();
    const got: AppLogItem[] = [];
    await readUntil(it, got, (g) => texts(g).includes('h1 before'));
    host('h1').cutStreams();
    await new Promise((r) => setTimeout(r, 20));
    // Simulated timestamps are milliseconds (Docker's are nanoseconds): each line its own.
    const later = (ms: number) => new Date(Date.now() + ms).toISOString();
    host('h1').print(id, 'after the cut', later(5));
    await readUntil(it, got, (g) => texts(g).includes('h1 after the cut'));
    assert.deepEqual(
      got.flatMap((i) => (i.type === 'host' ? [i.state] : [])),
      ['attached', 'attached'],
      'a log that ended while its container runs is read again, not said to have stopped',
    );
    await host('h1').stopContainer(id, 0);
    await host('h1').startContainer(id);
    host('h1').print(id, 'after the restart', later(10));
    await readUntil(it, got, (g) => texts(g).includes('h1 after the restart'), 5_000);
    assert.deepEqual(texts(got), ['h1 before', 'h1 after the cut', 'h1 after the restart']);
  });

  test('refused before any host is read: a host the app does not run on, an app whose secrets cannot be read', async () => {
    setup(['h1']);
    assert.throws(() => logs({ host: 'h9', tail: 1, follow: false }), (e: unknown) => e instanceof ConflictError && /host "h9" does not run app "web" \(hosts: h1\)/.test(e.message));
    secrets.write('web', { DB_PASSWORD: SECRET });
    assert.throws(() => logs({ tail: 1, follow: false }), /secret CERT is not in/);
    secrets.write('web', { DB_PASSWORD: SECRET, CERT: 'x'.repeat(10) }, 0o644);
    assert.throws(() => logs({ tail: 1, follow: false }), (e: unknown) => e instanceof SecretsFileError);
    assert.deepEqual(host('h1').opened, []);
  });

  test('an app with processes: each unit read apart and named process@host; --process keeps one process', async () => {
    setup(['h1', 'h2']);
    store.apps.upsertApp(validateAppDocument('web', { image: 'img', hosts: ['h1'], secrets: ['DB_PASSWORD', 'CERT'], processes: { web: { proxy: { port: 80 } }, worker: { hosts: ['h1', 'h2'], cmd: 'bin/jobs' } } }, ['h1', 'h2']), 'test');
    const t = Date.parse('2026-11-29T09:00:00Z');
    const at = (s: number) => new Date(t + s * 1000).toISOString();
    const run = async (h: string, process: string, line: string, s: number) => {
      const labels = { [LABELS.app]: 'web', [LABELS.revision]: '1', [LABELS.version]: 'v1', [LABELS.role]: 'app', [LABELS.config]: 'h', [LABELS.process]: process };
      const id = await host(h).createContainer({ name: `web-${process}-r1`, image: 'img:v1', env: {}, labels, network: 'berth', init: true });
      await host(h).startContainer(id);
      host(h).print(id, line, at(s));
    };
    await run('h1', 'web', 'serving', 1);
    await run('h1', 'worker', 'working on h1', 2);
    await run('h2', 'worker', 'working on h2', 3);
    assert.deepEqual(texts(await collect(logs({ tail: 10, follow: false }).items)), ['web@h1 serving', 'worker@h1 working on h1', 'worker@h2 working on h2']);
    assert.deepEqual(texts(await collect(logs({ process: 'worker', tail: 10, follow: false }).items)), ['worker@h1 working on h1', 'worker@h2 working on h2']);
    assert.deepEqual(texts(await collect(logs({ process: 'worker', host: 'h1', tail: 10, follow: false }).items)), ['worker@h1 working on h1']);
    assert.throws(() => logs({ process: 'cron', tail: 1, follow: false }), (e: unknown) => e instanceof ConflictError && /app "web" has no process "cron" \(processes: web, worker\)/.test(e.message));
  });
});

describe("a container that fails leaves its last lines in its event and the app's status", () => {
  const SECRET = 'pa55word-from-the-file';
  let store: Store;
  let secrets: TempSecrets;
  let controller: Controller;
  let h1: PrintingHost;

  afterEach(async () => {
    await controller.stop();
    store.close();
    secrets.remove();
  });

  async function deploy(version: string, phase: string): Promise<void> {
    store.releases.createRelease({ app: 'web', version, reason: 'deploy', actor: 'test' });
    controller.enqueue('web');
    const deadline = Date.now() + 5_000;
    while (store.status.readStatus('web')?.phase !== phase) {
      if (Date.now() > deadline) throw new Error(`${version} not ${phase}: ${JSON.stringify(store.status.readStatus('web'))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await controller.idle();
  }

  function start(): void {
    store = openStore(':memory:');
    secrets = tempSecrets();
    secrets.write('web', { DB_PASSWORD: SECRET });
    // v2 answers its health check with 500: it never becomes healthy.
    h1 = new PrintingHost('h1', { httpHandler: (c) => (c.image === 'img:v2' ? { status: 500, body: 'no database' } : null) });
    const healthcheck = { path: '/health', port: 3000, intervalMs: 20, timeoutMs: 100, maxAttempts: 2, minHealthyMs: 0 };
    store.apps.upsertApp(makeSpec({ name: 'web', image: 'img', hosts: ['h1'], secrets: ['DB_PASSWORD'], healthcheck, rollout: { ...makeSpec().rollout, onFailure: 'pause' } }), 'test');
    controller = new Controller({ store, drivers: new Map([['h1', h1]]), traffic: directTraffic, metrics: new BerthMetrics('test', { processMetrics: false }), log: pino({ level: 'silent' }), resyncIntervalMs: 60_000, secrets: secrets.files });
    controller.start();
  }

  test('its last 50 lines, redacted and cut to 500 characters, go into a FailedContainerLogs event and the host status, before the container is removed', async () => {
    start();
    await deploy('v1', 'Complete');
    h1.boot = (image) => ({ lines: image === 'img:v2' ? [...Array.from({ length: 59 }, (_, i) => `line ${i + 1}`), `connecting with ${SECRET} ${'y'.repeat(600)}`] : [] });
    await deploy('v2', 'Paused');
    const [event, ...more] = store.events.listEvents('web', { limit: 1000 }).filter((e) => e.type === 'FailedContainerLogs');
    assert.equal(more.length, 0);
    const lines = event!.message.split('\n');
    assert.equal(lines[0], 'web-r2 (v2) failed its health check; its last 50 log lines:');
    assert.equal(event!.host, 'h1');
    assert.equal(event!.revision, 2);
    assert.deepEqual(lines.slice(1, 3), ['line 11', 'line 12']);
    assert.equal(lines.length, 51);
    assert.equal(lines[50], `connecting with [redacted:DB_PASSWORD] ${'y'.repeat(500 - 'connecting with [redacted:DB_PASSWORD] '.length)}`);
    const host = store.status.readStatus('web')!.hosts[0]!;
    assert.equal(host.health, 'unhealthy');
    assert.deepEqual(host.lastLogs, lines.slice(1));
    assert.ok(!h1.containers().some((c) => c.image === 'img:v2'), 'the failed container is removed');
    assert.ok(!JSON.stringify(store.events.listEvents('web', { limit: 1000 })).includes(SECRET));
  });

  test('a container that exits at once: its lines too, said as not running', async () => {
    start();
    await deploy('v1', 'Complete');
    h1.boot = (image) => (image === 'img:v3' ? { lines: ['fatal: no config'], exits: true } : { lines: [] });
    await deploy('v3', 'Paused');
    const event = store.events.listEvents('web', { limit: 1000 }).find((e) => e.type === 'FailedContainerLogs');
    assert.equal(event?.message, 'web-r2 (v3) is not running; its last 1 log lines:\nfatal: no config');
    assert.deepEqual(store.status.readStatus('web')!.hosts[0]!.lastLogs, ['fatal: no config']);
  });
});
