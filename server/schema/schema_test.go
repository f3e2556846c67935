package schema_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func setup(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.DB(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := catalog.Bootstrap(ctx, pool); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, url, `CREATE TABLE items (id integer PRIMARY KEY, title varchar(10), n integer, body text)`,
		`CALL lattice.electrify('items')`)
	return ctx, pool
}

// last returns the latest version of the history.
func last(t *testing.T, ctx context.Context, pool *pgxpool.Pool) schema.Version {
	t.Helper()
	h, err := schema.History(ctx, pool, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) == 0 {
		t.Fatal("empty history")
	}
	return h[len(h)-1]
}

func TestHistoryOfSupportedChanges(t *testing.T) {
	ctx, pool := setup(t)
	if ok, err := schema.EventTriggers(ctx, pool); err != nil || !ok {
		t.Fatalf("event triggers: %v %v", ok, err)
	}
	v := last(t, ctx, pool)
	if v.Kind != schema.KindElectrify || v.Table != "items" || len(v.Columns) != 4 || len(v.PK) != 1 || v.PK[0] != 1 {
		t.Fatalf("first version: %+v", v)
	}
	steps := []struct {
		ddl    string
		kind   string // of the single change
		object string
		detail string
	}{
		{`ALTER TABLE items ADD COLUMN prio integer NOT NULL DEFAULT 0`, "add_column", "prio", "integer NOT NULL DEFAULT 0"},
		{`ALTER TABLE items ADD COLUMN seen timestamptz DEFAULT now()`, "add_column", "seen", "timestamp with time zone DEFAULT now()"},
		{`ALTER TABLE items RENAME COLUMN title TO name`, "rename_column", "name", "title -> name"},
		{`ALTER TABLE items DROP COLUMN body`, "drop_column", "body", ""},
		{`ALTER TABLE items ALTER COLUMN n TYPE bigint`, "alter_type", "n", "integer -> bigint"},
		{`ALTER TABLE items ALTER COLUMN name TYPE varchar(20)`, "alter_type", "name", "character varying(10) -> character varying(20)"},
		{`ALTER TABLE items ALTER COLUMN name TYPE text`, "alter_type", "name", "character varying(20) -> text"},
		{`CREATE INDEX items_n ON items (n)`, "create_index", "items_n", "CREATE INDEX items_n ON public.items USING btree (n)"},
		{`DROP INDEX items_n`, "drop_index", "items_n", ""},
	}
	for _, st := range steps {
		before := last(t, ctx, pool).Version
		if _, err := pool.Exec(ctx, st.ddl); err != nil {
			t.Fatalf("%s: %v", st.ddl, err)
		}
		v := last(t, ctx, pool)
		if v.Version <= before || v.Kind != schema.KindAlter || v.Source != "event_trigger" || v.DDL != st.ddl {
			t.Fatalf("%s: version %+v", st.ddl, v)
		}
		if len(v.Changes) != 1 {
			t.Fatalf("%s: changes %+v", st.ddl, v.Changes)
		}
		c := v.Changes[0]
		if c.Kind != st.kind || c.Column+c.Index != st.object || c.Detail != st.detail {
			t.Fatalf("%s: change %+v, want %s %s %q", st.ddl, c, st.kind, st.object, st.detail)
		}
	}
	v = last(t, ctx, pool)
	var names []string
	for _, c := range v.Columns {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "id,name,n,prio,seen" || v.Table != "items" {
		t.Fatalf("final schema: %s %s", v.Table, got)
	}
	// History by any name the table had.
	if h, err := schema.History(ctx, pool, 0, "items"); err != nil || len(h) != len(steps)+1 {
		t.Fatalf("history of items: %d versions, %v", len(h), err)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE items`); err != nil {
		t.Fatal(err)
	}
	if v := last(t, ctx, pool); v.Kind != schema.KindDropTable || v.Table != "items" {
		t.Fatalf("after drop: %+v", v)
	}
	// The readable view has one row per change.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM lattice.schema_changes WHERE change IS NOT NULL`).Scan(&n); err != nil || n != len(steps) {
		t.Fatalf("schema_changes: %d rows, %v", n, err)
	}
}

func TestUnsupportedChangesRefused(t *testing.T) {
	ctx, pool := setup(t)
	if _, err := pool.Exec(ctx, `ALTER TABLE items ALTER COLUMN n TYPE bigint`); err != nil {
		t.Fatal(err)
	}
	before := last(t, ctx, pool)
	for _, c := range []struct{ ddl, want string }{
		{`ALTER TABLE items ALTER COLUMN n TYPE integer`, "column n changes type from bigint to integer, which is not a widening change"},
		{`ALTER TABLE items ALTER COLUMN body TYPE varchar(50)`, "column body changes type from text to character varying(50)"},
		{`ALTER TABLE items ALTER COLUMN title TYPE varchar(5)`, "from character varying(10) to character varying(5)"},
		{`ALTER TABLE items DROP CONSTRAINT items_pkey`, "the primary key is dropped"},
		{`ALTER TABLE items DROP CONSTRAINT items_pkey, ADD PRIMARY KEY (id, n)`, "the primary key changes"},
		{`ALTER TABLE items ADD COLUMN p point`, "column p has type point, which Lattice cannot sync"},
		{`ALTER TABLE items RENAME TO things`, "renaming it (to public.things) is not supported yet"},
		{`CREATE SCHEMA app; ALTER TABLE items SET SCHEMA app`, "renaming it (to app.items) is not supported yet"},
	} {
		_, err := pool.Exec(ctx, c.ddl)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" ||
			!strings.HasPrefix(pgErr.Message, "Lattice cannot apply this change to electrified table public.items: ") ||
			!strings.Contains(pgErr.Message, c.want) {
			t.Fatalf("%s: error %v, want feature_not_supported with %q", c.ddl, err, c.want)
		}
		if pgErr.Hint == "" {
			t.Fatalf("%s: no hint", c.ddl)
		}
	}
	if v := last(t, ctx, pool); v.Version != before.Version {
		t.Fatalf("a refused change was recorded: %+v", v)
	}
	// The migration was rolled back: the table is as before.
	var typ string
	if err := pool.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'n'`).Scan(&typ); err != nil || typ != "bigint" {
		t.Fatalf("n is %s (%v)", typ, err)
	}
	// Tables that are not electrified are not concerned.
	if _, err := pool.Exec(ctx, `CREATE TABLE plain (id bigint PRIMARY KEY); ALTER TABLE plain ALTER COLUMN id TYPE integer`); err != nil {
		t.Fatal(err)
	}
}

// Without event triggers (a role that may not create them), the service
// records what the stream shows and stops syncing a table whose change is
// not supported.
func TestObserveWithoutEventTrigger(t *testing.T) {
	ctx, pool := setup(t)
	if _, err := pool.Exec(ctx, `DROP EVENT TRIGGER `+schema.TriggerDDLEnd+`; DROP EVENT TRIGGER `+schema.TriggerSQLDrop); err != nil {
		t.Fatal(err)
	}
	if ok, err := schema.EventTriggers(ctx, pool); err != nil || ok {
		t.Fatalf("event triggers: %v %v", ok, err)
	}
	var relid uint32
	if err := pool.QueryRow(ctx, `SELECT 'items'::regclass::oid`).Scan(&relid); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE items RENAME COLUMN title TO name`); err != nil {
		t.Fatal(err)
	}
	why, err := schema.Observe(ctx, pool, relid)
	if err != nil || why != "" {
		t.Fatalf("observe rename: %q %v", why, err)
	}
	v := last(t, ctx, pool)
	if v.Source != "replication" || len(v.Changes) != 1 || v.Changes[0].Kind != "rename_column" {
		t.Fatalf("observed rename: %+v", v)
	}
	// Observing again records nothing.
	if _, err := schema.Observe(ctx, pool, relid); err != nil {
		t.Fatal(err)
	}
	if v2 := last(t, ctx, pool); v2.Version != v.Version {
		t.Fatalf("unchanged table recorded again: %+v", v2)
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE items ALTER COLUMN n TYPE smallint`); err != nil {
		t.Fatal(err)
	}
	why, err = schema.Observe(ctx, pool, relid)
	if err != nil || !strings.Contains(why, "column n changes type from integer to smallint") {
		t.Fatalf("observe narrowing: %q %v", why, err)
	}
	refused, err := schema.Refused(ctx, pool)
	if err != nil || refused["public.items"] != why {
		t.Fatalf("refused tables: %v %v", refused, err)
	}
}

// A role with no privilege on schema lattice changes its electrified table
// (and others) through the event triggers.
func TestMigrationRoleWithoutLatticePrivileges(t *testing.T) {
	ctx, pool := setup(t)
	if _, err := pool.Exec(ctx, `CREATE ROLE migrator LOGIN; ALTER TABLE items OWNER TO migrator; GRANT CREATE ON SCHEMA public TO migrator`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Exec(context.Background(), `DROP TABLE IF EXISTS items, other; REVOKE ALL ON SCHEMA public FROM migrator; DROP ROLE migrator`)
	})
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET ROLE migrator`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), `RESET ROLE`)
	if _, err := conn.Exec(ctx, `ALTER TABLE items RENAME COLUMN title TO name; CREATE TABLE other (id int PRIMARY KEY); DROP TABLE other`); err != nil {
		t.Fatalf("migration as a role without lattice privileges: %v", err)
	}
	_, err = conn.Exec(ctx, `ALTER TABLE items ALTER COLUMN n TYPE smallint`)
	if err == nil || !strings.Contains(err.Error(), "Lattice cannot apply this change to electrified table public.items") {
		t.Fatalf("narrowing as migrator: %v", err)
	}
	if _, err := conn.Exec(ctx, `RESET ROLE`); err != nil {
		t.Fatal(err)
	}
	if v := last(t, ctx, pool); v.Kind != schema.KindAlter || len(v.Changes) != 1 || v.Changes[0].Kind != "rename_column" {
		t.Fatalf("history: %+v", v)
	}
}
