#!/usr/bin/env node
import type { AppStatus, BerthEvent } from '../domain/release.js';
import { BerthError } from '../domain/errors.js';
import { MAX_LIMIT } from '../store/limits.js';
import { parseArgs as nodeParseArgs } from 'node:util';
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
  berth -v | --version                  print the version
  berth --help | berth COMMAND --help   this help / one command's usage

Options: --json (machine-readable output).  Client env: BERTH_URL (default http://127.0.0.1:7373),
BERTH_TOKEN (default: the token file the daemon generated next to its database, data/token).`;

type OptionSpec = { type: 'boolean' | 'string'; short?: string };

/** One command: its usage line(s) and the options `util.parseArgs` accepts for it (strict). */
interface CommandSpec {
  usage: string;
  /** Positional arguments: required ones first, then optional (`[APP]`). */
  args: { required: string[]; optional: string[] };
  options: Record<string, OptionSpec>;
  /** Everything after `--` is the command's (exec); otherwise `--` ends options as usual. */
  rest?: boolean;
}

const JSON_OPT: Record<string, OptionSpec> = { json: { type: 'boolean' } };
const app1 = { required: ['APP'], optional: [] };
const COMMANDS: Record<string, CommandSpec> = {
  daemon: { usage: 'berth daemon    run the controller (BERTH_CONFIG, BERTH_DB, BERTH_LISTEN, BERTH_TOKEN)', args: { required: [], optional: [] }, options: {} },
  deploy: {
    usage: 'berth deploy APP VERSION [--wait] [--json]\n  ask for VERSION; --wait follows the rollout, exit 1 unless it completes',
    args: { required: ['APP', 'VERSION'], optional: [] },
    options: { ...JSON_OPT, wait: { type: 'boolean' } },
  },
  status: { usage: 'berth status [APP] [--json]\n  phase, revisions and per-host view', args: { required: [], optional: ['APP'] }, options: JSON_OPT },
  rollback: {
    usage: 'berth rollback APP [--to VERSION] [--wait] [--json]\n  back to the previous (or named) version, as a new revision',
    args: app1,
    options: { ...JSON_OPT, to: { type: 'string' }, wait: { type: 'boolean' } },
  },
  pause: { usage: 'berth pause APP [--json]\n  hold the rollout between steps', args: app1, options: JSON_OPT },
  resume: { usage: 'berth resume APP [--json]\n  continue the rollout', args: app1, options: JSON_OPT },
  exec: {
    usage: 'berth exec APP [--host H] [--json] -- CMD...\n  run CMD (sh -c) in a one-off container of the current release',
    args: app1,
    options: { ...JSON_OPT, host: { type: 'string' } },
    rest: true,
  },
  maintenance: { usage: 'berth maintenance APP [--message M] [--json]\n  proxies answer 503 with M', args: app1, options: { ...JSON_OPT, message: { type: 'string' } } },
  live: { usage: 'berth live APP [--json]\n  proxies route traffic again', args: app1, options: JSON_OPT },
  history: { usage: 'berth history APP [--json]\n  releases, newest first', args: app1, options: JSON_OPT },
  events: { usage: 'berth events APP [--follow] [--json]\n  audit events; --follow streams them live', args: app1, options: { ...JSON_OPT, follow: { type: 'boolean' } } },
};

const HELP_OPTION: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h' } };

/** One command's usage (`berth deploy --help`). */
function commandHelp(command: string): string {
  const spec = COMMANDS[command]!;
  const opts = command === 'daemon' ? '' : '\n\n--json prints the API\'s JSON; client env: BERTH_URL, BERTH_TOKEN (default: data/token next to BERTH_DB).';
  return `Usage: ${spec.usage}${opts}`;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

function closest(word: string, candidates: string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = c.startsWith(word) && word.length >= 2 ? 0 : distance(word, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best !== null && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : null;
}

/** A usage mistake in `command` (or before any command): one line, pointing at the right --help. */
const usage = (message: string, command?: string) => new UsageError(message, command ? `berth ${command} --help` : 'berth --help');

interface Parsed {
  positional: string[];
  values: Record<string, string | boolean | undefined>;
  /** exec: the words after `--`. */
  rest: string[] | null;
}

/** Parses `argv` (after the command name) with util.parseArgs, strict; mistakes are one-line UsageErrors. */
function parseCommand(command: string, spec: CommandSpec, argv: string[]): Parsed {
  const sep = spec.rest ? argv.indexOf('--') : -1;
  const own = sep === -1 ? argv : argv.slice(0, sep);
  const options = { ...spec.options, ...HELP_OPTION };
  // A first, lenient pass only to name the mistake well (which option, what it resembles).
  const { tokens } = nodeParseArgs({ args: own, options, strict: false, allowPositionals: true, tokens: true });
  const known = Object.keys(options).map((o) => `--${o}`);
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const o = options[t.name];
    if (!o) {
      const guess = t.rawName.startsWith('--') ? closest(t.rawName, known) : null;
      throw usage(`unknown option ${t.rawName} for "${command}"${guess ? ` (did you mean ${guess}?)` : ''}`, command);
    }
    if (o.type === 'string' && (t.value === undefined || (!t.inlineValue && t.value.startsWith('-')))) throw usage(`--${t.name} needs a value`, command);
    if (o.type === 'boolean' && t.value !== undefined) throw usage(`--${t.name} takes no value (got "${t.value}")`, command);
  }
  let parsed;
  try {
    parsed = nodeParseArgs({ args: own, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw usage((err as Error).message, command);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const positional = parsed.positionals;
  if (!values.help) {
    const max = spec.args.required.length + spec.args.optional.length;
    if (positional.length > max) {
      const extra = positional.slice(max);
      throw usage(`unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((a) => `"${a}"`).join(' ')} for "${command}"`, command);
    }
    if (positional.length < spec.args.required.length) throw usage(`${command} needs ${spec.args.required.join(' ')}`, command);
  }
  return { positional, values, rest: sep === -1 ? null : argv.slice(sep + 1) };
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
  const [first, ...after] = argv;
  if (first === undefined) {
    console.log(HELP);
    return 2;
  }
  // `berth --json status` as before: --json belongs to the command that follows.
  if (first === '--json' && after[0] !== undefined && !after[0].startsWith('-')) return main([after[0], '--json', ...after.slice(1)]);
  if (first.startsWith('-')) {
    // Before any command only these: -v/--version, -h/--help.
    if (argv.length === 1 && (first === '-v' || first === '--version')) {
      console.log(BERTH_VERSION);
      return 0;
    }
    if (argv.length === 1 && (first === '-h' || first === '--help')) {
      console.log(HELP);
      return 0;
    }
    if (['-v', '--version', '-h', '--help'].includes(first)) throw usage(`unexpected argument "${argv[1]}" after ${first}`);
    const guess = first.startsWith('--') ? closest(first, ['--version', '--help']) : null;
    throw usage(`unknown option ${first}${guess ? ` (did you mean ${guess}?)` : ''}; options go after the command`);
  }
  if (first === 'help') {
    const topic = after[0];
    if (after.length > 1 || (topic !== undefined && !COMMANDS[topic])) throw usage(`unknown help topic "${after.join(' ')}"`);
    console.log(topic ? commandHelp(topic) : HELP);
    return 0;
  }
  const command = first;
  const spec = COMMANDS[command];
  if (!spec) {
    const guess = closest(command, [...Object.keys(COMMANDS), 'help']);
    throw usage(`unknown command "${command}"${guess ? ` (did you mean "${guess}"?)` : ''}`);
  }
  const { positional: rest, values, rest: afterSeparator } = parseCommand(command, spec, after);
  if (values.help) {
    console.log(commandHelp(command));
    return 0;
  }
  const json = values.json === true;
  const flags = {
    has: (name: string) => values[name] === true,
    get: (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined),
  };
  const out = (value: unknown, human: () => void) => (json ? console.log(JSON.stringify(value, null, 2)) : human());
  if (command === 'daemon') {
    const { runDaemon } = await import('../main.js');
    await runDaemon();
    return -1;
  }
  const client = new BerthClient();
  const needApp = () => encodeURIComponent(rest[0]!);
  switch (command) {
    case 'deploy': {
      const app = needApp();
      const version = rest[1]!;
      const r = await client.request<{ revision: number; version: string; unchanged?: boolean }>('POST', `/v1/apps/${app}/releases`, { version });
      out(r, () => console.log(r.unchanged ? `${rest[0]}: already at revision ${r.revision} (${r.version})` : `${rest[0]}: revision ${r.revision} asks for ${r.version}`));
      return flags.has('wait') ? waitFor(client, app, r.revision, json) : 0;
    }
    case 'rollback': {
      const app = needApp();
      const to = flags.get('to');
      const r = await client.request<{ revision: number; version: string; unchanged?: boolean }>('POST', `/v1/apps/${app}/rollback`, to !== undefined ? { version: to } : {});
      out(r, () => console.log(r.unchanged ? `${rest[0]}: already at revision ${r.revision} (${r.version})` : `${rest[0]}: revision ${r.revision} rolls back to ${r.version}`));
      return flags.has('wait') ? waitFor(client, app, r.revision, json) : 0;
    }
    case 'exec': {
      const app = needApp();
      const command = (afterSeparator ?? []).join(' ');
      if (command === '') throw usage('exec needs APP -- CMD', 'exec');
      const host = flags.get('host');
      const r = await client.request<{ host: string; version: string; exitCode: number; outputTail: string; timedOut: boolean }>(
        'POST',
        `/v1/apps/${app}/exec`,
        { command, ...(host !== undefined ? { host } : {}) },
      );
      out(r, () => {
        process.stdout.write(r.outputTail);
        if (r.timedOut) console.error(`berth: timed out on ${r.host}`);
      });
      return r.exitCode;
    }
    case 'maintenance':
    case 'live': {
      const message = flags.get('message');
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
      if (flags.has('follow')) {
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
    if (err instanceof ApiError) console.error(`berth: ${err.message}${err.status ? ` (HTTP ${err.status} ${err.serverCode ?? err.code})` : ''}${err.hint ? `; ${err.hint}` : ''}`);
    else if (err instanceof BerthError) console.error(`berth: ${err.message}`);
    else console.error(`berth: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = err instanceof BerthError && err.code === 'USAGE' ? 2 : 1;
  },
);
