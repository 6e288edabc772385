/**
 * Registry passwords. `registries: {ghcr.io: {username, password: GHCR_TOKEN}}` names a line
 * of one file for the whole daemon, `<data dir>/registries.env` (src/defaults.ts): the format,
 * permission rule and change detection of an app's secrets file (app-secrets.ts), and, like
 * those, not the daemon's environment — so a reload can add a registry with its password, and
 * rotating one is editing the file (the next pull reads it), with no restart of berth.
 */
import type { RegistryAuth, RegistrySpec } from '../domain/app-spec.js';
import { type ConfigIssue, missingSecretMessage } from '../domain/errors.js';
import { registryOf } from '../domain/naming.js';
import { keyPath } from '../config/reader.js';
import { SecretsFileCache, secretValuesFrom } from './app-secrets.js';

export class RegistryCredentials {
  private readonly files = new SecretsFileCache();

  /** `registries` is read at every pull: the running config's, which a reload replaces. */
  constructor(
    readonly file: string,
    private readonly registries: () => Readonly<Record<string, RegistrySpec>>,
  ) {}

  /**
   * What a pull of `ref` sends, or null when no `registries` entry is the registry of `ref`
   * (then Docker pulls anonymously). Throws SecretsFileError or SecretMissingError when the
   * password cannot be read: the pull fails with that message, naming the file.
   */
  authFor(ref: string): RegistryAuth | null {
    const registry = registryOf(ref);
    const all = this.registries();
    if (!Object.hasOwn(all, registry)) return null;
    const { username, password: passwordName } = all[registry]!;
    const password = secretValuesFrom(this.files.read(this.file), [passwordName])[passwordName]!;
    return { registry, username, password, passwordName };
  }

  /**
   * Config load and reload: every password `registries` names is in the file, else an issue at
   * `registries["ghcr.io"].password` naming the file (one issue when the file cannot be used).
   */
  missingPasswordIssues(registries: Readonly<Record<string, RegistrySpec>>): ConfigIssue[] {
    const named = Object.entries(registries).map(([host, r]) => ({ name: r.password, path: keyPath(keyPath('registries', host), 'password') }));
    if (named.length === 0) return [];
    const read = this.files.read(this.file);
    if (read.problem !== null) return [{ path: named[0]!.path, message: read.problem }];
    return named.filter((n) => !Object.hasOwn(read.values, n.name)).map((n) => ({ path: n.path, message: missingSecretMessage(n.name, read.file, read.exists) }));
  }
}
