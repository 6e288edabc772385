/**
 * Bytes to and from the Docker API: one raw request through docker-modem (`dial`), streams
 * of newline-delimited JSON (events, pull progress), and Docker's multiplexed log format.
 * No host, deadline or error mapping here: the driver's bounded calls wrap these.
 */
import type { Readable } from 'node:stream';
import type DockerModem from 'docker-modem';
import { HostError } from '../../domain/errors.js';

/**
 * Statuses docker-modem must hand back as an error carrying the daemon's JSON answer (when a
 * call does not list them in `ok`): the ones dockerd answers with; the callers branch on them.
 */
const DOCKER_ERROR_STATUSES = [304, 400, 401, 403, 404, 409, 500, 503] as const;

/** Size of the header before each frame of a multiplexed log: [stream, 0, 0, 0, length as BE32]. */
const LOG_FRAME_HEADER_BYTES = 8;

export interface DialArgs {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  query?: Record<string, unknown>;
  body?: unknown;
  /** A raw request body (a tar archive for PUT .../archive). */
  file?: Buffer;
  ok: number[];
  stream?: boolean;
  signal: AbortSignal;
  /** Registry credentials, sent as the X-Registry-Auth header (a pull): never in the URL. */
  authconfig?: { username: string; password: string; serveraddress: string };
}

/** A raw API call. Query and body are kept apart (dockerode would also put the body in the URL). */
export function dial<T>(modem: DockerModem, a: DialArgs): Promise<T> {
  const statusCodes: DockerModem.StatusCodes = {};
  for (const c of a.ok) statusCodes[c] = true;
  for (const c of DOCKER_ERROR_STATUSES) if (!(c in statusCodes)) statusCodes[c] = `HTTP ${c}`;
  return new Promise<T>((resolve, reject) => {
    modem.dial(
      {
        method: a.method,
        path: `${a.path}?`,
        options: { _query: a.query ?? {}, _body: a.body ?? {} },
        ...(a.file ? { file: a.file, headers: { 'Content-Type': 'application/x-tar' } } : {}),
        ...(a.authconfig ? { authconfig: a.authconfig } : {}),
        statusCodes,
        isStream: a.stream === true,
        abortSignal: a.signal,
      },
      (err, data) => (err ? reject(err) : resolve(data as T)),
    );
  });
}

/**
 * Splits a stream of newline-delimited JSON (events, pull progress). A line that is not
 * JSON is skipped; a HostError thrown by `onObject` ends the stream and rejects.
 */
export function jsonLines(stream: Readable, onObject: (o: Record<string, unknown>) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buf = '';
    let ended = false;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line === '') continue;
        try {
          onObject(JSON.parse(line) as Record<string, unknown>);
        } catch (e) {
          if (e instanceof HostError) {
            stream.destroy();
            reject(e);
            return;
          }
          /* a line that is not JSON: skip */
        }
      }
    });
    stream.on('end', () => {
      ended = true;
      const line = buf.trim();
      if (line !== '') {
        try {
          onObject(JSON.parse(line) as Record<string, unknown>);
        } catch (e) {
          if (e instanceof HostError) {
            reject(e);
            return;
          }
        }
      }
      resolve();
    });
    stream.on('error', reject);
    stream.on('close', () => {
      if (!ended) reject(new Error('stream closed before its end'));
    });
  });
}

/** Docker's multiplexed log format: 8-byte headers [stream, 0, 0, 0, len BE32] + payload. */
export function demuxDockerLog(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (off + LOG_FRAME_HEADER_BYTES <= buf.length) {
    const type = buf[off];
    if (!(type === 0 || type === 1 || type === 2) || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) {
      // Not framed (a TTY container): raw bytes.
      return off === 0 ? buf : Buffer.concat([...parts, buf.subarray(off)]);
    }
    const len = buf.readUInt32BE(off + 4);
    const payload = off + LOG_FRAME_HEADER_BYTES;
    parts.push(buf.subarray(payload, Math.min(buf.length, payload + len)));
    off = payload + len;
  }
  return Buffer.concat(parts);
}

/** The last `max` bytes, decoded without a broken leading UTF-8 sequence. */
export function utf8Tail(buf: Buffer, max: number): string {
  let start = Math.max(0, buf.length - max);
  while (start < buf.length && start > 0 && ((buf[start] ?? 0) & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}
