// Timestamps as Lattice stores timestamptz in SQLite: UTC, ISO 8601 with a
// space and a Z ("2024-01-02 03:04:05.123Z"), which sorts as text, and which
// Postgres reads back exactly.

// nowTs is the current time exactly as Postgres prints it back (trailing
// zeros of the fraction dropped), so a local write and its echo from the
// service hold the same text.
export function nowTs(): string {
  return new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.?0+Z$/, 'Z');
}

export function parseTs(ts: string): Date {
  return new Date(ts.replace(' ', 'T'));
}

const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
];

export function ago(ts: string): string {
  const secs = (parseTs(ts).getTime() - Date.now()) / 1000;
  for (const [unit, n] of units) {
    if (Math.abs(secs) >= n) return rtf.format(Math.round(secs / n), unit);
  }
  return 'just now';
}
