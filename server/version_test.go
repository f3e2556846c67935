package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
)

// versionReader reads a raw connection's transactions and records the
// version of every row change, by table and first value (the key here).
type versionReader struct {
	t     *testing.T
	r     *rawConn
	rels  map[uint32]string
	acks  map[uint64]bool
	calls int
	last  map[string]uint64 // "table op key" -> version, of every change read
}

func newVersionReader(t *testing.T, r *rawConn) *versionReader {
	return &versionReader{t: t, r: r, rels: map[uint32]string{}, acks: map[uint64]bool{}, last: map[string]uint64{}}
}

// until reads messages until a transaction holds a change of table with
// the given op and key, and returns its version.
func (v *versionReader) until(table string, op protocol.Op, key int64) (uint64, *protocol.Txn) {
	v.t.Helper()
	var seen []string
	for {
		m, err := v.r.next()
		if err != nil {
			v.t.Fatalf("waiting for %s %s %d: %v (saw %s)", op, table, key, err, strings.Join(seen, "; "))
		}
		switch m := m.(type) {
		case *protocol.Relation:
			v.rels[m.RelID] = m.Table
		case *protocol.Ack:
			v.acks[m.TxnID] = true
		case *protocol.Txn:
			for _, ch := range m.Changes {
				if len(ch.Values) == 0 {
					continue
				}
				seen = append(seen, fmt.Sprintf("%s %s %d v%d", ch.Op, v.rels[ch.RelID], ch.Values[0].I, ch.Version))
				v.last[fmt.Sprintf("%s %s %d", v.rels[ch.RelID], ch.Op, ch.Values[0].I)] = ch.Version
				if v.rels[ch.RelID] == table && ch.Op == op && ch.Values[0].Kind == coltype.Integer && ch.Values[0].I == key {
					return ch.Version, m
				}
			}
		}
	}
}

// TestRowVersionsOnTheWire: snapshots, streamed changes (plain SQL and
// client writes) and relational move-ins carry each row's version
// (protocol 2.6), and a client write taken with the version its author
// held removes only what that version had seen.
func TestRowVersionsOnTheWire(t *testing.T) {
	e := newEnv(t, itemsSQL+`;
		CREATE TABLE parts (id integer PRIMARY KEY, item_id integer NOT NULL REFERENCES items, name text);
		INSERT INTO items VALUES (1, 'one', false, 1), (2, 'two', false, 2);
		UPDATE items SET n = 10 WHERE id = 1`, "items", "parts")
	r := e.dialRaw(t)
	r.send(&protocol.Hello{Version: protocol.Version, Token: e.token("v"), ClientID: "versions"})
	if _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "all", Table: "items"}}})
	vr := newVersionReader(t, r)
	// Electrified after the writes: every row starts at version 1.
	if v, _ := vr.until("items", protocol.OpInsert, 1); v != 1 {
		t.Fatalf("snapshot of row 1: version %d, want 1", v)
	}
	e.exec("UPDATE items SET title = 'one!' WHERE id = 1")
	if v, _ := vr.until("items", protocol.OpUpdate, 1); v != 2 {
		t.Fatalf("plain SQL update: version %d, want 2", v)
	}
	e.exec("INSERT INTO items VALUES (3, 'three', false, 3)")
	if v, _ := vr.until("items", protocol.OpInsert, 3); v != 1 {
		t.Fatalf("plain SQL insert: version %d, want 1", v)
	}
	i32 := func(i int64) coltype.Value { return coltype.Value{Kind: coltype.Integer, I: i} }
	txt := func(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
	// Our update, having seen version 2: version 3 comes back in our own
	// transaction.
	r.send(&protocol.Write{TxnID: 1, HLC: vr.hlc(), Changes: []protocol.WriteChange{{Table: "public.items", Op: protocol.OpUpdate,
		Version: 2, Key: []coltype.Value{i32(1)}, Columns: []uint32{1}, Values: []coltype.Value{txt("by us")}}}})
	v, tx := vr.until("items", protocol.OpUpdate, 1)
	if v != 3 || tx.Origin != "versions" || tx.ClientTxnID != 1 {
		t.Fatalf("own update: version %d in %+v", v, tx)
	}
	// Someone updates row 1 (version 4); our delete, having seen only
	// version 3, keeps the row, which comes back to us unchanged.
	e.exec("UPDATE items SET n = 11 WHERE id = 1")
	if v, _ := vr.until("items", protocol.OpUpdate, 1); v != 4 {
		t.Fatalf("plain SQL update: version %d, want 4", v)
	}
	r.send(&protocol.Write{TxnID: 2, HLC: vr.hlc(), Changes: []protocol.WriteChange{{Table: "public.items", Op: protocol.OpDelete,
		Version: 3, Key: []coltype.Value{i32(1)}}}})
	v, tx = vr.until("items", protocol.OpUpdate, 1)
	if v != 5 || tx.ClientTxnID != 2 {
		t.Fatalf("delete that missed an update: version %d in %+v", v, tx)
	}
	if rows := e.pgRows("SELECT id, title, n FROM items WHERE id = 1"); len(rows) != 1 || rows[0] != "1|by us|11" {
		t.Fatalf("row 1 after a delete that missed an update: %v", rows)
	}
	// Having seen version 5, the delete removes it.
	r.send(&protocol.Write{TxnID: 3, HLC: vr.hlc(), Changes: []protocol.WriteChange{{Table: "public.items", Op: protocol.OpDelete,
		Version: 5, Key: []coltype.Value{i32(1)}}}})
	vr.until("items", protocol.OpDelete, 1)
	if rows := e.pgRows("SELECT count(*) FROM items WHERE id = 1"); rows[0] != "0" {
		t.Fatalf("row 1 after a delete that saw everything: %v", rows)
	}
	// VersionCurrent: a row held at an unknown version is deleted as
	// Postgres holds it.
	r.send(&protocol.Write{TxnID: 4, HLC: vr.hlc(), Changes: []protocol.WriteChange{{Table: "public.items", Op: protocol.OpDelete,
		Version: protocol.VersionCurrent, Key: []coltype.Value{i32(3)}}}})
	vr.until("items", protocol.OpDelete, 3)

	// A relational shape: the move-in of a part brings its item with the
	// item's version.
	e.exec("UPDATE items SET n = 20 WHERE id = 2") // version 2
	r.send(&protocol.Subscribe{ReqID: 2, Shapes: []protocol.Shape{{ID: "parts", Table: "parts", Where: "name = 'p'",
		Include: []protocol.Include{{Table: "items"}}}}})
	e.exec("INSERT INTO parts VALUES (7, 2, 'p')")
	if v, _ := vr.until("parts", protocol.OpInsert, 7); v != 1 {
		t.Fatalf("part: version %d, want 1", v)
	}
	if v, ok := vr.last["items insert 2"]; !ok || v != 2 {
		t.Fatalf("item 2 moved in with the part: version %d (%v), want 2", v, ok)
	}
	e.exec("UPDATE items SET n = 21 WHERE id = 2")
	if v, _ := vr.until("items", protocol.OpUpdate, 2); v != 3 {
		t.Fatalf("item 2 after its move-in: version %d, want 3", v)
	}
}

// hlc returns an HLC a second ahead of the previous one it returned and
// of the wall clock, so that each write is newer than every plain SQL
// write before it.
func (v *versionReader) hlc() uint64 {
	v.calls++
	return uint64(merge.MakeHLC(time.Now().UnixMilli()+int64(v.calls)*1000, 0))
}

// A table dropped while the service was down, with changes still to read
// from the WAL, does not stop replication: the service starts again and
// goes on streaming other tables.
func TestDroppedTableInPendingWAL(t *testing.T) {
	e := newEnv(t, itemsSQL+"; CREATE TABLE other (id int PRIMARY KEY, v text)", "items", "other")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "other"})
	e.stop()
	e.exec("INSERT INTO items VALUES (1, 'gone soon', false, 1)")
	e.exec("UPDATE items SET n = 2 WHERE id = 1")
	e.exec("DROP TABLE items")
	e.start()
	e.exec("INSERT INTO other VALUES (1, 'still live')")
	waitEqual(t, e, c, "SELECT id, v FROM other ORDER BY id", "SELECT id, v FROM other ORDER BY id")
}
