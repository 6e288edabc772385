/**
 * The PostgreSQL connection's thread (bridge.ts starts it). It runs each query the
 * daemon's thread sends on one `pg` client and answers on the same port, then wakes the
 * daemon's thread, which waits on a shared flag (Atomics) while the query runs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import pg from 'pg';
import { isConnectionFailure, type BridgeReply, type BridgeRequest, type WorkerData } from './protocol.js';

// BIGINT columns (revisions, ids, counts) come back as numbers: berth's never pass 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const data = workerData as WorkerData;
const port = data.port as MessagePort;
const flag = new Int32Array(data.flag);

let client: pg.Client | null = null;
let connecting: Promise<pg.Client> | null = null;
/** A connection lost inside a transaction: every statement fails until the daemon's ROLLBACK. */
let lostTransaction = false;
let inTransaction = false;

function connect(): Promise<pg.Client> {
  if (client) return Promise.resolve(client);
  connecting ??= (async () => {
    const c = new pg.Client({
      connectionString: data.url,
      connectionTimeoutMillis: data.connectTimeoutMs,
      keepAlive: true,
      // The daemon waits on every statement: none may hang. A daemon stopped inside a transaction
      // (SIGSTOP) must not hold the write lock for the others longer than this either.
      statement_timeout: data.statementTimeoutMs,
      lock_timeout: data.statementTimeoutMs,
      idle_in_transaction_session_timeout: data.statementTimeoutMs,
      application_name: data.applicationName,
    });
    c.on('error', () => {
      // The next request reconnects; the one in flight gets the error from its query.
      if (client === c) drop();
    });
    try {
      await c.connect();
    } catch (err) {
      c.end().catch(() => {});
      throw err;
    }
    client = c;
    return c;
  })().finally(() => {
    connecting = null;
  });
  return connecting;
}

function drop(): void {
  const c = client;
  client = null;
  if (inTransaction) lostTransaction = true;
  c?.end().catch(() => {});
}

async function run(req: BridgeRequest): Promise<BridgeReply> {
  const isEnd = req.text === 'ROLLBACK' || req.text === 'COMMIT';
  if (lostTransaction) {
    if (isEnd) {
      lostTransaction = false;
      inTransaction = false;
      if (req.text === 'ROLLBACK') return { id: req.id, rows: [], rowCount: 0 };
    }
    return { id: req.id, error: { message: 'the connection to PostgreSQL was lost inside the transaction; it was rolled back', code: 'CONNECTION_LOST' } };
  }
  // No connection, no transaction to end: a ROLLBACK after a BEGIN that could not connect does not try again.
  if (req.text === 'ROLLBACK' && !client) return { id: req.id, rows: [], rowCount: 0 };
  try {
    const c = await connect();
    if (req.begin) inTransaction = true;
    const result = await c.query({
      text: req.text,
      ...(req.values ? { values: req.values } : {}),
      ...(req.name ? { name: req.name } : {}),
      ...(req.rowMode === 'array' ? { rowMode: 'array' as const } : {}),
    });
    if (isEnd) inTransaction = false;
    // A multi-statement text answers with one result per statement: the last one is the answer.
    const last = Array.isArray(result) ? (result[result.length - 1] as pg.QueryResult) : result;
    return { id: req.id, rows: last.rows as unknown[], rowCount: last.rowCount ?? 0 };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (isEnd) inTransaction = false;
    // A query that failed because the connection did (not because of its SQL) takes the connection with it.
    if (isConnectionFailure(e.code)) drop();
    return { id: req.id, error: { message: e.message, ...(e.code ? { code: e.code } : {}) } };
  }
}

port.on('message', (req: BridgeRequest) => {
  if (req.close) {
    void (client?.end() ?? Promise.resolve()).finally(() => {
      port.postMessage({ id: req.id, rows: [], rowCount: 0 } satisfies BridgeReply);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      port.close();
    });
    return;
  }
  void run(req).then((reply) => {
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
});
parentPort?.postMessage('ready');
