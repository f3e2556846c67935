// The IndexedDB VFS (idbvfs) in real headless Chromium: the test wasm
// (idbvfs/internal/testworker) runs SQLite in a dedicated Web Worker.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { launch, serve, buildWasm, wasmExecPath, tempDir, copyInto, crashPage, repoRoot } from '../lib/harness.js';

let web, server;

before(() => {
  web = tempDir('idbvfs-web-');
  const src = path.join(repoRoot, 'idbvfs/internal/testworker/web');
  copyInto(web, path.join(src, 'index.html'), path.join(src, 'worker.js'), wasmExecPath());
  buildWasm('./idbvfs/internal/testworker', path.join(web, 'testworker.wasm'));
});

before(async () => { server = await serve(web); });

after(async () => {
  await server?.close();
  if (web) rmSync(web, { recursive: true, force: true });
});

// open a page with the test worker started; returns { page, call, callOk }.
async function openWorker(b) {
  const page = await b.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await page.goto(server.url + 'index.html');
  await page.evaluate(() => window.startWorker());
  const call = (op, args = {}) => page.evaluate(([op, args]) => window.call(op, args), [op, args]);
  const callOk = async (op, args = {}) => {
    const r = await call(op, args);
    assert.ok(r.ok, `${op} ${JSON.stringify(args).slice(0, 200)}: ${JSON.stringify(r.error)}`);
    return r.result;
  };
  return { page, call, callOk };
}

const one = async (w, sql) => (await w.callOk('query', { sql }))[0][0];

test('write, read, reload, browser restart, integrity_check', async () => {
  const b = await launch({ keepUserDataDir: true });
  const dir = b.userDataDir;
  try {
    let w = await openWorker(b);
    await w.callOk('open', { name: 'basic.db' });
    await w.callOk('exec', { sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)' });
    await w.callOk('exec', { sql: "INSERT INTO t(v) SELECT printf('row %d', value) FROM generate_series(1, 5000)" });
    assert.equal(await one(w, 'SELECT count(*) FROM t'), 5000);
    assert.equal(await one(w, 'SELECT v FROM t WHERE id = 4321'), 'row 4321');
    assert.equal(await one(w, 'PRAGMA journal_mode'), 'delete');

    // Reload the page: a new worker reads what IndexedDB holds.
    await w.page.reload();
    await w.page.evaluate(() => window.startWorker());
    await w.callOk('open', { name: 'basic.db' });
    assert.equal(await one(w, 'SELECT count(*) FROM t'), 5000);
    await w.callOk('exec', { sql: "UPDATE t SET v = 'changed' WHERE id <= 10" });
    await w.callOk('close');
    await b.close();

    // Restart the browser on the same profile.
    const b2 = await launch({ userDataDir: dir });
    try {
      w = await openWorker(b2);
      await w.callOk('open', { name: 'basic.db' });
      assert.equal(await one(w, 'SELECT count(*) FROM t'), 5000);
      assert.equal(await one(w, "SELECT count(*) FROM t WHERE v = 'changed'"), 10);
      assert.equal(await one(w, 'PRAGMA integrity_check'), 'ok');
    } finally {
      await b2.close();
    }
  } finally {
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Kill the browser (or crash the renderer) while a worker commits one row
// per transaction; after restart the database must be intact and hold
// exactly rows 1..n with n >= the last commit the worker reported.
for (const how of ['renderer crash (CDP Page.crash)', 'browser SIGKILL']) {
  test(`${how} in the middle of a write loop leaves a committed prefix`, async () => {
    const b = await launch({ keepUserDataDir: true });
    const dir = b.userDataDir;
    try {
      const w = await openWorker(b);
      await w.callOk('open', { name: 'crash.db' });
      await w.callOk('exec', { sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)' });
      // Fire the loop without waiting for it, kill after some commits.
      w.page.evaluate(() => window.call('writeLoop', { from: 1, to: 1000000, rowBytes: 3000 })).catch(() => {});
      await w.page.waitForFunction(() => window.committed >= 300, null, { timeout: 60000, polling: 10 });
      const reported = await w.page.evaluate(() => window.committed);
      if (how.startsWith('renderer')) {
        await crashPage(w.page);
        await b.close();
      } else {
        await b.kill();
      }

      const b2 = await launch({ userDataDir: dir });
      try {
        const w2 = await openWorker(b2);
        await w2.callOk('open', { name: 'crash.db' });
        assert.equal(await one(w2, 'PRAGMA integrity_check'), 'ok');
        const [[n, lo, hi, sum]] = await w2.callOk('query', { sql: 'SELECT count(*), min(id), max(id), sum(id) FROM t' });
        assert.ok(n >= reported, `${n} rows survived, but the worker had reported ${reported} commits`);
        assert.equal(lo, 1);
        assert.equal(hi, n, 'ids are not a prefix');
        assert.equal(sum, (n * (n + 1)) / 2, 'ids are not a prefix');
        assert.equal(await one(w2, 'SELECT count(*) FROM t WHERE length(v) = 3000'), n);
        console.log(`# ${how}: worker reported ${reported} commits, ${n} rows survived`);
      } finally {
        await b2.close();
      }
    } finally {
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('a database larger than the cache bound', async () => {
  const b = await launch();
  try {
    const w = await openWorker(b);
    const cacheBytes = 1 << 20;
    await w.callOk('open', { name: 'big.db', options: { cacheBytes } });
    await w.callOk('exec', { sql: 'PRAGMA cache_size = 50' }); // keep SQLite's own cache small too
    await w.callOk('exec', { sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)' });
    for (let i = 0; i < 8; i++) {
      await w.callOk('exec', { sql: 'INSERT INTO t(v) SELECT randomblob(1000) FROM generate_series(1, 1000)' });
      const st = await w.callOk('stats');
      assert.ok(st.cachedBytes <= cacheBytes, `cache holds ${st.cachedBytes} bytes, bound ${cacheBytes}`);
    }
    const pages = await one(w, 'PRAGMA page_count');
    assert.ok(pages * 4096 > 6 * cacheBytes, `database is only ${pages} pages`);
    await w.callOk('close');
    await w.callOk('open', { name: 'big.db', options: { cacheBytes } });
    assert.equal(await one(w, 'PRAGMA integrity_check'), 'ok');
    assert.equal(await one(w, 'SELECT count(*) FROM t WHERE length(v) = 1000'), 8000);
    const st = await w.callOk('stats');
    assert.ok(st.cachedBytes <= cacheBytes && st.loads > 1, JSON.stringify(st));
  } finally {
    await b.close();
  }
});

test('an IndexedDB failure is an SQLite I/O error and the worker goes on', async () => {
  const b = await launch();
  try {
    const w = await openWorker(b);
    await w.callOk('open', { name: 'fail.db' });
    await w.callOk('exec', { sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)' });
    await w.callOk('exec', { sql: "INSERT INTO t(v) VALUES ('before')" });
    // The page deletes the database under the worker: the VFS lets the
    // deletion through (closing its connection), so the next commit fails.
    const deleted = await w.page.evaluate(() => new Promise((resolve) => {
      const req = indexedDB.deleteDatabase('idbvfs:fail.db');
      req.onsuccess = () => resolve('deleted');
      req.onerror = () => resolve('error: ' + req.error);
    }));
    assert.equal(deleted, 'deleted');
    const r = await w.call('exec', { sql: "INSERT INTO t(v) VALUES ('after')" });
    assert.equal(r.ok, false, 'the write must fail');
    assert.equal(r.error.primary, 10, `want SQLITE_IOERR (10), got ${JSON.stringify(r.error)}`);
    assert.match(r.error.message, /indexeddb/i);
    // The worker is still alive and another database works.
    await w.callOk('open', { name: 'fail2.db' });
    await w.callOk('exec', { sql: 'CREATE TABLE u(x); INSERT INTO u VALUES (1)' });
    assert.equal(await one(w, 'SELECT count(*) FROM u'), 1);
  } finally {
    await b.close();
  }
});
