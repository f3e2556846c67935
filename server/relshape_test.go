package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
)

const linearSQL = `
CREATE TABLE users (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE project (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE issue (id text PRIMARY KEY, project_id text NOT NULL REFERENCES project(id),
	assignee_id text REFERENCES users(id), title text NOT NULL, status text NOT NULL DEFAULT 'open');
CREATE TABLE comment (id text PRIMARY KEY, issue_id text NOT NULL REFERENCES issue(id), body text NOT NULL);
INSERT INTO users VALUES ('u1', 'Ann'), ('u2', 'Bob');
INSERT INTO project VALUES ('p1', 'One'), ('p2', 'Two');
INSERT INTO issue VALUES ('i1', 'p1', 'u1', 'first', 'open'), ('i2', 'p1', NULL, 'second', 'done'), ('i3', 'p2', 'u2', 'third', 'open');
INSERT INTO comment VALUES ('c1', 'i1', 'a'), ('c2', 'i1', 'b'), ('c3', 'i2', 'c'), ('c4', 'i3', 'd');
`

func mustParseShape(t *testing.T, js string) client.Shape {
	t.Helper()
	sh, err := client.ParseShape([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// waitLocal waits until the client's rows of a query are want.
func waitLocal(t *testing.T, c *client.Client, sql string, want ...string) {
	t.Helper()
	eventually(t, 20*time.Second, sql, func() (bool, string) {
		got := localRows(t, c, sql)
		return equalStrings(got, want), "got " + strings.Join(got, ", ") + "; want " + strings.Join(want, ", ")
	})
}

// TestLinearLiteMove subscribes two clients to one project each, with
// issues and comments, and moves an issue from one project to the other.
func TestLinearLiteMove(t *testing.T) {
	e := newEnv(t, linearSQL, "users", "project", "issue", "comment")
	a, _ := e.clientAt(":memory:")
	b, _ := e.clientAt(":memory:")
	const def = `{"table":"project","where":"id = $1","params":["%s"],"include":{"issue":{"include":{"comment":{}}}}}`
	e.subscribe(a, mustParseShape(t, strings.Replace(def, "%s", "p1", 1)))
	e.subscribe(b, mustParseShape(t, strings.Replace(def, "%s", "p2", 1)))

	waitLocal(t, a, "SELECT id FROM project ORDER BY id", "p1")
	waitLocal(t, a, "SELECT id FROM issue ORDER BY id", "i1", "i2")
	waitLocal(t, a, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c3")
	// Referential closure: the assignee of i1 comes along.
	waitLocal(t, a, "SELECT id FROM users ORDER BY id", "u1")
	waitLocal(t, b, "SELECT id FROM issue ORDER BY id", "i3")
	waitLocal(t, b, "SELECT id FROM users ORDER BY id", "u2")

	e.exec("UPDATE issue SET project_id = 'p2' WHERE id = 'i1'")
	waitLocal(t, a, "SELECT id FROM issue ORDER BY id", "i2")
	waitLocal(t, a, "SELECT id FROM comment ORDER BY id", "c3")
	waitLocal(t, a, "SELECT id FROM users ORDER BY id")
	waitLocal(t, b, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	waitLocal(t, b, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c4")
	waitLocal(t, b, "SELECT id FROM users ORDER BY id", "u1", "u2")
	// A move-out is not a delete: the rows are still in Postgres.
	if got := e.pgRows("SELECT count(*) FROM comment"); got[0] != "4" {
		t.Fatalf("comments in postgres: %v", got)
	}

	// New rows under a held issue arrive; a comment added to a moved issue
	// goes to its new holder.
	e.exec("INSERT INTO comment VALUES ('c5', 'i1', 'e'), ('c6', 'i2', 'f')")
	waitLocal(t, b, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c4", "c5")
	waitLocal(t, a, "SELECT id FROM comment ORDER BY id", "c3", "c6")

	// Unsubscribe removes what no other shape holds, online.
	ctx := context.Background()
	if err := b.Unsubscribe(ctx, b.Shapes()[0].ID); err != nil {
		t.Fatal(err)
	}
	waitLocal(t, b, "SELECT count(*) FROM issue", "0")
	waitLocal(t, b, "SELECT count(*) FROM comment", "0")
	waitLocal(t, b, "SELECT count(*) FROM project", "0")
	waitLocal(t, b, "SELECT count(*) FROM users", "0")
}

// TestShapeOverlapAndOfflineUnsubscribe: two shapes share rows; dropping
// one keeps what the other holds; an unsubscribe made offline is applied
// on reconnect; a client restart resumes relational shapes.
func TestShapeOverlapAndOfflineUnsubscribe(t *testing.T) {
	e := newEnv(t, linearSQL, "users", "project", "issue", "comment")
	path := t.TempDir() + "/c.db"
	c, stop := e.clientAt(path)
	whole := mustParseShape(t, `{"id":"whole","table":"project","where":"id = $1","params":["p1"],"include":{"issue":{"include":{"comment":{}}}}}`)
	open := mustParseShape(t, `{"id":"open","table":"issue","where":"status = 'open'","include":{"comment":{}}}`)
	e.subscribe(c, whole)
	e.subscribe(c, open)
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i1", "i2", "i3")
	waitLocal(t, c, "SELECT id FROM project ORDER BY id", "p1", "p2") // p2 by closure of i3
	ctx := context.Background()
	if err := c.Unsubscribe(ctx, "whole"); err != nil {
		t.Fatal(err)
	}
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	waitLocal(t, c, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c4")
	waitLocal(t, c, "SELECT id FROM project ORDER BY id", "p1", "p2")

	// Offline: subscribe again to "whole", drop "open", change data.
	stop()
	c2, err := client.Open(ctx, path, &client.Options{URL: e.url, Token: e.token("alice"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Unsubscribe(ctx, "open"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Subscribe(ctx, whole); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	e.exec("UPDATE issue SET status = 'open' WHERE id = 'i2'; INSERT INTO comment VALUES ('c9', 'i3', 'z')")
	c3, _ := e.clientAt(path)
	waitLocal(t, c3, "SELECT id FROM issue ORDER BY id", "i1", "i2")
	waitLocal(t, c3, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c3")
	waitLocal(t, c3, "SELECT id FROM project ORDER BY id", "p1")
	if got := len(c3.Shapes()); got != 1 {
		t.Fatalf("shapes after restart: %d", got)
	}
	// Live after the resume.
	e.exec("UPDATE issue SET project_id = 'p1' WHERE id = 'i3'")
	waitLocal(t, c3, "SELECT id FROM comment ORDER BY id", "c1", "c2", "c3", "c4", "c9")
}

// TestShapeErrors checks the messages of refused shapes.
func TestShapeErrors(t *testing.T) {
	e := newEnv(t, linearSQL+`CREATE TABLE other (id int PRIMARY KEY);
		ALTER TABLE issue ADD COLUMN reviewer_id text REFERENCES users(id);`, "users", "project", "issue", "comment", "other")
	c, _ := e.clientAt(":memory:")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ def, want string }{
		{`{"table":"project","include":{"other":{}}}`, "unknown relation"},
		{`{"table":"project","include":{"nosuch":{}}}`, "nosuch"},
		{`{"table":"issue","include":{"users":{}}}`, `set "via"`},
		{`{"table":"issue","include":{"users":{"via":"nope"}}}`, `column "nope"`},
		{`{"table":"project","include":{"issue":{"where":"bogus = 1"}}}`, "bogus"},
	} {
		sub, err := c.Subscribe(ctx, mustParseShape(t, tc.def))
		if err != nil {
			t.Fatal(err)
		}
		err = sub.Synced(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", tc.def, err, tc.want)
		}
	}
	// A via that picks one of two foreign keys works.
	e.subscribe(c, mustParseShape(t, `{"table":"issue","where":"id = 'i1'","include":{"users":{"via":"assignee_id"}}}`))
	waitLocal(t, c, "SELECT id FROM users ORDER BY id", "u1")
	if _, err := client.ParseShape([]byte(`{"table":"t","inclde":{}}`)); err == nil || !strings.Contains(err.Error(), "inclde") {
		t.Errorf("unknown field: %v", err)
	}
}

func TestShapeRowLimit(t *testing.T) {
	e := newEnv(t, linearSQL, "users", "project", "issue", "comment")
	e.stop()
	e.cfg.MaxSnapshotRows = 4
	e.start()
	c, _ := e.clientAt(":memory:")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, mustParseShape(t, `{"table":"project","include":{"issue":{"include":{"comment":{}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Synced(ctx); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("error %v, want too large", err)
	}
	e.subscribe(c, mustParseShape(t, `{"table":"project","where":"id = 'p2'","include":{"issue":{}}}`))
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i3")
}
