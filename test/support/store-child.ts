/**
 * Child processes that open the store themselves (test/unit/store.test.ts and the store
 * contract, test/support/store-contract.ts): several writers, a daemon killed mid-write.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STORE_MODULE = new URL('../../src/store/index.ts', import.meta.url).href;

/**
 * Runs `code` (an ES module body, with `store` = the imported src/store module
 * and `env` = process.env) in a fresh `node --import tsx` process.
 */
export function child(code: string, env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT; // the child is not a test-runner subprocess
  const body = `const store = await import(${JSON.stringify(STORE_MODULE)}); const env = process.env;\n${code}`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', body], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function collect(cp: ChildProcessWithoutNullStreams): Promise<Exit> {
  let stdout = '';
  let stderr = '';
  cp.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  cp.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    cp.on('error', reject);
    cp.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Resolves with the first stdout line matching `re` (rejects if the child exits first). */
export function waitForLine(cp: ChildProcessWithoutNullStreams, re: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}; stderr: ${err}`)), timeoutMs);
    cp.stderr.on('data', (d: Buffer) => (err += d.toString()));
    cp.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (re.test(line)) {
          clearTimeout(timer);
          resolve(line);
        }
      }
    });
    cp.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code}) before printing ${re}; stderr: ${err}`));
    });
  });
}

export async function killHard(cp: ChildProcessWithoutNullStreams): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = once(cp, 'exit');
  cp.kill('SIGKILL');
  await exited;
}
