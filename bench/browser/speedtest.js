// The 16-test "speedtest" workload (tables t1/t2/t3(a INTEGER, b INTEGER,
// c VARCHAR(100)), random integers below 100,000 and their English
// spelling), generated here with a seeded PRNG in the counts and statement
// shapes of the published suite. loadScripts(dir) reads the published
// files (benchmark1.sql .. benchmark16.sql) instead when a copy is at hand.

import { readFileSync } from 'node:fs';
import path from 'node:path';

export const titles = [
  '1000 INSERTs',
  '25000 INSERTs in a transaction',
  '25000 INSERTs into an indexed table',
  '100 SELECTs without an index',
  '100 SELECTs on a string comparison',
  'Creating an index',
  '5000 SELECTs with an index',
  '1000 UPDATEs without an index',
  '25000 UPDATEs with an index',
  '25000 text UPDATEs with an index',
  'INSERTs from a SELECT',
  'DELETE without an index',
  'DELETE with an index',
  'A big INSERT after a big DELETE',
  'A big DELETE followed by many small INSERTs',
  'DROP TABLE',
];

const ones = ['', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten',
  'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen'];
const tens = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];

function below100(n) {
  if (n < 20) return ones[n];
  return tens[Math.floor(n / 10)] + (n % 10 ? '-' + ones[n % 10] : '');
}

function below1000(n) {
  const h = Math.floor(n / 100), r = n % 100;
  const parts = [];
  if (h) parts.push(ones[h] + ' hundred');
  if (r) parts.push(below100(r));
  return parts.join(' ');
}

/** English spelling of 0 <= n < 1,000,000 ("forty-six thousand five hundred eighty-two"). */
export function spell(n) {
  if (n === 0) return 'zero';
  const th = Math.floor(n / 1000), r = n % 1000;
  const parts = [];
  if (th) parts.push(below1000(th) + ' thousand');
  if (r) parts.push(below1000(r));
  return parts.join(' ');
}

function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The 16 scripts, as SQL text. */
export function generate(seed = 1) {
  const rand = prng(seed);
  const r = () => Math.floor(rand() * 100000);
  const inserts = (table, n) => {
    const out = [];
    for (let i = 1; i <= n; i++) {
      const b = r();
      out.push(`INSERT INTO ${table} VALUES(${i}, ${b}, '${spell(b)}');`);
    }
    return out;
  };
  const s = [];
  s.push(['CREATE TABLE t1(a INTEGER, b INTEGER, c VARCHAR(100));', ...inserts('t1', 1000)]);
  s.push(['BEGIN;', 'CREATE TABLE t2(a INTEGER, b INTEGER, c VARCHAR(100));', ...inserts('t2', 25000), 'COMMIT;']);
  s.push(['BEGIN;', 'CREATE TABLE t3(a INTEGER, b INTEGER, c VARCHAR(100));', 'CREATE INDEX i3 ON t3(c);', ...inserts('t3', 25000), 'COMMIT;']);
  const q4 = [];
  for (let i = 0; i < 100; i++) q4.push(`SELECT count(*), avg(b) FROM t2 WHERE b>=${i * 100} AND b<${i * 100 + 1000};`);
  s.push(['BEGIN;', ...q4, 'COMMIT;']);
  const q5 = [];
  for (let i = 1; i <= 100; i++) q5.push(`SELECT count(*), avg(b) FROM t2 WHERE c LIKE '%${spell(i)}%';`);
  s.push(['BEGIN;', ...q5, 'COMMIT;']);
  s.push(['CREATE INDEX i2a ON t2(a);', 'CREATE INDEX i2b ON t2(b);']);
  const q7 = [];
  for (let i = 0; i < 5000; i++) q7.push(`SELECT count(*), avg(b) FROM t2 WHERE b>=${i * 100} AND b<${i * 100 + 100};`);
  s.push(['BEGIN;', ...q7, 'COMMIT;']);
  const q8 = [];
  for (let i = 0; i < 1000; i++) q8.push(`UPDATE t1 SET b=b*2 WHERE a>=${i * 10} AND a<${i * 10 + 10};`);
  s.push(['BEGIN;', ...q8, 'COMMIT;']);
  const q9 = [];
  for (let i = 1; i <= 25000; i++) q9.push(`UPDATE t2 SET b=${r()} WHERE a=${i};`);
  s.push(['BEGIN;', ...q9, 'COMMIT;']);
  const q10 = [];
  for (let i = 1; i <= 25000; i++) q10.push(`UPDATE t2 SET c='${spell(r())}' WHERE a=${i};`);
  s.push(['BEGIN;', ...q10, 'COMMIT;']);
  s.push(['BEGIN;', 'INSERT INTO t1 SELECT b,a,c FROM t2;', 'INSERT INTO t2 SELECT b,a,c FROM t1;', 'COMMIT;']);
  s.push(["DELETE FROM t2 WHERE c LIKE '%fifty%';"]);
  s.push(['DELETE FROM t2 WHERE a>10 AND a<20000;']);
  s.push(['INSERT INTO t2 SELECT * FROM t1;']);
  s.push(['BEGIN;', 'DELETE FROM t1;', ...inserts('t1', 12000), 'COMMIT;']);
  s.push(['DROP TABLE t1;', 'DROP TABLE t2;', 'DROP TABLE t3;']);
  return s.map((lines) => lines.join('\n') + '\n');
}

/** The published scripts benchmark1.sql .. benchmark16.sql from dir. */
export function loadScripts(dir) {
  return titles.map((_, i) => readFileSync(path.join(dir, `benchmark${i + 1}.sql`), 'utf8'));
}
