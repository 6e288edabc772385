/** What the daemon's thread and the PostgreSQL thread say to each other (bridge.ts, worker.ts). */
export interface WorkerData {
  url: string;
  /** The other end of the daemon's MessageChannel. */
  port: unknown;
  /** A SharedArrayBuffer of one Int32: set to 1 and notified when an answer is posted. */
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
}

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
