import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, HOST_ERROR_CODES, HostError, NotFoundError } from '../domain/errors.js';
import { MAX_LOG_TAIL, type AppLogItem } from '../domain/logs.js';
import { allSecretNames } from '../domain/processes.js';
import type { Redactor } from '../domain/secrets.js';
import { driverFor, type HostDriver, type LogOptions, type LogStream, type ObservedContainer } from '../hosts/host-driver.js';
import { backoffMs } from '../hosts/host-errors.js';
import { secretValuesFrom } from '../secrets/app-secrets.js';
import { appRedactor, mustRunOn } from './context.js';
import { mergeByTime } from './log-merge.js';
import type { PassDeps } from './pass.js';

/**
 * How long a line waits for the other hosts' lines to be ordered against. The first lines
 * of three hosts' backlogs arrived within 3 ms (median) and 12 ms (worst of 20) of each
 * other on the test bed; hosts in other data centres differ by their round trips, tens of
 * ms. It is also what a followed line on a quiet fleet waits: `berth logs -f` printed
 * lines 202-208 ms after Docker stamped them on the bed (1 s is the bar).
 */
const MERGE_WINDOW_MS = 200;
/** Lines held per host while the client or another host lags; past it the host is not read (it keeps them). */
const MAX_QUEUED_PER_HOST = 500;
/** A followed host without a container to read (or not answering) is looked at again after 1 s, doubling up to 10 s. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 10_000;

export interface AppLogsRequest {
  /** Only this host (one of the app's); else every host of the app. */
  host?: string;
  /** Lines per host before following (at most MAX_LOG_TAIL). */
  tail: number;
  /** Only lines after this (Unix ms). */
  sinceMs?: number;
  /** Keep going: new lines as they are written, across the app's next containers, until closed. */
  follow: boolean;
}

/** The merged lines and host states; `close` ends them (and every host's stream). */
export interface AppLogs {
  items: AsyncIterable<AppLogItem>;
  close(): void;
}

interface Feed {
  app: string;
  req: AppLogsRequest;
  redact: Redactor;
  deps: PassDeps;
  signal: AbortSignal;
}

/**
 * The log lines of the container that serves the app on each of its hosts, merged by
 * time (log-merge.ts), each line through the app's secret redactor. A host that fails
 * says so in its own item and never ends the others; followed, it is tried again, and a
 * container that stops (a rollout retired it) is followed by the app's next one there.
 * Refused (SecretMissingError, SecretsFileError) when the app's secrets cannot be read:
 * its lines could not be redacted.
 */
export function openAppLogs(deps: PassDeps, app: string, req: AppLogsRequest): AppLogs {
  const stored = deps.store.apps.getApp(app);
  if (!stored) throw new NotFoundError(`app "${app}"`);
  const spec = deps.store.releases.latestRelease(app)?.spec ?? stored.spec;
  const hosts = req.host === undefined ? spec.hosts : [mustRunOn(app, spec.hosts, req.host)];
  const secrets = deps.secrets.read(app);
  if (allSecretNames(spec).length > 0) secretValuesFrom(secrets, allSecretNames(spec));
  const ac = new AbortController();
  const feed: Feed = { app, req, redact: appRedactor(spec, secrets), deps, signal: ac.signal };
  deps.log.debug({ app, hosts, follow: req.follow, tail: req.tail }, 'logs opened');
  const items = mergeByTime(
    hosts.map((host) => hostItems(feed, host)),
    { timeOf: (i) => (i.type === 'line' && i.time !== null ? Date.parse(i.time) : null), windowMs: MERGE_WINDOW_MS, maxQueued: MAX_QUEUED_PER_HOST, signal: ac.signal },
  );
  return { items, close: () => ac.abort() };
}

/**
 * The container whose log is read on a host: the one the status says serves, else the
 * newest running one; else (unless `runningOnly`) the newest, whose last lines say why
 * the app does not run there.
 */
async function pickContainer(driver: HostDriver, app: string, serving: string | null, runningOnly: boolean): Promise<ObservedContainer | null> {
  const all = (await driver.listContainers({ app })).filter((c) => c.role === 'app').sort((a, b) => b.createdAt - a.createdAt);
  const running = all.filter((c) => c.running);
  return running.find((c) => c.id === serving) ?? running[0] ?? (runningOnly ? null : (all[0] ?? null));
}

/** One host's items: its container's lines, and its state whenever that changes. */
async function* hostItems(f: Feed, host: string): AsyncGenerator<AppLogItem> {
  const { deps, req, signal } = f;
  /**
   * The container last read and Docker's timestamp of its last line: read again (it restarted,
   * or its log ended while it ran on), it resumes after that line. Docker writes its timestamps
   * at a fixed width (nanoseconds), so they compare as text.
   */
  let read = null as { id: string; last: string | null } | null;
  /** A followed log just ended (its container stopped, or its host's Docker restarted): said once the next look shows which. */
  let ended: string | null = null;
  let idle = 0;
  let lastState = '';
  const state = (s: Omit<Extract<AppLogItem, { type: 'host' }>, 'type' | 'host'>): AppLogItem[] => {
    const key = `${s.state} ${s.message}`;
    if (s.state !== 'attached' && key === lastState) return [];
    lastState = key;
    return [{ type: 'host', host, ...s, message: f.redact(s.message) }];
  };
  while (!signal.aborted) {
    let stream: LogStream | null = null;
    const close = () => stream?.close();
    signal.addEventListener('abort', close, { once: true });
    try {
      const down = deps.reachability.downSince(host);
      if (down) throw new HostError(HOST_ERROR_CODES.unreachable, host, `${down.error} (down since ${new Date(down.since).toISOString()}; rechecked every resync)`);
      const driver = driverFor(deps.drivers, host);
      const serving = deps.store.status.readStatus(f.app)?.hosts.find((h) => h.host === host)?.containerId ?? null;
      // Once a container was read, a followed host waits for a running one: not an older, retained one.
      const c = await pickContainer(driver, f.app, serving, read !== null);
      if (ended !== null && (c?.id !== read?.id || !c?.running)) {
        yield* state({ state: 'detached', container: ended, message: `${ended} stopped; following the next container of ${f.app} on ${host}`, code: null });
      }
      ended = null;
      if (!c) {
        yield* state({ state: 'none', container: null, message: `no ${read ? 'running ' : ''}container of ${f.app} on ${host}`, code: null });
      } else if (read?.id !== c.id || c.running) {
        const opts: LogOptions =
          read === null
            ? { tail: req.tail, ...(req.sinceMs !== undefined ? { sinceMs: req.sinceMs } : {}), follow: req.follow }
            : read.id === c.id
              ? // The same container again: from the millisecond of the last line read (lines up to it are skipped below).
                { tail: MAX_LOG_TAIL, ...(read.last !== null ? { sinceMs: Date.parse(read.last) } : {}), follow: true }
              : // The host's next container (a rollout's): from its first line, booting included.
                { tail: MAX_LOG_TAIL, sinceMs: Math.max(c.createdAt, req.sinceMs ?? 0), follow: true };
        stream = await driver.containerLogs(c.id, opts);
        const after = read?.id === c.id ? read.last : null;
        read = { id: c.id, last: after };
        idle = 0;
        yield* state({ state: 'attached', container: c.name, message: `${c.name} (${c.version}${c.running ? '' : `, ${c.state}`})`, code: null });
        for await (const line of stream) {
          if (line.time !== null) {
            if (after !== null && line.time <= after) continue;
            read.last = line.time;
          }
          yield { type: 'line', host, container: c.name, stream: line.stream, time: line.time, text: f.redact(line.text) };
        }
        if (req.follow && c.running && !signal.aborted) {
          // Look again at once: a rollout's next container already runs.
          ended = c.name;
          continue;
        }
      }
      if (!req.follow) return;
    } catch (err) {
      if (signal.aborted) return;
      const code = err instanceof BerthError ? err.code : null;
      yield* state({ state: 'error', container: null, message: err instanceof Error ? err.message : String(err), code });
      if (!req.follow) return;
    } finally {
      signal.removeEventListener('abort', close);
      stream?.close();
    }
    idle += 1;
    await sleep(backoffMs(idle, RETRY_BASE_MS, RETRY_MAX_MS), undefined, { signal }).catch(() => undefined);
  }
}
