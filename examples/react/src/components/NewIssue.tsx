import { useState } from 'react';
import { useLattice } from '@latticesync/web/react';
import { createIssue } from '../db/mutations';
import { PRIORITIES, PRIORITY_LABEL, STATUSES, STATUS_LABEL, type Priority, type Status } from '../db/model';
import { ErrorNote, Modal } from './ui';

export function NewIssue({
  projectId,
  user,
  status: initialStatus = 'todo',
  onClose,
}: {
  projectId: string;
  user: string;
  status?: Status;
  onClose: () => void;
}) {
  const db = useLattice();
  const [title, setTitle] = useState('');
  const [description, setDescription] = useState('');
  const [status, setStatus] = useState<Status>(initialStatus);
  const [priority, setPriority] = useState<Priority>('none');
  const [error, setError] = useState<unknown>(null);
  return (
    <Modal title="New issue" onClose={onClose}>
      <form
        data-testid="new-issue-form"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await createIssue(db, { projectId, title: title.trim(), description, status, priority, username: user });
            onClose();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <input autoFocus placeholder="Issue title" value={title} onChange={(e) => setTitle(e.target.value)} required data-testid="new-issue-title" />
        <textarea placeholder="Add a description…" value={description} onChange={(e) => setDescription(e.target.value)} rows={4} data-testid="new-issue-description" />
        <div className="row">
          <select value={status} onChange={(e) => setStatus(e.target.value as Status)} data-testid="new-issue-status">
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {STATUS_LABEL[s]}
              </option>
            ))}
          </select>
          <select value={priority} onChange={(e) => setPriority(e.target.value as Priority)} data-testid="new-issue-priority">
            {PRIORITIES.map((p) => (
              <option key={p} value={p}>
                {PRIORITY_LABEL[p]}
              </option>
            ))}
          </select>
        </div>
        <ErrorNote error={error} />
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button className="primary" type="submit" disabled={!title.trim()} data-testid="new-issue-submit">
            Create issue
          </button>
        </div>
      </form>
    </Modal>
  );
}
