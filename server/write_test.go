package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

const writeSQL = `CREATE TABLE items (id integer PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false, n integer CHECK (n >= 0))`

// The items of writeSQL, in Postgres and in a replica, as equal strings.
const (
	itemsPG    = "SELECT id, title, CASE WHEN done THEN 1 ELSE 0 END, n FROM items ORDER BY id"
	itemsLocal = "SELECT id, title, done, n FROM items ORDER BY id"
)

// TestWriteRoundTrip: a local write reaches Postgres, another client, and
// comes back to its author, who then holds nothing pending.
func TestWriteRoundTrip(t *testing.T) {
	e := newEnv(t, writeSQL, "items")
	a, _ := e.clientAt(":memory:")
	b, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "items"})
	e.subscribe(b, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := a.Exec(ctx, "INSERT INTO items (id, title, done, n) VALUES (1, 'from a', 0, 5), (2, 'two', 0, 0)"); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, "UPDATE items SET done = 1 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	q, lq := itemsPG, itemsLocal
	eventually(t, 20*time.Second, "the write in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 2 && rows[1] == "2|two|1|0", fmt.Sprint(rows)
	})
	waitEqual(t, e, b, q, lq)
	waitEqual(t, e, a, q, lq)
	eventually(t, 20*time.Second, "nothing pending on the author", func() (bool, string) {
		return a.PendingCount() == 0, fmt.Sprint(a.PendingCount())
	})
	if err := b.Exec(ctx, "DELETE FROM items WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the delete in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 1 && rows[0] == "2|two|1|0", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
}

// TestConcurrentColumnsMerge: two clients update different columns of the
// same row at the same time, and a plain SQL writer updates a third; all
// three survive everywhere.
func TestConcurrentColumnsMerge(t *testing.T) {
	e := newEnv(t, writeSQL+"; INSERT INTO items VALUES (1, 'start', false, 0)", "items")
	a, _ := e.clientAt(":memory:")
	b, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "items"})
	e.subscribe(b, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := a.Exec(ctx, "UPDATE items SET title = 'title by a' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Exec(ctx, "UPDATE items SET n = 42 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	e.exec("UPDATE items SET done = true WHERE id = 1")
	want := "1|title by a|1|42"
	q := "SELECT id, title, CASE WHEN done THEN 1 ELSE 0 END, n FROM items ORDER BY id"
	eventually(t, 20*time.Second, "merged row in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 1 && rows[0] == want, fmt.Sprint(rows)
	})
	lq := "SELECT id, title, done, n FROM items ORDER BY id"
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
}

// TestRejectedWriteIsReported: a write that violates a CHECK constraint is
// rejected with the reason, and nothing of it reaches Postgres.
func TestRejectedWriteIsReported(t *testing.T) {
	e := newEnv(t, writeSQL, "items")
	a, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := a.Exec(ctx, "INSERT INTO items (id, title, done, n) VALUES (1, 'ok', 0, 1), (2, 'bad', 0, -1)"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the rejection", func() (bool, string) {
		var rej *client.RejectedError
		err := a.Status().LastError
		return errors.As(err, &rej) && rej.Code == "check_violation", fmt.Sprint(err)
	})
	if rows := e.pgRows("SELECT count(*) FROM items"); rows[0] != "0" {
		t.Fatalf("part of a rejected transaction reached postgres: %v", rows)
	}
	// The rejected effects are undone locally, visibly.
	q := "SELECT id, title, CASE WHEN done THEN 1 ELSE 0 END, n FROM items ORDER BY id"
	waitEqual(t, e, a, q, "SELECT id, title, done, n FROM items ORDER BY id")
	// A rejected update reverts to the Postgres row; the next write goes on.
	e.exec("INSERT INTO items VALUES (7, 'seven', false, 7)")
	waitEqual(t, e, a, q, "SELECT id, title, done, n FROM items ORDER BY id")
	if err := a.Exec(ctx, "UPDATE items SET n = -7 WHERE id = 7"); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, "UPDATE items SET title = 'still seven' WHERE id = 7"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the next write applied", func() (bool, string) {
		rows := e.pgRows("SELECT title, n FROM items WHERE id = 7")
		return len(rows) == 1 && rows[0] == "still seven|7", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, "SELECT id, title, done, n FROM items ORDER BY id")
	eventually(t, 20*time.Second, "nothing pending", func() (bool, string) {
		return a.PendingCount() == 0, fmt.Sprint(a.PendingCount())
	})
}

// TestLocalDefaults: Postgres defaults with a local equivalent apply to
// local inserts (constants, now(), gen_random_uuid()).
func TestLocalDefaults(t *testing.T) {
	e := newEnv(t, `CREATE TABLE notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text NOT NULL,
		status text NOT NULL DEFAULT 'open', prio int NOT NULL DEFAULT 3, done boolean NOT NULL DEFAULT false,
		tags text[] NOT NULL DEFAULT '{}', at timestamptz NOT NULL DEFAULT now(), seq serial)`, "notes")
	a, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "notes"})
	ctx := context.Background()
	if err := a.Exec(ctx, "INSERT INTO notes (body, seq) VALUES ('hello', 1)"); err != nil {
		t.Fatal(err)
	}
	q := "SELECT body, status, prio, CASE WHEN done THEN 1 ELSE 0 END, array_length(tags, 1) IS NULL, at > now() - interval '1 minute', length(id::text) FROM notes"
	eventually(t, 20*time.Second, "the insert with defaults in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 1 && rows[0] == "hello|open|3|0|t|t|36", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, "SELECT id::text, body, status, prio FROM notes", "SELECT id, body, status, prio FROM notes")
}

// A write sent again (a retry after a lost ack, or after the service
// crashed) is applied once, acked again, and followed by its rows as
// Postgres holds them, as the client's own transaction returning: a client
// that re-synced past the original change would otherwise keep waiting
// for it.
func TestDuplicateWriteReturnsRows(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	i32 := func(i int64) coltype.Value { return coltype.Value{Kind: coltype.Integer, I: i} }
	txt := func(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
	w := &protocol.Write{TxnID: 1, HLC: 1 << 32, Changes: []protocol.WriteChange{{Table: "items", Op: protocol.OpInsert,
		Key: []coltype.Value{i32(7)}, Columns: []uint32{0, 1, 2, 3}, Values: []coltype.Value{i32(7), txt("once"), i32(0), i32(1)}}}}
	for attempt := 0; attempt < 2; attempt++ {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: protocol.Version, Token: e.token("w"), ClientID: "dup-writer"})
		if _, err := r.next(); err != nil {
			t.Fatal(err)
		}
		r.send(w)
		acked := false
		for {
			m, err := r.next()
			if err != nil {
				t.Fatalf("attempt %d: %v", attempt, err)
			}
			if a, ok := m.(*protocol.Ack); ok && a.TxnID == 1 {
				acked = true
				if attempt == 0 {
					break
				}
				continue
			}
			if _, ok := m.(*protocol.Relation); ok {
				continue
			}
			tx, ok := m.(*protocol.Txn)
			if !ok || attempt == 0 {
				t.Fatalf("attempt %d: unexpected %T %+v", attempt, m, m)
			}
			// This connection subscribed to no shape: the row moves out
			// (a client holding it would get it as an update).
			if !acked || tx.Origin != "dup-writer" || tx.ClientTxnID != 1 || len(tx.Changes) != 1 ||
				tx.Changes[0].Op != protocol.OpMoveOut {
				t.Fatalf("after the duplicate: %+v (acked %v)", tx, acked)
			}
			break
		}
		r.conn.CloseNow()
	}
	if rows := e.pgRows("SELECT id, title FROM items"); len(rows) != 1 || rows[0] != "7|once" {
		t.Fatalf("items: %v", rows)
	}
	if n := e.pgRows("SELECT count(*) FROM lattice.applied WHERE origin = 'dup-writer'"); n[0] != "1" {
		t.Fatalf("applied: %v", n)
	}
}

// offlineExec runs statements on the replica at path while its client is
// not running (no connection): the writes queue locally.
func offlineExec(t *testing.T, e *env, path string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	c, err := client.Open(ctx, path, &client.Options{URL: e.url, Token: e.token("alice"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, s := range stmts {
		if err := c.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

// offlineAndOnline starts a service with setup, a client on a file that
// syncs shapes and goes offline (its path), and an online client b with
// the same shapes.
func offlineAndOnline(t *testing.T, setup string, tables []string, shapes ...client.Shape) (*env, string, *client.Client) {
	t.Helper()
	e := newEnv(t, setup, tables...)
	path := t.TempDir() + "/a.db"
	a, stopA := e.clientAt(path)
	for _, sh := range shapes {
		e.subscribe(a, sh)
	}
	stopA()
	b, _ := e.clientAt(":memory:")
	for _, sh := range shapes {
		e.subscribe(b, sh)
	}
	return e, path, b
}

// TestDeleteKeepsUnseenUpdate: a delete made offline, concurrent with an
// update it never saw, removes only what its author saw: the row stays,
// with the update, everywhere, including on the deleting client.
func TestDeleteKeepsUnseenUpdate(t *testing.T) {
	e, path, b := offlineAndOnline(t, writeSQL+"; INSERT INTO items VALUES (1, 'start', false, 0), (2, 'two', false, 0)",
		[]string{"items"}, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := b.Exec(ctx, "UPDATE items SET title = 'updated by b' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	q, lq := itemsPG, itemsLocal
	eventually(t, 20*time.Second, "b's update in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 2 && rows[0] == "1|updated by b|0|0", fmt.Sprint(rows)
	})
	// a, offline since before b's update, deletes both rows; row 2 it had
	// seen in its last version.
	offlineExec(t, e, path, "DELETE FROM items")
	a, _ := e.clientAt(path)
	eventually(t, 20*time.Second, "a's delete applied", func() (bool, string) {
		return a.PendingCount() == 0, fmt.Sprint(a.PendingCount())
	})
	eventually(t, 20*time.Second, "postgres after a's delete", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 1 && rows[0] == "1|updated by b|0|0", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
	// Now that a has seen b's update, its delete removes the row.
	if err := a.Exec(ctx, "DELETE FROM items WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the row deleted in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 0, fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
}

// TestUpdateBringsBackUnseenDelete: an update made offline that did not
// see a concurrent delete brings the row back, with the values of the
// columns it did not write kept from before the delete.
func TestUpdateBringsBackUnseenDelete(t *testing.T) {
	e, path, b := offlineAndOnline(t, writeSQL+"; INSERT INTO items VALUES (1, 'start', true, 7)",
		[]string{"items"}, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := b.Exec(ctx, "DELETE FROM items WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	q, lq := itemsPG, itemsLocal
	eventually(t, 20*time.Second, "b's delete in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 0, fmt.Sprint(rows)
	})
	offlineExec(t, e, path, "UPDATE items SET title = 'kept by a' WHERE id = 1")
	a, _ := e.clientAt(path)
	eventually(t, 20*time.Second, "the row back in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 1 && rows[0] == "1|kept by a|1|7", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
}

// TestOlderWriteLosesOnItsAuthor: an update made offline loses, everywhere,
// to a newer update of the same column made meanwhile by another client,
// including on its author, who saw the newer value arrive while its own
// write was still pending.
func TestOlderWriteLosesOnItsAuthor(t *testing.T) {
	e := newEnv(t, writeSQL+"; INSERT INTO items VALUES (1, 'start', false, 0)", "items")
	path := t.TempDir() + "/a.db"
	a, stopA := e.clientAt(path)
	e.subscribe(a, client.Shape{Table: "items"})
	e.exec("INSERT INTO items VALUES (2, 'two', false, 0)") // a's position moves past the snapshot
	waitEqual(t, e, a, "SELECT id FROM items ORDER BY id", "SELECT id FROM items ORDER BY id")
	stopA()
	offlineExec(t, e, path, "UPDATE items SET title = 'older, by a', n = 1 WHERE id = 1")
	time.Sleep(5 * time.Millisecond)
	b, _ := e.clientAt(":memory:")
	e.subscribe(b, client.Shape{Table: "items"})
	ctx := context.Background()
	if err := b.Exec(ctx, "UPDATE items SET title = 'newer, by b' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	q, lq := itemsPG, itemsLocal
	eventually(t, 20*time.Second, "b's write in postgres", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 2 && rows[0] == "1|newer, by b|0|0", fmt.Sprint(rows)
	})
	a, _ = e.clientAt(path)
	eventually(t, 20*time.Second, "a's write applied", func() (bool, string) {
		return a.PendingCount() == 0, fmt.Sprint(a.PendingCount())
	})
	// a's title lost; its n (nobody else wrote it) won.
	eventually(t, 20*time.Second, "postgres after a's write", func() (bool, string) {
		rows := e.pgRows(q)
		return len(rows) == 2 && rows[0] == "1|newer, by b|0|1", fmt.Sprint(rows)
	})
	waitEqual(t, e, a, q, lq)
	waitEqual(t, e, b, q, lq)
}

// TestChildKeepsParentDeletedElsewhere: a child inserted offline under a
// parent that another client deletes meanwhile keeps the parent alive
// (compensation), on every replica.
func TestChildKeepsParentDeletedElsewhere(t *testing.T) {
	e, path, b := offlineAndOnline(t, `CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL);
		CREATE TABLE issues (id text PRIMARY KEY, project_id text NOT NULL REFERENCES projects ON DELETE CASCADE, title text NOT NULL);
		INSERT INTO projects VALUES ('p1', 'Project 1')`, []string{"projects", "issues"},
		client.Shape{Table: "projects"}, client.Shape{Table: "issues"})
	ctx := context.Background()
	if err := b.Exec(ctx, "DELETE FROM projects WHERE id = 'p1'"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the delete in postgres", func() (bool, string) {
		rows := e.pgRows("SELECT id FROM projects")
		return len(rows) == 0, fmt.Sprint(rows)
	})
	offlineExec(t, e, path, "INSERT INTO issues VALUES ('i1', 'p1', 'written offline')")
	a, _ := e.clientAt(path)
	pq, iq := "SELECT id, name FROM projects ORDER BY id", "SELECT id, project_id, title FROM issues ORDER BY id"
	eventually(t, 20*time.Second, "the parent back in postgres", func() (bool, string) {
		p, i := e.pgRows(pq), e.pgRows(iq)
		return len(p) == 1 && p[0] == "p1|Project 1" && len(i) == 1, fmt.Sprint(p, i)
	})
	for _, c := range []*client.Client{a, b} {
		waitEqual(t, e, c, pq, pq)
		waitEqual(t, e, c, iq, iq)
	}
	// b, having now seen the issue (and the parent's new version), deletes
	// the project: the cascade takes the issue, everywhere.
	if err := b.Exec(ctx, "DELETE FROM projects WHERE id = 'p1'"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the project deleted", func() (bool, string) {
		p, i := e.pgRows(pq), e.pgRows(iq)
		return len(p) == 0 && len(i) == 0, fmt.Sprint(p, i)
	})
	for _, c := range []*client.Client{a, b} {
		waitEqual(t, e, c, pq, pq)
		waitEqual(t, e, c, iq, iq)
	}
}

// TestWriteOutOfShape: a client holding a filtered shape writes rows out
// of it: an update that moves a row out, and an insert that never matched.
// Postgres takes both; once they come back, the client holds only what its
// shape selects, and its live state equals the shape's rows in Postgres.
func TestWriteOutOfShape(t *testing.T) {
	t.Run("flat", func(t *testing.T) {
		testWriteOutOfShape(t, newEnv(t, writeSQL+`; INSERT INTO items VALUES (1, 'small', false, 1), (2, 'small too', false, 2)`, "items"))
	})
	t.Run("relational", func(t *testing.T) {
		// A foreign key makes the session relational (the graph).
		testWriteOutOfShape(t, newEnv(t, `CREATE TABLE owners (id int PRIMARY KEY);
			`+writeSQL+`; ALTER TABLE items ADD COLUMN owner int REFERENCES owners;
			INSERT INTO items VALUES (1, 'small', false, 1), (2, 'small too', false, 2)`, "owners", "items"))
	})
}

func testWriteOutOfShape(t *testing.T, e *env) {
	a, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "items", Where: "n < 5"})
	ctx := context.Background()
	if err := a.Exec(ctx, "UPDATE items SET n = 9 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, "INSERT INTO items (id, title, done, n) VALUES (3, 'big', 0, 7), (4, 'small new', 0, 3)"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the writes in postgres", func() (bool, string) {
		rows := e.pgRows(itemsPG)
		return fmt.Sprint(rows) == "[1|small|0|9 2|small too|0|2 3|big|0|7 4|small new|0|3]", fmt.Sprint(rows)
	})
	eventually(t, 20*time.Second, "the client to hold its shape only", func() (bool, string) {
		want := e.pgRows("SELECT id, title, CASE WHEN done THEN 1 ELSE 0 END, n FROM items WHERE n < 5 ORDER BY id")
		got := localRows(t, a, itemsLocal)
		return a.PendingCount() == 0 && fmt.Sprint(want) == fmt.Sprint(got), fmt.Sprintf("postgres %v, client %v, pending %d", want, got, a.PendingCount())
	})
}
