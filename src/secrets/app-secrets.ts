/**
 * Where an app's secret values come from: its own file, `<data dir>/secrets/<app>.env`
 * (format: env-file.ts), and nothing else — not the daemon's environment, so an app
 * can name neither berth's variables nor another app's secrets nor the machine's cloud
 * keys (docs/design.md, "API and security").
 *
 * Read when a value is needed (every pass hashes them, container creates, hooks, exec,
 * given certificates): one stat per read, the file itself re-read only when it changed,
 * so rotating a secret is editing the file; the next pass sees a new digest.
 */
import { closeSync, fstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { AppSpec } from '../domain/app-spec.js';
import { type ConfigIssue, missingSecretMessage, SecretMissingError, SecretsFileError } from '../domain/errors.js';
import { isAppName } from '../domain/naming.js';
import { isReservedSecretName } from '../domain/secrets.js';
import { routedApp } from '../domain/processes.js';
import { indexPath, keyPath } from '../config/reader.js';
import { filePermissionProblem, octal, type ProtectedFileKind } from '../store/files.js';
import { parseSecretsFile } from './env-file.js';

const SECRETS_FILE: ProtectedFileKind = { title: 'SECRETS FILE', noun: 'a secrets file' };

/** PEM chains are a few KiB: a bigger file is a mistake, and the bound keeps every read cheap. */
export const MAX_SECRETS_FILE_BYTES = 1024 * 1024;

/** One read of a secrets file (an app's, or the registries file: registry-credentials.ts). */
export interface AppSecretsRead {
  file: string;
  exists: boolean;
  /** name -> value; empty when the file does not exist or cannot be used. */
  values: Readonly<Record<string, string>>;
  /** Why the file cannot be used (too open, malformed, unreadable; never a value), else null. */
  problem: string | null;
}

export class AppSecretFiles {
  private readonly files = new SecretsFileCache();

  constructor(readonly dir: string) {}

  fileOf(app: string): string {
    // Stored app names are validated; this keeps a name from ever being a path.
    if (!isAppName(app)) throw new Error(`not an app name: ${JSON.stringify(app)}`);
    return join(this.dir, `${app}.env`);
  }

  read(app: string): AppSecretsRead {
    return this.files.read(this.fileOf(app));
  }
}

/** Secrets files by path: one stat per read, the file itself re-read only when it changed. */
export class SecretsFileCache {
  /** The last read of each file, under a key that changes with any write, chmod or replacement. */
  private readonly cache = new Map<string, { key: string; read: AppSecretsRead }>();

  read(file: string): AppSecretsRead {
    let st: Stats | undefined;
    try {
      // No file is the common case (an app without secrets), met by every pass: not worth an
      // exception each (at 10,000 apps, 10,000 thrown per resync: ~80 ms of CPU).
      st = statSync(file, { throwIfNoEntry: false });
    } catch (err) {
      this.cache.delete(file);
      return unusable(file, `cannot read ${file}: ${(err as Error).message}`);
    }
    if (!st) {
      this.cache.delete(file);
      return { file, exists: false, values: {}, problem: null };
    }
    const hit = this.cache.get(file);
    if (hit?.key === changeKey(st)) return hit.read;
    const { key, read } = readOnce(file);
    if (key === null) this.cache.delete(file);
    else this.cache.set(file, { key, read });
    return read;
  }
}

/** ctime moves with every write, chmod, chown and rename onto the path; mtime and size catch the rest. */
const changeKey = (st: Stats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;

const unusable = (file: string, problem: string): AppSecretsRead => ({ file, exists: true, values: {}, problem });

/** Opens, checks the mode of what is open (so what is checked is what is read), reads, parses. */
function readOnce(file: string): { key: string | null; read: AppSecretsRead } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    return { key: null, read: unusable(file, `cannot read ${file}: ${(err as Error).message}`) };
  }
  try {
    const st = fstatSync(fd);
    const key = changeKey(st);
    const tooOpen = filePermissionProblem(file, st.mode, st.uid, SECRETS_FILE);
    if (tooOpen) return { key, read: unusable(file, tooOpen) };
    if (!st.isFile()) return { key, read: unusable(file, `${file} is not a regular file (mode ${octal(st.mode & 0o7777)})`) };
    if (st.size > MAX_SECRETS_FILE_BYTES) return { key, read: unusable(file, `${file} is ${st.size} bytes, over the ${MAX_SECRETS_FILE_BYTES}-byte bound`) };
    const { values, problems } = parseSecretsFile(readFileSync(fd, 'utf8'));
    if (problems.length > 0) return { key, read: unusable(file, `${file} is not used: ${problems.join('; ')}`) };
    return { key, read: { file, exists: true, values, problem: null } };
  } catch (err) {
    return { key: null, read: unusable(file, `cannot read ${file}: ${(err as Error).message}`) };
  } finally {
    closeSync(fd);
  }
}

/**
 * The values of `names` (an app's secrets, a given certificate's two) from a read of
 * the app's file. Throws SecretsFileError when the file cannot be used, SecretMissingError
 * for the first name it lacks: a step that needs them fails with a message naming the file.
 */
export function secretValuesFrom(read: AppSecretsRead, names: readonly string[]): Record<string, string> {
  if (read.problem !== null) throw new SecretsFileError(read.file, read.problem);
  return Object.fromEntries(
    names.map((name) => {
      if (!Object.hasOwn(read.values, name)) throw new SecretMissingError(name, read.file, read.exists);
      return [name, read.values[name]!];
    }),
  );
}

/** Every secret name `spec` uses, with its key path under `path` (`apps.web`, `body`). */
function namedSecrets(spec: AppSpec, path: string): Array<{ name: string; path: string }> {
  const named = spec.secrets.map((name, i) => ({ name, path: indexPath(keyPath(path, 'secrets'), i) }));
  for (const p of spec.processes ?? []) {
    const at = keyPath(keyPath(keyPath(path, 'processes'), p.name), 'secrets');
    p.secrets.forEach((name, i) => named.push({ name, path: indexPath(at, i) }));
  }
  const serving = spec.processes?.find((p) => p.proxy !== null);
  const tls = routedApp(spec).proxy?.tls;
  if (tls?.source === 'given') {
    const at = keyPath(keyPath(serving ? keyPath(keyPath(path, 'processes'), serving.name) : path, 'proxy'), 'tls');
    named.push({ name: tls.certificate, path: keyPath(at, 'certificate') }, { name: tls.privateKey, path: keyPath(at, 'private_key') });
  }
  // A reserved name is refused by validation already, and never read.
  return named.filter((s) => !isReservedSecretName(s.name));
}

/**
 * Config load and `PUT /v1/apps/:app`: a secret the app names that its file does not
 * have is an issue at its key path, naming the file (`apps.web.secrets[0]: secret
 * DB_PASSWORD is not in /var/lib/berth/secrets/web.env …`); a file that cannot be used
 * is one issue. An app that names no secret needs no file.
 */
export function missingSecretIssues(spec: AppSpec, secrets: AppSecretFiles, path: string): ConfigIssue[] {
  const named = namedSecrets(spec, path);
  if (named.length === 0) return [];
  const read = secrets.read(spec.name);
  if (read.problem !== null) return [{ path: named[0]!.path, message: read.problem }];
  return named.filter((s) => !Object.hasOwn(read.values, s.name)).map((s) => ({ path: s.path, message: missingSecretMessage(s.name, read.file, read.exists) }));
}
