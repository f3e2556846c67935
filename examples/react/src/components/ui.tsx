import { useEffect, useState, type ReactNode } from 'react';
import { useLattice } from '@latticesync/web/react';
import { PRIORITY_LABEL, STATUS_LABEL, type Priority, type Status } from '../db/model';

export function Spinner({ label }: { label: string }) {
  return (
    <div className="spinner-wrap" data-testid="spinner" role="status">
      <div className="spinner" />
      <div>{label}</div>
    </div>
  );
}

export function StatusIcon({ status }: { status: string }) {
  return <span className={`status-icon s-${status}`} title={STATUS_LABEL[status as Status] ?? status} />;
}

export function PriorityIcon({ priority }: { priority: string }) {
  const bars = { urgent: 4, high: 3, medium: 2, low: 1, none: 0 }[priority as Priority] ?? 0;
  return (
    <span className={`prio p-${priority}`} title={PRIORITY_LABEL[priority as Priority] ?? priority}>
      {priority === 'urgent' ? '!' : [1, 2, 3].map((i) => <i key={i} className={i <= bars ? 'on' : ''} />)}
    </span>
  );
}

export function Avatar({ name }: { name: string }) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return (
    <span className="avatar" style={{ background: `hsl(${h} 55% 45%)` }} title={name}>
      {name.slice(0, 1).toUpperCase()}
    </span>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const msg = error instanceof Error ? error.message : String(error);
  return (
    <div className="error-note" role="alert">
      {msg}
    </div>
  );
}

// EditableText shows value, keeps the user's draft while focused (a peer's
// edit does not clobber typing), and saves on blur or Enter.
export function EditableText({
  value,
  onSave,
  multiline,
  className,
  testId,
  placeholder,
}: {
  value: string;
  onSave: (v: string) => void;
  multiline?: boolean;
  className?: string;
  testId?: string;
  placeholder?: string;
}) {
  const [draft, setDraft] = useState<string | null>(null);
  useEffect(() => setDraft(null), [value]);
  const commit = () => {
    if (draft !== null && draft !== value) onSave(draft);
    setDraft(null);
  };
  const props = {
    className,
    'data-testid': testId,
    placeholder,
    value: draft ?? value,
    onFocus: () => setDraft(value),
    onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => setDraft(e.target.value),
    onBlur: commit,
  };
  return multiline ? (
    <textarea {...props} rows={6} />
  ) : (
    <input
      {...props}
      onKeyDown={(e) => {
        if (e.key === 'Enter') (e.target as HTMLInputElement).blur();
        if (e.key === 'Escape') {
          setDraft(null);
          (e.target as HTMLInputElement).blur();
        }
      }}
    />
  );
}

export function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);
  return (
    <div className="modal-back" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div className="modal" role="dialog" aria-label={title}>
        <h2>{title}</h2>
        {children}
      </div>
    </div>
  );
}

export function CommentIcon() {
  return (
    <svg width="12" height="12" viewBox="0 0 16 16" aria-hidden="true" style={{ verticalAlign: '-1px' }}>
      <path d="M2 3h12v8H6l-3 3v-3H2z" fill="none" stroke="currentColor" strokeWidth="1.5" strokeLinejoin="round" />
    </svg>
  );
}

// Rejections shows the writes the service refused (a denied write, e.g. to
// a project the user is not a member of: code permission_denied). The
// worker has already undone them locally.
export function Rejections() {
  const db = useLattice();
  const [msgs, setMsgs] = useState<string[]>([]);
  useEffect(() => db.onRejected((r) => setMsgs((m) => [...m.slice(-2), r.error.message])), [db]);
  if (msgs.length === 0) return null;
  return (
    <div className="error-note rejected" role="alert" data-testid="rejected">
      {msgs.map((m, i) => (
        <div key={i}>The service refused a change (undone here): {m}</div>
      ))}
      <button onClick={() => setMsgs([])}>Dismiss</button>
    </div>
  );
}
