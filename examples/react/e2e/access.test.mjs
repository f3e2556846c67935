// End-to-end tests of access per user in the example app (Postgres
// row-level security enforced by the service, tokens from lattice dev's
// /dev-token): two users in different projects see only their own; a
// member adds the other user to a project, which appears in the other
// browser live; a write outside one's projects is refused and undone; a new
// project belongs to its creator. Seed (lattice dev, 3 projects): demo in
// every project, alice in Atlas and Compass, bob in Beacon.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, localRows, openUser, screenshot, screenshotDir, startDev, waitFor, waitSettled } from './harness.mjs';

let dev, browser, ids;

before(async () => {
  dev = await startDev();
  browser = await launch();
  ids = Object.fromEntries((await dev.sql(`SELECT name, id FROM project`)).map((r) => [r.name, r.id]));
});

after(async () => {
  await browser?.close();
  await dev?.stop();
  console.log(`screenshots: ${screenshotDir}`);
});

async function projectNames(page) {
  return (await page.locator('[data-testid=project-card] .project-name').allTextContents()).sort();
}

// waitProjects waits until the page lists exactly the projects want (the
// first load of the app can take long on a busy machine: 60 s by default).
async function waitProjects(page, want, what, timeout = 60_000) {
  await waitFor(
    async () => {
      const got = await projectNames(page);
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`listed: ${JSON.stringify(got)}`);
      return true;
    },
    { timeout, what },
  );
}

const card = (page, name) => page.locator('[data-testid=project-card]', { has: page.locator('.project-name', { hasText: name }) });

async function addMember(page, user) {
  await page.click('[data-testid=members]');
  await page.fill('[data-testid=member-input]', user);
  await page.click('[data-testid=member-add]');
}

describe('access per user', () => {
  test('two users in different projects see only their own; an added member gets the project live', async () => {
    const a = await openUser(browser, dev.appUrl, 'alice', '/');
    const b = await openUser(browser, dev.appUrl, 'bob', '/');
    try {
      await waitProjects(a.page, ['Atlas', 'Compass'], 'alice’s projects');
      await waitProjects(b.page, ['Beacon'], 'bob’s projects');
      await waitSettled(a.page);
      await waitSettled(b.page);
      assert.equal(await a.page.getAttribute('[data-testid=user]', 'data-user'), 'alice');
      assert.equal(await b.page.getAttribute('[data-testid=user]', 'data-user'), 'bob');
      // Not only hidden: the other's rows are not in the local database.
      assert.deepEqual(await projectNames(a.page), ['Atlas', 'Compass']);
      assert.deepEqual(await projectNames(b.page), ['Beacon']);
      assert.deepEqual((await localRows(b.page, 'SELECT name FROM project ORDER BY name')).map((r) => r.name), ['Beacon']);
      assert.deepEqual((await localRows(a.page, 'SELECT name FROM project ORDER BY name')).map((r) => r.name), ['Atlas', 'Compass']);
      await screenshot(b.page, 'access-bob-before');

      // Alice opens Atlas and adds bob.
      await card(a.page, 'Atlas').click();
      await a.page.waitForSelector('[data-testid=project-scope][data-synced=true]', { timeout: 60_000 });
      await waitSettled(a.page);
      await b.page.evaluate(() => (window.__noReload = true));
      const t0 = Date.now();
      await addMember(a.page, 'bob');
      const isMember = async () =>
        (await dev.sql(`SELECT count(*)::int AS n FROM project_member WHERE project_id = $1 AND user_id = 'bob'`, [ids.Atlas]))[0].n === 1;
      await waitFor(isMember, { timeout: 15_000, interval: 20, what: 'bob’s membership in Postgres' });
      const tPG = Date.now();
      await waitProjects(b.page, ['Atlas', 'Beacon'], 'Atlas in bob’s list', 15_000);
      const t1 = Date.now();
      console.log(`add member (click) -> in Postgres ${tPG - t0} ms -> Atlas in bob's list ${t1 - tPG} ms (total ${t1 - t0} ms)`);
      await screenshot(b.page, 'access-bob-after');
      await a.page.waitForSelector('[data-testid=member-added]', { timeout: 15_000 });
      await screenshot(a.page, 'access-members');
      // Bob opens it (client-side navigation, no reload): its issues.
      const t2 = Date.now();
      await card(b.page, 'Atlas').click();
      const [{ n }] = await dev.sql(`SELECT count(*)::int AS n FROM issue WHERE project_id = $1`, [ids.Atlas]);
      await waitFor(async () => (await b.page.textContent('[data-testid=issue-count]').catch(() => null)) === `${n} issues`, {
        timeout: 30_000,
        what: `bob sees Atlas’ ${n} issues`,
      });
      console.log(`bob opens Atlas -> its ${n} issues listed after ${Date.now() - t2} ms`);
      assert.equal(await b.page.evaluate(() => window.__noReload), true, 'bob’s page was not reloaded');
      // The membership row is bob's: alice's database keeps only her own.
      await waitFor(
        async () => JSON.stringify((await localRows(a.page, 'SELECT user_id FROM project_member ORDER BY user_id')).map((r) => r.user_id)) === '["alice","alice"]',
        { what: 'alice holds her own memberships only' },
      );

      // Membership removed (plain SQL): the project leaves bob's app live.
      await dev.sql(`DELETE FROM project_member WHERE project_id = $1 AND user_id = 'bob'`, [ids.Atlas]);
      await b.page.waitForSelector('[data-testid=no-access]', { timeout: 15_000 });
      await waitFor(async () => (await localRows(b.page, 'SELECT count(*) AS n FROM issue WHERE project_id = ?', [ids.Atlas]))[0].n === 0, {
        what: 'Atlas’ issues gone from bob’s database',
      });
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test('a write to a project the user is not a member of is refused and undone', async () => {
    const b = await openUser(browser, dev.appUrl, 'bob', '/');
    try {
      await waitProjects(b.page, ['Beacon'], 'bob’s projects');
      await waitSettled(b.page);
      const id = crypto.randomUUID();
      await b.page.evaluate(([id, p]) => window.lattice.exec(`INSERT INTO issue (id, project_id, title) VALUES (?, ?, 'intruder')`, [id, p]), [id, ids.Compass]);
      await b.page.waitForSelector('[data-testid=rejected]', { timeout: 20_000 });
      assert.match(await b.page.textContent('[data-testid=rejected]'), /row-level security/);
      await waitSettled(b.page);
      assert.deepEqual(await localRows(b.page, 'SELECT id FROM issue WHERE id = ?', [id]), []);
      assert.deepEqual(await dev.sql(`SELECT id FROM issue WHERE id = $1`, [id]), []);
      await screenshot(b.page, 'access-refused');
    } finally {
      await b.context.close();
    }
  });

  test('a new project is its creator’s; a member adds another user', async () => {
    const z = await openUser(browser, dev.appUrl, 'zoe', '/');
    const a = await openUser(browser, dev.appUrl, 'alice', '/');
    try {
      await z.page.waitForSelector('[data-testid=no-projects]', { timeout: 60_000 });
      await waitProjects(a.page, ['Atlas', 'Compass'], 'alice’s projects');
      await z.page.click('[data-testid=new-project]');
      await z.page.fill('[data-testid=project-name-input]', 'Zoe’s garden');
      await z.page.click('[data-testid=project-create]');
      await z.page.waitForSelector('[data-testid=project-scope]', { timeout: 30_000 });
      await waitSettled(z.page);
      const [p] = await dev.sql(`SELECT id FROM project WHERE name = 'Zoe’s garden'`);
      assert.ok(p, 'the project is in Postgres');
      assert.deepEqual(await dev.sql(`SELECT user_id FROM project_member WHERE project_id = $1`, [p.id]), [{ user_id: 'zoe' }]);
      // Still hers after the service's answer (the project stays in her app).
      assert.equal((await localRows(z.page, 'SELECT count(*) AS n FROM project WHERE id = ?', [p.id]))[0].n, 1);
      assert.deepEqual(await projectNames(a.page), ['Atlas', 'Compass']);
      await addMember(z.page, 'alice');
      await waitProjects(a.page, ['Atlas', 'Compass', 'Zoe’s garden'], 'zoe’s project in alice’s list', 15_000);
    } finally {
      await z.context.close();
      await a.context.close();
    }
  });
});
