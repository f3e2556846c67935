// wa-sqlite (npm wa-sqlite@1.0.0, Asyncify build) with its example
// IDBBatchAtomicVFS. Same message protocol as the other bench workers.
import SQLiteESMFactory from '/vendor/wa-sqlite/dist/wa-sqlite-async.mjs';
import * as SQLite from '/vendor/wa-sqlite/src/sqlite-api.js';
import { IDBBatchAtomicVFS } from '/vendor/wa-sqlite/src/examples/IDBBatchAtomicVFS.js';

let sqlite3, db;

async function handle(m) {
  switch (m.op) {
    case 'open': {
      const module = await SQLiteESMFactory();
      sqlite3 = SQLite.Factory(module);
      const vfs = new IDBBatchAtomicVFS('wa-sqlite-' + m.name, m.options || {});
      sqlite3.vfs_register(vfs, true);
      db = await sqlite3.open_v2(m.name);
      return {};
    }
    case 'exec':
      await sqlite3.exec(db, m.sql);
      return {};
    case 'query': {
      const rows = [];
      await sqlite3.exec(db, m.sql, (row) => rows.push(row));
      return rows;
    }
    case 'close':
      await sqlite3.close(db);
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
