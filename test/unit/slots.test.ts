import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slots } from '../../src/proxy/slots.js';

/** Slots (src/proxy/slots.ts): what bounds berth's connections to a host's HAProxy master CLI. */
describe('Slots', () => {
  const tick = () => new Promise((r) => setImmediate(r));

  it('runs at most `size` at once; the others start in the order they came as slots free', async () => {
    const slots = new Slots(2);
    const release: Array<() => void> = [];
    const started: number[] = [];
    let inFlight = 0;
    let most = 0;
    const runs = [0, 1, 2, 3, 4].map((i) =>
      slots.run(async () => {
        started.push(i);
        most = Math.max(most, ++inFlight);
        await new Promise<void>((r) => release.push(r));
        inFlight--;
        return i;
      }),
    );
    await tick();
    assert.deepEqual(started, [0, 1]);
    release.shift()!();
    await tick();
    await tick();
    assert.deepEqual(started, [0, 1, 2]);
    while (started.length < 5 || release.length > 0) {
      release.shift()?.();
      await tick();
    }
    assert.deepEqual(await Promise.all(runs), [0, 1, 2, 3, 4]);
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    assert.equal(most, 2);
  });

  it('a call that throws frees its slot', async () => {
    const slots = new Slots(1);
    await assert.rejects(slots.run(() => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await slots.run(async () => 'next'), 'next');
  });
});
