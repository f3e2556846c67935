// sqlite.org's official wasm build (npm @sqlite.org/sqlite-wasm) on its
// opfs-sahpool VFS. Same message protocol as the other bench workers.
import sqlite3InitModule from '/vendor/@sqlite.org/sqlite-wasm/dist/index.mjs';

let sqlite3, pool, db;

async function handle(m) {
  switch (m.op) {
    case 'open':
      sqlite3 = await sqlite3InitModule();
      pool = await sqlite3.installOpfsSAHPoolVfs({ name: 'bench-sahpool', clearOnInit: true });
      db = new pool.OpfsSAHPoolDb('/' + m.name);
      return {};
    case 'exec':
      db.exec(m.sql);
      return {};
    case 'query':
      return db.exec({ sql: m.sql, returnValue: 'resultRows' });
    case 'close':
      db.close();
      return {};
    default:
      throw new Error('unknown op ' + m.op);
  }
}

let chain = Promise.resolve();
self.onmessage = (e) => {
  const m = e.data;
  chain = chain.then(async () => {
    const t = performance.now();
    try {
      const result = await handle(m);
      self.postMessage({ id: m.id, ok: true, result, ms: performance.now() - t });
    } catch (err) {
      self.postMessage({ id: m.id, ok: false, error: { message: String(err && err.message || err) } });
    }
  });
};
self.postMessage({ event: 'ready' });
