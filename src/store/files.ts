import { chmodSync, closeSync, constants, mkdirSync, openSync, statSync } from 'node:fs';

/**
 * Modes of what berth keeps next to its database (docs/design.md, "The store"): the
 * directory berth creates is 0700 and every file it creates there 0600, from the moment
 * it exists (the mode is given to mkdir/open, never fixed up afterwards).
 *
 * SQLite creates `-wal`, `-shm` and `-journal` itself, and gives each the mode of its
 * database file (and fchmods it to that, whatever the umask), so creating the database
 * and the lock file 0600 before SQLite opens them is enough: no process-wide umask
 * change, which would also apply to whatever else the process creates meanwhile.
 *
 * Nothing here opens a file descriptor on an EXISTING file: closing one would drop
 * every fcntl lock this process holds on that file, SQLite's included.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates `dir` (and missing parents) 0700. Returns the mode of a directory that already
 * existed if group or others have any access to it, else null. An existing directory is
 * not changed: it may be shared (the working directory, a volume, /var/lib).
 */
export function ensurePrivateDir(dir: string): number | null {
  if (mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE }) !== undefined) return null;
  const mode = statSync(dir).mode & 0o777;
  return mode & 0o077 ? mode : null;
}

/** Creates `path` 0600 if it does not exist; leaves an existing file alone. */
export function createPrivateFile(path: string): void {
  try {
    // O_EXCL: only ever an fd on a file this call created (see above).
    closeSync(openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, PRIVATE_FILE_MODE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Sets an existing `path` to 0600 (by path: no fd). Returns the mode it had if group
 * or others had any access, else null (also when there is no such file).
 */
export function tightenFile(path: string): number | null {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (mode === PRIVATE_FILE_MODE) return null;
  chmodSync(path, PRIVATE_FILE_MODE);
  return mode & 0o077 ? mode : null;
}

export const octal = (mode: number): string => `0${mode.toString(8).padStart(3, '0')}`;

/** What a file refused by filePermissionProblem holds, for its message. */
export interface ProtectedFileKind {
  /** Upper case, as OpenSSH shouts it: `PRIVATE KEY FILE`. */
  title: string;
  /** `a private key`, `a secrets file`. */
  noun: string;
}

/**
 * Why a file that holds secrets (an SSH private key, an app's secrets file) must not be
 * used with this mode and owner, or null. As OpenSSH (`sshkey_perm_ok`): a file we own
 * must not be accessible by group or others at all. One owned by another user (root:berth
 * 0640, as deploy/systemd/berth.service suggests for keys) may be shared through a group,
 * but never with everyone: any access for others is refused.
 */
export function filePermissionProblem(
  path: string,
  mode: number,
  owner: number,
  kind: ProtectedFileKind,
  self: number | null = process.getuid?.() ?? null,
): string | null {
  if (self === null) return null; // no POSIX owners and modes (Windows)
  const perm = mode & 0o777;
  const ours = owner === self;
  if ((perm & (ours ? 0o077 : 0o007)) === 0) return null;
  const fix = ours
    ? `chmod 600 ${path}`
    : `chown ${self} ${path} && chmod 600 ${path} (or chmod o-rwx ${path} and give access through a group only berth's user is in)`;
  return (
    `UNPROTECTED ${kind.title}: permissions ${octal(perm)} for ${path} are too open; ` +
    `${kind.noun} must not be accessible by ${ours ? 'group or others' : 'others'}, so it is not used. Fix: ${fix}`
  );
}
