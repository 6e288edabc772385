// berth's status page (README.md, "Status page"): every app with its phase, desired and
// observed revision, a per-host row, the last failure, history and a rollout timeline,
// kept live by each app's event stream. Reads go with the session cookie (or open_reads);
// a rollback sends the token the operator types, never the cookie (docs/design.md,
// "API and security"). Plain browser JavaScript: no build step, no dependency.

/** Newest events per app kept for the timeline (the first read asks for as many). */
const TIMELINE_EVENTS = 300;
/** How long to wait before reconnecting a broken event stream. */
const RECONNECT_MS = 2000;
/** Refreshes the app list (new or removed apps) this often; each app's view follows its events. */
const LIST_REFRESH_MS = 15000;
/** Events that end a rollout or start one: the history table is read again after them. */
const HISTORY_EVENTS = new Set(['NewReleaseCreated', 'RolloutComplete', 'RolloutFailed', 'RolloutPaused', 'RollbackStarted']);
const FAILURE_EVENT = /Failed|Paused$|Unreachable/;

/** @type {Map<string, AppState>} */
const apps = new Map();
const main = document.getElementById('apps');
const live = document.getElementById('live');

/** Unauthenticated (a session expired, a restart): the server answers the login form at /. */
class LoggedOut extends Error {}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  if (res.status === 401) throw new LoggedOut(path);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.message ?? ''}`);
  return body;
}

function onError(err) {
  if (err instanceof LoggedOut) return location.assign('/');
  setLive('error', `Error: ${err.message}`);
}

function setLive(state, text) {
  live.dataset.state = state;
  live.textContent = text;
}

/** Every app. The one place that knows how GET /v1/apps pages: it follows `next` when the answer carries one. */
async function listApps() {
  const all = [];
  let path = '/v1/apps';
  for (;;) {
    const body = await getJson(path);
    all.push(...body.apps);
    if (!body.next) return all;
    path = `/v1/apps?cursor=${encodeURIComponent(body.next)}`;
  }
}

/** A DOM element: h('p', { class: 'x' }, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');

/**
 * Whether the status row describes the desired revision: it lags a new release by one
 * reconcile pass, and until then it names the previous one (in its Progressing condition).
 */
function statusIsCurrent(view) {
  const { status, desired } = view;
  if (!status || !desired) return false;
  const progressing = status.conditions.find((c) => c.type === 'Progressing');
  return status.observedRevision === desired.revision || new RegExp(`\\brevision ${desired.revision}\\b`).test(progressing?.message ?? '');
}

/** Hosts on the desired revision, of all the app's hosts. */
function progressOf(view) {
  const total = view.status?.hosts.length ?? view.spec.hosts?.length ?? 0;
  return { updated: statusIsCurrent(view) ? view.status.hosts.filter((x) => x.health === 'healthy').length : 0, total };
}

/** The phase in words (never colour alone): Pending (not picked up yet), Progressing, Complete, Failed, Paused, RolledBack. */
function phaseOf(view) {
  const phase = !view.desired ? 'No release' : statusIsCurrent(view) ? view.status.phase : 'Pending';
  const extra = [view.paused && phase !== 'Paused' ? 'paused' : null, view.maintenance ? 'maintenance' : null].filter(Boolean);
  return { phase, text: extra.length ? `${phase} (${extra.join(', ')})` : phase };
}

class AppState {
  constructor(name) {
    this.name = name;
    this.view = null;
    this.releases = [];
    this.events = [];
    this.refreshTimer = null;
    this.closed = false;
    this.controller = null;
    const id = (part) => `app-${name}-${part}`;
    this.title = h('h2', { id: id('title') }, name);
    this.phase = h('p', { class: 'phase', id: id('phase') });
    this.revisions = h('p', { class: 'revisions' });
    this.bar = h('progress', { id: id('progress'), 'aria-labelledby': id('progress-text') });
    this.progressText = h('p', { id: id('progress-text'), class: 'progress-text', role: 'status' });
    this.hostRows = h('tbody');
    this.failure = h('div', { class: 'failure-body' });
    this.chart = h('div', { class: 'chart' });
    this.historyRows = h('tbody');
    this.actionStatus = h('p', { class: 'action-status', role: 'status' });
    this.section = h(
      'section',
      { class: 'app', 'aria-labelledby': id('title'), 'data-app': name },
      h('div', { class: 'app-head' }, this.title, this.phase),
      this.revisions,
      h('div', { class: 'progress' }, this.bar, this.progressText),
      h(
        'table',
        { class: 'hosts' },
        h('caption', {}, `Hosts of ${name}`),
        h('thead', {}, h('tr', {}, ...['Host', 'State', 'Version', 'Revision', 'Last event', 'Last error'].map((t) => h('th', { scope: 'col' }, t)))),
        this.hostRows,
      ),
      h('section', { class: 'failure', 'aria-labelledby': id('failure') }, h('h3', { id: id('failure') }, 'Last failure'), this.failure),
      h('section', { class: 'timeline', 'aria-labelledby': id('timeline') }, h('h3', { id: id('timeline') }, 'Rollout timeline'), this.chart),
      h(
        'section',
        { class: 'history', 'aria-labelledby': id('history') },
        h('h3', { id: id('history') }, 'History'),
        this.actionStatus,
        h(
          'table',
          {},
          h('caption', {}, `Releases of ${name}, newest first`),
          h('thead', {}, h('tr', {}, ...['Revision', 'Version', 'Reason', 'Actor', 'Created', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
          this.historyRows,
        ),
      ),
    );
  }

  async load() {
    const [view, releases, events] = await Promise.all([
      getJson(`/v1/apps/${this.name}`),
      getJson(`/v1/apps/${this.name}/releases?limit=20`),
      getJson(`/v1/apps/${this.name}/events?tail=${TIMELINE_EVENTS}`),
    ]);
    this.view = view;
    this.releases = releases.releases;
    this.events = events.events;
    this.render();
    void this.follow(this.events.at(-1)?.id ?? 0);
  }

  /** The app's live event stream (SSE over fetch: every event type, and reconnects after the last id). */
  async follow(afterId) {
    let last = afterId;
    while (!this.closed) {
      try {
        this.controller = new AbortController();
        const res = await fetch(`/v1/apps/${this.name}/events?after=${last}`, { headers: { accept: 'text/event-stream' }, signal: this.controller.signal });
        if (res.status === 401) throw new LoggedOut(this.name);
        if (!res.ok) throw new Error(`event stream of ${this.name}: ${res.status}`);
        setLive('live', 'Live: following events');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf('\n\n')) !== -1) {
            const data = buf
              .slice(0, end)
              .split('\n')
              .filter((l) => l.startsWith('data: '))
              .map((l) => l.slice(6))
              .join('\n');
            buf = buf.slice(end + 2);
            if (!data) continue;
            const event = JSON.parse(data);
            last = event.id;
            this.onEvent(event);
          }
        }
      } catch (err) {
        if (this.closed) return;
        if (err instanceof LoggedOut) return onError(err);
        setLive('error', `Reconnecting: ${err.message}`);
      }
      await new Promise((r) => setTimeout(r, RECONNECT_MS));
    }
  }

  onEvent(event) {
    this.events.push(event);
    if (this.events.length > TIMELINE_EVENTS) this.events.splice(0, this.events.length - TIMELINE_EVENTS);
    this.scheduleRefresh(HISTORY_EVENTS.has(event.type));
  }

  /** Reads the app again shortly after its events (several arrive together), then redraws. */
  scheduleRefresh(withHistory) {
    this.historyDue ||= withHistory;
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      const history = this.historyDue;
      this.historyDue = false;
      try {
        this.view = await getJson(`/v1/apps/${this.name}`);
        if (history) this.releases = (await getJson(`/v1/apps/${this.name}/releases?limit=20`)).releases;
        this.render();
      } catch (err) {
        onError(err);
      }
    }, 100);
  }

  close() {
    this.closed = true;
    this.controller?.abort();
    this.section.remove();
  }

  render() {
    const v = this.view;
    const { phase, text } = phaseOf(v);
    this.phase.dataset.phase = phase;
    this.phase.textContent = text;
    const d = v.desired;
    this.revisions.textContent =
      `Desired: ${d ? `revision ${d.revision} (${d.version})` : 'none'} · ` +
      `Observed: ${v.status?.observedRevision != null ? `revision ${v.status.observedRevision}` : 'none'}`;
    const { updated, total } = progressOf(v);
    this.bar.max = Math.max(total, 1);
    this.bar.value = updated;
    this.progressText.textContent = d ? `${updated}/${total} hosts on revision ${d.revision} (${d.version}) · ${text}` : 'No release yet';
    this.renderHosts();
    this.renderFailure();
    this.renderHistory();
    this.renderTimeline();
  }

  renderHosts() {
    const status = this.view.status;
    const names = status?.hosts.map((x) => x.host) ?? this.view.spec.hosts ?? [];
    const lastByHost = new Map();
    for (const e of this.events) if (e.host) lastByHost.set(e.host, e);
    const current = statusIsCurrent(this.view);
    this.hostRows.replaceChildren(
      ...names.map((name) => {
        const x = status?.hosts.find((y) => y.host === name);
        const ev = lastByHost.get(name);
        // Updating: the host's newest event belongs to the desired revision, which it does not serve yet.
        const state =
          x?.health === 'unhealthy' ? 'Failed' : x?.health === 'healthy' && current ? 'Updated' : ev && ev.revision === this.view.desired?.revision ? 'Updating' : 'Pending';
        return h(
          'tr',
          { 'data-host': name, 'data-state': state },
          h('th', { scope: 'row' }, name),
          h('td', { class: 'state' }, state),
          h('td', {}, x?.version ?? '—'),
          h('td', {}, x?.revision != null ? String(x.revision) : '—'),
          h('td', {}, ev ? `${ev.type} at ${time(ev.createdAt)}` : '—'),
          h('td', { class: 'error-text' }, x?.lastError ?? ''),
        );
      }),
    );
  }

  renderFailure() {
    const f = this.view.lastFailure;
    if (!f) return this.failure.replaceChildren(h('p', {}, 'None.'));
    this.failure.replaceChildren(
      h('p', {}, `${f.reason}${f.revision != null ? ` · revision ${f.revision}` : ''} · ${when(f.at)}`),
      h('pre', { class: 'probe-output', 'aria-label': `Failure message and probe output of ${this.name}` }, f.message),
      // The failed containers' last log lines (secret values redacted by the daemon).
      ...(f.logs ?? []).flatMap((l) => [
        h('p', {}, l.lines.length > 0 ? `${l.host}: the last ${l.lines.length} log lines of its failed container` : `${l.host}: its failed container wrote no log line`),
        ...(l.lines.length > 0 ? [h('pre', { class: 'failed-logs', 'aria-label': `Last log lines of ${this.name}'s failed container on ${l.host}` }, l.lines.join('\n'))] : []),
      ]),
    );
  }

  renderHistory() {
    const desired = this.view.desired;
    // One button per version, on its newest release: a rollback to a version takes that release's spec.
    const offered = new Set([desired?.version]);
    this.historyRows.replaceChildren(
      ...this.releases.map((r) => {
        const current = desired && r.revision === desired.revision;
        let action = h('span', {}, current ? 'Desired' : '');
        if (desired && !offered.has(r.version)) {
          offered.add(r.version);
          action = h('button', { type: 'button', class: 'rollback', 'data-version': r.version }, `Roll back ${this.name} to ${r.version}`);
          action.addEventListener('click', () => openRollback(this, r.version));
        }
        return h(
          'tr',
          { 'data-revision': r.revision },
          h('th', { scope: 'row' }, String(r.revision)),
          h('td', {}, r.version),
          h('td', {}, r.reason),
          h('td', {}, r.actor),
          h('td', {}, when(r.createdAt)),
          h('td', {}, action),
        );
      }),
    );
  }

  /**
   * The newest rollouts as an SVG chart: one lane per host (and one for the app), time
   * across; a bar from a host's update start to its traffic switch; circles for steps,
   * crosses for failures (shape, not colour alone), each with its text as a tooltip.
   */
  renderTimeline() {
    const desired = this.view.desired;
    // The desired revision and the one before it (a failed release and its rollback, or the update from the last one).
    const from = desired ? desired.revision - 1 : 0;
    const first = this.events.findIndex((e) => e.revision != null && e.revision >= from);
    const events = first === -1 ? [] : this.events.slice(first).filter((e) => e.revision == null || e.revision >= from);
    if (events.length === 0) return this.chart.replaceChildren(h('p', {}, 'No rollout events yet.'));
    const lanes = [...new Set(events.map((e) => e.host ?? this.name))].sort((a, b) => (a === this.name ? -1 : b === this.name ? 1 : a.localeCompare(b)));
    const t0 = Date.parse(events[0].createdAt);
    const t1 = Math.max(Date.parse(events.at(-1).createdAt), t0 + 1000);
    const W = 720;
    const LEFT = 90;
    const LANE = 28;
    const H = lanes.length * LANE + 30;
    const x = (iso) => LEFT + ((Date.parse(iso) - t0) / (t1 - t0)) * (W - LEFT - 10);
    const y = (e) => 20 + lanes.indexOf(e.host ?? this.name) * LANE;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `app-${this.name}-chart-title`, class: 'timeline-chart' });
    svg.append(s('title', { id: `app-${this.name}-chart-title` }, `Rollout timeline of ${this.name}: ${events.length} events from ${time(events[0].createdAt)} to ${time(events.at(-1).createdAt)}`));
    lanes.forEach((lane, i) => {
      svg.append(s('text', { x: 4, y: 24 + i * LANE, class: 'lane-label' }, lane));
      svg.append(s('line', { x1: LEFT, x2: W - 10, y1: 20 + i * LANE, y2: 20 + i * LANE, class: 'lane' }));
    });
    const started = new Map();
    for (const e of events) {
      const key = `${e.host}:${e.revision}`;
      // A pre-booted host (rollout.preboot) began its update at its pre-boot, not at its turn.
      if (e.type === 'PrebootStarted' || (e.type === 'HostUpdateStarted' && started.get(key)?.type !== 'PrebootStarted')) started.set(key, e);
      if (e.type === 'TrafficSwitched' && started.has(key)) {
        const a = x(started.get(key).createdAt);
        svg.append(s('rect', { x: a, y: y(e) - 5, width: Math.max(x(e.createdAt) - a, 2), height: 10, class: 'bar' }, s('title', {}, `${e.host}: revision ${e.revision} updated`)));
      }
    }
    for (const e of events) {
      const cx = x(e.createdAt);
      const cy = y(e);
      const label = s('title', {}, `${time(e.createdAt)} ${e.host ?? this.name} ${e.type}: ${e.message}`);
      if (FAILURE_EVENT.test(e.type)) svg.append(s('path', { d: `M${cx - 5},${cy - 5}L${cx + 5},${cy + 5}M${cx - 5},${cy + 5}L${cx + 5},${cy - 5}`, class: 'mark fail' }, label));
      else svg.append(s('circle', { cx, cy, r: 4, class: 'mark' }, label));
    }
    svg.append(s('text', { x: LEFT, y: H - 4, class: 'axis' }, time(events[0].createdAt)), s('text', { x: W - 10, y: H - 4, class: 'axis end' }, time(events.at(-1).createdAt)));
    this.chart.replaceChildren(svg, h('p', { class: 'legend' }, 'Bars: a host from update start (or pre-boot) to traffic switch. Circles: steps. Crosses: failures. Hover a mark for its event.'));
  }
}

// ---- rollback: the token is asked for each time and sent as a bearer header, never stored.
const dialog = document.getElementById('rollback-dialog');
const form = document.getElementById('rollback-form');
const tokenInput = document.getElementById('rollback-token');
const dialogError = document.getElementById('rollback-error');
let pending = null;

function openRollback(app, version) {
  pending = { app, version };
  document.getElementById('rollback-title').textContent = `Roll back ${app.name} to ${version}`;
  document.getElementById('rollback-what').textContent = `A new revision of ${app.name} with version ${version}, rolled out host by host. Writes need the API token.`;
  dialogError.textContent = '';
  tokenInput.value = '';
  dialog.showModal();
}

document.getElementById('rollback-cancel').addEventListener('click', () => dialog.close());
dialog.addEventListener('close', () => (tokenInput.value = ''));
form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const { app, version } = pending;
  const res = await fetch(`/v1/apps/${app.name}/rollback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokenInput.value.trim()}`, 'content-type': 'application/json', 'x-berth-actor': 'status-page' },
    body: JSON.stringify({ version }),
  }).catch((err) => ({ ok: false, status: 0, json: async () => ({ message: err.message }) }));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    dialogError.textContent = res.status === 401 ? `Refused: ${body.message ?? 'invalid token'}` : `Failed (${res.status}): ${body.message ?? ''}`;
    return;
  }
  dialog.close();
  app.actionStatus.textContent = body.unchanged
    ? `${version} is already desired (revision ${body.revision}).`
    : `Rollback to ${version} started as revision ${body.revision}.`;
  app.scheduleRefresh(true);
});

async function refreshList() {
  const list = await listApps();
  const names = new Set(list.map((a) => a.name));
  for (const [name, app] of apps) if (!names.has(name)) (app.close(), apps.delete(name));
  for (const view of list) {
    if (apps.has(view.name)) continue;
    const app = new AppState(view.name);
    apps.set(view.name, app);
    main.append(app.section);
    await app.load();
  }
  document.getElementById('apps-empty').textContent = list.length ? '' : 'No apps.';
  if (!list.length) setLive('live', 'Live: no apps to follow');
}

refreshList().catch(onError);
setInterval(() => refreshList().catch(onError), LIST_REFRESH_MS);
