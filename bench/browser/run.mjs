// speedtest16 in headless Chromium, in one run: Lattice's IndexedDB VFS
// (idbvfs, Go wasm) beside wa-sqlite's IDBBatchAtomicVFS and sqlite.org's
// opfs-sahpool. Prints a table of seconds per test and the ratios.
//
//   node run.mjs [--scripts DIR] [--rounds N] [--only lattice,wasqlite,sahpool]
//                [--lattice-options JSON] [--wasqlite-options JSON]
//
// --scripts DIR runs the published benchmark1.sql .. benchmark16.sql from
// DIR instead of the generated workload.

import path from 'node:path';
import { rmSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { launch, serve, buildWasm, wasmExecPath, tempDir, copyInto, repoRoot } from '../../browsertest/lib/harness.js';
import { generate, loadScripts, titles } from './speedtest.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const scripts = flag('--scripts') ? loadScripts(flag('--scripts')) : generate(1);
const rounds = Number(flag('--rounds', '1'));
const only = flag('--only', 'lattice,wasqlite,sahpool').split(',');
const latticeOptions = JSON.parse(flag('--lattice-options', 'null'));
const wasqliteOptions = JSON.parse(flag('--wasqlite-options', 'null'));

const engines = {
  lattice: { label: 'Lattice idbvfs', url: 'worker.js', type: undefined, options: latticeOptions },
  memdb: { label: 'Lattice engine, memdb', url: 'worker.js', type: undefined, options: { vfs: 'memdb' } },
  // The same two, built with bounds checks off in the SQLite translation (-gcflags=...=-B).
  latticeB: { label: 'Lattice idbvfs, -B build', url: 'worker.js?wasm=testworker-B.wasm', type: undefined, options: latticeOptions },
  memdbB: { label: 'Lattice engine, memdb, -B build', url: 'worker.js?wasm=testworker-B.wasm', type: undefined, options: { vfs: 'memdb' } },
  wasqlite: { label: 'wa-sqlite IDBBatchAtomic', url: 'wasqlite-worker.js', type: 'module', options: wasqliteOptions },
  sahpool: { label: 'sqlite.org opfs-sahpool', url: 'sahpool-worker.js', type: 'module', options: null },
};

const web = tempDir('speedtest-web-');
copyInto(web, ...['index.html', 'wasqlite-worker.js', 'sahpool-worker.js'].map((f) => path.join(here, 'web', f)));
copyInto(web, path.join(repoRoot, 'idbvfs/internal/testworker/web/worker.js'), wasmExecPath());
console.error('building the Lattice test wasm (GOOS=js GOARCH=wasm)...');
const gcflags = flag('--gcflags');
const goenv = flag('--goenv') ? Object.fromEntries(flag('--goenv').split(',').map((kv) => kv.split('='))) : {};
const wasm = buildWasm('./idbvfs/internal/testworker', path.join(web, 'testworker.wasm'), { flags: gcflags ? [`-gcflags=${gcflags}`] : [], env: goenv });
if (only.some((k) => k.endsWith('B'))) {
  buildWasm('./idbvfs/internal/testworker', path.join(web, 'testworker-B.wasm'), { flags: ['-gcflags=github.com/ncruces/go-sqlite3-wasm/v6=-B'], env: goenv });
}
const raw = readFileSync(wasm);
const sizes = {
  raw: raw.length,
  gzip: gzipSync(raw, { level: 9 }).length,
  brotli: brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length } }).length,
};

const server = await serve({ '/': web, '/vendor/': path.join(here, 'node_modules') });
const results = {}; // engine -> array of rounds, each 16 ms values
// One browser profile per engine, kept across rounds (so Chromium's wasm
// code cache is warm after the first round, as in a returning user's
// browser); rounds interleave the engines to spread the machine's noise;
// each round starts a new page and worker on a new, empty database.
const profiles = Object.fromEntries(only.map((k) => [k, tempDir(`speedtest-${k}-`)]));
try {
  for (let round = 0; round < rounds; round++) {
    for (const key of only) {
      const e = engines[key];
      const b = await launch({ userDataDir: profiles[key] });
      try {
        const page = await b.newPage();
        page.on('console', (m) => m.type() === 'error' && !m.text().includes('404') && console.error(`[${key}] ${m.text()}`));
        await page.goto(server.url + 'index.html');
        await page.evaluate(([url, type]) => window.startWorker(url, type), [e.url, e.type]);
        const open = await page.evaluate(([name, options]) => window.call('open', { name, ...(options ? { options } : {}) }), [`speedtest${round}.db`, e.options]);
        if (!open.ok) throw new Error(`${key} open: ${JSON.stringify(open.error)}`);
        // The published figures ran after this preamble (memdb has no journal files).
        const pre = await page.evaluate(([sql]) => window.call('exec', { sql }), [key.startsWith('memdb') ? 'SELECT 1' : 'PRAGMA journal_mode=delete;']);
        if (!pre.ok) throw new Error(`${key} preamble: ${JSON.stringify(pre.error)}`);
        await page.evaluate((s) => { window.scripts = s; }, scripts);
        const ms = await page.evaluate(() => window.runScripts());
        (results[key] ||= []).push(ms);
        console.error(`${e.label} round ${round + 1}: total ${(ms.reduce((a, b) => a + b, 0) / 1000).toFixed(3)} s`);
      } finally {
        await b.close();
      }
    }
  }
} finally {
  await server.close();
  rmSync(web, { recursive: true, force: true });
  for (const d of Object.values(profiles)) rmSync(d, { recursive: true, force: true });
}

// Median over rounds per test.
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const med = {};
for (const key of Object.keys(results)) med[key] = titles.map((_, i) => median(results[key].map((r) => r[i])));
const sec = (ms) => (ms / 1000).toFixed(3);
const cols = Object.keys(med);
const ratioKeys = med.wasqlite ? cols.filter((k) => k.startsWith('lattice')) : [];
const head = ['#', 'test', ...cols.map((k) => engines[k].label + ' (s)'), ...ratioKeys.map((k) => engines[k].label + ' / wa-sqlite')];
const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
titles.forEach((t, i) => {
  const row = [String(i + 1), t, ...cols.map((k) => sec(med[k][i])), ...ratioKeys.map((k) => (med[k][i] / med.wasqlite[i]).toFixed(2))];
  lines.push(`| ${row.join(' | ')} |`);
});
const totals = Object.fromEntries(cols.map((k) => [k, med[k].reduce((a, b) => a + b, 0)]));
const trow = ['', '**total**', ...cols.map((k) => `**${sec(totals[k])}**`), ...ratioKeys.map((k) => `**${(totals[k] / totals.wasqlite).toFixed(2)}**`)];
lines.push(`| ${trow.join(' | ')} |`);
console.log(lines.join('\n'));
console.log(`\n${rounds} round(s), median per test (first, cold-cache round totals: ${cols.map((k) => engines[k].label + ' ' + sec(results[k][0].reduce((a, b) => a + b, 0))).join(', ')}); workload: ${flag('--scripts') ? 'published scripts from ' + flag('--scripts') : 'generated (bench/browser/speedtest.js, seed 1)'}`);
for (const k of ratioKeys) {
  const worst = Math.max(...med[k].map((v, i) => v / med.wasqlite[i]));
  console.log(`${engines[k].label}: total / wa-sqlite ${(totals[k] / totals.wasqlite).toFixed(2)} (target <= 0.5), worst single test ${worst.toFixed(2)} (target <= 1.5)`);
}
const mib = (n) => (n / 1048576).toFixed(2) + ' MiB';
console.log(`test wasm (stripped): ${mib(sizes.raw)} raw, ${mib(sizes.gzip)} gzip -9, ${mib(sizes.brotli)} brotli -11`);
