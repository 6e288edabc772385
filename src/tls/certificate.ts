/** What berth reads from a PEM certificate chain, and the one PEM the proxy loads (pure). */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { TlsError } from '../domain/errors.js';
import { normaliseSerial } from '../proxy/haproxy-config.js';

export interface CertificateFacts {
  /** Normalised serial (upper-case hex, no leading zeros). */
  serial: string;
  notAfter: Date;
  /** DNS names of the leaf's subjectAltName. */
  names: string[];
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;

/** The PEM blocks of a text, each without surrounding space. */
export function pemBlocks(text: string): Array<{ label: string; pem: string }> {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1]!, pem: m[0] }));
}

/** The leaf (first certificate) of a PEM chain. Throws TlsError CERTIFICATE_INVALID, naming `hostName`, never the content. */
export function readCertificate(chain: string, hostName: string): CertificateFacts {
  const leaf = pemBlocks(chain).find((b) => b.label === 'CERTIFICATE');
  if (!leaf) throw new TlsError('CERTIFICATE_INVALID', hostName, `no PEM certificate in the certificate for ${hostName}`);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(leaf.pem);
  } catch (err) {
    throw new TlsError('CERTIFICATE_INVALID', hostName, `the certificate for ${hostName} does not parse: ${(err as Error).message}`);
  }
  const names = (x509.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  return { serial: normaliseSerial(x509.serialNumber), notAfter: new Date(x509.validTo), names };
}

/** Whether a certificate for `names` is valid for `hostName` (a `*.` SAN matches one label, as TLS clients match; a wildcard route needs that same SAN). */
export function certificateCovers(names: string[], hostName: string): boolean {
  return names.some((n) => n === hostName || (n.startsWith('*.') && hostName.endsWith(n.slice(1)) && !hostName.slice(0, -(n.length - 1)).includes('.')));
}

/**
 * Checks a given certificate and key (from the environment) and returns its facts:
 * the leaf must cover `hostName` and the key must be its key. Errors say which, never
 * the values.
 */
export function checkGivenCertificate(chain: string, key: string, hostName: string): CertificateFacts {
  const facts = readCertificate(chain, hostName);
  if (!certificateCovers(facts.names, hostName)) {
    throw new TlsError('CERTIFICATE_INVALID', hostName, `the certificate given for ${hostName} is for ${facts.names.join(', ') || 'no DNS name'}`);
  }
  let matches: boolean;
  try {
    matches = new X509Certificate(pemBlocks(chain).find((b) => b.label === 'CERTIFICATE')!.pem).checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new TlsError('CERTIFICATE_INVALID', hostName, `the private key given for ${hostName} is not a PEM private key`);
  }
  if (!matches) throw new TlsError('CERTIFICATE_INVALID', hostName, `the private key given for ${hostName} does not belong to its certificate`);
  return facts;
}

/** Chain and key as one PEM without blank lines: HAProxy's runtime API ends a payload at the first blank line. */
export function proxyPem(chain: string, key: string): string {
  return [...pemBlocks(chain).filter((b) => b.label === 'CERTIFICATE'), ...pemBlocks(key)]
    .map((b) => b.pem.split('\n').filter((l) => l.trim() !== '').join('\n'))
    .join('\n');
}
