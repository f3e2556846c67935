// Browser worker benchmarks, in real headless Chromium against a real
// lattice service and Postgres (issue 5): initial sync of 100k rows of
// about 200 bytes into IndexedDB, reopen of that database after a reload
// to the first query result, worker start to first query with a cold and a
// warm code cache, and the wasm's wire size.
//
//   ./build.sh build && node bench/browser/worker.mjs [rows]
//
// Prints a Markdown table; record it in BENCHMARKS.md.

import path from 'node:path';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { launch, serve, repoRoot } from '../../browsertest/lib/harness.js';
import { startService } from '../../browsertest/lib/service.js';

const rows = Number(process.argv[2] || 100000);
const dist = path.join(repoRoot, 'web/dist');
const setup = `
CREATE TABLE big (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL, n integer NOT NULL, at timestamptz NOT NULL);
INSERT INTO big SELECT i, 'row ' || i || ' ' || md5(i::text), repeat(md5((i * 7)::text), 4), i % 1000, '2026-01-01'::timestamptz + i * interval '1 minute'
FROM generate_series(1, ${rows}) i;
`;

const svc = await startService({ setup, electrify: ['big'] });
const rowBytes = (await svc.query('SELECT avg(pg_column_size(big.*))::int FROM big'))[0][0];
const server = await serve({ '/': path.join(repoRoot, 'browsertest/test/worker'), '/dist/': dist });
const b = await launch({ keepUserDataDir: false });

// start opens a page, starts the worker and opens the database; returns
// the page and the times (ms) from worker start to open and to the first
// query result.
async function start(sql) {
  const page = await b.newPage();
  await page.goto(server.url + 'index.html');
  await page.waitForFunction(() => window.ready);
  const t = await page.evaluate(async ([ws, sql]) => {
    const t0 = performance.now();
    await window.connect('shared');
    const o = await window.call('open', { config: { url: ws, dbName: 'bench' } });
    if (!o.ok) throw new Error(JSON.stringify(o.error));
    const t1 = performance.now();
    const q = await window.call('query', { sql });
    if (!q.ok) throw new Error(JSON.stringify(q.error));
    const t2 = performance.now();
    return { open: t1 - t0, first: t2 - t0, openToFirst: t2 - t1 };
  }, [svc.ws, sql]);
  return { page, ...t };
}

const results = [];
try {
  // Cold: empty profile, no compiled code cached.
  let s = await start('SELECT 1');
  results.push(['worker start → first query, cold (empty profile)', `${s.first.toFixed(0)} ms`]);
  const sync = await s.page.evaluate(async () => {
    const t0 = performance.now();
    const r = await window.call('sync', { shape: { table: 'big' } });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    const t1 = performance.now();
    const c = await window.call('query', { sql: 'SELECT count(*) AS n FROM big' });
    return { ms: t1 - t0, n: c.result.rows[0].n };
  });
  if (sync.n !== rows) throw new Error(`synced ${sync.n} rows, want ${rows}`);
  results.push([`initial sync of ${rows} rows (${rowBytes} B each in Postgres) into IndexedDB`, `${sync.ms.toFixed(0)} ms = ${Math.round(rows / (sync.ms / 1000))} rows/s`]);
  await s.page.close();
  await new Promise((r) => setTimeout(r, 1500)); // the shared worker ends with its last page

  // Warm: compiled code cached; the database is in IndexedDB.
  // The first query is a first screen: the 50 newest rows.
  const warm = [];
  for (let i = 0; i < 5; i++) {
    s = await start('SELECT id, title, n, at FROM big ORDER BY id DESC LIMIT 50');
    const scan = await s.page.evaluate(async () => {
      const t0 = performance.now();
      await window.call('query', { sql: 'SELECT count(*), sum(length(body)) FROM big' });
      return performance.now() - t0;
    });
    warm.push({ ...s, scan });
    await s.page.close();
    await new Promise((r) => setTimeout(r, 1500));
  }
  const med = (k) => warm.map((w) => w[k]).sort((a, b) => a - b)[2];
  results.push([`reopen the ${rows}-row database after a reload: open request → first query result (50 newest rows; median of 5)`, `${med('openToFirst').toFixed(0)} ms`]);
  results.push(['worker start → first query result, warm code cache (median of 5)', `${med('first').toFixed(0)} ms`]);
  results.push([`then a full scan of the ${rows} rows (count, sum of lengths; pages from IndexedDB)`, `${med('scan').toFixed(0)} ms`]);
} finally {
  await b.close();
  await server.close();
  await svc.close();
}

const wasm = readFileSync(path.join(dist, 'lattice.wasm'));
const gz = zlib.gzipSync(wasm, { level: 9 }).length;
const br = zlib.brotliCompressSync(wasm, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: wasm.length } }).length;
const mib = (n) => (n / 1048576).toFixed(2) + ' MiB';
results.push(['lattice.wasm raw / gzip -9 / brotli -11', `${mib(wasm.length)} / ${mib(gz)} / ${mib(br)}`]);

console.log('| measure | result |\n|---|---|');
for (const [k, v] of results) console.log(`| ${k} | ${v} |`);
