package server_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
)

// TestSnapshotSeesLoggedTransaction holds a committed transaction in the
// window where it is in the WAL (so in the service's change log) but not
// yet visible to new snapshots: a commit waiting for a synchronous standby
// that does not exist waits there, after its commit record is flushed and
// before Postgres marks it finished. A client subscribing then must not
// get a snapshot without it at a position after it (it would never get
// the change): the service waits until its snapshot sees it. Both kinds
// of shape: a single table, and a table with a foreign key (relational: the
// snapshot is the graph's fetch).
func TestSnapshotSeesLoggedTransaction(t *testing.T) {
	t.Run("flat", func(t *testing.T) {
		testSnapshotSeesLogged(t, `CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
			INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');`, "items")
	})
	t.Run("relational", func(t *testing.T) {
		testSnapshotSeesLogged(t, `CREATE TABLE owners (id int PRIMARY KEY);
			CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, owner int REFERENCES owners);
			INSERT INTO owners VALUES (1);
			INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 1), (3, 'c', NULL);`, "owners", "items")
	})
}

func testSnapshotSeesLogged(t *testing.T, setup string, tables ...string) {
	e := newEnv(t, setup, tables...)
	watcher, _ := e.clientAt(filepath.Join(t.TempDir(), "watcher.db"))
	e.subscribe(watcher, client.Shape{Table: "items"})

	e.exec("ALTER SYSTEM SET synchronous_standby_names = 'lattice_test_ghost'")
	e.exec("SELECT pg_reload_conf()")
	t.Cleanup(func() {
		e.exec("ALTER SYSTEM RESET synchronous_standby_names")
		e.exec("SELECT pg_reload_conf()")
	})
	time.Sleep(100 * time.Millisecond) // the reload reaches the backends

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "DELETE FROM items WHERE id = 2")
		deleted <- err
	}()
	// The delete is logged and streamed, yet not visible.
	eventually(t, 20*time.Second, "the delete to reach the first client", func() (bool, string) {
		got := localRows(t, watcher, "SELECT id FROM items ORDER BY id")
		return strings.Join(got, ",") == "1,3", strings.Join(got, ",")
	})
	if got := e.pgRows("SELECT id FROM items ORDER BY id"); strings.Join(got, ",") != "1,2,3" {
		t.Fatalf("the delete is visible already (%v): the test cannot hold it in the window", got)
	}

	late, _ := e.clientAt(filepath.Join(t.TempDir(), "late.db"))
	synced := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		sub, err := late.Subscribe(sctx, client.Shape{Table: "items"})
		if err == nil {
			err = sub.Synced(sctx)
		}
		synced <- err
	}()
	select {
	case err := <-synced:
		t.Fatalf("synced (err %v) while a logged transaction was invisible", err)
	case <-time.After(500 * time.Millisecond):
	}
	// Release the commit: it becomes visible, and the snapshot can be taken.
	e.exec("SELECT pg_cancel_backend($1)", pid)
	if err := <-deleted; err != nil {
		t.Logf("delete: %v (committed locally; the wait for the standby was cancelled)", err)
	}
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if got := localRows(t, late, "SELECT id FROM items ORDER BY id"); strings.Join(got, ",") != "1,3" {
		t.Fatalf("late client holds %v after its snapshot, want 1,3", got)
	}
	if m := e.metrics(); !strings.Contains(m, "lattice_snapshot_retries_total") || strings.Contains(m, "lattice_snapshot_retries_total 0\n") {
		t.Fatalf("no snapshot retry counted:\n%s", m)
	}
}

// metrics returns the service's /metrics text.
func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.baseURL() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
