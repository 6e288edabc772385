/**
 * An app's container settings (cmd, entrypoint, volumes, memory, cpus, labels, logging,
 * stop_signal, user, extra_hosts, privileged) from the document's keys, and the rule
 * that keeps an API client from taking over a host through them: privileged containers
 * and mounts of the host's root, the Docker socket or system directories need the
 * operator's `allow_host_access: true` in the config file.
 */
import type { ContainerSettings, VolumeSpec } from '../domain/app-spec.js';
import { LABEL_PREFIX } from '../domain/labels.js';
import { check, describe, type Fields, type Issues, keyPath, listOf, readBoolean, readEntries, readMap, type Read } from './reader.js';

export const CONTAINER_KEYS = ['cmd', 'entrypoint', 'volumes', 'memory', 'cpus', 'labels', 'logging', 'stop_signal', 'user', 'extra_hosts', 'privileged'] as const;

/** What the operator allows apps (the config file's top level; never an API body). */
export interface AppPolicy {
  allowHostAccess: boolean;
}

const HOST_ACCESS_HINT = 'an operator can allow it for every app with `allow_host_access: true` at the top of the config file (whoever holds the API token then owns the hosts)';

/**
 * Host paths that hand over the host: its root, the Docker socket (and the directories
 * holding it), and system directories whose contents are the host's configuration or
 * its processes. A mount of one of them or of anything below them is refused.
 */
const HOST_PATHS = ['/', '/var/run/docker.sock', '/run/docker.sock', '/var/run', '/run', '/var/lib/docker', '/etc', '/proc', '/sys', '/dev', '/boot', '/root', '/usr', '/bin', '/sbin', '/lib'];

/** Docker's smallest memory limit. */
const MIN_MEMORY_BYTES = 6 * 1024 * 1024;
const MEMORY_UNITS: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** The settings the document sets, or undefined when it sets none (the spec then has no `container`). */
export function readContainerSettings(f: Fields, policy: AppPolicy): ContainerSettings | undefined {
  const settings: ContainerSettings = {};
  const set = <K extends keyof ContainerSettings>(key: K, value: ContainerSettings[K] | undefined) => {
    if (value !== undefined) settings[key] = value;
  };
  set('cmd', f.get<string[] | undefined>('cmd', readArgv, undefined));
  set('entrypoint', f.get<string[] | undefined>('entrypoint', readArgv, undefined));
  set('volumes', f.get<VolumeSpec[] | undefined>('volumes', readVolumes(policy), undefined));
  set('memoryBytes', f.get<number | undefined>('memory', readMemory, undefined));
  set('cpus', f.get<number | undefined>('cpus', readCpus, undefined));
  set('labels', f.has('labels') ? readLabels(f.raw('labels'), f.at('labels'), f.issues) : undefined);
  set('logging', f.has('logging') ? readLogging(f.raw('logging'), f.at('logging'), f.issues) : undefined);
  set('stopSignal', f.get<string | undefined>('stop_signal', readSignal, undefined));
  set('user', f.get<string | undefined>('user', readUser, undefined));
  set('extraHosts', f.get<string[] | undefined>('extra_hosts', listOf(readExtraHost, 'a list of "name:address"'), undefined));
  const privileged = f.get<boolean | undefined>('privileged', readBoolean, undefined);
  if (privileged && !policy.allowHostAccess) f.issues.add(f.at('privileged'), `a privileged container can take over its host: refused; ${HOST_ACCESS_HINT}`);
  else if (privileged) settings.privileged = true;
  return Object.keys(settings).length > 0 ? settings : undefined;
}

/**
 * A command in exec form: a list of words, or one string split into words as a shell
 * would (single and double quotes group, a backslash escapes) — but never run by a
 * shell: no variables, globs or pipes (write `["sh", "-c", "..."]` for those).
 */
const readArgv: Read<string[]> = (value, path, issues) => {
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((w) => typeof w === 'string')) return value as string[];
    issues.add(path, `expected a non-empty list of strings or a command string, got ${describe(value)}`);
    return undefined;
  }
  const words = typeof value === 'string' ? splitWords(value) : null;
  if (words && words.length > 0) return words;
  issues.add(path, typeof value === 'string' && words === null ? 'unbalanced quote in the command' : `expected a command string or a non-empty list of strings, got ${describe(value)}`);
  return undefined;
};

/** Shell-style word splitting without expansions; null for an unbalanced quote. */
export function splitWords(s: string): string[] | null {
  const words: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length && '"\\$`'.includes(s[i + 1]!)) word += s[++i]!;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < s.length) {
      word = (word ?? '') + s[++i]!;
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) return null;
  if (word !== null) words.push(word);
  return words;
}

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const ABSOLUTE = /^\/[^\0]*$/;

/** Normalised: no trailing slash (except `/`), no `//`, `.` or `..` segments (a `..` is refused: it hides where a mount points). */
function normalPath(p: string): string | null {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) return null;
  return `/${parts.join('/')}`;
}

function readVolumes(policy: AppPolicy): Read<VolumeSpec[]> {
  const item: Read<VolumeSpec> = (value, path, issues) => {
    const parts = typeof value === 'string' ? value.split(':') : [];
    const [source = '', target = '', mode, ...more] = parts;
    if (parts.length < 2 || more.length > 0 || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
      issues.add(path, `expected "NAME:/path", "/host/path:/path" or either with ":ro", got ${describe(value)}`);
      return undefined;
    }
    const targetPath = ABSOLUTE.test(target) ? normalPath(target) : null;
    if (!targetPath || targetPath === '/') {
      issues.add(path, `the container path must be an absolute path other than "/" (without ".."), got ${describe(target)}`);
      return undefined;
    }
    if (source.startsWith('/')) {
      const hostPath = normalPath(source);
      if (!hostPath) {
        issues.add(path, `the host path must be absolute without "..", got ${describe(source)}`);
        return undefined;
      }
      const handsOver = HOST_PATHS.find((h) => hostPath === h || (h !== '/' && hostPath.startsWith(`${h}/`)));
      if (handsOver && !policy.allowHostAccess) {
        issues.add(path, `mounting ${hostPath} gives the container its host (${handsOver === '/' ? "the host's root" : handsOver}): refused; ${HOST_ACCESS_HINT}`);
        return undefined;
      }
      return { source: hostPath, target: targetPath, readOnly: mode === 'ro' };
    }
    if (!VOLUME_NAME.test(source)) {
      issues.add(path, `expected a volume name (letters, digits, "_", "." and "-") or an absolute host path, got ${describe(source)}`);
      return undefined;
    }
    return { source, target: targetPath, readOnly: mode === 'ro' };
  };
  return (value, path, issues) => {
    const volumes = listOf(item, 'a list of volumes')(value, path, issues);
    const targets = new Set<string>();
    volumes?.forEach((v, i) => {
      if (targets.has(v.target)) issues.add(`${path}[${i}]`, `${v.target} is mounted twice`);
      targets.add(v.target);
    });
    return volumes;
  };
}

/** `512m`, `1g`, `1.5g` or a number of bytes. */
const readMemory: Read<number> = check('a size like "512m" or "1g" (at least 6m)', (v) => {
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*([bkmg])?$/i.exec(v.trim()) : null;
  const bytes = typeof v === 'number' ? v : m ? Number(m[1]) * MEMORY_UNITS[(m[2] ?? 'b').toLowerCase()]! : NaN;
  return Number.isFinite(bytes) && bytes >= MIN_MEMORY_BYTES && bytes <= 2 ** 50 ? Math.round(bytes) : undefined;
});

const readCpus: Read<number> = check('a number of CPUs from 0.01 to 1024', (v) => (typeof v === 'number' && v >= 0.01 && v <= 1024 ? v : undefined));

const readSignal: Read<string> = check('a signal name like "SIGQUIT"', (v) => (typeof v === 'string' && /^SIG[A-Z0-9+-]{2,12}$/.test(v) ? v : undefined));

const readUser: Read<string> = check('"user" or "user:group" (names or numeric ids)', (v) =>
  typeof v === 'string' && /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/.test(v) ? v : undefined,
);

/** `name:address`, Docker's extra_hosts (`host-gateway` for the host itself). */
const readExtraHost: Read<string> = check('"name:address" (an IPv4/IPv6 address or host-gateway)', (v) => {
  if (typeof v !== 'string') return undefined;
  const at = v.indexOf(':');
  const name = v.slice(0, at);
  const address = v.slice(at + 1);
  const ipv4 = /^(\d{1,3})(\.\d{1,3}){3}$/.test(address) && address.split('.').every((o) => Number(o) <= 255);
  const ipv6 = /^[0-9A-Fa-f:]+$/.test(address) && address.includes(':');
  return at > 0 && /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(name) && (ipv4 || ipv6 || address === 'host-gateway') ? v : undefined;
});

function readStringMap(doc: unknown, path: string, issues: Issues, keyOk: (key: string, at: string) => boolean): Record<string, string> {
  const out: Array<[string, string]> = [];
  for (const [key, value] of readEntries(doc, path, issues)) {
    const at = keyPath(path, key);
    if (!keyOk(key, at)) continue;
    if (typeof value !== 'string') issues.add(at, `expected a string, got ${describe(value)}${typeof value === 'number' || typeof value === 'boolean' ? ` (quote it: "${String(value)}")` : ''}`);
    else out.push([key, value]);
  }
  return Object.fromEntries(out);
}

function readLabels(doc: unknown, path: string, issues: Issues): Record<string, string> {
  return readStringMap(doc, path, issues, (key, at) => {
    if (key.startsWith(LABEL_PREFIX)) {
      issues.add(at, `labels starting with "${LABEL_PREFIX}" are berth's own (ownership and identity of its containers)`);
      return false;
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/.test(key)) {
      issues.add(at, 'expected a label key of letters, digits, ".", "_", "/" and "-"');
      return false;
    }
    return true;
  });
}

function readLogging(doc: unknown, path: string, issues: Issues): ContainerSettings['logging'] {
  const f = readMap(doc, path, issues, ['driver', 'options']);
  const driver = f.need('driver', check('a logging driver name like "json-file"', (v) => (typeof v === 'string' && /^[a-z0-9][a-z0-9_.-]{0,63}$/.test(v) ? v : undefined)), '');
  const options = f.has('options') ? readStringMap(f.raw('options'), f.at('options'), f.issues, () => true) : {};
  return { driver, options };
}
