// The page side of the contract over a scripted link: transactions, live
// query routing, and what happens when the worker behind the link changes.
import { describe, expect, it } from 'vitest';
import { createLattice, LatticeError } from '../src/index.js';
import type { LinkHandlers, RequestMessage, Row } from '../src/index.js';

// A link whose "worker" is a function of the request; every request is logged.
function scripted(answer: (m: RequestMessage) => unknown) {
  const log: RequestMessage[] = [];
  let handlers!: LinkHandlers;
  const factory = (_tab: string, h: LinkHandlers) => {
    handlers = h;
    return {
      send(m: RequestMessage) {
        log.push(m);
        queueMicrotask(() => {
          try {
            handlers.message({ id: m.id, ok: true, result: answer(m) });
          } catch (e) {
            const err = e as LatticeError;
            handlers.message({ id: m.id, ok: false, error: { code: err.code, message: err.message } });
          }
        });
      },
      close() {},
    };
  };
  return { log, factory, h: () => handlers };
}

const config = { url: 'ws://x', dbName: 'unit' };
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('createLattice over a link', () => {
  it('opens with the config and tab, and reports the status', async () => {
    const s = scripted((m) => (m.op === 'open' ? { clientId: 'c1', status: { state: 'online', pending: 0 } } : {}));
    const db = await createLattice({ ...config, token: 't1' }, s.factory);
    const open = s.log[0]!;
    expect(open.op).toBe('open');
    expect((open['config'] as Record<string, unknown>)['token']).toBe('t1');
    expect(typeof open['tab']).toBe('string');
    expect(String((open['config'] as Record<string, unknown>)['wasmUrl'])).toMatch(/lattice\.wasm$/);
    expect(db.status.state).toBe('online');
  });

  it('rolls a transaction back when the function throws, commits otherwise', async () => {
    const s = scripted((m) => {
      if (m.op === 'begin') return { tx: 7 };
      if (m.op === 'exec') return { changes: 1, lastInsertRowid: 3 };
      if (m.op === 'open') return { clientId: 'c', status: { state: 'online', pending: 0 } };
      return {};
    });
    const db = await createLattice(config, s.factory);
    await expect(
      db.transaction(async (tx) => {
        await tx.exec('insert into t values (?)', [1]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(s.log.slice(1).map((m) => [m.op, m['tx']])).toEqual([
      ['begin', undefined],
      ['exec', 7],
      ['rollback', 7],
    ]);
    s.log.length = 0;
    const r = await db.transaction(async (tx) => (await tx.exec('insert into t values (?)', [2])).lastInsertRowid);
    expect(r).toBe(3);
    expect(s.log.map((m) => m.op)).toEqual(['begin', 'exec', 'commit']);
  });

  it('turns error replies into LatticeError with the code', async () => {
    const s = scripted((m) => {
      if (m.op === 'open') return { clientId: 'c', status: { state: 'online', pending: 0 } };
      throw new LatticeError('SQL_ERROR', 'no such table: nope');
    });
    const db = await createLattice(config, s.factory);
    const err = await db.query('select * from nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LatticeError);
    expect((err as LatticeError).code).toBe('SQL_ERROR');
  });

  it('routes rows events, and after a reset opens again and re-issues live queries and shapes', async () => {
    let nextLive = 1;
    const s = scripted((m) => {
      if (m.op === 'open') return { clientId: 'c', status: { state: 'online', pending: 0 } };
      if (m.op === 'live') return { live: nextLive++ };
      if (m.op === 'sync') return { shapeId: 'sh' + nextLive };
      return {};
    });
    const db = await createLattice(config, s.factory);
    const got: Row[][] = [];
    const stop = db.liveQuery('select 1', [], (rows) => got.push(rows));
    const shape = await db.sync({ table: 'issues' });
    await tick();
    s.h().message({ event: 'rows', live: 1, columns: ['a'], rows: [{ a: 1 }] });
    expect(got).toEqual([[{ a: 1 }]]);
    s.log.length = 0;
    s.h().reset();
    await tick();
    expect(s.log.map((m) => m.op).sort()).toEqual(['live', 'open', 'sync']);
    expect(shape.shapeId).toBe('sh3'); // the new worker's id (live 2 was asked first)
    // The old worker's live id means nothing now; the new one is routed.
    s.h().message({ event: 'rows', live: 1, columns: ['a'], rows: [{ a: 9 }] });
    s.h().message({ event: 'rows', live: 2, columns: ['a'], rows: [{ a: 2 }] });
    expect(got).toEqual([[{ a: 1 }], [{ a: 2 }]]);
    s.log.length = 0;
    stop();
    await shape.unsubscribe();
    expect(s.log.map((m) => [m.op, m['live'] ?? m['shapeId']])).toEqual([
      ['unlive', 2],
      ['unsync', 'sh3'],
    ]);
  });

  it('unsyncs a shape held twice only when both handles let go', async () => {
    const s = scripted((m) => {
      if (m.op === 'open') return { clientId: 'c', status: { state: 'online', pending: 0 } };
      if (m.op === 'sync') return { shapeId: 'issues-p1' }; // the worker dedupes by definition
      return {};
    });
    const db = await createLattice(config, s.factory);
    const a = await db.sync({ table: 'issues', where: 'p = $1', params: ['p1'] });
    const b = await db.sync({ table: 'issues', where: 'p = $1', params: ['p1'] });
    s.log.length = 0;
    await a.unsubscribe();
    expect(s.log.map((m) => m.op)).toEqual([]);
    await b.unsubscribe();
    await b.unsubscribe(); // idempotent
    expect(s.log.map((m) => [m.op, m['shapeId']])).toEqual([['unsync', 'issues-p1']]);
  });

  it('answers the worker\'s token events with getToken (one call at a time), and reports its failures', async () => {
    const s = scripted((m) => (m.op === 'open' ? { clientId: 'c', status: { state: 'online', pending: 0 } } : {}));
    let n = 0;
    let fail = false;
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    const db = await createLattice(
      {
        ...config,
        getToken: async () => {
          n++;
          await gate;
          if (fail) throw new Error('signed out');
          return 'tok' + n;
        },
      },
      s.factory,
    );
    expect((s.log[0]!['config'] as Record<string, unknown>)['refreshToken']).toBe(true);
    s.log.length = 0;
    s.h().message({ event: 'token' });
    s.h().message({ event: 'token' }); // while the first call runs: answered by it
    release();
    await tick();
    await tick();
    expect(n).toBe(1);
    expect(s.log.map((m) => [m.op, m['token']])).toEqual([['setToken', 'tok1']]);
    s.log.length = 0;
    fail = true;
    gate = Promise.resolve();
    s.h().message({ event: 'token' });
    await tick();
    await tick();
    expect(s.log.map((m) => [m.op, m['message']])).toEqual([['tokenError', 'signed out']]);
    await db.close();
  });

  it('ignores token events without getToken, and rejects a getToken that is not a function', async () => {
    const s = scripted((m) => (m.op === 'open' ? { clientId: 'c', status: { state: 'offline', pending: 0 } } : {}));
    const db = await createLattice(config, s.factory);
    expect((s.log[0]!['config'] as Record<string, unknown>)['refreshToken']).toBeUndefined();
    s.log.length = 0;
    s.h().message({ event: 'token' });
    await tick();
    expect(s.log).toEqual([]);
    s.h().message({
      event: 'status',
      status: { state: 'offline', pending: 2, lastError: { code: 'UNAUTHORIZED', message: 'token expired' } },
    });
    expect(db.status).toEqual({ state: 'offline', pending: 2, lastError: { code: 'UNAUTHORIZED', message: 'token expired' } });
    await db.setToken('fresh');
    expect(s.log.map((m) => [m.op, m['token']])).toEqual([['setToken', 'fresh']]);
    await expect(createLattice({ ...config, getToken: 'x' as never }, s.factory)).rejects.toThrow('getToken must be a function');
  });

  it('rejects everything with CLOSED after close', async () => {
    const s = scripted((m) => (m.op === 'open' ? { clientId: 'c', status: { state: 'online', pending: 0 } } : {}));
    const db = await createLattice(config, s.factory);
    await db.close();
    const err = await db.exec('delete from t').catch((e: unknown) => e);
    expect((err as LatticeError).code).toBe('CLOSED');
  });
});

describe('applyDelta (live query deltas, MESSAGES.md)', () => {
  it('reuses the previous objects for kept rows and runs', async () => {
    const { applyDelta } = await import('../src/lattice.js');
    const prev: Row[] = [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }];
    const fresh: Row = { id: 9 };
    const out = applyDelta(prev, [fresh, 0, -2, 3]);
    expect(out).toEqual([{ id: 9 }, { id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }]);
    expect(out[0]).toBe(fresh);
    for (let i = 1; i < 5; i++) expect(out[i]).toBe(prev[i - 1]);
  });
});
