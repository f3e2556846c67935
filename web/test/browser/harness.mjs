// Minimal harness for the browser tests: a real `lattice dev` (throwaway
// Postgres + insecure service), a static HTTP server, and the Debian
// Chromium driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import pg from 'pg';
import { chromium } from 'playwright-core';

export const webDir = fileURLToPath(new URL('../..', import.meta.url));
export const repoDir = resolve(webDir, '..');

export function tempDir(prefix) {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

/** The lattice binary: $LATTICE_BIN, or built from the repository into a temp dir. */
export function latticeBinary() {
  if (process.env.LATTICE_BIN) return process.env.LATTICE_BIN;
  const out = join(tempDir('lattice-bin-'), 'lattice');
  execFileSync('go', ['build', '-o', out, './cmd/lattice'], { cwd: repoDir, stdio: 'inherit' });
  return out;
}

/** Starts `lattice dev` on a free port; resolves to { url, databaseUrl, pool, stop }. */
export async function startLattice() {
  const bin = latticeBinary();
  const port = await freePort();
  const proc = spawn(bin, ['dev', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => {
    err += d;
    if (process.env.LATTICE_LOG) process.stderr.write(d);
  });
  const exited = new Promise((res) => proc.on('exit', res));
  const deadline = Date.now() + 120_000;
  while (!/Postgres:\s+(\S+)/.test(out)) {
    if (proc.exitCode !== null) throw new Error(`lattice dev exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`lattice dev did not start: ${err}`);
    await sleep(100);
  }
  const databaseUrl = /Postgres:\s+(\S+)/.exec(out)[1];
  while (true) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error('lattice dev: /healthz never answered');
    await sleep(100);
  }
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  return {
    url: `ws://127.0.0.1:${port}`,
    databaseUrl,
    pool,
    async stop() {
      await pool.end();
      proc.kill('SIGINT');
      await Promise.race([exited, sleep(15_000)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
};

/** Serves a directory over HTTP on a free port; resolves to { origin, close }. */
export async function serveDir(root) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    let file = join(root, path);
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((res) => server.close(res)),
  };
}

export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser']) if (existsSync(p)) return p;
  throw new Error('Chromium not found: install the Debian package chromium (./build.sh deps) or set CHROMIUM');
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'], dumpio: !!process.env.BROWSER_DUMPIO });
}

/** Opens a page that forwards its console errors to the test output. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || process.env.BROWSER_LOG) console.error(`[page] ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => console.error(`[page] uncaught: ${e.message}`));
  await page.goto(url);
  return page;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Checks the package's built assets exist (./build.sh build makes the worker and wasm). */
export function requireDist() {
  for (const f of ['index.js', 'react.js', 'worker.js', 'lattice.wasm', 'wasm_exec.js']) {
    if (!existsSync(join(webDir, 'dist', f))) {
      throw new Error(`web/dist/${f} is missing: run ./build.sh build (worker, wasm) and npm run build first`);
    }
  }
}
