// A small in-memory database with the Lattice interface, for unit tests of
// the hooks' subscription logic. Tests drive it: emit() pushes new rows to
// the live queries of one SQL text, finishShape() completes a sync.

import { LatticeError } from '../src/errors.js';
import type { ExecResult, Lattice, Param, Rejection, Row, Shape, ShapeHandle, Status, SyncRequest } from '../src/types.js';

interface Live {
  sql: string;
  params: readonly Param[] | undefined;
  onRows(rows: Row[]): void;
  onError(err: LatticeError): void;
}

interface Synced {
  shape: Shape;
  resolve(): void;
  reject(err: LatticeError): void;
  active: boolean;
}

export class MemoryDb implements Lattice {
  /** Every liveQuery call ever made. */
  liveCalls: Array<{ sql: string; params: readonly Param[] | undefined }> = [];
  /** Every sync call ever made. */
  syncCalls: Shape[] = [];
  readonly lives = new Set<Live>();
  readonly shapes = new Set<Synced>();
  #tables = new Map<string, Row[]>();
  #status: Status = { state: 'connecting', pending: 0 };
  #statusFns = new Set<(s: Status) => void>();

  /** Sets the rows a query (by SQL text) returns and pushes them to its live queries. */
  emit(sql: string, rows: Row[]): void {
    this.#tables.set(sql, rows);
    for (const l of [...this.lives]) if (l.sql === sql) l.onRows(rows);
  }

  /** Fails the live queries of one SQL text. */
  fail(sql: string, err: LatticeError): void {
    for (const l of [...this.lives]) if (l.sql === sql) l.onError(err);
  }

  finishShape(table: string, err?: LatticeError): void {
    for (const s of this.shapes) {
      if (s.shape.table !== table) continue;
      if (err) s.reject(err);
      else s.resolve();
    }
  }

  setStatus(s: Status): void {
    this.#status = s;
    for (const fn of [...this.#statusFns]) fn(s);
  }

  activeShapes(): number {
    let n = 0;
    for (const s of this.shapes) if (s.active) n++;
    return n;
  }

  sync(shape: Shape): SyncRequest {
    this.syncCalls.push(shape);
    let resolve!: () => void;
    let reject!: (err: LatticeError) => void;
    const synced = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    synced.catch(() => {});
    const rec: Synced = { shape, resolve, reject, active: true };
    this.shapes.add(rec);
    const unsubscribe = async () => {
      rec.active = false;
      this.shapes.delete(rec);
    };
    const handle: ShapeHandle = { shapeId: shape.table, synced, unsubscribe };
    const request = synced.then(() => handle);
    request.catch(() => {});
    return Object.assign(request, { synced, unsubscribe });
  }

  async query<T extends Row = Row>(sql: string): Promise<T[]> {
    return (this.#tables.get(sql) ?? []) as T[];
  }

  async exec(): Promise<ExecResult> {
    return { changes: 0, lastInsertRowid: 0 };
  }

  async transaction<R>(fn: (tx: { query: MemoryDb['query']; exec: MemoryDb['exec'] }) => Promise<R>): Promise<R> {
    return fn({ query: this.query.bind(this), exec: this.exec.bind(this) });
  }

  liveQuery<T extends Row = Row>(
    sql: string,
    params: readonly Param[] | undefined,
    onRows: (rows: T[]) => void,
    onError?: (err: LatticeError) => void,
  ): () => void {
    this.liveCalls.push({ sql, params });
    const live: Live = {
      sql,
      params,
      onRows: onRows as (rows: Row[]) => void,
      onError: onError ?? (() => {}),
    };
    this.lives.add(live);
    const rows = this.#tables.get(sql);
    if (rows) queueMicrotask(() => this.lives.has(live) && live.onRows(rows));
    return () => {
      this.lives.delete(live);
    };
  }

  get status(): Status {
    return this.#status;
  }

  onStatus(fn: (s: Status) => void): () => void {
    const w = (s: Status) => fn(s);
    this.#statusFns.add(w);
    return () => this.#statusFns.delete(w);
  }

  onRejected(_fn: (r: Rejection) => void): () => void {
    return () => {};
  }

  async setToken(): Promise<void> {}

  async close(): Promise<void> {}
}
