/**
 * Kamal's accessories (a database, a cache: services booted once, not deployed) -> berth
 * apps of their own with `rollout.strategy: recreate`, so a host never runs two of one.
 * An accessory is not an HTTP app: its one process is healthy once it has run for the
 * readiness delay (a process without proxy, the roles shape). Its image's tag is the
 * version to deploy, printed with the command that deploys it.
 */
import { indexPath, isMap, keyPath } from '../config/reader.js';
import { isAppName, splitReference } from '../domain/naming.js';
import { readContainer, readEnv, secretsFile, volumeOf } from './container.js';
import { list, section, type Doc, type MapContext } from './context.js';
import { readRegistry, repositoryOf } from './registry.js';
import type { HostTable, KamalRole } from './servers.js';

const ACCESSORY_KEYS = ['service', 'image', 'registry', 'host', 'hosts', 'role', 'roles', 'tag', 'tags', 'cmd', 'port', 'labels', 'options', 'env', 'files', 'directories', 'volumes'];
const ACCESSORY_WHY: Record<string, string> = {
  network: 'berth runs every app on its own Docker network (berth)',
  proxy: 'declare the accessory as an app with a proxy route if it serves HTTP',
};
/** What a started accessory must survive before it counts as up (Kamal 2's readiness_delay default). */
const READINESS = '7s';

export interface AccessoryApp {
  name: string;
  app: Doc;
}

export interface AccessoryContext {
  ctx: MapContext;
  hosts: HostTable;
  roles: readonly KamalRole[];
  registries: Record<string, Doc>;
  service: string;
}

export function readAccessories(a: AccessoryContext, accessories: unknown): AccessoryApp[] {
  return Object.entries(section(accessories)).flatMap(([name, value]) => {
    const out = readAccessory(a, name, section(value), keyPath('accessories', name));
    return out ? [out] : [];
  });
}

function readAccessory({ ctx, hosts, roles, registries, service }: AccessoryContext, accessory: string, s: Doc, path: string): AccessoryApp | undefined {
  const name = appName(ctx.plain(s.service, keyPath(path, 'service')) ?? `${service}-${accessory}`);
  const image = ctx.plain(s.image, keyPath(path, 'image'));
  if (image === undefined) {
    ctx.note(path, 'no image: the accessory is left out');
    return undefined;
  }
  const registry = readRegistry(ctx, s.registry, keyPath(path, 'registry'), registries);
  const { repo, tag } = splitReference(repositoryOf(registry, image));
  const placed = [
    ...list(s.host ?? s.hosts).map((h, i) => hosts.add(h, s.host !== undefined ? keyPath(path, 'host') : indexPath(keyPath(path, 'hosts'), i))),
    ...list(s.role ?? s.roles).flatMap((r) => roles.find((role) => role.name === r)?.hosts ?? []),
    ...list(s.tag ?? s.tags).flatMap((t) => hosts.tagged.get(String(t)) ?? []),
  ].filter((h): h is string => h !== undefined);
  if (placed.length === 0) ctx.note(path, 'on no host: add its hosts');

  ctx.rest(s, path, ACCESSORY_KEYS, (k) => ACCESSORY_WHY[k] ?? 'not a Kamal accessory setting berth knows');
  if (s.port !== undefined) ctx.note(keyPath(path, 'port'), "berth publishes no host port for an app, and its proxy speaks HTTP: a database stays reachable only from containers on berth's network (or keep it a Kamal accessory)");
  list(s.files).forEach((_, i) => ctx.note(indexPath(keyPath(path, 'files'), i), 'berth copies no files to hosts: build them into the image or put them on a volume'));
  const directories = list(s.directories).flatMap((d, i): Array<[string, string]> => {
    const at = indexPath(keyPath(path, 'directories'), i);
    const volume = directory(ctx, d, at, name);
    return volume === undefined ? [] : [[volume, at]];
  });
  const container = readContainer(ctx, s, path, name, directories);
  const { env, secrets } = readEnv(ctx, s.env, keyPath(path, 'env'), name);
  if (secrets.length > 0) ctx.note(keyPath(path, 'env'), `${name}'s secret values go in ${secretsFile(name)}`);
  const app: Doc = {
    image: repo,
    rollout: { strategy: 'recreate' },
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...(secrets.length > 0 ? { secrets } : {}),
    ...container,
    processes: { [appName(accessory)]: { hosts: [...new Set(placed)], healthcheck: { min_healthy: READINESS } } },
  };
  ctx.comment(['apps', name], `accessory ${accessory}: deploy it with \`berth deploy ${name} ${tag}\``);
  ctx.note(path, `now the app ${name} (strategy recreate): deploy it with \`berth deploy ${name} ${tag}\``);
  return { name, app };
}

/**
 * A Kamal directory (`mysql-data:/var/lib/mysql`, or `{local, remote}`): Kamal creates the
 * host directory under the accessory's own; a relative one becomes a named volume of berth,
 * named after the app as that directory was, so two accessories' `data` stay apart.
 */
function directory(ctx: MapContext, value: unknown, path: string, app: string): string | undefined {
  const d = isMap(value) ? value : null;
  const spec = d ? `${String(d.local)}:${String(d.remote)}${typeof d.options === 'string' ? `:${d.options}` : ''}` : ctx.plain(value, path);
  if (spec === undefined) return undefined;
  if (d && (d.mode !== undefined || d.owner !== undefined)) ctx.note(path, 'berth sets no mode or owner on a volume: the image (or its entrypoint) must');
  const [local = '', ...rest] = spec.split(':');
  if (local.startsWith('/')) return volumeOf(ctx, spec, path);
  const volume = `${app}-${local.replace(/[^A-Za-z0-9_.-]+/g, '-')}`;
  ctx.note(path, `now the named volume ${volume}: Kamal kept it in the host directory ~/<service>/${local}; move its data over`);
  return volumeOf(ctx, [volume, ...rest].join(':'), path);
}

/** A berth app name from a Kamal service name (`MyApp_db` -> `myapp-db`). */
export function appName(service: string): string {
  const name = service.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+|-+$/g, '').slice(0, 63);
  return isAppName(name) ? name : 'app';
}
