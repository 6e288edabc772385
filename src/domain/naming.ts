/**
 * Name grammars shared by config validation and the API. Versions follow Docker's
 * reference grammar for a tag or a digest, so nothing a user types can reach a
 * shell or a path.
 */
export const APP_NAME_PATTERN = '^[a-z][a-z0-9-]{0,62}$';
export const HOST_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$';
/** A Docker tag (`[\w][\w.-]{0,127}`) or a digest (`sha256:<64 hex>`). */
export const VERSION_PATTERN = '^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$';
/**
 * Docker image repository (registry host[:port]/path components), no tag or digest:
 * components are lowercase alphanumerics separated by `.`, `_`, `__` or `-`.
 */
export const IMAGE_REPOSITORY_PATTERN =
  '^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$';
/** Environment variable names as POSIX shells accept them. */
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
const REGISTRY_LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
/**
 * A `registries:` key: a registry host as an image reference names it, lowercase, with an
 * optional port (`ghcr.io`, `10.77.0.1:5001`, `localhost:5000`). It has a dot or a port or
 * is `localhost`, as Docker requires of an image's first component to be read as a registry
 * rather than a Docker Hub account (`registryOf`).
 */
export const REGISTRY_HOST_PATTERN = `^(?:${REGISTRY_LABEL}(?:\\.${REGISTRY_LABEL})+(?::[0-9]+)?|${REGISTRY_LABEL}:[0-9]+|localhost)$`;

const appName = new RegExp(APP_NAME_PATTERN);
const hostName = new RegExp(HOST_NAME_PATTERN);
const version = new RegExp(VERSION_PATTERN);
const imageRepository = new RegExp(IMAGE_REPOSITORY_PATTERN);
const envName = new RegExp(ENV_NAME_PATTERN);
const registryHost = new RegExp(REGISTRY_HOST_PATTERN);

export const isAppName = (s: string): boolean => appName.test(s);
export const isHostName = (s: string): boolean => hostName.test(s);
export const isVersion = (s: string): boolean => version.test(s);
export const isImageRepository = (s: string): boolean => s.length <= 255 && imageRepository.test(s);
export const isEnvName = (s: string): boolean => envName.test(s);
export const isRegistryHost = (s: string): boolean => registryHost.test(s);

/** `repo:tag` or `repo@sha256:...`. */
export function imageReference(repository: string, v: string): string {
  return v.startsWith('sha256:') ? `${repository}@${v}` : `${repository}:${v}`;
}

/** The inverse for a pull: `repo:tag`, `repo@sha256:...`, `registry:5000/repo` (tag `latest`). */
export function splitReference(ref: string): { repo: string; tag: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { repo: ref.slice(0, at), tag: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/** Docker Hub, as Docker names the registry of `haproxy:2.6` and `stefanprodan/podinfo`. */
export const DOCKER_HUB = 'docker.io';

/**
 * The registry an image reference pulls from, lowercase, by Docker's rule (its reference
 * package, splitDockerDomain): the first path component when it has a dot or a port, is
 * `localhost` or has capitals; else Docker Hub, which `index.docker.io/` names too.
 */
export function registryOf(ref: string): string {
  const slash = ref.indexOf('/');
  const first = slash === -1 ? '' : ref.slice(0, slash);
  if (first === '' || (!/[.:]/.test(first) && first !== 'localhost' && first === first.toLowerCase())) return DOCKER_HUB;
  const host = first.toLowerCase();
  return host === 'index.docker.io' ? DOCKER_HUB : host;
}
