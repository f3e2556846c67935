import { LatticeError, toLatticeError } from './errors.js';
import type { ErrorInfo } from './errors.js';
import { electedWorkerLink, sharedWorkerLink } from './link.js';
import type { Link, LinkHandlers, RequestMessage, WorkerMessage } from './link.js';
import type {
  ExecResult,
  Lattice,
  LatticeConfig,
  Param,
  Rejection,
  Row,
  Shape,
  ShapeHandle,
  Status,
  SyncRequest,
  Transaction,
} from './types.js';

/** Builds the transport to the worker; the default picks SharedWorker or an elected Worker. */
export type LinkFactory = (tab: string, h: LinkHandlers) => Link;

interface Pending {
  op: string;
  resolve(result: unknown): void;
  reject(err: LatticeError): void;
}

interface LiveRecord {
  sql: string;
  params: readonly Param[] | undefined;
  onRows(rows: Row[]): void;
  onError(err: LatticeError): void;
  live: number | undefined; // the worker's id, once it answered
  closed: boolean;
  last: Row[] | undefined; // the rows last delivered, which deltas refer to
}

interface ShapeRecord {
  shape: Shape;
  shapeId: string | undefined;
  closed: boolean;
  done: boolean;
  resolve(): void;
  reject(err: LatticeError): void;
}

// Requests that only read, so they may be sent again when the worker behind the link changed.
const retryable = new Set(['query', 'status', 'setToken', 'tokenError']);

// Marks errors caused by a link reset, so reads can be retried.
const resetErrors = new WeakSet<LatticeError>();

function randomId(): string {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// The asset URLs are written as literal `new URL('./…', import.meta.url)` so
// bundlers (Vite, webpack, Rollup) see them and emit the files.
function absolute(given: string | URL): string {
  return new URL(given, globalThis.location?.href).href;
}

function wasmUrlOf(config: LatticeConfig): string {
  return config.wasmUrl !== undefined ? absolute(config.wasmUrl) : new URL('./lattice.wasm', import.meta.url).href;
}

function workerUrlOf(config: LatticeConfig): string {
  return config.workerUrl !== undefined ? absolute(config.workerUrl) : new URL('./worker.js', import.meta.url).href;
}

function defaultLink(config: LatticeConfig): LinkFactory {
  const worker = new URL(workerUrlOf(config));
  // The worker starts loading the wasm before the page's `open` arrives: tell it where in its URL.
  worker.searchParams.set('wasm', wasmUrlOf(config));
  const workerUrl = worker.href;
  const mode = config.worker ?? 'auto';
  const shared = mode === 'shared' || (mode === 'auto' && typeof SharedWorker !== 'undefined');
  if (shared) {
    if (typeof SharedWorker === 'undefined') throw new LatticeError('INTERNAL', 'SharedWorker is not available in this browser');
    return (_tab, h) => sharedWorkerLink(workerUrl, config.dbName, h);
  }
  if (typeof navigator === 'undefined' || !navigator.locks || typeof BroadcastChannel === 'undefined') {
    throw new LatticeError('INTERNAL', 'Lattice needs SharedWorker, or Web Locks and BroadcastChannel');
  }
  return (tab, h) => electedWorkerLink(workerUrl, config.dbName, tab, h);
}

/** Holds the Web Lock `lattice:tab:<tab>` until release is called, so the worker can see the page die. */
async function holdTabLock(tab: string): Promise<() => void> {
  if (typeof navigator === 'undefined' || !navigator.locks) return () => {};
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  await new Promise<void>((granted, failed) => {
    navigator.locks
      .request('lattice:tab:' + tab, () => {
        granted();
        return held;
      })
      .catch(failed);
  });
  return release;
}

/**
 * Opens (or joins) the local database `dbName` and starts syncing with the
 * service at `url`. Resolves once the worker has the database open.
 */
export async function createLattice(config: LatticeConfig, link?: LinkFactory): Promise<Lattice> {
  if (!config || typeof config.url !== 'string' || typeof config.dbName !== 'string' || config.dbName === '') {
    throw new LatticeError('BAD_REQUEST', 'createLattice needs { url, dbName }');
  }
  if (config.getToken !== undefined && typeof config.getToken !== 'function') {
    throw new LatticeError('BAD_REQUEST', 'createLattice: getToken must be a function');
  }
  const makeLink = link ?? defaultLink(config);
  const tab = randomId();
  const releaseTab = await holdTabLock(tab);
  const db = new LatticeClient(config, tab, makeLink, releaseTab);
  try {
    await db.opened;
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

class LatticeClient implements Lattice {
  readonly opened: Promise<void>;
  #config: LatticeConfig;
  #tab: string;
  #link: Link;
  #releaseTab: () => void;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #status: Status = { state: 'connecting', pending: 0 };
  #statusListeners = new Set<(s: Status) => void>();
  #rejectListeners = new Set<(r: Rejection) => void>();
  #lives = new Set<LiveRecord>();
  #liveById = new Map<number, LiveRecord>();
  #early = new Map<number, WorkerMessage[]>(); // rows events that beat the reply to `live`
  #livesAsked = 0;
  #shapes = new Set<ShapeRecord>();
  #shapeRefs = new Map<string, number>(); // the worker has one subscription per shape id
  #closed = false;
  #failure: LatticeError | undefined;
  #tokenAsked: Promise<void> | undefined; // a getToken call answering the worker

  constructor(config: LatticeConfig, tab: string, makeLink: LinkFactory, releaseTab: () => void) {
    this.#config = { ...config };
    this.#tab = tab;
    this.#releaseTab = releaseTab;
    this.#link = makeLink(tab, {
      message: (m) => this.#onMessage(m),
      reset: () => this.#onReset(),
      fail: (err) => this.#onFail(err),
    });
    this.opened = this.#open();
  }

  #openConfig(): Record<string, unknown> {
    const c = this.#config;
    const out: Record<string, unknown> = {
      url: c.url,
      dbName: c.dbName,
      wasmUrl: wasmUrlOf(c),
    };
    if (c.token !== undefined) out['token'] = c.token;
    if (c.getToken !== undefined) out['refreshToken'] = true;
    if (c.schema !== undefined) out['schema'] = c.schema;
    return out;
  }

  async #open(): Promise<void> {
    const r = (await this.#call('open', { config: this.#openConfig(), tab: this.#tab })) as { status?: Status };
    if (r && r.status) this.#setStatus(r.status);
  }

  #call(op: string, args: Record<string, unknown> = {}): Promise<unknown> {
    if (this.#closed && op !== 'close') return Promise.reject(new LatticeError('CLOSED', 'the database is closed'));
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      this.#pending.set(id, { op, resolve, reject });
      const msg: RequestMessage = { ...args, id, op };
      this.#link.send(msg);
    });
  }

  // A read that survives a change of the worker behind the link.
  async #read(op: string, args: Record<string, unknown>): Promise<unknown> {
    try {
      return await this.#call(op, args);
    } catch (err) {
      if (err instanceof LatticeError && resetErrors.has(err) && retryable.has(op)) return this.#call(op, args);
      throw err;
    }
  }

  #onMessage(m: WorkerMessage): void {
    if (m.id !== undefined) {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(LatticeError.from(m.error));
      return;
    }
    switch (m.event) {
      case 'rows': {
        const live = m['live'] as number;
        const rec = this.#liveById.get(live);
        if (!rec) {
          if (this.#livesAsked > 0) {
            const q = this.#early.get(live);
            if (q) q.push(m);
            else this.#early.set(live, [m]);
          }
          return;
        }
        this.#deliverRows(rec, m);
        return;
      }
      case 'status':
        this.#setStatus(m['status'] as Status);
        return;
      case 'token':
        // The worker needs a token (connecting, refused, or about to expire).
        this.#answerToken();
        return;
      case 'rejected': {
        const r: Rejection = { txnId: m['txnId'], error: LatticeError.from(m.error) };
        for (const fn of [...this.#rejectListeners]) fn(r);
        return;
      }
    }
  }

  #deliverRows(rec: LiveRecord, m: WorkerMessage): void {
    if (rec.closed) return;
    if (m.error) {
      rec.onError(LatticeError.from(m.error));
      return;
    }
    let rows = m['rows'] as Row[];
    if (m['delta'] === true) {
      const prev = rec.last;
      if (!prev) {
        rec.onError(new LatticeError('INTERNAL', 'live query delta without a previous result'));
        return;
      }
      rows = applyDelta(prev, m['rows'] as (Row | number)[]);
    }
    rec.last = rows;
    rec.onRows(rows);
  }

  #setStatus(s: Status): void {
    const cur = this.#status;
    const sameError =
      cur.lastError?.code === s.lastError?.code && cur.lastError?.message === s.lastError?.message;
    if (cur.state === s.state && cur.pending === s.pending && sameError) return;
    const next: Status = { state: s.state, pending: s.pending };
    if (s.lastError) next.lastError = { code: s.lastError.code, message: s.lastError.message };
    this.#status = next;
    for (const fn of [...this.#statusListeners]) fn(next);
  }

  #onReset(): void {
    // Everything in flight went to a worker that is gone.
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#liveById.clear();
    this.#early.clear();
    this.#livesAsked = 0;
    this.#shapeRefs.clear();
    this.#setStatus({ state: 'connecting', pending: this.#status.pending });
    if (this.#closed) return;
    this.#open().catch((err: unknown) => this.#onFail(toLatticeError(err)));
    for (const rec of this.#lives) {
      rec.live = undefined;
      this.#startLive(rec);
    }
    for (const rec of this.#shapes) {
      rec.shapeId = undefined;
      this.#startShape(rec);
    }
    for (const p of pending) {
      const err = new LatticeError(
        'CLOSED',
        `the page that ran the database went away during "${p.op}"` +
          (retryable.has(p.op) ? '' : '; it may or may not have been applied'),
      );
      resetErrors.add(err);
      p.reject(err);
    }
  }

  #onFail(err: LatticeError): void {
    this.#failure = err;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const info: ErrorInfo = { code: err.code, message: err.message };
    this.#setStatus({ state: 'offline', pending: this.#status.pending, lastError: info });
    for (const p of pending) p.reject(err);
    for (const rec of this.#lives) if (!rec.closed) rec.onError(err);
    for (const rec of this.#shapes) if (!rec.done) rec.reject(err);
  }

  // Public API.

  get status(): Status {
    return this.#status;
  }

  onStatus(fn: (status: Status) => void): () => void {
    const wrapped = (s: Status) => fn(s);
    this.#statusListeners.add(wrapped);
    return () => {
      this.#statusListeners.delete(wrapped);
    };
  }

  onRejected(fn: (rejection: Rejection) => void): () => void {
    const wrapped = (r: Rejection) => fn(r);
    this.#rejectListeners.add(wrapped);
    return () => {
      this.#rejectListeners.delete(wrapped);
    };
  }

  async query<T extends Row = Row>(sql: string, params?: readonly Param[]): Promise<T[]> {
    const r = (await this.#read('query', stmt(sql, params))) as { rows: T[] };
    return r.rows;
  }

  async exec(sql: string, params?: readonly Param[]): Promise<ExecResult> {
    const r = (await this.#call('exec', stmt(sql, params))) as ExecResult;
    return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
  }

  async transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
    const { tx } = (await this.#call('begin')) as { tx: number };
    let done = false;
    const inTx = (op: string, sql: string, params: readonly Param[] | undefined) => {
      if (done) return Promise.reject(new LatticeError('BAD_REQUEST', 'the transaction is already finished'));
      return this.#call(op, { ...stmt(sql, params), tx });
    };
    const handle: Transaction = {
      query: async <T extends Row = Row>(sql: string, params?: readonly Param[]) =>
        ((await inTx('query', sql, params)) as { rows: T[] }).rows,
      exec: async (sql: string, params?: readonly Param[]) => {
        const r = (await inTx('exec', sql, params)) as ExecResult;
        return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
      },
    };
    let result: R;
    try {
      result = await fn(handle);
    } catch (err) {
      done = true;
      await this.#call('rollback', { tx }).catch(() => {});
      throw err;
    }
    done = true;
    await this.#call('commit', { tx });
    return result;
  }

  liveQuery<T extends Row = Row>(
    sql: string,
    params: readonly Param[] | undefined,
    onRows: (rows: T[]) => void,
    onError?: (err: LatticeError) => void,
  ): () => void {
    const rec: LiveRecord = {
      sql,
      params,
      onRows: onRows as (rows: Row[]) => void,
      onError: onError ?? ((err) => console.error('lattice: live query failed:', err)),
      live: undefined,
      closed: false,
      last: undefined,
    };
    if (this.#closed) {
      queueMicrotask(() => rec.onError(new LatticeError('CLOSED', 'the database is closed')));
      return () => {};
    }
    this.#lives.add(rec);
    this.#startLive(rec);
    return () => {
      if (rec.closed) return;
      rec.closed = true;
      this.#lives.delete(rec);
      if (rec.live !== undefined) {
        this.#liveById.delete(rec.live);
        this.#call('unlive', { live: rec.live }).catch(() => {});
      }
    };
  }

  #startLive(rec: LiveRecord): void {
    this.#livesAsked++;
    this.#call('live', stmt(rec.sql, rec.params)).then(
      (r) => {
        this.#livesAsked--;
        const live = (r as { live: number }).live;
        const early = this.#early.get(live);
        this.#early.delete(live);
        if (this.#livesAsked === 0) this.#early.clear();
        if (rec.closed || !this.#lives.has(rec)) {
          this.#call('unlive', { live }).catch(() => {});
          return;
        }
        rec.live = live;
        this.#liveById.set(live, rec);
        if (early) for (const m of early) this.#deliverRows(rec, m);
      },
      (err: unknown) => {
        const e = toLatticeError(err);
        if (resetErrors.has(e)) return; // asked again after the reset
        this.#livesAsked = Math.max(0, this.#livesAsked - 1);
        if (!rec.closed) rec.onError(e);
      },
    );
  }

  sync(shape: Shape): SyncRequest {
    let resolve!: () => void;
    let reject!: (err: LatticeError) => void;
    const synced = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const rec: ShapeRecord = {
      shape: { ...shape },
      shapeId: undefined,
      closed: false,
      done: false,
      resolve: () => {
        rec.done = true;
        resolve();
      },
      reject: (err) => {
        rec.done = true;
        reject(err);
      },
    };
    const unsubscribe = async (): Promise<void> => {
      if (rec.closed) return;
      rec.closed = true;
      this.#shapes.delete(rec);
      if (!rec.done) rec.reject(new LatticeError('CLOSED', 'the shape was unsubscribed before its data was local'));
      if (rec.shapeId !== undefined) await this.#releaseShape(rec.shapeId);
    };
    const handle: ShapeHandle = {
      get shapeId() {
        return rec.shapeId;
      },
      synced,
      unsubscribe,
    };
    if (this.#closed) rec.reject(new LatticeError('CLOSED', 'the database is closed'));
    else {
      this.#shapes.add(rec);
      this.#startShape(rec);
    }
    const request = synced.then(() => handle);
    // Whoever awaits one of the two promises sees the error; neither is reported unhandled alone.
    synced.catch(() => {});
    request.catch(() => {});
    return Object.assign(request, { synced, unsubscribe });
  }

  #startShape(rec: ShapeRecord): void {
    const shape: Record<string, unknown> = { table: rec.shape.table };
    if (rec.shape.where !== undefined) shape['where'] = rec.shape.where;
    if (rec.shape.params !== undefined) shape['params'] = [...rec.shape.params];
    if (rec.shape.include !== undefined) shape['include'] = rec.shape.include;
    if (rec.shape.id !== undefined) shape['id'] = rec.shape.id;
    this.#call('sync', { shape }).then(
      (r) => {
        const shapeId = (r as { shapeId: string }).shapeId;
        this.#shapeRefs.set(shapeId, (this.#shapeRefs.get(shapeId) ?? 0) + 1);
        if (rec.closed) {
          this.#releaseShape(shapeId).catch(() => {});
          return;
        }
        rec.shapeId = shapeId;
        if (!rec.done) rec.resolve();
      },
      (err: unknown) => {
        const e = toLatticeError(err);
        if (resetErrors.has(e)) return; // asked again after the reset
        if (!rec.done) rec.reject(e);
      },
    );
  }

  // Unsyncs a shape once no handle of this page holds it.
  async #releaseShape(shapeId: string): Promise<void> {
    const n = (this.#shapeRefs.get(shapeId) ?? 1) - 1;
    if (n > 0) {
      this.#shapeRefs.set(shapeId, n);
      return;
    }
    this.#shapeRefs.delete(shapeId);
    if (!this.#closed) await this.#call('unsync', { shapeId });
  }

  // Calls getToken for the worker and sends it the result (one call at a time).
  #answerToken(): void {
    const getToken = this.#config.getToken;
    if (!getToken || this.#closed || this.#tokenAsked) return;
    this.#tokenAsked = (async () => {
      let token: unknown;
      try {
        token = await getToken();
        if (typeof token !== 'string') throw new Error(`getToken returned ${typeof token}, not a string`);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        await this.#call('tokenError', { message }).catch(() => {});
        return;
      }
      this.#config.token = token;
      await this.#read('setToken', { token }).catch(() => {});
    })().finally(() => {
      this.#tokenAsked = undefined;
    });
  }

  async setToken(token: string): Promise<void> {
    this.#config.token = token;
    await this.#read('setToken', { token });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const rec of this.#lives) rec.closed = true;
    this.#lives.clear();
    this.#liveById.clear();
    for (const rec of this.#shapes) {
      rec.closed = true;
      if (!rec.done) rec.reject(new LatticeError('CLOSED', 'the database was closed'));
    }
    this.#shapes.clear();
    if (!this.#failure) {
      await Promise.race([
        this.#call('close').catch(() => {}),
        new Promise((resolve) => setTimeout(resolve, 5000)),
      ]);
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new LatticeError('CLOSED', 'the database was closed'));
    this.#link.close();
    this.#releaseTab();
  }
}

function stmt(sql: string, params: readonly Param[] | undefined): Record<string, unknown> {
  if (typeof sql !== 'string') throw new LatticeError('BAD_REQUEST', 'sql must be a string');
  return params === undefined ? { sql } : { sql, params: [...params] };
}

/**
 * The rows of a live query's delta event: each element is a new row, or a
 * number n >= 0 (the previous result's row n, the same object), or -c after
 * a kept row j (the c rows after j, the same objects). MESSAGES.md.
 */
export function applyDelta(prev: readonly Row[], delta: readonly (Row | number)[]): Row[] {
  const out: Row[] = [];
  let last = -1;
  for (const el of delta) {
    if (typeof el !== 'number') {
      out.push(el);
    } else if (el >= 0) {
      out.push(prev[el]!);
      last = el;
    } else {
      for (let k = 1; k <= -el; k++) out.push(prev[last + k]!);
      last -= el;
    }
  }
  return out;
}
