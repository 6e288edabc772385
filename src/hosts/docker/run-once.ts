/**
 * One-off containers (HostDriver.runOnce, for hooks): create, start, wait for the exit under
 * the run's own deadline (SIGKILL when it passes), collect the output tail, always remove.
 * Each step is one bounded call (boundedCall); the driver bounds the whole run.
 */
import { HOST_ERROR_CODES, HostError } from '../../domain/errors.js';
import type { Logger } from '../../log.js';
import type { CreateContainerOptions, RunOnceOptions, RunOnceResult } from '../host-driver.js';
import { boundedCall, dockerStatus } from '../host-errors.js';
import { demuxDockerLog, utf8Tail, type DialArgs } from './framing.js';
import type { RawInspect } from './container-json.js';

/** Lines of output asked of `docker logs`: enough to fill outputTail, without fetching a chatty run's whole log. */
const LOG_TAIL_LINES = 500;

/** What a one-off run needs of the driver. */
export interface OneOffHost {
  readonly name: string;
  readonly log: Logger;
  /** Deadline of each step other than the wait. */
  readonly callTimeoutMs: number;
  /** Bytes of output kept in RunOnceResult.outputTail. */
  readonly outputTailBytes: number;
  dial<T>(a: DialArgs): Promise<T>;
  /** Creates the container (adopting one of the same name), under the caller's signal. */
  create(o: CreateContainerOptions, signal: AbortSignal): Promise<string>;
  /** The container, or null when it does not exist. */
  inspect(id: string, signal: AbortSignal): Promise<RawInspect | null>;
}

/** Runs `o.cmd` in a fresh container to completion (or `o.timeoutMs`), then removes it. */
export function runOneOff(host: OneOffHost, o: RunOnceOptions): Promise<RunOnceResult> {
  return new OneOffRun(host, o).run();
}

class OneOffRun {
  constructor(
    private readonly host: OneOffHost,
    private readonly o: RunOnceOptions,
  ) {}

  /** One step of the run under its deadline, named `run once <name>: <what>` in errors. */
  private step<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, ms = this.host.callTimeoutMs): Promise<T> {
    return boundedCall(this.host.name, `run once ${this.o.name}: ${what}`, ms, fn);
  }

  async run(): Promise<RunOnceResult> {
    const { host, o } = this;
    const { timeoutMs, ...create } = o;
    const id = await this.step('create', (signal) => host.create({ ...create, init: true, restartPolicy: 'no' }, signal));
    const started = performance.now();
    try {
      const before = await this.step('inspect', (signal) => host.inspect(id, signal));
      if (before?.State.Status === 'created') {
        await this.step('start', (signal) => host.dial({ method: 'POST', path: `/containers/${id}/start`, ok: [204, 304], signal }));
      }
      const { exitCode, timedOut } = await this.waitForExit(id, started);
      const logs = await this.step('logs', (signal) =>
        host.dial<Buffer | object>({
          method: 'GET',
          path: `/containers/${id}/logs`,
          query: { stdout: true, stderr: true, tail: LOG_TAIL_LINES },
          ok: [200],
          signal,
        }),
      );
      // docker-modem hands back parsed JSON when the output happens to be JSON (TTY only).
      const raw = Buffer.isBuffer(logs) ? logs : Buffer.from(JSON.stringify(logs));
      const outputTail = utf8Tail(demuxDockerLog(raw), host.outputTailBytes);
      host.log.info({ container: o.name, exitCode, timedOut, seconds: +((performance.now() - started) / 1000).toFixed(2) }, 'one-off container finished');
      return { exitCode, outputTail, timedOut };
    } finally {
      await this.step('remove', (signal) =>
        host.dial({ method: 'DELETE', path: `/containers/${id}`, query: { force: true, v: true }, ok: [204, 404], signal }),
      ).catch((e: unknown) => host.log.warn({ container: o.name, err: (e as Error).message }, 'could not remove one-off container'));
    }
  }

  /** Waits for the exit within what is left of `o.timeoutMs`; past it, SIGKILLs and waits again. */
  private async waitForExit(id: string, started: number): Promise<{ exitCode: number; timedOut: boolean }> {
    const { host, o } = this;
    try {
      const remaining = Math.max(1, o.timeoutMs - (performance.now() - started));
      const res = await boundedCall(host.name, `run once ${o.name}`, remaining, (signal) => this.wait(id, signal));
      return { exitCode: res.StatusCode, timedOut: false };
    } catch (e) {
      if (!(e instanceof HostError && e.code === HOST_ERROR_CODES.timeout)) throw e;
      host.log.warn({ container: o.name, timeoutMs: o.timeoutMs }, 'one-off container timed out; killing it');
      await this.step('kill', async (signal) => {
        try {
          await host.dial({ method: 'POST', path: `/containers/${id}/kill`, query: { signal: 'SIGKILL' }, ok: [204], signal });
        } catch (err) {
          if (dockerStatus(err) !== 409) throw err; // 409: not running any more
        }
      });
      const after = await this.step('wait after kill', (signal) => this.wait(id, signal));
      return { exitCode: after.StatusCode, timedOut: true };
    }
  }

  private wait(id: string, signal: AbortSignal): Promise<{ StatusCode: number }> {
    return this.host.dial<{ StatusCode: number }>({ method: 'POST', path: `/containers/${id}/wait`, query: { condition: 'not-running' }, ok: [200], signal });
  }
}
