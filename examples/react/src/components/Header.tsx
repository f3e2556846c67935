import { useState } from 'react';
import { useLattice, useSyncStatus } from '@latticesync/web/react';
import { href, onLinkClick, type Route } from '../lib/router';
import { useRow } from '../db/hooks';
import { addMember } from '../db/mutations';
import type { Project } from '../db/model';
import { Avatar, ErrorNote, Modal } from './ui';

export function Header({ route, user }: { route: Route; user: string }) {
  const projectId = 'projectId' in route ? route.projectId : null;
  return (
    <header className="header">
      <a className="logo" href={href({ name: 'projects' })} onClick={onLinkClick({ name: 'projects' })}>
        <span className="logo-mark" /> Lattice issues
      </a>
      {projectId && <ProjectCrumb projectId={projectId} route={route} user={user} />}
      <div className="spacer" />
      <SyncStatus />
      <span className="user" data-testid="user" data-user={user} title={`Signed in as ${user} (the demo's token from /dev-token; ?user=NAME to be someone else)`}>
        <span className="muted">Signed in as</span> <Avatar name={user} /> <b>{user}</b>
      </span>
    </header>
  );
}

function ProjectCrumb({ projectId, route, user }: { projectId: string; route: Route; user: string }) {
  const { row } = useRow<Pick<Project, 'name'>>(`SELECT name FROM project WHERE id = ?`, [projectId]);
  const [members, setMembers] = useState(false);
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
      {row && (
        <button className="members-button" onClick={() => setMembers(true)} data-testid="members">
          Members
        </button>
      )}
      {members && <Members projectId={projectId} name={row?.name ?? ''} user={user} onClose={() => setMembers(false)} />}
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

// Members: add a user to the project (an insert into project_member, synced
// like any write; the policies let members add users). Each user can read
// only their own memberships (the demo's policies: see
// cmd/lattice/devschema.go), so the list is you and whom you added here.
function Members({ projectId, name, user, onClose }: { projectId: string; name: string; user: string; onClose: () => void }) {
  const db = useLattice();
  const { row } = useRow<{ n: number }>(`SELECT count(*) AS n FROM project_member WHERE project_id = ? AND user_id = ?`, [projectId, user]);
  const [input, setInput] = useState('');
  const [added, setAdded] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const other = input.trim().toLowerCase();
  const valid = /^[a-z0-9_-]{1,32}$/.test(other) && other !== user;
  return (
    <Modal title={`Members of ${name}`} onClose={onClose}>
      <div className="members" data-testid="members-dialog">
        <div className="member">
          <Avatar name={user} /> <b>{user}</b> <span className="muted">(you{row && row.n > 0 ? ', a member' : ''})</span>
        </div>
        {added.map((u) => (
          <div className="member" key={u} data-testid="member-added">
            <Avatar name={u} /> <b>{u}</b> <span className="muted">added: the project shows in their app now</span>
          </div>
        ))}
        <p className="muted">
          Members see the project, its issues and comments, edit them, and add other users. You see your own membership only, not the
          others’.
        </p>
        <form
          onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            try {
              await addMember(db, projectId, other);
              setAdded((a) => (a.includes(other) ? a : [...a, other]));
              setInput('');
            } catch (err) {
              setError(err);
            }
          }}
        >
          <div className="row">
            <input autoFocus placeholder="Add a user, e.g. bob" value={input} onChange={(e) => setInput(e.target.value)} data-testid="member-input" />
            <button className="primary" type="submit" disabled={!valid} data-testid="member-add">
              Add
            </button>
          </div>
          <ErrorNote error={error} />
          <div className="actions">
            <button type="button" onClick={onClose} data-testid="members-close">
              Close
            </button>
          </div>
        </form>
      </div>
    </Modal>
  );
}
