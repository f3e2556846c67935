// Every write of the app. Each is a local SQLite write: instant, visible to
// every live query at once, online or offline; Lattice syncs it. Updates set
// only the columns that change (merge is per column: a concurrent edit of
// another column elsewhere is kept). Writes go through the typed helpers
// that `lattice generate` made (src/generated).
import type { Db } from './db';
import { tables } from '../generated';
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
async function lastOrder(db: Db, projectId: string, status: Status): Promise<string> {
  const rows = await db.query(`SELECT max(kanbanorder) AS k FROM issue WHERE project_id = ? AND status = ?`, [projectId, status]);
  return (rows[0]?.k as string | null) ?? 'a';
}

export async function createIssue(db: Db, input: IssueInput): Promise<string> {
  const id = crypto.randomUUID();
  const now = nowTs();
  await tables(db).issue.create({
    id,
    project_id: input.projectId,
    title: input.title,
    description: input.description,
    priority: input.priority,
    status: input.status,
    kanbanorder: between(await lastOrder(db, input.projectId, input.status), null),
    username: input.username,
    created: now,
    modified: now,
  });
  return id;
}

export type IssuePatch = Partial<{ title: string; description: string; priority: Priority; status: Status }>;

export async function updateIssue(db: Db, id: string, patch: IssuePatch): Promise<void> {
  await tables(db).issue.update({ where: { id }, data: { ...patch, modified: nowTs() } });
}

// changeStatus moves an issue to the end of another status column.
export async function changeStatus(db: Db, id: string, projectId: string, status: Status): Promise<void> {
  const kanbanorder = between(await lastOrder(db, projectId, status), null);
  await tables(db).issue.update({ where: { id }, data: { status, kanbanorder, modified: nowTs() } });
}

// moveCard puts an issue in column status between two neighbours' keys.
export async function moveCard(db: Db, id: string, status: Status, before: string | null, after: string | null): Promise<void> {
  const kanbanorder = between(before ?? '', after);
  await tables(db).issue.update({ where: { id }, data: { status, kanbanorder, modified: nowTs() } });
}

// moveToProject moves an issue to another project (its comments follow: they
// hang off the issue).
export async function moveToProject(db: Db, id: string, projectId: string, status: Status): Promise<void> {
  const kanbanorder = between(await lastOrder(db, projectId, status), null);
  await tables(db).issue.update({ where: { id }, data: { project_id: projectId, kanbanorder, modified: nowTs() } });
}

export async function deleteIssue(db: Db, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.exec(`DELETE FROM comment WHERE issue_id = ?`, [id]);
    await tx.exec(`DELETE FROM issue WHERE id = ?`, [id]);
  });
}

// addComment: project_id is the issue's project (Postgres keeps it so with a
// trigger; the comment policies read it).
export async function addComment(db: Db, issueId: string, projectId: string, body: string, username: string): Promise<string> {
  const id = crypto.randomUUID();
  await tables(db).comment.create({ id, issue_id: issueId, project_id: projectId, body, username, created: nowTs() });
  return id;
}

export async function deleteComment(db: Db, id: string): Promise<void> {
  await tables(db).comment.delete({ where: { id } });
}

// createProject creates a project and makes the user its first member, in
// one transaction (the policies let anyone create a project, and let a user
// join a project that has no member yet: without the membership the project
// would be invisible to its creator).
export async function createProject(db: Db, name: string, description: string, user: string): Promise<string> {
  const id = crypto.randomUUID();
  const now = nowTs();
  await db.transaction(async (tx) => {
    await tx.exec(`INSERT INTO project (id, name, description, created, modified) VALUES (?, ?, ?, ?, ?)`, [id, name, description, now, now]);
    await tx.exec(`INSERT INTO project_member (project_id, user_id) VALUES (?, ?)`, [id, user]);
  });
  return id;
}

// addMember adds a user to a project (allowed to its members). The row is
// the new member's: the policies let each user read only their own
// memberships, so it leaves this database once the service has it, and
// the project (with its issues) appears in the new member's app, live.
export async function addMember(db: Db, projectId: string, user: string): Promise<void> {
  await tables(db).projectMember.create({ project_id: projectId, user_id: user });
}

// ensureIndexes creates the local index the views need beyond the keys
// (SQLite only; Postgres has its own): comments by issue, for the comment
// counts of the list and the detail view. Safe to call again. The app calls
// it once a project is synced: in Chromium (IndexedDB VFS) every extra index
// slows the initial sync down a lot, more than it speeds the queries up
// (5,000 issues with three local indexes: 21 s instead of 1.1 s), so the
// lists sort without one.
export async function ensureIndexes(db: Db): Promise<void> {
  await db.exec(`CREATE INDEX IF NOT EXISTS comment_issue_created ON comment (issue_id, created)`, []);
}
