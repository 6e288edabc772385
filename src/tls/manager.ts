/**
 * The certificate loop, beside the app controller: every resync (and soon after an app
 * changes) it orders what plan.ts says is due — one order per host name for the whole
 * fleet, its HTTP-01 challenge answered by every host of the name — and makes every
 * host's proxy serve the current certificate of each of its names, without a reload.
 */
import { describeError, isHostDown, TlsError } from '../domain/errors.js';
import type { Logger } from '../log.js';
import type { BerthMetrics } from '../metrics/registry.js';
import type { ProxyCertificate } from '../proxy/haproxy-proxy.js';
import { secretValuesFrom, type AppSecretFiles } from '../secrets/app-secrets.js';
import type { Store } from '../store/index.js';
import type { CertificateIssuer, ChallengeResponder } from './acme-issuer.js';
import { checkGivenCertificate, proxyPem, readCertificate } from './certificate.js';
import { orderBackoffMs, orderReason, tlsNames, type TlsName } from './plan.js';

/** What the manager needs of the per-host proxy (HaproxyProxy). */
export interface CertificateProxy {
  syncCertificates(host: string): Promise<string[]>;
  setChallenge(host: string, token: string, keyAuthorization: string | null): Promise<void>;
}

export interface CertificateManagerOptions {
  store: Store;
  proxy: CertificateProxy;
  /** null when no ACME order may be placed (ACME routes then report the failure). */
  issuer: CertificateIssuer | null;
  renewBeforeMs: number;
  metrics: BerthMetrics;
  log: Logger;
  intervalMs: number;
  /** Where given certificates' PEM values come from: the secrets file of the name's (first) app. */
  secrets: AppSecretFiles;
  now?: () => number;
}

/** App changes that may add, drop or move a TLS name. */
const APP_EVENTS = new Set(['AppCreated', 'AppUpdated', 'AppDeleted', 'HostRecovered']);
/** What shutdown waits for a tick in flight: well inside the daemon's own shutdown deadline. */
const STOP_WAIT_MS = 10_000;
/** Soon after an app change, not at once: a config load upserts many apps in a row. */
const KICK_DELAY_MS = 200;

export class CertificateManager {
  private names: TlsName[] = [];
  private timer: NodeJS.Timeout | null = null;
  private kickTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private unsubscribe: (() => void) | null = null;
  /** Failed orders in a row, and when the next may be placed. */
  private readonly failures = new Map<string, { count: number; nextAt: number }>();
  /** The last problem reported per host name, so one problem is one event, not one per tick. */
  private readonly reported = new Map<string, string>();
  private readonly now: () => number;

  constructor(private readonly o: CertificateManagerOptions) {
    this.now = o.now ?? Date.now;
    this.names = tlsNames(o.store.apps.listApps().map((a) => a.spec));
  }

  start(): void {
    this.stopped = false;
    this.unsubscribe = this.o.store.events.subscribe((e) => {
      if (APP_EVENTS.has(e.type)) this.kick();
    });
    this.timer = setInterval(() => this.kick(0), this.o.intervalMs);
    this.timer.unref();
    this.kick(0);
  }

  /**
   * Stops the loop; resolves when the tick in flight has finished, or after STOP_WAIT_MS:
   * an ACME order left unfinished is simply placed again after the next start.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    if (this.kickTimer) clearTimeout(this.kickTimer);
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise<void>((r) => (waited = setTimeout(r, STOP_WAIT_MS)))]);
    clearTimeout(waited);
  }

  /** A tick soon; ticks never overlap (one asked for during a tick runs after it). */
  kick(delayMs = KICK_DELAY_MS): void {
    if (this.stopped || this.kickTimer) return;
    this.kickTimer = setTimeout(() => {
      this.kickTimer = null;
      if (this.running) {
        this.again = true;
        return;
      }
      // (A tick that throws, e.g. on a database that does not answer, is tried again at the next one.)
      this.running = this.tick().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'certificate check failed; the next one tries again')).finally(() => {
        this.running = null;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick(0);
        }
      });
    }, delayMs);
    this.kickTimer.unref();
  }

  /** One pass: refresh the names, order what is due, install everywhere, update the metric. */
  async tick(): Promise<void> {
    this.names = tlsNames(this.o.store.apps.listApps().map((a) => a.spec));
    for (const name of this.names) {
      if (this.stopped) return;
      if (name.tls.source === 'acme') await this.orderIfDue(name);
    }
    const hosts = [...new Set(this.names.flatMap((n) => n.hosts))].sort();
    await Promise.all(hosts.map((host) => this.install(host)));
    this.updateMetric();
  }

  /** The certificates `host`'s proxy should serve now (HaproxyOptions.certificatesOn). */
  certificatesOn(host: string): ProxyCertificate[] {
    return this.names.filter((n) => n.hosts.includes(host)).flatMap((n) => this.certificateOf(n) ?? []);
  }

  private certificateOf(name: TlsName): ProxyCertificate | null {
    if (name.tls.source === 'acme') {
      const stored = this.o.store.certificates.get(name.hostName);
      return stored ? { hostName: name.hostName, pem: proxyPem(stored.certificate, stored.privateKey), serial: stored.serial } : null;
    }
    try {
      const { chain, key } = this.givenPem(name.tls, name.apps[0]!);
      const facts = checkGivenCertificate(chain, key, name.hostName);
      return { hostName: name.hostName, pem: proxyPem(chain, key), serial: facts.serial };
    } catch (err) {
      // A certificate's own problems name the host name; a missing secret or unusable file does not.
      this.report(name, err instanceof TlsError ? err.message : `certificate for ${name.hostName}: ${describeError(err)}`);
      return null;
    }
  }

  private async orderIfDue(name: TlsName): Promise<void> {
    const stored = this.o.store.certificates.get(name.hostName);
    const reason = orderReason(stored, this.now(), this.o.renewBeforeMs);
    const failed = this.failures.get(name.hostName);
    if (reason === null || (failed && this.now() < failed.nextAt)) return;
    if (!this.o.issuer) {
      this.report(name, `certificate for ${name.hostName}: no ACME issuer configured`);
      return;
    }
    this.o.log.info({ hostName: name.hostName, reason, hosts: name.hosts }, 'ordering a certificate');
    try {
      const issued = await this.o.issuer.order(name.hostName, this.responder(name));
      const facts = readCertificate(issued.certificate, name.hostName);
      this.o.store.certificates.save({
        hostName: name.hostName,
        certificate: issued.certificate,
        privateKey: issued.privateKey,
        serial: facts.serial,
        notAfter: facts.notAfter.toISOString(),
        renewBeforeMs: this.o.renewBeforeMs,
      });
      this.failures.delete(name.hostName);
      this.reported.delete(name.hostName);
      this.o.metrics.certificateOrdersTotal.inc({ result: 'issued' });
      this.event(name, 'CertificateIssued', `certificate for ${name.hostName} issued (${reason}), valid until ${facts.notAfter.toISOString()}`);
    } catch (err) {
      const count = (failed?.count ?? 0) + 1;
      const waitMs = orderBackoffMs(count);
      this.failures.set(name.hostName, { count, nextAt: this.now() + waitMs });
      this.o.metrics.certificateOrdersTotal.inc({ result: 'failed' });
      const message = `${describeError(err)} (attempt ${count}; next in ${Math.round(waitMs / 1000)} s)`;
      this.o.log.warn({ hostName: name.hostName, code: (err as TlsError).code, attempt: count }, message);
      this.event(name, 'CertificateFailed', message);
    }
  }

  /** Challenge answers on every host of the name; a host that does not answer is skipped (the CA may still reach another). */
  private responder(name: TlsName): ChallengeResponder {
    const proxy = this.o.proxy;
    const onEvery = async (what: string, fn: (host: string) => Promise<void>) => {
      const results = await Promise.allSettled(name.hosts.map(fn));
      const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${name.hosts[i]}: ${describeError(r.reason)}`] : []));
      if (failed.length > 0) this.o.log.warn({ hostName: name.hostName, failed }, `ACME challenge ${what} failed on some hosts`);
      if (failed.length === name.hosts.length) throw new TlsError('ACME_ORDER_FAILED', name.hostName, `no host of ${name.hostName} could answer the challenge: ${failed.join('; ')}`);
    };
    return {
      set: (token, keyAuthorization) => onEvery('set', (host) => proxy.setChallenge(host, token, keyAuthorization)),
      clear: (token) => onEvery('clear', (host) => proxy.setChallenge(host, token, null)).catch(() => undefined),
    };
  }

  private async install(host: string): Promise<void> {
    try {
      await this.o.proxy.syncCertificates(host);
    } catch (err) {
      // A host that is down is the app controller's to report; anything else is a certificate problem there.
      if (isHostDown(err)) this.o.log.debug({ host }, 'certificates not installed: host down');
      else this.o.log.warn({ host, err: describeError(err) }, 'installing certificates failed; retried next tick');
    }
  }

  private updateMetric(): void {
    this.o.metrics.certificateExpiry.reset();
    for (const name of this.names) {
      const notAfter = this.notAfterOf(name);
      if (notAfter === null) continue;
      for (const app of name.apps) this.o.metrics.certificateExpiry.set({ app, host_name: name.hostName }, Math.floor(notAfter / 1000));
    }
  }

  private notAfterOf(name: TlsName): number | null {
    if (name.tls.source === 'acme') {
      const stored = this.o.store.certificates.get(name.hostName);
      return stored ? Date.parse(stored.notAfter) : null;
    }
    try {
      return readCertificate(this.givenPem(name.tls, name.apps[0]!).chain, name.hostName).notAfter.getTime();
    } catch {
      return null;
    }
  }

  /**
   * A given certificate's PEM (chain, key) from the secrets file of `app`: the first app
   * of the name by name, which decides the name's TLS setting too (plan.ts, tlsNames).
   * Throws SecretsFileError / SecretMissingError, whose messages name the file.
   */
  private givenPem(tls: { certificate: string; privateKey: string }, app: string): { chain: string; key: string } {
    const values = secretValuesFrom(this.o.secrets.read(app), [tls.certificate, tls.privateKey]);
    return { chain: values[tls.certificate]!, key: values[tls.privateKey]! };
  }

  /** A problem with a name's certificate: a warning and an event on its apps, once per distinct problem. */
  private report(name: TlsName, message: string): void {
    if (this.reported.get(name.hostName) === message) return;
    this.reported.set(name.hostName, message);
    this.o.log.warn({ hostName: name.hostName }, message);
    this.event(name, 'CertificateFailed', message);
  }

  private event(name: TlsName, type: string, message: string): void {
    for (const app of name.apps) this.o.store.events.appendEvent({ app, type, message, host: null, revision: null, actor: 'certificates' });
  }
}
