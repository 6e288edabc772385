/**
 * One line-protocol exchange on a Unix socket on the host (HAProxy's runtime API): write
 * the command (a line, or a line and its `<<` payload), read until the server closes. Over SSH the socket is an OpenSSH
 * streamlocal channel; on the local driver a direct connection.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { HOST_ERROR_CODES, HostError } from '../domain/errors.js';
import { errnoCode } from './host-errors.js';
import type { HttpTarget } from './http-request.js';

/** Answers beyond this are cut: the runtime API's largest answer berth reads (`show stat`) is KiB per backend. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

export interface UnixCommandArgs {
  host: string;
  /** The socket, as the transport reaches it (`stream` over SSH, `unix` locally). */
  target: Extract<HttpTarget, { kind: 'stream' | 'unix' }>;
  socketPath: string;
  command: string;
  signal: AbortSignal;
  /**
   * The answer is complete once this holds for what came so far: it resolves then and
   * drops the connection instead of waiting for the server to close. Over SSH the close
   * lags ~40 ms behind the data (sshd holds the small EOF segment until the data's
   * delayed ACK): a proxy switch took 45-50 ms waiting for it, 1-2 ms without.
   */
  doneWhen?: (received: string) => boolean;
}

async function open(args: UnixCommandArgs): Promise<Duplex> {
  const { target } = args;
  if (target.kind === 'stream') {
    try {
      return await target.open();
    } catch (e) {
      if (e instanceof HostError && e.code === HOST_ERROR_CODES.channelFailed) {
        throw new HostError(HOST_ERROR_CODES.httpFailed, args.host, `socket ${args.socketPath}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  }
  return net.connect({ path: target.socketPath });
}

export async function unixCommand(args: UnixCommandArgs): Promise<string> {
  const { signal } = args;
  const stream = await open(args);
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (e: unknown) => {
      stream.destroy();
      if (signal.aborted) return reject(signal.reason);
      if (e instanceof HostError) return reject(e);
      const code = errnoCode(e);
      const msg = e instanceof Error ? e.message : String(e);
      reject(new HostError(HOST_ERROR_CODES.httpFailed, args.host, `socket ${args.socketPath}: ${msg}${code && !msg.includes(code) ? ` (${code})` : ''}`, { cause: e }));
    };
    if (signal.aborted) return fail(signal.reason);
    signal.addEventListener('abort', () => fail(signal.reason), { once: true });
    stream.on('data', (c: Buffer) => {
      if (size < MAX_ANSWER_BYTES) chunks.push(c);
      size += c.length;
      if (!args.doneWhen) return;
      const received = Buffer.concat(chunks).toString('utf8');
      if (args.doneWhen(received)) {
        stream.destroy();
        resolve(received);
      }
    });
    stream.on('error', fail);
    stream.on('end', () => {
      stream.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    // Half-close: HAProxy's master CLI answers a non-interactive command once it sees the end of input.
    stream.end(`${args.command}\n`);
  });
}
