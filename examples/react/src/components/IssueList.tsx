import { useMemo, useState } from 'react';
import { href, onLinkClick } from '../lib/router';
import { VirtualList } from '../lib/VirtualList';
import { useRows } from '../db/hooks';
import { PRIORITIES, PRIORITY_LABEL, PRIORITY_RANK, STATUSES, STATUS_LABEL, STATUS_RANK, type Issue, type Status } from '../db/model';
import { ago } from '../lib/time';
import { NewIssue } from './NewIssue';
import { Avatar, CommentIcon, ErrorNote, PriorityIcon, StatusIcon } from './ui';

type Row = Pick<Issue, 'id' | 'title' | 'priority' | 'status' | 'username' | 'modified' | 'created'> & { comments: number };

const SORTS = {
  modified: { label: 'Last updated', sql: 'i.modified DESC, i.id' },
  created: { label: 'Newest', sql: 'i.created DESC, i.id' },
  priority: { label: 'Priority', sql: `${PRIORITY_RANK}, i.modified DESC, i.id` },
  status: { label: 'Status', sql: `${STATUS_RANK}, i.modified DESC, i.id` },
  title: { label: 'Title', sql: 'i.title COLLATE NOCASE, i.id' },
} as const;
type Sort = keyof typeof SORTS;

export type Filters = { status: string; priority: string; search: string; sort: Sort };

const ROW_HEIGHT = 44;

export function IssueList({ projectId, user }: { projectId: string; user: string }) {
  const [f, setF] = useState<Filters>({ status: '', priority: '', search: '', sort: 'modified' });
  const [creating, setCreating] = useState(false);
  const [sql, params] = useMemo(() => {
    const where = ['i.project_id = ?'];
    const params: unknown[] = [projectId];
    if (f.status) {
      where.push('i.status = ?');
      params.push(f.status);
    }
    if (f.priority) {
      where.push('i.priority = ?');
      params.push(f.priority);
    }
    if (f.search.trim()) {
      where.push(`i.title LIKE ? ESCAPE '\\'`);
      params.push(`%${f.search.trim().replace(/[\\%_]/g, (c) => '\\' + c)}%`);
    }
    // Comment counts in one pass over the comments (fast with or without
    // the local index on comment.issue_id).
    const sql = `SELECT i.id, i.title, i.priority, i.status, i.username, i.modified, i.created,
        coalesce(c.n, 0) AS comments
      FROM issue i LEFT JOIN (SELECT issue_id, count(*) AS n FROM comment GROUP BY issue_id) c ON c.issue_id = i.id
      WHERE ${where.join(' AND ')} ORDER BY ${SORTS[f.sort].sql}`;
    return [sql, params];
  }, [projectId, f]);
  const { rows, error } = useRows<Row>(sql, params);

  return (
    <div className="page issues">
      <div className="toolbar">
        <input
          className="search"
          type="search"
          placeholder="Search titles…"
          value={f.search}
          onChange={(e) => setF({ ...f, search: e.target.value })}
          data-testid="filter-search"
        />
        <select value={f.status} onChange={(e) => setF({ ...f, status: e.target.value })} data-testid="filter-status">
          <option value="">All statuses</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {STATUS_LABEL[s]}
            </option>
          ))}
        </select>
        <select value={f.priority} onChange={(e) => setF({ ...f, priority: e.target.value })} data-testid="filter-priority">
          <option value="">All priorities</option>
          {PRIORITIES.map((p) => (
            <option key={p} value={p}>
              {PRIORITY_LABEL[p]}
            </option>
          ))}
        </select>
        <select value={f.sort} onChange={(e) => setF({ ...f, sort: e.target.value as Sort })} data-testid="sort">
          {Object.entries(SORTS).map(([k, s]) => (
            <option key={k} value={k}>
              Sort: {s.label}
            </option>
          ))}
        </select>
        <span className="muted count" data-testid="issue-count">
          {rows.length.toLocaleString('en')} issues
        </span>
        <div className="spacer" />
        <button className="primary" onClick={() => setCreating(true)} data-testid="new-issue">
          New issue
        </button>
      </div>
      <ErrorNote error={error} />
      <VirtualList
        items={rows}
        rowHeight={ROW_HEIGHT}
        getKey={(r) => r.id}
        testId="issue-list"
        empty={<div className="empty muted">No issues match.</div>}
        render={(r) => <IssueRow r={r} projectId={projectId} />}
      />
      {creating && <NewIssue projectId={projectId} user={user} status={(f.status || 'todo') as Status} onClose={() => setCreating(false)} />}
    </div>
  );
}

function IssueRow({ r, projectId }: { r: Row; projectId: string }) {
  const to = { name: 'issue', projectId, issueId: r.id } as const;
  return (
    <a className="issue-row" href={href(to)} onClick={onLinkClick(to)} data-testid="issue-row" data-id={r.id}>
      <PriorityIcon priority={r.priority} />
      <StatusIcon status={r.status} />
      <span className="title" data-testid="issue-title">
        {r.title}
      </span>
      {r.comments > 0 && (
        <span className="comments muted" title={`${r.comments} comments`}>
          <CommentIcon /> {r.comments}
        </span>
      )}
      <span className="when muted">{ago(r.modified)}</span>
      <Avatar name={r.username} />
    </a>
  );
}
