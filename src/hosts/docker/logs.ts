/**
 * A container's log as lines (HostDriver.containerLogs): the bytes of GET
 * /containers/{id}/logs?timestamps=1, demultiplexed (./framing.ts) and split into lines
 * per stream, each with Docker's timestamp. Reading is pulled by the caller, so a slow
 * reader leaves the bytes on the host instead of in berth's memory.
 */
import type { Readable } from 'node:stream';
import { MAX_LOG_LINE_BYTES, type LogLine, type LogOptions, type LogStream } from '../host-driver.js';
import { toHostError } from '../host-errors.js';
import { DockerLogDemuxer } from './framing.js';

/** Docker's timestamp before each line (RFC 3339, nanoseconds, UTC) and the space after it. */
const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) /;
/**
 * Room for that timestamp (36 bytes at most) on top of a line's own bytes: what is dropped
 * past it always leaves more than MAX_LOG_LINE_BYTES to cut, so the cut is marked.
 */
const TIMESTAMP_ROOM_BYTES = 40;
/** What a line cut at MAX_LOG_LINE_BYTES ends in. */
const CUT_MARK = '…';

/** The query of GET /containers/{id}/logs for `opts`: both streams, with Docker's timestamps. */
export function logsQuery(opts: LogOptions): Record<string, string | number | boolean> {
  return {
    stdout: true,
    stderr: true,
    timestamps: true,
    follow: opts.follow,
    tail: opts.tail,
    // Docker takes seconds with a fraction.
    ...(opts.sinceMs !== undefined ? { since: (opts.sinceMs / 1000).toFixed(3) } : {}),
  };
}

/** Bytes of one stream until its next newline; what passes MAX_LOG_LINE_BYTES (and its timestamp) is dropped, not held. */
class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly stream: LogLine['stream']) {}

  /** The lines `payload` completes. */
  push(payload: Buffer): LogLine[] {
    const lines: LogLine[] = [];
    let from = 0;
    for (let nl = payload.indexOf(0x0a, from); nl !== -1; nl = payload.indexOf(0x0a, from)) {
      this.add(payload.subarray(from, nl));
      lines.push(this.take());
      from = nl + 1;
    }
    this.add(payload.subarray(from));
    return lines;
  }

  /** A last line without its newline, at the end of the stream. */
  end(): LogLine[] {
    return this.size > 0 ? [this.take()] : [];
  }

  private add(bytes: Buffer): void {
    const kept = bytes.subarray(0, Math.max(0, MAX_LOG_LINE_BYTES + TIMESTAMP_ROOM_BYTES - this.size));
    if (kept.length === 0) return;
    this.parts.push(kept);
    this.size += kept.length;
  }

  private take(): LogLine {
    let raw = Buffer.concat(this.parts, this.size).toString('utf8');
    this.parts = [];
    this.size = 0;
    const m = TIMESTAMP.exec(raw);
    if (m) raw = raw.slice(m[0].length);
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    if (Buffer.byteLength(raw) > MAX_LOG_LINE_BYTES) {
      // Cut at a character boundary (a sequence the cut splits decodes as U+FFFD, dropped).
      raw = Buffer.from(raw).subarray(0, MAX_LOG_LINE_BYTES).toString('utf8').replace(/\uFFFD$/, '') + CUT_MARK;
    }
    return { stream: this.stream, time: m ? m[1]! : null, text: raw };
  }
}

/**
 * The lines of a logs response body `res`. Errors while reading become HostErrors naming
 * `what`; `close` (or a caller that stops iterating) destroys the response, which closes
 * its connection (an SSH channel).
 */
export function logLines(res: Readable, host: string, what: string): LogStream {
  let closed = false;
  async function* lines(): AsyncGenerator<LogLine> {
    const demux = new DockerLogDemuxer();
    const split = { stdout: new LineSplitter('stdout'), stderr: new LineSplitter('stderr') };
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        for (const f of demux.push(chunk)) yield* split[f.stream].push(f.payload);
      }
      for (const f of demux.end()) yield* split[f.stream].push(f.payload);
      yield* split.stdout.end();
      yield* split.stderr.end();
    } catch (e) {
      if (closed) return;
      throw toHostError(e, host, what);
    } finally {
      res.destroy();
    }
  }
  const it = lines();
  return {
    [Symbol.asyncIterator]: () => it,
    close: () => {
      closed = true;
      res.destroy();
    },
  };
}
