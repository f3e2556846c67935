// Runtime check of the generated helpers (run by codegen's TestRuntime):
// node dist/runtime_check.js REPLICA.db
//
// REPLICA.db is a real client replica of testdata/schema.sql's tables with
// the rows TestRuntime put in Postgres, kept in sync by a running Go client.
// This script opens it with better-sqlite3 behind an adapter with the
// LatticeLike shape (values as the web package's worker returns them:
// INTEGER as number within ±2^53, bigint beyond), checks that rows hold what
// the generated types say, that the compiled SQL selects what it should,
// then writes through the helpers (captured by the replica's triggers and
// synced to Postgres, which TestRuntime checks). It prints a JSON summary.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { queries, schema, tables } from './lattice/index.js';
import type { ExecResult, Issue, LatticeLike, Row, SqlValue } from './lattice/index.js';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: runtime_check.js REPLICA.db');
const sqlite = new Database(path);
sqlite.defaultSafeIntegers(true);
sqlite.pragma('busy_timeout = 10000');

function bind(params: readonly SqlValue[] = []): unknown[] {
  return params.map((v) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
}

function fromDb(row: Record<string, unknown>): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    const safe = typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
    out[k] = safe ? Number(v) : v;
  }
  return out;
}

// Live queries re-run after every write made through this adapter: enough
// to check that liveMany wires rows through; the real invalidation is the
// client's business.
const lives = new Set<() => void>();
const db: LatticeLike = {
  async query(sql, params) {
    return (sqlite.prepare(sql).all(...bind(params)) as Record<string, unknown>[]).map(fromDb);
  },
  async exec(sql, params): Promise<ExecResult> {
    const r = sqlite.prepare(sql).run(...bind(params));
    for (const l of lives) l();
    return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
  },
  liveQuery(sql, params, onRows, onError) {
    const run = () => {
      try {
        onRows((sqlite.prepare(sql).all(...bind(params)) as Record<string, unknown>[]).map(fromDb));
      } catch (e) {
        onError?.(e as Error);
      }
    };
    lives.add(run);
    run();
    return () => lives.delete(run);
  },
};

const t = tables(db);
const P1 = '11111111-1111-4111-8111-111111111111';
const P2 = '22222222-2222-4222-8222-222222222222';
const BIG = '9007199254740993'; // 2^53 + 1: not a JS number

// 1. Every row of every table holds what the generated types say, checked
// from the schema object (independently of the TypeScript types).
function checkValue(table: string, col: (typeof schema.tables)[number]['columns'][number], v: unknown): void {
  const where = `${table}.${col.name} = ${String(v)}`;
  if (v === null) {
    assert.equal(col.notNull, false, `NULL in NOT NULL ${where}`);
    return;
  }
  if (col.array) {
    assert.equal(typeof v, 'string', where);
    assert.ok(Array.isArray(JSON.parse(v as string)), `not a JSON array: ${where}`);
    return;
  }
  switch (col.type) {
    case 'bigint':
      assert.ok(typeof v === 'string' && /^-?\d+$/.test(v), `bigint not decimal text: ${where}`);
      break;
    case 'smallint':
    case 'integer':
      assert.ok(Number.isInteger(v), where);
      break;
    case 'real':
    case 'double precision':
      assert.ok(typeof v === 'number' || v === 'NaN', where);
      break;
    case 'boolean':
      assert.ok(v === 0 || v === 1, where);
      break;
    case 'bytea':
      assert.ok(v instanceof Uint8Array, where);
      break;
    default:
      assert.equal(typeof v, 'string', where);
  }
}

let checkedValues = 0;
const helpers = t as unknown as Record<string, { findMany(): Promise<Row[]> }>;
const keys = ['app_userRole', 'project', 'issue', 'label', 'issueLabel'];
for (const [i, st] of schema.tables.entries()) {
  const rows = await helpers[keys[i]!]!.findMany();
  assert.ok(rows.length > 0, `no rows in ${st.name}`);
  for (const row of rows) {
    assert.deepEqual(Object.keys(row), st.columns.map((c) => c.name), `columns of ${st.name}`);
    for (const c of st.columns) {
      checkValue(st.name, c, row[c.name]);
      checkedValues++;
    }
  }
}

// 2. The values of one full row, as documented.
const first = await t.issue.findUnique({ where: { id: BIG } });
assert.ok(first !== null);
assert.equal(first.id, BIG);
assert.equal(first.views, '9223372036854775807');
assert.equal(first.project_id, P1);
assert.equal(first.status, 'open');
assert.equal(first.moods, '["happy","it\'s \\"fine\\""]');
assert.equal(first.score, 'NaN');
assert.equal(first.weight, 1e100);
assert.equal(first.budget, '12.50');
assert.equal(first.done, 1);
assert.equal(first.flag, 'ab ');
assert.equal(first.due, '2024-02-29');
assert.equal(first.at_time, '13:14:15.123456');
assert.equal(first.local_ts, '2024-01-02 03:04:05.5');
assert.equal(first.updated_at, '2024-01-02 03:04:05.5Z');
assert.equal(first.estimate, 'P1Y2M3DT4H5M6.5S');
assert.equal(first.meta, '{"a" : 1}');
assert.equal(first.doc, '{"b": [true, null]}');
assert.deepEqual([...first.attachment!], [0, 255]);
assert.equal(first.tags, '["x","y"]');
assert.equal(first.counts, '[1,null,3]');
assert.equal(first.flags, '[true,false]');
assert.equal(first['Weird "name" col'], 'weird');

// 3. Where clauses, order, limit and offset.
const ids = (rows: Issue[]) => rows.map((r) => r.id);
const byId = { orderBy: { id: 'asc' } } as const;
assert.deepEqual(ids(await t.issue.findMany(byId)), ['2', '3', BIG]); // numeric order, not text
assert.deepEqual(ids(await t.issue.findMany({ where: { status: { in: ['open', 'doing'] } }, ...byId })), ['2', BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { status: { in: [] } } })), []);
assert.deepEqual(ids(await t.issue.findMany({ where: { points: { ne: 10 } }, ...byId })), ['2', '3']); // NULL is not 10
assert.deepEqual(ids(await t.issue.findMany({ where: { points: { notIn: [7] } }, ...byId })), ['2', BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { points: null } })), ['2']);
assert.deepEqual(ids(await t.issue.findMany({ where: { points: { isNull: false, gte: 7, lt: 10 } } })), ['3']);
assert.deepEqual(ids(await t.issue.findMany({ where: { views: { gt: '4' } }, ...byId })), ['2', BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { views: { gte: 9223372036854775807n } } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { parent_id: BIG } })), ['2']);
assert.deepEqual(ids(await t.issue.findMany({ where: { parent_id: 9007199254740993n } })), ['2']);
assert.deepEqual(ids(await t.issue.findMany({ where: { title: { like: 'first%' } } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { title: "third 'quoted' %" } })), ['3']);
assert.deepEqual(ids(await t.issue.findMany({ where: { title: "x' OR 1=1 --" } })), []);
assert.deepEqual(ids(await t.issue.findMany({ where: { done: true } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { done: false }, ...byId })), ['2', '3']);
assert.deepEqual(ids(await t.issue.findMany({ where: { attachment: new Uint8Array([0, 255]) } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { budget: '12.50' } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { score: 'NaN' } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { 'Weird "name" col': 'weird' } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { OR: [{ priority: 1 }, { status: 'done' }] }, ...byId })), ['3', BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { NOT: { status: 'open' } }, ...byId })), ['2', '3']);
assert.deepEqual(ids(await t.issue.findMany({ where: { AND: [{ done: false }, { priority: { gte: 3 } }] } })), ['2']);
assert.deepEqual(ids(await t.issue.findMany({ where: { OR: [] } })), []);
assert.deepEqual(ids(await t.issue.findMany({ orderBy: [{ priority: 'desc' }, { id: 'asc' }] })), ['2', '3', BIG]);
assert.deepEqual(ids(await t.issue.findMany({ ...byId, limit: 1, offset: 1 })), ['3']);
assert.deepEqual(ids(await t.issue.findMany({ ...byId, offset: 1 })), ['3', BIG]);
assert.equal((await t.issue.findFirst({ orderBy: { views: 'desc' } }))?.id, BIG);
assert.equal(await t.issue.count({ where: { project_id: P1 } }), 2);
assert.equal(await t.issue.count(), 3);
assert.equal((await t.issue.findUnique({ where: { id: 2 } }))?.title, 'Second');
assert.equal((await t.issue.findUnique({ where: { id: 2n } }))?.title, 'Second');
assert.equal(await t.issue.findUnique({ where: { id: 404 } }), null);
assert.equal((await t.label.findUnique({ where: { project_id: P1, name: 'ui' } }))?.color, 'gray');
assert.deepEqual((await t.issueLabel.findMany({ where: { issue_id: BIG } })).map((r) => r.label_name), ['bug']);
const admins = await t.app_userRole.findMany({ where: { role: 'admin' } });
assert.deepEqual(admins.map((r) => [r.user_id, r.roles]), [['u1', '["admin","member"]']]);
await assert.rejects(t.issue.findMany({ where: { nope: 1 } as never }), /has no column "nope"/);

// timestamptz: Postgres trims fractions ('...05Z', '...05.12Z', '...05.123Z'),
// which sort wrong byte-wise; the helpers order and compare without the Z.
const names = async (args: Parameters<typeof t.project.findMany>[0]) => (await t.project.findMany(args)).map((r) => r.name);
assert.deepEqual(await names({ orderBy: { created_at: 'asc' } }), ['gamma', 'epsilon', 'delta', 'alpha', 'beta']);
assert.deepEqual(await names({ orderBy: { created_at: 'desc' }, limit: 2, offset: 2 }), ['delta', 'epsilon']);
assert.deepEqual(await names({ where: { created_at: { gt: '2024-01-02 03:04:05.12Z', lt: '2024-01-02 03:04:05.5Z' } } }), ['delta']);
// Dates bind as the stored text (UTC, fractions trimmed), so equality works.
assert.deepEqual(await names({ where: { created_at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 500)) } }), ['alpha']);
assert.deepEqual(await names({ where: { created_at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) } }), ['gamma']);
assert.deepEqual(
  await names({ where: { created_at: { gte: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 120)), lte: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 123)) } }, orderBy: { created_at: 'asc' } }),
  ['epsilon', 'delta'],
);
assert.deepEqual(ids(await t.issue.findMany({ where: { due: new Date(Date.UTC(2024, 1, 29)) } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { local_ts: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 500)) } })), [BIG]);
assert.deepEqual(ids(await t.issue.findMany({ where: { updated_at: { in: [new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 500))] } } })), [BIG]);

// The compiled SQL: quoted identifiers, values only as parameters.
const q = queries.issue.findMany({ where: { title: "it's", priority: { in: [1, 2] } }, orderBy: { id: 'desc' }, limit: 5 });
assert.match(q.sql, /^SELECT CAST\("issue"\."id" AS TEXT\) AS "id", "issue"\."project_id", /);
assert.ok(
  q.sql.endsWith(' FROM "issue" WHERE "issue"."title" = ? AND "issue"."priority" IN (?, ?) ORDER BY "issue"."id" DESC LIMIT ?'),
  q.sql,
);
assert.deepEqual(q.params, ["it's", 1, 2, 5]);
assert.deepEqual(queries.label.count({ where: { color: 'red' } }), {
  sql: 'SELECT count(*) AS "count" FROM "label" WHERE "label"."color" = ?',
  params: ['red'],
});
assert.match(queries.app_userRole.findMany().sql, /FROM "app\.user_role"$/);

// 4. Writes through the helpers: local first, captured by the replica's
// triggers, synced to Postgres by the running client.
const seen: string[][] = [];
const stop = t.issue.liveMany({ where: { done: true }, ...byId }, (rows) => seen.push(ids(rows)));
assert.deepEqual(seen, [[BIG]]);

const created = await t.project.create({ name: 'from node' });
assert.equal(created.changes, 1);
const project = (await t.project.findMany({ where: { name: 'from node' } }))[0];
assert.ok(project !== undefined);
assert.match(project.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/); // local default
assert.match(project.created_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);

const NEW = '9007199254740995';
await t.issue.create({
  id: NEW, project_id: project.id, title: 'created in node', status: 'doing', done: true,
  views: 1234567890123456789n, budget: '3.14', attachment: new Uint8Array([1, 2, 3]),
  tags: JSON.stringify(['n']), counts: JSON.stringify([4, 5]), score: 0.25,
  updated_at: new Date(Date.UTC(2025, 5, 7, 8, 9, 10, 250)),
});
const made = await t.issue.findUnique({ where: { id: NEW } });
assert.ok(made !== null);
assert.equal(made.done, 1);
assert.equal(made.views, '1234567890123456789');
assert.equal(made.priority, 2); // local default
assert.equal(made.doc, '{}');
assert.deepEqual([...made.attachment!], [1, 2, 3]);
assert.equal(made.updated_at, '2025-06-07 08:09:10.25Z');
assert.deepEqual(seen.at(-1), [BIG, NEW]);

const upd = await t.issue.update({ where: { id: 2 }, data: { title: 'updated in node', points: 42, done: true } });
assert.equal(upd.changes, 1);
assert.deepEqual(seen.at(-1), ['2', BIG, NEW]);
await assert.rejects(t.issue.update({ where: { id: 2 }, data: { id: 5 } as never }), /primary key of issue cannot be updated/);
const del = await t.issueLabel.delete({ where: { issue_id: 2, project_id: P1, label_name: 'ui' } });
assert.equal(del.changes, 1);
await t.app_userRole.update({ where: { user_id: 'u2' }, data: { role: 'admin', roles: JSON.stringify(['admin']) } });
stop();
const before = seen.length;
await t.issue.update({ where: { id: NEW }, data: { done: false } });
assert.equal(seen.length, before); // unsubscribed

await t.issue.create({ id: 4, project_id: P2, title: 'deleted again' });
assert.equal((await t.issue.delete({ where: { title: 'deleted again' } })).changes, 1);

sqlite.close();
console.log(JSON.stringify({ projectId: project.id, checkedValues }));
