// A throwaway Postgres and a lattice service for browser tests (insecure,
// or verifying tokens signed with authSecret): `go run
// ./internal/testservice`, driven over its stdin.

import { spawn } from 'node:child_process';
import { writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { repoRoot } from './harness.js';

/**
 * startService({ setup, electrify, authSecret }) runs the setup SQL,
 * electrifies the tables and starts the service. Returns { ws, pg,
 * sql(stmt), query(select) → rows of text, token(sub, ttl) → a token signed
 * with authSecret (ttl a Go duration such as '3s'), stop(), start(), close() }.
 */
export async function startService({ setup = '', electrify = [], authSecret = '' } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lattice-svc-'));
  const setupFile = path.join(dir, 'setup.sql');
  writeFileSync(setupFile, setup);
  const args = ['run', './internal/testservice', '-setup', setupFile, '-electrify', electrify.join(',')];
  if (authSecret) args.push('-auth-secret', authSecret);
  const proc = spawn('go', args, {
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
      let data;
      let status;
      if (withData) {
        const l = await line();
        if (l.startsWith('error:')) status = l;
        else data = JSON.parse(l);
      }
      status ??= await line();
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
    token: async (sub, ttl) => (await command(`token ${sub} ${ttl}`, true)).token,
    stop: () => command('stop', false),
    start: () => command('start', false),
    close: async () => {
      proc.stdin.end();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
