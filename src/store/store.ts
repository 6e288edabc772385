import type Database from 'better-sqlite3';
import { AppsRepo } from './apps.js';
import { CertificatesRepo } from './certificates.js';
import { StoreContext } from './context.js';
import { EventsRepo } from './events.js';
import { HostsStatusRepo } from './hosts-status.js';
import type { DbLock } from './lock.js';
import { schemaVersion } from './migrate.js';
import { ReleasesRepo } from './releases.js';
import { StatusRepo, type InvalidRolloutReporter } from './status.js';

export interface StoreOptions {
  /** Clock for created_at/updated_at (tests). */
  clock?: () => Date;
  /** Where an exception thrown by an event subscriber goes (default: a process warning). */
  onListenerError?: (err: unknown) => void;
  /** Where a stored rollout record that reads as absent because it is invalid is reported (default: a process warning). */
  onInvalidRollout?: InvalidRolloutReporter;
}

/**
 * The berth database: one object with a repository per concept. Every method is
 * synchronous; every write is one transaction (see StoreContext.write). Build it
 * with `openStore` (src/store/open.ts).
 */
export class Store {
  readonly apps: AppsRepo;
  readonly releases: ReleasesRepo;
  readonly status: StatusRepo;
  readonly events: EventsRepo;
  readonly hostsStatus: HostsStatusRepo;
  readonly certificates: CertificatesRepo;
  private readonly ctx: StoreContext;
  private readonly pingStmt: Database.Statement;
  private closed = false;

  constructor(
    /** The connection, for tests and diagnostics; application code goes through the repositories. */
    readonly db: Database.Database,
    readonly path: string,
    private readonly lock: DbLock | null,
    opts: StoreOptions = {},
  ) {
    this.ctx = new StoreContext(db, opts.clock ?? (() => new Date()), opts.onListenerError);
    this.events = new EventsRepo(this.ctx);
    this.apps = new AppsRepo(this.ctx, this.events);
    this.releases = new ReleasesRepo(this.ctx, this.events);
    this.status = new StatusRepo(this.ctx, this.events, opts.onInvalidRollout);
    this.hostsStatus = new HostsStatusRepo(this.ctx);
    this.certificates = new CertificatesRepo(this.ctx);
    this.pingStmt = db.prepare('SELECT 1').pluck();
  }

  /**
   * Several repository calls in ONE transaction (e.g. upsert an app and create
   * its first release). `fn` must be synchronous; events reach subscribers after
   * the commit.
   */
  transaction<T>(fn: () => T): T {
    return this.ctx.write(fn);
  }

  /** A transaction of observed state only, committed without an fsync (StoreContext.writeObserved). */
  observedTransaction<T>(fn: () => T): T {
    return this.ctx.writeObserved(fn);
  }

  get schemaVersion(): number {
    return schemaVersion(this.db);
  }

  get isOpen(): boolean {
    return !this.closed && this.db.open;
  }

  /** For /readyz: the database answers a query. */
  ping(): boolean {
    if (!this.isOpen) return false;
    try {
      return this.pingStmt.get() === 1;
    } catch {
      return false;
    }
  }

  /** Closes the database and releases the daemon lock. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.removeAllListeners();
    try {
      // Closing the last connection checkpoints the WAL into the main file and removes it.
      if (this.db.open) this.db.close();
    } finally {
      this.lock?.release();
    }
  }
}
