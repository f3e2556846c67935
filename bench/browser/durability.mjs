// Commit latency of the idb VFS in Chromium: autocommitted single-row
// INSERTs with IndexedDB durability 'relaxed' vs 'strict' (alternating
// runs, median). node durability.mjs [commits] [rounds]
import path from 'node:path';
import { rmSync } from 'node:fs';
import { launch, serve, buildWasm, wasmExecPath, tempDir, copyInto, repoRoot } from '../../browsertest/lib/harness.js';

const commits = Number(process.argv[2] || 300);
const rounds = Number(process.argv[3] || 3);
const web = tempDir('durability-web-');
const src = path.join(repoRoot, 'idbvfs/internal/testworker/web');
copyInto(web, path.join(src, 'index.html'), path.join(src, 'worker.js'), wasmExecPath());
buildWasm('./idbvfs/internal/testworker', path.join(web, 'testworker.wasm'));
const server = await serve(web);
const b = await launch();
const ms = { relaxed: [], strict: [] };
try {
  const page = await b.newPage();
  await page.goto(server.url + 'index.html');
  await page.evaluate(() => window.startWorker());
  const call = (op, args) => page.evaluate(([op, args]) => window.call(op, args), [op, args]);
  let n = 0;
  for (let r = 0; r < rounds; r++) {
    for (const durability of ['relaxed', 'strict']) {
      const name = `dur${n++}.db`;
      await call('open', { name, options: { durability } });
      await call('exec', { sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t VALUES (0, NULL)' });
      const res = await call('writeLoop', { from: 1, to: commits + 1, rowBytes: 100 });
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      ms[durability].push(res.ms);
      await call('close', {});
    }
  }
} finally {
  await b.close();
  await server.close();
  rmSync(web, { recursive: true, force: true });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const d of ['relaxed', 'strict']) {
  const m = median(ms[d]);
  console.log(`${d}: ${commits} commits in ${m.toFixed(0)} ms median (${(m / commits).toFixed(2)} ms/commit; runs ${ms[d].map((x) => x.toFixed(0)).join(', ')})`);
}
