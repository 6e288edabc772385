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

/** One frame of a multiplexed log: which stream the bytes were written to, and the bytes. */
export interface LogFrame {
  stream: 'stdout' | 'stderr';
  payload: Buffer;
}

/**
 * Docker's multiplexed log format (a container without a TTY), read incrementally: 8-byte
 * headers [stream, 0, 0, 0, len BE32] + payload, split anywhere across the chunks the
 * socket hands over. Output that does not start with a header (a TTY container) is raw
 * stdout, and so is the rest once a header is not one (as `docker logs` would show it).
 */
export class DockerLogDemuxer {
  private pending: Buffer = Buffer.alloc(0);
  private raw = false;

  /** The frames (or raw bytes) `chunk` completes; a frame cut by the chunk's end waits for the next. */
  push(chunk: Buffer): LogFrame[] {
    if (this.raw) return chunk.length > 0 ? [{ stream: 'stdout', payload: chunk }] : [];
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: LogFrame[] = [];
    while (buf.length > 0) {
      if (!startsLikeHeader(buf)) {
        this.raw = true;
        frames.push({ stream: 'stdout', payload: buf });
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length < LOG_FRAME_HEADER_BYTES) break;
      const end = LOG_FRAME_HEADER_BYTES + buf.readUInt32BE(4);
      if (buf.length < end) break;
      // 0 is stdin, which only an attached TTY echoes: shown as stdout.
      frames.push({ stream: buf[0] === 2 ? 'stderr' : 'stdout', payload: buf.subarray(LOG_FRAME_HEADER_BYTES, end) });
      buf = buf.subarray(end);
    }
    this.pending = buf;
    return frames;
  }

  /** What is left at the end of the stream: a frame cut short (its bytes as they came), if any. */
  end(): LogFrame[] {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    if (rest.length === 0) return [];
    if (this.raw || !startsLikeHeader(rest)) return [{ stream: 'stdout', payload: rest }];
    // A header cut short carries nothing; a frame cut short, the bytes that came.
    if (rest.length < LOG_FRAME_HEADER_BYTES) return [];
    return [{ stream: rest[0] === 2 ? 'stderr' : 'stdout', payload: rest.subarray(LOG_FRAME_HEADER_BYTES) }];
  }
}

/** Whether `buf` starts as a frame header does (as far as it goes): a stream byte 0-2, then zeros. */
function startsLikeHeader(buf: Buffer): boolean {
  const type = buf[0];
  if (!(type === 0 || type === 1 || type === 2)) return false;
  for (let i = 1; i < Math.min(4, buf.length); i++) if (buf[i] !== 0) return false;
  return true;
}

/** A whole multiplexed log (a one-off run's output) as one buffer, stdout and stderr in the order written. */
export function demuxDockerLog(buf: Buffer): Buffer {
  const d = new DockerLogDemuxer();
  return Buffer.concat([...d.push(buf), ...d.end()].map((f) => f.payload));
}

/** The last `max` bytes, decoded without a broken leading UTF-8 sequence. */
export function utf8Tail(buf: Buffer, max: number): string {
  let start = Math.max(0, buf.length - max);
  while (start < buf.length && start > 0 && ((buf[start] ?? 0) & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}
