//go:build !js

package client_test

// Tests of the client against a real service on a real Postgres
// (internal/pgtest): not built for the browser.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func pgLogger() *slog.Logger {
	if os.Getenv("LATTICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// pgEnv is a fresh database with a service (insecure) on it.
type pgEnv struct {
	t     *testing.T
	dbURL string
	url   string // ws:// of the service
}

func newPGEnv(t *testing.T, setup ...string) *pgEnv {
	t.Helper()
	e := &pgEnv{t: t, dbURL: pgtest.DB(t)}
	pgtest.Exec(t, e.dbURL, setup...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc, err := server.Start(ctx, server.Config{DatabaseURL: e.dbURL, Insecure: true,
		DataDir: filepath.Join(t.TempDir(), "data"), Logger: pgLogger()})
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		svc.Close()
	})
	e.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return e
}

// pgRows returns the rows of a query in Postgres as text, one string per
// row, columns separated by |, NULL as <nil>.
func (e *pgEnv) pgRows(sql string) []string {
	e.t.Helper()
	return pgtest.Rows(e.t, e.dbURL, sql)
}

// runningClient is a client on path, connected (Run) until stop.
type runningClient struct {
	c    *client.Client
	stop func()
}

// open opens a client on path; online runs it (connects) until the test
// ends or stop is called.
func (e *pgEnv) open(path string, online bool) *runningClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Open(ctx, path, &client.Options{URL: e.url, Logger: pgLogger()})
	if err != nil {
		cancel()
		e.t.Fatalf("open client %s: %v", path, err)
	}
	done := make(chan struct{})
	if online {
		go func() { c.Run(ctx); close(done) }()
	} else {
		close(done)
	}
	stopped := false
	rc := &runningClient{c: c, stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		c.Close()
	}}
	e.t.Cleanup(rc.stop)
	return rc
}

func eventuallyPG(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// localRows runs a query on a client, rows as in pgRows.
func localRows(t *testing.T, c *client.Client, sql string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	var out []string
	for _, r := range rows.Values {
		var parts []string
		for _, v := range r {
			if v == nil {
				parts = append(parts, "<nil>")
			} else {
				parts = append(parts, fmt.Sprint(v))
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

// TestJSONMergeTwoClients: two clients edit different keys of one jsonb
// document merged per key path (lattice.electrify option json_merge) with
// SQLite's json_set, concurrently, one of them offline. Each client's
// document was stale on the keys the other changed, so whole-document
// writes would bring old values back (the later writer's document wins
// where both hold a key): per-path writes keep every edit, in Postgres and
// on both clients. Nested keys of one object, json_remove of a key the
// other did not touch, and a pending edit rebased over the other's change
// (the offline client reconnects and receives it before its own returns)
// are covered on the way.
func TestJSONMergeTwoClients(t *testing.T) {
	e := newPGEnv(t, `CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb)`,
		`INSERT INTO docs VALUES (1, '{"a": 0, "b": 0, "n": {"x": 0, "y": 0}, "gone": true, "list": [1, 2]}')`)
	pgtest.Exec(t, e.dbURL, `CALL lattice.electrify('docs', json_merge => ARRAY['body'])`)
	const pgQ = `SELECT id, body->>'a', body->>'b', body->'n'->>'x', body->'n'->>'y', body ? 'gone', body->>'list' FROM docs ORDER BY id`
	const localQ = `SELECT id, json_extract(body, '$.a'), json_extract(body, '$.b'), json_extract(body, '$.n.x'),
		json_extract(body, '$.n.y'), json_type(body, '$.gone') IS NOT NULL, json(json_extract(body, '$.list')) FROM docs ORDER BY id`
	pathA := filepath.Join(t.TempDir(), "a.db")
	a := e.open(pathA, true)
	b := e.open(":memory:", true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range []*client.Client{a.c, b.c} {
		sub, err := c.Subscribe(ctx, client.Shape{Table: "docs"})
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Synced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	same := func(c *client.Client, want string) func() (bool, string) {
		return func() (bool, string) {
			pg, loc := e.pgRows(pgQ), localRows(t, c, localQ)
			ok := reflect.DeepEqual(pg, []string{want}) && len(loc) == 1 && normalize(loc[0]) == normalize(want)
			return ok, "postgres " + strings.Join(pg, ",") + " local " + strings.Join(loc, ",")
		}
	}
	eventuallyPG(t, "initial rows", same(a.c, "1|0|0|0|0|t|[1, 2]"))

	// a goes offline and edits a and n.x; b, online, edits b and n.y and
	// removes gone, then a edits the list (a later writer than b's edit).
	a.stop()
	a = e.open(pathA, false)
	if err := a.c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.a', 1, '$.n.x', 1) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Exec(ctx, `UPDATE docs SET body = json_remove(json_set(body, '$.b', 2, '$.n.y', 2), '$.gone') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventuallyPG(t, "b's edit in postgres", same(b.c, "1|0|2|0|2|f|[1, 2]"))
	if err := a.c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.list[#]', 3) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	// a's document still holds b = 0, n.y = 0 and gone: a whole-document
	// write, newer, would bring them back.
	if got := localRows(t, a.c, localQ); len(got) != 1 || normalize(got[0]) != normalize("1|1|0|1|0|1|[1,2,3]") {
		t.Fatalf("a offline: %v", got)
	}
	a.stop()
	a = e.open(pathA, true)
	const want = "1|1|2|1|2|f|[1, 2, 3]"
	eventuallyPG(t, "both edits in postgres and on a", same(a.c, want))
	eventuallyPG(t, "both edits on b", same(b.c, want))

	// Both online now, concurrently: each sets a key of its own many times.
	for i := range 5 {
		if err := a.c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.a', ?) WHERE id = 1`, 10+i); err != nil {
			t.Fatal(err)
		}
		if err := b.c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.b', ?) WHERE id = 1`, 20+i); err != nil {
			t.Fatal(err)
		}
	}
	const want2 = "1|14|24|1|2|f|[1, 2, 3]"
	eventuallyPG(t, "concurrent edits in postgres and on a", same(a.c, want2))
	eventuallyPG(t, "concurrent edits on b", same(b.c, want2))
}

// normalize makes a row of pgRows and one of localRows comparable: jsonb
// booleans and SQLite integers, and array spacing.
func normalize(s string) string {
	s = strings.ReplaceAll(s, " ", "")
	s = strings.ReplaceAll(s, "|t|", "|1|")
	s = strings.ReplaceAll(s, "|f|", "|0|")
	return s
}
