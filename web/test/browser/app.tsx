// The page of the browser tests: the package's own sources, bundled by
// esbuild, driven from the test through window.lt.
import { memo, StrictMode, useLayoutEffect } from 'react';
import { createRoot } from 'react-dom/client';
import type { Root } from 'react-dom/client';
import { createLattice } from '../../src/index.js';
import type { Lattice, LinkHandlers, Row, Shape, RequestMessage, WorkerMessage } from '../../src/index.js';
import { electedWorkerLink, sharedWorkerLink } from '../../src/link.js';
import { LatticeProvider, useLiveQuery, useShape, useSyncStatus } from '../../src/react.js';
import type { Status } from '../../src/index.js';

interface Commit {
  t: number; // epoch ms, sub-millisecond
  titles: string[];
}

const now = () => performance.timeOrigin + performance.now();

const state = {
  db: undefined as Lattice | undefined,
  sent: [] as RequestMessage[],
  events: [] as WorkerMessage[],
  liveCalls: 0,
  activeLives: 0,
  commits: [] as Commit[],
  root: undefined as Root | undefined,
  statuses: [] as Status[], // every status the database reported
  statusTimes: [] as number[], // when (epoch ms)
  getTokenCalls: 0,
  getTokenTimes: [] as number[],
  renders: new Map<string, number>(), // renders of each <Item> by row id
  watches: new Map<string, Row[][]>(), // every result each watch received
};

// Set by the test (page.exposeFunction): a token signed by the test service.
declare const mintToken: () => Promise<string>;

// Counts what the hooks ask of the database; everything goes to the real one.
function counted(db: Lattice): Lattice {
  return {
    sync: (s) => db.sync(s),
    query: (sql, params) => db.query(sql, params),
    exec: (sql, params) => db.exec(sql, params),
    transaction: (fn) => db.transaction(fn),
    liveQuery: (sql, params, onRows, onError) => {
      state.liveCalls++;
      state.activeLives++;
      const stop = db.liveQuery(sql, params, onRows, onError);
      let stopped = false;
      return () => {
        if (!stopped) state.activeLives--;
        stopped = true;
        stop();
      };
    },
    get status() {
      return db.status;
    },
    onStatus: (fn) => db.onStatus(fn),
    onRejected: (fn) => db.onRejected(fn),
    setToken: (t) => db.setToken(t),
    close: () => db.close(),
  };
}

// One row of the list: memoized, so it renders again only when its row
// object changes (the package keeps the objects of unchanged rows).
const Item = memo(function Item(props: { row: Row }) {
  const id = String(props.row['id']);
  state.renders.set(id, (state.renders.get(id) ?? 0) + 1);
  return <li>{String(props.row['title'])}</li>;
});

function List(props: { sql: string; params: unknown[]; shape: Shape }) {
  const shape = useShape(props.shape);
  // A new params array each render, on purpose.
  const { rows, error } = useLiveQuery(props.sql, [...(props.params as string[])]);
  const titles = rows.map((r: Row) => String(r['title']));
  const status = useSyncStatus();
  useLayoutEffect(() => {
    state.commits.push({ t: now(), titles });
  }, [rows]);
  return (
    <div>
      <p id="synced">{String(shape.synced)}</p>
      <p id="status">
        {status.state} {status.pending} {status.lastError ? `${status.lastError.code}: ${status.lastError.message}` : ''}
      </p>
      {error ? <p id="error">{error.code}</p> : null}
      <ul>
        {rows.map((r: Row) => (
          <Item key={String(r['id'])} row={r} />
        ))}
      </ul>
    </div>
  );
}

const lt = {
  /** token: the initial token; getToken: answer with mintToken(). */
  async open(opts: { url: string; dbName: string; worker: 'shared' | 'dedicated'; token?: string; getToken?: boolean }) {
    const workerUrl = new URL('/worker.js', location.href);
    workerUrl.searchParams.set('wasm', new URL('/lattice.wasm', location.href).href);
    const config: Parameters<typeof createLattice>[0] = { url: opts.url, dbName: opts.dbName, worker: opts.worker };
    if (opts.token !== undefined) config.token = opts.token;
    if (opts.getToken) {
      config.getToken = () => {
        state.getTokenCalls++;
        state.getTokenTimes.push(Date.now());
        return mintToken();
      };
    }
    const db = await createLattice(
      config,
      (tab: string, h: LinkHandlers) => {
        const logged: LinkHandlers = {
          ...h,
          message(m) {
            if (m.id === undefined) state.events.push(m);
            h.message(m);
          },
        };
        const link =
          opts.worker === 'shared'
            ? sharedWorkerLink(workerUrl, opts.dbName, logged)
            : electedWorkerLink(workerUrl, opts.dbName, tab, logged);
        return {
          send(m: RequestMessage) {
            state.sent.push(m);
            link.send(m);
          },
          close: () => link.close(),
        };
      },
    );
    state.db = counted(db);
    state.statuses.push(db.status);
    state.statusTimes.push(Date.now());
    db.onStatus((s) => {
      state.statuses.push(s);
      state.statusTimes.push(Date.now());
    });
    return db.status.state;
  },
  mount(opts: { strict: boolean; releaseDelay: number; sql: string; params: unknown[]; shape: Shape }) {
    const el = document.getElementById('root')!;
    state.root = createRoot(el);
    const tree = (
      <LatticeProvider db={state.db!} releaseDelay={opts.releaseDelay}>
        <List sql={opts.sql} params={opts.params} shape={opts.shape} />
      </LatticeProvider>
    );
    state.root.render(opts.strict ? <StrictMode>{tree}</StrictMode> : tree);
  },
  unmount() {
    state.root?.unmount();
    state.root = undefined;
  },
  /** Resolves with the time of the first commit showing title. */
  async waitTitle(title: string, timeoutMs = 10_000): Promise<number> {
    const deadline = now() + timeoutMs;
    while (now() < deadline) {
      const c = state.commits.find((c) => c.titles.includes(title));
      if (c) return c.t;
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new Error(`no render showed ${title} within ${timeoutMs} ms; last: ${JSON.stringify(state.commits.at(-1))}`);
  },
  counts() {
    return {
      liveCalls: state.liveCalls,
      activeLives: state.activeLives,
      liveOps: state.sent.filter((m) => m.op === 'live').length,
      unliveOps: state.sent.filter((m) => m.op === 'unlive').map((m) => m['live'] as number),
      syncOps: state.sent.filter((m) => m.op === 'sync').length,
      unsyncOps: state.sent.filter((m) => m.op === 'unsync').length,
    };
  },
  /** Worker live ids that got a rows event at or after index from. */
  rowsEventsSince(from: number): number[] {
    return state.events.slice(from).filter((e) => e.event === 'rows').map((e) => e['live'] as number);
  },
  eventCount: () => state.events.length,
  /** Renders of each row's <Item> so far, by id. */
  renders: () => Object.fromEntries(state.renders),
  /** Syncs a shape; resolves when its data is local. */
  sync: async (shape: Shape) => {
    await state.db!.sync(shape).synced;
  },
  /** Starts a live query (no React) whose results are kept under name. */
  watch(name: string, sql: string, params: unknown[]) {
    const got: Row[][] = [];
    state.watches.set(name, got);
    state.db!.liveQuery(sql, params as never, (rows) => got.push(rows), (err) => console.error(`watch ${name}:`, err));
  },
  /** Number of results watch name received. */
  watchCount: (name: string) => state.watches.get(name)?.length ?? 0,
  /** The last result of watch name (as plain data). */
  watchLast: (name: string) => state.watches.get(name)?.at(-1),
  /**
   * Compares the last two results of watch name by row id: which rows are
   * the same objects as before, which are new objects, and whether the
   * array itself is new.
   */
  watchIdentity(name: string) {
    const got = state.watches.get(name) ?? [];
    const prev = got.at(-2) ?? [];
    const cur = got.at(-1) ?? [];
    const before = new Map(prev.map((r) => [String(r['id']), r]));
    const same: string[] = [];
    const fresh: string[] = [];
    for (const r of cur) (before.get(String(r['id'])) === r ? same : fresh).push(String(r['id']));
    return { same, fresh, newArray: prev !== cur, n: got.length };
  },
  /** Runs a statement through the database (tests write with it). */
  exec: (sql: string, params: unknown[]) => state.db!.exec(sql, params as never),
  query: (sql: string, params: unknown[]) => state.db!.query(sql, params as never),
  status: () => state.db!.status,
  statuses: () => state.statuses,
  getTokenCalls: () => state.getTokenCalls,
  /** What happened when (for failure messages): statuses, getToken calls, first renders of titles. */
  timeline: () => ({
    statuses: state.statuses.map((s, i) => ({ t: state.statusTimes[i], ...s })),
    getToken: state.getTokenTimes,
    commits: state.commits.map((c) => ({ t: Math.round(c.t), n: c.titles.length })),
  }),
  setToken: (t: string) => state.db!.setToken(t),
  statusText: () => document.getElementById('status')?.textContent ?? '',
  close: () => state.db!.close(),
};

(globalThis as unknown as { lt: typeof lt }).lt = lt;
