// End-to-end tests of the example app in Chromium: two users live, offline
// edits and creates, conflicts, an offline reload, two tabs of one user, and
// screenshots of the main views. Run by ./build.sh test (or npm run e2e
// after ./build.sh build and npm run build).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  launch, localRows, openUser, pending, screenshot, screenshotDir, startDev, syncState, trace, waitFor, waitSettled, withUser,
} from './harness.mjs';

let dev, browser, projectId, issueIds;

before(async () => {
  dev = await startDev();
  browser = await launch();
  const [p] = await dev.sql(`SELECT id FROM project ORDER BY name LIMIT 1`);
  projectId = p.id;
  issueIds = (await dev.sql(`SELECT id FROM issue WHERE project_id = $1 ORDER BY id LIMIT 20`, [projectId])).map((r) => r.id);
  // Access is per user (row-level security): the seed makes alice (and
  // demo) members of the first project; the other users of these tests
  // join it here, with plain SQL (access.test.mjs tests the rest).
  await dev.sql(`INSERT INTO project_member (project_id, user_id) SELECT $1, u FROM unnest($2::text[]) u ON CONFLICT DO NOTHING`, [
    projectId,
    ['bob', 'dora', 'carol5', 'carol6'],
  ]);
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  console.log(`screenshots: ${screenshotDir}`);
});

const issuePath = (id) => `/p/${projectId}/i/${id}`;

async function openIssue(page, user, id, worker) {
  await page.goto(dev.appUrl + withUser(issuePath(id), user, worker));
  await page.waitForSelector(`[data-testid=issue-detail][data-id="${id}"]`, { timeout: 60_000 });
}

// goOffline cuts a user's network: new connections fail (setOffline) and the
// open ones die (the relay drops them; the other users reconnect at once).
async function goOffline(u) {
  await u.context.setOffline(true);
  dev.dropConnections();
  await waitFor(async () => (await syncState(u.page)) === 'offline', { what: 'offline' });
}

async function setTitle(page, title) {
  await page.fill('[data-testid=detail-title]', title);
  await page.press('[data-testid=detail-title]', 'Enter');
}

async function title(page) {
  return page.inputValue('[data-testid=detail-title]');
}

// The first rows of the list (sorted by last update).
async function topTitles(page, n = 5) {
  return page.locator('[data-testid=issue-row] [data-testid=issue-title]').evaluateAll(
    (els, n) => els.map((e) => [e.getBoundingClientRect().top, e.textContent]).sort((a, b) => a[0] - b[0]).slice(0, n).map((x) => x[1]),
    n,
  );
}

async function createIssue(page, title) {
  await page.click('[data-testid=new-issue]');
  await page.fill('[data-testid=new-issue-title]', title);
  await page.click('[data-testid=new-issue-submit]');
  await page.waitForSelector('[data-testid=new-issue-form]', { state: 'detached' });
}

// Columns compared between Postgres and each client's local database.
const COLS = `id, project_id, title, description, priority::text AS priority, status::text AS status, kanbanorder, username,
  to_char(modified AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS modified`;

async function pgIssues() {
  return dev.sql(`SELECT ${COLS} FROM issue WHERE project_id = $1 ORDER BY id`, [projectId]);
}

// localIssues reads the same columns from a page's SQLite (timestamps
// normalised to microseconds like the Postgres side).
async function localIssues(page) {
  const rows = await localRows(page, `SELECT id, project_id, title, description, priority, status, kanbanorder, username, modified FROM issue WHERE project_id = ? ORDER BY id`, [projectId]);
  return rows.map((r) => ({ ...r, modified: normTs(r.modified) }));
}

function normTs(ts) {
  const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(ts);
  assert.ok(m, `timestamp ${ts}`);
  return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}`;
}

async function assertConverged(pages) {
  await waitFor(
    async () => {
      const want = JSON.stringify(await pgIssues());
      for (const p of pages) if (JSON.stringify(await localIssues(p)) !== want) return false;
      return true;
    },
    { timeout: 30_000, what: 'every client equal to Postgres' },
  );
}

describe('example app', () => {
  test('two users see each other’s edits live', async () => {
    const a = await openUser(browser, dev.appUrl, 'alice', issuePath(issueIds[0]));
    const b = await openUser(browser, dev.appUrl, 'bob', `/p/${projectId}`);
    try {
      await a.page.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await b.page.waitForSelector('[data-testid=issue-row]', { timeout: 60_000 });
      await screenshot(b.page, 'issue-list');
      const t0 = Date.now();
      await setTitle(a.page, 'Renamed by alice');
      await waitFor(async () => (await topTitles(b.page, 1))[0] === 'Renamed by alice', { what: 'bob sees alice’s title' });
      console.log(`peer edit visible after ${Date.now() - t0} ms`);

      await a.page.fill('[data-testid=comment-input]', 'A comment from alice');
      await a.page.click('[data-testid=comment-submit]');
      await openIssue(b.page, 'bob', issueIds[0]);
      await waitFor(async () => (await b.page.locator('[data-testid=comment]').allTextContents()).some((t) => t.includes('A comment from alice')), {
        what: 'bob sees alice’s comment',
      });
      await setTitle(b.page, 'Renamed again by bob');
      await waitFor(async () => (await title(a.page)) === 'Renamed again by bob', { what: 'alice sees bob’s title' });
      await screenshot(b.page, 'issue-detail');
      await waitSettled(a.page);
      await waitSettled(b.page);
      const [row] = await dev.sql(`SELECT title FROM issue WHERE id = $1`, [issueIds[0]]);
      assert.equal(row.title, 'Renamed again by bob');
      const comments = await dev.sql(`SELECT body, username FROM comment WHERE issue_id = $1 AND body = 'A comment from alice'`, [issueIds[0]]);
      assert.deepEqual(comments, [{ body: 'A comment from alice', username: 'alice' }]);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('offline edits and creates sync when back online; everyone converges with Postgres', async () => {
    const a = await openUser(browser, dev.appUrl, 'alice', `/p/${projectId}`);
    const b = await openUser(browser, dev.appUrl, 'bob', issuePath(issueIds[1]), { worker: 'dedicated' });
    try {
      await a.page.waitForSelector('[data-testid=issue-row]', { timeout: 60_000 });
      await b.page.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await waitSettled(b.page);
      await goOffline(b);

      await setTitle(b.page, 'Edited offline by bob');
      await b.page.selectOption('[data-testid=detail-status]', 'in_progress');
      await b.page.click('[data-testid=tab-list]'); // client-side navigation
      await b.page.waitForSelector('[data-testid=issue-row]', { timeout: 30_000 });
      await createIssue(b.page, 'Created offline by bob');
      assert.ok((await pending(b.page)) >= 3, 'writes are pending while offline');
      await waitFor(async () => JSON.stringify((await topTitles(b.page, 2)).sort()) === JSON.stringify(['Created offline by bob', 'Edited offline by bob']), {
        what: 'bob’s offline edits at the top of his list',
      });
      await screenshot(b.page, 'offline-pending');

      // Meanwhile alice edits another issue.
      await openIssue(a.page, 'alice', issueIds[2]);
      await a.page.selectOption('[data-testid=detail-priority]', 'urgent');
      assert.equal((await dev.sql(`SELECT count(*)::int AS n FROM issue WHERE title = 'Created offline by bob'`))[0].n, 0);

      await b.context.setOffline(false);
      await waitSettled(b.page, 60_000);
      await waitSettled(a.page);
      const created = await dev.sql(`SELECT username, status::text FROM issue WHERE title = 'Created offline by bob'`);
      assert.deepEqual(created, [{ username: 'bob', status: 'todo' }]);
      const [edited] = await dev.sql(`SELECT title, status::text FROM issue WHERE id = $1`, [issueIds[1]]);
      assert.deepEqual(edited, { title: 'Edited offline by bob', status: 'in_progress' });
      const [other] = await dev.sql(`SELECT priority::text FROM issue WHERE id = $1`, [issueIds[2]]);
      assert.equal(other.priority, 'urgent');
      await assertConverged([a.page, b.page]);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('conflicts: per column the newest write wins; an edit beats a concurrent delete', async () => {
    const [c, d] = [issueIds[3], issueIds[4]];
    const a = await openUser(browser, dev.appUrl, 'alice', issuePath(c));
    const b = await openUser(browser, dev.appUrl, 'bob', issuePath(c), { worker: 'dedicated' });
    try {
      await a.page.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await b.page.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await waitSettled(b.page);
      await goOffline(b);

      // Bob (offline) sets title and priority of c; later alice sets c's title.
      await setTitle(b.page, 'Title by bob (older)');
      await b.page.selectOption('[data-testid=detail-priority]', 'low');
      await b.page.waitForTimeout(50);
      await setTitle(a.page, 'Title by alice (newer)');
      // Bob (offline) edits d, which alice deletes meanwhile.
      await b.page.goto(dev.appUrl + withUser(issuePath(d), 'bob', 'dedicated')); // offline: the service worker serves the app
      await b.page.waitForSelector(`[data-testid=issue-detail][data-id="${d}"]`, { timeout: 30_000 });
      await setTitle(b.page, 'Kept alive by bob');
      await openIssue(a.page, 'alice', d);
      await a.page.click('[data-testid=detail-delete]');
      await waitFor(async () => (await dev.sql(`SELECT count(*)::int AS n FROM issue WHERE id = $1`, [d]))[0].n === 0, { what: 'd deleted in Postgres' });

      await b.context.setOffline(false);
      await waitSettled(b.page, 60_000);
      await waitSettled(a.page);
      const [rc] = await dev.sql(`SELECT title, priority::text FROM issue WHERE id = $1`, [c]);
      assert.deepEqual(rc, { title: 'Title by alice (newer)', priority: 'low' });
      const rd = await dev.sql(`SELECT title FROM issue WHERE id = $1`, [d]);
      assert.deepEqual(rd, [{ title: 'Kept alive by bob' }]);
      await assertConverged([a.page, b.page]);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('a reload with the network off shows the local data', async () => {
    const u = await openUser(browser, dev.appUrl, 'dora', `/p/${projectId}`, { worker: 'dedicated' });
    try {
      await u.page.waitForSelector('[data-testid=issue-row]', { timeout: 60_000 });
      await waitSettled(u.page);
      await u.page.evaluate(() => navigator.serviceWorker.ready);
      const before = await u.page.textContent('[data-testid=issue-count]');
      await goOffline(u);
      const t0 = Date.now();
      await u.page.reload();
      await u.page.waitForSelector('[data-testid=issue-row]', { timeout: 30_000 });
      console.log(`offline reload: first rows after ${Date.now() - t0} ms`);
      assert.equal(await u.page.textContent('[data-testid=issue-count]'), before);
      await waitFor(async () => (await syncState(u.page)) !== 'online', { what: 'not online' });
      await screenshot(u.page, 'offline-reload');
    } finally {
      await u.context.close();
    }
  });

  for (const [i, worker] of [[5, undefined], [6, 'dedicated']]) {
  test(`two tabs of one user stay live; closing the first tab loses nothing (${worker ?? 'shared'} worker)`, async () => {
    const id = issueIds[i];
    const user = `carol${i}`;
    const u = await openUser(browser, dev.appUrl, user, issuePath(id), { worker });
    const page2 = await u.context.newPage();
    trace(page2, 'carol-2');
    try {
      await u.page.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await page2.goto(dev.appUrl + withUser(issuePath(id), user, worker));
      await page2.waitForSelector('[data-testid=issue-detail]', { timeout: 60_000 });
      await setTitle(page2, 'From the second tab');
      await waitFor(async () => (await title(u.page)) === 'From the second tab', { what: 'tab 1 sees tab 2' });
      await setTitle(u.page, 'From the first tab');
      await waitFor(async () => (await title(page2)) === 'From the first tab', { what: 'tab 2 sees tab 1' });
      // A last write, committed locally but not yet synced (dedicated: the
      // network is cut, so it is pending in the first tab's worker), and
      // the first tab closes at once.
      if (worker === 'dedicated') await goOffline(u);
      await u.page.selectOption('[data-testid=detail-status]', 'done');
      await waitFor(async () => (await localRows(u.page, 'SELECT status FROM issue WHERE id = ?', [id]))[0]?.status === 'done', { what: 'local commit' });
      await u.page.close();
      if (worker === 'dedicated') await u.context.setOffline(false);
      await waitFor(async () => (await page2.inputValue('[data-testid=detail-status]')) === 'done', { what: 'tab 2 has the last write' });
      await waitSettled(page2);
      const [row] = await dev.sql(`SELECT title, status::text FROM issue WHERE id = $1`, [id]);
      assert.deepEqual(row, { title: 'From the first tab', status: 'done' });
      // Still live after the first tab is gone.
      await dev.sql(`UPDATE issue SET title = 'From psql' WHERE id = $1`, [id]);
      await waitFor(async () => (await title(page2)) === 'From psql', { what: 'tab 2 still live' });
    } finally {
      await u.context.close();
    }
  });
  }

  test('screenshots of the main views', async () => {
    // demo (the app's default user) is a member of every seeded project.
    const u = await openUser(browser, dev.appUrl, 'demo', '/');
    try {
      await u.page.waitForSelector('[data-testid=project-card]', { timeout: 60_000 });
      await screenshot(u.page, 'projects');
      await u.page.click('[data-testid=project-card] >> nth=0');
      await u.page.waitForSelector('[data-testid=issue-row]', { timeout: 60_000 });
      await u.page.selectOption('[data-testid=filter-status]', 'todo');
      await u.page.selectOption('[data-testid=sort]', 'priority');
      await waitFor(async () => (await u.page.locator('[data-testid=issue-row] .s-todo').count()) > 0, { what: 'filtered list' });
      await screenshot(u.page, 'issue-list-filtered');
      await u.page.click('[data-testid=tab-board]');
      await u.page.waitForSelector('[data-testid=card]', { timeout: 30_000 });
      await screenshot(u.page, 'board');
      await u.page.click('[data-testid=card] >> nth=0');
      await u.page.waitForSelector('[data-testid=issue-detail]');
      await screenshot(u.page, 'detail');
      await u.page.click('[data-testid=tab-list]');
      await u.page.click('[data-testid=new-issue]');
      await screenshot(u.page, 'new-issue');
    } finally {
      await u.context.close();
    }
  });
});
