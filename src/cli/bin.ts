#!/usr/bin/env node
import type { AppStatus, BerthEvent } from '../domain/release.js';
import { BerthError } from '../domain/errors.js';
import { MAX_LIMIT } from '../store/limits.js';
import { BERTH_VERSION } from '../version.js';
import { BerthClient } from './client.js';
import { ApiError, UsageError } from './errors.js';
import { ago, table } from './format.js';

const HELP = `berth ${BERTH_VERSION} — reconciling zero-downtime deploys for Docker hosts over SSH

Usage:
  berth daemon                          run the controller (BERTH_CONFIG, BERTH_DB, BERTH_LISTEN, BERTH_TOKEN)
  berth deploy APP VERSION [--wait]     ask for VERSION; --wait follows the rollout, exit 1 unless it completes
  berth status [APP]                    phase, revisions and per-host view
  berth rollback APP [--to VERSION] [--wait]
                                        back to the previous (or named) version, as a new revision
  berth pause APP | berth resume APP    hold / continue the rollout between steps
  berth exec APP [--host H] -- CMD      run CMD (sh -c) in a one-off container of the current release
  berth maintenance APP [--message M] | berth live APP
                                        proxies answer 503 with M / route traffic again
  berth history APP                     releases, newest first
  berth events APP [--follow]           audit events; --follow streams them live
  berth --version | --help

Options: --json (machine-readable output).  Client env: BERTH_URL (default http://127.0.0.1:7373),
BERTH_TOKEN (default: the token file the daemon generated next to its database, data/token).`;

const usage = (message: string) => new UsageError(message, HELP);

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const valued = new Set(['--to', '--host', '--message']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      flags.set('--', argv.slice(i + 1).join(' '));
      break;
    }
    if (a.startsWith('--')) {
      const [k, v] = a.split('=', 2) as [string, string | undefined];
      if (v !== undefined) flags.set(k, v);
      else if (valued.has(k)) {
        const next = argv[++i];
        if (next === undefined) throw usage(`${k} needs a value`);
        flags.set(k, next);
      } else flags.set(k, true);
    } else if (a === '-h') flags.set('--help', true);
    else positional.push(a);
  }
  return { positional, flags };
}

type AppView = { name: string; paused: boolean; desired: { revision: number; version: string } | null; status: AppStatus | null };

const FINAL = new Set(['Complete', 'Failed', 'RolledBack', 'Paused']);
/** How often `deploy --wait` reads the app's status, which decides when the wait ends. */
const STATUS_POLL_MS = 500;

function printStatus(app: AppView): void {
  const s = app.status;
  console.log(`${app.name}: ${s?.phase ?? 'NoRelease'}${app.paused ? ' (paused)' : ''}  desired r${app.desired?.revision ?? '-'} ${app.desired?.version ?? ''}  observed r${s?.observedRevision ?? '-'}`);
  for (const c of s?.conditions ?? []) console.log(`  ${c.type}=${c.status} ${c.reason}: ${c.message}`);
  if (s?.hosts.length) {
    console.log(table(['HOST', 'VERSION', 'REV', 'HEALTH', 'CONTAINER', 'LAST ERROR'], s.hosts.map((h) => [h.host, h.version, h.revision, h.health, h.containerId?.slice(0, 12), h.lastError])).replace(/^/gm, '  '));
  }
}

function printEvent(e: BerthEvent): void {
  console.log(`${e.createdAt}  ${e.host ? e.host.padEnd(8) : ''.padEnd(8)}  ${e.type}: ${e.message}`);
}

/** Follows events until the app's status reaches a final phase for `revision` (or a newer one takes over). */
async function waitFor(client: BerthClient, app: string, revision: number, json: boolean): Promise<number> {
  const controller = new AbortController();
  const done = new Promise<AppView>((resolve) => {
    const poll = async () => {
      while (!controller.signal.aborted) {
        const view = await client.request<AppView>('GET', `/v1/apps/${app}`).catch(() => null);
        const s = view?.status;
        const newer = (view?.desired?.revision ?? 0) > revision;
        const mine = s && (s.observedRevision === revision || newer || s.phase === 'Failed' || s.phase === 'Paused');
        if (view && s && s.phase && FINAL.has(s.phase) && mine) return resolve(view);
        await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
      }
    };
    void poll();
  });
  // The event lines are a courtesy; the status poll decides. A stream failure must not crash the wait.
  if (!json) client.follow(app, 0, (e) => { if ((e.revision ?? 0) >= revision) printEvent(e); }, controller.signal).catch(() => {});
  const view = await done;
  controller.abort();
  if (json) console.log(JSON.stringify(view, null, 2));
  else printStatus(view);
  const ok = view.status?.phase === 'Complete' || (view.status?.phase === 'RolledBack' && view.desired?.revision === revision);
  return ok ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  const { positional, flags } = parseArgs(argv);
  const json = flags.has('--json');
  const out = (value: unknown, human: () => void) => (json ? console.log(JSON.stringify(value, null, 2)) : human());
  if (flags.has('--version')) {
    console.log(BERTH_VERSION);
    return 0;
  }
  const [command, ...rest] = positional;
  if (flags.has('--help') || !command || command === 'help') {
    console.log(HELP);
    return command || flags.has('--help') ? 0 : 2;
  }
  if (command === 'daemon') {
    const { runDaemon } = await import('../main.js');
    await runDaemon();
    return -1;
  }
  const client = new BerthClient();
  const needApp = () => {
    const app = rest[0];
    if (!app) throw usage(`berth ${command} needs an APP`);
    return encodeURIComponent(app);
  };
  switch (command) {
    case 'deploy': {
      const app = needApp();
      const version = rest[1];
      if (!version) throw usage('berth deploy needs APP VERSION');
      const r = await client.request<{ revision: number; version: string }>('POST', `/v1/apps/${app}/releases`, { version });
      out(r, () => console.log(`${rest[0]}: revision ${r.revision} asks for ${r.version}`));
      return flags.has('--wait') ? waitFor(client, app, r.revision, json) : 0;
    }
    case 'rollback': {
      const app = needApp();
      const to = flags.get('--to');
      const r = await client.request<{ revision: number; version: string }>('POST', `/v1/apps/${app}/rollback`, typeof to === 'string' ? { version: to } : {});
      out(r, () => console.log(`${rest[0]}: revision ${r.revision} rolls back to ${r.version}`));
      return flags.has('--wait') ? waitFor(client, app, r.revision, json) : 0;
    }
    case 'exec': {
      const app = needApp();
      const command = flags.get('--');
      if (typeof command !== 'string' || command === '') throw usage('berth exec needs APP -- COMMAND');
      const host = flags.get('--host');
      const r = await client.request<{ host: string; version: string; exitCode: number; outputTail: string; timedOut: boolean }>(
        'POST',
        `/v1/apps/${app}/exec`,
        { command, ...(typeof host === 'string' ? { host } : {}) },
      );
      out(r, () => {
        process.stdout.write(r.outputTail);
        if (r.timedOut) console.error(`berth: timed out on ${r.host}`);
      });
      return r.exitCode;
    }
    case 'maintenance':
    case 'live': {
      const message = flags.get('--message');
      const r = await client.request<{ app: string; maintenance: string | null }>('POST', `/v1/apps/${needApp()}/${command}`, typeof message === 'string' ? { message } : {});
      out(r, () => console.log(r.maintenance === null ? `${r.app}: live` : `${r.app}: maintenance (${r.maintenance})`));
      return 0;
    }
    case 'pause':
    case 'resume': {
      const r = await client.request<{ app: string; paused: boolean }>('POST', `/v1/apps/${needApp()}/${command}`, {});
      out(r, () => console.log(`${r.app}: ${r.paused ? 'paused' : 'resumed'}`));
      return 0;
    }
    case 'status': {
      if (rest[0]) {
        const view = await client.request<AppView>('GET', `/v1/apps/${needApp()}`);
        out(view, () => printStatus(view));
        return 0;
      }
      const { apps } = await client.request<{ apps: AppView[] }>('GET', '/v1/apps');
      out({ apps }, () =>
        console.log(table(['APP', 'PHASE', 'DESIRED', 'OBSERVED', 'HOSTS'], apps.map((a) => [
          a.name + (a.paused ? ' (paused)' : ''),
          a.status?.phase ?? 'NoRelease',
          a.desired ? `r${a.desired.revision} ${a.desired.version}` : null,
          a.status?.observedRevision ? `r${a.status.observedRevision}` : null,
          a.status ? `${a.status.hosts.filter((h) => h.health === 'healthy').length}/${a.status.hosts.length} healthy` : null,
        ]))),
      );
      return 0;
    }
    case 'history': {
      const { releases } = await client.request<{ releases: Array<{ revision: number; version: string; reason: string; actor: string; createdAt: string }> }>('GET', `/v1/apps/${needApp()}/releases`);
      out({ releases }, () => console.log(table(['REV', 'VERSION', 'REASON', 'ACTOR', 'CREATED'], releases.map((r) => [r.revision, r.version, r.reason, r.actor, ago(r.createdAt)]))));
      return 0;
    }
    case 'events': {
      const app = needApp();
      if (flags.has('--follow')) {
        await client.follow(app, 0, (e) => (json ? console.log(JSON.stringify(e)) : printEvent(e)));
        return 0;
      }
      const { events } = await client.request<{ events: BerthEvent[] }>('GET', `/v1/apps/${app}/events?limit=${MAX_LIMIT}`);
      out({ events }, () => events.forEach(printEvent));
      return 0;
    }
    default:
      throw usage(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ApiError) console.error(`berth: ${err.message}${err.status ? ` (HTTP ${err.status} ${err.serverCode ?? err.code})` : ''}`);
    else if (err instanceof BerthError) console.error(`berth: ${err.message}`);
    else console.error(`berth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = err instanceof BerthError && err.code === 'USAGE' ? 2 : 1;
  },
);
