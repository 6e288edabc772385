/**
 * Kamal's `servers` (a list of addresses, or roles each with its addresses) and `ssh` ->
 * berth's named `hosts` and the roles that become the app (one role) or its processes.
 * Kamal connects by address; berth names each host and must verify its SSH key, so each
 * address becomes a host named after it whose key is checked against the operator's
 * known_hosts (valid as printed; pinning `host_key` is the operator's choice).
 */
import { isIP } from 'node:net';
import { indexPath, isMap, keyPath } from '../config/reader.js';
import { isDnsName } from '../config/values.js';
import { isHostName } from '../domain/naming.js';
import { list, section, type Doc, type MapContext } from './context.js';

export interface KamalRole {
  name: string;
  /** `servers.web`, or `servers` for a plain list. */
  path: string;
  /** berth host names. */
  hosts: string[];
  /** The role's own settings (cmd, options, proxy, …); empty for a list of addresses. */
  settings: Doc;
}

/** Where berth verifies a host's SSH key when the import cannot know the key itself. */
export const KNOWN_HOSTS = '~/.ssh/known_hosts';
/** An address the import cannot carry over (ERB) becomes this reserved, never-resolving name (RFC 2606). */
const PLACEHOLDER_DOMAIN = 'invalid';

const SSH_KEYS = ['user', 'port', 'keys'] as const;
const SSH_WHY: Record<string, string> = {
  proxy: 'berth connects to each host directly: no jump host (reach the hosts from where berth runs)',
  proxy_command: 'berth connects to each host directly: no proxy command',
  key_data: 'berth reads a key file: set ssh_key on each host (the key stays out of the config)',
  keys_only: 'berth uses the one key of ssh_key (or ~/.ssh/id_*), no agent',
  config: 'berth reads no OpenSSH config file: set address, port and user on each host',
  log_level: 'berth logs SSH failures in its host status and log (BERTH_LOG_LEVEL)',
  forward_agent: 'berth forwards no agent',
};

/** The hosts of the output, by address; accessories add theirs to the same map. */
export class HostTable {
  readonly hosts: Record<string, Doc> = {};
  /** Kamal tags (`- 172.0.0.2: experiments`) -> host names, for accessories placed by tag. */
  readonly tagged = new Map<string, string[]>();
  private readonly byAddress = new Map<string, string>();
  private placeholders = 0;
  private readonly defaults: Doc;

  constructor(
    private readonly ctx: MapContext,
    ssh: unknown,
  ) {
    this.defaults = readSsh(ctx, ssh);
  }

  /** The berth host name for a Kamal server entry (`addr`, or `{addr: tags}`), declared on first use. */
  add(entry: unknown, path: string): string | undefined {
    const [raw, tags] = isMap(entry) ? (Object.entries(entry)[0] ?? []) : [entry, undefined];
    if (typeof raw !== 'string' && typeof raw !== 'number') {
      this.ctx.note(path, 'expected an address: left out');
      return undefined;
    }
    const address = this.ctx.plain(raw, path);
    const known = address !== undefined ? this.byAddress.get(address) : undefined;
    const name = known ?? this.declare(address, path);
    for (const tag of list(tags)) {
      if (typeof tag !== 'string') continue;
      this.tagged.set(tag, [...(this.tagged.get(tag) ?? []), name]);
    }
    return name;
  }

  private declare(address: string | undefined, path: string): string {
    let target = address;
    if (target === undefined || (isIP(target) === 0 && !isDnsName(target))) {
      if (target !== undefined) this.ctx.note(path, `${JSON.stringify(target)} is not an IP address or DNS name: a placeholder address to replace`);
      target = `fill-in-${++this.placeholders}.${PLACEHOLDER_DOMAIN}`;
    }
    const name = this.unique(hostName(target));
    this.byAddress.set(address ?? target, name);
    this.hosts[name] = { address: target, ...this.defaults, known_hosts: KNOWN_HOSTS };
    return name;
  }

  private unique(base: string): string {
    let name = base;
    for (let i = 2; Object.hasOwn(this.hosts, name); i++) name = `${base.slice(0, 60)}-${i}`;
    return name;
  }
}

/** `10.0.0.5` -> `10-0-0-5`, `app1.example.com` -> `app1-example-com`: a host name without quoting in key paths. */
function hostName(address: string): string {
  const name = address.replace(/[^A-Za-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return isHostName(name) ? name : 'host';
}

/** `ssh` -> the fields every host gets (user, port, ssh_key). */
function readSsh(ctx: MapContext, ssh: unknown): Doc {
  const s = section(ssh);
  const out: Doc = { user: ctx.plain(s.user, 'ssh.user') ?? 'root' };
  const port = ctx.integer(s.port, 'ssh.port');
  if (port !== undefined) out.port = port;
  const keys = list(s.keys);
  const key = ctx.plain(keys[0], indexPath('ssh.keys', 0));
  if (key !== undefined) out.ssh_key = key;
  keys.slice(1).forEach((_, i) => ctx.note(indexPath('ssh.keys', i + 1), 'berth uses one key per host (ssh_key): the first one is kept'));
  ctx.rest(s, 'ssh', SSH_KEYS, (k) => SSH_WHY[k] ?? 'not a Kamal ssh setting berth knows');
  return out;
}

/**
 * The roles of `servers`: a plain list is the role `web`, as Kamal reads it. A role with no
 * servers is left out (with allow_empty_roles Kamal skips it too; without, Kamal refuses it).
 */
export function readRoles(ctx: MapContext, hosts: HostTable, servers: unknown): KamalRole[] {
  if (servers === undefined || servers === null) {
    ctx.note('servers', 'no servers: the app gets no hosts (required by berth): add them');
    return [];
  }
  if (Array.isArray(servers)) return [{ name: 'web', path: 'servers', hosts: hostsOf(hosts, servers, 'servers'), settings: {} }];
  const roles: KamalRole[] = [];
  for (const [name, value] of Object.entries(section(servers))) {
    const path = keyPath('servers', name);
    const settings = Array.isArray(value) ? {} : section(value);
    const entries = Array.isArray(value) ? value : list(settings.hosts);
    const hostsPath = Array.isArray(value) ? path : keyPath(path, 'hosts');
    const role = { name, path, hosts: hostsOf(hosts, entries, hostsPath), settings };
    if (role.hosts.length === 0) ctx.note(path, 'a role without servers: left out');
    else roles.push(role);
  }
  return roles;
}

function hostsOf(hosts: HostTable, entries: unknown[], path: string): string[] {
  const names = entries.map((e, i) => hosts.add(e, indexPath(path, i))).filter((n): n is string => n !== undefined);
  return [...new Set(names)];
}
