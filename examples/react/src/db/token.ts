// The user's token for the sync service. The demo has no login: `lattice
// dev` answers GET /dev-token?user=NAME with a token for anyone (development
// only). A real app gets its token from its own sign-in instead; the rest of
// this file (keep the last token, refresh it before it expires, hand it to
// the database with setToken) stays the same.
import type { Db } from './db';

export type DevToken = { token: string; user: string; expires: string };

const HOUR = 60 * 60_000;
const storageKey = (user: string) => `lattice-example-token-${user}`;

async function fetchToken(user: string): Promise<DevToken> {
  const res = await fetch(`/dev-token?user=${encodeURIComponent(user)}`, { cache: 'no-store', signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`GET /dev-token: ${res.status} ${(await res.text()).trim()}`);
  const t = (await res.json()) as DevToken;
  localStorage.setItem(storageKey(user), JSON.stringify(t));
  return t;
}

function cachedToken(user: string): DevToken | null {
  try {
    const t = JSON.parse(localStorage.getItem(storageKey(user)) ?? 'null') as DevToken | null;
    return t?.token && t.user === user ? t : null;
  } catch {
    return null;
  }
}

const expiresIn = (t: DevToken | null) => (t ? Date.parse(t.expires) - Date.now() : -1);

// initialToken is the token to open the database with: the kept one while it
// is valid for more than an hour (no network needed: an offline start works),
// else a new one, else (offline) the kept one, even expired: the database
// opens from local data and keepTokenFresh gets a new token when it can.
export async function initialToken(user: string): Promise<DevToken | null> {
  const kept = cachedToken(user);
  if (expiresIn(kept) > HOUR) return kept;
  try {
    return await fetchToken(user);
  } catch (err) {
    console.warn('no new token (offline?), using the last one:', err);
    return kept;
  }
}

// keepTokenFresh fetches a new token an hour before the current one expires
// (every 30 s until that works, and at once when the network comes back
// with a token about to expire) and gives it to the database: the open
// connection is kept, the next one uses it. Returns a function that stops it.
export function keepTokenFresh(db: Db, user: string, current: DevToken | null): () => void {
  let token = current;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let busy = false;
  const schedule = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(refresh, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
  };
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try {
      token = await fetchToken(user);
      await db.setToken(token.token);
      schedule(expiresIn(token) - HOUR);
    } catch {
      schedule(30_000);
    } finally {
      busy = false;
    }
  };
  const onOnline = () => {
    if (expiresIn(token) < HOUR) refresh();
  };
  schedule(expiresIn(token) - HOUR);
  window.addEventListener('online', onOnline);
  document.addEventListener('visibilitychange', onOnline);
  return () => {
    clearTimeout(timer);
    window.removeEventListener('online', onOnline);
    document.removeEventListener('visibilitychange', onOnline);
  };
}
