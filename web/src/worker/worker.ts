/// <reference lib="webworker" />
// The Lattice worker script. It loads the Go program (lattice.wasm) and
// relays the messages of jsbridge/MESSAGES.md between the page(s) and Go.
//
// Run as a SharedWorker (one per database, shared by all tabs of an
// origin) each tab connects a port; run as a dedicated Worker the worker
// itself is the only port (0). Requests that arrive before Go is ready are
// queued. Values cross to Go as JSON: a BigInt becomes {"$i": "<decimal>"}
// and a Uint8Array {"$b": "<base64>"} (a Date becomes its ISO text), and
// come back the same way (plus {"$f": "NaN" | "Infinity" | "-Infinity"}).
import './wasm_exec.js';

interface GoInstance {
  argv: string[];
  env: Record<string, string>;
  importObject: WebAssembly.Imports;
  run(instance: WebAssembly.Instance): Promise<void>;
}
type GoConstructor = new () => GoInstance;

interface Port {
  postMessage(message: unknown): void;
}

interface Host {
  post(port: number, data: string): void;
  ready(handler: (port: number, data: string) => void): void;
}

const scope = globalThis as unknown as {
  Go: GoConstructor;
  __latticeHost?: Host;
  onconnect?: ((e: MessageEvent) => void) | null;
  onmessage: ((e: MessageEvent) => void) | null;
  location: WorkerLocation;
  navigator: WorkerNavigator;
  postMessage(m: unknown): void;
};

const ports = new Map<number, Port>();
let nextPort = 1;
let handler: ((port: number, data: string) => void) | null = null;
let failed: string | null = null;
const queue: Array<[number, string]> = [];

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return { $i: value.toString() };
  if (value instanceof Uint8Array) return { $b: toBase64(value) };
  if (ArrayBuffer.isView(value)) {
    return { $b: toBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  }
  if (value instanceof ArrayBuffer) return { $b: toBase64(new Uint8Array(value)) };
  return value;
}

function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000) as unknown as number[]);
  }
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function fixValue(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  const o = v as { $i?: string; $f?: string; $b?: string };
  if (o.$i !== undefined) return BigInt(o.$i);
  if (o.$f !== undefined) return Number(o.$f);
  if (o.$b !== undefined) return fromBase64(o.$b);
  return v;
}

// rowObjects turns Go's [[v, ...], ...] into [{column: v, ...}, ...]. The
// numbers of a live query's delta (references to the previous result's rows)
// pass through.
function rowObjects(columns: string[], rows: unknown[][], special: boolean): unknown[] {
  const out = new Array<unknown>(rows.length);
  const n = columns.length;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (typeof r === 'number') {
      out[i] = r;
      continue;
    }
    const o: Record<string, unknown> = {};
    for (let j = 0; j < n; j++) o[columns[j]] = special ? fixValue(r[j]) : r[j];
    out[i] = o;
  }
  return out;
}

interface Encoded {
  columns?: string[];
  rows?: unknown[][];
  special?: boolean;
}

function decode(data: string): Record<string, unknown> {
  const m = JSON.parse(data) as Record<string, unknown> & Encoded & { result?: Encoded };
  const convert = (o: Encoded) => {
    if (Array.isArray(o.columns) && Array.isArray(o.rows)) {
      (o as { rows: unknown }).rows = rowObjects(o.columns, o.rows, o.special === true);
      delete o.special;
    }
  };
  if (m.result && typeof m.result === 'object') convert(m.result);
  if (m.event === 'rows') convert(m);
  return m;
}

function post(port: number, message: unknown): void {
  const p = ports.get(port);
  if (p) p.postMessage(message);
}

scope.__latticeHost = {
  post(port: number, data: string): void {
    const m = decode(data);
    post(port, m);
    if (m.ok === true && closing.has(`${port}:${String(m.id)}`)) {
      closing.delete(`${port}:${String(m.id)}`);
      ports.delete(port);
    }
  },
  ready(h: (port: number, data: string) => void): void {
    handler = h;
    flush();
  },
};

// One worker at a time owns a database: the IndexedDB VFS caches pages and
// locks per worker, so two workers writing one database would corrupt it.
// A worker that is going away (its page reloading, the last tab of a
// SharedWorker closing) may still be running while its successor starts:
// the first open takes the Web Lock lattice:db:<dbName> for the worker's
// lifetime, and requests wait until it is granted (when the old worker is
// gone, the browser releases its lock).
let dbLock: 'none' | 'waiting' | 'held' = 'none';

function dispatch(port: number, data: string): void {
  if (handler && dbLock !== 'waiting') handler(port, data);
  else queue.push([port, data]);
}

function flush(): void {
  if (!handler || dbLock === 'waiting') return;
  for (const [port, data] of queue.splice(0)) handler(port, data);
}

function lockDatabase(dbName: string): void {
  const locks = scope.navigator.locks;
  if (dbLock !== 'none' || !locks) return;
  dbLock = 'waiting';
  const slow = setTimeout(() => {
    console.warn(`lattice: waiting for another worker to release database ${dbName}`);
  }, 5000);
  void locks.request(`lattice:db:${dbName}`, () => {
    clearTimeout(slow);
    dbLock = 'held';
    flush();
    return new Promise<void>(() => {}); // held until this worker ends
  });
}

const closing = new Set<string>();

function fail(port: number, id: unknown, message: string): void {
  post(port, { id, ok: false, error: { code: 'INTERNAL', message } });
}

function onMessage(port: number, msg: unknown): void {
  if (msg === null || typeof msg !== 'object') {
    post(port, { id: null, ok: false, error: { code: 'BAD_REQUEST', message: 'a request must be an object' } });
    return;
  }
  const req = msg as { id?: unknown; op?: unknown; tab?: unknown };
  if (failed !== null) {
    fail(port, req.id, failed);
    return;
  }
  if (req.op === 'open' && typeof req.tab === 'string' && scope.navigator.locks) {
    watchTab(port, req.tab);
  }
  if (req.op === 'open') {
    const cfg = (msg as { config?: { dbName?: unknown } }).config;
    if (cfg && typeof cfg.dbName === 'string' && cfg.dbName !== '') lockDatabase(cfg.dbName);
  }
  if (req.op === 'close') closing.add(`${port}:${String(req.id)}`);
  let data: string;
  try {
    data = JSON.stringify(msg, replacer);
  } catch (e) {
    post(port, { id: req.id, ok: false, error: { code: 'BAD_REQUEST', message: String(e) } });
    return;
  }
  dispatch(port, data);
}

// watchTab detaches the port when its tab is gone: the page holds the lock
// lattice:tab:<tab> for its lifetime, so the worker gets it only then.
const watched = new Set<string>();
function watchTab(port: number, tab: string): void {
  const key = `${port}:${tab}`;
  if (watched.has(key)) return;
  watched.add(key);
  void scope.navigator.locks.request(`lattice:tab:${tab}`, () => {
    watched.delete(key);
    if (!ports.has(port)) return;
    dispatch(port, JSON.stringify({ id: null, op: 'detach' }));
    ports.delete(port);
  });
}

if (typeof (globalThis as { SharedWorkerGlobalScope?: unknown }).SharedWorkerGlobalScope !== 'undefined' &&
    'onconnect' in scope) {
  scope.onconnect = (e: MessageEvent) => {
    const p = e.ports[0];
    const id = nextPort++;
    ports.set(id, p);
    p.onmessage = (ev: MessageEvent) => onMessage(id, ev.data);
    p.start();
  };
} else {
  ports.set(0, { postMessage: (m: unknown) => scope.postMessage(m) });
  scope.onmessage = (ev: MessageEvent) => onMessage(0, ev.data);
}

// The browser's online / offline events reach the client: offline drops the
// connection at once, online retries at once (sent on a port nobody has,
// so the replies go nowhere).
for (const type of ['online', 'offline'] as const) {
  (globalThis as unknown as EventTarget).addEventListener(type, () => {
    dispatch(-1, JSON.stringify({ id: null, op: 'network', online: type === 'online' }));
  });
}

async function start(): Promise<void> {
  const param = new URL(scope.location.href).searchParams.get('wasm');
  const url = param ?? new URL('./lattice.wasm', import.meta.url).href;
  const go = new scope.Go();
  go.argv = ['lattice'];
  const res = fetch(url);
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiateStreaming(res, go.importObject));
  } catch (e) {
    // A server without the application/wasm type: compile from bytes.
    const r = await fetch(url);
    if (!r.ok) throw new Error(`fetch ${url}: ${r.status} ${r.statusText}`);
    ({ instance } = await WebAssembly.instantiate(await r.arrayBuffer(), go.importObject));
  }
  void go.run(instance).then(() => {
    failed = 'the Lattice worker exited';
  });
}

start().catch((e: unknown) => {
  failed = `load lattice.wasm: ${e instanceof Error ? e.message : String(e)}`;
  for (const [port, data] of queue.splice(0)) {
    const id = (JSON.parse(data) as { id?: unknown }).id;
    fail(port, id, failed);
  }
});
