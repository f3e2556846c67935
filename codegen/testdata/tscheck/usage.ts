// Type-level tests of the generated client (lattice/, the golden output of
// codegen's tests for testdata/schema.sql). `tsc --noEmit` must pass: every
// correct use compiles, and every line after a `@ts-expect-error` comment is
// an error (tsc reports an unused @ts-expect-error). codegen's
// TestTypeErrors also removes those comments and checks that each such line
// then fails on its own.
import { queries, schema, tables } from './lattice/index.js';
import type { Issue, IssueInsert, LatticeLike, Query, Row, SqlValue, Status } from './lattice/index.js';

// A database shaped like @latticesync/web's: generic rows and a value type
// narrower than unknown are fine (methods compare bivariantly).
type Value = null | number | bigint | string | Uint8Array | boolean | Date;
interface WebLikeDb {
  query<T = Record<string, Value>>(sql: string, params?: readonly Value[]): Promise<T[]>;
  exec(sql: string, params?: readonly Value[]): Promise<{ changes: number; lastInsertRowid: number | bigint }>;
  liveQuery<T = Record<string, Value>>(sql: string, params: readonly Value[], onRows: (rows: T[]) => void): () => void;
  close(): Promise<void>;
}
declare const web: WebLikeDb;
const fromWeb: LatticeLike = web;
export const t = tables(fromWeb);

export async function correct(): Promise<void> {
  const rows: Issue[] = await t.issue.findMany({
    where: {
      status: { in: ['open', 'doing'] },
      project_id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      parent_id: null,
      priority: { gte: 1, lt: 5 },
      views: { gt: 10n },
      done: false,
      title: { like: 'a%', ne: 'x' },
      budget: { lte: '10.50' },
      points: { isNull: false, notIn: [1, 2] },
      attachment: new Uint8Array([1]),
      updated_at: { gt: new Date(), lte: '2030-01-01 00:00:00Z' },
      due: new Date(),
      OR: [{ score: { gt: 0.5 } }, { weight: 'NaN' }, { AND: [{ code: 'c' }, { NOT: { flag: 'abc' } }] }],
    },
    orderBy: [{ priority: 'desc' }, { id: 'asc' }],
    limit: 10,
    offset: 5,
  });
  for (const r of rows) {
    const id: string = r.id; // bigint as decimal text
    const done: 0 | 1 = r.done;
    const status: Status = r.status;
    const score: number | 'NaN' | null = r.score;
    const attachment: Uint8Array | null = r.attachment;
    const weird: string | null = r['Weird "name" col'];
    void [id, done, status, score, attachment, weird];
  }
  const one = await t.issue.findUnique({ where: { id: '42' } });
  if (one !== null) {
    const title: string = one.title;
    void title;
  }
  const label = await t.label.findUnique({ where: { project_id: 'p', name: 'bug' } });
  void label;
  const first = await t.issue.findFirst({ orderBy: { views: 'desc' } });
  void first;
  const n: number = await t.issue.count({ where: { done: true } });
  void n;
  const minimal: IssueInsert = { id: 1, project_id: 'p' };
  await t.issue.create(minimal);
  await t.issue.create({
    id: 2n, project_id: 'p', title: 't', status: 'done', moods: JSON.stringify(['happy']), priority: 1,
    points: null, views: '9007199254740993', score: 'NaN', weight: 2.5, budget: 3.25, done: true,
    attachment: new Uint8Array([0, 255]), tags: '["a"]', doc: '{"k": 1}', 'Weird "name" col': 'w',
  });
  await t.project.create({ name: 'defaults fill id and created_at' });
  await t.app_userRole.create({ user_id: 'u', role: 'admin' });
  await t.issueLabel.create({ issue_id: '1', project_id: 'p', label_name: 'bug' });
  const res = await t.issue.update({ where: { id: 1 }, data: { title: 'new', points: null, done: 1 } });
  const changes: number = res.changes;
  void changes;
  await t.issue.delete({ where: { status: 'done' } });
  const stop: () => void = t.issue.liveMany({ where: { status: 'open' } }, (live: Issue[]) => void live, (e: Error) => void e);
  stop();
  const q: Query = queries.issue.findMany({ where: { title: 'x' }, limit: 1 });
  const sql: string = q.sql;
  const params: SqlValue[] = q.params;
  // What a hook like useLiveQuery(sql: string, params: readonly Value[]) takes.
  const asWebParams: readonly Value[] = q.params;
  void [sql, params, asWebParams];
  const cq: Query = queries.label.count({ where: { color: 'red' } });
  void cq;
  const raw: Row[] = await fromWeb.query('SELECT 1');
  void raw;
  // The schema object is JSON-compatible and literal-typed.
  const v: 1 = schema.version;
  const firstTable: 'user_role' = schema.tables[0].name;
  void [v, firstTable, JSON.stringify(schema)];
}

export async function wrong(): Promise<void> {
  // @ts-expect-error unknown column in where
  await t.issue.findMany({ where: { titel: 'x' } });
  // @ts-expect-error wrong value type in where (priority is a number)
  await t.issue.findMany({ where: { priority: 'high' } });
  // @ts-expect-error not a label of enum status
  await t.issue.findMany({ where: { status: 'closed' } });
  // @ts-expect-error like only on text columns
  await t.issue.findMany({ where: { priority: { like: '1%' } } });
  // @ts-expect-error unknown operator
  await t.issue.findMany({ where: { priority: { between: [1, 2] } } });
  // @ts-expect-error in takes a list of the column's values
  await t.issue.findMany({ where: { status: { in: ['open', 3] } } });
  // @ts-expect-error unknown column in nested OR
  await t.issue.findMany({ where: { OR: [{ nope: 1 }] } });
  // @ts-expect-error unknown column in orderBy
  await t.issue.findMany({ orderBy: { nope: 'asc' } });
  // @ts-expect-error bad sort direction
  await t.issue.findMany({ orderBy: { id: 'up' } });
  // @ts-expect-error limit is a number
  await t.issue.findMany({ limit: '10' });
  // @ts-expect-error create without a required column (project_id)
  await t.issue.create({ id: 1 });
  // @ts-expect-error create with an unknown column
  await t.issue.create({ id: 1, project_id: 'p', nope: 1 });
  // @ts-expect-error create with a wrong value type (title is text)
  await t.issue.create({ id: 1, project_id: 'p', title: 5 });
  // @ts-expect-error null in a NOT NULL column
  await t.issue.create({ id: 1, project_id: 'p', title: null });
  // @ts-expect-error Dates only for date and timestamp columns
  await t.issue.findMany({ where: { title: new Date() } });
  // @ts-expect-error bytea takes a Uint8Array
  await t.issue.create({ id: 1, project_id: 'p', attachment: 'x' });
  // @ts-expect-error the primary key cannot be updated
  await t.issue.update({ where: { id: 1 }, data: { id: 2 } });
  // @ts-expect-error update of an unknown column
  await t.issue.update({ where: { id: 1 }, data: { nope: 2 } });
  // @ts-expect-error update without where
  await t.issue.update({ data: { title: 'x' } });
  // @ts-expect-error a table whose columns are all key columns has nothing to update
  await t.issueLabel.update({ where: {}, data: { label_name: 'x' } });
  // @ts-expect-error findUnique needs the whole primary key
  await t.label.findUnique({ where: { name: 'bug' } });
  // @ts-expect-error findUnique takes only key columns
  await t.issue.findUnique({ where: { title: 'x' } });
  // @ts-expect-error delete needs a where
  await t.issue.delete({});
  // @ts-expect-error unknown table
  await t.issues.findMany();
  // @ts-expect-error tables outside public are named <schema>_<table>
  await t.userRole.findMany();
  // @ts-expect-error app.role has no label 'owner'
  await t.app_userRole.create({ user_id: 'u', role: 'owner' });
  const rows = await t.issue.findMany();
  // @ts-expect-error rows have no such column
  void rows[0]?.titel;
  // @ts-expect-error bigint is decimal text in rows, not a number
  const views: number | undefined = rows[0]?.views;
  // @ts-expect-error booleans are 0 | 1 in rows
  const done: boolean | undefined = rows[0]?.done;
  // @ts-expect-error liveMany's callback gets issue rows
  t.issue.liveMany({}, (r: { nope: string }[]) => void r);
  // @ts-expect-error a database without liveQuery is not a LatticeLike
  tables({ query: web.query, exec: web.exec });
  void [views, done];
}
