import { useMemo, useState } from 'react';
import { useLattice } from '@latticesync/web/react';
import { href, onLinkClick } from '../lib/router';
import { VirtualList } from '../lib/VirtualList';
import { useRows } from '../db/hooks';
import { moveCard } from '../db/mutations';
import { STATUSES, STATUS_LABEL, type Issue, type Status } from '../db/model';
import { NewIssue } from './NewIssue';
import { Avatar, ErrorNote, PriorityIcon, StatusIcon } from './ui';

type Card = Pick<Issue, 'id' | 'title' | 'priority' | 'status' | 'kanbanorder' | 'username'>;

const CARD_HEIGHT = 96;

export function Board({ projectId, user }: { projectId: string; user: string }) {
  const db = useLattice();
  const { rows, error } = useRows<Card>(
    `SELECT id, title, priority, status, kanbanorder, username FROM issue WHERE project_id = ? ORDER BY kanbanorder, id`,
    [projectId],
  );
  const columns = useMemo(() => {
    const by = new Map<string, Card[]>(STATUSES.map((s) => [s, []]));
    for (const r of rows) by.get(r.status)?.push(r);
    return by;
  }, [rows]);
  const [dragging, setDragging] = useState<string | null>(null);
  const [creating, setCreating] = useState<Status | null>(null);
  const [moveError, setMoveError] = useState<unknown>(null);

  const drop = (status: Status, e: React.DragEvent<HTMLDivElement>) => {
    e.preventDefault();
    const id = e.dataTransfer.getData('text/x-issue-id') || dragging;
    setDragging(null);
    if (!id) return;
    const list = (columns.get(status) ?? []).filter((c) => c.id !== id);
    const scroller = e.currentTarget.querySelector('.vlist');
    const rect = (scroller ?? e.currentTarget).getBoundingClientRect();
    const y = e.clientY - rect.top + (scroller?.scrollTop ?? 0);
    const at = Math.max(0, Math.min(list.length, Math.round(y / CARD_HEIGHT)));
    moveCard(db, id, status, list[at - 1]?.kanbanorder ?? null, list[at]?.kanbanorder ?? null).catch(setMoveError);
  };

  return (
    <div className="page board" data-testid="board">
      <ErrorNote error={error ?? moveError} />
      <div className="columns">
        {STATUSES.map((s) => {
          const cards = columns.get(s) ?? [];
          return (
            <div
              key={s}
              className={`column ${dragging ? 'drop-ok' : ''}`}
              data-testid={`column-${s}`}
              onDragOver={(e) => e.preventDefault()}
              onDrop={(e) => drop(s, e)}
            >
              <div className="column-head">
                <StatusIcon status={s} /> {STATUS_LABEL[s]} <span className="muted">{cards.length}</span>
                <div className="spacer" />
                <button className="ghost" title="New issue" onClick={() => setCreating(s)} data-testid={`new-in-${s}`}>
                  +
                </button>
              </div>
              <VirtualList
                items={cards}
                rowHeight={CARD_HEIGHT}
                getKey={(c) => c.id}
                render={(c) => (
                  <CardView
                    c={c}
                    projectId={projectId}
                    onDragStart={(e) => {
                      e.dataTransfer.setData('text/x-issue-id', c.id);
                      e.dataTransfer.effectAllowed = 'move';
                      setDragging(c.id);
                    }}
                  />
                )}
              />
            </div>
          );
        })}
      </div>
      {creating && <NewIssue projectId={projectId} user={user} status={creating} onClose={() => setCreating(null)} />}
    </div>
  );
}

function CardView({ c, projectId, onDragStart }: { c: Card; projectId: string; onDragStart: (e: React.DragEvent) => void }) {
  const to = { name: 'issue', projectId, issueId: c.id } as const;
  return (
    <a className="card" href={href(to)} onClick={onLinkClick(to)} draggable onDragStart={onDragStart} data-testid="card" data-id={c.id}>
      <div className="card-title">{c.title}</div>
      <div className="card-meta">
        <PriorityIcon priority={c.priority} />
        <StatusIcon status={c.status} />
        <div className="spacer" />
        <Avatar name={c.username} />
      </div>
    </a>
  );
}
