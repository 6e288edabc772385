/**
 * An app's container logs as berth hands them on (GET /v1/apps/:app/logs, `berth logs`):
 * lines tagged with their host, and what happened to each host's stream. Every text in
 * them has passed the app's secret redactor.
 */

/** One line of the container that serves the app on `host`. */
export interface AppLogLine {
  host: string;
  /** The container's name (`web-r4`). */
  container: string;
  stream: 'stdout' | 'stderr';
  /** Docker's timestamp (RFC 3339, nanoseconds, UTC); null when it came without one. */
  time: string | null;
  text: string;
}

/**
 * What became of one host's stream: `attached` to a container (its lines follow), the
 * container `detached` (it stopped; a followed stream waits for the app's next one),
 * `none` (no container of the app there), or an `error` reading the host (unreachable,
 * Docker's answer), which never ends the other hosts' streams.
 */
export interface AppLogHostState {
  host: string;
  state: 'attached' | 'detached' | 'none' | 'error';
  container: string | null;
  message: string;
  /** For `error`: the error's stable code (HOST_UNREACHABLE, ...); null otherwise. */
  code: string | null;
}

export type AppLogItem = ({ type: 'line' } & AppLogLine) | ({ type: 'host' } & AppLogHostState);

/** Lines per host when the caller names no `tail`. */
export const DEFAULT_LOG_TAIL = 100;
/** The most lines per host one request may ask for: what a request can make a host send at once. */
export const MAX_LOG_TAIL = 10_000;

/** Lines of a container that failed its health check kept in its failure event and the app's status. */
export const FAILURE_LOG_LINES = 50;
/** A failed container's line is cut to this in its event and the status: 50 of them keep the rollout record small. */
export const FAILURE_LOG_LINE_CHARS = 500;

/**
 * The event that carries the last lines of a container that failed (src/reconciler/execute.ts):
 * its message is one line saying whose they are, then the lines (each one line: no newline).
 */
export const FAILURE_LOGS_EVENT = 'FailedContainerLogs';

export function failureLogsMessage(about: string, lines: readonly string[]): string {
  return [about, ...lines].join('\n');
}

/** The lines of a FAILURE_LOGS_EVENT's message. */
export function failureLogLines(message: string): string[] {
  return message.split('\n').slice(1);
}
