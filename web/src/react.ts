// React bindings: <LatticeProvider>, useLattice, useLiveQuery,
// useLiveQuerySuspense, useShape, useSyncStatus.

import { createContext, createElement, useCallback, useContext, useMemo, useSyncExternalStore } from 'react';
import type { ReactNode } from 'react';
import { SubscriptionStore } from './store.js';
import type { LiveQueryState, ShapeState } from './store.js';
import type { Lattice, Param, Row, Shape, Status } from './types.js';

export type { LiveQueryState, ShapeState } from './store.js';
export { SubscriptionStore } from './store.js';

interface Ctx {
  db: Lattice;
  store: SubscriptionStore;
}

const LatticeContext = createContext<Ctx | null>(null);

export interface LatticeProviderProps {
  db: Lattice;
  /** Milliseconds an unused live query or shape is kept for reuse (default 1000). */
  releaseDelay?: number;
  children?: ReactNode;
}

/** Makes `db` available to the hooks below it. */
export function LatticeProvider(props: LatticeProviderProps) {
  const { db, releaseDelay, children } = props;
  const value = useMemo<Ctx>(() => ({ db, store: new SubscriptionStore(db, releaseDelay) }), [db, releaseDelay]);
  return createElement(LatticeContext.Provider, { value }, children);
}

function useCtx(hook: string): Ctx {
  const ctx = useContext(LatticeContext);
  if (!ctx) throw new Error(`${hook} must be used inside <LatticeProvider db={db}>`);
  return ctx;
}

/** The database of the nearest <LatticeProvider>. */
export function useLattice(): Lattice {
  return useCtx('useLattice').db;
}

/** A query and its parameters, as typed helpers build them. */
export interface QuerySpec {
  sql: string;
  params?: readonly Param[];
}

const idle: LiveQueryState = Object.freeze({ rows: [], error: undefined, loading: false }) as LiveQueryState;
const noSubscribe = () => () => {};
const idleSnapshot = () => idle;

function resolveQuery(q: string | QuerySpec | null | undefined, params: readonly Param[] | undefined) {
  if (q === null || q === undefined) return undefined;
  if (typeof q === 'string') return { sql: q, params };
  return { sql: q.sql, params: q.params ?? params };
}

/**
 * The rows of a query, kept current. Parameters are compared by value; all
 * components with the same query share one live query. Pass null to skip.
 */
export function useLiveQuery<T extends Row = Row>(
  query: string | QuerySpec | null | undefined,
  params?: readonly Param[],
): LiveQueryState<T> {
  const { store } = useCtx('useLiveQuery');
  const q = resolveQuery(query, params);
  const entry = q ? store.live(q.sql, q.params) : undefined;
  const state = useSyncExternalStore(
    entry ? entry.subscribe : noSubscribe,
    entry ? entry.getSnapshot : idleSnapshot,
    entry ? entry.getSnapshot : idleSnapshot,
  );
  return state as LiveQueryState<T>;
}

/**
 * Like useLiveQuery, but suspends until the first rows arrive and throws the
 * query's error to the nearest error boundary. Returns the rows.
 */
export function useLiveQuerySuspense<T extends Row = Row>(
  query: string | QuerySpec,
  params?: readonly Param[],
): T[] {
  const { store } = useCtx('useLiveQuerySuspense');
  const q = resolveQuery(query, params)!;
  const entry = store.live(q.sql, q.params);
  const state = useSyncExternalStore(entry.subscribe, entry.getSnapshot, entry.getSnapshot);
  if (state.loading) throw entry.ready;
  if (state.error) throw state.error;
  return state.rows as T[];
}

const noShape: ShapeState = Object.freeze({ synced: false, error: undefined }) as ShapeState;
const noShapeSnapshot = () => noShape;

/**
 * Keeps a shape synced while the component is mounted. The shape is compared
 * by value; components asking for the same shape share one subscription.
 * Pass null to skip.
 */
export function useShape(shape: Shape | null | undefined): ShapeState {
  const { store } = useCtx('useShape');
  const entry = shape ? store.shape(shape) : undefined;
  return useSyncExternalStore(
    entry ? entry.subscribe : noSubscribe,
    entry ? entry.getSnapshot : noShapeSnapshot,
    entry ? entry.getSnapshot : noShapeSnapshot,
  );
}

/** The connection status (state, pending writes, last error), kept current. */
export function useSyncStatus(): Status {
  const { db } = useCtx('useSyncStatus');
  const subscribe = useCallback((fn: () => void) => db.onStatus(() => fn()), [db]);
  const get = useCallback(() => db.status, [db]);
  return useSyncExternalStore(subscribe, get, get);
}
