// A tiny router on the History API. The ?user= parameter (which local
// database and name to use) is kept on every navigation.
import { useSyncExternalStore } from 'react';

export type Route =
  | { name: 'projects' }
  | { name: 'issues'; projectId: string }
  | { name: 'board'; projectId: string }
  | { name: 'issue'; projectId: string; issueId: string }
  | { name: 'notfound' };

export function parse(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { name: 'projects' };
  if (parts[0] === 'p' && parts.length >= 2) {
    const projectId = parts[1];
    if (parts.length === 2) return { name: 'issues', projectId };
    if (parts.length === 3 && parts[2] === 'board') return { name: 'board', projectId };
    if (parts.length === 4 && parts[2] === 'i') return { name: 'issue', projectId, issueId: parts[3] };
  }
  return { name: 'notfound' };
}

export function href(r: Route): string {
  let p = '/';
  switch (r.name) {
    case 'issues':
      p = `/p/${encodeURIComponent(r.projectId)}`;
      break;
    case 'board':
      p = `/p/${encodeURIComponent(r.projectId)}/board`;
      break;
    case 'issue':
      p = `/p/${encodeURIComponent(r.projectId)}/i/${encodeURIComponent(r.issueId)}`;
      break;
  }
  // Keep ?user= and ?worker= (which local database, how tabs share it).
  const cur = new URLSearchParams(location.search);
  const keep = new URLSearchParams();
  for (const k of ['user', 'worker']) {
    const v = cur.get(k);
    if (v) keep.set(k, v);
  }
  const q = keep.toString();
  return q ? `${p}?${q}` : p;
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

export function navigate(r: Route, replace = false): void {
  const url = href(r);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  listeners.forEach((l) => l());
}

function subscribe(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function useRoute(): Route {
  const path = useSyncExternalStore(subscribe, () => location.pathname);
  return parse(path);
}

// onLinkClick turns a plain left click on a link into a navigation.
export function onLinkClick(r: Route) {
  return (e: React.MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(r);
  };
}
