/**
 * SSH host key verification: a pinned `SHA256:` fingerprint (as `ssh-keygen -lf` prints it)
 * or an OpenSSH known_hosts file. Pure functions, no I/O: the caller reads the file.
 *
 * An unknown key and a changed key are both refusals, never accepted on first use.
 */
import { createHash, createHmac } from 'node:crypto';

export type HostKeyVerdict =
  | { ok: true }
  | { ok: false; code: 'HOST_KEY_MISMATCH' | 'HOST_KEY_UNKNOWN'; message: string };

/** `SHA256:<base64 of sha256(raw key blob), no '=' padding>`, exactly as `ssh-keygen -lf` prints it. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** Accepts `SHA256:abc`, `sha256:abc=`, surrounding spaces; returns the canonical form or null. */
export function normaliseFingerprint(s: string): string | null {
  const m = /^\s*sha256:([A-Za-z0-9+/]{43})=?\s*$/i.exec(s);
  return m ? `SHA256:${m[1]}` : null;
}

/** Longest key type name accepted in a blob: real ones are short (`ecdsa-sha2-nistp521`); longer means not a key. */
const MAX_KEY_TYPE_BYTES = 64;

/** The key type named inside an SSH wire-format key blob (`ssh-ed25519`, `ssh-rsa`, ...). */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const len = keyBlob.readUInt32BE(0);
  if (len <= 0 || len > MAX_KEY_TYPE_BYTES || keyBlob.length < 4 + len) return 'unknown';
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

export interface KnownHostEntry {
  marker: 'revoked' | 'cert-authority' | null;
  /** Comma-separated host patterns (plain, wildcard, negated) or a hashed `|1|salt|hash` name. */
  hosts: string;
  keyType: string;
  key: Buffer;
  line: number;
}

/** Parses known_hosts text; malformed lines and comments are skipped. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else return;
    }
    const [hosts, keyType, b64] = fields;
    if (!hosts || !keyType || !b64 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) return;
    const key = Buffer.from(b64, 'base64');
    if (key.length === 0) return;
    out.push({ marker, hosts, keyType, key, line: i + 1 });
  });
  return out;
}

/** The name OpenSSH looks up: `addr` on port 22, `[addr]:port` otherwise. */
export function knownHostsName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

/** Does a known_hosts host field match `name` (plain or `[addr]:port`)? Handles hashing, wildcards, negation. */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const digest = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return digest === hash;
  }
  let matched = false;
  for (const p of field.split(',')) {
    if (p === '') continue;
    if (p.startsWith('!')) {
      if (globToRegExp(p.slice(1)).test(name)) return false;
    } else if (globToRegExp(p).test(name)) {
      matched = true;
    }
  }
  return matched;
}

/** Plain (non-CA) key entries of known_hosts that apply to this host. */
export function entriesFor(entries: KnownHostEntry[], address: string, port: number): KnownHostEntry[] {
  const name = knownHostsName(address, port);
  return entries.filter((e) => e.marker !== 'cert-authority' && hostFieldMatches(e.hosts, name));
}

/**
 * The server host key algorithms to offer, from the key types known_hosts lists for a host,
 * so the server presents a key we can actually check (as OpenSSH does). Empty = no preference.
 */
export function hostKeyAlgorithmsFor(entries: KnownHostEntry[]): string[] {
  const algos: string[] = [];
  for (const e of entries) {
    if (e.marker !== null) continue;
    const add =
      e.keyType === 'ssh-rsa'
        ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
        : ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-dss'].includes(e.keyType)
          ? [e.keyType]
          : [];
    for (const a of add) if (!algos.includes(a)) algos.push(a);
  }
  return algos;
}

/**
 * Verifies a presented key blob. With a pin, the pin decides (known_hosts is not consulted);
 * otherwise known_hosts must hold this exact key for this host, and must not revoke it.
 */
export function verifyHostKey(args: {
  keyBlob: Buffer;
  address: string;
  port: number;
  pinned: string | null;
  knownHosts: { path: string; entries: KnownHostEntry[] } | null;
}): HostKeyVerdict {
  const { keyBlob, address, port } = args;
  const presented = fingerprintOf(keyBlob);
  const type = keyTypeOf(keyBlob);
  const where = knownHostsName(address, port);
  if (args.pinned !== null) {
    const pin = normaliseFingerprint(args.pinned);
    if (pin === null) {
      return {
        ok: false,
        code: 'HOST_KEY_UNKNOWN',
        message: `pinned host_key ${JSON.stringify(args.pinned)} is not a SHA256 fingerprint (expected SHA256:<43 base64 chars>, as ssh-keygen -lf prints it); refusing ${where} which presented ${presented} (${type})`,
      };
    }
    if (pin === presented) return { ok: true };
    return {
      ok: false,
      code: 'HOST_KEY_MISMATCH',
      message: `host key mismatch for ${where}: server presented ${presented} (${type}) but host_key pins ${pin}. The host was reinstalled, or this is not the intended host; refusing to connect. If the change is legitimate, update host_key after checking the key out of band (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host)`,
    };
  }
  if (args.knownHosts === null) {
    return {
      ok: false,
      code: 'HOST_KEY_UNKNOWN',
      message: `no host_key pinned and no known_hosts file for ${where}, which presented ${presented} (${type}); refusing an unverified host. Pin host_key: "${presented}" after checking it out of band`,
    };
  }
  const mine = entriesFor(args.knownHosts.entries, address, port);
  const revoked = mine.find((e) => e.marker === 'revoked' && e.key.equals(keyBlob));
  if (revoked) {
    return {
      ok: false,
      code: 'HOST_KEY_MISMATCH',
      message: `host key ${presented} (${type}) of ${where} is marked @revoked in ${args.knownHosts.path}:${revoked.line}; refusing to connect`,
    };
  }
  const plain = mine.filter((e) => e.marker === null);
  if (plain.some((e) => e.key.equals(keyBlob))) return { ok: true };
  if (plain.length > 0) {
    const lines = plain.map((e) => `${e.line} (${e.keyType} ${fingerprintOf(e.key)})`).join(', ');
    return {
      ok: false,
      code: 'HOST_KEY_MISMATCH',
      message: `host key mismatch for ${where}: server presented ${presented} (${type}), which differs from ${args.knownHosts.path} line ${lines}. The host was reinstalled, or this is not the intended host; refusing to connect`,
    };
  }
  return {
    ok: false,
    code: 'HOST_KEY_UNKNOWN',
    message: `host ${where} is not in ${args.knownHosts.path} (it presented ${presented}, ${type}); refusing an unknown host. Add its key after checking it out of band (ssh-keyscan, then compare with ssh-keygen -lf on the host), or pin host_key`,
  };
}
