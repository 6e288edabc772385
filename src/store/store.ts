import type Database from 'better-sqlite3';
import { AppsRepo } from './apps.js';
import { CertificatesRepo } from './certificates.js';
import { StoreContext } from './context.js';
import { EventsRepo } from './events.js';
import { HostsStatusRepo } from './hosts-status.js';
import type { DbLock } from './lock.js';
import type { BerthEvent } from '../domain/release.js';
import { PassInputsRepo } from './pass-inputs.js';
import { ReleasesRepo } from './releases.js';
import type { SqlDatabase } from './sql.js';
import { SqliteDatabase } from './sqlite.js';
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
 * The berth database: one object with a repository per concept, on SQLite or
 * PostgreSQL (sql.ts). Every method is synchronous; every write is one transaction
 * (see StoreContext.write). Build it with `openStore` (src/store/open.ts).
 */
export class Store {
  readonly apps: AppsRepo;
  readonly releases: ReleasesRepo;
  readonly status: StatusRepo;
  readonly events: EventsRepo;
  readonly hostsStatus: HostsStatusRepo;
  readonly certificates: CertificatesRepo;
  readonly passInputs: PassInputsRepo;
  private readonly ctx: StoreContext;
  private closed = false;

  constructor(
    /** The database, for the store's own machinery and tests; application code goes through the repositories. */
    readonly sql: SqlDatabase,
    /** The SQLite file, or the PostgreSQL URL without its password. */
    readonly path: string,
    private readonly lock: DbLock | null,
    opts: StoreOptions = {},
  ) {
    this.ctx = new StoreContext(sql, opts.clock ?? (() => new Date()), opts.onListenerError);
    this.events = new EventsRepo(this.ctx);
    this.apps = new AppsRepo(this.ctx, this.events);
    this.releases = new ReleasesRepo(this.ctx, this.events);
    this.status = new StatusRepo(this.ctx, this.events, opts.onInvalidRollout);
    this.hostsStatus = new HostsStatusRepo(this.ctx);
    this.certificates = new CertificatesRepo(this.ctx);
    this.passInputs = new PassInputsRepo(this.ctx, this.status);
  }

  /** The SQLite connection (tests and diagnostics of a SQLite store only). */
  get db(): Database.Database {
    if (this.sql instanceof SqliteDatabase) return this.sql.raw;
    throw new TypeError(`store ${this.path} is not a SQLite database`);
  }

  get engine(): SqlDatabase['engine'] {
    return this.sql.engine;
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
    return this.sql.schemaVersion();
  }

  get isOpen(): boolean {
    return !this.closed && this.sql.isOpen;
  }

  /** For /readyz: the database answers a query. */
  ping(): boolean {
    return this.isOpen && this.sql.ping();
  }

  /** Delivers an event another daemon committed to this store's subscribers (follow.ts). */
  deliver(event: BerthEvent): void {
    this.ctx.emit(event);
  }

  /** Closes the database and releases the daemon lock. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.removeAllListeners();
    try {
      this.sql.close();
    } finally {
      this.lock?.release();
    }
  }
}
