// Fractional ordering keys for the kanban board: strings over 0-9a-z that
// sort bytewise (SQLite BINARY, Postgres with the C collation). between(a, b)
// returns a key strictly between a and b (a may be '' for "before
// everything", b null for "after everything"), so moving a card writes one
// row, and concurrent moves merge as plain column updates.

const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz';
const BASE = DIGITS.length;

function digit(s: string, i: number): number {
  const d = DIGITS.indexOf(s[i]);
  if (d < 0) throw new Error(`bad order key ${JSON.stringify(s)}`);
  return d;
}

export function between(a: string, b: string | null): string {
  if (b !== null && a >= b) {
    // Equal or crossed keys (two clients picked the same spot): go after a.
    b = null;
  }
  let out = '';
  for (let i = 0; ; i++) {
    const lo = i < a.length ? digit(a, i) : 0;
    const hi = b !== null ? (i < b.length ? digit(b, i) : 0) : BASE;
    if (lo === hi) {
      out += DIGITS[lo];
      continue;
    }
    const mid = Math.floor((lo + hi) / 2);
    if (mid > lo) return out + DIGITS[mid];
    // hi == lo + 1: keep lo here; anything after it is below b.
    out += DIGITS[lo];
    b = null;
  }
}
