// Benchmark of the example app as a user sees it, in Debian's Chromium:
//
//   cold   opening the app on the first project with an empty profile, until
//          its 5,000 issues are listed and its 20,000 comments are local
//   warm   reloading that page: first issue rows painted (data from the
//          local SQLite in IndexedDB), online and with the network off
//   peer   a title edited in one browser context until another context
//          (another user) shows it, through the service and Postgres
//
// Usage (after ./build.sh build and npm run build in examples/react, which
// ./build.sh example does):
//   node bench/example/app.mjs [--issues 5000] [--comments 20000] [--peer 20]
import { parseArgs } from 'node:util';
import {
  launch, openUser, screenshot, startDev, syncState, waitFor, waitSettled, withUser,
} from '../../examples/react/e2e/harness.mjs';

// firstRows waits for the first issue rows; on a timeout it saves a
// screenshot and says what the page shows.
async function firstRows(page, name) {
  try {
    await page.waitForSelector('[data-testid=issue-row]', { timeout: 60_000 });
  } catch (e) {
    const file = await screenshot(page, `bench-${name}`);
    const text = (await page.textContent('body').catch(() => '')).slice(0, 300);
    throw new Error(`${name}: no rows after 60 s (screenshot ${file}; page: ${text})`, { cause: e });
  }
}

const { values: opt } = parseArgs({
  options: {
    issues: { type: 'string', default: '5000' },
    comments: { type: 'string', default: '20000' },
    peer: { type: 'string', default: '20' },
    cold: { type: 'string', default: '3' },
  },
});
const issues = Number(opt.issues);
const comments = Number(opt.comments);

const dev = await startDev({ issues, comments, projects: 5 });
const browser = await launch();
const results = {};
try {
  const [p] = await dev.sql(`SELECT id FROM project ORDER BY name LIMIT 1`);
  const projectPath = `/p/${p.id}`;
  const countText = `${issues.toLocaleString('en')} issues`;

  // Cold start, several times, each in a fresh context (empty profile).
  const cold = [];
  for (let i = 0; i < Number(opt.cold); i++) {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    const t0 = Date.now();
    await page.goto(dev.appUrl + withUser(projectPath, `cold${i}`));
    await page.waitForFunction((want) => document.querySelector('[data-testid=issue-count]')?.textContent === want, countText, { timeout: 300_000, polling: 50 });
    const listed = Date.now() - t0;
    await waitFor(
      async () => (await page.evaluate((pid) => window.lattice.query('SELECT count(*) AS n FROM comment c JOIN issue i ON i.id = c.issue_id WHERE i.project_id = ?', [pid]), p.id))[0].n === comments,
      { timeout: 300_000, interval: 50, what: 'all comments local' },
    );
    const all = Date.now() - t0;
    cold.push({ listed, all });
    console.log(`cold #${i + 1}: ${issues} issues listed after ${listed} ms, ${comments} comments local after ${all} ms`);
    if (i < Number(opt.cold) - 1) await ctx.close();
    else results.warmCtx = { ctx, page };
  }
  results.cold = cold;

  // Warm reloads of the last cold page.
  const { ctx, page } = results.warmCtx;
  await waitSettled(page);
  const warm = [];
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    await page.reload();
    await firstRows(page, `warm-${i}`);
    warm.push(Date.now() - t0);
  }
  console.log(`warm reload, first rows painted: ${warm.join(', ')} ms`);
  await ctx.setOffline(true);
  dev.dropConnections();
  await waitFor(async () => (await syncState(page)) === 'offline', { what: 'offline' }).catch(() => {});
  const warmOffline = [];
  for (let i = 0; i < 3; i++) {
    const t0 = Date.now();
    await page.reload();
    await firstRows(page, `warm-offline-${i}`);
    warmOffline.push(Date.now() - t0);
  }
  console.log(`warm reload offline, first rows painted: ${warmOffline.join(', ')} ms`);
  await ctx.close();

  // Peer edit latency: alice edits, bob's list (sorted by last update) shows it.
  const a = await openUser(browser, dev.appUrl, 'alice', `${projectPath}`);
  const b = await openUser(browser, dev.appUrl, 'bob', `${projectPath}`);
  await a.page.waitForSelector('[data-testid=issue-row]', { timeout: 300_000 });
  await b.page.waitForSelector('[data-testid=issue-row]', { timeout: 300_000 });
  const ids = (await dev.sql(`SELECT id FROM issue WHERE project_id = $1 ORDER BY id LIMIT $2`, [p.id, Number(opt.peer)])).map((r) => r.id);
  await a.page.goto(dev.appUrl + withUser(`${projectPath}/i/${ids[0]}`, 'alice'));
  await a.page.waitForSelector('[data-testid=issue-detail]');
  const peer = [];
  for (const [i, id] of ids.entries()) {
    // Client-side navigation (a page load would restart alice's worker).
    await a.page.evaluate((url) => {
      history.pushState(null, '', url);
      dispatchEvent(new PopStateEvent('popstate'));
    }, withUser(`${projectPath}/i/${id}`, 'alice'));
    await a.page.waitForSelector(`[data-testid=issue-detail][data-id="${id}"]`);
    await waitSettled(a.page);
    await waitSettled(b.page);
    const title = `Peer edit ${i} ${Date.now()}`;
    const seen = b.page.waitForFunction(
      (t) => [...document.querySelectorAll('[data-testid=issue-title]')].some((e) => e.textContent === t) && performance.now(),
      title,
      { timeout: 60_000, polling: 'raf' },
    );
    await a.page.fill('[data-testid=detail-title]', title);
    const t0 = Date.now();
    await a.page.press('[data-testid=detail-title]', 'Enter');
    await seen;
    peer.push(Date.now() - t0);
  }
  peer.sort((x, y) => x - y);
  const pct = (q) => peer[Math.min(peer.length - 1, Math.floor(q * peer.length))];
  console.log(`peer edit latency (${peer.length} edits): median ${pct(0.5)} ms, p90 ${pct(0.9)} ms, max ${peer[peer.length - 1]} ms`);
} finally {
  await browser.close();
  await dev.stop();
}
