import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { SqlDatabase, SqlStatement } from '../store/sql.js';
import { NotLeaderError, type Fence } from './fence.js';

/** Who reconciles, as this daemon knows it. */
export interface LeaderView {
  /** The daemon that holds the lease (null: nobody yet, or not known). */
  holder: string | null;
  epoch: number | null;
  /** This daemon leads. */
  self: boolean;
}

/**
 * Whether this daemon reconciles. Exactly one daemon per database does: with SQLite the file
 * lock makes this one the only one (SoleLeader); with PostgreSQL a lease decides (PostgresLease).
 * `change` events say when this daemon starts (true) or stops (false) leading.
 */
export interface Leadership {
  readonly daemonId: string;
  isLeading(): boolean;
  view(): LeaderView;
  /** The fence of this daemon's current term (null while it does not lead). */
  fence(): Fence | null;
  on(event: 'change', listener: (leading: boolean) => void): this;
  start(): void;
  stop(): void;
}

export function newDaemonId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(3).toString('hex')}`;
}

/** SQLite: one daemon per database file, so it always leads; nothing to fence. */
export class SoleLeader extends EventEmitter implements Leadership {
  readonly daemonId = newDaemonId();
  private leading = false;

  isLeading(): boolean {
    return this.leading;
  }

  view(): LeaderView {
    return { holder: this.daemonId, epoch: null, self: this.leading };
  }

  fence(): Fence | null {
    return null;
  }

  start(): void {
    this.leading = true;
    this.emit('change', true);
  }

  stop(): void {
    if (!this.leading) return;
    this.leading = false;
    this.emit('change', false);
  }
}

const LEASE = 'controller';

export interface PostgresLeaseOptions {
  sql: SqlDatabase;
  leaseMs: number;
  log: Logger;
  daemonId?: string;
}

interface LeaseRow {
  holder: string;
  epoch: number;
  live: boolean;
}

/**
 * Leadership by a lease row in PostgreSQL (table `leases`), on the database's clock. Every
 * sixth of the lease the daemon renews its lease or, when it has run out, takes it with the
 * next epoch. It leads until its renewal is overdue by its own monotonic clock: `validUntil`
 * counts from before the renewal was sent, so it ends before the database's expiry, which
 * counts from when the statement ran. A daemon stopped (SIGSTOP) or cut off therefore
 * stops acting before any other can take over, and its writes, fenced by epoch, are
 * refused once another has (docs/design.md, "Several daemons").
 */
export class PostgresLease extends EventEmitter implements Leadership {
  readonly daemonId: string;
  private epoch: number | null = null;
  private validUntil = 0;
  private known: LeaderView = { holder: null, epoch: null, self: false };
  private currentFence: Fence | null = null;
  private timer: NodeJS.Timeout | null = null;
  private expiry: NodeJS.Timeout | null = null;
  /** The database stopped answering the lease's renewals: said once, until it answers again. */
  private unreachable = false;
  private readonly read: SqlStatement;
  private readonly take: SqlStatement;
  private readonly renew: SqlStatement;
  private readonly epochNow: SqlStatement;
  private readonly release: SqlStatement;

  constructor(private readonly o: PostgresLeaseOptions) {
    super();
    this.daemonId = o.daemonId ?? newDaemonId();
    const seconds = `(? * interval '1 millisecond')`;
    this.read = o.sql.prepare(`SELECT holder, epoch, expires_at > clock_timestamp() AS live FROM leases WHERE name = '${LEASE}'`);
    this.take = o.sql.prepare(
      `INSERT INTO leases (name, holder, epoch, expires_at, renewed_at) VALUES ('${LEASE}', ?, ?, clock_timestamp() + ${seconds}, clock_timestamp())
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_at = excluded.expires_at, renewed_at = excluded.renewed_at`,
    );
    this.renew = o.sql.prepare(`UPDATE leases SET expires_at = clock_timestamp() + ${seconds}, renewed_at = clock_timestamp() WHERE name = '${LEASE}' AND holder = ? AND epoch = ?`);
    this.epochNow = o.sql.prepare(`SELECT epoch FROM leases WHERE name = '${LEASE}'`).pluck();
    this.release = o.sql.prepare(`UPDATE leases SET expires_at = clock_timestamp() WHERE name = '${LEASE}' AND holder = ? AND epoch = ?`);
  }

  isLeading(): boolean {
    return this.epoch !== null && performance.now() < this.validUntil;
  }

  view(): LeaderView {
    return { ...this.known, self: this.isLeading() };
  }

  fence(): Fence | null {
    return this.isLeading() ? this.currentFence : null;
  }

  start(): void {
    if (this.timer) return;
    this.tick();
    // A sixth of the lease: the leader renews with time to spare, a standby takes a lapsed lease promptly.
    this.timer = setInterval(() => this.tick(), Math.max(100, Math.floor(this.o.leaseMs / 6)));
  }

  /**
   * Stops renewing and steps down, ending its lease in the database so that another daemon
   * takes over at its next attempt instead of after the lease (a daemon shutting down
   * calls this once its work has stopped). A lease it cannot end runs out as after a crash.
   */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.epoch !== null) {
      try {
        this.release.run(this.daemonId, this.epoch);
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message, daemon: this.daemonId }, 'leader lease not handed over; another daemon takes it when it runs out');
      }
    }
    this.stepDown('stopping');
  }

  /** One renewal or attempt to take the lease. */
  tick(): void {
    const sent = performance.now();
    let row: LeaseRow;
    try {
      row = this.o.sql.writeTransaction(() => {
        const current = this.read.get() as LeaseRow | undefined;
        if (current?.holder === this.daemonId && current.epoch === this.epoch) {
          this.renew.run(this.o.leaseMs, this.daemonId, this.epoch);
          return { ...current, live: true };
        }
        if (current?.live) return current;
        const epoch = (current?.epoch ?? 0) + 1;
        this.take.run(this.daemonId, epoch, this.o.leaseMs);
        return { holder: this.daemonId, epoch, live: true };
      }, 'durable');
    } catch (err) {
      // Not renewed: this daemon leads until validUntil, then the expiry timer steps it down.
      if (!this.unreachable) this.o.log.warn({ err: (err as Error).message, daemon: this.daemonId }, 'leader lease: cannot reach the database');
      this.unreachable = true;
      return;
    }
    if (this.unreachable) this.o.log.info({ daemon: this.daemonId }, 'leader lease: the database answers again');
    this.unreachable = false;
    this.known = { holder: row.holder, epoch: row.epoch, self: row.holder === this.daemonId };
    if (row.holder !== this.daemonId) {
      this.stepDown(`daemon ${row.holder} leads (epoch ${row.epoch})`);
      return;
    }
    // Margin: a tenth of the lease for the clocks' rates and the time the renewal took to run.
    this.validUntil = sent + this.o.leaseMs * 0.9;
    this.armExpiry();
    if (this.epoch !== row.epoch) {
      this.epoch = row.epoch;
      this.currentFence = this.fenceFor(row.epoch);
      this.o.log.info({ daemon: this.daemonId, epoch: row.epoch }, 'leader lease taken: this daemon reconciles');
      this.emit('change', true);
    }
  }

  private armExpiry(): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = setTimeout(() => {
      if (!this.isLeading()) this.stepDown('the lease was not renewed in time');
    }, Math.max(0, this.validUntil - performance.now()) + 1);
  }

  private stepDown(why: string): void {
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = null;
    if (this.epoch === null) return;
    this.o.log.warn({ daemon: this.daemonId, epoch: this.epoch, why }, 'leader lease lost: this daemon stops reconciling');
    this.epoch = null;
    this.validUntil = 0;
    this.currentFence = null;
    this.emit('change', false);
  }

  private fenceFor(epoch: number): Fence {
    return {
      beforeRemote: () => {
        if (this.epoch !== epoch || performance.now() >= this.validUntil) {
          throw new NotLeaderError(`daemon ${this.daemonId} no longer holds the leader lease (epoch ${epoch})`);
        }
      },
      beforeWrite: () => {
        const now = this.epochNow.get() as number | undefined;
        if (now !== epoch) throw new NotLeaderError(`daemon ${this.daemonId}'s leader epoch ${epoch} was superseded by epoch ${String(now)}`);
      },
    };
  }
}
