package codegen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/server"
)

// seedSQL are the rows runtime_check.ts expects.
const seedSQL = `
INSERT INTO project (id, name, created_at) VALUES
  ('11111111-1111-4111-8111-111111111111', 'alpha', '2024-01-02 03:04:05.5+00'),
  ('22222222-2222-4222-8222-222222222222', 'beta', '2024-02-03 00:00:00+00'),
  ('33333333-3333-4333-8333-333333333333', 'gamma', '2024-01-02 03:04:05+00'),
  ('44444444-4444-4444-8444-444444444444', 'delta', '2024-01-02 03:04:05.123+00'),
  ('55555555-5555-4555-8555-555555555555', 'epsilon', '2024-01-02 03:04:05.12+00');
INSERT INTO issue (id, project_id, parent_id, title, status, moods, priority, points, views, score, weight,
    budget, done, code, flag, sysname, due, at_time, local_ts, updated_at, estimate, meta, doc, attachment,
    tags, counts, big_list, ratios, flags, "Weird ""name"" col") VALUES
  (9007199254740993, '11111111-1111-4111-8111-111111111111', NULL, 'First issue', 'open',
    '{happy,"it''s \"fine\""}', 1, 10, 9223372036854775807, 'NaN', 1e100, 12.50, true, 'c1', 'ab', 'nm',
    '2024-02-29', '13:14:15.123456', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.5+00',
    '1 year 2 mons 3 days 04:05:06.5', '{"a" : 1}', '{"b": [true, null]}', '\x00ff',
    '{x,y}', '{1,NULL,3}', '{9007199254740993}', '{1.5,NaN}', '{t,f}', 'weird');
INSERT INTO issue (id, project_id, parent_id, title, status, priority, points, views, score, done) VALUES
  (2, '11111111-1111-4111-8111-111111111111', 9007199254740993, 'Second', 'doing', 3, NULL, 5, 0.5, false),
  (3, '22222222-2222-4222-8222-222222222222', NULL, 'third ''quoted'' %', 'done', 2, 7, 0, NULL, false);
INSERT INTO label (project_id, name, color) VALUES
  ('11111111-1111-4111-8111-111111111111', 'bug', 'red'),
  ('22222222-2222-4222-8222-222222222222', 'bug', 'blue');
INSERT INTO label (project_id, name) VALUES ('11111111-1111-4111-8111-111111111111', 'ui');
INSERT INTO issue_label VALUES
  (9007199254740993, '11111111-1111-4111-8111-111111111111', 'bug'),
  (2, '11111111-1111-4111-8111-111111111111', 'ui');
INSERT INTO app.user_role (user_id, role, roles) VALUES ('u1', 'admin', '{admin,member}');
INSERT INTO app.user_role (user_id) VALUES ('u2');
`

// TestRuntime runs the generated helpers, compiled by tsc, in node against
// a real replica: Postgres with the fixture schema and rows, a service, and
// a Go client keeping a SQLite file in sync (as lattice replicate does).
// runtime_check.ts reads through the helpers with better-sqlite3, checks
// the values rows hold and the SQL they compile, and writes; the writes are
// captured by the replica's triggers, and this test checks that they
// arrive in Postgres.
func TestRuntime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Compile the fixture (the golden generated code and the check) into a
	// directory inside the fixture, so node finds its node_modules and
	// package.json.
	dist, err := os.MkdirTemp(tscheckDir, "dist-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dist) })
	if out, err := tsc(t, tscheckDir, "-p", ".", "--outDir", filepath.Base(dist)); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}

	url := fixtureDB(t)
	pg, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	if _, err := pg.Exec(ctx, seedSQL); err != nil {
		t.Fatalf("seed: %v", err)
	}

	svc, err := server.Start(ctx, server.Config{
		DatabaseURL: url,
		Insecure:    true,
		DataDir:     filepath.Join(t.TempDir(), "data"),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	defer svc.Close()
	hs := httptest.NewServer(svc.Handler())
	defer hs.Close()

	dbFile := filepath.Join(t.TempDir(), "replica.db")
	c, err := client.Open(ctx, dbFile, &client.Options{URL: "ws" + strings.TrimPrefix(hs.URL, "http")})
	if err != nil {
		t.Fatalf("open client: %v", err)
	}
	defer c.Close()
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stopRun(); <-done }()
	for _, tb := range electrified {
		sub, err := c.Subscribe(ctx, client.Shape{Table: tb})
		if err != nil {
			t.Fatalf("subscribe %s: %v", tb, err)
		}
		if err := sub.Synced(ctx); err != nil {
			t.Fatalf("sync %s: %v", tb, err)
		}
	}

	// The schema object alone (the first load in a browser, before any
	// network) creates the same tables as the service's descriptions did.
	index, err := os.ReadFile(filepath.Join(tscheckDir, "lattice", "index.ts"))
	if err != nil {
		t.Fatal(err)
	}
	synced, offline := tableSQL(t, dbFile), offlineTables(t, index)
	for name, s := range synced {
		if offline[name] != s {
			t.Errorf("table %s from the schema object:\n%s\nfrom the service:\n%s", name, offline[name], s)
		}
	}

	cmd := exec.CommandContext(ctx, "node", filepath.Join(dist, "runtime_check.js"), dbFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("runtime_check.js: %v\n%s%s", err, out, stderr.String())
	}
	var summary struct {
		ProjectID     string `json:"projectId"`
		CheckedValues int    `json:"checkedValues"`
	}
	if err := json.Unmarshal(out, &summary); err != nil {
		t.Fatalf("runtime_check.js printed %q: %v", out, err)
	}
	t.Logf("checked %d values of every table; node's writes created project %s", summary.CheckedValues, summary.ProjectID)

	// The node process's writes reach Postgres.
	checks := []struct {
		sql  string
		want string
	}{
		{`SELECT name FROM project WHERE id = '` + summary.ProjectID + `'`, "from node"},
		{`SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', project_id, title, status, done, views, budget,
			encode(attachment, 'hex'), tags, priority, updated_at AT TIME ZONE 'UTC') FROM issue WHERE id = 9007199254740995`,
			summary.ProjectID + "|created in node|doing|f|1234567890123456789|3.14|010203|{n}|2|2025-06-07 08:09:10.25"},
		{`SELECT format('%s|%s|%s', title, points, done) FROM issue WHERE id = 2`, "updated in node|42|t"},
		{`SELECT count(*)::text FROM issue_label WHERE issue_id = 2`, "0"},
		{`SELECT count(*)::text FROM issue WHERE id = 4`, "0"},
		{`SELECT format('%s|%s', role, roles) FROM app.user_role WHERE user_id = 'u2'`, "admin|{admin}"},
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, ch := range checks {
		var got string
		for {
			err := pg.QueryRow(ctx, ch.sql).Scan(&got)
			if err == nil && got == ch.want {
				break
			}
			if time.Now().After(deadline) {
				st := c.Status()
				t.Fatalf("%s\n= %q (err %v), want %q; client pending %d, last error %v",
					ch.sql, got, err, ch.want, c.PendingCount(), fmt.Sprint(st.LastError))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
