package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

// A jsonb column merged per key (lattice.electrify option json_merge), end
// to end: two clients write different keys of one document with SQLite's
// JSON functions, one of them offline, while plain SQL sets a third with
// jsonb_set; all three survive in Postgres and on both clients. A key
// deleted on one side (json_remove) and set concurrently on the other,
// offline, that had not seen the delete, stays (update wins over an unseen
// delete); a delete that saw it removes it.
//
// These clients send their updates as per-path changes (the Relation
// announces the column merged per key, protocol version 3);
// server/writes TestJSONMergePerKey covers clients that send whole
// documents.
func TestSyncJSONMergePerKey(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb);
		INSERT INTO docs VALUES (1, '{"title": "t", "n": 1}')`)
	e.exec("CALL lattice.electrify('docs', json_merge => ARRAY['body'])")
	const pgQ = `SELECT id, body->>'title', body->>'n', body->>'x', body->>'y', body->>'z' FROM docs ORDER BY id`
	const localQ = `SELECT id, json_extract(body, '$.title'), json_extract(body, '$.n'), json_extract(body, '$.x'),
		json_extract(body, '$.y'), json_extract(body, '$.z') FROM docs ORDER BY id`
	path := t.TempDir() + "/a.db"
	a, stopA := e.clientAt(path)
	b, _ := e.clientAt(":memory:")
	e.subscribe(a, client.Shape{Table: "docs"})
	e.subscribe(b, client.Shape{Table: "docs"})
	waitEqual(t, e, a, pgQ, localQ)
	stopA()

	// a writes offline (the app's SQLite, no connection).
	offline := func(sql string) {
		t.Helper()
		ctx := context.Background()
		c, err := client.Open(ctx, path, &client.Options{URL: e.url, Token: e.token("alice"), Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		c.Close()
	}
	offline(`UPDATE docs SET body = json_patch(body, '{"x": 1}') WHERE id = 1`)
	if err := b.Exec(context.Background(), `UPDATE docs SET body = json_set(body, '$.y', 'b') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "b's write in postgres", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|t|1|<nil>|b|<nil>", r[0]
	})
	e.exec(`UPDATE docs SET body = jsonb_set(body, '{z}', '"z"') WHERE id = 1`)
	a, stopA = e.clientAt(path)
	eventually(t, 20*time.Second, "all three keys in postgres", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|t|1|1|b|z", r[0]
	})
	waitEqual(t, e, a, pgQ, localQ)
	waitEqual(t, e, b, pgQ, localQ)

	// Delete vs concurrent update: a, offline, sets n; b removes n.
	stopA()
	offline(`UPDATE docs SET body = json_set(body, '$.n', 5) WHERE id = 1`)
	if err := b.Exec(context.Background(), `UPDATE docs SET body = json_remove(body, '$.n') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "b's delete in postgres", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|t|<nil>|1|b|z", r[0]
	})
	a, _ = e.clientAt(path)
	eventually(t, 20*time.Second, "a's unseen update to win", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|t|5|1|b|z", r[0]
	})
	waitEqual(t, e, a, pgQ, localQ)
	waitEqual(t, e, b, pgQ, localQ)
	// A delete that saw it removes it.
	if err := b.Exec(context.Background(), `UPDATE docs SET body = json_remove(body, '$.n') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the seen delete", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|t|<nil>|1|b|z", r[0]
	})
	waitEqual(t, e, a, pgQ, localQ)
	waitEqual(t, e, b, pgQ, localQ)
}

// TestRelationJSONMerge: the Relation announces the columns merged per key
// path to version 3 sessions only (the JSONMerge trailer); version 1 and 2
// sessions get the frames of their version, without it.
func TestRelationJSONMerge(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb, meta json, other jsonb)`)
	e.exec("CALL lattice.electrify('docs', json_merge => ARRAY['body', 'meta'])")
	for _, v := range []uint16{1, 2, 3} {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: v, Token: e.token("alice"), ClientID: "raw"})
		if _, err := r.next(); err != nil {
			t.Fatal(err)
		}
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "a", Table: "docs"}}})
		rel := r.relationOf("docs")
		var merged []string
		for _, c := range rel.Columns {
			if c.JSONMerge {
				merged = append(merged, c.Name)
			}
		}
		want := "[]"
		if v == 3 {
			want = "[body meta]"
		}
		if got := fmt.Sprint(merged); got != want {
			t.Errorf("version %d: columns merged per key %s, want %s", v, got, want)
		}
		if v >= 2 && len(rel.ColumnIDs) != 4 {
			t.Errorf("version %d: column ids %v", v, rel.ColumnIDs)
		}
	}
}

// TestJSONMergeAfterColumnDrop: a per-path write made against the layout
// before a column drop (offline) is remapped to the column's index now,
// its ColumnJSONChanges bit kept.
func TestJSONMergeAfterColumnDrop(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id bigint PRIMARY KEY, junk text, body jsonb);
		INSERT INTO docs VALUES (1, 'j', '{"a": 0, "b": 0}')`)
	e.exec("CALL lattice.electrify('docs', json_merge => ARRAY['body'])")
	path := t.TempDir() + "/a.db"
	a, stopA := e.clientAt(path)
	e.subscribe(a, client.Shape{Table: "docs"})
	const pgQ = `SELECT id, body->>'a', body->>'b' FROM docs`
	const localQ = `SELECT id, json_extract(body, '$.a'), json_extract(body, '$.b') FROM docs`
	waitEqual(t, e, a, pgQ, localQ)
	stopA()
	ctx := context.Background()
	c, err := client.Open(ctx, path, &client.Options{URL: e.url, Token: e.token("alice"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.a', 1) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.exec(`ALTER TABLE docs DROP COLUMN junk`)
	a, _ = e.clientAt(path)
	eventually(t, 20*time.Second, "a's edit in postgres", func() (bool, string) {
		r := e.pgRows(pgQ)
		return len(r) == 1 && r[0] == "1|1|0", fmt.Sprint(r)
	})
	e.exec(`UPDATE docs SET body = jsonb_set(body, '{b}', '2') WHERE id = 1`)
	if err := a.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.c', 3) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the plain SQL edit and a's next in postgres", func() (bool, string) {
		r := e.pgRows(`SELECT id, body->>'a', body->>'b', body->>'c' FROM docs`)
		return len(r) == 1 && r[0] == "1|1|2|3", fmt.Sprint(r)
	})
	waitEqual(t, e, a, pgQ, localQ)
}
