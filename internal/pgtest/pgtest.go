// Package pgtest is the test harness on top of internal/pglocal: one
// throwaway logical-replication cluster per test package (started lazily,
// stopped by Main) and a fresh database per test (DB). Fault tests start
// and stop clusters of their own (Start: a pglocal cluster).
//
// Use: func TestMain(m *testing.M) { pgtest.Main(m) }, then pgtest.DB(t).
package pgtest

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/pglocal"
)

// Server, Options and the shutdown modes are pglocal's.
type (
	Server       = pglocal.Server
	Options      = pglocal.Options
	ShutdownMode = pglocal.ShutdownMode
)

const (
	Fast      = pglocal.Fast
	Immediate = pglocal.Immediate
	Smart     = pglocal.Smart
)

// Start starts a cluster of the test's own (pglocal.Start); Stop it.
func Start(ctx context.Context, opts *Options) (*Server, error) { return pglocal.Start(ctx, opts) }

var (
	shared   *Server
	sharedMu sync.Mutex
)

// Main runs a test package's tests with one shared cluster, started lazily by
// the first call to DB, and stopped when the tests finish. Call it from
// TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if shared != nil {
		shared.Stop()
	}
	sharedMu.Unlock()
	os.Exit(code)
}

// Shared returns the package's shared cluster, starting it on first use.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		s, err := Start(context.Background(), nil)
		if err != nil {
			tb.Fatalf("start postgres: %v", err)
		}
		shared = s
	}
	return shared
}

// DB creates a fresh database on the shared cluster for this test and
// returns its URL; it is dropped (with its slots) when the test ends.
func DB(tb testing.TB) string {
	tb.Helper()
	s := Shared(tb)
	ctx := context.Background()
	name, url, err := s.CreateDB(ctx)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := s.DropDB(context.Background(), name); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return url
}

// Exec runs statements on url, failing the test on error.
func Exec(tb testing.TB, url string, sql ...string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			tb.Fatalf("exec %q: %v", q, err)
		}
	}
}

// Rows returns the rows of a query on url as text, one string per row,
// columns separated by |, NULL as <nil>; it fails the test on error.
func Rows(tb testing.TB, url, sql string) []string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		tb.Fatalf("query %q: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		raw := rows.RawValues()
		parts := make([]string, len(raw))
		for i, b := range raw {
			if b == nil {
				parts[i] = "<nil>"
			} else {
				parts[i] = string(b)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
