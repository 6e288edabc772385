/**
 * What SQLite commits cost a bench: a counter of the store's durable commits, and a
 * calibration of one commit on this disk right now (WAL, synchronous=FULL).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import type { Store } from '../../src/store/index.js';

/** Counts the store's outermost write transactions, i.e. durable commits. Reaches into a private field: bench only. */
export function countCommits(store: Store): () => number {
  const ctx = (store as unknown as { ctx?: { write?: <T>(fn: () => T, ...rest: unknown[]) => T; depth?: unknown } }).ctx;
  if (!ctx || typeof ctx.write !== 'function' || typeof ctx.depth !== 'number') {
    throw new Error('bench: the store has no ctx.write/ctx.depth to count commits with (was src/store/context.ts changed?)');
  }
  let n = 0;
  const write = ctx.write.bind(ctx);
  // (Every argument passed on: the second is the commit's durability.)
  ctx.write = <T>(fn: () => T, ...rest: unknown[]): T => {
    if (ctx.depth === 0) n += 1;
    return write(fn, ...rest);
  };
  return () => n;
}

let calibrations = 0;

/** What one durable SQLite commit costs on this disk right now (WAL, synchronous=FULL, 500 small commits). */
export function calibrateDisk(dir: string): { commits: number; totalMs: number; p50Ms: number; p99Ms: number; maxMs: number } {
  const file = join(dir, `calibrate-${process.pid}-${calibrations++}.db`);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
    const insert = db.prepare('INSERT OR REPLACE INTO t VALUES (?, ?)');
    const tx = db.transaction((k: number) => insert.run(k % 50, randomBytes(300)));
    const times: number[] = [];
    const start = performance.now();
    for (let i = 0; i < 500; i += 1) {
      const s = performance.now();
      tx.immediate(i);
      times.push(performance.now() - s);
    }
    const totalMs = performance.now() - start;
    times.sort((a, b) => a - b);
    const q = (p: number) => Math.round(times[Math.min(times.length - 1, Math.ceil((p / 100) * times.length) - 1)]! * 1000) / 1000;
    return { commits: times.length, totalMs: Math.round(totalMs), p50Ms: q(50), p99Ms: q(99), maxMs: Math.round(times[times.length - 1]! * 10) / 10 };
  } finally {
    db.close();
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  }
}
