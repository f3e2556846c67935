// The generated helpers accept the real @latticesync/web database, and what
// they compile is what its hooks take (useLiveQuery(q) or
// useLiveQuery(q.sql, q.params)). Checked with tsconfig.web.json against the
// package's source in this repository.
import type { Lattice, Param, Row } from '../../../web/src/types.js';
import { queries, tables } from './lattice/index.js';
import type { Issue } from './lattice/index.js';

declare const db: Lattice;
export const t = tables(db);
export const spec: { sql: string; params?: readonly Param[] } = queries.issue.findMany({ limit: 1 });
export const params: readonly Param[] = queries.issue.findMany({ where: { done: true } }).params;
// Rows of a generated row type are rows for the package's generic queries.
export const asRows = (rows: Issue[]): Row[] => rows;
