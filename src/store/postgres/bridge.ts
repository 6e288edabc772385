import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { StoreError } from '../../domain/errors.js';
import { ANSWERED, HEALTHY, isConnectionFailure, type BridgeReply, type BridgeRequest, type WorkerData } from './protocol.js';

export interface BridgeOptions {
  /** Connecting, ms. */
  connectTimeoutMs: number;
  /** Any one statement, ms (server-side statement, lock and idle-in-transaction timeouts). */
  statementTimeoutMs: number;
  applicationName: string;
}

/** A statement's failure as PostgreSQL reported it (SQLSTATE `code`). */
export class PostgresQueryError extends Error {
  constructor(
    message: string,
    readonly sqlState: string | undefined,
  ) {
    super(message);
    this.name = 'PostgresQueryError';
  }
}

export interface QueryResult {
  rows: unknown[];
  rowCount: number;
}

/**
 * PostgreSQL, synchronously: the `pg` client runs on a worker thread (worker.ts) and this
 * thread blocks on a shared flag until it answers, as better-sqlite3 blocks on its file.
 * That keeps the store's contract (every call synchronous, a transaction never spans an
 * await) on both engines; the cost is that a slow database stalls the daemon's event loop
 * for as long as a statement takes, which `statementTimeoutMs` bounds (docs/design.md).
 */
export class PostgresBridge {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly awaitedAnswers: MessagePort;
  private readonly flag: Int32Array;
  /** queryAsync's requests waiting for their answers, by id. */
  private readonly awaited = new Map<number, { settle: (reply: BridgeReply) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  private closed = false;

  private constructor(url: string, private readonly opts: BridgeOptions) {
    const sync = new MessageChannel();
    const answers = new MessageChannel();
    const flag = new SharedArrayBuffer(8);
    const data: WorkerData = { url, port: sync.port2, awaitedAnswers: answers.port2, flag, ...opts };
    this.worker = startWorker(data, [sync.port2, answers.port2]);
    // The thread must not keep a daemon that is done alive; close() ends it too.
    this.worker.unref();
    this.port = sync.port1;
    this.awaitedAnswers = answers.port1;
    this.awaitedAnswers.on('message', (reply: BridgeReply) => this.awaited.get(reply.id)?.settle(reply));
    // Only a read awaited keeps the process alive (as a socket with a request in flight would).
    this.awaitedAnswers.unref();
    this.flag = new Int32Array(flag);
    Atomics.store(this.flag, HEALTHY, 1);
  }

  /** Starts the thread and checks the database answers (StoreError DB_OPEN_FAILED). */
  static open(url: string, opts: BridgeOptions): PostgresBridge {
    const bridge = new PostgresBridge(url, opts);
    try {
      bridge.query('SELECT 1', undefined, { timeoutMs: opts.connectTimeoutMs + opts.statementTimeoutMs });
    } catch (err) {
      bridge.close();
      throw new StoreError('DB_OPEN_FAILED', `cannot open PostgreSQL ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
    }
    return bridge;
  }

  /**
   * One statement (or several without parameters), answered synchronously. Throws
   * PostgresQueryError for what PostgreSQL refused, StoreError DB_UNAVAILABLE when it did
   * not answer in time or the connection failed.
   */
  query(text: string, values?: unknown[], extra: Partial<Pick<BridgeRequest, 'name' | 'rowMode' | 'begin'>> & { timeoutMs?: number } = {}): QueryResult {
    const refused = this.refusal(text);
    if (refused) throw refused;
    const id = this.nextId++;
    const { timeoutMs, ...rest } = extra;
    const request: BridgeRequest = { id, text, ...(values ? { values } : {}), ...rest };
    return answer(this.exchange(request, timeoutMs ?? this.opts.statementTimeoutMs + 1_000));
  }

  /**
   * One read outside any transaction, answered asynchronously: this thread runs on while
   * PostgreSQL works (a resync's bulk reads, which held the event loop 20-30 ms each). It
   * runs on a connection of its own (worker.ts), in order with the other awaited reads: on
   * the daemon's, every statement sent after it waited for it, and the loop with them. It
   * sees what was committed when it runs. Rejects as `query` throws.
   */
  queryAsync(text: string, values?: unknown[], extra: Partial<Pick<BridgeRequest, 'name' | 'rowMode'>> = {}): Promise<QueryResult> {
    const refused = this.refusal(text);
    if (refused) return Promise.reject(refused);
    const id = this.nextId++;
    const timeoutMs = this.opts.statementTimeoutMs + 1_000;
    return new Promise<BridgeReply>((resolve) => {
      const settle = (reply: BridgeReply) => {
        clearTimeout(timer);
        this.awaited.delete(id);
        if (this.awaited.size === 0) this.awaitedAnswers.unref();
        resolve(reply);
      };
      const timer = setTimeout(() => {
        // As `query` does when it gives up: the reads' connection is dropped, and the next read opens one.
        if (!this.closed) this.port.postMessage({ id: 0, text: '', reset: true, awaited: true } satisfies BridgeRequest);
        settle({ id, error: { message: `PostgreSQL did not answer within ${timeoutMs} ms`, code: 'TIMEOUT' } });
      }, timeoutMs);
      this.awaited.set(id, { settle, timer });
      this.awaitedAnswers.ref();
      this.port.postMessage({ id, text, ...(values ? { values } : {}), ...extra, awaited: true } satisfies BridgeRequest);
    }).then(answer);
  }

  /**
   * Why a statement is not sent at all. Lost: fail at once while the thread reconnects, rather
   * than stall the event loop on every call. A ROLLBACK still goes (the thread answers it without
   * the server): the thread must learn that the transaction whose connection it lost is over, or
   * it refuses every later statement as part of it, pings included, until the next write begins.
   */
  private refusal(text: string): StoreError | null {
    if (this.closed) return new StoreError('DB_UNAVAILABLE', 'the PostgreSQL store is closed');
    if (Atomics.load(this.flag, HEALTHY) === 0 && text !== 'ROLLBACK') return new StoreError('DB_UNAVAILABLE', 'PostgreSQL does not answer; reconnecting');
    return null;
  }

  private exchange(request: BridgeRequest, timeoutMs: number): BridgeReply {
    this.port.postMessage(request);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // Reset before looking, so an answer posted after the look still wakes the wait.
      Atomics.store(this.flag, ANSWERED, 0);
      const message = receiveMessageOnPort(this.port);
      if (message) {
        const reply = message.message as BridgeReply;
        if (reply.id === request.id || reply.id === 0) return reply;
        continue; // the late answer of a request that timed out
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        if (!request.close) this.port.postMessage({ id: 0, text: '', reset: true } satisfies BridgeRequest);
        throw new StoreError('DB_UNAVAILABLE', `PostgreSQL did not answer within ${timeoutMs} ms`);
      }
      Atomics.wait(this.flag, ANSWERED, 0, left);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.exchange({ id: this.nextId++, text: '', close: true }, 2_000);
    } catch {
      // (A database that does not answer: the thread is ended below regardless.)
    }
    for (const { settle } of this.awaited.values()) settle({ id: 0, error: { message: 'the PostgreSQL store is closed', code: 'CLOSED' } });
    this.port.close();
    this.awaitedAnswers.close();
    void this.worker.terminate();
  }
}

/** A reply's rows, or the error it carries: StoreError DB_UNAVAILABLE for the connection's failure, PostgresQueryError for the statement's. */
function answer(reply: BridgeReply): QueryResult {
  if (reply.error) {
    const code = reply.error.code;
    if (isConnectionFailure(code)) throw new StoreError('DB_UNAVAILABLE', `PostgreSQL: ${reply.error.message}`);
    throw new PostgresQueryError(reply.error.message, code);
  }
  return { rows: reply.rows ?? [], rowCount: reply.rowCount ?? 0 };
}

/**
 * The worker thread, started by a bootstrap that reports a failure to load it as an answer
 * (id 0), since this thread, blocked on the flag, would never see the worker's `error`
 * event. Built, it loads the worker.js next to this file. Under tsx (tests, benches) the
 * thread gets no TypeScript loader of its own on Node 20: the bootstrap registers tsx's
 * before it imports worker.ts.
 */
function startWorker(data: WorkerData, ports: MessagePort[]): Worker {
  const typescript = import.meta.url.endsWith('.ts');
  const worker = JSON.stringify(new URL(typescript ? './worker.ts' : './worker.js', import.meta.url).href);
  const loader = typescript ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => api.register())` : 'Promise.resolve()';
  // Only import(), never require: eval'd code is a CommonJS script or an ES module depending on
  // the process's flags (`node --input-type=module -e` makes it a module).
  const bootstrap = `
    import('node:worker_threads').then(({ workerData }) => ${loader}.then(() => import(${worker})).catch((err) => {
      workerData.port.postMessage({ id: 0, error: { message: 'the PostgreSQL thread did not start: ' + (err && err.message), code: 'WORKER_FAILED' } });
      const flag = new Int32Array(workerData.flag);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
    }));`;
  return new Worker(bootstrap, { eval: true, workerData: data, transferList: ports });
}

/** A PostgreSQL URL fit for logs and errors: the password replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}
