/**
 * Kamal's `registry` (root, or an accessory's) -> berth's `registries` entry and the prefix
 * of the image's repository. Kamal names its secrets (`password: [KAMAL_REGISTRY_PASSWORD]`);
 * berth names a line of its registries file: the same name carries over. A password written
 * into the file or computed by ERB is never printed: its name becomes a placeholder.
 */
import { isMap, keyPath } from '../config/reader.js';
import { DOCKER_HUB, isEnvName, isRegistryHost } from '../domain/naming.js';
import { list, type Doc, type MapContext } from './context.js';

/** berth's registries file, as the notes name it (README, "Private registries"). */
const REGISTRIES_FILE = 'data/registries.env';
/** Kamal's own name for it, which its generated .kamal/secrets uses. */
const DEFAULT_PASSWORD_NAME = 'KAMAL_REGISTRY_PASSWORD';

export interface Registry {
  /** The server images are pushed to and pulled from, as image names start with it; null for Docker Hub. */
  server: string | null;
}

/** Reads a `registry` section, adding its credentials to `registries` (berth's top-level map). */
export function readRegistry(ctx: MapContext, value: unknown, path: string, registries: Record<string, Doc>): Registry {
  if (!isMap(value)) return { server: null };
  const raw = ctx.plain(value.server, keyPath(path, 'server'))?.toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const server = raw === undefined || raw === 'docker.io' || raw === 'index.docker.io' || raw === 'registry.hub.docker.com' ? null : raw;
  if (server !== null && !isRegistryHost(server)) {
    ctx.note(keyPath(path, 'server'), `${JSON.stringify(server)} is not a registry host berth can name (lowercase, with a dot or a port): left out`);
    return { server: null };
  }
  if (server?.startsWith('localhost')) ctx.note(keyPath(path, 'server'), 'Kamal 2 runs a local registry and pushes through an SSH tunnel; berth pulls on each host, so every host must reach this registry itself');
  ctx.rest(value, path, ['server', 'username', 'password'], () => 'not a Kamal registry setting berth knows');
  const username = readUsername(ctx, value.username, keyPath(path, 'username'));
  const password = readPasswordName(ctx, value.password, keyPath(path, 'password'));
  if (username !== undefined && password !== undefined) registries[server ?? DOCKER_HUB] = { username, password };
  return { server };
}

function readUsername(ctx: MapContext, value: unknown, path: string): string | undefined {
  if (Array.isArray(value)) {
    const name = ctx.plain(value[0], path);
    ctx.note(path, `the user name was the secret ${String(name)}: berth's username is the name itself, written here: replace the placeholder`);
    return name;
  }
  const user = ctx.plain(value, path);
  if (user === undefined && value !== undefined) return 'fill-in-username';
  return user;
}

function readPasswordName(ctx: MapContext, value: unknown, path: string): string | undefined {
  if (value === undefined) return undefined;
  const name = Array.isArray(value) ? ctx.plain(list(value)[0], path) : undefined;
  if (name !== undefined && isEnvName(name)) {
    ctx.note(path, `put the value of ${name} in ${REGISTRIES_FILE} (next to berth's database), a line ${name}=…`);
    return name;
  }
  // The value itself (or ERB computing it): never carried into the output nor into a note.
  ctx.erbAt(value, path, `the password is now the name ${DEFAULT_PASSWORD_NAME}`);
  ctx.note(path, `berth.yml names the password, never holds it: put it in ${REGISTRIES_FILE} as ${DEFAULT_PASSWORD_NAME}=… (value not shown)`);
  return DEFAULT_PASSWORD_NAME;
}

/** The repository Kamal pushes `image` to: `server/image`, or `image` on Docker Hub. */
export function repositoryOf(registry: Registry, image: string): string {
  return registry.server === null ? image : `${registry.server}/${image}`;
}
