// Typed wrappers over the package's live query hook.
import { useLiveQuery } from '@latticesync/web/react';

export type Rows<T> = { rows: T[]; error: Error | null | undefined; loading: boolean };

// useRows runs a live query and types its rows. params must be stable
// (memoised or literal values): they are compared by value by the hook.
export function useRows<T>(sql: string, params: unknown[] = []): Rows<T> {
  const r = useLiveQuery(sql, params as never);
  return { rows: (r.rows ?? []) as T[], error: r.error as Error | null | undefined, loading: r.loading };
}

export function useRow<T>(sql: string, params: unknown[] = []): { row: T | undefined; error: Error | null | undefined; loading: boolean } {
  const r = useRows<T>(sql, params);
  return { row: r.rows[0], error: r.error, loading: r.loading };
}
