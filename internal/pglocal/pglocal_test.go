package pglocal

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

func execSQL(t *testing.T, url string, sql ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("exec %q: %v", q, err)
		}
	}
}

func TestPersistentDir(t *testing.T) {
	ctx := context.Background()
	parent, err := os.MkdirTemp("", "pglocal-persist-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o755) // the server may run as user postgres
	dir := filepath.Join(parent, "pg")
	s, err := Start(ctx, &Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.Reused {
		t.Fatal("fresh cluster reported as reused")
	}
	execSQL(t, s.URL("postgres"), "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (42)")
	port := s.Port
	s.Stop()

	s, err = Start(ctx, &Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if !s.Reused {
		t.Fatal("second start did not reuse the cluster")
	}
	if s.Port != port {
		t.Errorf("port %d, previous run had %d (still free)", s.Port, port)
	}
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("kept data: %d, %v", x, err)
	}
}

// TestRestart: an immediate restart (a crash of the server) keeps committed
// data and logical slots; a stopped server refuses connections until
// Launch.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, &Options{Conf: []string{"synchronous_commit = on"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	url := s.URL("postgres")
	execSQL(t, url, "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (1)",
		"SELECT pg_create_logical_replication_slot('s1', 'pgoutput')")
	if err := s.Restart(ctx, Immediate); err != nil {
		t.Fatal(err)
	}
	execSQL(t, url, "INSERT INTO kept VALUES (2)")
	s.Shutdown(Fast)
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := s.Launch(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, slots int
	if err := conn.QueryRow(ctx, "SELECT count(*), (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's1') FROM kept").Scan(&n, &slots); err != nil {
		t.Fatal(err)
	}
	if n != 2 || slots != 1 {
		t.Fatalf("after restarts: %d rows (want 2), %d slots (want 1)", n, slots)
	}
}
