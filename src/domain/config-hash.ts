import { createHash } from 'node:crypto';
import type { AppSpec } from './app-spec.js';

/**
 * Fingerprint of everything that goes into an app container besides its version:
 * two releases with the same version and hash can share a container, which is how a
 * rollback restarts a retained container instead of creating a new one.
 * Secret VALUES are not part of it (they live only in the daemon's environment).
 */
export function containerConfigHash(spec: AppSpec): string {
  const relevant = {
    image: spec.image,
    port: spec.port,
    env: Object.entries(spec.env).sort(([a], [b]) => a.localeCompare(b)),
    secrets: [...spec.secrets].sort(),
  };
  return createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 16);
}
