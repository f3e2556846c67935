// The Lattice worker (wasm/ + jsbridge/ + idbvfs, web/dist/worker.js) in
// real headless Chromium, against a real lattice service and Postgres
// (internal/testservice): sync, persistence across reload and browser
// restart, a browser killed mid-write, two tabs, offline writes, errors.
// Needs web/dist built: ./build.sh build.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { launch, serve, repoRoot } from '../lib/harness.js';
import { startService } from '../lib/service.js';

const dist = path.join(repoRoot, 'web/dist');
let server, svc;

const SETUP = `
CREATE TABLE item (id text PRIMARY KEY, title text NOT NULL, n integer NOT NULL DEFAULT 0);
INSERT INTO item SELECT 's' || lpad(i::text, 6, '0'), 'seed ' || i, i FROM generate_series(1, 2000) i;
`;

before(async () => {
  for (const f of ['worker.js', 'lattice.wasm', 'wasm_exec.js']) {
    assert.ok(existsSync(path.join(dist, f)), `web/dist/${f} is missing: run ./build.sh build`);
  }
  server = await serve({ '/': path.join(repoRoot, 'browsertest/test/worker'), '/dist/': dist });
  svc = await startService({ setup: SETUP, electrify: ['item'] });
});

after(async () => {
  await server?.close();
  await svc?.close();
});

async function openPage(b, { mode = 'shared' } = {}) {
  const page = await b.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await page.goto(server.url + 'index.html');
  await page.waitForFunction(() => window.ready);
  await page.evaluate((mode) => window.connect(mode), mode);
  const call = (op, args = {}) => page.evaluate(([op, args]) => window.call(op, args), [op, args]);
  const ok = async (op, args = {}) => {
    const r = await call(op, args);
    assert.ok(r.ok, `${op} ${JSON.stringify(args).slice(0, 200)}: ${JSON.stringify(r.error)}`);
    return r.result;
  };
  const one = async (sql, params) => {
    const r = await ok('query', { sql, params });
    return Object.values(r.rows[0])[0];
  };
  // waitFor polls fn (in Node) until it returns a truthy value.
  const waitFor = async (what, fn, ms = 20000) => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) throw new Error('timed out waiting for ' + what);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return { page, call, ok, one, waitFor };
}

const ITEM_SCHEMA = {
  version: 1,
  tables: [{
    schema: 'public', name: 'item', primaryKey: ['id'],
    columns: [
      { name: 'id', type: 'text', array: false, enum: null, notNull: true, default: null },
      { name: 'title', type: 'text', array: false, enum: null, notNull: true, default: null },
      { name: 'n', type: 'integer', array: false, enum: null, notNull: true, default: '0' },
    ],
  }],
};

const config = (dbName, online = true) => ({ config: online ? { url: svc.ws, dbName } : { dbName } });

test('sync a shape; data survives reload and browser restart; integrity_check ok', async () => {
  const b = await launch({ keepUserDataDir: true });
  const dir = b.userDataDir;
  try {
    let w = await openPage(b);
    await w.ok('open', config('persist'));
    const s = await w.ok('sync', { shape: { table: 'item' } });
    assert.ok(s.shapeId);
    assert.equal(await w.one('SELECT count(*) FROM item'), 2000);
    assert.equal(await w.one("SELECT title FROM item WHERE id = 's001234'"), 'seed 1234');

    await w.page.reload();
    await w.page.waitForFunction(() => window.ready);
    await w.page.evaluate(() => window.connect('shared'));
    await w.ok('open', config('persist', false));
    assert.equal(await w.one('SELECT count(*) FROM item'), 2000);
    assert.equal(await w.one('PRAGMA integrity_check'), 'ok');
    await b.close();

    const b2 = await launch({ userDataDir: dir });
    try {
      w = await openPage(b2);
      await w.ok('open', config('persist', false));
      assert.equal(await w.one('SELECT count(*) FROM item'), 2000);
      assert.equal(await w.one('PRAGMA integrity_check'), 'ok');
    } finally {
      await b2.close();
    }
  } finally {
    await b.close().catch(() => {});
  }
});

test('browser killed in a write loop: intact database with a prefix of the commits', async () => {
  const b = await launch({ keepUserDataDir: true });
  const dir = b.userDataDir;
  let acked;
  try {
    const w = await openPage(b, { mode: 'dedicated' });
    // The table comes from a schema object (as lattice generate writes
    // it), so the loop's writes are captured for sync like any app write.
    await w.ok('open', { config: { dbName: 'crash', schema: ITEM_SCHEMA } });
    assert.equal(await w.one('SELECT count(*) FROM item'), 0);
    void w.page.evaluate(() => window.writeLoop('c', 1e9)).catch(() => {});
    await w.waitFor('300 commits', async () => (await w.page.evaluate(() => window.acked)) >= 300);
    acked = await w.page.evaluate(() => window.acked);
  } finally {
    b.kill();
  }
  const b2 = await launch({ userDataDir: dir });
  try {
    const w = await openPage(b2, { mode: 'dedicated' });
    await w.ok('open', config('crash', false));
    assert.equal(await w.one('PRAGMA integrity_check'), 'ok');
    const n = await w.one('SELECT count(*) FROM item');
    const max = await w.one("SELECT coalesce(max(CAST(substr(id, 2) AS INTEGER)), 0) FROM item");
    assert.equal(n, max, `rows ${n} but highest id ${max}: not a prefix`);
    assert.ok(n >= acked, `${n} rows after the crash, but ${acked} commits were confirmed before it`);
    assert.equal((await w.ok('status')).pending, n, 'every surviving write is queued for sync');
    // Still writable after recovery.
    await w.ok('exec', { sql: "INSERT INTO item(id, title) VALUES ('after', 'crash')" });
    assert.equal(await w.one('SELECT count(*) FROM item'), n + 1);
  } finally {
    await b2.close();
  }
});

test('two tabs share one database and stay live; closing one loses nothing', async () => {
  const b = await launch();
  try {
    const t1 = await openPage(b);
    const t2 = await openPage(b);
    await t1.ok('open', config('tabs'));
    await t2.ok('open', config('tabs'));
    await t1.ok('sync', { shape: { table: 'item', where: 'n <= $1', params: ['100'] } });
    const live = async (t) => (await t.ok('live', { sql: "SELECT count(*) AS n FROM item WHERE id LIKE 't%'" })).live;
    const l1 = await live(t1);
    const l2 = await live(t2);
    const latest = (t, l) => t.page.evaluate((l) => {
      const e = window.events.filter((e) => e.event === 'rows' && e.live === l).pop();
      return e ? e.rows[0].n : undefined;
    }, l);
    // Both tabs write at once.
    await Promise.all([
      t1.page.evaluate(() => window.writeLoop('ta', 150)),
      t2.page.evaluate(() => window.writeLoop('tb', 150)),
    ]);
    await t1.waitFor('tab 1 live count 300', async () => (await latest(t1, l1)) === 300);
    await t2.waitFor('tab 2 live count 300', async () => (await latest(t2, l2)) === 300);

    // Tab 1 writes and closes at once; tab 2 carries on, and the write
    // reaches Postgres.
    await t1.ok('exec', { sql: "INSERT INTO item(id, title, n) VALUES ('tlast', 'from the closed tab', 1)" });
    await t1.page.close();
    await t2.waitFor('tab 2 sees the last write', async () => (await latest(t2, l2)) === 301);
    await t2.ok('exec', { sql: "UPDATE item SET title = 'still here' WHERE id = 's000001'" });
    await t2.waitFor('writes in Postgres', async () => {
      const rows = await svc.query("SELECT count(*) FROM item WHERE id LIKE 't%' OR (id = 's000001' AND title = 'still here')");
      return rows[0][0] === '302';
    });
    // A change in Postgres reaches the remaining tab.
    await svc.sql("UPDATE item SET title = 'from pg' WHERE id = 's000002'");
    await t2.waitFor('remote change', async () => (await t2.one("SELECT title FROM item WHERE id = 's000002'")) === 'from pg');
    assert.equal(await t2.one('PRAGMA integrity_check'), 'ok');
  } finally {
    await b.close();
  }
});

test('writes made while the service is down sync after it comes back', async () => {
  const b = await launch();
  try {
    const w = await openPage(b);
    await w.ok('open', config('offline'));
    await w.ok('sync', { shape: { table: 'item', where: 'n <= $1', params: ['10'] } });
    await svc.stop();
    await w.waitFor('offline status', async () => (await w.ok('status')).state !== 'online');
    await w.ok('exec', { sql: "INSERT INTO item(id, title, n) VALUES ('o1', 'offline 1', 5)" });
    await w.ok('exec', { sql: "UPDATE item SET title = 'offline edit' WHERE id = 's000003'" });
    assert.equal((await w.ok('status')).pending, 2);
    await svc.start();
    await w.waitFor('pending 0', async () => {
      const st = await w.ok('status');
      return st.state === 'online' && st.pending === 0;
    }, 30000);
    const rows = await svc.query("SELECT id, title FROM item WHERE id IN ('o1', 's000003') ORDER BY id");
    assert.deepEqual(rows, [['o1', 'offline 1'], ['s000003', 'offline edit']]);
  } finally {
    await b.close();
  }
});

test('a bad request gets an error with a code and the worker keeps working', async () => {
  const b = await launch();
  try {
    const w = await openPage(b);
    const early = await w.call('query', { sql: 'SELECT 1' });
    assert.equal(early.ok, false);
    assert.equal(early.error.code, 'CLOSED');
    await w.ok('open', config('errors', false));
    for (const [args, op, code] of [
      [{ sql: 'SELEC 1' }, 'query', 'SQL_ERROR'],
      [{ sql: 'SELECT * FROM nope' }, 'query', 'SQL_ERROR'],
      [{ sql: 'SELECT ?', params: [{}] }, 'query', 'BAD_REQUEST'],
      [{ shape: { tabel: 'x' } }, 'sync', 'BAD_SHAPE'],
      [{}, 'frobnicate', 'BAD_REQUEST'],
    ]) {
      const r = await w.call(op, args);
      assert.equal(r.ok, false, `${op} ${JSON.stringify(args)} succeeded`);
      assert.equal(r.error.code, code, `${op} ${JSON.stringify(args)}: ${JSON.stringify(r.error)}`);
    }
    // Values cross intact both ways.
    const r = await w.page.evaluate(() => window.call('query', {
      sql: 'SELECT ? AS big, ? AS blob, ? AS t, ? AS f, ? AS b',
      params: [2n ** 60n, new Uint8Array([0, 1, 255]), 'é\u0000"', 1.5, true],
    }).then((r) => r.ok ? { ...r.result.rows[0], big: String(r.result.rows[0].big), blob: Array.from(r.result.rows[0].blob) } : r));
    assert.deepEqual(r, { big: String(2n ** 60n), blob: [0, 1, 255], t: 'é\u0000"', f: 1.5, b: 1 });
    assert.equal(await w.one('SELECT 40 + 2'), 42);
  } finally {
    await b.close();
  }
});

test('reloading a page mid-write, again and again, never corrupts the database', async () => {
  const b = await launch();
  try {
    for (const mode of ['dedicated', 'shared']) {
      const w = await openPage(b, { mode });
      const db = 'reload-' + mode;
      await w.ok('open', { config: { dbName: db, schema: ITEM_SCHEMA } });
      for (let i = 1; i <= 6; i++) {
        // Writes in flight while the page goes away: the old worker may
        // still run while the new one opens the database.
        void w.page.evaluate((p) => window.writeLoop(p, 1e9), `r${i}-`).catch(() => {});
        await new Promise((r) => setTimeout(r, 150 + 100 * i));
        await w.page.reload();
        await w.page.waitForFunction(() => window.ready);
        await w.page.evaluate((mode) => window.connect(mode), mode);
        await w.ok('open', { config: { dbName: db, schema: ITEM_SCHEMA } });
        assert.equal(await w.one('PRAGMA integrity_check'), 'ok', `${mode}, reload ${i}`);
      }
      assert.ok(await w.one('SELECT count(*) FROM item') > 0);
      await w.page.close();
    }
  } finally {
    await b.close();
  }
});
