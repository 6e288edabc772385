/**
 * Apps' secret values as an operator gives them: `<dir>/<app>.env`, mode 0600, in a
 * directory like the one berth keeps next to its database (secretsDirPath). The one way
 * tests give an app its secrets: the daemon's environment is no source for them.
 *
 *   writeAppSecrets(secretsDirPath(db), 'web', { DB_PASSWORD: 'x' });
 *   const s = tempSecrets(); s.write('web', { DB_PASSWORD: 'x' }); ... s.remove();
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppSecretFiles } from '../../src/secrets/app-secrets.js';

/** Double-quoted with `\`, `"` and newlines escaped (src/secrets/env-file.ts): any value, a PEM too, on one line. */
export function secretsFileText(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([name, value]) => `${name}="${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"\n`)
    .join('');
}

/**
 * Writes `app`'s secrets file in `dir` (created 0700 if missing) with `mode`, replacing
 * any earlier one by a rename, as a careful operator (or an editor) does: a reader never
 * sees half a file. Returns the file's path.
 */
export function writeAppSecrets(dir: string, app: string, values: Record<string, string>, mode = 0o600): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return writeSecretsFile(join(dir, `${app}.env`), values, mode);
}

/** Any secrets file (an app's, the registries file), written whole and renamed into place. Returns its path. */
export function writeSecretsFile(file: string, values: Record<string, string>, mode = 0o600): string {
  const next = `${file}.${process.pid}.tmp`;
  writeFileSync(next, secretsFileText(values), { mode });
  renameSync(next, file);
  return file;
}

export interface TempSecrets {
  dir: string;
  /** What berth reads them with. */
  files: AppSecretFiles;
  write(app: string, values: Record<string, string>, mode?: number): string;
  remove(): void;
}

/** A scratch secrets directory for in-process tests (the controller, the API). */
export function tempSecrets(): TempSecrets {
  const dir = join(mkdtempSync(join(tmpdir(), 'berth-secrets-test-')), 'secrets');
  return {
    dir,
    files: new AppSecretFiles(dir),
    write: (app, values, mode) => writeAppSecrets(dir, app, values, mode),
    remove: () => rmSync(join(dir, '..'), { recursive: true, force: true }),
  };
}

/** For tests whose apps name no secret: a directory nobody creates, so no app has a file. */
export const NO_SECRETS = new AppSecretFiles(join(tmpdir(), 'berth-test-no-secrets', String(process.pid)));
