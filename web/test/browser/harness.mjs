// The browser tests of web/ reuse the repository's browser harness
// (browsertest/: Debian Chromium over playwright-core, static server,
// internal/testservice for a throwaway Postgres + insecure service).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, serve, tempDir } from '../../../browsertest/lib/harness.js';
import { startService } from '../../../browsertest/lib/service.js';

export { launch, serve, tempDir };

export const webDir = fileURLToPath(new URL('../..', import.meta.url));
export const repoDir = resolve(webDir, '..');

// The tables of the tests (the demo's project/issue).
const SETUP = `
CREATE TABLE project (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE issue (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id text NOT NULL REFERENCES project(id),
  title text NOT NULL,
  status text NOT NULL DEFAULT 'open',
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO project VALUES ('p1', 'Lattice'), ('p2', 'Website');
INSERT INTO issue (project_id, title)
SELECT CASE WHEN i % 3 = 0 THEN 'p2' ELSE 'p1' END, 'Issue ' || i FROM generate_series(1, 20) i;
`;

/**
 * A throwaway Postgres + service with the test tables: { url, sql, query,
 * token(sub, ttl), close }. Insecure, unless authSecret is given: it then
 * checks tokens, which token() signs.
 */
export async function startLattice({ authSecret } = {}) {
  const svc = await startService({ setup: SETUP, electrify: ['project', 'issue'], authSecret });
  return { url: svc.ws, sql: svc.sql, query: svc.query, token: svc.token, close: svc.close };
}

/** Opens a page that forwards its errors to the test output. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.on('console', (m) => {
    if ((m.type() === 'error' && !m.text().includes('404')) || process.env.BROWSER_LOG) {
      console.error(`[page] ${m.type()}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => console.error(`[page] uncaught: ${e.message}`));
  await page.goto(url);
  return page;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls fn until it returns a truthy value. */
export async function waitFor(what, fn, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(50);
  }
}

/** Checks the package's built assets exist (./build.sh build makes the worker and wasm). */
export function requireDist() {
  for (const f of ['index.js', 'react.js', 'worker.js', 'lattice.wasm', 'wasm_exec.js']) {
    if (!existsSync(join(webDir, 'dist', f))) {
      throw new Error(`web/dist/${f} is missing: run ./build.sh build (worker, wasm) and npm run build in web/`);
    }
  }
}
