// Shared, reference-counted live queries and shapes for the React hooks.
// One store per <LatticeProvider>: components asking for the same (sql,
// params) or the same shape share one subscription; it is released a little
// after its last user goes, so StrictMode's mount/unmount/mount and a
// suspended render that mounts later reuse it instead of starting another.

import { toLatticeError } from './errors.js';
import type { LatticeError } from './errors.js';
import type { Lattice, Param, Row, Shape, SyncRequest } from './types.js';

/** The state of a live query as the hooks return it. */
export interface LiveQueryState<T extends Row = Row> {
  /** The latest rows; empty while loading. */
  rows: T[];
  error: LatticeError | undefined;
  /** True until the first result (or error) arrived. */
  loading: boolean;
}

/** The state of a shape as useShape returns it. */
export interface ShapeState {
  /** True once the shape's initial data is local. */
  synced: boolean;
  error: LatticeError | undefined;
}

/** A canonical text for parameters and shapes: equal values give equal keys. */
export function valueKey(v: unknown): string {
  if (v === null) return 'N';
  if (v === undefined) return 'U';
  switch (typeof v) {
    case 'number':
      return Object.is(v, -0) ? 'd-0' : 'd' + String(v);
    case 'bigint':
      return 'b' + v.toString();
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'T' : 'F';
  }
  if (v instanceof Date) return 'D' + String(v.getTime());
  if (v instanceof Uint8Array) {
    let s = 'x';
    for (const b of v) s += b.toString(16).padStart(2, '0');
    return s;
  }
  if (Array.isArray(v)) return '[' + v.map(valueKey).join(',') + ']';
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + valueKey(o[k])).join(',') + '}';
  }
  return '?' + String(v);
}

abstract class Entry<S> {
  snapshot: S;
  /** Resolves once the first outcome is known (for Suspense). */
  readonly ready: Promise<void>;
  protected settle!: () => void;
  protected settled = false;
  #listeners = new Set<() => void>();
  #refs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #used = false; // subscribed at least once

  constructor(
    readonly key: string,
    initial: S,
    private readonly owner: Map<string, Entry<unknown>>,
    private readonly delay: number,
  ) {
    this.snapshot = initial;
    this.ready = new Promise<void>((resolve) => (this.settle = resolve));
  }

  /** Registers the entry under its key and starts it (after construction, so subclass fields exist). */
  begin(): this {
    this.owner.set(this.key, this as Entry<unknown>);
    this.#run();
    // A render that never commits leaves the entry unused: release it later.
    this.#schedule();
    return this;
  }

  protected abstract start(): void;
  protected abstract stop(): void;

  /** For useSyncExternalStore: stable per entry. */
  readonly subscribe = (listener: () => void): (() => void) => {
    this.#refs++;
    this.#used = true;
    this.#cancel();
    this.#listeners.add(listener);
    if (!this.#running) {
      // Released while a component still held it (a very slow commit): start again.
      if (!this.owner.has(this.key)) this.owner.set(this.key, this as Entry<unknown>);
      this.#run();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#listeners.delete(listener);
      this.#refs--;
      if (this.#refs === 0) this.#schedule();
    };
  };

  readonly getSnapshot = (): S => this.snapshot;

  get refs(): number {
    return this.#refs;
  }

  protected publish(next: S): void {
    this.snapshot = next;
    if (!this.settled) {
      this.settled = true;
      this.settle();
      // An entry created by a render that never committed waited for its first
      // result before its release clock started (Suspense retries need it).
      if (this.#refs === 0) this.#schedule();
    }
    for (const l of [...this.#listeners]) l();
  }

  #run(): void {
    this.#running = true;
    this.start();
  }

  #schedule(): void {
    this.#cancel();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#refs > 0 || !this.#running) return;
      // Not yet used and no result yet: a suspended render will come back for it.
      if (!this.#used && !this.settled) return;
      this.#running = false;
      if (this.owner.get(this.key) === (this as Entry<unknown>)) this.owner.delete(this.key);
      this.stop();
    }, this.delay);
  }

  #cancel(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

const loadingState: LiveQueryState = Object.freeze({ rows: [], error: undefined, loading: true }) as LiveQueryState;

class LiveEntry extends Entry<LiveQueryState> {
  #unsubscribe: (() => void) | undefined;

  constructor(
    key: string,
    owner: Map<string, Entry<unknown>>,
    delay: number,
    private readonly db: Lattice,
    private readonly sql: string,
    private readonly params: readonly Param[] | undefined,
  ) {
    super(key, loadingState, owner, delay);
  }

  protected start(): void {
    this.#unsubscribe = this.db.liveQuery(
      this.sql,
      this.params,
      (rows) => this.publish({ rows, error: undefined, loading: false }),
      (err) => this.publish({ rows: this.snapshot.rows, error: toLatticeError(err), loading: false }),
    );
  }

  protected stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }
}

const unsyncedState: ShapeState = Object.freeze({ synced: false, error: undefined }) as ShapeState;

class ShapeEntry extends Entry<ShapeState> {
  #request: SyncRequest | undefined;

  constructor(
    key: string,
    owner: Map<string, Entry<unknown>>,
    delay: number,
    private readonly db: Lattice,
    private readonly shape: Shape,
  ) {
    super(key, unsyncedState, owner, delay);
  }

  protected start(): void {
    const req = this.db.sync(this.shape);
    this.#request = req;
    req.synced.then(
      () => {
        if (this.#request === req) this.publish({ synced: true, error: undefined });
      },
      (err: unknown) => {
        if (this.#request === req) this.publish({ synced: false, error: toLatticeError(err) });
      },
    );
  }

  protected stop(): void {
    const req = this.#request;
    this.#request = undefined;
    req?.unsubscribe().catch(() => {});
  }
}

/** The live queries and shapes of one provider, shared by key. */
export class SubscriptionStore {
  readonly #live = new Map<string, Entry<unknown>>();
  readonly #shapes = new Map<string, Entry<unknown>>();

  /**
   * @param db the database the hooks read
   * @param releaseDelay milliseconds an unused subscription is kept for reuse
   */
  constructor(
    readonly db: Lattice,
    readonly releaseDelay = 1000,
  ) {}

  /** The shared live query for (sql, params), started if needed. */
  live(sql: string, params: readonly Param[] | undefined): LiveEntryHandle {
    const key = sql + '\u0000' + valueKey(params ?? []);
    const found = this.#live.get(key);
    if (found) return found as unknown as LiveEntryHandle;
    return new LiveEntry(key, this.#live, this.releaseDelay, this.db, sql, params ? [...params] : undefined).begin();
  }

  /** The shared sync of a shape, started if needed. */
  shape(shape: Shape): ShapeEntryHandle {
    const key = valueKey(shape);
    const found = this.#shapes.get(key);
    if (found) return found as unknown as ShapeEntryHandle;
    return new ShapeEntry(key, this.#shapes, this.releaseDelay, this.db, { ...shape }).begin();
  }

  /** Number of live queries and shapes currently held (for tests and debugging). */
  get size(): { live: number; shapes: number } {
    return { live: this.#live.size, shapes: this.#shapes.size };
  }
}

/** A shared subscription as the hooks use it. */
export interface EntryHandle<S> {
  readonly key: string;
  readonly ready: Promise<void>;
  subscribe(listener: () => void): () => void;
  getSnapshot(): S;
}
export type LiveEntryHandle = EntryHandle<LiveQueryState>;
export type ShapeEntryHandle = EntryHandle<ShapeState>;
