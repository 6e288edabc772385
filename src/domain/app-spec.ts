/**
 * The validated, normalised shape of an app. Config YAML and `PUT /v1/apps/:app`
 * both use the snake_case document shape (see src/config); this is what the rest
 * of berth works with. Every duration carries its unit in its name.
 */
export interface HealthcheckSpec {
  path: string;
  port: number;
  intervalMs: number;
  timeoutMs: number;
  maxAttempts: number;
  /** Soak: the container must stay healthy this long before traffic moves. 0 = off. */
  minHealthyMs: number;
}

export type Parallelism = { kind: 'count'; value: number } | { kind: 'percent'; value: number };

export type FailurePolicy = 'rollback' | 'pause' | 'continue';

/**
 * How a host changes containers: `start-first` boots the new one beside the old and moves
 * the traffic (no downtime); `recreate` drains and stops the old one before the new one
 * starts, so the host never runs two (a database accessory, a scheduler that must never run
 * twice), at the price of downtime on that host until the new one is healthy.
 */
export type RolloutStrategy = 'start-first' | 'recreate';

export interface RolloutSpec {
  parallelism: Parallelism;
  delayMs: number;
  onFailure: FailurePolicy;
  /** With on_failure=continue: the share of failed hosts (0..1) above which the rollout fails. */
  maxFailureRatio: number;
  progressDeadlineMs: number;
  /**
   * Absent = `start-first`. Set only for `recreate` (the validator leaves the default out),
   * so specs stored before the key existed, and specs that do not set it, compare equal.
   */
  strategy?: RolloutStrategy;
  /**
   * Later batches' new containers boot and pass their health check while earlier batches
   * switch; each batch still switches in its turn (docs/design.md, "Pre-booting"). Absent =
   * off, and only start-first may set it (the validator refuses it with recreate).
   */
  preboot?: true;
}

export interface HooksSpec {
  preDeploy: string[];
  postDeploy: string[];
  timeoutMs: number;
}

/** The proxy port of a route that names none. */
export const DEFAULT_ROUTE_PORT = 80;

/** The route model and the conflict rules between apps: src/config/routes.ts. */
export interface ProxyRouteSpec {
  /** Route by listening port on the host's proxy (null: 80) ... */
  port: number | null;
  /** ... and/or by Host header: lowercase, exact or `*.example.com`. At least one of port/host is set. */
  host: string | null;
  /**
   * Only requests whose path is this prefix or below it (`/api`: `/api`, `/api/...`, not `/apix`).
   * Starts with `/`, no trailing `/` (except `/` itself, which, like null, is every path).
   * Always set by the validator; optional because specs stored before it existed lack it (read as null).
   */
  pathPrefix?: string | null;
  drainTimeoutMs: number;
  /**
   * HTTPS for this route's host on port 443, plain HTTP on `port` redirecting to it.
   * Absent in specs stored before TLS existed (read as null).
   */
  tls?: TlsSpec | null;
}

/** The HTTPS port of every TLS route (HTTP-01 validation and the redirect use the route's port, 80 for ACME). */
export const HTTPS_PORT = 443;

/**
 * Where a TLS route's certificate comes from: ordered by berth over ACME (one
 * certificate per host name for the whole fleet), or given as two secrets (PEM values
 * in the app's secrets file, named like app secrets).
 */
export type TlsSpec = { source: 'acme' } | { source: 'given'; certificate: string; privateKey: string };

export interface AcmeConfig {
  /** The ACME directory URL (RFC 8555). */
  directory: string;
  /** Contact address for the account; null registers without one. */
  email: string | null;
  /** Renew when the certificate's remaining life is shorter than this. */
  renewBeforeMs: number;
  /** A PEM file of CA certificates to trust for the directory's HTTPS (a private ACME server); null = the system's. */
  caCertificate: string | null;
}

/** A volume of an app container: a named Docker volume or an absolute host path, mounted at `target`. */
export interface VolumeSpec {
  /** A volume name (`uploads`) or an absolute host path (`/srv/web/config`). */
  source: string;
  /** Absolute path inside the container. */
  target: string;
  readOnly: boolean;
}

/**
 * How the app's containers run besides image, port and env (Kamal's names where Kamal has
 * one). Every key is optional; a spec without any has no `container` at all, so the
 * config hash of apps that set none stays what it was before these existed.
 */
export interface ContainerSettings {
  /** Replaces the image's CMD (exec form). */
  cmd?: string[];
  /** Replaces the image's ENTRYPOINT (exec form). */
  entrypoint?: string[];
  volumes?: VolumeSpec[];
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** CPU limit in CPUs (0.5 = half of one). */
  cpus?: number;
  /** Extra container labels; `berth.*` is berth's own. */
  labels?: Record<string, string>;
  logging?: { driver: string; options: Record<string, string> };
  /** The signal `docker stop` sends first (`SIGQUIT` for nginx, say). */
  stopSignal?: string;
  /** `user` or `user:group` (names or ids). */
  user?: string;
  /** `name:address` lines added to the container's /etc/hosts. */
  extraHosts?: string[];
  /** Full access to the host's devices; refused unless the config allows host access. */
  privileged?: boolean;
}

export interface AppSpec {
  name: string;
  /** Image repository without tag, e.g. `10.77.0.1:5000/app`. */
  image: string;
  hosts: string[];
  port: number;
  healthcheck: HealthcheckSpec;
  rollout: RolloutSpec;
  hooks: HooksSpec;
  retainContainers: number;
  /**
   * Releases kept per app (`history_limit`); unset = SEED_DEFAULTS.historyLimit. Only
   * present when the document sets it, so specs written before it existed read as before.
   */
  historyLimit?: number;
  stopTimeoutMs: number;
  proxy: ProxyRouteSpec | null;
  env: Record<string, string>;
  /** Names of variables whose values are read from the app's secrets file (src/secrets/app-secrets.ts); values never stored. */
  secrets: string[];
  /** Absent when the app sets none of these. */
  container?: ContainerSettings;
  /**
   * `processes:` (roles), in declaration order: one image and one release, several
   * processes each with its own hosts, command and settings (src/domain/processes.ts).
   * Absent for an app of one implicit process, so such specs are what they were before
   * processes existed. When set, `hosts` is every process's hosts (where the app runs),
   * `proxy` is null (the route is the serving process's) and the other app-level
   * settings are what one-off containers (hooks, `berth exec`) run with.
   */
  processes?: ProcessSpec[];
  /**
   * Set by `berth restart` on a release's spec, never by config or `PUT`: part of the
   * container config hash, so that release replaces every container with the same
   * version, health-gated like any rollout (Kubernetes' restartedAt annotation).
   */
  restartedAt?: string;
}

/**
 * How a process without a proxy is known healthy: `cmd` (Docker exec inside the container)
 * exits 0, probed at once then every `interval` up to `max_attempts`; without `cmd`, the
 * container keeps running, not restarted, for `min_healthy`. Either way the container must
 * not restart or stop before it is promoted.
 */
export interface ContainerHealthcheckSpec {
  /** Exec form; a string in the document runs under `sh -c`, as Docker's HEALTHCHECK CMD-SHELL. */
  cmd: string[] | null;
  intervalMs: number;
  timeoutMs: number;
  maxAttempts: number;
  minHealthyMs: number;
}

/** The settings of one process, resolved: the app's values where the process sets none. */
interface ProcessSettings {
  /** Like an app name; in container names (`<app>-<process>-r<rev>`) and unit keys (`web@h1`). */
  name: string;
  hosts: string[];
  port: number;
  env: Record<string, string>;
  secrets: string[];
  stopTimeoutMs: number;
  container?: ContainerSettings;
}

/** A process serves through the proxy with an HTTP health check, or runs without one (a worker). */
export type ProcessSpec = ProcessSettings &
  ({ proxy: ProxyRouteSpec; healthcheck: HealthcheckSpec } | { proxy: null; healthcheck: ContainerHealthcheckSpec });

/**
 * The spec of a rollback release: the target release's (image settings, env, container
 * settings: what a rollback restores) with the rollout strategy of the release it replaces,
 * as Kubernetes' `rollout undo` restores a Deployment's pod template but not its strategy.
 * The containers a rollback stops are the current release's: an app made `recreate` because
 * two of it must never run stays `recreate` on its way back to a release from before.
 */
export function rollbackSpec(target: AppSpec, current: AppSpec): AppSpec {
  const rollout: RolloutSpec = { ...target.rollout };
  delete rollout.strategy;
  delete rollout.preboot;
  if (current.rollout.strategy) rollout.strategy = current.rollout.strategy;
  // Pre-booting goes with the strategy: a recreate release never gets it back from before.
  if (current.rollout.preboot) rollout.preboot = true;
  return { ...target, rollout };
}

/** What route checks and per-host proxy configs read of an app (the store reads only this much of each spec). */
export type RoutedApp = Pick<AppSpec, 'name' | 'hosts' | 'proxy'>;

export interface HostSpec {
  name: string;
  local: boolean;
  /** SSH fields; unused when local. */
  address: string | null;
  sshPort: number;
  user: string;
  sshKeyPath: string | null;
  /** Pinned host key fingerprint, `SHA256:<base64>` as `ssh-keygen -lf` prints it. */
  hostKey: string | null;
  knownHostsPath: string | null;
  dockerSocket: string;
  /** Directory on the host where berth keeps per-host state (the proxy's admin socket). */
  stateDir: string;
}

export interface ApiConfig {
  listen: string;
  token: string | null;
  /** Allow GET routes without a token (only honoured when listening on loopback). */
  openReads: boolean;
  /** api.max_event_streams: concurrent SSE event streams; absent = the API's default (64). */
  maxEventStreams?: number;
}

/**
 * Credentials sent with every pull of an image from one registry (`registries:`, keyed by
 * the registry host as image references name it: src/domain/naming.ts, registryOf).
 */
export interface RegistrySpec {
  username: string;
  /** The name of the variable holding the password in the registries secrets file (src/secrets/registry-credentials.ts); never the value. */
  password: string;
}

/** What a pull sends to the registry of its image (X-Registry-Auth): a RegistrySpec with its password read. */
export interface RegistryAuth {
  /** The registries key that matched (`ghcr.io`). */
  registry: string;
  username: string;
  password: string;
  /** RegistrySpec.password: what a redacted password reads as (`[redacted:GHCR_TOKEN]`). */
  passwordName: string;
}

export interface BerthConfig {
  /**
   * `allow_host_access`: apps may run privileged or mount the host's root, the Docker
   * socket or system directories. Off by default: with it, anyone holding the API token
   * owns every host. Only the config file can set it.
   */
  allowHostAccess: boolean;
  hosts: Record<string, HostSpec>;
  proxy: { image: string };
  acme: AcmeConfig;
  apps: Record<string, AppSpec>;
  api: ApiConfig;
  /** `leaseMs`: the leader's lease when several daemons share a PostgreSQL store. */
  controller: { resyncIntervalMs: number; leaseMs: number };
  /** By registry host (`ghcr.io`, `10.77.0.1:5001`). */
  registries: Record<string, RegistrySpec>;
}

export const SEED_DEFAULTS = {
  healthcheck: { path: '/health', port: 3000, maxAttempts: 10, intervalMs: 5_000, timeoutMs: 2_000, minHealthyMs: 0 },
  /** A process without a proxy nor a health command is healthy once it ran this long without a restart. */
  processMinHealthyMs: 10_000,
  rollout: {
    parallelism: { kind: 'count', value: 1 } as Parallelism,
    delayMs: 0,
    onFailure: 'rollback' as FailurePolicy,
    maxFailureRatio: 0,
    progressDeadlineMs: 600_000,
  },
  hooks: { timeoutMs: 300_000 },
  retainContainers: 5,
  /** Releases kept per app; older ones are pruned unless still in use (src/store/releases.ts, pruneReleases). */
  historyLimit: 100,
  stopTimeoutMs: 10_000,
  proxy: { drainTimeoutMs: 30_000 },
  port: 3000,
  sshPort: 22,
  user: 'root',
  dockerSocket: '/var/run/docker.sock',
  stateDir: '/var/lib/berth',
  resyncIntervalMs: 10_000,
  leaseMs: 10_000,
  listen: '127.0.0.1:7373',
  proxyImage: 'haproxy:2.6',
  acme: { directory: 'https://acme-v02.api.letsencrypt.org/directory', renewBeforeMs: 30 * 86_400_000 },
} as const;
