package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
)

// schemaEnv is a service with table items electrified and a lattice
// replicate process keeping a replica of it.
type schemaEnv struct {
	t       *testing.T
	db      string
	env     []string
	replica string
	tok     string
	addr    string
	rep     *proc
}

func newSchemaEnv(t *testing.T) *schemaEnv {
	e := &schemaEnv{t: t, db: pgtest.DB(t)}
	pgExec(t, e.db, `CREATE TABLE items (id bigint PRIMARY KEY, title varchar(20) NOT NULL, n integer, body text)`)
	pgExec(t, e.db, `INSERT INTO items VALUES (1, 'one', 1, 'b1'), (2, 'two', 2, 'b2'), (3, 'three', 3, NULL)`)
	e.addr = freeAddr(t)
	e.env = []string{"DATABASE_URL=" + e.db, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + e.addr, "LATTICE_DATA_DIR=" + t.TempDir()}
	svc := start(t, e.env, "serve")
	waitHealthy(t, e.addr, svc)
	if out, err := runCLI(t, e.env, "electrify", "items"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	e.tok, _ = server.SignToken([]byte(secret), "e2e", time.Hour)
	e.replica = filepath.Join(t.TempDir(), "replica.db")
	e.startReplicate()
	return e
}

func (e *schemaEnv) startReplicate() {
	e.rep = start(e.t, nil, "replicate", "--url", "ws://"+e.addr, "--token", e.tok, "--db", e.replica, "--shape", "items")
}

// pgColumns is the column list of items in Postgres.
func (e *schemaEnv) pgColumns() string {
	return strings.Join(pgRows(e.t, e.db, `SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`), ",")
}

// converge waits until the replica has the columns of items in Postgres
// and the same rows.
func (e *schemaEnv) converge(step string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var want, got, wantCols, gotCols string
	for time.Now().Before(deadline) {
		wantCols = e.pgColumns()
		cols, err := sqliteRows(e.t, e.replica, `SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info('items') ORDER BY cid)`)
		if err == nil && len(cols) == 1 {
			gotCols = cols[0]
		}
		if gotCols == wantCols {
			q := "SELECT " + wantCols + " FROM items ORDER BY id"
			want = strings.Join(pgRows(e.t, e.db, q), "\n")
			rows, err := sqliteRows(e.t, e.replica, q)
			if err == nil {
				got = strings.Join(rows, "\n")
				if got == want {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("%s: replica never matched Postgres\ncolumns: replica %s, postgres %s\nreplica:\n%s\npostgres:\n%s\nreplicate log:\n%s",
		step, gotCols, wantCols, got, want, e.rep.out.String())
}

// sqliteExec writes to the replica as any SQLite program would.
func (e *schemaEnv) sqliteExec(sql string) {
	e.t.Helper()
	if _, err := sqliteRows(e.t, e.replica, sql); err != nil {
		e.t.Fatalf("sqlite3 %s: %v", sql, err)
	}
}

// waitPG waits until query q on Postgres returns want.
func (e *schemaEnv) waitPG(q, want string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = strings.Join(pgRows(e.t, e.db, q), "\n")
		if got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("%s: got %q, want %q\nreplicate log:\n%s", q, got, want, e.rep.out.String())
}

// TestSchemaChangesWhileReplicating: each supported change of an
// electrified table while lattice replicate runs; after each the replica
// (read with SQLite) has Postgres' columns and rows, and writes made with
// SQLite to new and renamed columns reach Postgres.
func TestSchemaChangesWhileReplicating(t *testing.T) {
	e := newSchemaEnv(t)
	e.converge("initial sync")
	for _, st := range []struct{ name, ddl, dml string }{
		{"add nullable column", `ALTER TABLE items ADD COLUMN note text`, `INSERT INTO items VALUES (4, 'four', 4, 'b4', 'n4')`},
		{"add column with a constant default", `ALTER TABLE items ADD COLUMN kind text DEFAULT 'task'`, `UPDATE items SET n = n + 1 WHERE id = 1`},
		{"add NOT NULL DEFAULT column", `ALTER TABLE items ADD COLUMN prio integer NOT NULL DEFAULT 5`, `UPDATE items SET prio = 9 WHERE id = 2`},
		{"add column with a volatile default", `ALTER TABLE items ADD COLUMN ref uuid DEFAULT gen_random_uuid()`, `INSERT INTO items (id, title) VALUES (7, 'seven')`},
		{"rename column", `ALTER TABLE items RENAME COLUMN title TO name`, `UPDATE items SET name = 'uno' WHERE id = 1`},
		{"drop column", `ALTER TABLE items DROP COLUMN body`, `UPDATE items SET n = n + 1 WHERE id = 3`},
		{"integer to bigint", `ALTER TABLE items ALTER COLUMN n TYPE bigint`, `UPDATE items SET n = 5000000000 WHERE id = 4`},
		{"varchar(20) to varchar(40)", `ALTER TABLE items ALTER COLUMN name TYPE varchar(40)`, `UPDATE items SET name = 'a name longer than twenty' WHERE id = 2`},
		{"varchar to text", `ALTER TABLE items ALTER COLUMN name TYPE text`, `INSERT INTO items (id, name) VALUES (5, 'five')`},
		{"create index", `CREATE INDEX items_prio ON items (prio)`, `UPDATE items SET prio = 1 WHERE id = 5`},
		{"drop index", `DROP INDEX items_prio`, `UPDATE items SET prio = 2 WHERE id = 5`},
	} {
		pgExec(t, e.db, st.ddl)
		pgExec(t, e.db, st.dml)
		e.converge(st.name)
	}
	// Writes with sqlite3 to the renamed and the added columns reach Postgres.
	// (ref, added with a volatile default SQLite cannot add to a table,
	// has no local default: a local insert writes NULL to it.)
	e.sqliteExec(`UPDATE items SET name = 'from sqlite', prio = 42, note = 'sq' WHERE id = 3`)
	e.sqliteExec(`INSERT INTO items (id, name, n) VALUES (6, 'six', 6)`)
	e.waitPG(`SELECT id, name, prio, note, kind, ref IS NOT NULL FROM items WHERE id IN (3, 6) ORDER BY id`, "3|from sqlite|42|sq|task|t\n6|six|5||task|f")
	e.converge("after local writes")

	// Refused changes: a clear message, nothing changes, sync goes on.
	pgExec(t, e.db, `UPDATE items SET n = 4 WHERE id = 4`) // fits an integer: only the trigger refuses
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range []struct{ ddl, want string }{
		{`ALTER TABLE items ALTER COLUMN n TYPE integer`, "Lattice cannot apply this change to electrified table public.items: column n changes type from bigint to integer, which is not a widening change"},
		{`ALTER TABLE items DROP CONSTRAINT items_pkey`, "Lattice cannot apply this change to electrified table public.items: the primary key is dropped"},
	} {
		_, err := conn.Exec(ctx, c.ddl)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, c.want) {
			t.Fatalf("%s: %v, want %q", c.ddl, err, c.want)
		}
	}
	pgExec(t, e.db, `UPDATE items SET n = 7 WHERE id = 6`)
	e.converge("after refused changes")
	out, err := runCLI(t, e.env, "schema", "--table", "items")
	if err != nil || strings.Count(out, "\talter\t") != 11 || !strings.Contains(out, "rename_column name: title -> name") {
		t.Fatalf("lattice schema: %v\n%s", err, out)
	}
}

// TestOfflineWritesAcrossMigrations: a client stopped with pending writes
// while three migrations (add, rename, drop) run, then started again:
// the replica converges with Postgres; the write to the renamed column
// follows it, the insert gets the new column's default, and only the
// dropped column's value is lost, which the client says.
func TestOfflineWritesAcrossMigrations(t *testing.T) {
	e := newSchemaEnv(t)
	e.converge("initial sync")
	e.rep.kill(syscall.SIGTERM)

	// Pending writes against the old schema, made while the client is down.
	e.sqliteExec(`UPDATE items SET title = 'offline', body = 'lost', n = 42 WHERE id = 1`)
	e.sqliteExec(`INSERT INTO items (id, title, n, body) VALUES (10, 'new', 10, 'lost too')`)
	e.sqliteExec(`UPDATE items SET n = 20 WHERE id = 2`)

	pgExec(t, e.db, `ALTER TABLE items ADD COLUMN prio integer NOT NULL DEFAULT 7`)
	pgExec(t, e.db, `ALTER TABLE items RENAME COLUMN title TO name`)
	pgExec(t, e.db, `ALTER TABLE items DROP COLUMN body`)

	e.startReplicate()
	e.waitPG(`SELECT id, name, n, prio FROM items ORDER BY id`, "1|offline|42|7\n2|two|20|7\n3|three|3|7\n10|new|10|7")
	e.converge("after reconnecting")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.rep.out.String(), "column(s) body dropped upstream; 2 pending local change(s) lose their value(s) for them") {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not say that pending writes lost the dropped column:\n%s", e.rep.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The replica works on with the new schema.
	e.sqliteExec(`UPDATE items SET name = 'renamed later', prio = 1 WHERE id = 10`)
	e.waitPG(`SELECT name, prio FROM items WHERE id = 10`, "renamed later|1")
}
