/**
 * What Kamal passes to `docker run` -> berth's container settings and env: `env`
 * (clear values and secret names), `labels`, `volumes`, `logging`, `cmd` and a role's or
 * accessory's `options`. Each value is carried over only when berth accepts it (check.ts).
 */
import { indexPath, isMap, keyPath } from '../config/reader.js';
import { isEnvName } from '../domain/naming.js';
import { refusals } from './check.js';
import { list, section, type Doc, type MapContext } from './context.js';

/** Where the app's secret values live (README, "Secrets"), as notes tell the operator. */
export const secretsFile = (app: string): string => `data/secrets/${app}.env`;

/**
 * `env`: a map of clear values, or `{clear, secret, tags}`. A Kamal secret is a name in
 * .kamal/secrets; berth's is a name in the app's secrets file. A clear value computed by
 * ERB becomes a secret too: its value only exists where the deploy runs.
 */
export function readEnv(ctx: MapContext, value: unknown, path: string, app: string): { env: Doc; secrets: string[] } {
  const env: Doc = {};
  const secrets: string[] = [];
  const e = section(value);
  const structured = 'clear' in e || 'secret' in e || 'tags' in e;
  const clear = structured ? section(e.clear) : e;
  const clearPath = structured ? keyPath(path, 'clear') : path;
  for (const [name, v] of Object.entries(clear)) {
    const at = keyPath(clearPath, name);
    if (!isEnvName(name)) ctx.note(at, 'not a variable name berth accepts (letters, digits and "_"): left out');
    else if (ctx.erbAt(v, at, `now the secret ${name}: put its value in ${secretsFile(app)}`)) secrets.push(name);
    else if (v === null || isMap(v) || Array.isArray(v)) ctx.note(at, 'expected a value: left out');
    else env[name] = String(v);
  }
  list(structured ? e.secret : undefined).forEach((s, i) => {
    const at = indexPath(keyPath(path, 'secret'), i);
    const [name, from] = (ctx.plain(s, at) ?? '').split(':');
    if (!name || !isEnvName(name)) return void ctx.note(at, 'expected a secret name: left out');
    if (from) ctx.note(at, `berth reads ${name} under its own name: put the value of ${from} in ${secretsFile(app)} as ${name}`);
    if (!secrets.includes(name)) secrets.push(name);
  });
  if (structured && e.tags !== undefined) ctx.note(keyPath(path, 'tags'), 'berth has no per-host env: every host of an app gets the same (split the tagged hosts into an app of their own)');
  ctx.rest(structured ? e : {}, path, ['clear', 'secret', 'tags'], () => 'not a Kamal env setting berth knows');
  for (const name of secrets) delete env[name];
  return { env, secrets };
}

/** `docker run` flags of `options` berth has a setting for. */
const OPTION_KEYS: Record<string, string> = { memory: 'memory', cpus: 'cpus', user: 'user', 'add-host': 'extra_hosts', 'stop-signal': 'stop_signal' };
const OPTION_WHY: Record<string, string> = {
  restart: "berth's controller restarts or replaces a container that stops, on its next pass",
  network: "berth runs every app on its own Docker network (berth)",
  publish: 'berth publishes no host ports for apps: traffic comes through its proxy (HTTP)',
  p: 'berth publishes no host ports for apps: traffic comes through its proxy (HTTP)',
};

/**
 * Container settings of a Kamal section (the root, a role, an accessory), each one berth
 * accepts. `mounts` come before the section's own volumes (an accessory's directories).
 */
export function readContainer(ctx: MapContext, s: Doc, path: string, app: string, mounts: Array<[spec: string, at: string]> = []): Doc {
  const out: Doc = {};
  const keep = (key: string, value: unknown, from: string): void => {
    if (value !== undefined && accepted(ctx, key, value, from)) out[key] = value;
  };
  if (s.cmd !== undefined) keep('cmd', ctx.text(s.cmd, keyPath(path, 'cmd')), keyPath(path, 'cmd'));
  const labels = readLabels(ctx, s.labels, keyPath(path, 'labels'));
  if (Object.keys(labels).length > 0) keep('labels', labels, keyPath(path, 'labels'));
  const own = list(s.volumes).flatMap((v, i): Array<[string, string]> => {
    const at = indexPath(keyPath(path, 'volumes'), i);
    const spec = ctx.plain(v, at);
    return spec === undefined ? [] : [[volumeOf(ctx, spec, at), at]];
  });
  // One by one against those kept so far: berth also refuses a container path mounted twice.
  const volumes = [...mounts, ...own].reduce<string[]>((kept, [volume, at]) => (accepted(ctx, 'volumes', [...kept, volume], at) ? [...kept, volume] : kept), []);
  if (volumes.length > 0) out.volumes = volumes;
  if (s.logging !== undefined) keep('logging', readLogging(ctx, s.logging, keyPath(path, 'logging')), keyPath(path, 'logging'));
  for (const [flag, value] of Object.entries(section(s.options))) {
    const at = keyPath(keyPath(path, 'options'), flag);
    const key = OPTION_KEYS[flag];
    if (key === undefined) ctx.note(at, OPTION_WHY[flag] ?? `a docker run flag berth has no setting for (${app}'s container settings: README, "Container settings")`);
    else if (key === 'cpus') keep(key, Number(ctx.plain(value, at)), at);
    else if (key === 'extra_hosts') keep(key, list(value).map((h) => ctx.plain(h, at)), at);
    else keep(key, ctx.plain(value, at), at);
  }
  return out;
}

/** Docker's `src:dst[:options]`: berth takes `ro` and `rw`; SELinux relabelling (`z`, `Z`) it does not do. */
export function volumeOf(ctx: MapContext, spec: string, path: string): string {
  const [source, target, options] = spec.split(':');
  if (options === undefined) return spec;
  const all = options.split(',');
  const kept: string[] = all.filter((o) => o === 'ro' || o === 'rw');
  if (kept.length < all.length) ctx.note(path, `berth mounts with ro or rw only: ${all.filter((o) => !kept.includes(o)).join(',')} dropped`);
  return kept.includes('ro') ? `${source}:${target}:ro` : `${source}:${target}`;
}

/** Whether berth accepts `key: value` in an app; when not, the note quotes berth's reasons. */
export function accepted(ctx: MapContext, key: string, value: unknown, from: string): boolean {
  const refused = refusals(key, value);
  if (refused.length > 0) ctx.note(from, `berth refuses it (${refused.join('; ')}): left out`);
  return refused.length === 0;
}

function readLabels(ctx: MapContext, value: unknown, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(section(value))) {
    const at = keyPath(path, key);
    // Kamal 1 routed with Traefik labels (traffic.ts reads the host of a Host rule).
    if (key.startsWith('traefik.')) ctx.note(at, "a Traefik label: berth's proxy is HAProxy, routing by proxy.host and proxy.port");
    else {
      const text = ctx.text(v, at);
      if (text !== undefined) out[key] = text;
    }
  }
  return out;
}

function readLogging(ctx: MapContext, value: unknown, path: string): Doc {
  const s = section(value);
  const options = Object.fromEntries(Object.entries(section(s.options)).map(([k, v]) => [k, ctx.text(v, keyPath(keyPath(path, 'options'), k))]));
  ctx.rest(s, path, ['driver', 'options'], () => 'not a Kamal logging setting berth knows');
  return { driver: ctx.plain(s.driver, keyPath(path, 'driver')), ...(Object.keys(options).length > 0 ? { options } : {}) };
}
