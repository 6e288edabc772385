import { ConflictError } from '../domain/errors.js';
import type { Logger } from 'pino';
import type { BerthMetrics } from '../metrics/registry.js';
import type { ProxyStatus } from '../proxy/traffic.js';
import type { AppPolicy } from '../config/container.js';
import type { AppLogs, AppLogsRequest } from '../reconciler/app-logs.js';
import type { AppSecretFiles } from '../secrets/app-secrets.js';
import type { Store, UpsertChange } from '../store/index.js';
import type { Leadership } from '../cluster/lease.js';
import type { EventStreamLimits } from './routes/events.js';

/** What the controller offers the API: a nudge, a liveness answer, one-off commands and the apps' logs. */
export interface ControllerHandle {
  enqueue(app: string): void;
  isRunning(): boolean;
  exec(app: string, command: string, host?: string): Promise<ExecResult>;
  /** The app's container logs, merged from its hosts (src/reconciler/app-logs.ts); throws before any line when they cannot be had. */
  logs(app: string, req: AppLogsRequest): AppLogs;
}

export interface ExecResult {
  host: string;
  version: string;
  exitCode: number;
  outputTail: string;
  timedOut: boolean;
}

/** The daemon's config file, as the API sees it. */
export interface ConfigFileHandle {
  /** Its path, named in answers that send the operator there. */
  readonly path: string;
  /** True when the file declares the app: the file manages it, so PUT and DELETE on it answer 409. */
  declares(app: string): boolean;
  /** Re-reads and applies the file (POST /v1/reload, SIGHUP); a ConfigError keeps the running config. */
  reload(): ReloadResult;
}

/** An API without a config file (benchmarks): it declares no app, and a reload is refused. */
export const NO_CONFIG_FILE: ConfigFileHandle = {
  path: '(no config file)',
  declares: () => false,
  reload: () => {
    throw new ConflictError('this daemon has no config file to reload');
  },
};

export interface ReloadResult {
  /** Every app the file declares, with what the reload did to its stored spec. */
  apps: Record<string, UpsertChange>;
  /** Apps the file no longer declares: they keep running, managed through the API. */
  undeclared: string[];
  /** Sections that changed but apply only at the next start (hosts, api, proxy, controller, acme). */
  restartRequired: string[];
}

export interface ApiDeps {
  store: Store;
  metrics: BerthMetrics;
  log: Logger;
  controller: ControllerHandle;
  /** Whether this daemon leads (src/cluster/lease.ts); readiness reports it. Default: the only daemon, leading. */
  leadership?: Pick<Leadership, 'daemonId' | 'isLeading' | 'view'>;
  /** Apps' secrets files: a PUT naming a secret its app's file lacks is refused (422). */
  secrets: AppSecretFiles;
  auth: { token: string | null; openReads: boolean };
  /** Host names declared in the config (apps may only use these). */
  hostNames(): string[];
  /** What the config file allows apps (allow_host_access); absent: nothing beyond the defaults. */
  appPolicy?(): AppPolicy;
  /** The host's proxy as it runs now (GET /v1/hosts); absent when the daemon runs no proxy (benchmarks). Rejects when the host does not answer. */
  proxyStatus?(host: string): Promise<ProxyStatus>;
  configFile: ConfigFileHandle;
  version: string;
  /** Bounds of the SSE event streams; unset fields take EVENT_STREAM_DEFAULTS (maxStreams: config api.max_event_streams). */
  eventStreams?: Partial<EventStreamLimits>;
}
