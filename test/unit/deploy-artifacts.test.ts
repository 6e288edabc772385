/**
 * The deploy artifacts against the code they describe:
 *  - deploy/prometheus/: scrape config and alert rules parse, every alert of
 *    docs/observability.md is there, and every metric, label and label value their
 *    PromQL names exists in berth's registry;
 *  - deploy/grafana/berth-dashboard.json: parses, is wired to a datasource variable,
 *    and every expression (panels and variables) names only existing series;
 *  - deploy/systemd/berth.service: the directives the daemon relies on;
 *  - package.json, package-lock.json and the Dockerfile: `npm ci` on this Node warns
 *    about no engine, every locked package supports every Node line "engines" names,
 *    and the image builds on one of those lines that is not past its end of life.
 * Those checks always run. On top, when the tools are installed: promtool check
 * config / check rules / test rules / check metrics (and the dashboard's PromQL
 * through promtool's parser), systemd-analyze verify / security. Each run prints
 * which external checks ran and which were skipped and why;
 * BERTH_REQUIRE_PROMTOOL=1 / BERTH_REQUIRE_SYSTEMD_ANALYZE=1 make a missing tool a failure.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test, type TestContext } from 'node:test';
import semver from 'semver';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { Counter, Gauge, Histogram } from 'prom-client';
import { BerthMetrics, PHASES } from '../../src/metrics/registry.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROM_DIR = join(ROOT, 'deploy/prometheus');
const PROM_CONFIG = join(PROM_DIR, 'prometheus.yml');
const RULES = join(PROM_DIR, 'berth-rules.yml');
const RULES_TEST = join(PROM_DIR, 'berth-rules.test.yml');
const DASHBOARD = join(ROOT, 'deploy/grafana/berth-dashboard.json');
const UNIT = join(ROOT, 'deploy/systemd/berth.service');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// ---------------------------------------------------------------------------
// External tools: found on PATH or not; every outcome is reported.

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

const report: string[] = [];
after(() => {
  process.stderr.write(`[deploy-artifacts] external checks:\n${report.map((r) => `  ${r}\n`).join('')}`);
});

/** Runs `fn` when `tool` is installed; otherwise skips visibly (or fails, when required). */
async function withTool(t: TestContext, tool: string, requireVar: string, check: string, fn: (path: string) => void | Promise<void>): Promise<void> {
  const path = which(tool);
  if (!path) {
    const why = `${tool} not on PATH: skipped "${check}"`;
    report.push(`SKIPPED ${check} (${tool} not installed${tool === 'promtool' ? "; Debian: apt-get install prometheus" : ''})`);
    if (process.env[requireVar] === '1') assert.fail(`${why}, and ${requireVar}=1 requires it`);
    t.skip(why);
    return;
  }
  await fn(path);
  report.push(`ran     ${check}`);
  t.diagnostic(`ran ${check} (${path})`);
}

function run(cmd: string, args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', input, timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

// ---------------------------------------------------------------------------
// What the registry holds: names, types, label names.

interface SeriesInfo {
  type: string;
  labels: Set<string>;
}

const metrics = new BerthMetrics('0.0.0-test');
const REGISTRY = new Map<string, SeriesInfo>();
for (const j of await metrics.registry.getMetricsAsJSON()) {
  const m = metrics.registry.getSingleMetric(j.name) as unknown as { labelNames?: readonly string[] };
  REGISTRY.set(j.name, { type: String(j.type), labels: new Set(m.labelNames ?? []) });
}

/** Labels Prometheus attaches to every scraped series. */
const TARGET_LABELS = ['job', 'instance', 'service'];

/**
 * The values berth writes into enum-like labels (src/reconciler/controller.ts,
 * src/metrics/registry.ts). A rule matching result="Failed" would never fire: caught here.
 */
const LABEL_VALUES: Record<string, Record<string, readonly string[]>> = {
  berth_reconcile_total: { result: ['acted', 'waiting', 'converged', 'error'] },
  berth_rollout_duration_seconds: { result: ['complete', 'rolled_back', 'failed'] },
  berth_health_checks_total: { result: ['pass', 'fail'] },
  berth_rollout_phase: { phase: PHASES },
  berth_rollbacks_total: { reason: ['health_check_failed', 'progress_deadline'] },
};

/** A series name as written in PromQL, resolved to its registry family. */
function resolveSeries(name: string): { family: string; labels: Set<string> } | null {
  if (name === 'up') return { family: 'up', labels: new Set() };
  const direct = REGISTRY.get(name);
  if (direct) return { family: name, labels: direct.labels };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m ? REGISTRY.get(m[1]!) : undefined;
  if (m && base && (base.type === 'histogram' || base.type === 'summary')) {
    return { family: m[1]!, labels: new Set([...base.labels, ...(m[2] === 'bucket' ? ['le'] : [])]) };
  }
  return null;
}

// ---------------------------------------------------------------------------
// A small PromQL lexer, enough to find every series, matcher and grouping label.

type Tok = { k: 'id' | 'str' | 'num' | 'var' | 'op' | 'punct'; v: string };

function lex(expr: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < expr.length) {
    const rest = expr.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\s+/.exec(rest)) || (m = /^#[^\n]*/.exec(rest))) {
      i += m[0].length;
    } else if ((m = /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'|^`[^`]*`/.exec(rest))) {
      toks.push({ k: 'str', v: m[0].slice(1, -1) });
      i += m[0].length;
    } else if ((m = /^\$\{[a-zA-Z_][a-zA-Z0-9_]*(?::[a-z]+)?\}|^\$[a-zA-Z_][a-zA-Z0-9_]*/.exec(rest))) {
      toks.push({ k: 'var', v: m[0].replace(/^\$\{?|(?::[a-z]+)?\}$/g, '') });
      i += m[0].length;
    } else if ((m = /^(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:ms|[smhdwy])?)+/i.exec(rest))) {
      toks.push({ k: 'num', v: m[0] });
      i += m[0].length;
    } else if ((m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(rest))) {
      toks.push({ k: 'id', v: m[0] });
      i += m[0].length;
    } else if ((m = /^(?:=~|!~|!=|==|>=|<=|[-+*/%^<>=])/.exec(rest))) {
      toks.push({ k: 'op', v: m[0] });
      i += m[0].length;
    } else if ('{}[]()),:'.includes(rest[0]!)) {
      toks.push({ k: 'punct', v: rest[0]! });
      i += 1;
    } else {
      throw new Error(`cannot lex PromQL at ${JSON.stringify(rest.slice(0, 20))} in ${expr}`);
    }
  }
  return toks;
}

const FUNCTIONS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'changes', 'resets', 'histogram_quantile', 'abs', 'absent',
  'absent_over_time', 'clamp_min', 'clamp_max', 'vector', 'scalar', 'time', 'timestamp', 'label_replace', 'label_join',
  'max_over_time', 'min_over_time', 'avg_over_time', 'sum_over_time', 'count_over_time', 'last_over_time', 'round', 'sort', 'sort_desc',
]);
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset']);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

interface SeriesRef {
  name: string;
  matchers: Array<{ label: string; op: string; value: string }>;
}
interface PromqlRefs {
  series: SeriesRef[];
  grouping: string[];
  vars: string[];
  functions: string[];
}

function analyse(expr: string): PromqlRefs {
  const toks = lex(expr);
  const out: PromqlRefs = { series: [], grouping: [], vars: [], functions: [] };
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i]!;
    const next = toks[i + 1];
    if (t.k === 'var') out.vars.push(t.v);
    if (t.k === 'punct' && t.v === '[') {
      // range or subquery: durations and variables only
      for (i++; i < toks.length && toks[i]!.v !== ']'; i++) if (toks[i]!.k === 'var') out.vars.push(toks[i]!.v);
      continue;
    }
    if (t.k !== 'id') continue;
    if (GROUPING.has(t.v)) {
      if (next?.v === '(') {
        for (i += 2; i < toks.length && toks[i]!.v !== ')'; i++) if (toks[i]!.k === 'id') out.grouping.push(toks[i]!.v);
      }
      continue;
    }
    if (KEYWORDS.has(t.v)) continue;
    // f(...), and aggregations with a modifier first: sum by (app) (...)
    if (next?.v === '(' || (AGGREGATIONS.has(t.v) && (next?.v === 'by' || next?.v === 'without'))) {
      assert.ok(FUNCTIONS.has(t.v), `unknown PromQL function ${t.v}() in: ${expr}`);
      out.functions.push(t.v);
      continue;
    }
    const ref: SeriesRef = { name: t.v, matchers: [] };
    if (next?.v === '{') {
      for (i += 2; i < toks.length && toks[i]!.v !== '}'; i++) {
        const label = toks[i]!;
        if (label.v === ',') continue;
        const op = toks[i + 1];
        const value = toks[i + 2];
        assert.ok(label.k === 'id' && op?.k === 'op' && value?.k === 'str', `label matcher at ${label.v} in: ${expr}`);
        ref.matchers.push({ label: label.v, op: op.v, value: value.v });
        for (const v of value.v.matchAll(/\$\{?([a-zA-Z_][a-zA-Z0-9_]*)/g)) out.vars.push(v[1]!);
        i += 2;
      }
    }
    out.series.push(ref);
  }
  return out;
}

/** Every series, label and literal label value in `expr` exists in berth's registry. */
function checkExpr(expr: string, where: string): PromqlRefs {
  const refs = analyse(expr);
  assert.ok(refs.series.length > 0, `${where}: names at least one series: ${expr}`);
  const available = new Set<string>(TARGET_LABELS);
  for (const s of refs.series) {
    const r = resolveSeries(s.name);
    assert.ok(r, `${where}: series ${s.name} is not in berth's registry (${expr})`);
    const labels = new Set([...r.labels, ...TARGET_LABELS]);
    if (r.family === 'up') assert.ok(s.matchers.some((m) => m.label === 'job'), `${where}: up{} is narrowed by job`);
    for (const m of s.matchers) {
      assert.ok(labels.has(m.label), `${where}: ${s.name} has no label ${m.label} (has ${[...r.labels].join(', ') || 'none'})`);
      const allowed = LABEL_VALUES[r.family]?.[m.label];
      if (allowed && (m.op === '=' || m.op === '!=')) {
        assert.ok(allowed.includes(m.value), `${where}: ${s.name}{${m.label}="${m.value}"}: berth writes only ${allowed.join(', ')}`);
      }
    }
    r.labels.forEach((l) => available.add(l));
  }
  for (const g of refs.grouping) assert.ok(available.has(g), `${where}: groups by ${g}, which no series in the expression has (${expr})`);
  return refs;
}

/**
 * Labels an alert's expression keeps (roughly): the grouping labels when it
 * aggregates, else every label of its series plus the target labels.
 */
function outputLabels(expr: string): Set<string> {
  const refs = analyse(expr);
  if (refs.functions.some((f) => AGGREGATIONS.has(f))) return new Set(refs.grouping);
  return new Set([...TARGET_LABELS, ...refs.series.flatMap((s) => [...(resolveSeries(s.name)?.labels ?? [])])]);
}

// ---------------------------------------------------------------------------

describe('the PromQL checker itself', () => {
  test('finds series, matchers, grouping labels and variables', () => {
    const r = analyse('histogram_quantile(0.99, sum by (le, op) (rate(berth_host_operation_duration_seconds_bucket{job="$job", host=~"$host"}[$__rate_interval])))');
    assert.deepEqual(r.series.map((s) => s.name), ['berth_host_operation_duration_seconds_bucket']);
    assert.deepEqual(r.grouping, ['le', 'op']);
    assert.deepEqual(r.vars.sort(), ['__rate_interval', 'host', 'job']);
    assert.deepEqual(r.functions, ['histogram_quantile', 'sum', 'rate']);
  });
  test('rejects unknown series, labels, label values and grouping labels', () => {
    assert.throws(() => checkExpr('berth_host_upp == 0', 't'), /not in berth's registry/);
    assert.throws(() => checkExpr('berth_host_up{app="x"} == 0', 't'), /no label app/);
    assert.throws(() => checkExpr('berth_rollout_phase{phase="Failing"} == 1', 't'), /berth writes only/);
    assert.throws(() => checkExpr('increase(berth_rollout_duration_seconds_count{result="error"}[5m])', 't'), /berth writes only/);
    assert.throws(() => checkExpr('sum by (op) (berth_queue_depth)', 't'), /groups by op/);
    assert.throws(() => checkExpr('berth_queue_depth_bucket', 't'), /not in berth's registry/);
    assert.throws(() => checkExpr('up == 0', 't'), /narrowed by job/);
    checkExpr('berth_reconcile_duration_seconds_bucket{le="0.5"} offset 15m', 't');
  });
});

describe('deploy/prometheus', () => {
  const config = parseYaml(readFileSync(PROM_CONFIG, 'utf8')) as Json;
  const rulesDoc = parseYaml(readFileSync(RULES, 'utf8')) as Json;
  const rules = (rulesDoc.groups as Json[]).flatMap((g) => g.rules as Json[]);
  const alerts = new Map(rules.filter((r) => r.alert).map((r) => [r.alert as string, r]));

  test('prometheus.yml scrapes berth at 127.0.0.1:7373/metrics and loads the rules', () => {
    const job = (config.scrape_configs as Json[]).find((s) => s.job_name === 'berth');
    assert.ok(job, 'a scrape job named berth');
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    assert.equal(job.scheme ?? 'http', 'http');
    assert.deepEqual(job.static_configs.flatMap((s: Json) => s.targets), ['127.0.0.1:7373']);
    const files = (config.rule_files as string[]).map((f) => resolve(PROM_DIR, f));
    assert.ok(files.includes(RULES), 'rule_files loads berth-rules.yml');
    for (const f of files) assert.ok(existsSync(f), `${f} exists`);
  });

  test('the scrape target matches the default api.listen', () => {
    const berthYml = parseYaml(readFileSync(join(ROOT, 'deploy/berth.yml'), 'utf8')) as Json;
    assert.equal(berthYml.api?.listen, '127.0.0.1:7373');
  });

  test('berth-rules.yml holds every documented alert, each with severity, summary and description', () => {
    assert.deepEqual(
      [...alerts.keys()].sort(),
      ['BerthDesiredNotObserved', 'BerthDown', 'BerthHostDown', 'BerthReconcileErrors', 'BerthRolloutFailed', 'BerthRolloutStuck'],
    );
    for (const [name, r] of alerts) {
      assert.ok(['critical', 'warning'].includes(r.labels?.severity), `${name}: severity critical|warning`);
      assert.ok(r.annotations?.summary && r.annotations?.description, `${name}: summary and description`);
      const kept = outputLabels(r.expr as string);
      for (const m of `${r.annotations.summary} ${r.annotations.description}`.matchAll(/\$labels\.([a-zA-Z_]+)/g)) {
        assert.ok(kept.has(m[1]!), `${name}: annotation uses $labels.${m[1]}, which its expression keeps (${[...kept].join(', ')})`);
      }
    }
    const forOf = (n: string) => alerts.get(n)?.for;
    assert.equal(forOf('BerthHostDown'), '2m');
    assert.equal(forOf('BerthDown'), '2m');
    assert.equal(forOf('BerthRolloutStuck'), '15m');
    assert.equal(forOf('BerthDesiredNotObserved'), '30m');
    assert.match(alerts.get('BerthRolloutStuck')!.expr, /phase="Progressing"/);
    assert.match(alerts.get('BerthRolloutFailed')!.expr, /berth_rollout_duration_seconds_count\{result="failed"\}/);
    assert.match(alerts.get('BerthRolloutFailed')!.expr, /phase="Failed"/);
    assert.match(alerts.get('BerthReconcileErrors')!.expr, /berth_reconcile_total\{result="error"\}/);
    assert.match(alerts.get('BerthDown')!.expr, /^up\{job="berth"\} == 0$/);
  });

  test('every series, label and label value in the rules exists in the registry', () => {
    for (const r of rules) checkExpr(r.expr as string, `rule ${r.alert ?? r.record}`);
  });

  test('the BerthDown job label matches the scrape job', () => {
    assert.match(alerts.get('BerthDown')!.expr, /job="berth"/);
  });

  test('every alert has a promtool unit test in berth-rules.test.yml', () => {
    const doc = parseYaml(readFileSync(RULES_TEST, 'utf8')) as Json;
    assert.deepEqual(doc.rule_files, ['berth-rules.yml']);
    const tested = new Set((doc.tests as Json[]).flatMap((t) => (t.alert_rule_test as Json[]).filter((a) => (a.exp_alerts as Json[]).length > 0).map((a) => a.alertname)));
    for (const name of alerts.keys()) assert.ok(tested.has(name), `${name} has a firing test case`);
    // The test inputs use real series too.
    for (const t of doc.tests as Json[]) for (const s of t.input_series as Json[]) checkExpr(s.series as string, `test input ${s.series}`);
  });

  test('promtool check config', async (t) => {
    await withTool(t, 'promtool', 'BERTH_REQUIRE_PROMTOOL', 'promtool check config deploy/prometheus/prometheus.yml', (promtool) => {
      const r = run(promtool, ['check', 'config', PROM_CONFIG]);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /SUCCESS/);
    });
  });

  test('promtool check rules', async (t) => {
    await withTool(t, 'promtool', 'BERTH_REQUIRE_PROMTOOL', 'promtool check rules deploy/prometheus/berth-rules.yml', (promtool) => {
      const r = run(promtool, ['check', 'rules', RULES]);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, new RegExp(`SUCCESS: ${rules.length} rules found`));
    });
  });

  test('promtool test rules (alert unit tests)', async (t) => {
    await withTool(t, 'promtool', 'BERTH_REQUIRE_PROMTOOL', 'promtool test rules deploy/prometheus/berth-rules.test.yml', (promtool) => {
      const r = run(promtool, ['test', 'rules', RULES_TEST]);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /SUCCESS/);
    });
  });
});

/** One series in every berth metric (each label set to a plain value), so promtool lints every family. */
function exerciseAll(m: BerthMetrics): void {
  for (const metric of m.registry.getMetricsAsArray()) {
    if (!metric.name.startsWith('berth_')) continue;
    const names = (metric as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const labels = Object.fromEntries(names.map((l) => [l, 'x']));
    if (metric instanceof Counter) metric.inc(labels);
    else if (metric instanceof Gauge) metric.set(labels, 1);
    else if (metric instanceof Histogram) metric.observe(labels, 1);
    else assert.fail(`${metric.name}: a counter, gauge or histogram`);
  }
}

/**
 * The only findings promtool may report on the full exposition: prom-client's standard
 * Node.js gauges, whose names stock Node.js dashboards query (docs/observability.md,
 * "Process metrics"). No berth_ series may ever be flagged.
 */
const PROM_CLIENT_FINDINGS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'].map(
  (n) => `${n} non-counter metrics should not have "_total" suffix`,
);

test("promtool check metrics: berth's own series lint clean; with process metrics, only prom-client's standard names are flagged", async (t) => {
  await withTool(t, 'promtool', 'BERTH_REQUIRE_PROMTOOL', "promtool check metrics < berth's exposition", async (promtool) => {
    const own = new BerthMetrics('0.0.0-test', { processMetrics: false });
    exerciseAll(own);
    const ownText = await own.text();
    for (const name of REGISTRY.keys()) {
      if (name.startsWith('berth_')) assert.match(ownText, new RegExp(`^${name}(_bucket|_sum|_count)?[{ ]`, 'm'), `${name} has a sample for promtool to lint`);
    }
    const clean = run(promtool, ['check', 'metrics'], ownText);
    assert.equal(clean.status, 0, `promtool check metrics on berth's series: exit ${clean.status}\n${clean.out}`);
    assert.equal(clean.out.trim(), '', 'no lint findings');

    const full = new BerthMetrics('0.0.0-test');
    exerciseAll(full);
    const r = run(promtool, ['check', 'metrics'], await full.text());
    // Exit 3 = lint findings only; a parse error is exit 1 with "error while linting".
    assert.ok(r.status === 0 || r.status === 3, r.out);
    assert.doesNotMatch(r.out, /error|parsing/i);
    const findings = r.out.split('\n').filter((l) => l.trim() !== '');
    for (const f of findings) assert.doesNotMatch(f, /^berth_/, `a berth series is flagged: ${f}`);
    assert.deepEqual(findings.sort(), PROM_CLIENT_FINDINGS, 'exactly the known prom-client findings');
  });
});

describe('deploy/grafana/berth-dashboard.json', () => {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Json;
  const panels = (dash.panels as Json[]).flatMap((p) => [p, ...((p.panels as Json[] | undefined) ?? [])]);
  const dataPanels = panels.filter((p) => p.type !== 'row');
  const vars = dash.templating.list as Json[];
  const exprs = dataPanels.flatMap((p) => (p.targets as Json[]).map((tg) => ({ panel: p.title as string, expr: tg.expr as string })));
  const BUILTIN_VARS = new Set(['__rate_interval', '__interval', '__range', '__range_s', '__interval_ms']);

  test('is a Grafana dashboard (schemaVersion ~39) with a Prometheus datasource variable', () => {
    assert.ok(dash.schemaVersion >= 36 && dash.schemaVersion <= 41, `schemaVersion ${dash.schemaVersion}`);
    assert.equal(typeof dash.title, 'string');
    assert.match(dash.uid, /^[a-zA-Z0-9_-]{1,40}$/);
    const ds = vars.find((v) => v.type === 'datasource');
    assert.ok(ds, 'a datasource variable');
    assert.equal(ds.query, 'prometheus');
    for (const p of dataPanels) {
      assert.equal(p.datasource?.uid, `\${${ds.name}}`, `panel "${p.title}" uses the datasource variable`);
      for (const tg of p.targets as Json[]) assert.equal(tg.datasource?.uid, `\${${ds.name}}`, `panel "${p.title}" target ${tg.refId}`);
    }
    for (const v of vars.filter((v) => v.type === 'query')) assert.equal(v.datasource?.uid, `\${${ds.name}}`, `variable ${v.name}`);
  });

  test('panel ids are unique and the grid has no overlaps', () => {
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos as { x: number; y: number; w: number; h: number };
      assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `panel "${p.title}" fits the 24-column grid`);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          assert.ok(!cells.has(`${i},${j}`), `panel "${p.title}" overlaps another at ${i},${j}`);
          cells.add(`${i},${j}`);
        }
      }
    }
  });

  test('has the panels of docs/observability.md', () => {
    const has = (re: RegExp, what: string) => assert.ok(exprs.some((e) => re.test(e.expr)), `a panel for ${what}`);
    has(/berth_rollout_hosts_updated\{[^}]*\} \/ berth_rollout_hosts\{/, 'rollout progress per app');
    assert.ok(dataPanels.some((p) => ['state-timeline', 'table'].includes(p.type) && (p.targets as Json[]).some((tg) => /berth_rollout_phase/.test(tg.expr))), 'phase per app (state timeline or table)');
    has(/berth_host_up/, 'hosts up');
    has(/sum by \(result\) \(rate\(berth_health_checks_total/, 'health check results rate by result');
    has(/histogram_quantile\(0\.5, [^\n]*berth_reconcile_duration_seconds_bucket/, 'reconcile latency p50');
    has(/histogram_quantile\(0\.99, [^\n]*berth_reconcile_duration_seconds_bucket/, 'reconcile latency p99');
    has(/berth_rollout_duration_seconds/, 'rollout durations');
    has(/berth_rollbacks_total/, 'rollbacks');
    has(/berth_queue_depth/, 'queue depth');
    has(/rate\(berth_http_request_duration_seconds_count/, 'API request rate');
    has(/histogram_quantile\([^\n]*berth_http_request_duration_seconds_bucket/, 'API latency');
  });

  test('every panel expression names only existing series, labels, label values and variables', () => {
    const defined = new Set([...vars.map((v) => v.name as string), ...BUILTIN_VARS]);
    assert.ok(exprs.length >= 20, `${exprs.length} expressions`);
    for (const { panel, expr } of exprs) {
      const refs = checkExpr(expr, `panel "${panel}"`);
      for (const v of refs.vars) assert.ok(defined.has(v), `panel "${panel}": variable $${v} is defined`);
    }
  });

  test('every variable query names an existing series and label', () => {
    for (const v of vars.filter((v) => v.type === 'query')) {
      const q = (typeof v.query === 'string' ? v.query : v.query.query) as string;
      const m = /^label_values\((.*),\s*([a-zA-Z_]+)\)$/.exec(q);
      assert.ok(m, `variable ${v.name}: label_values(series, label): ${q}`);
      checkExpr(m[1]!, `variable ${v.name}`);
      const r = resolveSeries(analyse(m[1]!).series[0]!.name)!;
      assert.ok(r.labels.has(m[2]!) || TARGET_LABELS.includes(m[2]!), `variable ${v.name}: ${r.family} has label ${m[2]}`);
    }
  });

  test("promtool parses every panel expression (as recording rules, variables filled in)", async (t) => {
    await withTool(t, 'promtool', 'BERTH_REQUIRE_PROMTOOL', 'promtool check rules on the dashboard expressions', (promtool) => {
      const fill = (e: string) =>
        e
          .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
          .replace(/\$\{?([a-zA-Z_]+)\}?/g, (_m, name: string) => (name === 'job' ? 'berth' : '.*'));
      const doc = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `berth:dashboard_expr_${i}`, expr: fill(e.expr) })) }] };
      const dir = mkdtempSync(join(tmpdir(), 'berth-dash-'));
      try {
        const file = join(dir, 'dashboard-rules.yml');
        writeFileSync(file, stringifyYaml(doc));
        const r = run(promtool, ['check', 'rules', file]);
        assert.equal(r.status, 0, r.out);
        assert.match(r.out, new RegExp(`SUCCESS: ${exprs.length} rules found`));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('deploy/systemd/berth.service', () => {
  /** Section -> key -> values (a key may repeat; an empty assignment resets the list). */
  const unit = new Map<string, Map<string, string[]>>();
  {
    let section = '';
    for (const raw of readFileSync(UNIT, 'utf8').split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
      const s = /^\[(.+)\]$/.exec(line);
      if (s) {
        section = s[1]!;
        unit.set(section, unit.get(section) ?? new Map());
        continue;
      }
      const eq = line.indexOf('=');
      assert.ok(eq > 0 && section, `unit line ${JSON.stringify(line)}`);
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1);
      const values = unit.get(section)!.get(key) ?? [];
      unit.get(section)!.set(key, value === '' ? [] : [...values, value]);
    }
  }
  const svc = (key: string) => unit.get('Service')?.get(key) ?? [];
  const one = (key: string) => {
    const v = svc(key);
    assert.equal(v.length, 1, `[Service] ${key} set once: ${JSON.stringify(v)}`);
    return v[0]!;
  };

  test('runs `berth daemon` as user berth with the documented paths', () => {
    assert.equal(one('User'), 'berth');
    assert.equal(one('ExecStart'), '/usr/bin/env node /opt/berth/dist/cli/bin.js daemon');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID', 'systemctl reload sends the SIGHUP that re-reads berth.yml');
    const env = svc('Environment').flatMap((e) => e.split(/\s+/));
    assert.ok(env.includes('BERTH_CONFIG=/etc/berth/berth.yml'), env.join(' '));
    assert.ok(env.includes('BERTH_DB=/var/lib/berth/berth.db'), env.join(' '));
    assert.ok(!env.some((e) => e.startsWith('BERTH_TOKEN=')), 'the token is not in the unit (it goes in the EnvironmentFile)');
    assert.deepEqual(svc('EnvironmentFile'), ['-/etc/berth/env']);
    assert.ok(['multi-user.target'].includes(unit.get('Install')?.get('WantedBy')?.[0] ?? ''));
  });

  test('stops gracefully: SIGTERM, and more time than the daemon itself takes', () => {
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.equal(one('Restart'), 'on-failure');
    const stopSec = Number(one('TimeoutStopSec'));
    assert.equal(stopSec, 30);
    const main = readFileSync(join(ROOT, 'src/main.ts'), 'utf8');
    const m = /SHUTDOWN_DEADLINE_MS = ([\d_]+)/.exec(main);
    assert.ok(m, 'src/main.ts declares SHUTDOWN_DEADLINE_MS (the daemon gives up on its own after it)');
    assert.ok(Number(m[1]!.replace(/_/g, '')) < stopSec * 1000, `TimeoutStopSec=${stopSec}s outlasts the daemon's own ${m[1]} ms deadline`);
  });

  test('bounds its memory well above what berth uses (~150 MiB with 1,000 apps, bench/results/scale.json)', () => {
    const mib = (v: string) => Number(/^(\d+)M$/.exec(v)?.[1] ?? NaN);
    const high = mib(one('MemoryHigh'));
    const max = mib(one('MemoryMax'));
    const measured = (JSON.parse(readFileSync(join(ROOT, 'bench/results/scale.json'), 'utf8')) as { memory: { rssAfterConvergeMiB: number } }).memory.rssAfterConvergeMiB;
    assert.ok(high >= 2 * measured && max > high, `MemoryHigh=${high}M, MemoryMax=${max}M against ${measured} MiB measured`);
  });

  test('the install steps build with the dev dependencies, then prune them', () => {
    const text = readFileSync(join(ROOT, 'deploy/systemd/berth.service'), 'utf8');
    assert.match(text, /npm ci && npm run build && npm prune --omit=dev/);
    assert.doesNotMatch(text, /npm ci --omit=dev && npm run build/, 'tsc is a dev dependency: building after --omit=dev fails');
  });

  test('is hardened, and the database directory stays writable', () => {
    assert.equal(one('StateDirectory'), 'berth');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.deepEqual(svc('CapabilityBoundingSet'), []);
    const writable = svc('ReadWritePaths').flatMap((p) => p.split(/\s+/));
    assert.ok(writable.includes('/var/lib/berth'), 'ReadWritePaths=/var/lib/berth');
    assert.ok(writable.includes(dirname('/var/lib/berth/berth.db')), 'the database (and its WAL and token) directory is writable');
    // Node's JIT needs W+X pages; berth reaches hosts over SSH (INET) and Docker over a socket (UNIX).
    assert.notEqual(svc('MemoryDenyWriteExecute')[0], 'yes', 'MemoryDenyWriteExecute would kill node');
    const families = svc('RestrictAddressFamilies').flatMap((f) => f.split(/\s+/));
    for (const f of ['AF_UNIX', 'AF_INET', 'AF_INET6']) assert.ok(families.includes(f), `RestrictAddressFamilies keeps ${f}`);
    assert.notEqual(svc('PrivateNetwork')[0], 'yes', 'berth needs the network');
  });

  test('systemd-analyze verify', async (t) => {
    await withTool(t, 'systemd-analyze', 'BERTH_REQUIRE_SYSTEMD_ANALYZE', 'systemd-analyze verify deploy/systemd/berth.service', (sa) => {
      const r = run(sa, ['verify', UNIT]);
      assert.equal(r.status, 0, r.out);
      // Unknown keys and unparsable values are only warnings (exit 0): any line about the unit fails.
      const about = r.out.split('\n').filter((l) => l.includes('berth.service'));
      assert.deepEqual(about, [], r.out);
    });
  });

  test('systemd-analyze security: exposure level at most 2.0', async (t) => {
    await withTool(t, 'systemd-analyze', 'BERTH_REQUIRE_SYSTEMD_ANALYZE', 'systemd-analyze security --offline=true (exposure <= 2.0)', (sa) => {
      const r = run(sa, ['security', '--offline=true', '--no-pager', UNIT]);
      if (/unrecognized option|Unknown option/i.test(r.out)) {
        t.diagnostic(`systemd-analyze has no --offline: exposure not measured (${r.out.trim().split('\n')[0]})`);
        return;
      }
      const m = /Overall exposure level for berth\.service: ([\d.]+)/.exec(r.out);
      assert.ok(m, r.out.slice(-500));
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} (systemd-analyze security --offline=true deploy/systemd/berth.service)`);
    });
  });
});

describe('packaging: package.json, package-lock.json and the Dockerfile', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Json;
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as Json;
  const engines = pkg.engines.node as string;
  /** The first release of each Node line "engines" names (20.10.0, 22.0.0, ...). */
  const lines = engines.split('||').map((part) => semver.minVersion(part)!.version);
  /** End of life of the LTS lines (the Node.js release schedule); a line past it fails the image check. */
  const END_OF_LIFE: Record<number, string> = { 20: '2026-04-30', 22: '2027-04-30', 24: '2028-04-30', 26: '2029-04-30' };

  test('npm ci on this Node warns about no engine (EBADENGINE), and this Node is one "engines" names', () => {
    assert.ok(semver.satisfies(process.version, engines), `${process.version} satisfies ${engines}`);
    // A dry run of the lockfile, offline, in a copy: reads package*.json only, writes nothing here.
    const dir = mkdtempSync(join(tmpdir(), 'berth-npm-ci-'));
    try {
      for (const f of ['package.json', 'package-lock.json']) writeFileSync(join(dir, f), readFileSync(join(ROOT, f)));
      const r = spawnSync('npm', ['ci', '--dry-run', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
      const out = `${r.stdout}${r.stderr}`;
      assert.equal(r.status, 0, out.slice(-2000));
      assert.doesNotMatch(out, /EBADENGINE/, out.slice(0, 2000));
      assert.match(out, /added \d+ packages/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every locked package supports every Node line "engines" names', () => {
    assert.deepEqual(lines.map((v) => semver.major(v)), [20, 22, 24, 26]);
    const unsupported: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages as Record<string, Json>)) {
      const range = entry.engines?.node as string | undefined;
      if (!path || !range) continue;
      for (const v of lines) if (!semver.satisfies(v, range)) unsupported.push(`${path.replace(/^.*node_modules\//, '')}@${entry.version} needs node ${range}, not ${v}`);
    }
    assert.deepEqual(unsupported, []);
  });

  test('the daemon runs with one V8 heap setting wherever it starts (Dockerfile, systemd unit, npm start), and the benches with it', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const flags = /^\s+NODE_OPTIONS="(--max-old-space-size=\d+ --max-semi-space-size=\d+)" \\$/m.exec(dockerfile)?.[1];
    assert.ok(flags, 'the Dockerfile sets NODE_OPTIONS="--max-old-space-size=<MiB> --max-semi-space-size=<MiB>"');
    assert.match(readFileSync(UNIT, 'utf8'), new RegExp(`^Environment="NODE_OPTIONS=${flags}"$`, 'm'));
    assert.equal(pkg.scripts.start, `exec node ${flags} dist/cli/bin.js daemon`);
    assert.match(readFileSync(join(ROOT, 'scripts/bench.mjs'), 'utf8'), new RegExp(`^const DAEMON_HEAP = '${flags}';$`, 'm'));
    const flag = flags.split(' ')[0]!;
    // Under 2 GiB of old space V8 grows its heap by at most 2x what is live between full
    // collections, not 4x (heap-controller.cc, MaxGrowingFactor): the point of the setting.
    const r = spawnSync(process.execPath, [flag, '-p', 'require("node:v8").getHeapStatistics().heap_size_limit'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Number(r.stdout) < 2048 * 2 ** 20, `heap_size_limit ${r.stdout.trim()} with ${flag}`);
  });

  test('the Dockerfile builds both stages on one Node LTS line "engines" names, not past its end of life', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const image = /^ARG NODE_IMAGE=node:(\d+)-bookworm-slim$/m.exec(dockerfile);
    assert.ok(image, 'ARG NODE_IMAGE=node:<major>-bookworm-slim');
    const major = Number(image[1]);
    assert.ok(semver.satisfies(`${major}.0.0`, engines), `node ${major} satisfies ${engines}`);
    assert.ok(END_OF_LIFE[major], `node ${major} is an LTS line`);
    assert.ok(new Date() < new Date(END_OF_LIFE[major]!), `node ${major} reached its end of life on ${END_OF_LIFE[major]}`);
    // The native module is compiled in the build stage for the Node that runs it: both stages on the same image.
    assert.deepEqual([...dockerfile.matchAll(/^FROM (\S+) AS (\w+)$/gm)].map((m) => [m[1], m[2]]), [
      ['${NODE_IMAGE}', 'build'],
      ['${NODE_IMAGE}', 'runtime'],
    ]);
  });
});
