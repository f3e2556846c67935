// The user's token for the sync service. The demo has no sign-in: `lattice
// dev` answers GET /dev-token?user=NAME with a 24 h token for anyone
// (development only). A real app returns its sign-in's token instead (the
// package's README, "Tokens", shows Supabase, Firebase and Clerk).
//
// The database calls getToken when it connects, when the service refuses a
// token, and shortly before the token expires (then it switches the open
// connection to the new one); it should be cheap: the token is kept (also
// for the next start) and fetched again only near its expiry.

export type DevToken = { token: string; user: string; expires: string };

const MIN_LEFT = 5 * 60_000; // fetch a new token when the kept one has less left
const storageKey = (user: string) => `lattice-example-token-${user}`;

async function fetchToken(user: string): Promise<DevToken> {
  const res = await fetch(`/dev-token?user=${encodeURIComponent(user)}`, { cache: 'no-store', signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET /dev-token: ${res.status} ${(await res.text()).trim()}`);
  const t = (await res.json()) as DevToken;
  localStorage.setItem(storageKey(user), JSON.stringify(t));
  return t;
}

function keptToken(user: string): DevToken | null {
  try {
    const t = JSON.parse(localStorage.getItem(storageKey(user)) ?? 'null') as DevToken | null;
    return t?.token && t.user === user ? t : null;
  } catch {
    return null;
  }
}

const expiresIn = (t: DevToken | null) => (t ? Date.parse(t.expires) - Date.now() : -1);

let inflight: Promise<DevToken> | null = null;

// getToken returns the kept token while it has more than a few minutes
// left, else a new one (the kept one while it is still valid when /dev-token
// cannot be reached; throws when there is none: the database retries).
export async function getToken(user: string): Promise<string> {
  const kept = keptToken(user);
  if (expiresIn(kept) > MIN_LEFT) return kept!.token;
  try {
    inflight ??= fetchToken(user).finally(() => (inflight = null));
    return (await inflight).token;
  } catch (err) {
    if (kept && expiresIn(kept) > 0) return kept.token;
    throw err;
  }
}
