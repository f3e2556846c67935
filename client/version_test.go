package client

import (
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/ncruces/go-sqlite3"
)

// withVersion sets a change's row version.
func withVersion(v uint64, ch protocol.Change) protocol.Change {
	ch.Version = v
	return ch
}

// versions returns the version store of items: (id, v) rows.
func versions(t *testing.T, c *Client) [][]any {
	t.Helper()
	return query(t, c, `SELECT id, v FROM _lattice_v_items ORDER BY id`)
}

func expectVersions(t *testing.T, c *Client, want [][]any) {
	t.Helper()
	if got := versions(t, c); !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Fatalf("versions %v, want %v", got, want)
	}
}

// apply applies service messages on s, without a server.
func apply(t *testing.T, c *Client, s *session, ms ...protocol.Down) {
	t.Helper()
	for _, m := range ms {
		if err := c.handle(s, m); err != nil {
			t.Fatal(err)
		}
	}
}

func resetSnapshot(lsn uint64, rel uint32, changes ...protocol.Change) *protocol.Txn {
	m := snapshot(lsn, changes...)
	m.Flags |= protocol.FlagReset
	m.Reset = []uint32{rel}
	return m
}

// TestVersionsApply: the service's changes keep the version store: rows
// at version 1 have no entry, others one (NULL when unknown); deletes,
// move-outs and resets remove entries.
func TestVersionsApply(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, itemsRel(1))
	none := [][]any(nil)

	// The initial snapshot's rows at version 1 make no entries.
	apply(t, c, s, snapshot(10,
		withVersion(1, ins(1, vInt(1), vText("a"), vInt(1))),
		withVersion(1, ins(1, vInt(2), vText("b"), vInt(2))),
		withVersion(1, ins(1, vInt(3), vText("c"), vInt(3)))))
	expectVersions(t, c, none)

	apply(t, c, s, txn(11,
		withVersion(2, upd(1, vInt(1), vText("a2"), vInt(1))),
		withVersion(5, ins(1, vInt(4), vText("d"), vInt(4))),  // a new row beyond version 1
		withVersion(0, upd(1, vInt(2), vText("b0"), vInt(2))), // unknown
		withVersion(5, ins(1, vInt(3), vText("c5"), vInt(3))), // an Insert of a held row
	))
	expectVersions(t, c, [][]any{{int64(1), int64(2)}, {int64(2), nil}, {int64(3), int64(5)}, {int64(4), int64(5)}})

	apply(t, c, s, txn(12,
		withVersion(1, upd(1, vInt(2), vText("b1"), vInt(2))), // back to the default: no entry
		withVersion(0, ins(1, vInt(5), vText("e"), vInt(5))),  // a new row at an unknown version
	))
	expectVersions(t, c, [][]any{{int64(1), int64(2)}, {int64(3), int64(5)}, {int64(4), int64(5)}, {int64(5), nil}})

	apply(t, c, s, txn(13, del(1, vInt(1)), moveOut(1, vInt(4)), del(1, vInt(9))))
	expectVersions(t, c, [][]any{{int64(3), int64(5)}, {int64(5), nil}})

	// A row the client inserted has a 0 entry; its return at version 1
	// (the plain insert finds the local row) removes it.
	if err := c.Exec(ctxT(t), "INSERT INTO items VALUES (7, 'mine', 7)"); err != nil {
		t.Fatal(err)
	}
	expectVersions(t, c, [][]any{{int64(3), int64(5)}, {int64(5), nil}, {int64(7), int64(0)}})
	apply(t, c, s, txn(14, withVersion(1, ins(1, vInt(7), vText("mine"), vInt(7)))))
	expectVersions(t, c, [][]any{{int64(3), int64(5)}, {int64(5), nil}})

	// A reset (re-sync) replaces the store with the snapshot's versions.
	apply(t, c, s, resetSnapshot(20, 1,
		withVersion(1, ins(1, vInt(3), vText("c"), vInt(3))),
		withVersion(3, ins(1, vInt(6), vText("f"), vInt(6)))))
	// Our insert of 7 is still pending (14 was not marked as ours): the
	// rebase re-creates the row, at no version.
	expectVersions(t, c, [][]any{{int64(6), int64(3)}, {int64(7), int64(0)}})
	apply(t, c, s, resetSnapshot(21, 1))
	expectVersions(t, c, [][]any{{int64(7), int64(0)}})
	if got := query(t, c, "SELECT id FROM items"); !reflect.DeepEqual(got, [][]any{{int64(7)}}) {
		t.Fatalf("rows after reset %v", got)
	}
}

// writeOf returns the Write the client would send for its pending
// transaction i.
func writeOf(t *testing.T, c *Client, i int) *protocol.Write {
	t.Helper()
	txns := pendingOf(t, c)
	if i >= len(txns) {
		t.Fatalf("%d pending transactions, want more than %d", len(txns), i)
	}
	var w *protocol.Write
	withDB(t, c, func() (err error) {
		w, err = c.writeMessage(txns[i])
		return err
	})
	return w
}

// expectWriteVersions checks the op, key and version of each change of w.
func expectWriteVersions(t *testing.T, w *protocol.Write, want ...wantChange) {
	t.Helper()
	if len(w.Changes) != len(want) {
		t.Fatalf("write with %d changes, want %d: %+v", len(w.Changes), len(want), w.Changes)
	}
	for i, wc := range w.Changes {
		if wc.Op != want[i].op || len(wc.Key) != 1 || wc.Key[0].I != want[i].id || wc.Version != want[i].version {
			t.Fatalf("change %d: %v id %v version %d, want %v id %d version %d",
				i, wc.Op, wc.Key, wc.Version, want[i].op, want[i].id, want[i].version)
		}
	}
}

type wantChange struct {
	op      protocol.Op
	id      int64
	version uint64
}

// TestVersionsSent: each local write carries the version its row was held
// at when the write was made.
func TestVersionsSent(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, itemsRel(1))
	apply(t, c, s, snapshot(10,
		withVersion(5, ins(1, vInt(1), vText("a"), vInt(1))),
		withVersion(1, ins(1, vInt(2), vText("b"), vInt(2))),
		withVersion(0, ins(1, vInt(3), vText("c"), vInt(3))),
		withVersion(1, ins(1, vInt(4), vText("d"), vInt(4))),
		withVersion(3, ins(1, vInt(5), vText("e"), vInt(5))),
		withVersion(4, ins(1, vInt(6), vText("f"), vInt(6)))))
	ctx := ctxT(t)
	exec := func(sql string) {
		t.Helper()
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	n := 0
	next := func() *protocol.Write { n++; return writeOf(t, c, n-1) }
	const (
		I = protocol.OpInsert
		U = protocol.OpUpdate
		D = protocol.OpDelete
	)

	exec("UPDATE items SET title = 'x' WHERE id = 1")
	expectWriteVersions(t, next(), wantChange{U, 1, 5})
	exec("DELETE FROM items WHERE id = 2") // no entry: version 1
	expectWriteVersions(t, next(), wantChange{D, 2, 1})
	exec("UPDATE items SET n = 30 WHERE id = 3") // unknown version
	expectWriteVersions(t, next(), wantChange{U, 3, protocol.VersionCurrent})
	exec("INSERT INTO items VALUES (10, 'new', 10)")
	expectWriteVersions(t, next(), wantChange{I, 10, 0})
	exec("UPDATE items SET n = 11 WHERE id = 10") // ours, not returned yet
	expectWriteVersions(t, next(), wantChange{U, 10, 0})
	exec("DELETE FROM items WHERE id = 10")
	expectWriteVersions(t, next(), wantChange{D, 10, 0})

	// A service change arriving between the write and its sending does
	// not change what the write saw; later writes see it.
	exec("UPDATE items SET title = 'mine' WHERE id = 4")
	apply(t, c, s, txn(11, withVersion(7, upd(1, vInt(4), vText("srv"), vInt(40)))))
	expectWriteVersions(t, next(), wantChange{U, 4, 1})
	if got := query(t, c, "SELECT title, n FROM items WHERE id = 4"); !reflect.DeepEqual(got, [][]any{{"mine", int64(40)}}) {
		t.Fatalf("rebased row %v", got) // the store is the service's; the row is rebased
	}
	exec("UPDATE items SET n = 41 WHERE id = 4")
	expectWriteVersions(t, next(), wantChange{U, 4, 7})

	// A transaction's net effect on a row carries the version held before
	// its first write to the row.
	err := c.Transaction(ctx, func(tx *Tx) error {
		for _, q := range []string{
			"UPDATE items SET title = 'y' WHERE id = 5",
			"DELETE FROM items WHERE id = 5",
			"DELETE FROM items WHERE id = 6",
			"INSERT INTO items VALUES (6, 'again', 6)",
		} {
			if err := tx.Exec(q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectWriteVersions(t, next(), wantChange{D, 5, 3}, wantChange{I, 6, 4})

	// The local writes did not touch the store but for the row the client
	// inserted (10, deleted since: its entry stays until the service's
	// delete of it).
	expectVersions(t, c, [][]any{{int64(1), int64(5)}, {int64(3), nil}, {int64(4), int64(7)},
		{int64(5), int64(3)}, {int64(6), int64(4)}, {int64(10), int64(0)}})
}

// TestVersionsOnTheWire: the Write a connected client sends carries the
// versions.
func TestVersionsOnTheWire(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, withVersion(5, ins(1, vInt(1), vText("a"), vInt(1))), withVersion(1, ins(1, vInt(2), vText("b"), vInt(2))))
	if err := c.Exec(ctxT(t), "UPDATE items SET n = 2 WHERE id = 1; DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (3, 'c', 3)"); err != nil {
		t.Fatal(err)
	}
	expectWriteVersions(t, fc.expectWrite(),
		wantChange{protocol.OpUpdate, 1, 5}, wantChange{protocol.OpDelete, 2, 1}, wantChange{protocol.OpInsert, 3, 0})
}

// TestVersionsExternal: writes of another program on the file are captured
// with the versions too.
func TestVersionsExternal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	c := testClient(t, path, nil)
	s := syncTables(t, c, itemsRel(1))
	apply(t, c, s, snapshot(10,
		withVersion(5, ins(1, vInt(1), vText("a"), vInt(1))),
		withVersion(1, ins(1, vInt(2), vText("b"), vInt(2))),
		withVersion(0, ins(1, vInt(3), vText("c"), vInt(3)))))
	ext, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	ext.BusyTimeout(5 * time.Second)
	// INSERT OR REPLACE makes the trigger's own inserts REPLACE: the
	// version entry of a row must not be overwritten (nor an insert fail).
	if err := ext.Exec(`BEGIN; UPDATE items SET n = 10 WHERE id = 1; DELETE FROM items WHERE id = 2; DELETE FROM items WHERE id = 3;
		INSERT INTO items VALUES (4, 'ext', 4); UPDATE items SET n = 40 WHERE id = 4;
		INSERT OR REPLACE INTO items VALUES (1, 'replaced', 1); INSERT OR ROLLBACK INTO items VALUES (3, 'again', 3); COMMIT`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(pendingOf(t, c)) == 1 })
	txns := pendingOf(t, c)
	var got []string
	for _, ch := range txns[0].Changes {
		got = append(got, string(ch.Op)+":"+strconv.FormatInt(ch.Key[0].I, 10)+"@"+strconv.FormatInt(ch.Version, 10))
	}
	want := []string{"U:1@5", "D:2@1", "D:3@-1", "I:4@0", "U:4@0", "I:1@0", "I:3@0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ops %v, want %v", got, want)
	}
	expectWriteVersions(t, writeOf(t, c, 0),
		wantChange{protocol.OpInsert, 1, 5}, // an update then a replace: an Insert
		wantChange{protocol.OpDelete, 2, 1},
		wantChange{protocol.OpInsert, 3, protocol.VersionCurrent}, // deleted and inserted again
		wantChange{protocol.OpInsert, 4, 0})
	expectVersions(t, c, [][]any{{int64(1), int64(5)}, {int64(3), nil}, {int64(4), int64(0)}})
}

// TestVersionsUpgrade: a replica made before row versions (ops table
// without v, no version table, older triggers) is upgraded at Open; the
// rows it holds and the ops it captured are at unknown versions.
func TestVersionsUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	c := testClient(t, path, nil)
	s := syncTables(t, c, itemsRel(1))
	apply(t, c, s, snapshot(10,
		withVersion(1, ins(1, vInt(1), vText("a"), vInt(1))),
		withVersion(5, ins(1, vInt(2), vText("b"), vInt(2)))))
	if err := c.Exec(ctxT(t), "UPDATE items SET n = 10 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	c.endSession(s)
	c.Close()

	// Make it an old replica.
	old, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Exec(`BEGIN;
		DROP TABLE _lattice_v_items;
		CREATE TABLE old_ops AS SELECT seq, op, changed, "c.id", "c.title", "c.n" FROM _lattice_ops_items;
		DROP TABLE _lattice_ops_items;
		CREATE TABLE _lattice_ops_items (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, changed, "c.id", "c.title", "c.n");
		INSERT INTO _lattice_ops_items SELECT * FROM old_ops;
		DROP TABLE old_ops;
		DROP TRIGGER _lattice_ins_items; DROP TRIGGER _lattice_upd_items; DROP TRIGGER _lattice_del_items;
		CREATE TRIGGER _lattice_upd_items AFTER UPDATE OF id, title, n ON items WHEN (SELECT applying FROM _lattice_flags) = 0 BEGIN
			INSERT INTO _lattice_oplog(tbl) VALUES('items');
			INSERT INTO _lattice_ops_items(seq, op, changed, "c.id", "c.title", "c.n") VALUES(last_insert_rowid(), 'U', 6, NEW.id, NEW.title, NEW.n);
		END;
		COMMIT`)
	old.Close()
	if err != nil {
		t.Fatal(err)
	}

	c2 := testClient(t, path, nil)
	cols := query(t, c2, `SELECT name FROM pragma_table_info('_lattice_ops_items') ORDER BY cid`)
	if !reflect.DeepEqual(cols, [][]any{{"seq"}, {"op"}, {"changed"}, {"c.id"}, {"c.title"}, {"c.n"}, {"v"}}) {
		t.Fatalf("ops columns %v", cols)
	}
	if got := query(t, c2, `SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'items' AND sql LIKE '%_lattice_v_items%'`); got[0][0] != int64(3) {
		t.Fatalf("%v triggers use the version table, want 3", got)
	}
	expectVersions(t, c2, [][]any{{int64(1), nil}, {int64(2), nil}})
	if err := c2.Exec(ctxT(t), "UPDATE items SET n = 20 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	txns := pendingOf(t, c2)
	if len(txns) != 2 || txns[0].Changes[0].Version != -1 || txns[1].Changes[0].Version != -1 {
		t.Fatalf("pending %+v", txns)
	}
	expectWriteVersions(t, writeOf(t, c2, 0), wantChange{protocol.OpUpdate, 1, protocol.VersionCurrent})
	s2 := syncTables(t, c2, itemsRel(1))
	apply(t, c2, s2, txn(11, withVersion(6, upd(1, vInt(2), vText("b"), vInt(2)))))
	if err := c2.Exec(ctxT(t), "UPDATE items SET n = 21 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	expectWriteVersions(t, writeOf(t, c2, 2), wantChange{protocol.OpUpdate, 2, 6})
}

// TestVersionsKeyNamedV: a key column named v does not collide with the
// version column; composite keys work.
func TestVersionsKeyNamedV(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	rel := &protocol.Relation{RelID: 1, Schema: "public", Table: "kv",
		Columns: []protocol.Column{col("k", coltype.TextType, true), col("v", coltype.Int8, true), col("x", coltype.Int8, false)},
		PK:      []int{0, 1}}
	s := syncTables(t, c, rel)
	apply(t, c, s, txn(10,
		withVersion(3, ins(1, vText("a"), vInt(1), vInt(0))),
		withVersion(1, ins(1, vText("a"), vInt(2), vInt(0)))))
	if got := query(t, c, `SELECT k, v, v_ FROM _lattice_v_kv`); !reflect.DeepEqual(got, [][]any{{"a", int64(1), int64(3)}}) {
		t.Fatalf("versions %v", got)
	}
	if err := c.Exec(ctxT(t), "UPDATE kv SET x = 1"); err != nil {
		t.Fatal(err)
	}
	w := writeOf(t, c, 0)
	if len(w.Changes) != 2 || w.Changes[0].Version != 3 || w.Changes[1].Version != 1 {
		t.Fatalf("write %+v", w.Changes)
	}
	apply(t, c, s, txn(11, del(1, vText("a"), vInt(1))))
	if got := query(t, c, `SELECT count(*) FROM _lattice_v_kv`); got[0][0] != int64(0) {
		t.Fatalf("versions left %v", got)
	}
}

// TestVersionsRebase: rebasing pending local writes over the service's
// changes keeps the service's versions; a row of ours it re-creates is at
// no version (0) again.
func TestVersionsRebase(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	s := syncTables(t, c, itemsRel(1))
	apply(t, c, s, snapshot(10,
		withVersion(1, ins(1, vInt(1), vText("a"), vInt(1))),
		withVersion(4, ins(1, vInt(2), vText("b"), vInt(2)))))
	ctx := ctxT(t)
	if err := c.Exec(ctx, "INSERT INTO items VALUES (7, 'mine', 7); INSERT INTO items VALUES (8, 'mine', 8); UPDATE items SET title = 'x' WHERE id IN (1, 2)"); err != nil {
		t.Fatal(err)
	}
	expectVersions(t, c, [][]any{{int64(2), int64(4)}, {int64(7), int64(0)}, {int64(8), int64(0)}})
	// The service updates 1 and 2 and deletes 7 (another client's row of
	// that key): our update and insert are re-applied on top.
	apply(t, c, s, txn(11,
		withVersion(2, upd(1, vInt(1), vText("s"), vInt(10))),
		withVersion(5, upd(1, vInt(2), vText("s"), vInt(20))),
		del(1, vInt(7))))
	expectRows(t, c, [][]any{{int64(1), "x", int64(10)}, {int64(2), "x", int64(20)}, {int64(7), "mine", int64(7)}, {int64(8), "mine", int64(8)}})
	expectVersions(t, c, [][]any{{int64(1), int64(2)}, {int64(2), int64(5)}, {int64(7), int64(0)}, {int64(8), int64(0)}})
	// A re-sync's reset clears the store; our rows not in its snapshot are
	// re-created at no version, the others take the snapshot's.
	apply(t, c, s, resetSnapshot(20, 1,
		withVersion(1, ins(1, vInt(1), vText("s"), vInt(10))),
		withVersion(6, ins(1, vInt(2), vText("s"), vInt(20)))))
	expectVersions(t, c, [][]any{{int64(2), int64(6)}, {int64(7), int64(0)}, {int64(8), int64(0)}})
	if err := c.Exec(ctx, "UPDATE items SET n = 0"); err != nil {
		t.Fatal(err)
	}
	const U = protocol.OpUpdate
	expectWriteVersions(t, writeOf(t, c, 1), wantChange{U, 1, 1}, wantChange{U, 2, 6}, wantChange{U, 7, 0}, wantChange{U, 8, 0})
}
