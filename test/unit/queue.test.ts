import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue, type Worker } from '../../src/reconciler/queue.js';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** A one-worker queue whose pass for key 'x' blocks until released; records the order of passes. */
async function queueBehindX() {
  const seen: string[] = [];
  const gate = deferred();
  const q = new WorkQueue(
    async (k) => {
      seen.push(k);
      if (k === 'x') await gate.promise;
      return null;
    },
    () => {},
    { concurrency: 1 },
  );
  q.add('x'); // holds the only worker
  await tick();
  return { q, seen, release: gate.resolve };
}

describe('work queue', () => {
  it('de-duplicates keys that are waiting', async () => {
    const { q, seen, release } = await queueBehindX();
    q.add('a');
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.depth, 2);
    release();
    await q.idle();
    assert.deepEqual(seen, ['x', 'a', 'b']);
  });

  it('never runs one key twice at once; an add during its pass runs it once more afterwards', async () => {
    let running = 0;
    let maxRunning = 0;
    let passes = 0;
    const gate = deferred();
    const worker: Worker = async () => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      passes += 1;
      if (passes === 1) await gate.promise;
      running -= 1;
      return null;
    };
    const q = new WorkQueue(worker, () => {}, { concurrency: 4 });
    q.add('web');
    await tick();
    q.add('web');
    q.add('web');
    gate.resolve();
    await q.idle();
    await tick();
    await q.idle();
    assert.equal(maxRunning, 1);
    assert.equal(passes, 2, 'the adds during the first pass fold into one more pass');
  });

  it('runs different keys in parallel up to the concurrency limit', async () => {
    let running = 0;
    let maxRunning = 0;
    const q = new WorkQueue(
      async () => {
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        await tick(10);
        running -= 1;
        return null;
      },
      () => {},
      { concurrency: 3 },
    );
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) q.add(k);
    await q.idle();
    assert.equal(maxRunning, 3);
  });

  it('re-adds a key after the delay the worker asks for', async () => {
    const times: number[] = [];
    const start = Date.now();
    const q = new WorkQueue(async () => (times.push(Date.now() - start), times.length < 2 ? 30 : null), () => {}, { concurrency: 1 });
    q.add('a');
    await tick(80);
    await q.idle();
    assert.equal(times.length, 2);
    assert.ok(times[1]! - times[0]! >= 25, `second pass after the delay (${times[1]! - times[0]!} ms)`);
  });

  it('backs off exponentially on errors and reports each one', async () => {
    const errors: string[] = [];
    const times: number[] = [];
    const start = Date.now();
    const q = new WorkQueue(
      async () => {
        times.push(Date.now() - start);
        if (times.length <= 3) throw new Error(`boom ${times.length}`);
        return null;
      },
      (_k, err) => errors.push((err as Error).message),
      { concurrency: 1, backoffBaseMs: 10, backoffMaxMs: 1000 },
    );
    q.add('a');
    await tick(150);
    assert.deepEqual(errors, ['boom 1', 'boom 2', 'boom 3']);
    assert.equal(times.length, 4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[1]! >= gaps[0]! && gaps[2]! >= 35, `gaps grow: ${gaps.join(', ')}`);
  });

  it('shutdown stops taking work and waits for the pass in flight', async () => {
    const gate = deferred();
    let finished = false;
    const q = new WorkQueue(
      async () => {
        await gate.promise;
        finished = true;
        return 10;
      },
      () => {},
      { concurrency: 1 },
    );
    q.add('a');
    await tick();
    const stopped = q.shutdown();
    q.add('b');
    setTimeout(() => gate.resolve(), 20);
    await stopped;
    assert.equal(finished, true);
    assert.equal(q.depth, 0);
  });

  it('an operator request jumps the line', async () => {
    const { q, seen, release } = await queueBehindX();
    for (const k of ['a', 'b', 'c']) q.add(k);
    q.add('c', { front: true });
    q.add('urgent', { front: true });
    release();
    await q.idle();
    assert.deepEqual(seen, ['x', 'urgent', 'c', 'a', 'b']);
  });

  it('a front slot: an operator request starts while every other worker is busy; routine keys never take it', async () => {
    const gate = deferred();
    const running = new Set<string>();
    const q = new WorkQueue(
      async (k) => {
        running.add(k);
        await gate.promise;
        running.delete(k);
        return null;
      },
      () => {},
      { concurrency: 1, frontSlots: 1 },
    );
    q.add('x');
    q.add('routine');
    q.add('urgent', { front: true });
    q.add('later', { front: true });
    await tick(10);
    assert.deepEqual([...running].sort(), ['urgent', 'x'], 'urgent runs beside x; the second front key waits for a worker; routine waits');
    assert.equal(q.depth, 2);
    gate.resolve();
    await q.idle();
  });

  describe("a front key's head start: no routine pass starts for frontHeadStartMs after it, while it runs", () => {
    function headStartQueue() {
      const gates = new Map<string, ReturnType<typeof deferred>>();
      const started: string[] = [];
      const q = new WorkQueue(
        async (k) => {
          started.push(k);
          const gate = deferred();
          gates.set(k, gate);
          await gate.promise;
          return null;
        },
        () => {},
        { concurrency: 4, frontSlots: 1, frontHeadStartMs: 150 },
      );
      return { q, started, finish: (k: string) => gates.get(k)!.resolve() };
    }

    it('routine keys wait while the front pass runs, and start as soon as it ends', async () => {
      const { q, started, finish } = headStartQueue();
      q.add('urgent', { front: true });
      q.add('a');
      q.add('b');
      await tick(50);
      assert.deepEqual(started, ['urgent'], 'a and b wait although workers are free');
      finish('urgent');
      await tick(5);
      assert.deepEqual(started, ['urgent', 'a', 'b']);
      finish('a');
      finish('b');
      await q.idle();
    });

    it('a front pass that runs long holds them back only for the head start', async () => {
      const { q, started, finish } = headStartQueue();
      q.add('slow', { front: true });
      q.add('a');
      const t0 = performance.now();
      while (!started.includes('a') && performance.now() - t0 < 2_000) await tick(5);
      const waited = performance.now() - t0;
      assert.deepEqual(started, ['slow', 'a']);
      assert.ok(waited >= 140 && waited < 1_000, `a started after ${Math.round(waited)} ms`);
      finish('slow');
      finish('a');
      await q.idle();
    });
  });
});
