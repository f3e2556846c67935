import { useEffect, useMemo, useState } from 'react';
import { useLattice, useShape } from '@latticesync/web/react';
import { useRoute, type Route } from './lib/router';
import { ALL_PROJECTS, MY_MEMBERSHIPS, projectShape } from './db/db';
import { ensureIndexes } from './db/mutations';
import { useRow } from './db/hooks';
import { Header } from './components/Header';
import { ProjectList } from './components/ProjectList';
import { IssueList } from './components/IssueList';
import { Board } from './components/Board';
import { IssueDetail } from './components/IssueDetail';
import { ErrorNote, Rejections, Spinner } from './components/ui';

export function App({ user }: { user: string }) {
  const route = useRoute();
  const projects = useShape(ALL_PROJECTS);
  const memberships = useShape(MY_MEMBERSHIPS);

  return (
    <div className="app">
      <Header route={route} user={user} />
      <ErrorNote error={projects.error ?? memberships.error} />
      <Rejections />
      <main>
        {route.name === 'projects' && <ProjectList synced={projects.synced} user={user} />}
        {'projectId' in route && <ProjectScope key={route.projectId} route={route} user={user} />}
        {route.name === 'notfound' && <div className="page muted">Page not found.</div>}
      </main>
    </div>
  );
}

// ProjectScope keeps one project's shape (the project, its issues and their
// comments) synced while any of its views is open.
function ProjectScope({ route, user }: { route: Route & { projectId: string }; user: string }) {
  const shape = useMemo(() => projectShape(route.projectId), [route.projectId]);
  const { synced, error } = useShape(shape);
  const db = useLattice();
  const [indexError, setIndexError] = useState<unknown>(null);
  useEffect(() => {
    if (synced) ensureIndexes(db).catch(setIndexError);
  }, [db, synced]);
  // Rows already local (a previous visit, an offline reload) show at once;
  // the spinner is for a project not yet here.
  const { row } = useRow<{ n: number; p: number }>(
    `SELECT (SELECT count(*) FROM issue WHERE project_id = ?) AS n, (SELECT count(*) FROM project WHERE id = ?) AS p`,
    [route.projectId, route.projectId],
  );
  const have = (row?.n ?? 0) > 0;
  if (error ?? indexError) return <ErrorNote error={error ?? indexError} />;
  if (!synced && !have) return <Spinner label="Syncing project…" />;
  // Synced and absent: no such project, or not one of the user's (the
  // service sends only the projects the user is a member of).
  if (synced && row && row.p === 0) {
    return (
      <div className="page muted" data-testid="no-access">
        This project does not exist, or {user} is not a member of it: a member can add “{user}” (Members, in the project’s header).
      </div>
    );
  }
  return (
    <div className="scope" data-testid="project-scope" data-synced={synced ? 'true' : 'false'}>
      {route.name === 'issues' && <IssueList projectId={route.projectId} user={user} />}
      {route.name === 'board' && <Board projectId={route.projectId} user={user} />}
      {route.name === 'issue' && <IssueDetail projectId={route.projectId} issueId={route.issueId} user={user} />}
    </div>
  );
}
