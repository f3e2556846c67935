import { useState } from 'react';
import { useLattice } from '@latticesync/web/react';
import { href, navigate, onLinkClick } from '../lib/router';
import { useRows } from '../db/hooks';
import { createProject } from '../db/mutations';
import type { Project } from '../db/model';
import { ago } from '../lib/time';
import { ErrorNote, Modal, Spinner } from './ui';

export function ProjectList({ synced, user }: { synced: boolean; user: string }) {
  const { rows, error, loading } = useRows<Project>(`SELECT * FROM project ORDER BY name, id`);
  const [creating, setCreating] = useState(false);
  if (rows.length === 0 && (!synced || loading)) return <Spinner label="Syncing projects…" />;
  return (
    <div className="page projects">
      <div className="toolbar">
        <h1>Projects</h1>
        <div className="spacer" />
        <button className="primary" onClick={() => setCreating(true)} data-testid="new-project">
          New project
        </button>
      </div>
      <ErrorNote error={error} />
      <div className="project-grid" data-testid="project-list">
        {rows.map((p) => (
          <a
            key={p.id}
            className="project-card"
            href={href({ name: 'issues', projectId: p.id })}
            onClick={onLinkClick({ name: 'issues', projectId: p.id })}
            data-testid="project-card"
          >
            <div className="project-name">{p.name}</div>
            <div className="project-desc">{p.description}</div>
            <div className="muted">created {ago(p.created)}</div>
          </a>
        ))}
        {rows.length === 0 && (
          <div className="muted" data-testid="no-projects">
            No projects for {user} yet: create one, or ask a member of a project to add “{user}” (Members, in the project’s header).
          </div>
        )}
      </div>
      {creating && <NewProject user={user} onClose={() => setCreating(false)} />}
    </div>
  );
}

function NewProject({ user, onClose }: { user: string; onClose: () => void }) {
  const db = useLattice();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<unknown>(null);
  return (
    <Modal title="New project" onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            const id = await createProject(db, name.trim(), description.trim(), user);
            onClose();
            navigate({ name: 'issues', projectId: id });
          } catch (err) {
            setError(err);
          }
        }}
      >
        <input autoFocus placeholder="Project name" value={name} onChange={(e) => setName(e.target.value)} required data-testid="project-name-input" />
        <textarea placeholder="Description" value={description} onChange={(e) => setDescription(e.target.value)} rows={3} />
        <ErrorNote error={error} />
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button className="primary" type="submit" disabled={!name.trim()} data-testid="project-create">
            Create
          </button>
        </div>
      </form>
    </Modal>
  );
}
