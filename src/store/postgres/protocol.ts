/** What the daemon's thread and the PostgreSQL thread say to each other (bridge.ts, worker.ts). */
export interface WorkerData {
  url: string;
  /** The other end of the daemon's MessageChannel: requests it waits for (ANSWERED is set with each answer). */
  port: unknown;
  /** The other end of a second MessageChannel: the answers to `awaited` requests (no flag set). */
  awaitedAnswers: unknown;
  /**
   * A SharedArrayBuffer of two Int32s: [ANSWERED] set to 1 and notified when an answer is
   * posted; [HEALTHY] 1 while the thread has a connection that answers, 0 while it reconnects.
   */
  flag: SharedArrayBuffer;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  applicationName: string;
}

export interface BridgeRequest {
  id: number;
  text: string;
  values?: unknown[];
  /** A prepared statement's name: parsed once per connection. */
  name?: string;
  rowMode?: 'array';
  /** The text opens a transaction (the connection's loss inside it must fail the rest of it). */
  begin?: boolean;
  close?: boolean;
  /** Drop the connection (the daemon timed out on it) and reconnect in the background; with `awaited`, the reads' connection. */
  reset?: boolean;
  /**
   * A read the daemon awaits rather than wait on the flag: it runs on a connection of its own,
   * outside any transaction, and its answer comes on the second port.
   */
  awaited?: boolean;
}

export const ANSWERED = 0;
export const HEALTHY = 1;

export interface BridgeReply {
  id: number;
  rows?: unknown[];
  rowCount?: number;
  error?: { message: string; code?: string };
}

/**
 * A failure of the connection, not of the statement: no code, a Node socket error's code
 * (ECONNREFUSED, ECONNRESET, ...: not a 5-character SQLSTATE), the bridge's own
 * (CONNECTION_LOST, WORKER_FAILED), or SQLSTATE class 08 (connection exception) or 57P
 * (the server shutting down or starting).
 */
export function isConnectionFailure(code: string | undefined): boolean {
  return !code || !/^[0-9A-Z]{5}$/.test(code) || /^(08|57P)/.test(code);
}
