// Test harness for the example app: starts `lattice dev` (its own Postgres in
// a temporary folder, the service and the built app on free ports), drives
// Debian's chromium with playwright-core, and reads Postgres with pg.
//
// Environment: LATTICE_BIN (default ../../bin/lattice), CHROMIUM (see
// browsertest/lib/harness.js), E2E_SCREENSHOTS (default
// test-results/screenshots).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch as launchChromium } from '../../../browsertest/lib/harness.js';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
export const appDir = path.resolve(here, '..');
const repo = path.resolve(appDir, '../..');

// startDev runs lattice dev with a fresh cluster and a small seed; returns
// { appUrl, dbUrl, sql(query, params), dropConnections(), stop() }.
//
// The browsers reach the app (and /v1/sync on the same origin) through a TCP
// relay, so that a test can cut every open connection (dropConnections):
// Chromium's offline emulation (context.setOffline) refuses new connections
// but leaves an open WebSocket alone, where a real network loss kills it.
export async function startDev({ issues = 300, comments = 1200, projects = 3 } = {}) {
  const bin = process.env.LATTICE_BIN ?? path.join(repo, 'bin', 'lattice');
  if (!fs.existsSync(bin)) throw new Error(`${bin} missing: run ./build.sh build`);
  if (!fs.existsSync(path.join(appDir, 'dist', 'index.html'))) throw new Error('the app is not built: npm run build');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lattice-e2e-'));
  fs.chmodSync(tmp, 0o755); // Postgres runs as user postgres when we are root
  const args = ['dev', '--data-dir', path.join(tmp, 'dev'), '--listen', '127.0.0.1:0', '--app-listen', '127.0.0.1:0',
    '--no-build', '--app-dir', appDir, '--projects', String(projects), '--issues', String(issues), '--comments', String(comments)];
  const env = { ...process.env };
  delete env.DATABASE_URL;
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const deadline = Date.now() + 90_000;
  let appUrl, dbUrl;
  while (!(appUrl && dbUrl)) {
    if (proc.exitCode !== null) throw new Error(`lattice dev exited:\n${out}`);
    if (Date.now() > deadline) throw new Error(`lattice dev did not start:\n${out}`);
    appUrl = out.match(/App:\s+(http\S+?)\/?\s/)?.[1];
    dbUrl = out.match(/Postgres:\s+(postgres\S+)/)?.[1];
    await new Promise((r) => setTimeout(r, 100));
  }
  const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  const relay = await startRelay(new URL(appUrl).port);
  return {
    appUrl: `http://127.0.0.1:${relay.port}`,
    dropConnections: relay.drop,
    dbUrl,
    log: () => out,
    async sql(q, params = []) {
      return (await pool.query(q, params)).rows;
    },
    async stop() {
      relay.close();
      await pool.end();
      proc.kill('SIGINT');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

// launch starts Debian's Chromium through browsertest/'s harness; each user
// gets a context of its own (browser.newContext: an empty profile).
// startRelay forwards 127.0.0.1:<free port> to 127.0.0.1:target.
async function startRelay(target) {
  const open = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(Number(target), '127.0.0.1');
    for (const [a, b] of [[down, up], [up, down]]) {
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
    const pair = { down, up };
    open.add(pair);
    down.on('close', () => open.delete(pair));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    drop() {
      for (const { down, up } of open) {
        down.destroy();
        up.destroy();
      }
      open.clear();
    },
    close() {
      this.drop();
      server.close();
    },
  };
}

export async function launch() {
  const c = await launchChromium();
  return { newContext: (opts) => c.browser.newContext(opts), close: () => c.close() };
}

// openUser opens a browser context (its own storage: an empty profile) and
// a page of the app as user. worker: 'dedicated' for tests that cut the
// network with context.setOffline (Chromium's network emulation does not
// reach shared workers), else the app's default.
export async function openUser(browser, appUrl, user, pathName = '/', { worker } = {}) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  trace(page, user);
  await page.goto(appUrl + withUser(pathName, user, worker));
  return { context, page };
}

export function withUser(pathName, user, worker) {
  const q = new URLSearchParams({ user });
  if (worker) q.set('worker', worker);
  return `${pathName}?${q}`;
}

export function trace(page, name) {
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  page.on('console', (m) => m.type() === 'error' && console.error(`[${name}] console:`, m.text()));
  page.on('dialog', (d) => d.accept());
}

// waitFor polls fn until it returns a truthy value.
export async function waitFor(fn, { timeout = 30_000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export async function syncState(page) {
  return page.getAttribute('[data-testid=sync-status]', 'data-state');
}

export async function pending(page) {
  return Number(await page.getAttribute('[data-testid=sync-status]', 'data-pending'));
}

// waitSettled waits until the page is online with no pending write.
export async function waitSettled(page, timeout = 30_000) {
  await waitFor(async () => (await syncState(page)) === 'online' && (await pending(page)) === 0, { timeout, what: 'online with nothing pending' });
}

// localRows queries the page's local SQLite database.
export async function localRows(page, sql, params = []) {
  return page.evaluate(([sql, params]) => window.lattice.query(sql, params), [sql, params]);
}

export const screenshotDir = path.resolve(process.env.E2E_SCREENSHOTS ?? path.join(appDir, 'test-results', 'screenshots'));

export async function screenshot(page, name) {
  fs.mkdirSync(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
