// Browser test harness for Lattice: Debian's Chromium driven by
// playwright-core over CDP, a static file server, and helpers to build the
// Go wasm the pages load. Browsers are never downloaded: the Chromium binary
// is /usr/bin/chromium (or $CHROMIUM), installed by `./build.sh deps`.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createReadStream, mkdtempSync, rmSync, statSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The repository root (the directory above browsertest/). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Chromium binary: $CHROMIUM, else Debian's /usr/bin/chromium. */
export function chromiumPath() {
  return process.env.CHROMIUM || '/usr/bin/chromium';
}

/** The flags every launch uses. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/**
 * Start Chromium with a user-data directory (a fresh temporary one unless
 * userDataDir is given; reuse the same directory to test a browser
 * restart) and connect playwright-core to it over CDP. We spawn the process
 * ourselves so a test can kill it hard (kill()) like a crash.
 *
 * Returns { browser, context, userDataDir, pid, newPage(), close(), kill() }:
 *   context   the browser's default (persistent) context
 *   newPage() a new page in that context
 *   close()   closes Chromium cleanly (and removes the directory if it was
 *             a temporary one and keepUserDataDir is not set)
 *   kill()    SIGKILLs Chromium and every child process (a crash)
 */
export async function launch({ userDataDir, keepUserDataDir = false, args = [], timeoutMs = 30000 } = {}) {
  const exe = chromiumPath();
  if (!existsSync(exe)) {
    throw new Error(`Chromium not found at ${exe}: run ./build.sh deps (installs the Debian chromium package) or set CHROMIUM`);
  }
  const temporary = !userDataDir;
  const dir = userDataDir || mkdtempSync(path.join(tmpdir(), 'lattice-chromium-'));
  const proc = spawn(exe, [...chromiumArgs, ...args, `--user-data-dir=${dir}`, '--remote-debugging-port=0', 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true, // its own process group, so kill() reaches the renderers too
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let stderr = '';
  const ws = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Chromium did not start in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`Chromium exited (${code}) before listening:\n${stderr}`)); });
  });
  proc.stderr.resume();
  const browser = await chromium.connectOverCDP(ws);
  const context = browser.contexts()[0];
  let done = false;
  const cleanup = () => {
    if (temporary && !keepUserDataDir) rmSync(dir, { recursive: true, force: true });
  };
  return {
    browser,
    context,
    userDataDir: dir,
    pid: proc.pid,
    newPage: () => context.newPage(),
    async close() {
      if (done) return;
      done = true;
      await browser.close().catch(() => {});
      // browser.close() over CDP closes the browser; make sure it is gone.
      const t = setTimeout(() => { try { process.kill(-proc.pid, 'SIGKILL'); } catch {} }, 10000);
      await exited;
      clearTimeout(t);
      cleanup();
    },
    async kill() {
      if (done) return;
      done = true;
      try { process.kill(-proc.pid, 'SIGKILL'); } catch {}
      await exited;
      await browser.close().catch(() => {});
      cleanup();
    },
  };
}

/** Crash the renderer process of a page (CDP Page.crash), like a tab crash. */
export async function crashPage(page) {
  const cdp = await page.context().newCDPSession(page);
  const crashed = new Promise((resolve) => page.once('crash', resolve));
  cdp.send('Page.crash').catch(() => {}); // never answers: the session dies with the renderer
  await Promise.race([crashed, new Promise((_, reject) => setTimeout(() => reject(new Error('the page did not crash')), 10000))]);
}

const mimeTypes = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.css': 'text/css; charset=utf-8',
  '.sql': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
};

/**
 * Serve static files over HTTP on 127.0.0.1. mounts maps URL prefixes to
 * directories, e.g. { '/': webDir, '/vendor/': nodeModulesDir }; a string
 * is the same as { '/': dir }. .wasm is served as application/wasm with
 * `Cache-Control: public, max-age=31536000, immutable` (so Chromium keeps
 * its compiled code); everything else `no-cache`. headers are added to
 * every response (e.g. COOP/COEP for cross-origin isolation).
 *
 * Returns { url, port, close() }; url ends with '/'.
 */
export async function serve(mounts, { port = 0, headers = {} } = {}) {
  if (typeof mounts === 'string') mounts = { '/': mounts };
  const entries = Object.entries(mounts).sort((a, b) => b[0].length - a[0].length);
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let pathname;
    try { pathname = decodeURIComponent(url.pathname); } catch { res.writeHead(400).end(); return; }
    const hit = entries.find(([prefix]) => pathname.startsWith(prefix));
    if (!hit) { res.writeHead(404).end('not found'); return; }
    const [prefix, root] = hit;
    let file = path.join(root, path.normalize(pathname.slice(prefix.length)).replace(/^(\.\.[/\\])+/, ''));
    if (!file.startsWith(path.resolve(root))) { res.writeHead(403).end(); return; }
    let st;
    try {
      st = statSync(file);
      if (st.isDirectory()) { file = path.join(file, 'index.html'); st = statSync(file); }
    } catch { res.writeHead(404).end('not found'); return; }
    const ext = path.extname(file);
    res.writeHead(200, {
      'Content-Type': mimeTypes[ext] || 'application/octet-stream',
      'Content-Length': st.size,
      'Cache-Control': ext === '.wasm' ? 'public, max-age=31536000, immutable' : 'no-cache',
      ...headers,
    });
    if (req.method === 'HEAD') { res.end(); return; }
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => server.listen(port, '127.0.0.1', resolve).once('error', reject));
  const p = server.address().port;
  return {
    url: `http://127.0.0.1:${p}/`,
    port: p,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/** Path of Go's wasm_exec.js for the installed Go. */
export function wasmExecPath() {
  const root = execFileSync('go', ['env', 'GOROOT'], { encoding: 'utf8' }).trim();
  for (const p of ['lib/wasm/wasm_exec.js', 'misc/wasm/wasm_exec.js']) {
    if (existsSync(path.join(root, p))) return path.join(root, p);
  }
  throw new Error(`wasm_exec.js not found under ${root}`);
}

/**
 * Build a Go main package for GOOS=js GOARCH=wasm, stripped (-s -w,
 * -trimpath), into outFile; pkg is relative to the repository root
 * (e.g. './idbvfs/internal/testworker'). flags are extra `go build` flags,
 * env extra environment (e.g. { GOWASM: 'satconv,signext' }). Returns outFile.
 */
export function buildWasm(pkg, outFile, { flags = [], env = {} } = {}) {
  execFileSync('go', ['build', '-trimpath', '-ldflags=-s -w', ...flags, '-o', outFile, pkg], {
    cwd: repoRoot,
    env: { ...process.env, GOOS: 'js', GOARCH: 'wasm', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return outFile;
}

/** A fresh temporary directory; remove it with rmSync when done. */
export function tempDir(prefix = 'lattice-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Copy files into dir (keeping their base names). */
export function copyInto(dir, ...files) {
  for (const f of files) copyFileSync(f, path.join(dir, path.basename(f)));
}
