import { useState } from 'react';
import { useLattice } from '@latticesync/web/react';
import { href, navigate, onLinkClick } from '../lib/router';
import { useRow, useRows } from '../db/hooks';
import { addComment, changeStatus, deleteComment, deleteIssue, moveToProject, updateIssue } from '../db/mutations';
import { PRIORITIES, PRIORITY_LABEL, STATUSES, STATUS_LABEL, type Comment, type Issue, type Priority, type Project, type Status } from '../db/model';
import { ago } from '../lib/time';
import { schema } from '../generated';
import { Avatar, EditableText, ErrorNote, PriorityIcon, StatusIcon } from './ui';

// The columns this build of the app was generated for (lattice generate).
// Columns a later migration adds reach the local database without a new
// build; the detail view lists them as extra fields.
const KNOWN_ISSUE_COLUMNS = new Set<string>(schema.tables.find((t) => t.name === 'issue')?.columns.map((c) => c.name) ?? []);

function ExtraFields({ row }: { row: object }) {
  const extra = Object.entries(row).filter(([k]) => !KNOWN_ISSUE_COLUMNS.has(k));
  if (extra.length === 0) return null;
  return (
    <div className="facts extra-fields" data-testid="extra-fields">
      {extra.map(([name, value]) => (
        <div key={name} data-testid="extra-field" data-name={name}>
          <span className="muted">{name}</span> <b data-testid="extra-value">{value === null ? '—' : String(value)}</b>
        </div>
      ))}
    </div>
  );
}

export function IssueDetail({ projectId, issueId, user }: { projectId: string; issueId: string; user: string }) {
  const db = useLattice();
  const { row: issue, loading, error } = useRow<Issue>(`SELECT * FROM issue WHERE id = ?`, [issueId]);
  const { rows: comments } = useRows<Comment>(`SELECT * FROM comment WHERE issue_id = ? ORDER BY created, id`, [issueId]);
  const { rows: projects } = useRows<Pick<Project, 'id' | 'name'>>(`SELECT id, name FROM project ORDER BY name, id`);
  const [writeError, setWriteError] = useState<unknown>(null);
  const [body, setBody] = useState('');
  const back = { name: 'issues', projectId } as const;

  const run = (p: Promise<unknown>) => {
    setWriteError(null);
    p.catch(setWriteError);
  };

  if (!issue) {
    return (
      <div className="page detail">
        <ErrorNote error={error} />
        {!loading && (
          <div className="gone" data-testid="issue-gone">
            This issue does not exist (anymore). <a href={href(back)} onClick={onLinkClick(back)}>Back to the list</a>
          </div>
        )}
      </div>
    );
  }
  return (
    <div className="page detail" data-testid="issue-detail" data-id={issue.id}>
      <div className="detail-main">
        <a className="back muted" href={href(back)} onClick={onLinkClick(back)}>
          ← All issues
        </a>
        <EditableText className="detail-title" value={issue.title} testId="detail-title" onSave={(title) => run(updateIssue(db, issue.id, { title }))} />
        <EditableText
          className="detail-desc"
          multiline
          placeholder="Add a description…"
          value={issue.description}
          testId="detail-description"
          onSave={(description) => run(updateIssue(db, issue.id, { description }))}
        />
        <ErrorNote error={writeError} />
        <h3>
          Comments <span className="muted">{comments.length}</span>
        </h3>
        <div className="comments" data-testid="comments">
          {comments.map((c) => (
            <div className="comment" key={c.id} data-testid="comment">
              <div className="comment-head">
                <Avatar name={c.username} /> <b>{c.username}</b> <span className="muted">{ago(c.created)}</span>
                <div className="spacer" />
                {c.username === user && (
                  <button className="ghost" title="Delete comment" onClick={() => run(deleteComment(db, c.id))}>
                    ×
                  </button>
                )}
              </div>
              <div className="comment-body">{c.body}</div>
            </div>
          ))}
        </div>
        <form
          className="comment-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (!body.trim()) return;
            run(addComment(db, issue.id, issue.project_id, body.trim(), user));
            setBody('');
          }}
        >
          <textarea placeholder="Leave a comment…" value={body} onChange={(e) => setBody(e.target.value)} rows={3} data-testid="comment-input" />
          <button className="primary" type="submit" disabled={!body.trim()} data-testid="comment-submit">
            Comment
          </button>
        </form>
      </div>
      <aside className="detail-side">
        <label>
          Status
          <div className="with-icon">
            <StatusIcon status={issue.status} />
            <select value={issue.status} onChange={(e) => run(changeStatus(db, issue.id, projectId, e.target.value as Status))} data-testid="detail-status">
              {STATUSES.map((s) => (
                <option key={s} value={s}>
                  {STATUS_LABEL[s]}
                </option>
              ))}
            </select>
          </div>
        </label>
        <label>
          Priority
          <div className="with-icon">
            <PriorityIcon priority={issue.priority} />
            <select value={issue.priority} onChange={(e) => run(updateIssue(db, issue.id, { priority: e.target.value as Priority }))} data-testid="detail-priority">
              {PRIORITIES.map((p) => (
                <option key={p} value={p}>
                  {PRIORITY_LABEL[p]}
                </option>
              ))}
            </select>
          </div>
        </label>
        <label>
          Project
          <select
            value={issue.project_id}
            data-testid="detail-project"
            onChange={(e) => {
              const to = e.target.value;
              run(moveToProject(db, issue.id, to, issue.status).then(() => navigate({ name: 'issues', projectId: to })));
            }}
          >
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <div className="facts muted">
          <div>
            Opened by <b>{issue.username}</b> {ago(issue.created)}
          </div>
          <div>Updated {ago(issue.modified)}</div>
        </div>
        <ExtraFields row={issue} />
        <button
          className="danger"
          data-testid="detail-delete"
          onClick={() => {
            if (!confirm('Delete this issue and its comments?')) return;
            run(deleteIssue(db, issue.id).then(() => navigate(back)));
          }}
        >
          Delete issue
        </button>
      </aside>
    </div>
  );
}
