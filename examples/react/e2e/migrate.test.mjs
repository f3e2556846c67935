// A migration on Postgres while the example app is open in Chromium: the
// app, built with the schema of before (src/generated), shows the column
// the migration adds without a reload, follows later values of it, and
// keeps syncing its own writes. Run by ./build.sh test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, localRows, openUser, screenshot, screenshotDir, startDev, waitFor, waitSettled } from './harness.mjs';

let dev, browser, projectId, issueId;

before(async () => {
  dev = await startDev({ issues: 50, comments: 50 });
  browser = await launch();
  [{ id: projectId }] = await dev.sql(`SELECT p.id FROM project p JOIN project_member m ON m.project_id = p.id AND m.user_id = 'alice' ORDER BY p.name LIMIT 1`);
  [{ id: issueId }] = await dev.sql(`SELECT id FROM issue WHERE project_id = $1 ORDER BY id LIMIT 1`, [projectId]);
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  console.log(`screenshots: ${screenshotDir}`);
});

async function extraFields(page) {
  return page.locator('[data-testid=extra-field]').evaluateAll((els) => els.map((e) => [e.dataset.name, e.querySelector('[data-testid=extra-value]')?.textContent]));
}

describe('schema migration while the app is open', () => {
  test('ADD COLUMN reaches the open app without a reload', async () => {
    const a = await openUser(browser, dev.appUrl, 'alice', `/p/${projectId}/i/${issueId}`);
    try {
      await a.page.waitForSelector(`[data-testid=issue-detail][data-id="${issueId}"]`, { timeout: 60_000 });
      await waitSettled(a.page);
      assert.deepEqual(await extraFields(a.page), [], 'no extra fields before the migration');
      // Navigations reload the page; count them to prove none happened.
      let loads = 0;
      a.page.on('load', () => loads++);

      const t0 = Date.now();
      await dev.sql(`ALTER TABLE issue ADD COLUMN estimate integer NOT NULL DEFAULT 3`);
      await waitFor(async () => JSON.stringify(await extraFields(a.page)) === JSON.stringify([['estimate', '3']]), {
        timeout: 30_000,
        what: 'the new column shown with its default',
      });
      console.log(`ADD COLUMN visible in the open app after ${Date.now() - t0} ms`);
      await screenshot(a.page, 'migration-extra-field');

      // Later values of the new column arrive live, like any column.
      await dev.sql(`UPDATE issue SET estimate = 8 WHERE id = $1`, [issueId]);
      await waitFor(async () => JSON.stringify(await extraFields(a.page)) === JSON.stringify([['estimate', '8']]), { what: 'the new value shown' });

      // The local table has the column (the default for every row), and
      // the app's own writes still reach Postgres, the new column kept.
      const local = await localRows(a.page, `SELECT count(*) AS n, sum(estimate = 3) AS three FROM issue WHERE id != ?`, [issueId]);
      assert.equal(local[0].n, local[0].three, 'every other local row has the default');
      await a.page.fill('[data-testid=detail-title]', 'Titled after the migration');
      await a.page.press('[data-testid=detail-title]', 'Enter');
      await waitSettled(a.page);
      await waitFor(async () => (await dev.sql(`SELECT title FROM issue WHERE id = $1`, [issueId]))[0].title === 'Titled after the migration', {
        what: 'the write after the migration in Postgres',
      });
      const [row] = await dev.sql(`SELECT estimate FROM issue WHERE id = $1`, [issueId]);
      assert.equal(row.estimate, 8);

      // A second migration: a rename follows in place.
      await dev.sql(`ALTER TABLE issue RENAME COLUMN estimate TO points`);
      await waitFor(async () => JSON.stringify(await extraFields(a.page)) === JSON.stringify([['points', '8']]), { what: 'the renamed column shown' });
      assert.equal(loads, 0, 'the page was not reloaded');
    } finally {
      await a.context.close();
    }
  });
});
