/**
 * The PostgreSQL connection's thread (bridge.ts starts it). It runs each query the
 * daemon's thread sends on one `pg` client and answers on the same port, then wakes the
 * daemon's thread, which waits on a shared flag (Atomics) while the query runs. Reads the
 * daemon awaits instead run on a second client and answer on a second port.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import pg from 'pg';
import { ANSWERED, HEALTHY, isConnectionFailure, type BridgeReply, type BridgeRequest, type WorkerData } from './protocol.js';

// BIGINT columns (revisions, ids, counts) come back as numbers: berth's never pass 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const data = workerData as WorkerData;
const port = data.port as MessagePort;
const awaitedAnswers = data.awaitedAnswers as MessagePort;
const flag = new Int32Array(data.flag);
const IDLE_IN_TRANSACTION_MS = 2_000;
/** How long the thread waits between attempts to reconnect. */
const RECONNECT_EVERY_MS = 500;

/** A connection lost inside a transaction: every statement fails until the daemon's ROLLBACK. */
let lostTransaction = false;
let inTransaction = false;

/** A new connection, connected; `lost` is called when it fails later. */
async function open(lost: (c: pg.Client) => void): Promise<pg.Client> {
  const c = new pg.Client({
    connectionString: data.url,
    connectionTimeoutMillis: data.connectTimeoutMs,
    keepAlive: true,
    // The daemon waits on every statement: none may hang.
    statement_timeout: data.statementTimeoutMs,
    lock_timeout: data.statementTimeoutMs,
    // berth's transactions never wait between their statements (they cannot span an await): one
    // idle for two seconds belongs to a daemon stopped (SIGSTOP) or cut off mid-transaction, and
    // it holds the write lock every other daemon's writes, lease renewals included, wait for.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    application_name: data.applicationName,
  });
  c.on('error', () => lost(c));
  try {
    await c.connect();
  } catch (err) {
    c.end().catch(() => {});
    throw err;
  }
  return c;
}

/** One connection, opened when first asked for and again once it is lost; `lost` runs when it fails. */
class LazyConnection {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;

  constructor(private readonly lost: () => void) {}

  get current(): pg.Client | null {
    return this.client;
  }

  get(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= open((c) => {
      // The next request reconnects; the one in flight gets the error from its query.
      if (this.client === c) this.lost();
    })
      .then((c) => (this.client = c))
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  /** Forgets the client and ends it. */
  drop(): void {
    const c = this.client;
    this.client = null;
    c?.end().catch(() => {});
  }
}

/** The daemon's connection: its statements, in order. */
const daemon = new LazyConnection(() => drop());

/**
 * The awaited reads' connection (BridgeRequest.awaited): a resync's bulk read (3-30 ms) on the
 * daemon's connection delayed every statement sent after it, each of which holds the event
 * loop until answered. Opened at the first such read; lost, it is opened again at the next.
 */
const reads = new LazyConnection(() => reads.drop());

/** Drops the connection; until a new one answers, the daemon's calls fail at once (HEALTHY is 0). */
function drop(): void {
  daemon.drop();
  if (inTransaction) lostTransaction = true;
  Atomics.store(flag, HEALTHY, 0);
  void reconnect();
}

let reconnecting = false;
let closing = false;

async function reconnect(): Promise<void> {
  if (reconnecting) return;
  reconnecting = true;
  try {
    while (!daemon.current && !closing) {
      try {
        await daemon.get();
      } catch {
        await new Promise((r) => setTimeout(r, RECONNECT_EVERY_MS));
      }
    }
    if (daemon.current) Atomics.store(flag, HEALTHY, 1);
  } finally {
    reconnecting = false;
  }
}

async function run(req: BridgeRequest): Promise<BridgeReply> {
  const isEnd = req.text === 'ROLLBACK' || req.text === 'COMMIT';
  // A BEGIN means the daemon gave the lost transaction up (it failed fast while the connection was down).
  if (lostTransaction && req.begin) {
    lostTransaction = false;
    inTransaction = false;
  }
  if (lostTransaction) {
    if (isEnd) {
      lostTransaction = false;
      inTransaction = false;
      if (req.text === 'ROLLBACK') return { id: req.id, rows: [], rowCount: 0 };
    }
    return { id: req.id, error: { message: 'the connection to PostgreSQL was lost inside the transaction; it was rolled back', code: 'CONNECTION_LOST' } };
  }
  // No connection, no transaction to end: a ROLLBACK after a BEGIN that could not connect does not try again.
  if (req.text === 'ROLLBACK' && !daemon.current) return { id: req.id, rows: [], rowCount: 0 };
  try {
    const c = await daemon.get();
    if (req.begin) inTransaction = true;
    const result = await query(c, req);
    if (isEnd) inTransaction = false;
    return result;
  } catch (err) {
    if (isEnd) inTransaction = false;
    return failed(req, err, drop);
  }
}

/** An awaited read, on its own connection: outside any transaction, in order with the other awaited reads. */
async function read(req: BridgeRequest): Promise<BridgeReply> {
  try {
    return await query(await reads.get(), req);
  } catch (err) {
    return failed(req, err, () => reads.drop());
  }
}

async function query(c: pg.Client, req: BridgeRequest): Promise<BridgeReply> {
  const result = await c.query({
    text: req.text,
    ...(req.values ? { values: req.values } : {}),
    ...(req.name ? { name: req.name } : {}),
    ...(req.rowMode === 'array' ? { rowMode: 'array' as const } : {}),
  });
  // A multi-statement text answers with one result per statement: the last one is the answer.
  const last = Array.isArray(result) ? (result[result.length - 1] as pg.QueryResult) : result;
  return { id: req.id, rows: last.rows as unknown[], rowCount: last.rowCount ?? 0 };
}

/** A query's failure as an answer; one because the connection failed (not because of its SQL) takes the connection with it. */
function failed(req: BridgeRequest, err: unknown, dropConnection: () => void): BridgeReply {
  const e = err as Error & { code?: string };
  if (isConnectionFailure(e.code)) dropConnection();
  return { id: req.id, error: { message: e.message, ...(e.code ? { code: e.code } : {}) } };
}

port.on('message', (req: BridgeRequest) => {
  if (req.reset) {
    // The daemon gave up waiting on this connection (a database that stopped answering).
    if (req.awaited) reads.drop();
    else drop();
    return;
  }
  if (req.close) {
    closing = true;
    void Promise.allSettled([daemon.current?.end(), reads.current?.end()]).finally(() => {
      port.postMessage({ id: req.id, rows: [], rowCount: 0 } satisfies BridgeReply);
      Atomics.store(flag, ANSWERED, 1);
      Atomics.notify(flag, ANSWERED);
      port.close();
      awaitedAnswers.close();
    });
    return;
  }
  if (req.awaited) {
    void read(req).then((reply) => awaitedAnswers.postMessage(reply));
    return;
  }
  void run(req).then((reply) => {
    port.postMessage(reply);
    Atomics.store(flag, ANSWERED, 1);
    Atomics.notify(flag, ANSWERED);
  });
});
parentPort?.postMessage('ready');
