#!/usr/bin/env node
import type { AppStatus, BerthEvent } from '../domain/release.js';
import { BerthError, ConfigError } from '../domain/errors.js';
import { MAX_LIMIT } from '../store/limits.js';
import { formatDuration, parseDuration, parseSince } from '../config/duration.js';
import { DEFAULT_LOG_TAIL, MAX_LOG_TAIL } from '../domain/logs.js';
import { unitHost, unitKey } from '../domain/processes.js';
import { parseArgs as nodeParseArgs } from 'node:util';
import { BERTH_VERSION } from '../version.js';
import { BerthClient } from './client.js';
import { ApiError, UsageError } from './errors.js';
import { ago, table } from './format.js';

const HELP = `berth ${BERTH_VERSION} — reconciling zero-downtime deploys for Docker hosts over SSH

Usage:
  berth daemon                          run the controller (BERTH_CONFIG, BERTH_DB, BERTH_LISTEN, BERTH_TOKEN)
  berth check-config FILE               validate a config file completely without connecting to any host
  berth import-kamal PATH [-d DESTINATION]
                                        print a berth config made from a Kamal config/deploy.yml; on stderr what did not carry over
  berth deploy APP VERSION [--wait [--timeout D]]
                                        ask for VERSION; --wait follows the rollout host by host
  berth status [APP]                    phase, revisions, per-host view; maintenance, pause, last failure
  berth rollback APP [--to VERSION] [--wait [--timeout D]]
                                        back to the previous (or named) version, as a new revision
  berth restart APP [--wait [--timeout D]]
                                        new containers of the same version, host by host
  berth remove APP [--wait [--timeout D]]
                                        delete an app created through the API: drain, remove its containers
  berth reload                          re-read the daemon's config file (all of it valid, or nothing changes)
  berth hosts                           every host: up/down, Docker version, proxy, last check, last error
  berth pause APP | berth resume APP    hold / continue the rollout between steps
  berth exec APP [--host H] -- CMD      run CMD (sh -c) in a one-off container of the current release
  berth maintenance APP [--message M] | berth live APP
                                        proxies answer 503 with M / route traffic again
  berth history APP                     releases, newest first
  berth events APP [--follow]           audit events; --follow streams them live
  berth logs APP [--host H] [--process P] [--since D] [--tail N] [-f]
                                        the app's container logs from every host, each line after its host (process@host)
  berth -v | --version                  print the version
  berth --help | berth COMMAND --help   this help / one command's usage

Options: --json (machine-readable output).
Exit codes: 0 done; 1 failed (API error; with --wait: the rollout failed, rolled back or paused);
2 usage; 3 --wait timed out (the rollout goes on in the daemon).  Client env: BERTH_URL (default http://127.0.0.1:7373),
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
const WAIT_OPTS: Record<string, OptionSpec> = { wait: { type: 'boolean' }, timeout: { type: 'string' } };
const WAIT_HELP = `
  --wait: follows the rollout, printing each host's state (unreachable hosts with the reason) as it changes.
  --timeout D: how long --wait waits (e.g. 10s, 2m; default: the app's rollout.progress_deadline).
  Exit: 0 complete; 1 failed, rolled back or paused (or an API error); 2 usage; 3 --timeout passed first.`;
const COMMANDS: Record<string, CommandSpec> = {
  daemon: { usage: 'berth daemon    run the controller (BERTH_CONFIG, BERTH_DB, BERTH_LISTEN, BERTH_TOKEN)', args: { required: [], optional: [] }, options: {} },
  'check-config': {
    usage: 'berth check-config FILE [--json]\n  validates a config file completely, connecting to nothing: exit 0, or every issue with its key path and exit 1 (for CI pipelines)',
    args: { required: ['FILE'], optional: [] },
    options: JSON_OPT,
  },
  'import-kamal': {
    usage: [
      'berth import-kamal PATH [-d | --destination DESTINATION]',
      '  reads a Kamal 1 or 2 config (PATH: the project directory, or its config/deploy.yml; with -d also config/deploy.DESTINATION.yml,',
      '  merged over it as Kamal does, and the hooks in .kamal/hooks) and prints a berth config on stdout. stderr lists every Kamal key',
      '  that does not carry over, as `key.path: why`. ERB is reported, never run. Exit 0; 1 when the config cannot be read or parsed.',
    ].join('\n'),
    args: { required: ['PATH'], optional: [] },
    options: { destination: { type: 'string', short: 'd' } },
  },
  deploy: {
    usage: `berth deploy APP VERSION [--wait [--timeout D]] [--json]\n  ask for VERSION as a new revision${WAIT_HELP}`,
    args: { required: ['APP', 'VERSION'], optional: [] },
    options: { ...JSON_OPT, ...WAIT_OPTS },
  },
  status: {
    usage: 'berth status [APP] [--json]\n  phase, revisions and per-host view; with APP also maintenance, pause and the last failure (its message, with the probe\'s answer)',
    args: { required: [], optional: ['APP'] },
    options: JSON_OPT,
  },
  hosts: { usage: 'berth hosts [--json]\n  every host: up/down, Docker version, its proxy (running with N routes, not answering, stopped, missing), when it was last checked and its last error', args: { required: [], optional: [] }, options: JSON_OPT },
  rollback: {
    usage: `berth rollback APP [--to VERSION] [--wait [--timeout D]] [--json]\n  back to the previous (or named) version, as a new revision${WAIT_HELP}`,
    args: app1,
    options: { ...JSON_OPT, to: { type: 'string' }, ...WAIT_OPTS },
  },
  restart: {
    usage: `berth restart APP [--wait [--timeout D]] [--json]\n  new containers of the desired version on every host, through the usual health-gated rollout (a new revision)${WAIT_HELP}`,
    args: app1,
    options: { ...JSON_OPT, ...WAIT_OPTS },
  },
  remove: {
    usage: 'berth remove APP [--wait [--timeout D]] [--json]\n  delete an app created through the API: its routes come off every proxy (drained), its containers are removed, then its record (its events stay)\n  --wait: until it is gone (default --timeout 5m). An app the config file declares is removed from the file, then `berth reload`.',
    args: app1,
    options: { ...JSON_OPT, ...WAIT_OPTS },
  },
  reload: {
    usage: "berth reload [--json]\n  re-read the daemon's config file and apply its apps; every issue is listed and nothing changes when it is invalid (SIGHUP to the daemon does the same)",
    args: { required: [], optional: [] },
    options: JSON_OPT,
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
  logs: {
    usage: [
      'berth logs APP [--host H] [--process P] [--since D] [--tail N] [-f | --follow] [--json]',
      "  the logs of the container serving APP on every host (or --host H), merged by time, each line after its host (secret values redacted)",
      '  --process P: an app with processes: only process P; each line is after its unit, process@host (web@h1, worker@h3)',
      `  --since D: only lines after D, a duration before now (10m, 1h30m) or an RFC 3339 time (2026-11-29T09:30:00Z)`,
      `  --tail N: lines per host first (0 to ${MAX_LOG_TAIL}, default ${DEFAULT_LOG_TAIL})`,
      "  -f, --follow: then new lines as they are written, across the app's next containers, until interrupted",
      '  A host that cannot be read is said on stderr; the others go on. Exit: 0; 1 when a host could not be read (without --follow) or an API error.',
      '  --json: one JSON object per line: {"type":"line",host,container,stream,time,text} or {"type":"host",host,state,container,message,code}.',
    ].join('\n'),
    args: app1,
    options: { ...JSON_OPT, host: { type: 'string' }, process: { type: 'string' }, since: { type: 'string' }, tail: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  },
};

const HELP_OPTION: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h' } };

/** One command's usage (`berth deploy --help`). */
function commandHelp(command: string): string {
  const spec = COMMANDS[command]!;
  // Commands that talk to no daemon have no client settings to explain.
  const opts = ['daemon', 'check-config', 'import-kamal'].includes(command) ? '' : '\n\n--json prints the API\'s JSON; client env: BERTH_URL, BERTH_TOKEN (default: data/token next to BERTH_DB).';
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

type Failure = { reason: string; message: string; revision: number | null; at: string; logs?: Array<{ host: string; lines: string[] }> };
type AppView = {
  name: string;
  paused: boolean;
  maintenance?: string | null;
  spec?: { hosts?: string[]; rollout?: { progress_deadline?: string }; processes?: Record<string, { hosts: string[] }> };
  desired: { revision: number; version: string } | null;
  status: AppStatus | null;
  lastFailure?: Failure | null;
};
/** A row of GET /v1/hosts. */
type HostRow = {
  host: string;
  up: boolean;
  dockerVersion: string | null;
  lastError: string | null;
  checkedAt: string | null;
  proxy?: { state: string; image: string | null; routes: number } | null;
};

/** `berth hosts`' PROXY column: its state, and the routes it serves when it runs. */
function proxyCell(p: HostRow['proxy']): string | null {
  if (!p) return null;
  return p.state === 'running' ? `running, ${p.routes} route${p.routes === 1 ? '' : 's'}` : p.state;
}

/** Exit codes (README.md, "CLI"); a usage mistake is 2 and an API error 1 (see the end of this file). */
const EXIT = { ok: 0, failed: 1, timeout: 3 } as const;

const FINAL = new Set(['Complete', 'Failed', 'RolledBack', 'Paused']);
/** How often `--wait` reads the app's status (which decides when the wait ends) and the hosts' reachability. */
const STATUS_POLL_MS = 500;
/** `--timeout` when the app's progress deadline cannot be read. */
const DEFAULT_WAIT_MS = 600_000;
/** `berth remove --wait`'s default bound: drains and stops take at most drain_timeout + stop_timeout per host. */
const DEFAULT_REMOVE_WAIT_MS = 300_000;

function printStatus(app: AppView): void {
  const s = app.status;
  console.log(`${app.name}: ${s?.phase ?? 'NoRelease'}${app.paused ? ' (paused)' : ''}${app.maintenance != null ? ' (maintenance)' : ''}  desired r${app.desired?.revision ?? '-'} ${app.desired?.version ?? ''}  observed r${s?.observedRevision ?? '-'}`);
  if (app.paused) console.log(`  paused: the rollout holds between steps (berth resume ${app.name})`);
  if (app.maintenance != null) console.log(`  maintenance: proxies answer 503 "${app.maintenance}" (berth live ${app.name})`);
  for (const c of s?.conditions ?? []) console.log(`  ${c.type}=${c.status} ${c.reason}: ${c.message}`);
  if (s?.hosts.length) {
    console.log(table([s.hosts.some((h) => h.process) ? 'UNIT' : 'HOST', 'VERSION', 'REV', 'HEALTH', 'CONTAINER', 'LAST ERROR'], s.hosts.map((h) => [h.host, h.version, h.revision, h.health, h.containerId?.slice(0, 12), h.lastError])).replace(/^/gm, '  '));
  }
  const f = app.lastFailure;
  if (f) console.log(`  last failure: ${f.reason}${f.revision !== null ? ` (revision ${f.revision})` : ''} ${ago(f.at)}: ${f.message}`);
  // A failed container's last words: the status's while its rollout is current, else the last failure's (rolled back since).
  const logs = new Map<string, string[]>();
  for (const h of s?.hosts ?? []) if (h.lastLogs) logs.set(h.host, h.lastLogs);
  for (const l of f?.logs ?? []) if (!logs.has(l.host)) logs.set(l.host, l.lines);
  for (const [host, lines] of logs) {
    console.log(lines.length > 0 ? `  ${host}: the last ${lines.length} log lines of its failed container:` : `  ${host}: its failed container wrote no log line`);
    for (const line of lines) console.log(`    | ${line}`);
  }
}

function printEvent(e: BerthEvent): void {
  console.log(`${e.createdAt}  ${e.host ? e.host.padEnd(8) : ''.padEnd(8)}  ${e.type}: ${e.message}`);
}

/** One host's state for `--wait`: unreachable with the reason, else health, version and the last error. */
function hostState(name: string, status: AppStatus | null | undefined, reach: HostRow | undefined): string {
  if (reach && !reach.up) return `unreachable: ${reach.lastError ?? 'no answer'}`;
  const h = status?.hosts.find((x) => x.host === name);
  if (!h) return 'pending';
  const running = h.version ? ` ${h.version} (r${h.revision})` : '';
  return `${h.health}${running}${h.lastError ? `; last error: ${h.lastError}` : ''}`;
}

/**
 * Follows the rollout of `revision` until the app's status reaches a final phase for it
 * (or a newer revision takes over), printing each host's state when it changes; gives
 * up after `timeoutMs` (default: the app's progress deadline) with EXIT.timeout.
 */
async function waitFor(client: BerthClient, app: string, revision: number, json: boolean, timeoutMs: number | undefined): Promise<number> {
  const controller = new AbortController();
  const started = Date.now();
  const first = await client.request<AppView>('GET', `/v1/apps/${app}`).catch(() => null);
  const limitMs = timeoutMs ?? parseDuration(first?.spec?.rollout?.progress_deadline ?? '') ?? DEFAULT_WAIT_MS;
  let last: AppView | null = first;
  const shown = new Map<string, string>();
  const showHosts = (view: AppView | null, hosts: HostRow[] | null) => {
    if (json || !view) return;
    const reach = new Map((hosts ?? []).map((h) => [h.host, h]));
    // An app with processes is followed unit by unit (web@h1), each with its host's reachability.
    const processes = view.spec?.processes;
    const names = processes
      ? Object.entries(processes).flatMap(([p, d]) => d.hosts.map((h) => unitKey(p, h)))
      : (view.spec?.hosts ?? view.status?.hosts.map((h) => h.host) ?? []);
    for (const name of names) {
      const state = hostState(name, view.status, reach.get(unitHost(name)));
      if (shown.get(name) === state) continue;
      shown.set(name, state);
      console.log(`${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s  ${processes ? 'unit' : 'host'} ${name}: ${state}`);
    }
  };
  const done = new Promise<AppView>((resolve) => {
    const poll = async () => {
      let view = first;
      while (!controller.signal.aborted) {
        const hosts = await client.listAll<HostRow>('/v1/hosts', 'hosts', 'after').catch(() => null);
        if (controller.signal.aborted) return;
        if (view) last = view;
        showHosts(view, hosts);
        const s = view?.status;
        const newer = (view?.desired?.revision ?? 0) > revision;
        const mine = s && (s.observedRevision === revision || newer || s.phase === 'Failed' || s.phase === 'Paused');
        if (view && s && s.phase && FINAL.has(s.phase) && mine) return resolve(view);
        await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
        view = await client.request<AppView>('GET', `/v1/apps/${app}`).catch(() => null);
      }
    };
    void poll();
  });
  // The event lines are a courtesy; the status poll decides. A stream failure must not crash the wait.
  if (!json) client.follow(app, 0, (e) => { if ((e.revision ?? 0) >= revision) printEvent(e); }, controller.signal).catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), Math.max(0, limitMs - (Date.now() - started)))));
  const view = await Promise.race([done, timedOut]);
  clearTimeout(timer);
  controller.abort();
  const final = view ?? last;
  if (json) console.log(JSON.stringify(final, null, 2));
  else if (final) printStatus(final);
  if (!view) {
    const down = final?.status?.hosts.filter((h) => h.lastError).map((h) => h.host) ?? [];
    console.error(
      `berth: ${decodeURIComponent(app)}: revision ${revision} not done after ${formatDuration(limitMs)} (${final?.status?.phase ?? 'no status'}` +
        `${down.length ? `; hosts with an error: ${down.join(', ')}` : ''}); the daemon goes on with it (berth status ${decodeURIComponent(app)})`,
    );
    return EXIT.timeout;
  }
  const ok = view.status?.phase === 'Complete' || (view.status?.phase === 'RolledBack' && view.desired?.revision === revision);
  return ok ? EXIT.ok : EXIT.failed;
}

/** `berth remove --wait`: polls the app until it is gone (404), or the timeout. */
async function waitGone(client: BerthClient, app: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.request<AppView>('GET', `/v1/apps/${app}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        console.error(`${decodeURIComponent(app)}: removed from every host`);
        return EXIT.ok;
      }
      throw err;
    }
    if (Date.now() >= deadline) {
      console.error(`berth: ${decodeURIComponent(app)} still being removed after ${formatDuration(timeoutMs)} (a host may be unreachable: berth hosts); the daemon goes on with it`);
      return EXIT.timeout;
    }
    await new Promise((r) => setTimeout(r, STATUS_POLL_MS));
  }
}

/** `berth check-config FILE`: the daemon's own loader (YAML, every key, route conflicts), no host contacted. */
async function checkConfig(file: string, json: boolean): Promise<number> {
  const { loadConfig } = await import('../config/load.js');
  try {
    const config = loadConfig(file);
    const summary = { file, ok: true, hosts: Object.keys(config.hosts).length, apps: Object.keys(config.apps).length };
    console.log(json ? JSON.stringify(summary) : `${file}: valid (${summary.hosts} host${summary.hosts === 1 ? '' : 's'}, ${summary.apps} app${summary.apps === 1 ? '' : 's'})`);
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (json) console.log(JSON.stringify({ file, ok: false, issues: err.issues }));
    else for (const issue of err.issues) console.error(`${file}: ${issue.path}: ${issue.message}`);
    return EXIT.failed;
  }
}

/** `berth import-kamal PATH [-d DESTINATION]`: the config on stdout, the notes on stderr (src/kamal). */
async function importKamalCommand(path: string, destination: string | undefined): Promise<number> {
  const { readKamalSource } = await import('../kamal/source.js');
  const { importKamal } = await import('../kamal/import.js');
  const imported = importKamal(readKamalSource(path, destination ?? null));
  process.stdout.write(imported.yaml);
  for (const note of imported.notes) console.error(`${note.path}: ${note.message}`);
  if (imported.issues.length > 0) {
    console.error('berth: the printed config does not pass `berth check-config` yet:');
    for (const issue of imported.issues) console.error(`  ${issue.path}: ${issue.message}`);
  }
  return EXIT.ok;
}

/** `--timeout D` in ms (undefined without it); a bad or zero duration is a usage mistake. */
function waitTimeout(command: string, value: string | undefined, wait: boolean): number | undefined {
  if (value === undefined) return undefined;
  if (!wait) throw usage('--timeout needs --wait', command);
  const ms = parseDuration(value);
  if (ms === null || ms <= 0) throw usage(`--timeout "${value}" is not a duration like 10s or 2m`, command);
  return ms;
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
  if (command === 'check-config') return checkConfig(rest[0]!, json);
  if (command === 'import-kamal') return importKamalCommand(rest[0]!, flags.get('destination'));
  const client = new BerthClient();
  const needApp = () => encodeURIComponent(rest[0]!);
  switch (command) {
    case 'deploy': {
      const app = needApp();
      const version = rest[1]!;
      const timeout = waitTimeout('deploy', flags.get('timeout'), flags.has('wait'));
      const r = await client.request<{ revision: number; version: string; unchanged?: boolean }>('POST', `/v1/apps/${app}/releases`, { version });
      out(r, () => console.log(r.unchanged ? `${rest[0]}: already at revision ${r.revision} (${r.version})` : `${rest[0]}: revision ${r.revision} asks for ${r.version}`));
      return flags.has('wait') ? waitFor(client, app, r.revision, json, timeout) : 0;
    }
    case 'rollback': {
      const app = needApp();
      const to = flags.get('to');
      const timeout = waitTimeout('rollback', flags.get('timeout'), flags.has('wait'));
      const r = await client.request<{ revision: number; version: string; unchanged?: boolean }>('POST', `/v1/apps/${app}/rollback`, to !== undefined ? { version: to } : {});
      out(r, () => console.log(r.unchanged ? `${rest[0]}: already at revision ${r.revision} (${r.version})` : `${rest[0]}: revision ${r.revision} rolls back to ${r.version}`));
      return flags.has('wait') ? waitFor(client, app, r.revision, json, timeout) : 0;
    }
    case 'restart': {
      const app = needApp();
      const timeout = waitTimeout('restart', flags.get('timeout'), flags.has('wait'));
      const r = await client.request<{ revision: number; version: string }>('POST', `/v1/apps/${app}/restart`);
      out(r, () => console.log(`${rest[0]}: revision ${r.revision} restarts ${r.version}`));
      return flags.has('wait') ? waitFor(client, app, r.revision, json, timeout) : 0;
    }
    case 'remove': {
      const app = needApp();
      const timeout = waitTimeout('remove', flags.get('timeout'), flags.has('wait'));
      const r = await client.request<{ app: string; hosts: string[] }>('DELETE', `/v1/apps/${app}`);
      out(r, () => console.log(`${r.app}: being removed: draining its routes and removing its containers on ${r.hosts.join(', ')}`));
      return flags.has('wait') ? waitGone(client, app, timeout ?? DEFAULT_REMOVE_WAIT_MS) : 0;
    }
    case 'reload': {
      const r = await client.request<{ apps: Record<string, string>; undeclared: string[]; restartRequired: string[] }>('POST', '/v1/reload', {});
      out(r, () => {
        const changed = Object.entries(r.apps).filter(([, change]) => change !== 'unchanged');
        console.log(changed.length === 0 ? 'config reloaded: no app changed' : `config reloaded: ${changed.map(([name, change]) => `${name} ${change}`).join(', ')}`);
        for (const name of r.undeclared) console.log(`  ${name}: no longer in the file; it keeps running, managed through the API (berth remove ${name} deletes it)`);
        if (r.restartRequired.length > 0) console.log(`  changed but applied only at the next start of berth: ${r.restartRequired.join(', ')}`);
      });
      return 0;
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
      const apps = await client.listAll<AppView>('/v1/apps', 'apps', 'after');
      out({ apps }, () =>
        console.log(table(['APP', 'PHASE', 'DESIRED', 'OBSERVED', 'HOSTS'], apps.map((a) => [
          a.name + (a.paused ? ' (paused)' : '') + (a.maintenance != null ? ' (maintenance)' : ''),
          a.status?.phase ?? 'NoRelease',
          a.desired ? `r${a.desired.revision} ${a.desired.version}` : null,
          a.status?.observedRevision ? `r${a.status.observedRevision}` : null,
          a.status ? `${a.status.hosts.filter((h) => h.health === 'healthy').length}/${a.status.hosts.length} healthy` : null,
        ]))),
      );
      return 0;
    }
    case 'hosts': {
      const hosts = await client.listAll<HostRow>('/v1/hosts', 'hosts', 'after');
      out({ hosts }, () =>
        console.log(table(['HOST', 'STATE', 'DOCKER', 'PROXY', 'CHECKED', 'LAST ERROR'], hosts.map((h) => [h.host, h.up ? 'up' : 'down', h.dockerVersion, proxyCell(h.proxy), h.checkedAt ? ago(h.checkedAt) : 'never', h.lastError]))),
      );
      return 0;
    }
    case 'history': {
      const { releases } = await client.request<{ releases: Array<{ revision: number; version: string; reason: string; actor: string; createdAt: string }> }>('GET', `/v1/apps/${needApp()}/releases`);
      out({ releases }, () => console.log(table(['REV', 'VERSION', 'REASON', 'ACTOR', 'CREATED'], releases.map((r) => [r.revision, r.version, r.reason, r.actor, ago(r.createdAt)]))));
      return 0;
    }
    case 'logs': {
      const since = flags.get('since');
      if (since !== undefined && parseSince(since, Date.now()) === null) throw usage(`--since "${since}" is neither a duration like 10m nor an RFC 3339 time like 2026-11-29T09:30:00Z`, 'logs');
      const tailArg = flags.get('tail');
      const tail = tailArg === undefined ? undefined : /^\d{1,5}$/.test(tailArg) ? Number(tailArg) : NaN;
      if (tail !== undefined && !(tail <= MAX_LOG_TAIL)) throw usage(`--tail "${tailArg}" is not a number of lines from 0 to ${MAX_LOG_TAIL}`, 'logs');
      const host = flags.get('host');
      const processName = flags.get('process');
      let failed = false;
      let width = 0;
      await client.logs(
        rest[0]!,
        { follow: flags.has('follow'), ...(host !== undefined ? { host } : {}), ...(processName !== undefined ? { process: processName } : {}), ...(since !== undefined ? { since } : {}), ...(tail !== undefined ? { tail } : {}) },
        (item) => {
          if (item.type === 'host' && item.state === 'error') failed = true;
          if (json) return console.log(JSON.stringify(item));
          width = Math.max(width, item.host.length);
          if (item.type === 'line') process.stdout.write(`${item.host.padEnd(width)} | ${item.text}\n`);
          else console.error(`${item.host}: ${item.state}: ${item.message}`);
        },
      );
      return failed ? EXIT.failed : EXIT.ok;
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
