/**
 * `berth import-kamal`: a Kamal config (src/kamal/source.ts) -> a berth config, and a note
 * for every Kamal key that does not carry over, saying why. Pure: what it reads is the
 * KamalSource; what it gives back is data and text.
 *
 * One app per Kamal service. A service whose only role is routed (`web`, or a plain list of
 * servers) is the app as berth has always read it; several roles become the app's
 * `processes`; accessories become apps of their own (accessories.ts).
 */
import { keyPath } from '../config/reader.js';
import { validateConfigDocument } from '../config/validate.js';
import { ConfigError, type ConfigIssue } from '../domain/errors.js';
import { splitReference } from '../domain/naming.js';
import { appName, readAccessories } from './accessories.js';
import { readContainer, readEnv, secretsFile } from './container.js';
import { MapContext, section, type Doc } from './context.js';
import { readHooks } from './hooks.js';
import { readRegistry, repositoryOf } from './registry.js';
import { renderConfig } from './render.js';
import { HostTable, KNOWN_HOSTS, readRoles, type KamalRole } from './servers.js';
import { isKamal1, isProxied, noteTraefik, readiness, readTraffic } from './traffic.js';
import type { KamalSource } from './source.js';

export interface Imported {
  /** The berth config as printed: YAML with a header and comments. */
  yaml: string;
  config: Doc;
  /** `kamal.key.path: why`, every Kamal key that did not carry over (or changed meaning). */
  notes: ConfigIssue[];
  /** What `berth check-config` would still say of `config` (empty unless a mapping is missing). */
  issues: ConfigIssue[];
}

/** Top-level keys the mapping reads. */
const MAPPED = [
  'service', 'image', 'servers', 'registry', 'env', 'labels', 'volumes', 'logging', 'ssh', 'proxy', 'traefik', 'healthcheck', 'boot',
  'retain_containers', 'accessories', 'primary_role', 'allow_empty_roles', 'readiness_delay', 'deploy_timeout', 'drain_timeout',
  'stop_timeout', 'stop_wait_time', 'hooks_path',
];
/** Top-level keys that do not carry over, and why. */
const NOT_MAPPED: Record<string, string> = {
  builder: 'berth deploys images you have built: build and push them (CI), then `berth deploy APP TAG`',
  asset_path: "berth keeps no assets of the previous version (Kamal's asset bridging): fingerprinted assets from a CDN, or both versions' assets in the image",
  hooks_output: "berth keeps each hook's output tail in the release's events",
  secrets_path: 'berth reads secret values from data/secrets/APP.env and registry passwords from data/registries.env',
  error_pages_path: "berth's proxy serves no custom error pages",
  require_destination: 'berth has no destinations: one berth.yml per environment (import each with -d)',
  minimum_version: 'nothing to check: this file is for berth now',
  run_directory: "berth keeps its files in each host's state_dir (default /var/lib/berth)",
  sshkit: 'berth keeps one SSH connection per host',
  output: 'berth logs JSON lines (BERTH_LOG_LEVEL) and serves Prometheus metrics at /metrics',
  aliases: 'the berth CLI has no aliases: use shell aliases',
};
const ROLE_KEYS = ['hosts', 'cmd', 'options', 'logging', 'labels', 'env', 'proxy', 'traefik', 'healthcheck', 'stop_timeout'];
const ROLE_WHY: Record<string, string> = { asset_path: NOT_MAPPED.asset_path! };

export function importKamal(source: KamalSource): Imported {
  const { doc } = source;
  const ctx = new MapContext(source.erb);
  for (const key of Object.keys(doc)) {
    if (MAPPED.includes(key)) continue;
    ctx.note(key, key.startsWith('x-') ? 'a YAML extension: nothing for berth' : (NOT_MAPPED[key] ?? 'not a Kamal setting berth knows'));
  }
  const service = ctx.plain(doc.service, 'service');
  if (service === undefined) ctx.note('service', 'no service name: the app is called "app"');
  const name = appName(service ?? 'app');
  if (service !== undefined && name !== service) ctx.note('service', `the app is called ${name} (lowercase letters, digits and "-")`);

  const registries: Record<string, Doc> = {};
  const registry = readRegistry(ctx, doc.registry, 'registry', registries);
  const hosts = new HostTable(ctx, doc.ssh);
  const roles = readRoles(ctx, hosts, doc.servers);
  if (doc.image === undefined) ctx.note('image', `no image: ${name} is used`);
  const app = readApp(ctx, source, name, repository(ctx, repositoryOf(registry, ctx.plain(doc.image, 'image') ?? name)), roles);
  if (isKamal1(doc)) noteTraefik(ctx, doc);

  const accessories = readAccessories({ ctx, hosts, roles, registries, service: name }, doc.accessories);
  const config: Doc = {
    hosts: hosts.hosts,
    ...(Object.keys(registries).length > 0 ? { registries } : {}),
    apps: { [name]: app, ...Object.fromEntries(accessories.map((a) => [a.name, a.app])) },
  };
  ctx.comment(['hosts'], [
    "FILL IN: hosts are named after Kamal's addresses. berth never accepts an unknown SSH host key: each host's is",
    `checked against ${KNOWN_HOSTS} (add them: ssh-keyscan, then compare the fingerprints), or pin it in its place`,
    'with host_key: "SHA256:…" (as ssh-keygen -lf prints it). Set ssh_key unless ~/.ssh/id_* is the key.',
  ].join('\n'));
  for (const tag of source.erb) {
    if (!ctx.erbNoted.has(tag)) ctx.note(`${tag.file}:${tag.line}`, `ERB ${tag.source} is not evaluated${tag.kind === 'control' ? ': every branch around it was read as YAML' : ''}`);
  }
  return { yaml: renderConfig(config, header(source, name), ctx.comments), config, notes: ctx.notes.list, issues: check(config) };
}

function header(source: KamalSource, app: string): string {
  return [
    ` berth config generated by \`berth import-kamal\` from ${source.files.join(' + ')}.`,
    ' Read the notes it printed (stderr) before using it: what did not carry over, and why.',
    ' Fill in the hosts (below), then check it with `berth check-config FILE`.',
    ` Deploy with \`berth deploy ${app} VERSION\`: VERSION is the image tag you pushed (Kamal tagged the git commit).`,
  ].join('\n');
}

/** Kamal's image is a repository it tags at each deploy; a tag written into it is dropped. */
function repository(ctx: MapContext, image: string): string {
  const { repo, tag } = splitReference(image);
  if (image !== repo) ctx.note('image', `the tag ${tag} is not part of berth's image (each release names its version): deploy it with that version`);
  return repo.toLowerCase();
}

function readApp(ctx: MapContext, source: KamalSource, name: string, image: string, roles: KamalRole[]): Doc {
  const { doc } = source;
  const shared = readContainer(ctx, { labels: doc.labels, volumes: doc.volumes, logging: doc.logging }, '', name);
  const { env, secrets } = readEnv(ctx, doc.env, 'env', name);
  if (secrets.length > 0) ctx.note('env.secret', `the secret values go in ${secretsFile(name)} (a line NAME=value each, mode 0600)`);
  const rollout = readBoot(ctx, doc.boot);
  const preDeploy = readHooks(ctx, source.hooks);
  const retain = ctx.integer(doc.retain_containers, 'retain_containers');
  const stopTimeout = ctx.seconds(doc.stop_timeout ?? doc.stop_wait_time, doc.stop_timeout !== undefined ? 'stop_timeout' : 'stop_wait_time');
  const traffic = roles.map((role) => readTraffic(ctx, doc, role));
  const rolloutKeys: Doc = {
    ...(Object.keys(rollout).length > 0 ? { rollout } : {}),
    ...(preDeploy.length > 0 ? { hooks: { pre_deploy: preDeploy } } : {}),
    ...(retain !== undefined ? { retain_containers: retain } : {}),
    ...(stopTimeout !== undefined ? { stop_timeout: stopTimeout } : {}),
  };
  // In the order berth's README documents an app's keys.
  const [only] = roles;
  if (roles.length === 1 && only && isProxied(doc, only)) {
    const own = readRole(ctx, only, name);
    const t = traffic[0]!;
    return {
      image,
      hosts: only.hosts,
      ...(t.port !== undefined ? { port: t.port } : {}),
      healthcheck: t.healthcheck,
      ...rolloutKeys,
      ...(own.stopTimeout !== undefined ? { stop_timeout: own.stopTimeout } : {}),
      proxy: t.proxy,
      ...withEnv({ ...env, ...own.env }, [...secrets, ...own.secrets.filter((s) => !secrets.includes(s))]),
      ...shared,
      ...own.container,
      ...labelsOf(shared, own.container),
    };
  }
  // berth serves one process of an app through the proxy: the first role Kamal routes; its port is the app's.
  const served = traffic.findIndex((t) => t.proxy !== undefined);
  const port = traffic[served]?.port;
  const processes = Object.fromEntries(
    roles.map((role, i) => {
      const t = traffic[i]!;
      const own = readRole(ctx, role, name);
      const process = appName(role.name);
      if (process !== role.name) ctx.note(role.path, `the process is called ${process}`);
      const serves = i === served;
      if (t.proxy !== undefined && !serves) ctx.note(role.path, `berth routes one process of an app (${appName(roles[served]!.name)}): this one runs without a route; an app of its own can route it`);
      return [process, {
        hosts: role.hosts,
        ...own.container,
        ...withEnv(own.env, own.secrets),
        ...(own.stopTimeout !== undefined ? { stop_timeout: own.stopTimeout } : {}),
        ...(serves ? { proxy: t.proxy } : {}),
        healthcheck: serves || t.proxy === undefined ? t.healthcheck : readiness(ctx, doc),
      }];
    }),
  );
  return { image, ...(port !== undefined ? { port } : {}), ...rolloutKeys, ...withEnv(env, secrets), ...shared, processes };
}

function readRole(ctx: MapContext, role: KamalRole, app: string): { env: Doc; secrets: string[]; container: Doc; stopTimeout: string | undefined } {
  ctx.rest(role.settings, role.path, ROLE_KEYS, (k) => ROLE_WHY[k] ?? 'not a Kamal role setting berth knows');
  const { env, secrets } = readEnv(ctx, role.settings.env, keyPath(role.path, 'env'), app);
  const stopTimeout = ctx.seconds(role.settings.stop_timeout, keyPath(role.path, 'stop_timeout'));
  return { env, secrets, container: readContainer(ctx, role.settings, role.path, app), stopTimeout };
}

function withEnv(env: Doc, secrets: string[]): Doc {
  return { ...(Object.keys(env).length > 0 ? { env } : {}), ...(secrets.length > 0 ? { secrets } : {}) };
}

/** The root's labels and the role's, the role's winning: Kamal merges them so. */
function labelsOf(shared: Doc, own: Doc): Doc {
  return shared.labels || own.labels ? { labels: { ...section(shared.labels), ...section(own.labels) } } : {};
}

/** `boot: {limit, wait}` -> `rollout: {parallelism, delay}`. */
function readBoot(ctx: MapContext, boot: unknown): Doc {
  const b = section(boot);
  const rollout: Doc = {};
  const limit = ctx.plain(b.limit, 'boot.limit');
  if (limit !== undefined) {
    if (/^\d+$/.test(limit)) rollout.parallelism = Number(limit);
    else if (/^\d{1,3}%$/.test(limit)) rollout.parallelism = limit;
    else ctx.note('boot.limit', `expected a count or a percentage, got ${JSON.stringify(limit)}: left out (berth goes one host at a time)`);
  } else {
    ctx.note('boot', 'without boot.limit Kamal boots every host at once; berth goes one host at a time (rollout.parallelism: 1) unless told otherwise');
  }
  const delay = ctx.seconds(b.wait, 'boot.wait');
  if (delay !== undefined) rollout.delay = delay;
  ctx.rest(b, 'boot', ['limit', 'wait'], (k) => (k === 'parallel_roles' ? "berth rolls an app's processes out together, host by host" : 'not a Kamal boot setting berth knows'));
  return rollout;
}

/** berth's own validation of the whole output (what `berth check-config` says of it). */
function check(config: Doc): ConfigIssue[] {
  try {
    validateConfigDocument(config);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
}
