import { createHash } from 'node:crypto';
import type { AppSpec } from './app-spec.js';
import { isReservedSecretName } from './secrets.js';

/**
 * Fingerprint of everything that goes into an app container besides its version:
 * two releases with the same version and hash can share a container, which is how a
 * rollback restarts a retained container instead of creating a new one.
 *
 * `secretValues` are the values of the app's secrets file (name -> value). For an
 * app with secrets, a digest of the values (secretValuesDigest, never the values) is
 * part of the hash: a rotated secret makes a new container config, so neither a
 * rollback nor a restarted container keeps the old value. An app without secrets
 * hashes exactly as before secrets counted (no container is replaced on upgrade).
 */
export function containerConfigHash(spec: AppSpec, secretValues: Readonly<Record<string, string | undefined>>): string {
  const relevant: Record<string, unknown> = {
    image: spec.image,
    port: spec.port,
    env: Object.entries(spec.env).sort(([a], [b]) => a.localeCompare(b)),
    secrets: [...spec.secrets].sort(),
  };
  if (spec.secrets.length > 0) relevant.secretValues = secretValuesDigest(spec.name, spec.secrets, secretValues);
  // Only when set: every other spec hashes as before restarts (and container settings) existed.
  if (spec.restartedAt !== undefined) relevant.restartedAt = spec.restartedAt;
  if (spec.container !== undefined) relevant.container = canonical(spec.container);
  return createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 16);
}

/** `value` with every map's keys sorted: the hash must not depend on the order keys were written in. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  return value;
}

/** Domain separation: this digest is no other use of sha256 over the same bytes. */
const SECRET_DIGEST_DOMAIN = 'berth.container-config.secret-values.v1';

/**
 * A digest of the app's secret values: sha256 over a domain-separation prefix, the
 * app's name (a per-app salt) and the sorted (name, value) pairs, truncated to 128
 * bits. A value that is not set counts as null (the hash changes when it appears);
 * a reserved BERTH_ name counts as null too (its value never reaches a container).
 *
 * Not keyed: berth has no local secret that is stable across restarts to key an HMAC
 * with. So the container label (a hash over this digest) lets someone who can read it
 * test guesses of a low-entropy secret offline. Only Docker access on the host shows
 * the label, and that same access shows the values themselves (`docker inspect`); the
 * label is not in berth's API, events or logs.
 */
export function secretValuesDigest(app: string, names: readonly string[], values: Readonly<Record<string, string | undefined>>): string {
  const pairs = [...names].sort().map((n) => [n, isReservedSecretName(n) || !Object.hasOwn(values, n) ? null : (values[n] ?? null)]);
  return createHash('sha256').update(`${SECRET_DIGEST_DOMAIN}\0${app}\0${JSON.stringify(pairs)}`).digest('hex').slice(0, 32);
}
