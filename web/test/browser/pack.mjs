// The npm pack test: the tarball of this package installs into a fresh Vite +
// React app, `vite build` bundles it with no Lattice-specific configuration,
// and the built app syncs rows both ways with a real service.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openPage, serve, sleep, tempDir, waitFor, webDir } from './harness.mjs';
import net from 'node:net';

const installed = (name) => JSON.parse(readFileSync(join(webDir, 'node_modules', name, 'package.json'), 'utf8')).version;

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
}

const mainJsx = `
import { createRoot } from 'react-dom/client';
import { createLattice } from '@latticesync/web';
import { LatticeProvider, useLiveQuery, useShape, useSyncStatus } from '@latticesync/web/react';

function App() {
  const shape = useShape({ table: 'issue', where: 'project_id = $1', params: ['p2'] });
  const { rows, error } = useLiveQuery('select title from issue where project_id = ? order by title', ['p2']);
  const status = useSyncStatus();
  return (
    <div>
      <p id="state">{status.state} {String(shape.synced)} {error ? error.code : ''}</p>
      <ul>{rows.map((r) => <li key={r.title}>{r.title}</li>)}</ul>
    </div>
  );
}

async function main() {
  const url = new URLSearchParams(location.search).get('url');
  const db = await createLattice({ url, dbName: 'packapp' });
  window.db = db;
  createRoot(document.getElementById('root')).render(
    <LatticeProvider db={db}>
      <App />
    </LatticeProvider>,
  );
}
main().catch((e) => {
  document.body.textContent = 'failed: ' + e.message;
  console.error(e);
});
`;

export async function packTest({ browser, svc }) {
  const dir = tempDir('lattice-pack-');
  try {
    await packAndRun(dir, browser, svc);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function packAndRun(dir, browser, svc) {
  // prepack builds the package and makes dist/worker.js self-contained.
  run('npm', ['pack', '--loglevel=error', '--pack-destination', dir], webDir);
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, 'npm pack made no tarball');
  const files = run('tar', ['-tzf', join(dir, tgz)], dir).split('\n');
  for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/react.js', 'package/dist/worker.js', 'package/dist/lattice.wasm', 'package/dist/wasm_exec.js']) {
    assert.ok(files.includes(f), `${f} is not in the tarball`);
  }
  assert.ok(!files.some((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), 'sources leaked into the tarball');

  const app = join(dir, 'app');
  mkdirSync(join(app, 'src'), { recursive: true });
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify(
      {
        name: 'lattice-pack-app',
        private: true,
        type: 'module',
        dependencies: {
          '@latticesync/web': `file:${join(dir, tgz)}`,
          react: installed('react'),
          'react-dom': installed('react-dom'),
        },
        devDependencies: {
          vite: installed('vite'),
          '@vitejs/plugin-react': installed('@vitejs/plugin-react'),
        },
      },
      null,
      2,
    ),
  );
  writeFileSync(
    join(app, 'vite.config.js'),
    "import { defineConfig } from 'vite';\nimport react from '@vitejs/plugin-react';\nexport default defineConfig({ plugins: [react()] });\n",
  );
  writeFileSync(
    join(app, 'index.html'),
    '<!doctype html><html><head><meta charset="utf-8"><title>pack</title></head><body><div id="root"></div><script type="module" src="/src/main.jsx"></script></body></html>\n',
  );
  writeFileSync(join(app, 'src', 'main.jsx'), mainJsx);
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], app);
  run(process.execPath, [join(app, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], app);
  const assets = readdirSync(join(app, 'dist', 'assets'));
  assert.ok(assets.some((f) => f.endsWith('.wasm')), `vite build emitted no .wasm: ${assets}`);

  const site = await serve(join(app, 'dist'));
  const context = await browser.newContext();
  try {
    const page = await openPage(context, `${site.url}?url=${encodeURIComponent(svc.url)}`);
    await page.locator('li', { hasText: 'Issue 3' }).first().waitFor({ timeout: 30_000 });
    // Postgres -> the built app.
    await svc.sql("insert into issue (project_id, title) values ('p2', 'Pack remote')");
    await page.locator('li', { hasText: 'Pack remote' }).waitFor({ timeout: 10_000 });
    // The built app -> Postgres.
    await page.evaluate(() => window.db.exec("insert into issue (project_id, title) values ('p2', 'Pack local')"));
    await page.locator('li', { hasText: 'Pack local' }).waitFor({ timeout: 5_000 });
    await waitFor('the row written in the built app to reach Postgres', async () =>
      (await svc.query("select 1 from issue where title = 'Pack local'")).length === 1);
    await svc.sql("delete from issue where title in ('Pack remote', 'Pack local')");
  } finally {
    await context.close();
    await site.close();
  }

  // The Vite dev server too, with no Lattice configuration (dependency
  // pre-bundling included).
  const port = await freePort();
  const dev = spawn(process.execPath, [join(app, 'node_modules/vite/bin/vite.js'), '--port', String(port), '--strictPort', '--force', '--logLevel', 'warn'], {
    cwd: app,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const devContext = await browser.newContext();
  try {
    await waitFor('the Vite dev server', async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/`)).ok;
      } catch {
        return false;
      }
    }, 30_000);
    const page = await openPage(devContext, `http://127.0.0.1:${port}/?url=${encodeURIComponent(svc.url)}`);
    await page.locator('li', { hasText: 'Issue 3' }).first().waitFor({ timeout: 30_000 });
  } finally {
    await devContext.close();
    dev.kill();
    await sleep(100);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
