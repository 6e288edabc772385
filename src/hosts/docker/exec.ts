/**
 * A command inside a running container (Docker exec): create the exec, start it attached
 * and read its multiplexed output to the end (the command's exit), then ask its exit code.
 * A process without a proxy is health-checked this way (healthcheck.cmd). Docker cannot
 * kill an exec: one still running at the caller's deadline runs on in the container.
 */
import type { Readable } from 'node:stream';
import type { ExecResult } from '../host-driver.js';
import { demuxDockerLog, utf8Tail, type DialArgs } from './framing.js';

export async function execIn(
  dial: <T>(a: DialArgs) => Promise<T>,
  id: string,
  cmd: string[],
  outputTailBytes: number,
  signal: AbortSignal,
): Promise<ExecResult> {
  const created = await dial<{ Id: string }>({
    method: 'POST',
    path: `/containers/${encodeURIComponent(id)}/exec`,
    body: { Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: false },
    ok: [201],
    signal,
  });
  const out = await dial<Readable>({ method: 'POST', path: `/exec/${created.Id}/start`, body: { Detach: false, Tty: false }, ok: [200], stream: true, signal });
  const chunks: Buffer[] = [];
  for await (const chunk of out) chunks.push(chunk as Buffer);
  const done = await dial<{ ExitCode: number | null; Running: boolean }>({ method: 'GET', path: `/exec/${created.Id}/json`, ok: [200], signal });
  return { exitCode: done.ExitCode ?? -1, outputTail: utf8Tail(demuxDockerLog(Buffer.concat(chunks)), outputTailBytes) };
}
