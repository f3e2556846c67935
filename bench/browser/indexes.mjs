// Initial sync with and without local indexes (issue 19), in headless
// Chromium against a real lattice service and Postgres: the example app's
// shape of data (5,000 issues of one project with random uuid keys, 20,000
// comments), synced into a fresh IndexedDB database per variant. A variant
// first syncs an empty shape of each table (which creates the local
// tables), then runs its setup statements (the indexes, pragmas), then
// syncs the issues and the comments and times that.
//
//   ./build.sh build && node bench/browser/indexes.mjs [--issues 5000] [--comments 20000] [--rounds 1]
//        [--variants none,indexes]
//
// Prints a Markdown table; record it in BENCHMARKS.md.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { launch, serve, repoRoot } from '../../browsertest/lib/harness.js';
import { startService } from '../../browsertest/lib/service.js';

const { values: opt } = parseArgs({
  options: {
    issues: { type: 'string', default: '5000' },
    comments: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '1' },
    variants: { type: 'string', default: 'none,indexes' },
  },
});
const issues = Number(opt.issues);
const comments = Number(opt.comments);

// The example app's three local indexes (issue lists by project, kanban
// order, comments by issue).
const INDEXES = [
  'CREATE INDEX issue_project_modified ON issue (project_id, modified)',
  'CREATE INDEX issue_project_status ON issue (project_id, status, kanban_order)',
  'CREATE INDEX comment_issue_created ON comment (issue_id, created)',
];
const VARIANTS = {
  none: [],
  indexes: INDEXES,
  // The indexes with a 64 MiB SQLite page cache instead of the default 2 MiB.
  'indexes-cache64m': ['PRAGMA cache_size = -65536', ...INDEXES],
};

const setup = `
CREATE TABLE project (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE issue (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  project_id uuid NOT NULL REFERENCES project(id),
  title text NOT NULL,
  description text NOT NULL,
  status text NOT NULL,
  priority integer NOT NULL,
  kanban_order double precision NOT NULL,
  modified timestamptz NOT NULL,
  created timestamptz NOT NULL
);
CREATE TABLE comment (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  issue_id uuid NOT NULL REFERENCES issue(id),
  body text NOT NULL,
  author text NOT NULL,
  created timestamptz NOT NULL
);
INSERT INTO project VALUES ('00000000-0000-0000-0000-000000000001', 'Lattice');
INSERT INTO issue (project_id, title, description, status, priority, kanban_order, modified, created)
SELECT '00000000-0000-0000-0000-000000000001', 'Issue ' || i || ' ' || md5(i::text), repeat(md5((i * 3)::text), 3),
  (ARRAY['backlog','todo','in_progress','done','canceled'])[1 + i % 5], i % 5, random(),
  now() - random() * interval '365 days', now() - random() * interval '365 days'
FROM generate_series(1, ${issues}) i;
INSERT INTO comment (issue_id, body, author, created)
SELECT (SELECT id FROM issue ORDER BY id OFFSET (c * 7919) % ${issues} LIMIT 1), 'Comment ' || c || ' ' || repeat(md5(c::text), 2),
  'user' || (c % 20), now() - random() * interval '365 days'
FROM generate_series(1, ${comments}) c;
`;

const svc = await startService({ setup, electrify: ['project', 'issue', 'comment'] });
const server = await serve({ '/': path.join(repoRoot, 'browsertest/test/worker'), '/dist/': path.join(repoRoot, 'web/dist') });
const b = await launch();

async function run(name, stmts, round) {
  const page = await b.newPage();
  await page.goto(server.url + 'index.html');
  await page.waitForFunction(() => window.ready);
  const r = await page.evaluate(
    async ([ws, dbName, stmts, issues, comments]) => {
      const call = async (op, args) => {
        const r = await window.call(op, args);
        if (!r.ok) throw new Error(`${op}: ${JSON.stringify(r.error)}`);
        return r.result;
      };
      await window.connect('dedicated');
      await call('open', { config: { url: ws, dbName } });
      const none = '00000000-0000-0000-0000-000000000000';
      await call('sync', { shape: { table: 'issue', where: 'project_id = $1', params: [none] } });
      await call('sync', { shape: { table: 'comment', where: 'issue_id = $1', params: [none] } });
      for (const sql of stmts) await call('exec', { sql });
      const t0 = performance.now();
      await call('sync', { shape: { table: 'issue' } });
      const t1 = performance.now();
      await call('sync', { shape: { table: 'comment' } });
      const t2 = performance.now();
      const n = (await call('query', { sql: 'SELECT (SELECT count(*) FROM issue) AS i, (SELECT count(*) FROM comment) AS c' })).rows[0];
      if (n.i !== issues || n.c !== comments) throw new Error(`synced ${n.i} issues and ${n.c} comments`);
      return { issues: t1 - t0, comments: t2 - t1, total: t2 - t0 };
    },
    [svc.ws, `idx-${name}-${round}`, stmts, issues, comments],
  );
  await page.close();
  await new Promise((res) => setTimeout(res, 500));
  return r;
}

const results = [];
try {
  for (let round = 0; round < Number(opt.rounds); round++) {
    for (const name of opt.variants.split(',')) {
      const r = await run(name, VARIANTS[name], round);
      results.push({ name, round, ...r });
      console.error(`${name} round ${round}: issues ${r.issues.toFixed(0)} ms, comments ${r.comments.toFixed(0)} ms`);
    }
  }
} finally {
  await b.close();
  await server.close();
  await svc.close();
}
const rows = issues + comments;
console.log(`| variant | round | ${issues} issues | ${comments} comments | total | rows/s |\n|---|---|---|---|---|---|`);
for (const r of results) {
  console.log(`| ${r.name} | ${r.round} | ${r.issues.toFixed(0)} ms | ${r.comments.toFixed(0)} ms | ${r.total.toFixed(0)} ms | ${Math.round(rows / (r.total / 1000))} |`);
}
