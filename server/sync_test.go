package server_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
)

func hexString(b []byte) string { return hex.EncodeToString(b) }
func fmtAny(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

const itemsSQL = `CREATE TABLE items (id integer PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false, n integer)`

// waitEqual waits until the client's rows for localSQL equal Postgres' rows for pgSQL.
func waitEqual(t testing.TB, e *env, c *client.Client, pgSQL, localSQL string) {
	t.Helper()
	eventually(t, 20*time.Second, "client to match postgres", func() (bool, string) {
		want := e.pgRows(pgSQL)
		got := localRows(t, c, localSQL)
		return equalStrings(want, got), fmt.Sprintf("\npostgres: %v\nclient:   %v", want, got)
	})
}

func TestShapeLiveWithMoves(t *testing.T) {
	e := newEnv(t, itemsSQL+`; INSERT INTO items SELECT i, 'item '||i, i % 2 = 0, i FROM generate_series(1, 50) i`, "items")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "items", Where: "done = $1 AND n <= $2", Params: []any{false, 40}})
	pgQ := "SELECT id, title, CASE WHEN done THEN 1 ELSE 0 END, n FROM items WHERE done = false AND n <= 40 ORDER BY id"
	localQ := "SELECT id, title, done, n FROM items ORDER BY id"
	waitEqual(t, e, c, pgQ, localQ)

	e.exec("INSERT INTO items VALUES (100, 'new', false, 1), (101, 'new done', true, 1)") // one in, one not
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("UPDATE items SET done = true WHERE id IN (1, 3)") // move out
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("UPDATE items SET done = false WHERE id IN (2, 4)") // move in
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("UPDATE items SET title = 'renamed' WHERE id = 5") // plain update
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("UPDATE items SET n = NULL WHERE id = 7") // NULL makes n <= 40 unknown: out
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("DELETE FROM items WHERE id IN (9, 10)")
	waitEqual(t, e, c, pgQ, localQ)
	e.exec("UPDATE items SET id = 1000 WHERE id = 11") // key change
	waitEqual(t, e, c, pgQ, localQ)
	e.exec(`BEGIN; UPDATE items SET done = NOT done; UPDATE items SET n = n + 1; COMMIT`)
	waitEqual(t, e, c, pgQ, localQ)
}

func TestUnfilteredShapeAndTwoClients(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	a, _ := e.clientAt(":memory:")
	b, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "items"})
	e.subscribe(b, client.Shape{Table: "public.items", Where: "id < 10 OR title = 't13'"})
	for i := 0; i < 20; i++ {
		e.exec("INSERT INTO items VALUES ($1, $2, false, $1)", i, fmt.Sprint("t", i))
	}
	waitEqual(t, e, a, "SELECT id, title FROM items ORDER BY id", "SELECT id, title FROM items ORDER BY id")
	waitEqual(t, e, b, "SELECT id, title FROM items WHERE id < 10 OR title = 't13' ORDER BY id", "SELECT id, title FROM items ORDER BY id")
}

// allTypesSQL has one column of every supported type and array type.
const allTypesSQL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE alltypes (
  id serial PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, num numeric, num2 numeric(12,3),
  b boolean, t text, vc varchar(10), ch char(4), u uuid, d date, tm time, ts timestamp, tstz timestamptz,
  iv interval, j json, jb jsonb, by bytea, m mood,
  ai4 integer[], atext text[], anum numeric[], af8 float8[], ab boolean[], ats timestamptz[], am mood[], aby bytea[]
);`

const allTypesInsert = `
INSERT INTO alltypes (i2, i4, i8, f4, f8, num, num2, b, t, vc, ch, u, d, tm, ts, tstz, iv, j, jb, by, m, ai4, atext, anum, af8, ab, ats, am, aby) VALUES
 (-32768, -2147483648, -9223372036854775808, 'NaN', 'NaN', 'NaN', 0, false, '', '', '', '00000000-0000-0000-0000-000000000000',
  '-infinity', '00:00:00', '-infinity', '-infinity', '-178000000 years', '{}', '{}', '', 'sad', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (32767, 2147483647, 9223372036854775807, 'Infinity', '-Infinity', '123456789012345678901234567890.000000000000000001', 123456789.123, true,
  'héllo "wörld" \ ''q''', 'abc', 'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '4713-01-01 BC', '24:00:00', '294276-12-31 23:59:59.999999',
  '2024-02-29 12:34:56.123456+05:30', 'P1Y2M3DT4H5M6.789S', '{ "a" : [1, 2.50, "x"] }', '{"b": [1, 2.50], "a": null}', '\x00ff10', 'happy',
  '{1,NULL,-3}', '{"a,b","NULL",NULL,"","q\"uote","back\\slash","{}"}', '{1.50,NaN,-0.000001}', '{1.5,Infinity,-Infinity,NaN}', '{t,f,NULL}',
  '{"2020-01-01 00:00:00+00","infinity"}', '{ok,sad}', '{"\\x00","\\x"}'),
 (0, 0, 0, -0, 1.1, 1.50, -0.5, NULL, 'x', NULL, 'abcd', NULL, '2000-02-29', '13:14:15.000001', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00',
  '-1 days +02:03:00', 'null', '"s"', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (NULL, NULL, NULL, 1.1, 0.1, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`

func TestAllTypesRoundTrip(t *testing.T) {
	e := newEnv(t, allTypesSQL+allTypesInsert, "alltypes")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "alltypes"})
	// Half arrive by snapshot, half by the stream.
	e.exec(allTypesInsert)
	e.exec(`INSERT INTO alltypes (f8, num, t, tstz, ts, iv, by, atext)
		SELECT random()*1e6, (random()*1e9)::numeric(20,7), md5(i::text), now() - i * interval '1 min 1.5 s',
		       now()::timestamp, i * interval '1 day 1 s', decode(md5(i::text), 'hex'), ARRAY[md5(i::text), NULL]
		FROM generate_series(1, 200) i`)
	var total int
	eventually(t, 20*time.Second, "all rows", func() (bool, string) {
		rows := localRows(t, c, "SELECT count(*) FROM alltypes")
		total, _ = strconv.Atoi(rows[0])
		return total == 208, fmt.Sprint(rows)
	})
	checkTypes(t, e, c)
}

// checkTypes converts every local value back to Postgres text and asks
// Postgres whether it equals the original.
func checkTypes(t *testing.T, e *env, c *client.Client) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cols := []struct{ name, typ string }{}
	rows, err := conn.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'alltypes'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, ty string
		rows.Scan(&n, &ty)
		cols = append(cols, struct{ name, typ string }{n, ty})
	}
	rows.Close()
	types := map[string]coltype.Type{}
	for _, col := range cols {
		var oid uint32
		conn.QueryRow(ctx, "SELECT atttypid FROM pg_attribute WHERE attrelid = 'alltypes'::regclass AND attname = $1", col.name).Scan(&oid)
		ty, ok := coltype.BuiltinByOID(oid)
		if !ok {
			ty = coltype.Type{Base: coltype.Enum, Array: strings.HasSuffix(col.typ, "[]")}
		}
		ty.Name = col.typ
		types[col.name] = ty
	}
	local, err := c.Query(ctx, "SELECT * FROM alltypes ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, r := range local.Values {
		id := r[0].(int64)
		for i, name := range local.Columns {
			ty := types[name]
			v := toValue(r[i])
			text, ok, err := coltype.ToPGText(ty, v)
			if err != nil {
				t.Fatalf("row %d column %s: ToPGText(%v): %v", id, name, v, err)
			}
			var arg any
			if ok {
				arg = text
			}
			var same bool
			var orig *string
			col := pgx.Identifier{name}.Sanitize()
			q := fmt.Sprintf(`SELECT $1::text::%s IS NOT DISTINCT FROM %s, %s::text FROM alltypes WHERE id = $2`, ty.Name, col, col)
			if ty.Base == coltype.JSON {
				// json has no equality: compare the text, which must be identical.
				q = fmt.Sprintf(`SELECT $1::text::%s::text IS NOT DISTINCT FROM %s::text, %s::text FROM alltypes WHERE id = $2`, ty.Name, col, col)
			}
			if err := conn.QueryRow(ctx, q, arg, id).Scan(&same, &orig); err != nil {
				t.Fatalf("row %d column %s (%s): %v", id, name, text, err)
			}
			if ty.Base == coltype.JSON && !ty.Array && ok && orig != nil && *orig != text {
				same = false // json must be byte-identical
			}
			if !same {
				o := "<nil>"
				if orig != nil {
					o = *orig
				}
				t.Errorf("row %d column %s: client has %#v (as %q), postgres has %q", id, name, r[i], text, o)
			}
			checked++
		}
	}
	t.Logf("checked %d values", checked)
}

func toValue(v any) coltype.Value {
	switch v := v.(type) {
	case nil:
		return coltype.Value{}
	case int64:
		return coltype.Value{Kind: coltype.Integer, I: v}
	case float64:
		return coltype.Value{Kind: coltype.Real, F: v}
	case string:
		return coltype.Value{Kind: coltype.Text, B: []byte(v)}
	case []byte:
		return coltype.Value{Kind: coltype.Blob, B: v}
	default:
		panic(fmt.Sprintf("unexpected local value %T", v))
	}
}

func TestBigTransactionIsAtomic(t *testing.T) {
	e := newEnv(t, `CREATE TABLE big (id integer PRIMARY KEY, payload text NOT NULL)`, "big")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "big"})
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	cancel, err := c.LiveQuery("SELECT count(*) FROM big", nil, func(r *client.Rows, err error) {
		if err != nil {
			t.Errorf("live query: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		n := fmtAny(r.Values[0][0])
		seen = append(seen, n)
		if n == "100000" {
			select {
			case <-done:
			default:
				close(done)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	e.exec(`INSERT INTO big SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, 100000) i`)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("100k-row transaction did not arrive")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n != "0" && n != "100000" {
			t.Fatalf("live query saw a partial transaction: counts %v", seen)
		}
	}
}

func TestClientRestartResumes(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	path := t.TempDir() + "/replica.db"
	c, stop := e.clientAt(path)
	e.subscribe(c, client.Shape{Table: "items", Where: "n < 100"})
	e.exec("INSERT INTO items SELECT i, 't'||i, false, i FROM generate_series(1, 150) i")
	q := "SELECT id, title, n FROM items WHERE n < 100 ORDER BY id"
	waitEqual(t, e, c, q, "SELECT id, title, n FROM items ORDER BY id")
	stop()
	// Changes while the client is away, including moves.
	e.exec("UPDATE items SET n = n + 50 WHERE id % 3 = 0")
	e.exec("DELETE FROM items WHERE id % 5 = 0")
	e.exec("INSERT INTO items SELECT i, 'late'||i, true, i - 200 FROM generate_series(200, 220) i")
	c2, _ := e.clientAt(path)
	waitEqual(t, e, c2, q, "SELECT id, title, n FROM items ORDER BY id")
	if got := c2.Shapes(); len(got) != 1 {
		t.Fatalf("shapes after restart: %+v", got)
	}
}

func TestServiceRestartResumes(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "items"})
	e.exec("INSERT INTO items SELECT i, 't'||i, false, i FROM generate_series(1, 10) i")
	q := "SELECT id, title FROM items ORDER BY id"
	waitEqual(t, e, c, q, q)
	logID := e.svc.LogID()
	e.restart()
	if e.svc.LogID() != logID {
		t.Fatalf("log id changed across restart: %s -> %s", logID, e.svc.LogID())
	}
	// The client reconnects to the new listener address.
	c2, _ := e.clientAt(":memory:")
	e.subscribe(c2, client.Shape{Table: "items"})
	e.exec("INSERT INTO items SELECT i, 't'||i, false, i FROM generate_series(11, 20) i")
	waitEqual(t, e, c2, q, q)
}

func TestResyncAfterRetentionWindow(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.stop()
	e.cfg.LogSegmentBytes = 4 << 10
	e.cfg.LogMaxBytes = 16 << 10
	e.start()
	path := t.TempDir() + "/replica.db"
	c, stop := e.clientAt(path)
	e.subscribe(c, client.Shape{Table: "items", Where: "done = false"})
	e.exec("INSERT INTO items SELECT i, 't'||i, false, i FROM generate_series(1, 20) i")
	q := "SELECT id, title, n FROM items WHERE NOT done ORDER BY id"
	lq := "SELECT id, title, n FROM items ORDER BY id"
	waitEqual(t, e, c, q, lq)
	stop()
	// Enough traffic to push the client's position out of the log.
	for i := 0; i < 60; i++ {
		e.exec("UPDATE items SET n = n + 1, title = repeat('x', 200) || $1 WHERE id % 4 = $2", fmt.Sprint(i), i%4)
	}
	e.exec("UPDATE items SET done = true WHERE id <= 5")
	e.exec("INSERT INTO items VALUES (99, 'newest', false, 0)")
	_, lsn := c.Position()
	eventually(t, 20*time.Second, "retention to pass the client's position", func() (bool, string) {
		tt := e.svc.TruncatedThrough()
		return tt > lsn, fmt.Sprintf("truncated through %d, client at %d", tt, lsn)
	})
	c2, _ := e.clientAt(path)
	waitEqual(t, e, c2, q, lq)
}

func TestTruncateClearsShapes(t *testing.T) {
	e := newEnv(t, itemsSQL+`; INSERT INTO items SELECT i, 't'||i, false, i FROM generate_series(1, 30) i`, "items")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "items", Where: "n > 5"})
	q := "SELECT id, title, n FROM items WHERE n > 5 ORDER BY id"
	lq := "SELECT id, title, n FROM items ORDER BY id"
	waitEqual(t, e, c, q, lq)
	e.exec("TRUNCATE items")
	waitEqual(t, e, c, q, lq)
	// Truncate and reload in one transaction, with writes before the TRUNCATE.
	e.exec(`BEGIN; INSERT INTO items VALUES (500, 'gone', false, 50); TRUNCATE items;
		INSERT INTO items SELECT i, 'r'||i, false, i FROM generate_series(1, 10) i; COMMIT`)
	waitEqual(t, e, c, q, lq)
	if got := localRows(t, c, "SELECT count(*) FROM items"); got[0] != "5" {
		t.Fatalf("after truncate+reload: %v rows", got)
	}
}

func TestSchemaChangeWhileLive(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id int PRIMARY KEY, junk text, title text, n int);
		INSERT INTO docs SELECT i, 'j', 't'||i, i FROM generate_series(1, 10) i`, "docs")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "docs", Where: "n > $1", Params: []any{3}})
	q := "SELECT id, title, n FROM docs WHERE n > 3 ORDER BY id"
	lq := "SELECT id, title, n FROM docs ORDER BY id"
	waitEqual(t, e, c, q, lq)
	// Dropping a column before n shifts the layout of streamed rows.
	e.exec("ALTER TABLE docs DROP COLUMN junk")
	e.exec("ALTER TABLE docs ADD COLUMN extra text DEFAULT 'x'")
	e.exec("UPDATE docs SET n = 0 WHERE id = 5")  // moves out
	e.exec("UPDATE docs SET n = 50 WHERE id = 2") // moves in
	e.exec("INSERT INTO docs (id, title, n, extra) VALUES (11, 'eleven', 11, 'e')")
	waitEqual(t, e, c, q, lq)
	waitEqual(t, e, c, "SELECT id, extra FROM docs WHERE n > 3 AND id = 11", "SELECT id, extra FROM docs WHERE id = 11")
}
