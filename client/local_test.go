package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/ncruces/go-sqlite3"
)

// syncTables makes rels synced tables of c through the apply path, without
// a server.
func syncTables(t testing.TB, c *Client, rels ...*protocol.Relation) *session {
	t.Helper()
	s := newSession(c, context.Background(), nil)
	if err := c.handle(s, &protocol.Welcome{LogID: "log1"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if err := c.handle(s, r); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { c.endSession(s) })
	return s
}

// kindsRel is public.kinds(id bigint PK, i bigint, r float8, t text, b bytea, x float8).
func kindsRel(id uint32) *protocol.Relation {
	return &protocol.Relation{RelID: id, Schema: "public", Table: "kinds", Columns: []protocol.Column{
		col("id", coltype.Int8, true), col("i", coltype.Int8, false), col("r", coltype.Float8, false),
		col("t", coltype.TextType, false), col("b", coltype.Bytea, false), col("x", coltype.Float8, false),
	}, PK: []int{0}}
}

func pendingOf(t testing.TB, c *Client) []LocalTxn {
	t.Helper()
	if err := c.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.unlock()
	txns, err := c.pendingTxns(0)
	if err != nil {
		t.Fatal(err)
	}
	return txns
}

func withDB(t testing.TB, c *Client, f func() error) {
	t.Helper()
	if err := c.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := f()
	c.unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// chg builds an expected LocalChange of public.kinds-like tables.
func chg(table string, op byte, key []coltype.Value, cols []int, vals ...coltype.Value) LocalChange {
	schema, name := "public", table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		schema, name = table[:i], table[i+1:]
	}
	if cols == nil {
		cols = []int{}
	}
	if vals == nil {
		vals = []coltype.Value{}
	}
	return LocalChange{Table: table, Schema: schema, Name: name, Op: op, Key: key, Columns: cols, Values: vals}
}

func keys(v ...coltype.Value) []coltype.Value { return v }

func valuesEqual(a, b []coltype.Value) bool {
	return slices.EqualFunc(a, b, func(x, y coltype.Value) bool { return x.Equal(y) })
}

func checkChanges(t *testing.T, got, want []LocalChange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Table != w.Table || g.Schema != w.Schema || g.Name != w.Name || g.Op != w.Op ||
			!valuesEqual(g.Key, w.Key) || !slices.Equal(g.Columns, w.Columns) || !valuesEqual(g.Values, w.Values) {
			t.Fatalf("change %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func checkMonotonic(t *testing.T, txns []LocalTxn) {
	t.Helper()
	for i := 1; i < len(txns); i++ {
		if txns[i].ID <= txns[i-1].ID || txns[i].HLC <= txns[i-1].HLC {
			t.Fatalf("txn %d (%d, %v) after (%d, %v)", i, txns[i].ID, txns[i].HLC, txns[i-1].ID, txns[i-1].HLC)
		}
	}
}

func TestCaptureExec(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	syncTables(t, c, kindsRel(1))
	ctx := ctxT(t)
	negZero := math.Copysign(0, -1)
	exec := func(sql string, args ...any) {
		t.Helper()
		if err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("INSERT INTO kinds VALUES(?, ?, ?, ?, ?, ?)", 1, int64(math.MinInt64), negZero, "héllo\x00world", []byte{0, 1, 255}, "NaN")
	exec("INSERT INTO kinds VALUES(?, ?, ?, ?, ?, ?)", 2, nil, nil, "", []byte{}, math.Inf(-1))
	exec("UPDATE kinds SET t = 'new', i = i, b = b WHERE id = 1")
	exec("UPDATE kinds SET x = 2 WHERE id = 1")
	exec("UPDATE kinds SET x = 2.0 WHERE id = 1") // 2 IS 2.0 in SQL, but the kind changed
	exec("UPDATE kinds SET x = 2.0 WHERE id = 1") // no change at all
	exec("DELETE FROM kinds WHERE id = 2")

	txns := pendingOf(t, c)
	if len(txns) != 7 || c.PendingCount() != 7 {
		t.Fatalf("%d txns, PendingCount %d", len(txns), c.PendingCount())
	}
	checkMonotonic(t, txns)
	if txns[0].ID != 1 {
		t.Fatalf("first txid %d", txns[0].ID)
	}
	if d := time.Since(time.UnixMilli(txns[0].HLC.Millis())); d < 0 || d > time.Minute {
		t.Fatalf("HLC %v is not about now", txns[0].HLC)
	}
	all := []int{0, 1, 2, 3, 4, 5}
	want := [][]LocalChange{
		{chg("kinds", 'I', keys(vInt(1)), all, vInt(1), vInt(math.MinInt64), vReal(negZero), vText("héllo\x00world"), vBlob([]byte{0, 1, 255}), vText("NaN"))},
		{chg("kinds", 'I', keys(vInt(2)), all, vInt(2), vNull(), vNull(), vText(""), vBlob([]byte{}), vReal(math.Inf(-1)))},
		{chg("kinds", 'U', keys(vInt(1)), []int{3}, vText("new"))},
		{chg("kinds", 'U', keys(vInt(1)), []int{5}, vInt(2))},
		{chg("kinds", 'U', keys(vInt(1)), []int{5}, vReal(2))},
		{chg("kinds", 'U', keys(vInt(1)), nil)},
		{chg("kinds", 'D', keys(vInt(2)), nil)},
	}
	for i := range want {
		checkChanges(t, txns[i].Changes, want[i])
	}
	if !math.Signbit(txns[0].Changes[0].Values[2].F) {
		t.Fatal("-0.0 lost its sign")
	}
	if v := txns[1].Changes[0].Values[4]; v.Kind != coltype.Blob || v.B == nil || len(v.B) != 0 {
		t.Fatalf("empty blob read back as %+v", v)
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_oplog WHERE txid IS NULL"); got[0][0] != int64(0) {
		t.Fatal("unstamped ops left")
	}

	// Multi-row statements: one op per row, in order, one transaction.
	exec("INSERT INTO kinds(id, t) VALUES(10, 'a'), (11, 'b'); UPDATE kinds SET t = t || '!' WHERE id >= 10")
	txns = pendingOf(t, c)
	last := txns[len(txns)-1]
	if len(txns) != 8 || last.ID != 8 {
		t.Fatalf("%d txns, last %d", len(txns), last.ID)
	}
	null := vNull()
	checkChanges(t, last.Changes, []LocalChange{
		chg("kinds", 'I', keys(vInt(10)), all, vInt(10), null, null, vText("a"), null, null),
		chg("kinds", 'I', keys(vInt(11)), all, vInt(11), null, null, vText("b"), null, null),
		chg("kinds", 'U', keys(vInt(10)), []int{3}, vText("a!")),
		chg("kinds", 'U', keys(vInt(11)), []int{3}, vText("b!")),
	})

	// Upserts and replaces.
	exec("INSERT INTO kinds(id, t) VALUES(10, 'c') ON CONFLICT(id) DO UPDATE SET t = excluded.t")
	exec("INSERT OR REPLACE INTO kinds(id, i) VALUES(11, 7)")
	txns = pendingOf(t, c)
	checkChanges(t, txns[8].Changes, []LocalChange{chg("kinds", 'U', keys(vInt(10)), []int{3}, vText("c"))})
	checkChanges(t, txns[9].Changes, []LocalChange{chg("kinds", 'I', keys(vInt(11)), all, vInt(11), vInt(7), null, null, null, null)})
}

func TestCapturePKUpdateRefused(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	syncTables(t, c, itemsRel(1))
	ctx := ctxT(t)
	if err := c.Exec(ctx, "INSERT INTO items VALUES(1, 'a', 1)"); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"UPDATE items SET id = 2 WHERE id = 1",
		"UPDATE items SET rowid = 2 WHERE id = 1", // id is the rowid alias
		"UPDATE items SET title = 'x' WHERE id = 1; UPDATE items SET id = id + 1",
	} {
		err := c.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), "lattice: the primary key of items cannot be updated; delete and insert instead") {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if got := query(t, c, "SELECT id, title FROM items"); !reflect.DeepEqual(got, [][]any{{int64(1), "a"}}) {
		t.Fatalf("rows %v", got)
	}
	if txns := pendingOf(t, c); len(txns) != 1 {
		t.Fatalf("%d txns: %+v", len(txns), txns)
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_oplog"); got[0][0] != int64(1) {
		t.Fatalf("%v ops", got)
	}
	// Setting the key to its own value is no change.
	if err := c.Exec(ctx, "UPDATE items SET id = id, n = 2"); err != nil {
		t.Fatal(err)
	}
	txns := pendingOf(t, c)
	checkChanges(t, txns[1].Changes, []LocalChange{chg("items", 'U', keys(vInt(1)), []int{2}, vInt(2))})
}

func TestCaptureTransaction(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	syncTables(t, c, itemsRel(1), otherRel(2))
	ctx := ctxT(t)
	err := c.Transaction(ctx, func(tx *Tx) error {
		if err := tx.Exec("INSERT INTO items VALUES(?, ?, ?)", 1, "a", 1); err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO "app.other" VALUES('k', 1)`); err != nil {
			return err
		}
		rows, err := tx.Query("SELECT count(*) FROM items")
		if err != nil || rows.Values[0][0] != int64(1) {
			return fmt.Errorf("query in transaction: %v %v", rows, err)
		}
		// A failed statement is undone; the transaction goes on.
		if err := tx.Exec("UPDATE items SET id = 9"); err == nil {
			return errors.New("key update accepted")
		}
		if err := tx.Exec("BEGIN"); err == nil {
			return errors.New("BEGIN accepted")
		}
		if err := tx.Exec("INSERT INTO _lattice_oplog(tbl) VALUES('items')"); err == nil {
			return errors.New("oplog write accepted")
		}
		return tx.Exec("UPDATE items SET n = 2; DELETE FROM \"app.other\"")
	})
	if err != nil {
		t.Fatal(err)
	}
	txns := pendingOf(t, c)
	if len(txns) != 1 {
		t.Fatalf("%d txns", len(txns))
	}
	checkChanges(t, txns[0].Changes, []LocalChange{
		chg("items", 'I', keys(vInt(1)), []int{0, 1, 2}, vInt(1), vText("a"), vInt(1)),
		chg("app.other", 'I', keys(vText("k")), []int{0, 1}, vText("k"), vInt(1)),
		chg("items", 'U', keys(vInt(1)), []int{2}, vInt(2)),
		chg("app.other", 'D', keys(vText("k")), nil),
	})

	// Failed transactions leave nothing: error, panic, interrupted.
	var saved *Tx
	boom := errors.New("boom")
	if err := c.Transaction(ctx, func(tx *Tx) error {
		saved = tx
		tx.Exec("INSERT INTO items VALUES(2, 'b', 2)")
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := saved.Exec("INSERT INTO items VALUES(3, 'c', 3)"); err == nil {
		t.Fatal("Tx usable after its transaction")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		c.Transaction(ctx, func(tx *Tx) error {
			tx.Exec("INSERT INTO items VALUES(2, 'b', 2)")
			panic("boom")
		})
	}()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Transaction(short, func(tx *Tx) error {
		if err := tx.Exec("INSERT INTO items VALUES(2, 'b', 2)"); err != nil {
			return err
		}
		return tx.Exec(`WITH RECURSIVE r(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000)
			INSERT INTO items SELECT i, NULL, NULL FROM r`)
	})
	cancel()
	if err == nil {
		t.Fatal("long transaction not interrupted")
	}
	if got := query(t, c, "SELECT count(*) FROM items"); got[0][0] != int64(1) {
		t.Fatalf("items %v", got)
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_oplog"); got[0][0] != int64(4) {
		t.Fatalf("ops %v", got)
	}
	if txns := pendingOf(t, c); len(txns) != 1 || c.PendingCount() != 1 {
		t.Fatalf("%d txns, PendingCount %d", len(txns), c.PendingCount())
	}
	// The txid was not consumed by the failed transactions.
	if err := c.Exec(ctx, "DELETE FROM items"); err != nil {
		t.Fatal(err)
	}
	if txns := pendingOf(t, c); len(txns) != 2 || txns[1].ID != 2 {
		t.Fatalf("txns %+v", txns)
	}
}

func TestCaptureNotSynced(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	syncTables(t, c, itemsRel(1))
	ctx := ctxT(t)
	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT count(*) FROM local", nil, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := c.Exec(ctx, "CREATE TABLE local(a INTEGER PRIMARY KEY, b); INSERT INTO local VALUES(1, 2); UPDATE local SET a = 5"); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); got[0][0] != int64(1) {
		t.Fatalf("live %v", got)
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_oplog"); got[0][0] != int64(0) || c.PendingCount() != 0 {
		t.Fatalf("ops %v, pending %d", got, c.PendingCount())
	}
	if txns := pendingOf(t, c); len(txns) != 0 {
		t.Fatalf("txns %+v", txns)
	}
}

func TestApplyNotCaptured(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 5, ins(1, vInt(1), vText("a"), vInt(1)), ins(1, vInt(2), vText("b"), vInt(2)))
	if err := c.lock(ctxT(t)); err != nil { // the connection is shared with the client's goroutines
		t.Fatal(err)
	}
	on, err := c.conn.Config(sqlite3.DBCONFIG_ENABLE_TRIGGER)
	c.unlock()
	if err != nil || !on {
		t.Fatalf("triggers left disabled after a snapshot: %v %v", on, err)
	}
	fc.send(txn(6, upd(1, vInt(1), vText("A"), vInt(1)), del(1, vInt(2)), ins(1, vInt(3), vText("c"), vNull())))
	fc.send(&protocol.Txn{LSN: 7, Flags: protocol.FlagFirst | protocol.FlagLast | protocol.FlagReset, Reset: []uint32{1},
		Changes: []protocol.Change{ins(1, vInt(4), vText("d"), vNull())}})
	waitLSN(t, c, 7)
	if got := query(t, c, "SELECT id FROM items"); !reflect.DeepEqual(got, [][]any{{int64(4)}}) {
		t.Fatalf("rows %v", got)
	}
	if got := query(t, c, "SELECT (SELECT count(*) FROM _lattice_oplog), (SELECT count(*) FROM _lattice_ops_items), (SELECT applying FROM _lattice_flags)"); !reflect.DeepEqual(got, [][]any{{int64(0), int64(0), int64(0)}}) {
		t.Fatalf("ops, flag: %v", got)
	}
	// A partial transaction rolled back leaves the flag unset too.
	fc.send(&protocol.Txn{LSN: 8, Flags: protocol.FlagFirst, Changes: []protocol.Change{ins(1, vInt(5), vText("e"), vNull())}})
	fc.kill()
	fc = fs.accept()
	if got := query(t, c, "SELECT applying FROM _lattice_flags"); got[0][0] != int64(0) {
		t.Fatalf("flag %v", got)
	}
	// Local writes are captured again.
	if err := c.Exec(ctxT(t), "UPDATE items SET n = 9"); err != nil {
		t.Fatal(err)
	}
	txns := pendingOf(t, c)
	if len(txns) != 1 {
		t.Fatalf("txns %+v", txns)
	}
	checkChanges(t, txns[0].Changes, []LocalChange{chg("items", 'U', keys(vInt(4)), []int{2}, vInt(9))})

	// The app's own triggers on synced tables run for the service's
	// changes, snapshots included (an FTS index kept by triggers, say).
	ctx := ctxT(t)
	if err := c.Exec(ctx, `CREATE TABLE seen(k); CREATE TRIGGER app_seen AFTER INSERT ON "app.other" BEGIN INSERT INTO seen VALUES(NEW.k); END`); err == nil {
		t.Fatal("trigger on a table that does not exist yet")
	}
	fc.welcome("log1")
	fc.expectSubscribe()
	sub, err := c.Subscribe(ctx, Shape{Table: "app.other"})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	fc.send(otherRel(2), snapshot(9))
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `CREATE TABLE seen(k); CREATE TRIGGER app_seen AFTER INSERT ON "app.other" BEGIN INSERT INTO seen VALUES(NEW.k); END`); err != nil {
		t.Fatal(err)
	}
	sub2, err := c.Subscribe(ctx, Shape{Table: "app.other", Where: "v > 0"})
	if err != nil {
		t.Fatal(err)
	}
	s = fc.expectSubscribe()
	fc.send(snapshot(10, ins(2, vText("x"), vInt(1))), &protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub2.Synced(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(t, c, "SELECT k FROM seen"); !reflect.DeepEqual(got, [][]any{{"x"}}) {
		t.Fatalf("app trigger during snapshot: %v", got)
	}
	if txns := pendingOf(t, c); len(txns) != 1 {
		t.Fatalf("txns %+v", txns)
	}
}

func TestCaptureNamesAndSchemaChanges(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	weird := &protocol.Relation{RelID: 1, Schema: "s p", Table: `we"ird 'x'`,
		Columns: []protocol.Column{col(`a "q"`, coltype.Int8, true), col("b c", coltype.TextType, true), col("seq", coltype.TextType, false), col("op", coltype.TextType, false)},
		PK:      []int{1, 0}}
	wide := &protocol.Relation{RelID: 2, Schema: "public", Table: "wide", PK: []int{0}}
	for i := range 70 {
		wide.Columns = append(wide.Columns, col(fmt.Sprintf("c%d", i), coltype.Int8, i == 0))
	}
	s := syncTables(t, c, weird, wide)
	ctx := ctxT(t)
	tbl := `"s p.we""ird 'x'"`
	if err := c.Exec(ctx, `INSERT INTO `+tbl+` VALUES(1, 'k', 's', 'o'); UPDATE `+tbl+` SET op = 'p'; UPDATE wide SET c65 = 1`); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `INSERT INTO wide(c0, c1, c69) VALUES(1, 1, 69); UPDATE wide SET c65 = 65, c1 = 1, c3 = NULL`); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `UPDATE `+tbl+` SET "a ""q""" = 2`); err == nil || !strings.Contains(err.Error(), `primary key of s p.we"ird 'x' cannot`) {
		t.Fatalf("key update: %v", err)
	}
	txns := pendingOf(t, c)
	if len(txns) != 2 {
		t.Fatalf("txns %+v", txns)
	}
	name := `s p.we"ird 'x'`
	allWide := make([]int, 70)
	wideVals := make([]coltype.Value, 70)
	for i := range allWide {
		allWide[i] = i
	}
	wideVals[0], wideVals[1], wideVals[69] = vInt(1), vInt(1), vInt(69)
	checkChanges(t, txns[0].Changes, []LocalChange{
		{Table: name, Schema: "s p", Name: `we"ird 'x'`, Op: 'I', Key: keys(vText("k"), vInt(1)), Columns: []int{0, 1, 2, 3}, Values: []coltype.Value{vInt(1), vText("k"), vText("s"), vText("o")}},
		{Table: name, Schema: "s p", Name: `we"ird 'x'`, Op: 'U', Key: keys(vText("k"), vInt(1)), Columns: []int{3}, Values: []coltype.Value{vText("p")}},
	})
	checkChanges(t, txns[1].Changes, []LocalChange{
		chg("wide", 'I', keys(vInt(1)), allWide, wideVals...),
		chg("wide", 'U', keys(vInt(1)), []int{65}, vInt(65)),
	})

	// The service adds a column (and reorders): old ops stay readable, new
	// ones carry the column.
	items := itemsRel(3)
	if err := c.handle(s, items); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "INSERT INTO items VALUES(1, 'a', 1)"); err != nil {
		t.Fatal(err)
	}
	items.Columns = []protocol.Column{col("extra", coltype.TextType, false), items.Columns[0], items.Columns[1], items.Columns[2]}
	items.PK = []int{1}
	if err := c.handle(s, items); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "UPDATE items SET extra = 'x', n = 2"); err != nil {
		t.Fatal(err)
	}
	txns = pendingOf(t, c)
	checkChanges(t, txns[2].Changes, []LocalChange{chg("items", 'I', keys(vInt(1)), []int{1, 2, 3}, vInt(1), vText("a"), vInt(1))})
	checkChanges(t, txns[3].Changes, []LocalChange{chg("items", 'U', keys(vInt(1)), []int{0, 3}, vText("x"), vInt(2))})

	// Relations arriving again (reconnect) keep the triggers as they are.
	before := query(t, c, "SELECT rowid, name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
	if len(before) != 12 {
		t.Fatalf("%d triggers", len(before))
	}
	for _, r := range []*protocol.Relation{weird, wide, items} {
		if err := c.handle(s, r); err != nil {
			t.Fatal(err)
		}
	}
	if after := query(t, c, "SELECT rowid, name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name"); !reflect.DeepEqual(before, after) {
		t.Fatal("triggers changed")
	}
	// Exec cannot drop them.
	if err := c.Exec(ctx, `DROP TRIGGER "_lattice_ins_items"`); err == nil {
		t.Fatal("capture trigger dropped")
	}
}

func TestAckDrop(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	syncTables(t, c, itemsRel(1), otherRel(2))
	ctx := ctxT(t)
	for i := range 4 {
		if err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO items VALUES(%d, 'a', 1); INSERT INTO "app.other" VALUES('%d', 1)`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if c.PendingCount() != 4 {
		t.Fatal(c.PendingCount())
	}
	withDB(t, c, func() error { return c.ackTxn(1) })
	withDB(t, c, func() error { return c.ackTxn(1) })
	withDB(t, c, func() error { return c.rejectTxn(2, "nope") })
	if c.PendingCount() != 2 {
		t.Fatal(c.PendingCount())
	}
	if txns := pendingOf(t, c); len(txns) != 2 || txns[0].ID != 3 {
		t.Fatalf("txns %+v", txns)
	}
	if err := c.lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ackTxn(99); err == nil {
		t.Fatal("unknown txn acked")
	}
	limited, err := c.pendingTxns(1)
	c.unlock()
	if err != nil || len(limited) != 1 || limited[0].ID != 3 {
		t.Fatalf("limit 1: %+v %v", limited, err)
	}
	for _, id := range []uint64{1, 2, 3} {
		withDB(t, c, func() error { return c.dropTxn(id) })
	}
	if c.PendingCount() != 1 {
		t.Fatal(c.PendingCount())
	}
	got := query(t, c, `SELECT (SELECT count(*) FROM _lattice_oplog), (SELECT count(*) FROM _lattice_ops_items),
		(SELECT count(*) FROM "_lattice_ops_app.other"), (SELECT group_concat(txid || state || coalesce(error, ''), ',') FROM _lattice_txns)`)
	if !reflect.DeepEqual(got, [][]any{{int64(2), int64(1), int64(1), "4pending"}}) {
		t.Fatalf("after drops: %v", got)
	}
	// Inside an open transaction that rolls back, nothing changes.
	withDB(t, c, func() error {
		c.stmts.begin.Exec()
		if err := c.ackTxn(4); err != nil {
			return err
		}
		c.stmts.rollback.Exec()
		c.afterRollback()
		return nil
	})
	if c.PendingCount() != 1 || len(pendingOf(t, c)) != 1 {
		t.Fatal("rolled back ack kept")
	}
}

func TestLocalRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	ctx := ctxT(t)
	c, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	syncTables(t, c, itemsRel(1))
	for i := range 3 {
		if err := c.Exec(ctx, "INSERT INTO items VALUES(?, 'a', 1)", i); err != nil {
			t.Fatal(err)
		}
	}
	withDB(t, c, func() error { return c.dropTxn(3) }) // the last txid is not reused
	before := pendingOf(t, c)
	// An HLC observed from the service, an hour ahead.
	future := merge.MakeHLC(time.Now().Add(time.Hour).UnixMilli(), 7)
	withDB(t, c, func() error { c.observeHLC(future); return nil })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.PendingCount() != 2 {
		t.Fatal(c.PendingCount())
	}
	after := pendingOf(t, c)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("pending changed:\n%+v\n%+v", before, after)
	}
	if err := c.Exec(ctx, "UPDATE items SET n = 2 WHERE id = 0"); err != nil {
		t.Fatal(err)
	}
	txns := pendingOf(t, c)
	last := txns[len(txns)-1]
	if last.ID != 4 || last.HLC <= future {
		t.Fatalf("after restart: txid %d, HLC %v (observed %v)", last.ID, last.HLC, future)
	}
	checkMonotonic(t, txns)
}

// TestExternalWrites writes with a plain second SQLite connection, as the
// sqlite3 shell would.
func TestExternalWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	c := testClient(t, path, nil)
	syncTables(t, c, itemsRel(1))
	ctx := ctxT(t)
	if err := c.Exec(ctx, "INSERT INTO items VALUES(1, 'a', 1); CREATE TABLE notes(x)"); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT id, title FROM items ORDER BY id", nil, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	r.next(t)
	rn := newRecorder()
	cancelN, err := c.LiveQuery("SELECT count(*) FROM notes", nil, rn.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelN()
	rn.next(t)

	ext, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	ext.BusyTimeout(5 * time.Second)
	start := time.Now()
	if err := ext.Exec("INSERT INTO items VALUES(2, 'ext', 2); UPDATE items SET title = 'A' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	// Two statements in autocommit mode: two SQLite transactions, most
	// likely stamped together.
	var txns []LocalTxn
	for {
		txns = pendingOf(t, c)
		n := 0
		for _, tx := range txns[1:] {
			n += len(tx.Changes)
		}
		if n == 2 {
			break
		}
		if time.Since(start) > testTimeout {
			t.Fatalf("external writes not stamped: %+v", txns)
		}
		time.Sleep(time.Millisecond)
	}
	stampLatency := time.Since(start)
	var changes []LocalChange
	for _, tx := range txns[1:] {
		changes = append(changes, tx.Changes...)
	}
	checkChanges(t, changes, []LocalChange{
		chg("items", 'I', keys(vInt(2)), []int{0, 1, 2}, vInt(2), vText("ext"), vInt(2)),
		chg("items", 'U', keys(vInt(1)), []int{1}, vText("A")),
	})
	checkMonotonic(t, txns)
	for {
		got := r.next(t)
		if reflect.DeepEqual(got, [][]any{{int64(1), "A"}, {int64(2), "ext"}}) {
			break
		}
	}
	t.Logf("external commit stamped after %v, live query after %v", stampLatency, time.Since(start))
	if stampLatency > time.Second { // polled every 50 ms
		t.Errorf("external commit stamped after %v", stampLatency)
	}

	// One explicit transaction is one local transaction.
	n := len(txns)
	if err := ext.Exec("BEGIN; DELETE FROM items WHERE id = 2; INSERT INTO notes VALUES(1); COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got := rn.next(t); got[0][0] != int64(1) { // live queries over unsynced tables re-run too
		t.Fatalf("notes %v", got)
	}
	waitFor(t, func() bool { return len(pendingOf(t, c)) == n+1 })
	txns = pendingOf(t, c)
	checkChanges(t, txns[n].Changes, []LocalChange{chg("items", 'D', keys(vInt(2)), nil)})

	// The key of a synced table cannot be changed by others either.
	err = ext.Exec("UPDATE items SET id = 5")
	if err == nil || !strings.Contains(err.Error(), "lattice: the primary key of items cannot be updated") {
		t.Fatalf("external key update: %v", err)
	}

	// Writes made while the client is closed are stamped at Open.
	c.Close()
	if err := ext.Exec("INSERT INTO items VALUES(3, 'offline', 3)"); err != nil {
		t.Fatal(err)
	}
	c2 := testClient(t, path, nil)
	txns2 := pendingOf(t, c2)
	if len(txns2) != n+2 {
		t.Fatalf("%d txns after reopen", len(txns2))
	}
	checkMonotonic(t, txns2)
	checkChanges(t, txns2[n+1].Changes, []LocalChange{chg("items", 'I', keys(vInt(3)), []int{0, 1, 2}, vInt(3), vText("offline"), vInt(3))})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestExternalBetweenAPICalls checks that another program's ops committed
// just before an API transaction become a local transaction of their own.
func TestExternalBeforeTransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	c := testClient(t, path, nil)
	syncTables(t, c, itemsRel(1))
	ext, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	ext.BusyTimeout(5 * time.Second)
	for i := range 20 {
		if err := ext.Exec(fmt.Sprintf("INSERT INTO items VALUES(%d, 'ext', 0)", 2*i)); err != nil {
			t.Fatal(err)
		}
		if err := c.Exec(ctxT(t), "INSERT INTO items VALUES(?, 'api', 0)", 2*i+1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(pendingOf(t, c)) == 40 })
	txns := pendingOf(t, c)
	checkMonotonic(t, txns)
	for i, tx := range txns {
		if len(tx.Changes) != 1 || tx.Changes[0].Key[0].I != int64(i) {
			t.Fatalf("txn %d: %+v", i, tx)
		}
	}
}

// BenchmarkLocalWriteToLiveQuery measures a one-row UPDATE through Exec
// (captured and stamped) until a live query reading the table delivers
// the new row, on a WAL file database.
func BenchmarkLocalWriteToLiveQuery(b *testing.B) {
	ctx := context.Background()
	c, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s := syncTables(b, c, benchRelation(1))
	frames, _ := snapshotFrames(1, 1, 1000)
	for _, f := range frames {
		if err := c.applyFrame(s, f); err != nil {
			b.Fatal(err)
		}
	}
	got := make(chan float64, 1)
	cancel, err := c.LiveQuery("SELECT amount FROM bench WHERE id = 7", nil, func(r *Rows, err error) {
		if err == nil && len(r.Values) == 1 {
			if f, ok := r.Values[0][0].(float64); ok {
				got <- f
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()
	<-got
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		v := float64(i) + 0.5
		start := time.Now()
		if err := c.Exec(ctx, "UPDATE bench SET amount = ? WHERE id = 7", v); err != nil {
			b.Fatal(err)
		}
		for f := range got {
			if f == v {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	if c.PendingCount() != len(lat) {
		b.Fatalf("PendingCount %d, want %d", c.PendingCount(), len(lat))
	}
}
