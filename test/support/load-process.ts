/**
 * The load checker (load.ts) in a child process of its own. A test that blocks its own
 * event loop (spawnSync of `testbed dockerd-restart` holds it for seconds) stops any
 * load running in the same process: no request goes out while the fault happens, and
 * the check sees nothing of it. In a child process the clients keep going.
 *
 *   const traffic = await startLoadProcess({ targets: [...] });
 *   testbedCommand('dockerd-restart', 'h2');   // blocks this process, not the load
 *   const report = await traffic.stop();
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { LoadOptions, LoadReport } from './load.js';

export interface LoadProcess {
  /** Stops every client after its request in flight; the child's totals. */
  stop(): Promise<LoadReport>;
}

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts the load in a child process; resolves once its clients run. */
export function startLoadProcess(o: LoadOptions): Promise<LoadProcess> {
  const child = fork(new URL('./load-child.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => children.delete(child));
  const message = <T>(what: string) =>
    new Promise<T>((resolve, reject) => {
      const early = () => reject(new Error(`the load process exited before it sent ${what}`));
      child.once('exit', early);
      child.once('message', (m) => {
        child.off('exit', early);
        resolve(m as T);
      });
    });
  const started = message<'started'>('its start');
  child.send(o);
  return started.then(() => ({
    async stop() {
      const report = message<LoadReport>('its report');
      child.send('stop');
      const r = await report;
      await exited;
      return r;
    },
  }));
}
