import { useSyncStatus } from '@latticesync/web/react';
import { href, onLinkClick, type Route } from '../lib/router';
import { useRow } from '../db/hooks';
import type { Project } from '../db/model';
import { Avatar } from './ui';

export function Header({ route, user }: { route: Route; user: string }) {
  const projectId = 'projectId' in route ? route.projectId : null;
  return (
    <header className="header">
      <a className="logo" href={href({ name: 'projects' })} onClick={onLinkClick({ name: 'projects' })}>
        <span className="logo-mark" /> Lattice issues
      </a>
      {projectId && <ProjectCrumb projectId={projectId} route={route} />}
      <div className="spacer" />
      <SyncStatus />
      <span className="user" data-testid="user">
        <Avatar name={user} /> {user}
      </span>
    </header>
  );
}

function ProjectCrumb({ projectId, route }: { projectId: string; route: Route }) {
  const { row } = useRow<Pick<Project, 'name'>>(`SELECT name FROM project WHERE id = ?`, [projectId]);
  const list: Route = { name: 'issues', projectId };
  const board: Route = { name: 'board', projectId };
  return (
    <nav className="crumbs">
      <span className="sep">/</span>
      <a href={href(list)} onClick={onLinkClick(list)} data-testid="project-name">
        {row?.name ?? '…'}
      </a>
      <div className="tabs">
        <a className={route.name === 'issues' ? 'active' : ''} href={href(list)} onClick={onLinkClick(list)} data-testid="tab-list">
          List
        </a>
        <a className={route.name === 'board' ? 'active' : ''} href={href(board)} onClick={onLinkClick(board)} data-testid="tab-board">
          Board
        </a>
      </div>
    </nav>
  );
}

function SyncStatus() {
  const s = useSyncStatus();
  const label = s.state === 'online' ? 'Online' : s.state === 'offline' ? 'Offline' : 'Connecting…';
  const pending = s.pending > 0 ? `${s.pending} pending` : s.state === 'online' ? 'all saved' : 'no pending writes';
  return (
    <span
      className={`sync sync-${s.state}`}
      data-testid="sync-status"
      data-state={s.state}
      data-pending={s.pending}
      title={s.lastError ? `Last error: ${s.lastError.message}` : undefined}
    >
      <span className="dot" /> {label} · {pending}
    </span>
  );
}
