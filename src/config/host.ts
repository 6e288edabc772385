/** A host document from the config's `hosts:` map -> HostSpec. */
import { SEED_DEFAULTS, type HostSpec } from '../domain/app-spec.js';
import { isHostName } from '../domain/naming.js';
import { check, type Issues, readBoolean, readMap, readPort, type Read } from './reader.js';
import { readAbsolutePath, readHostAddress, readLocalPath } from './values.js';

const HOST_KEYS = [
  'local',
  'address',
  'port',
  'user',
  'ssh_key',
  'host_key',
  'known_hosts',
  'docker_socket',
  'state_dir',
] as const;
// Keys that only mean something for SSH; on a local host they would be silently ignored, so they are errors.
const SSH_ONLY_KEYS = ['address', 'port', 'user', 'ssh_key', 'host_key', 'known_hosts'] as const;

const readUser: Read<string> = check('a user name', (v) =>
  typeof v === 'string' && /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(v) ? v : undefined,
);

// `ssh-keygen -lf` prints SHA256 fingerprints as unpadded base64 of 32 bytes (43 characters).
const readFingerprint: Read<string> = check('a fingerprint like "SHA256:..." as ssh-keygen -lf prints it', (v) =>
  typeof v === 'string' && /^SHA256:[A-Za-z0-9+/]{43}=?$/.test(v) ? v.replace(/=$/, '') : undefined,
);

export interface PathContext {
  /** What `~` expands to. */
  homeDir: string;
  /** Relative local paths are taken from here (the config file's directory). */
  baseDir: string;
}

export function readHost(name: string, doc: unknown, path: string, issues: Issues, ctx: PathContext): HostSpec {
  if (!isHostName(name)) {
    issues.add(path, 'invalid host name: expected letters, digits, "_", "." and "-", starting with a letter or digit, at most 63 characters');
  }
  const f = readMap(doc, path, issues, HOST_KEYS);
  const local = f.get('local', readBoolean, false);
  const localPath = readLocalPath(ctx.homeDir, ctx.baseDir);
  const spec: HostSpec = {
    name,
    local,
    address: null,
    sshPort: f.get('port', readPort, SEED_DEFAULTS.sshPort),
    user: f.get('user', readUser, SEED_DEFAULTS.user),
    sshKeyPath: f.get<string | null>('ssh_key', localPath, null),
    hostKey: f.get<string | null>('host_key', readFingerprint, null),
    knownHostsPath: f.get<string | null>('known_hosts', localPath, null),
    dockerSocket: f.get('docker_socket', readAbsolutePath, SEED_DEFAULTS.dockerSocket),
    stateDir: f.get('state_dir', readAbsolutePath, SEED_DEFAULTS.stateDir),
  };
  if (local) {
    for (const key of SSH_ONLY_KEYS) if (f.has(key)) issues.add(f.at(key), 'not used by a local host (local: true)');
    return spec;
  }
  spec.address = f.need<string | null>('address', readHostAddress, null);
  if (!f.has('host_key') && !f.has('known_hosts')) {
    issues.add(path, 'host_key or known_hosts is required: berth never accepts an unverified host key');
  }
  return spec;
}
