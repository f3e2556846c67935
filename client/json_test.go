package client

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/ncruces/go-sqlite3"
)

// docsRel is public.docs(id bigint PK, body jsonb merged per key path,
// meta jsonb, not merged).
func docsRel(id uint32, merged bool) *protocol.Relation {
	body := col("body", coltype.JSONB, false)
	body.JSONMerge = merged
	return &protocol.Relation{RelID: id, Schema: "public", Table: "docs",
		Columns: []protocol.Column{col("id", coltype.Int8, true), body, col("meta", coltype.JSONB, false)},
		PK:      []int{0}}
}

// jsonWrite is one column write of a WriteChange: per-path changes (the
// decoded text) or a whole value.
type jsonWrite struct {
	col     uint32
	changes string // canonical AppendJSONChanges, when per path
	whole   coltype.Value
}

func columnWrites(t *testing.T, wc protocol.WriteChange) []jsonWrite {
	t.Helper()
	var out []jsonWrite
	for k, c := range wc.Columns {
		if c&protocol.ColumnJSONChanges == 0 {
			out = append(out, jsonWrite{col: c, whole: wc.Values[k]})
			continue
		}
		chs, err := merge.DecodeJSONChanges(wc.Values[k].B)
		if err != nil {
			t.Fatalf("column %d: %v", c&^protocol.ColumnJSONChanges, err)
		}
		out = append(out, jsonWrite{col: c &^ protocol.ColumnJSONChanges, changes: string(merge.AppendJSONChanges(nil, chs))})
	}
	return out
}

// TestJSONMergeCapture: updates of a column merged per key path, made with
// SQLite's JSON functions (or a whole new value), are sent as the per-path
// diff of the old and new documents; inserts, and columns not merged, as
// whole values. Several updates in one transaction send one diff, from
// the value before it.
func TestJSONMergeCapture(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, docsRel(1, true))
	apply(t, c, s, snapshot(10,
		ins(1, vInt(1), vText(`{"a": {"b": 1, "c": [1, 2]}, "t": "x"}`), vText(`{"m": 1}`)),
		ins(1, vInt(2), vNull(), vNull())))
	ctx := ctxT(t)
	for _, stmts := range [][]string{
		// 0: json_set of a nested key, and of the column not merged.
		{`UPDATE docs SET body = json_set(body, '$.a.b', 2), meta = json_set(meta, '$.m', 2) WHERE id = 1`},
		// 1: json_remove, and an array element (arrays are whole values).
		{`UPDATE docs SET body = json_remove(json_set(body, '$.a.c[0]', 9), '$.t') WHERE id = 1`},
		// 2: json_patch (a key set, one deleted), in two statements of one transaction.
		{`UPDATE docs SET body = json_patch(body, '{"n": {"x": true}}') WHERE id = 1`,
			`UPDATE docs SET body = json_patch(body, '{"a": {"b": null}}') WHERE id = 1`},
		// 3: a whole new value; a NULL document set.
		{`UPDATE docs SET body = '{"a": 5}' WHERE id = 1`, `UPDATE docs SET body = '{"k": 1}' WHERE id = 2`},
		// 4: an insert, then an update in the same transaction: whole.
		{`INSERT INTO docs VALUES (3, '{"i": 1}', NULL)`, `UPDATE docs SET body = json_set(body, '$.j', 2) WHERE id = 3`},
		// 5: back to NULL.
		{`UPDATE docs SET body = NULL WHERE id = 2`},
	} {
		err := c.Transaction(ctx, func(tx *Tx) error {
			for _, sql := range stmts {
				if err := tx.Exec(sql); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", stmts, err)
		}
	}
	want := [][]jsonWrite{
		{{col: 1, changes: `[["set",["a","b"],2]]`}, {col: 2, whole: vText(`{"m":2}`)}},
		{{col: 1, changes: `[["set",["a","c"],[9,2]],["del",["t"]]]`}},
		{{col: 1, changes: `[["del",["a","b"]],["set",["n"],{"x":true}]]`}},
		nil, // two rows, below
		{{col: 0, whole: vInt(3)}, {col: 1, whole: vText(`{"i":1,"j":2}`)}, {col: 2, whole: vNull()}},
		{{col: 1, changes: `[["del",[]]]`}},
	}
	txns := pendingOf(t, c)
	if len(txns) != len(want) {
		t.Fatalf("%d pending transactions, want %d", len(txns), len(want))
	}
	for i := range want {
		w := writeOf(t, c, i)
		if i == 3 {
			if len(w.Changes) != 2 {
				t.Fatalf("write 3: %d changes, want 2", len(w.Changes))
			}
			if got := columnWrites(t, w.Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, changes: `[["set",["a"],5],["del",["n"]]]`}}) {
				t.Errorf("write 3 row 1: %+v", got)
			}
			if got := columnWrites(t, w.Changes[1]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, changes: `[["set",[],{"k":1}]]`}}) {
				t.Errorf("write 3 row 2: %+v", got)
			}
			continue
		}
		if len(w.Changes) != 1 {
			t.Fatalf("write %d: %d changes, want 1", i, len(w.Changes))
		}
		got := columnWrites(t, w.Changes[0])
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("write %d: %+v\nwant %+v", i, got, want[i])
		}
	}
}

// TestJSONMergeCaptureExternal: a plain sqlite3 connection on the replica
// file (another program) is captured the same way.
func TestJSONMergeCaptureExternal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	c := testClient(t, path, nil)
	s := syncTables(t, c, docsRel(1, true))
	apply(t, c, s, snapshot(10, ins(1, vInt(1), vText(`{"a": 1, "b": 2}`), vNull())))
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`UPDATE docs SET body = json_set(body, '$.a', 3, '$.z.y', 'q') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	waitFor(t, func() bool { return len(pendingOf(t, c)) == 1 })
	got := columnWrites(t, writeOf(t, c, 0).Changes[0])
	if want := []jsonWrite{{col: 1, changes: `[["set",["a"],3],["set",["z"],{"y":"q"}]]`}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("write %+v, want %+v", got, want)
	}
}

// TestJSONMergeNotAnnounced: without the Relation's JSONMerge flag (an
// older service, or the column not merged), updates are whole values; a
// Relation that turns the flag on makes later updates per path.
func TestJSONMergeNotAnnounced(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, docsRel(1, false))
	apply(t, c, s, snapshot(10, ins(1, vInt(1), vText(`{"a": 1}`), vNull())))
	ctx := ctxT(t)
	if err := c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.b', 2) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if got := columnWrites(t, writeOf(t, c, 0).Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, whole: vText(`{"a":1,"b":2}`)}}) {
		t.Fatalf("write before the flag: %+v", got)
	}
	apply(t, c, s, docsRel(2, true))
	if err := c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.c', 3) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if got := columnWrites(t, writeOf(t, c, 1).Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, changes: `[["set",["c"],3]]`}}) {
		t.Fatalf("write after the flag: %+v", got)
	}
	// Off again: whole values (the old-value column stays, unused).
	apply(t, c, s, docsRel(3, false))
	if err := c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.d', 4) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if got := columnWrites(t, writeOf(t, c, 2).Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, whole: vText(`{"a":1,"b":2,"c":3,"d":4}`)}}) {
		t.Fatalf("write after the flag is off: %+v", got)
	}
}

// TestJSONMergeRebase: a pending per-path edit is re-applied over the
// service's change of the same document as its per-path changes: the
// service's other keys stay, the edited key keeps the local value.
func TestJSONMergeRebase(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, docsRel(1, true))
	apply(t, c, s, snapshot(10, ins(1, vInt(1), vText(`{"a": 1, "b": 1}`), vText(`{"m": 1}`))))
	ctx := ctxT(t)
	if err := c.Exec(ctx, `UPDATE docs SET body = json_set(body, '$.a', 2), meta = json_set(meta, '$.m', 2) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `UPDATE docs SET body = json_remove(body, '$.b') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	// Another writer's change: b and c of body (merged), n of meta (not).
	apply(t, c, s, txn(11, upd(1, vInt(1), vText(`{"a": 1, "b": 5, "c": 3}`), vText(`{"m": 1, "n": 1}`))))
	got := query(t, c, `SELECT json(body), json(meta) FROM docs`)
	// body: a from our first edit, b deleted by our second, c the service's;
	// meta (not merged): our whole value.
	if want := [][]any{{`{"a":2,"c":3}`, `{"m":2}`}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rebased rows %v, want %v", got, want)
	}
	// Our first transaction comes back (merged by the service): the second
	// is re-applied on top of it.
	apply(t, c, s, own(c, 1, txn(12, upd(1, vInt(1), vText(`{"a": 2, "b": 5, "c": 3, "d": 4}`), vText(`{"m": 2}`)))))
	got = query(t, c, `SELECT json(body), json(meta) FROM docs`)
	if want := [][]any{{`{"a":2,"c":3,"d":4}`, `{"m":2}`}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rows after our first came back %v, want %v", got, want)
	}
}

// TestHelloVersionFallback: a service that refuses protocol version 3
// (older) gets a Hello of version 2 next, for the rest of the run; one
// that refuses 2 as well ends Run with the error.
func TestHelloVersionFallback(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	refuse := func(fc *fakeConn) {
		fc.send(&protocol.Error{Code: protocol.ErrVersion, Fatal: true,
			Message: fmt.Sprintf("protocol version %d is not supported; this service speaks 1 to 2", fc.hello.Version)})
	}
	fc := fs.accept()
	if fc.hello.Version != protocol.Version {
		t.Fatalf("first Hello version %d, want %d", fc.hello.Version, protocol.Version)
	}
	refuse(fc)
	fc = fs.accept()
	if fc.hello.Version != protocol.Version-1 {
		t.Fatalf("Hello after unsupported_version: version %d, want %d", fc.hello.Version, protocol.Version-1)
	}
	fc.welcome("log1")
	fc.kill() // a reconnection keeps the lower version
	fc = fs.accept()
	if fc.hello.Version != protocol.Version-1 {
		t.Fatalf("Hello after a reconnection: version %d, want %d", fc.hello.Version, protocol.Version-1)
	}
	refuse(fc)
	select {
	case err := <-done:
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.ErrVersion {
			t.Fatalf("Run returned %v, want unsupported_version", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not end after version 2 was refused")
	}
}

// TestJSONMergeRename: a pending update of a column merged per key path
// stays per path when the column is renamed upstream before it is sent.
func TestJSONMergeRename(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	rel := docsRel(1, true)
	rel.ColumnIDs = []uint32{1, 2, 3}
	s := syncTables(t, c, rel)
	apply(t, c, s, snapshot(10, ins(1, vInt(1), vText(`{"a": 1}`), vNull())))
	if err := c.Exec(ctxT(t), `UPDATE docs SET body = json_set(body, '$.b', 2) WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	renamed := docsRel(2, true)
	renamed.ColumnIDs = []uint32{1, 2, 3}
	renamed.Columns[1].Name = "content"
	apply(t, c, s, renamed)
	if got := columnWrites(t, writeOf(t, c, 0).Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, changes: `[["set",["b"],2]]`}}) {
		t.Fatalf("write after the rename: %+v", got)
	}
	if err := c.Exec(ctxT(t), `UPDATE docs SET content = json_remove(content, '$.a') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if got := columnWrites(t, writeOf(t, c, 1).Changes[0]); !reflect.DeepEqual(got, []jsonWrite{{col: 1, changes: `[["del",["a"]]]`}}) {
		t.Fatalf("write of the renamed column: %+v", got)
	}
}
