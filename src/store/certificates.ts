import type { SqlDatabase } from './sql.js';
import type { StoreContext } from './context.js';

/** A certificate berth ordered over ACME for one host name (the whole fleet shares it). */
export interface StoredCertificate {
  hostName: string;
  /** PEM chain, leaf first. */
  certificate: string;
  /** PEM. Never logged, never in an API answer. */
  privateKey: string;
  serial: string;
  notAfter: string;
  issuedAt: string;
  /** acme.renew_before when it was ordered: a changed window may renew it at once (src/tls/plan.ts). */
  renewBeforeMs: number;
}

export interface AcmeAccount {
  directory: string;
  privateKey: string;
  url: string | null;
}

interface CertificateRow {
  host_name: string;
  certificate: string;
  private_key: string;
  serial: string;
  not_after: string;
  issued_at: string;
  renew_before_ms: number;
}

const toCertificate = (r: CertificateRow): StoredCertificate => ({
  hostName: r.host_name,
  certificate: r.certificate,
  privateKey: r.private_key,
  serial: r.serial,
  notAfter: r.not_after,
  issuedAt: r.issued_at,
  renewBeforeMs: r.renew_before_ms,
});

/** ACME certificates and accounts (migration 0004). Given certificates are never stored: they live in the environment. */
export class CertificatesRepo {
  private statements: ReturnType<typeof prepare> | null = null;

  constructor(private readonly ctx: StoreContext) {}

  /** Prepared on first use: a store opened on older migrations (tests of migrations) has no such tables. */
  private get q(): ReturnType<typeof prepare> {
    return (this.statements ??= prepare(this.ctx.sql));
  }

  get(hostName: string): StoredCertificate | null {
    const row = this.q.one.get(hostName) as CertificateRow | undefined;
    return row ? toCertificate(row) : null;
  }

  list(): StoredCertificate[] {
    return (this.q.all.all() as CertificateRow[]).map(toCertificate);
  }

  /** Stores a newly issued certificate; `issuedAt` is the store's clock. */
  save(cert: Omit<StoredCertificate, 'issuedAt'>): StoredCertificate {
    return this.ctx.write(() => {
      const stored = { ...cert, issuedAt: this.ctx.now() };
      this.q.upsert.run(stored);
      return stored;
    });
  }

  account(directory: string): AcmeAccount | null {
    const row = this.q.account.get(directory) as { directory: string; private_key: string; url: string | null } | undefined;
    return row ? { directory: row.directory, privateKey: row.private_key, url: row.url } : null;
  }

  saveAccount(account: AcmeAccount): void {
    this.ctx.write(() => this.q.saveAccount.run({ ...account, createdAt: this.ctx.now() }));
  }
}

function prepare(db: SqlDatabase) {
  const cols = 'host_name, certificate, private_key, serial, not_after, issued_at, renew_before_ms';
  return {
    upsert: db.prepare(
      `INSERT INTO certificates (${cols}) VALUES (@hostName, @certificate, @privateKey, @serial, @notAfter, @issuedAt, @renewBeforeMs)
       ON CONFLICT (host_name) DO UPDATE SET certificate = excluded.certificate, private_key = excluded.private_key,
         serial = excluded.serial, not_after = excluded.not_after, issued_at = excluded.issued_at, renew_before_ms = excluded.renew_before_ms`,
    ),
    one: db.prepare(`SELECT ${cols} FROM certificates WHERE host_name = ?`),
    all: db.prepare(`SELECT ${cols} FROM certificates ORDER BY host_name`),
    account: db.prepare('SELECT directory, private_key, url FROM acme_accounts WHERE directory = ?'),
    saveAccount: db.prepare(
      `INSERT INTO acme_accounts (directory, private_key, url, created_at) VALUES (@directory, @privateKey, @url, @createdAt)
       ON CONFLICT (directory) DO UPDATE SET private_key = excluded.private_key, url = excluded.url`,
    ),
  };
}
