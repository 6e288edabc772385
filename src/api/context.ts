import type { Logger } from 'pino';
import type { BerthMetrics } from '../metrics/registry.js';
import type { AppSecretFiles } from '../secrets/app-secrets.js';
import type { Store } from '../store/index.js';
import type { EventStreamLimits } from './routes/events.js';

/** What the controller offers the API: a nudge, a liveness answer and one-off commands. */
export interface ControllerHandle {
  enqueue(app: string): void;
  isRunning(): boolean;
  exec(app: string, command: string, host?: string): Promise<ExecResult>;
}

export interface ExecResult {
  host: string;
  version: string;
  exitCode: number;
  outputTail: string;
  timedOut: boolean;
}

export interface ApiDeps {
  store: Store;
  metrics: BerthMetrics;
  log: Logger;
  controller: ControllerHandle;
  /** Apps' secrets files: a PUT naming a secret its app's file lacks is refused (422). */
  secrets: AppSecretFiles;
  auth: { token: string | null; openReads: boolean };
  /** Host names declared in the config (apps may only use these). */
  hostNames(): string[];
  version: string;
  /** Bounds of the SSE event streams; unset fields take EVENT_STREAM_DEFAULTS (maxStreams: config api.max_event_streams). */
  eventStreams?: Partial<EventStreamLimits>;
}
