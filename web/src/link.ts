// Transports between a page and the Lattice worker. A Link carries request
// messages to the worker and hands back replies and events. It does not know
// what the messages mean, except where the dedicated-worker owner must route
// replies and events to the follower page that asked.

import { LatticeError } from './errors.js';
import type { ErrorInfo } from './errors.js';

/** A request to the worker (jsbridge/MESSAGES.md). */
export interface RequestMessage {
  id: number;
  op: string;
  [arg: string]: unknown;
}

/** A reply or an event from the worker. */
export interface WorkerMessage {
  id?: number;
  ok?: boolean;
  result?: unknown;
  error?: ErrorInfo | undefined;
  event?: string;
  [field: string]: unknown;
}

export interface LinkHandlers {
  /** A reply or event from the worker. */
  message(msg: WorkerMessage): void;
  /**
   * The worker behind the link changed (the page that owned it went away):
   * requests in flight are lost, the database must be opened again and live
   * queries and shapes issued again.
   */
  reset(): void;
  /** The link cannot work (the worker script failed to load, say). */
  fail(err: LatticeError): void;
}

export interface Link {
  send(msg: RequestMessage): void;
  close(): void;
}

/** One SharedWorker for every page of the origin using this database. */
export function sharedWorkerLink(url: string | URL, dbName: string, h: LinkHandlers): Link {
  const worker = new SharedWorker(url, { type: 'module', name: 'lattice:' + dbName });
  const port = worker.port;
  port.onmessage = (e: MessageEvent) => h.message(e.data as WorkerMessage);
  port.onmessageerror = () => h.fail(new LatticeError('INTERNAL', 'a message from the worker could not be read'));
  worker.onerror = () => h.fail(new LatticeError('INTERNAL', `the Lattice worker failed to start (${String(url)})`));
  port.start();
  return {
    send: (msg) => port.postMessage(msg),
    close: () => port.close(),
  };
}

// Messages between pages on the BroadcastChannel `lattice:<dbName>`.
type ChannelMessage =
  | { t: 'hello'; from: string }
  | { t: 'ready'; owner: string }
  | { t: 'req'; from: string; to: string; msg: RequestMessage }
  | { t: 'msg'; to: string; msg: WorkerMessage };

/** What the owner remembers of a request it forwarded to its worker. */
interface Forwarded {
  from: string; // tab id, or '' for the owner page itself
  id: number; // the id the asking page used
  op: string;
  internal: boolean; // sent by the owner for cleanup; the reply is dropped
}

/** What the owner holds in the worker on behalf of a follower page. */
interface FollowerState {
  lives: Set<number>;
  shapes: Set<string>;
  txs: Set<number>;
}

/**
 * A dedicated Worker in one page, elected by the Web Lock `lattice:<dbName>`;
 * the other pages send their requests over a BroadcastChannel to the owner,
 * whose worker serves them. When the owner goes away, a follower gets the lock,
 * starts its own worker and every page resets (opens again, issues its live
 * queries and shapes again).
 */
export function electedWorkerLink(
  url: string | URL,
  dbName: string,
  tab: string,
  h: LinkHandlers,
): Link {
  const locks = navigator.locks;
  const channel = new BroadcastChannel('lattice:' + dbName);
  const abort = new AbortController();
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let closed = false;

  // Before the role is known, or while a follower has no owner, messages wait here.
  let queue: RequestMessage[] = [];
  let role: 'pending' | 'follower' | 'owner' = 'pending';
  let owner = ''; // tab id of the current owner, as a follower sees it
  let everOwned = false;

  // Owner state.
  let worker: Worker | undefined;
  let nextId = 1;
  const forwarded = new Map<number, Forwarded>();
  const liveOwner = new Map<number, string>(); // worker live id -> tab ('' for self)
  const followers = new Map<string, FollowerState>();
  // The worker keeps one subscription per shape id for all pages: it is
  // released only when no page holds the shape any more.
  const shapeHolders = new Map<string, Set<string>>();
  const holdShape = (from: string, shapeId: string) => {
    let h = shapeHolders.get(shapeId);
    if (!h) shapeHolders.set(shapeId, (h = new Set()));
    h.add(from);
  };
  // True when the worker should drop the shape.
  const releaseShape = (from: string, shapeId: string): boolean => {
    const h = shapeHolders.get(shapeId);
    if (!h) return true;
    h.delete(from);
    if (h.size > 0) return false;
    shapeHolders.delete(shapeId);
    return true;
  };
  let openResult: unknown;
  let openWaiters: Array<{ from: string; id: number }> = [];
  let lastStatus: unknown;

  // The open result a follower gets: the owner's, with the latest status.
  const openedFor = () => {
    const r = openResult as Record<string, unknown>;
    return lastStatus === undefined ? r : { ...r, status: lastStatus };
  };

  const deliver = (to: string, msg: WorkerMessage) => {
    if (to === '') h.message(msg);
    else channel.postMessage({ t: 'msg', to, msg } satisfies ChannelMessage);
  };

  const toWorker = (from: string, msg: RequestMessage, internal = false) => {
    const id = nextId++;
    forwarded.set(id, { from, id: msg.id, op: msg.op, internal });
    worker!.postMessage({ ...msg, id });
  };

  const follower = (tab: string): FollowerState => {
    let f = followers.get(tab);
    if (!f) {
      f = { lives: new Set(), shapes: new Set(), txs: new Set() };
      followers.set(tab, f);
      // The follower holds `lattice:tab:<tab>` while it lives: when we get it, it is gone.
      locks
        .request('lattice:tab:' + tab, { signal: abort.signal }, () => forget(tab))
        .catch(() => {});
    }
    return f;
  };

  // Releases what a follower page held in the worker.
  const forget = (tab: string) => {
    const f = followers.get(tab);
    if (!f || role !== 'owner') return;
    followers.delete(tab);
    for (const live of f.lives) {
      liveOwner.delete(live);
      toWorker(tab, { id: 0, op: 'unlive', live }, true);
    }
    for (const shapeId of f.shapes) {
      if (releaseShape(tab, shapeId)) toWorker(tab, { id: 0, op: 'unsync', shapeId }, true);
    }
    for (const tx of f.txs) toWorker(tab, { id: 0, op: 'rollback', tx }, true);
  };

  const fromSelf = (msg: RequestMessage) => {
    if (msg.op === 'unsync' && !releaseShape('', msg['shapeId'] as string)) {
      h.message({ id: msg.id, ok: true, result: {} });
      return;
    }
    toWorker('', msg);
  };

  const fromFollower = (from: string, msg: RequestMessage) => {
    const f = follower(from);
    switch (msg.op) {
      case 'open':
        // The worker is already open for this origin: answer for it.
        if (openResult !== undefined) deliver(from, { id: msg.id, ok: true, result: openedFor() });
        else openWaiters.push({ from, id: msg.id });
        return;
      case 'close':
        forget(from);
        deliver(from, { id: msg.id, ok: true, result: {} });
        return;
      case 'unlive':
        f.lives.delete(msg['live'] as number);
        liveOwner.delete(msg['live'] as number);
        break;
      case 'unsync':
        f.shapes.delete(msg['shapeId'] as string);
        if (!releaseShape(from, msg['shapeId'] as string)) {
          deliver(from, { id: msg.id, ok: true, result: {} });
          return;
        }
        break;
      case 'commit':
      case 'rollback':
        f.txs.delete(msg['tx'] as number);
        break;
    }
    toWorker(from, msg);
  };

  const fromWorker = (msg: WorkerMessage) => {
    if (msg.id === undefined) {
      if (msg.event === 'rows') {
        const to = liveOwner.get(msg['live'] as number);
        if (to !== undefined) deliver(to, msg);
        return;
      }
      if (msg.event === 'status') lastStatus = msg['status'];
      h.message(msg);
      channel.postMessage({ t: 'msg', to: '*', msg } satisfies ChannelMessage);
      return;
    }
    const fw = forwarded.get(msg.id);
    if (!fw) return;
    forwarded.delete(msg.id);
    if (fw.internal) return;
    if (msg.ok) {
      const result = msg.result as Record<string, unknown>;
      if (fw.op === 'open' && fw.from === '') {
        openResult = result;
        for (const w of openWaiters) deliver(w.from, { id: w.id, ok: true, result: openedFor() });
        openWaiters = [];
      }
      if (fw.op === 'live') liveOwner.set(result['live'] as number, fw.from);
      if (fw.op === 'sync') holdShape(fw.from, result['shapeId'] as string);
      const f = fw.from === '' ? undefined : followers.get(fw.from);
      if (f && fw.op === 'live') f.lives.add(result['live'] as number);
      if (f && fw.op === 'sync') f.shapes.add(result['shapeId'] as string);
      if (f && fw.op === 'begin') f.txs.add(result['tx'] as number);
    } else if (fw.op === 'open' && fw.from === '') {
      for (const w of openWaiters) deliver(w.from, { id: w.id, ok: false, error: msg.error });
      openWaiters = [];
    }
    deliver(fw.from, { ...msg, id: fw.id });
  };

  const becomeOwner = () => {
    if (closed) return;
    const wasFollower = role === 'follower';
    role = 'owner';
    owner = tab;
    worker = new Worker(url, { type: 'module', name: 'lattice:' + dbName });
    worker.onmessage = (e: MessageEvent) => fromWorker(e.data as WorkerMessage);
    worker.onerror = () => h.fail(new LatticeError('INTERNAL', `the Lattice worker failed to start (${String(url)})`));
    channel.postMessage({ t: 'ready', owner: tab } satisfies ChannelMessage);
    if (wasFollower || everOwned) {
      // Requests sent to the old owner are lost: the page starts over.
      queue = [];
      h.reset();
    }
    everOwned = true;
    const q = queue;
    queue = [];
    for (const m of q) fromSelf(m);
  };

  channel.onmessage = (e: MessageEvent) => {
    const m = e.data as ChannelMessage;
    if (role === 'owner') {
      if (m.t === 'hello') channel.postMessage({ t: 'ready', owner: tab } satisfies ChannelMessage);
      else if (m.t === 'req' && m.to === tab) fromFollower(m.from, m.msg);
      return;
    }
    if (m.t === 'ready') {
      const changed = owner !== '' && owner !== m.owner;
      owner = m.owner;
      if (role === 'pending') return;
      if (changed) {
        queue = [];
        h.reset();
      }
      const q = queue;
      queue = [];
      for (const msg of q) channel.postMessage({ t: 'req', from: tab, to: owner, msg } satisfies ChannelMessage);
    } else if (m.t === 'msg' && (m.to === tab || m.to === '*')) {
      h.message(m.msg);
    }
  };

  // Election: take the lock if free, else follow the owner and queue for the lock.
  const hold = () => {
    becomeOwner();
    return held;
  };
  locks
    // (ifAvailable cannot be combined with an abort signal.)
    .request('lattice:' + dbName, { ifAvailable: true }, (lock) => {
      if (closed) return undefined;
      if (lock) return hold();
      role = 'follower';
      channel.postMessage({ t: 'hello', from: tab } satisfies ChannelMessage);
      if (owner !== '') {
        const q = queue;
        queue = [];
        for (const msg of q) channel.postMessage({ t: 'req', from: tab, to: owner, msg } satisfies ChannelMessage);
      }
      locks.request('lattice:' + dbName, { signal: abort.signal }, hold).catch(() => {});
      return undefined;
    })
    .catch((err: unknown) => h.fail(new LatticeError('INTERNAL', `Web Lock lattice:${dbName}: ${String(err)}`)));

  return {
    send(msg) {
      if (closed) return;
      if (role === 'owner') fromSelf(msg);
      else if (role === 'follower' && owner !== '') channel.postMessage({ t: 'req', from: tab, to: owner, msg } satisfies ChannelMessage);
      else queue.push(msg);
    },
    close() {
      if (closed) return;
      closed = true;
      abort.abort();
      channel.close();
      worker?.terminate();
      release();
    },
  };
}
