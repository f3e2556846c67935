import { StrictMode, Suspense, useState } from 'react';
import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { LatticeError } from '../src/errors.js';
import {
  LatticeProvider,
  useLattice,
  useLiveQuery,
  useLiveQuerySuspense,
  useShape,
  useSyncStatus,
} from '../src/react.js';
import type { Param, Row } from '../src/types.js';
import { MemoryDb } from './memorydb.js';

// Short release delay so tests can watch subscriptions go away.
const DELAY = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Lets the release timers run.
const afterRelease = () => act(() => sleep(DELAY * 3));

afterEach(() => cleanup());

function Names(props: { sql?: string; params?: Param[]; label?: string }) {
  const { rows, loading, error } = useLiveQuery(props.sql ?? 'select name from t where id > ?', props.params ?? [0]);
  if (error) return <p>error {error.code}</p>;
  if (loading) return <p>loading</p>;
  return <p>{(props.label ?? '') + rows.map((r) => String(r['name'])).join(',')}</p>;
}

function app(db: MemoryDb, children: React.ReactNode, strict = false) {
  const tree = (
    <LatticeProvider db={db} releaseDelay={DELAY}>
      {children}
    </LatticeProvider>
  );
  return strict ? <StrictMode>{tree}</StrictMode> : tree;
}

describe('useLiveQuery', () => {
  it('shows loading, then the rows, and re-renders on each new result', async () => {
    const db = new MemoryDb();
    render(app(db, <Names />));
    expect(screen.getByText('loading')).toBeTruthy();
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }]));
    expect(screen.getByText('a')).toBeTruthy();
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }, { name: 'b' }]));
    expect(screen.getByText('a,b')).toBeTruthy();
    expect(db.liveCalls).toHaveLength(1);
    expect(db.liveCalls[0]!.params).toEqual([0]);
  });

  it('does not resubscribe when a new params array with equal values is passed each render', async () => {
    const db = new MemoryDb();
    let bump!: () => void;
    function Parent() {
      const [n, setN] = useState(0);
      bump = () => setN((x) => x + 1);
      // A fresh array literal every render.
      return <Names params={[1, 'x', 2n, null]} label={`${n}:`} />;
    }
    render(app(db, <Parent />));
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }]));
    expect(screen.getByText('0:a')).toBeTruthy();
    for (let i = 0; i < 5; i++) act(() => bump());
    expect(screen.getByText('5:a')).toBeTruthy();
    expect(db.liveCalls).toHaveLength(1);
    expect(db.lives.size).toBe(1);
  });

  it('resubscribes when a parameter value changes and releases the old live query', async () => {
    const db = new MemoryDb();
    const view = render(app(db, <Names params={[1]} />));
    expect(db.liveCalls).toHaveLength(1);
    view.rerender(app(db, <Names params={[2]} />));
    expect(db.liveCalls).toHaveLength(2);
    expect(db.liveCalls[1]!.params).toEqual([2]);
    // Values that only look alike are different parameters.
    view.rerender(app(db, <Names params={['2']} />));
    expect(db.liveCalls).toHaveLength(3);
    await afterRelease();
    expect(db.lives.size).toBe(1);
    expect([...db.lives][0]!.params).toEqual(['2']);
  });

  it('subscribes once under StrictMode and releases on unmount', async () => {
    const db = new MemoryDb();
    const view = render(app(db, <Names />, true));
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }]));
    expect(screen.getByText('a')).toBeTruthy();
    await afterRelease();
    expect(db.liveCalls).toHaveLength(1);
    expect(db.lives.size).toBe(1);
    view.unmount();
    expect(db.lives.size).toBe(1); // kept for reuse a moment
    await afterRelease();
    expect(db.lives.size).toBe(0);
  });

  it('shares one live query between components asking the same thing', async () => {
    const db = new MemoryDb();
    const view = render(
      app(
        db,
        <>
          <Names label="x" />
          <Names label="y" params={[0]} />
        </>,
      ),
    );
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }]));
    expect(screen.getByText('xa')).toBeTruthy();
    expect(screen.getByText('ya')).toBeTruthy();
    expect(db.liveCalls).toHaveLength(1);
    // One of them goes: the query stays for the other.
    view.rerender(app(db, <Names label="x" />));
    await afterRelease();
    expect(db.lives.size).toBe(1);
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'b' }]));
    expect(screen.getByText('xb')).toBeTruthy();
  });

  it('reuses a released-soon live query when remounted within the delay', async () => {
    const db = new MemoryDb();
    const view = render(app(db, <Names />));
    await act(async () => db.emit('select name from t where id > ?', [{ name: 'a' }]));
    view.rerender(app(db, null));
    view.rerender(app(db, <Names />));
    // The remount shows the cached rows at once.
    expect(screen.getByText('a')).toBeTruthy();
    await afterRelease();
    expect(db.liveCalls).toHaveLength(1);
    expect(db.lives.size).toBe(1);
  });

  it('reports errors with their code', async () => {
    const db = new MemoryDb();
    render(app(db, <Names />));
    await act(async () => db.fail('select name from t where id > ?', new LatticeError('SQL_ERROR', 'no such table: t')));
    expect(screen.getByText('error SQL_ERROR')).toBeTruthy();
  });

  it('skips the query when given null', () => {
    const db = new MemoryDb();
    function Skip() {
      const { loading, rows } = useLiveQuery(null);
      return <p>{`skipped ${loading} ${rows.length}`}</p>;
    }
    render(app(db, <Skip />, true));
    expect(screen.getByText('skipped false 0')).toBeTruthy();
    expect(db.liveCalls).toHaveLength(0);
  });

  it('accepts a query object and returns stable state between renders', async () => {
    const db = new MemoryDb();
    const seen: unknown[] = [];
    let bump!: () => void;
    function Q() {
      const [, setN] = useState(0);
      bump = () => setN((x) => x + 1);
      const state = useLiveQuery({ sql: 'select 1 as one', params: [] });
      seen.push(state);
      return <p>{state.rows.length}</p>;
    }
    render(app(db, <Q />));
    await act(async () => db.emit('select 1 as one', [{ one: 1 }]));
    const before = seen.length;
    act(() => bump());
    expect(seen.length).toBe(before + 1);
    expect(seen[seen.length - 1]).toBe(seen[seen.length - 2]);
  });
});

describe('useLiveQuerySuspense', () => {
  it('suspends until the first rows, then renders them; one live query under StrictMode', async () => {
    const db = new MemoryDb();
    function S() {
      const rows = useLiveQuerySuspense<Row & { name: string }>('select name from s');
      return <p>{'got ' + rows.map((r) => r.name).join(',')}</p>;
    }
    const view = render(
      app(
        db,
        <Suspense fallback={<p>waiting</p>}>
          <S />
        </Suspense>,
        true,
      ),
    );
    expect(screen.getByText('waiting')).toBeTruthy();
    await act(async () => db.emit('select name from s', [{ name: 'z' }]));
    expect(await screen.findByText('got z')).toBeTruthy();
    expect(db.liveCalls).toHaveLength(1);
    view.unmount();
    await afterRelease();
    expect(db.lives.size).toBe(0);
  });
});

describe('useShape', () => {
  it('syncs once per shape value, reports synced, and unsubscribes on unmount', async () => {
    const db = new MemoryDb();
    function Sh(props: { n: number }) {
      const { synced, error } = useShape({ table: 'issues', where: 'project = $1', params: ['p1'] });
      return <p>{`${props.n} ${synced} ${error?.code ?? ''}`}</p>;
    }
    const view = render(app(db, <Sh n={1} />, true));
    expect(screen.getByText('1 false')).toBeTruthy();
    view.rerender(app(db, <Sh n={2} />, true));
    await act(async () => db.finishShape('issues'));
    expect(screen.getByText('2 true')).toBeTruthy();
    expect(db.syncCalls).toHaveLength(1);
    view.unmount();
    await afterRelease();
    expect(db.activeShapes()).toBe(0);
  });

  it('reports a refused shape', async () => {
    const db = new MemoryDb();
    function Sh() {
      const { synced, error } = useShape({ table: 'secret' });
      return <p>{`${synced} ${error?.code ?? ''}`}</p>;
    }
    render(app(db, <Sh />));
    await act(async () => db.finishShape('secret', new LatticeError('BAD_SHAPE', 'not electrified')));
    expect(screen.getByText('false BAD_SHAPE')).toBeTruthy();
  });
});

describe('useSyncStatus and useLattice', () => {
  it('follows the status', async () => {
    const db = new MemoryDb();
    function St() {
      const s = useSyncStatus();
      return <p>{`${s.state} ${s.pending} ${s.lastError?.code ?? ''}`}</p>;
    }
    render(app(db, <St />, true));
    expect(screen.getByText('connecting 0')).toBeTruthy();
    act(() => db.setStatus({ state: 'online', pending: 2 }));
    expect(screen.getByText('online 2')).toBeTruthy();
    act(() => db.setStatus({ state: 'offline', pending: 3, lastError: { code: 'UNAUTHORIZED', message: 'expired' } }));
    expect(screen.getByText('offline 3 UNAUTHORIZED')).toBeTruthy();
  });

  it('gives the provider db and refuses to work outside a provider', () => {
    const db = new MemoryDb();
    let got: unknown;
    function U() {
      got = useLattice();
      return null;
    }
    render(app(db, <U />));
    expect(got).toBe(db);
    expect(() => render(<U />)).toThrow(/LatticeProvider/);
  });
});
