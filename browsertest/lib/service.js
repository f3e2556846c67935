// A throwaway Postgres and an insecure lattice service for browser tests:
// `go run ./internal/testservice`, driven over its stdin.

import { spawn } from 'node:child_process';
import { writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { repoRoot } from './harness.js';

/**
 * startService({ setup, electrify }) runs the setup SQL, electrifies the
 * tables and starts the service. Returns { ws, pg, sql(stmt), query(select)
 * → rows of text, stop(), start(), close() }.
 */
export async function startService({ setup = '', electrify = [] } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lattice-svc-'));
  const setupFile = path.join(dir, 'setup.sql');
  writeFileSync(setupFile, setup);
  const proc = spawn('go', ['run', './internal/testservice', '-setup', setupFile, '-electrify', electrify.join(',')], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: proc.stdout });
  const waiting = [];
  const queued = [];
  lines.on('line', (l) => (waiting.length ? waiting.shift()(l) : queued.push(l)));
  const exited = new Promise((res) => proc.on('exit', (code) => res(code)));
  const line = () => new Promise((res, rej) => {
    if (queued.length) return res(queued.shift());
    waiting.push(res);
    exited.then((code) => rej(new Error(`testservice exited (${code})`)));
  });
  const hello = JSON.parse(await line());
  let chain = Promise.resolve();
  const command = (cmd, withData) => {
    const p = chain.then(async () => {
      proc.stdin.write(cmd.replace(/\n/g, ' ') + '\n');
      const data = withData ? JSON.parse(await line()) : undefined;
      const status = withData && typeof data === 'string' ? data : await line();
      if (status !== 'ok') throw new Error(`testservice ${cmd}: ${status}`);
      return data;
    });
    chain = p.catch(() => {});
    return p;
  };
  return {
    ws: hello.ws,
    pg: hello.pg,
    sql: (stmt) => command('sql ' + stmt, false),
    query: (q) => command('query ' + q, true),
    stop: () => command('stop', false),
    start: () => command('start', false),
    close: async () => {
      proc.stdin.end();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
