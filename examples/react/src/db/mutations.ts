// Every write of the app. Each is a local SQLite write: instant, visible to
// every live query at once, online or offline; Lattice syncs it. Updates set
// only the columns that change (merge is per column: a concurrent edit of
// another column elsewhere is kept).
import type { Db } from './db';
import { between } from '../lib/order';
import { nowTs } from '../lib/time';
import type { Priority, Status } from './model';

export type IssueInput = {
  projectId: string;
  title: string;
  description: string;
  priority: Priority;
  status: Status;
  username: string;
};

// lastOrder is the kanban key after which a new card of status goes.
async function lastOrder(db: Db, projectId: string, status: string): Promise<string> {
  const rows = await db.query(`SELECT max(kanbanorder) AS k FROM issue WHERE project_id = ? AND status = ?`, [projectId, status]);
  return (rows[0]?.k as string | null) ?? 'a';
}

export async function createIssue(db: Db, input: IssueInput): Promise<string> {
  const id = crypto.randomUUID();
  const now = nowTs();
  const order = between(await lastOrder(db, input.projectId, input.status), null);
  await db.exec(
    `INSERT INTO issue (id, project_id, title, description, priority, status, kanbanorder, username, created, modified)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [id, input.projectId, input.title, input.description, input.priority, input.status, order, input.username, now, now],
  );
  return id;
}

export type IssuePatch = Partial<{ title: string; description: string; priority: Priority; status: Status }>;

const EDITABLE = ['title', 'description', 'priority', 'status'] as const;

export async function updateIssue(db: Db, id: string, patch: IssuePatch): Promise<void> {
  const cols = EDITABLE.filter((c) => patch[c] !== undefined);
  if (cols.length === 0) return;
  const sets = cols.map((c) => `${c} = ?`).join(', ');
  await db.exec(`UPDATE issue SET ${sets}, modified = ? WHERE id = ?`, [...cols.map((c) => patch[c]!), nowTs(), id]);
}

// changeStatus moves an issue to the end of another status column.
export async function changeStatus(db: Db, id: string, projectId: string, status: Status): Promise<void> {
  const order = between(await lastOrder(db, projectId, status), null);
  await db.exec(`UPDATE issue SET status = ?, kanbanorder = ?, modified = ? WHERE id = ?`, [status, order, nowTs(), id]);
}

// moveCard puts an issue in column status between two neighbours' keys.
export async function moveCard(db: Db, id: string, status: Status, before: string | null, after: string | null): Promise<void> {
  const order = between(before ?? '', after);
  await db.exec(`UPDATE issue SET status = ?, kanbanorder = ?, modified = ? WHERE id = ?`, [status, order, nowTs(), id]);
}

// moveToProject moves an issue (its comments follow it: they hang off the issue).
export async function moveToProject(db: Db, id: string, projectId: string, status: string): Promise<void> {
  const order = between(await lastOrder(db, projectId, status), null);
  await db.exec(`UPDATE issue SET project_id = ?, kanbanorder = ?, modified = ? WHERE id = ?`, [projectId, order, nowTs(), id]);
}

export async function deleteIssue(db: Db, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.exec(`DELETE FROM comment WHERE issue_id = ?`, [id]);
    await tx.exec(`DELETE FROM issue WHERE id = ?`, [id]);
  });
}

export async function addComment(db: Db, issueId: string, body: string, username: string): Promise<string> {
  const id = crypto.randomUUID();
  await db.exec(`INSERT INTO comment (id, issue_id, body, username, created) VALUES (?, ?, ?, ?, ?)`, [
    id,
    issueId,
    body,
    username,
    nowTs(),
  ]);
  return id;
}

export async function deleteComment(db: Db, id: string): Promise<void> {
  await db.exec(`DELETE FROM comment WHERE id = ?`, [id]);
}

export async function createProject(db: Db, name: string, description: string): Promise<string> {
  const id = crypto.randomUUID();
  const now = nowTs();
  await db.exec(`INSERT INTO project (id, name, description, created, modified) VALUES (?, ?, ?, ?, ?)`, [
    id,
    name,
    description,
    now,
    now,
  ]);
  return id;
}

// ensureIndexes creates the local indexes the views need (SQLite only; the
// Postgres schema has its own). Safe to call again.
export async function ensureIndexes(db: Db): Promise<void> {
  for (const sql of [
    `CREATE INDEX IF NOT EXISTS issue_project_modified ON issue (project_id, modified)`,
    `CREATE INDEX IF NOT EXISTS issue_project_status_order ON issue (project_id, status, kanbanorder)`,
    `CREATE INDEX IF NOT EXISTS comment_issue_created ON comment (issue_id, created)`,
  ]) {
    await db.exec(sql, []);
  }
}
