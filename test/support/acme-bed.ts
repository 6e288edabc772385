/**
 * The test bed's ACME CA (`acme.json`, written by test/hosts/acme up, which testbed up runs):
 * Debian's pebble 2.4 behind https://127.0.0.1:14000/dir, validating HTTP-01 for real on
 * port 80 of whatever address its mock DNS (pebble-challtestsrv) gives the name.
 *
 *   const acme = readAcmeBed();                      // null when absent
 *   await setDnsA('app.berth.test', ['10.77.0.11']);  // pebble validates against h1's :80
 *   const before = await countIssued('app.berth.test');
 *   ... order with acme-client: directoryUrl acme.directory, the API CA acme.apiCa ...
 *   assert.equal(await countIssued('app.berth.test'), before + 1);
 *
 * Names nobody set resolve to nothing (challtestsrv's default A/AAAA answers are off), so
 * their validation fails. Pebble dials only the first address of a name.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { testbedDir, testbedRequired } from './testbed.js';

export interface AcmeBed {
  /** The directory acme.json was read from (the testbed dir). */
  dir: string;
  /** ACME directory URL, e.g. https://127.0.0.1:14000/dir. */
  directory: string;
  /** PEM file of the private CA that signed pebble's own HTTPS certificate (API and management). */
  apiCaFile: string;
  /** The contents of apiCaFile. */
  apiCa: string;
  /** PEM file of the root pebble issues under, fetched at `up` (pebble makes a new one at each start). */
  rootsFile: string;
  /** Pebble's management API, e.g. https://127.0.0.1:15000 (same TLS certificate as the ACME API). */
  management: string;
  /** challtestsrv's DNS server, `127.0.0.1:8053` (UDP and TCP). */
  dnsServer: string;
  /** challtestsrv's management API, e.g. http://127.0.0.1:8055. */
  dnsManagement: string;
  /** Pebble's log (stdout and stderr). */
  log: string;
  /** The port pebble validates HTTP-01 challenges on (80). */
  httpPort: number;
}

export function acmeBedFile(dir = testbedDir()): string {
  return join(dir, 'acme.json');
}

function str(raw: Record<string, unknown>, key: string, file: string, dflt?: string): string {
  const v = raw[key] ?? dflt;
  if (typeof v !== 'string' || v === '') throw new Error(`${file}: ${key} must be a non-empty string`);
  return v;
}

/** Parses acme.json; throws when it is malformed, returns null when absent. */
export function readAcmeBed(dir = testbedDir()): AcmeBed | null {
  const file = acmeBedFile(dir);
  if (!existsSync(file)) return null;
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const apiCaFile = str(raw, 'apiCaFile', file);
  return {
    dir,
    directory: str(raw, 'directory', file),
    apiCaFile,
    apiCa: readFileSync(apiCaFile, 'utf8'),
    rootsFile: str(raw, 'rootsFile', file),
    management: str(raw, 'management', file, 'https://127.0.0.1:15000'),
    dnsServer: str(raw, 'dnsServer', file, '127.0.0.1:8053'),
    dnsManagement: str(raw, 'dnsManagement', file),
    log: str(raw, 'log', file),
    httpPort: typeof raw.httpPort === 'number' ? raw.httpPort : 80,
  };
}

/**
 * Why ACME tests cannot run (a `skip` value for node:test), or false when they can. Like
 * testbed.ts's bedSkipReason: with BERTH_TESTBED_REQUIRED=1 a missing acme.json is not a
 * skip, and requireAcmeBed then fails the test.
 */
export function acmeBedSkipReason(dir = testbedDir()): string | false {
  if (existsSync(acmeBedFile(dir))) return false;
  if (testbedRequired()) return false;
  return `no ACME CA (${acmeBedFile(dir)} missing); run test/hosts/testbed up (or test/hosts/acme up), or set BERTH_TESTBED_REQUIRED=1 to make this a failure`;
}

/** The ACME bed, or a thrown error saying it is missing (inside a test that was not skipped). */
export function requireAcmeBed(dir = testbedDir()): AcmeBed {
  const bed = readAcmeBed(dir);
  if (!bed) throw new Error(`the ACME CA is not up: ${acmeBedFile(dir)} is missing (test/hosts/acme up)`);
  return bed;
}

/** GET over HTTPS trusting only `ca`; resolves with the status and body. */
export function httpsGet(url: string, ca: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function dnsPost(bed: AcmeBed, path: string, body: object): Promise<void> {
  const res = await fetch(`${bed.dnsManagement}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200) throw new Error(`challtestsrv ${path} ${JSON.stringify(body)}: HTTP ${res.status} ${await res.text()}`);
}

/**
 * Makes `name` resolve (A records only) to `addresses` for pebble, replacing what it had:
 * challtestsrv's /add-a appends, so the name is cleared first. Pebble dials the first one.
 */
export async function setDnsA(name: string, addresses: string[], bed = requireAcmeBed()): Promise<void> {
  if (addresses.length === 0) throw new Error('setDnsA: no addresses (use clearDns)');
  await clearDns(name, bed);
  await dnsPost(bed, '/add-a', { host: name, addresses });
}

/** Removes the name's A records: it resolves to nothing again. */
export async function clearDns(name: string, bed = requireAcmeBed()): Promise<void> {
  await dnsPost(bed, '/clear-a', { host: name });
}

/** The root of pebble's issuing chain (PEM), fetched from the management API: it changes at each start. */
export async function pebbleRoots(bed = requireAcmeBed()): Promise<string> {
  const res = await httpsGet(`${bed.management}/roots/0`, bed.apiCa);
  if (res.status !== 200 || !res.body.includes('BEGIN CERTIFICATE')) throw new Error(`pebble /roots/0: HTTP ${res.status}`);
  return res.body;
}

/**
 * The line pebble 2.4 logs once per issued certificate (ca/ca.go, after signing, before the
 * order turns valid), e.g.
 *   `Pebble 2024/01/02 15:04:05 Issued certificate serial 3a5e0c2b9d1f4e67 for order rD3Wm...`
 * The serial is lower-case hex, as /cert-status-by-serial/ takes it.
 */
export const ISSUED_LINE = /Issued certificate serial ([0-9a-f]+) for order (\S+)/;

/** Serials (hex) of every certificate pebble issued since it started, oldest first. */
export function issuedSerials(bed = requireAcmeBed()): string[] {
  const serials: string[] = [];
  for (const line of readFileSync(bed.log, 'utf8').split('\n')) {
    const m = ISSUED_LINE.exec(line);
    if (m?.[1]) serials.push(m[1]);
  }
  return serials;
}

/** The certificate pebble issued with this serial (PEM), from /cert-status-by-serial/. */
export async function issuedCertificate(serial: string, bed = requireAcmeBed()): Promise<string> {
  const res = await httpsGet(`${bed.management}/cert-status-by-serial/${serial}`, bed.apiCa);
  if (res.status !== 200) throw new Error(`pebble /cert-status-by-serial/${serial}: HTTP ${res.status} ${res.body}`);
  return (JSON.parse(res.body) as { Certificate: string }).Certificate;
}

/** The DNS names of a PEM certificate (its subjectAltName DNS entries), lower-cased. */
export function dnsNames(pem: string): string[] {
  const san = new X509Certificate(pem).subjectAltName ?? '';
  return san
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
}

/**
 * How many certificates pebble issued since it started (one ISSUED_LINE each in its log);
 * with `name`, only those whose subjectAltName lists that DNS name (each issued certificate
 * is looked up by serial in pebble's management API).
 */
export async function countIssued(name?: string, bed = requireAcmeBed()): Promise<number> {
  const serials = issuedSerials(bed);
  if (name === undefined) return serials.length;
  const want = name.toLowerCase();
  let n = 0;
  for (const serial of serials) if (dnsNames(await issuedCertificate(serial, bed)).includes(want)) n++;
  return n;
}
