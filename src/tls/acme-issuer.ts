/**
 * Orders certificates over ACME (RFC 8555) with the `acme-client` library, answering
 * HTTP-01 challenges through a responder that berth points at every host of the name.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import * as acme from 'acme-client';
import type { AcmeConfig } from '../domain/app-spec.js';
import { ConfigError, TlsError } from '../domain/errors.js';
import type { Logger } from '../log.js';
import type { CertificatesRepo } from '../store/certificates.js';

/** Where the key authorization of a challenge token is served (every host of the name, on port 80). */
export interface ChallengeResponder {
  set(token: string, keyAuthorization: string): Promise<void>;
  clear(token: string): Promise<void>;
}

export interface IssuedCertificate {
  /** PEM chain, leaf first. */
  certificate: string;
  /** PEM, a new key for each order. */
  privateKey: string;
}

export interface CertificateIssuer {
  order(hostName: string, responder: ChallengeResponder): Promise<IssuedCertificate>;
}

/** Each ACME request: the library's HTTP client has no deadline of its own. */
const ACME_HTTP_TIMEOUT_MS = 30_000;

export class AcmeIssuer implements CertificateIssuer {
  constructor(
    private readonly config: AcmeConfig,
    private readonly store: CertificatesRepo,
    private readonly log: Logger,
  ) {
    // acme-client talks through one shared axios instance: its defaults are the only way
    // to give it a deadline and, for a private ACME server, the CA to trust. berth has
    // one ACME configuration per process, so setting them here is not a shared-state hazard.
    acme.axios.defaults.timeout = ACME_HTTP_TIMEOUT_MS;
    if (config.caCertificate) acme.axios.defaults.httpsAgent = new Agent({ ca: readCaFile(config.caCertificate) });
  }

  /** The account for the configured directory: its key is made once and kept in the store. */
  private async client(): Promise<acme.Client> {
    const { directory } = this.config;
    let account = this.store.account(directory);
    if (!account) {
      account = { directory, privateKey: (await acme.crypto.createPrivateEcdsaKey()).toString(), url: null };
      this.store.saveAccount(account);
    }
    return new acme.Client({ directoryUrl: directory, accountKey: account.privateKey, ...(account.url ? { accountUrl: account.url } : {}) });
  }

  async order(hostName: string, responder: ChallengeResponder): Promise<IssuedCertificate> {
    const started = Date.now();
    try {
      const client = await this.client();
      const [key, csr] = await acme.crypto.createCsr({ commonName: hostName, altNames: [hostName] }, await acme.crypto.createPrivateEcdsaKey());
      const certificate = await client.auto({
        csr,
        ...(this.config.email ? { email: this.config.email } : {}),
        termsOfServiceAgreed: true,
        challengePriority: ['http-01'],
        // The library would first fetch the challenge itself, through berth's own DNS and
        // network, which need not reach the hosts; the CA checks it from outside anyway.
        skipChallengeVerification: true,
        challengeCreateFn: async (_authz, challenge, keyAuthorization) => responder.set(challenge.token, keyAuthorization),
        challengeRemoveFn: async (_authz, challenge) => responder.clear(challenge.token),
      });
      const account = this.store.account(this.config.directory);
      if (account && !account.url) this.store.saveAccount({ ...account, url: client.getAccountUrl() });
      this.log.info({ hostName, ms: Date.now() - started }, 'certificate issued');
      return { certificate, privateKey: key.toString() };
    } catch (err) {
      if (err instanceof TlsError) throw err;
      throw new TlsError('ACME_ORDER_FAILED', hostName, `ACME order for ${hostName} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

function readCaFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError([{ path: 'acme.ca_certificate', message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
}
