import type { ErrorInfo, LatticeError } from './errors.js';

/** A SQLite value as the worker returns it (see jsbridge/MESSAGES.md, Values). */
export type Value = null | number | bigint | string | Uint8Array;

/** A statement parameter: a Value, or a boolean (stored as 1/0) or a Date (stored as ISO 8601 text in UTC). */
export type Param = Value | boolean | Date;

/** One result row, keyed by column name. */
export type Row = Record<string, Value>;

/** A set of rows of one table that this client keeps local and in sync. */
export interface Shape {
  /** Table name, optionally schema-qualified ("public.issues"). */
  table: string;
  /** A SQL boolean expression over the table's columns, with $1, $2... placeholders. */
  where?: string;
  /** Values for the placeholders in `where`. */
  params?: readonly Param[];
  /** Related rows to sync along (passed to the service as is). */
  include?: unknown;
  /** A stable name for the shape; the worker picks one when absent. */
  id?: string;
}

/** Connection state and local backlog. */
export interface Status {
  state: 'connecting' | 'online' | 'offline';
  /** Local transactions not yet acknowledged by the service. */
  pending: number;
  lastError?: ErrorInfo;
}

/** What `exec` returns. */
export interface ExecResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

/** Statements inside an interactive transaction. */
export interface Transaction {
  query<T extends Row = Row>(sql: string, params?: readonly Param[]): Promise<T[]>;
  exec(sql: string, params?: readonly Param[]): Promise<ExecResult>;
}

/** A synced shape. */
export interface ShapeHandle {
  /** The shape's id once the worker has accepted it. */
  readonly shapeId?: string | undefined;
  /** Resolves once the shape's initial data is in the local database. */
  readonly synced: Promise<void>;
  /** Stops syncing the shape (rows already local stay until the worker evicts them). */
  unsubscribe(): Promise<void>;
}

/**
 * What `sync` returns: a promise of the handle that resolves once the shape's
 * initial data is local, and which can already be unsubscribed before that.
 */
export interface SyncRequest extends Promise<ShapeHandle> {
  readonly synced: Promise<void>;
  unsubscribe(): Promise<void>;
}

/** A local transaction the service rejected; the worker has undone it. */
export interface Rejection {
  txnId: unknown;
  error: LatticeError;
}

/** The database handle `createLattice` resolves to. */
export interface Lattice {
  /** The shape's initial data is local when the returned promise resolves. */
  sync(shape: Shape): SyncRequest;
  query<T extends Row = Row>(sql: string, params?: readonly Param[]): Promise<T[]>;
  exec(sql: string, params?: readonly Param[]): Promise<ExecResult>;
  /** Runs fn in one interactive transaction: committed when fn resolves, rolled back when it throws. */
  transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R>;
  /**
   * Calls onRows with the query's rows now and whenever they change.
   * Returns a function that stops it.
   */
  liveQuery<T extends Row = Row>(
    sql: string,
    params: readonly Param[] | undefined,
    onRows: (rows: T[]) => void,
    onError?: (err: LatticeError) => void,
  ): () => void;
  /** The current status; the same object until it changes. */
  readonly status: Status;
  /** Calls fn on every status change; returns a function that stops it. */
  onStatus(fn: (status: Status) => void): () => void;
  /** Calls fn when the service rejects a local transaction; returns a function that stops it. */
  onRejected(fn: (rejection: Rejection) => void): () => void;
  /**
   * Gives the worker a new auth token. If it is offline waiting for one
   * (the service refused the last token: `status.lastError.code` is
   * 'UNAUTHORIZED'), it reconnects with it at once; pending writes are sent
   * then. An open connection keeps its token until that one nears its `exp`,
   * then switches to this one.
   */
  setToken(token: string): Promise<void>;
  /** Detaches this page; the database closes when no page uses it. */
  close(): Promise<void>;
}

/** Options of createLattice. */
export interface LatticeConfig {
  /**
   * The service's WebSocket URL, e.g. "wss://sync.example.com"; or several
   * separated by commas, replicas of one service sharing a change log
   * (`lattice serve --log-url`): each connection tries the next one.
   */
  url: string;
  /** A JWT for the service (its `sub` is the user id). */
  token?: string;
  /**
   * Returns a current token for the service, e.g.
   * `async () => (await supabase.auth.getSession()).data.session?.access_token ?? ''`,
   * `() => auth.currentUser!.getIdToken()` (Firebase) or Clerk's `getToken`.
   * Called whenever the worker connects or reconnects, when the service
   * refuses a token (it expired, or was revoked), and a little before the
   * current token's `exp` (30 s, or 10% of its lifetime for short-lived
   * ones), so a live connection is switched to the new token before the old
   * one expires. It should return a cached token while that one is valid, as
   * those SDKs do. When it throws, the connection is retried with backoff.
   * Without it, an expired token leaves the database offline (its
   * `status.lastError` says why) until `setToken` is called.
   */
  getToken?: () => string | Promise<string>;
  /** Name of the local database; pages of one origin with the same name share it. */
  dbName: string;
  /** The schema object written by `lattice generate`: local tables exist before the first sync. */
  schema?: unknown;
  /** Where lattice.wasm is served; defaults to the copy next to this package's code. */
  wasmUrl?: string | URL;
  /** Where the worker script is served; defaults to the copy next to this package's code. */
  workerUrl?: string | URL;
  /**
   * How pages share the worker: 'shared' (one SharedWorker for all pages),
   * 'dedicated' (a Worker in one page elected by a Web Lock, the other pages
   * served through it), or 'auto' (shared where SharedWorker exists).
   */
  worker?: 'auto' | 'shared' | 'dedicated';
}
