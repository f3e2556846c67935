// Opening the local database: one per user (?user=NAME), so two users can
// share a browser for the demo. The sync endpoint is on the page's own
// origin (lattice dev serves both; Vite's dev server proxies /v1). The
// user's token (src/db/token.ts) says who they are: the service gives each
// user the rows Postgres' row-level security lets them read.
import { createLattice } from '@latticesync/web';
import { schema } from '../generated';
import { getToken } from './token';
// The package's worker and wasm, shipped unchanged by vite.config.ts under a
// content-hashed folder (cached for good, kept by the service worker).
import { workerUrl, wasmUrl } from 'virtual:lattice-assets';

export type Db = Awaited<ReturnType<typeof createLattice>>;

export function currentUser(): string {
  const u = new URLSearchParams(location.search).get('user') ?? '';
  return /^[a-z0-9_-]{1,32}$/i.test(u) ? u.toLowerCase() : 'demo';
}

// ?worker=dedicated|shared picks how tabs share the database (default: the
// package's choice, a SharedWorker where available). The end-to-end tests use
// dedicated workers where they cut the network, because Chromium's network
// emulation does not reach shared workers.
function workerMode(): 'auto' | 'shared' | 'dedicated' {
  const w = new URLSearchParams(location.search).get('worker');
  return w === 'shared' || w === 'dedicated' ? w : 'auto';
}

export function openDb(user: string): Promise<Db> {
  return createLattice({
    worker: workerMode(),
    url: location.origin.replace(/^http/, 'ws'),
    // Asked for at each connection and before the token expires: the
    // database stays authorized however long the app runs (src/db/token.ts).
    getToken: () => getToken(user),
    dbName: `lattice-example-${user}`,
    schema,
    workerUrl,
    wasmUrl,
  });
}

// The shapes the app syncs: every project (names for the list and the
// "move to project" menu), the user's memberships, and one project at a time
// with its issues and their comments. "Every" is what the user may read: the
// projects they are a member of (the service applies the policies; a
// membership added or removed moves the project in or out live).
export const ALL_PROJECTS = { table: 'project' } as const;
export const MY_MEMBERSHIPS = { table: 'project_member' } as const;

export function projectShape(projectId: string) {
  return {
    table: 'project',
    where: 'id = $1',
    params: [projectId],
    include: { issue: { include: { comment: {} } } },
  };
}
