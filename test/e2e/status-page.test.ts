import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startBedDaemon, type BedDaemon } from '../support/bed-daemon.js';
import { ROOT, TOKEN } from '../support/daemon.js';
import { bedSkipReason, testbedRequired } from '../support/testbed.js';

/**
 * The status page (README.md, "Status page") in a real browser, Debian's chromium driven
 * headless by playwright-core, against a real daemon rolling a real app over the three
 * test hosts: log in with the token form, watch 0/3 -> 3/3 and Complete arrive live
 * (no reload), read a failed release's probe output, roll back from the history with
 * the token, and check that every control has an accessible name. Screenshots go to
 * test-artifacts/status-page-*.png.
 */
const CHROMIUM = process.env.BERTH_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const APP = 'page';

function skipReason(): string | false {
  const bed = bedSkipReason();
  if (bed) return bed;
  if (existsSync(CHROMIUM)) return false;
  // The bed's runs (CI) install chromium (.ci/run): there, a missing browser is a failure.
  if (testbedRequired()) throw new Error(`${CHROMIUM} is missing (apt-get install chromium); BERTH_TESTBED_REQUIRED=1`);
  return `no browser at ${CHROMIUM} (apt-get install chromium, or set BERTH_CHROMIUM)`;
}

interface AppView {
  desired: { revision: number; version: string } | null;
  status: { phase: string | null; observedRevision: number | null } | null;
  lastFailure: { reason: string; message: string; logs: Array<{ host: string; lines: string[] }> } | null;
}

describe('the status page in chromium during a real 3-host rollout', { skip: skipReason(), concurrency: false }, () => {
  let daemon: BedDaemon;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  const view = async () => (await daemon.request<AppView>('GET', `/v1/apps/${APP}`)).body;
  /** Waits until the app's status settles on `revision` in one of `phases`. */
  async function settled(revision: number, phases: string[], timeoutMs = 90_000): Promise<AppView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await view();
      if (v.desired?.revision === revision && phases.includes(v.status?.phase ?? '') && (v.status?.phase !== 'Complete' || v.status.observedRevision === revision)) return v;
      if (Date.now() > deadline) throw new Error(`revision ${revision} not ${phases.join('/')}: ${JSON.stringify(v)}\n${daemon.output().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const deploy = async (version: string) => {
    const res = await daemon.request<{ revision: number }>('POST', `/v1/apps/${APP}/releases`, { version });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.revision;
  };
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `status-page-${name}.png`), fullPage: true });
  const section = () => page.getByRole('region', { name: APP, exact: true });
  const progressText = () => section().locator('.progress-text');

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    // parallelism 1: one host after the other, so the page has 1/3 and 2/3 to show between 0/3 and 3/3.
    daemon = await startBedDaemon(APP, { healthcheck: { interval: '500ms', max_attempts: 3 }, rollout: { parallelism: 1 } });
    await settled(await deploy('v1'), ['Complete']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('response', (r) => {
      if (r.status() === 404 || r.status() >= 500) pageErrors.push(`${r.status()} ${r.url()}`);
    });
  });

  after(async () => {
    await browser?.close();
    await daemon?.close();
  });

  it('asks for the token, refuses a wrong one with a 401, and shows the apps after the right one', async () => {
    const first = await page.goto(`${daemon.url}/`);
    assert.equal(first?.status(), 200);
    await page.getByLabel('API token').fill('not-the-token');
    const [refused] = await Promise.all([page.waitForResponse('**/ui/login'), page.getByRole('button', { name: 'Log in' }).click()]);
    assert.equal(refused.status(), 401);
    await page.getByRole('alert').filter({ hasText: 'That is not the API token' }).waitFor();
    await shot('login-refused');
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await section().waitFor();
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'berth_session');
    assert.ok(session, 'the session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate('document.cookie'), '', 'the page script cannot read the session');
    await progressText().filter({ hasText: '3/3 hosts on revision 1 (v1)' }).waitFor();
    assert.match((await section().locator('.phase').textContent()) ?? '', /^Complete/);
  });

  it('follows a rollout live: 0/3 -> 1/3 -> 2/3 -> 3/3 and Complete, without a reload', async () => {
    // Every text the progress line takes, recorded in the page; the marker dies with a reload.
    // (Code for the page as text: this file is type-checked without the DOM's types.)
    await page.evaluate(`(() => {
      window.marker = 'same page';
      window.seen = [];
      const el = document.querySelector('section[data-app="${APP}"] .progress-text');
      new MutationObserver(() => {
        if (window.seen.at(-1) !== el.textContent) window.seen.push(el.textContent);
      }).observe(el, { childList: true, characterData: true, subtree: true });
      window.hostStates = [];
      const rows = document.querySelector('section[data-app="${APP}"] table.hosts tbody');
      new MutationObserver(() => {
        const state = rows.querySelector('tr[data-host="h1"]')?.dataset.state;
        if (state && window.hostStates.at(-1) !== state) window.hostStates.push(state);
      }).observe(rows, { childList: true, subtree: true });
    })()`);
    const t0 = Date.now();
    const revision = await deploy('v2');
    await progressText().filter({ hasText: `0/3 hosts on revision ${revision} (v2)` }).waitFor({ timeout: 10_000 });
    const shown0 = Date.now() - t0;
    await shot('rollout-progressing');
    await progressText().filter({ hasText: `3/3 hosts on revision ${revision} (v2) · Complete` }).waitFor({ timeout: 90_000 });
    const done = Date.now() - t0;
    await shot('rollout-complete');
    const { seen, marker, hostStates } = await page.evaluate<{ seen: string[]; marker: string; hostStates: string[] }>(
      '({ seen: window.seen, marker: window.marker, hostStates: window.hostStates })',
    );
    assert.equal(marker, 'same page', 'no reload');
    const counts = seen.map((t) => new RegExp(`^(\\d)/3 hosts on revision ${revision} `).exec(t)?.[1]).filter((c): c is string => c !== undefined);
    const distinct = counts.filter((c, i) => c !== counts[i - 1]);
    assert.deepEqual(distinct, ['0', '1', '2', '3'], `the progress line, in order: ${JSON.stringify(seen)}`);
    assert.match(seen.at(-1)!, /· Complete$/);
    console.log(`# status page: 0/3 shown ${shown0} ms after the deploy, 3/3 Complete ${done} ms after; ${seen.length} progress texts`);
    // Each host's row moved with it (h1's, as it went), and the timeline drew each host's update.
    assert.deepEqual(hostStates.filter((st) => st !== 'Pending'), ['Updating', 'Updated'], `h1's row: ${JSON.stringify(hostStates)}`);
    for (const host of ['h1', 'h2', 'h3']) {
      const row = section().locator(`tr[data-host="${host}"]`);
      assert.equal(await row.getAttribute('data-state'), 'Updated');
      assert.match((await row.textContent()) ?? '', /Updated\s*v2/);
    }
    assert.equal(await section().locator('.timeline-chart rect.bar').count() >= 3, true, 'a bar per host update');
    assert.match((await section().locator('.revisions').textContent()) ?? '', new RegExp(`Desired: revision ${revision} \\(v2\\) · Observed: revision ${revision}`));
  });

  it('shows a failed release with its probe output', async () => {
    const revision = await deploy('broken');
    // on_failure rollback (the default): the next revision is v2 again.
    const failure = (await settled(revision + 1, ['RolledBack'])).lastFailure;
    assert.ok(failure, 'the API reports the failure');
    const output = section().locator('.probe-output');
    await output.filter({ hasText: failure.message }).waitFor({ timeout: 30_000 });
    assert.match(failure.message, /404/, 'the probe answer (the broken image has no /health)');
    // (The page may still show what it drew while the release was Failed: the same probe
    // output under the status's reason, HealthCheckFailed. The rollback's events redraw it.)
    await section().locator('.failure').filter({ hasText: failure.reason }).waitFor({ timeout: 30_000 });
    assert.equal(await section().locator('.timeline-chart path.mark.fail').count() > 0, true, 'the failure is a cross on the timeline');
    // The failed container's last log lines (the broken image prints none: said so).
    assert.equal(failure.logs.length, 1, JSON.stringify(failure.logs));
    const [{ host, lines }] = failure.logs as [{ host: string; lines: string[] }];
    assert.match((await section().locator('.failure').textContent()) ?? '', new RegExp(lines.length > 0 ? `${host}: the last ${lines.length} log lines of its failed container` : `${host}: its failed container wrote no log line`));
    await shot('failure');
  });

  it('rolls back from the history: refused without the right token, done with it', async () => {
    const before = await view();
    assert.equal(before.desired?.version, 'v2', 'v2 serves again after the automatic rollback');
    const button = section().getByRole('button', { name: `Roll back ${APP} to v1` });
    assert.equal(await button.count(), 1, 'one button per version');
    await button.click();
    const dialog = page.getByRole('dialog', { name: `Roll back ${APP} to v1` });
    await dialog.waitFor();
    await dialog.getByLabel('API token').fill('wrong-token');
    await dialog.getByRole('button', { name: 'Roll back', exact: true }).click();
    await dialog.getByRole('alert').filter({ hasText: 'Refused' }).waitFor();
    assert.equal((await view()).desired?.revision, before.desired?.revision, 'nothing was written');
    await dialog.getByLabel('API token').fill(TOKEN);
    await dialog.getByRole('button', { name: 'Roll back', exact: true }).click();
    await dialog.waitFor({ state: 'hidden' });
    const revision = before.desired!.revision + 1;
    await section().getByRole('status').filter({ hasText: `Rollback to v1 started as revision ${revision}` }).waitFor();
    await progressText().filter({ hasText: `3/3 hosts on revision ${revision} (v1)` }).waitFor({ timeout: 90_000 });
    const after = await settled(revision, ['RolledBack', 'Complete']);
    assert.equal(after.desired?.version, 'v1');
    await shot('rolled-back');
  });

  it('names every control and landmark for assistive technology', async () => {
    const snapshot = await page.locator('body').ariaSnapshot();
    assert.match(snapshot, /- banner:/);
    assert.match(snapshot, /- main "Apps":/);
    assert.match(snapshot, new RegExp(`- region "${APP}":`));
    assert.match(snapshot, new RegExp(`- progressbar "3/3 hosts on revision \\d+ \\(v1\\)`));
    assert.match(snapshot, /- button "Log out"/);
    assert.match(snapshot, new RegExp(`- button "Roll back ${APP} to v2"`));
    assert.match(snapshot, /img "Rollout timeline of page: \d+ events from /);
    // No control without a name: every button, input and progress bar's own snapshot line carries one.
    const controls = await page.locator('button:visible, input:visible, progress').all();
    assert.ok(controls.length >= 3);
    for (const c of controls) {
      const line = (await c.ariaSnapshot()).split('\n')[0]!;
      assert.match(line, /^- \w+ "[^"]+"/, `a control without an accessible name: ${line}`);
    }
    // Status is text, not colour only: the phase and every host's state are words.
    assert.match((await section().locator('.phase').textContent()) ?? '', /^(RolledBack|Complete)/);
    assert.deepEqual(pageErrors, [], 'no script error, no 404 or 5xx answer to the page (its icon included)');
  });
});
