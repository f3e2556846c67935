package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

func TestSyncURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://localhost:5133":        "ws://localhost:5133/v1/sync",
		"http://localhost:5133/":     "ws://localhost:5133/v1/sync",
		"https://example.com":        "wss://example.com/v1/sync",
		"wss://example.com/custom":   "wss://example.com/custom",
		"ws://h:1?x=1":               "ws://h:1/v1/sync?x=1",
		"http://127.0.0.1:9/lattice": "ws://127.0.0.1:9/lattice",
	} {
		got, err := syncURL(in)
		if err != nil || got != want {
			t.Errorf("syncURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := syncURL("ftp://x"); err == nil {
		t.Error("ftp URL accepted")
	}
	got, err := syncURLs(" ws://a:1 , https://b ,")
	if err != nil || len(got) != 2 || got[0] != "ws://a:1/v1/sync" || got[1] != "wss://b/v1/sync" {
		t.Errorf("syncURLs: %q, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "ws://a,ftp://b"} {
		if _, err := syncURLs(bad); err == nil {
			t.Errorf("syncURLs(%q) accepted", bad)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n := range 40 {
		d := backoff(n)
		max := min(minBackoff<<min(n, 20), maxBackoff)
		if d < max/2 || d > max {
			t.Errorf("backoff(%d) = %v, want in [%v, %v]", n, d, max/2, max)
		}
	}
}

// syncItems subscribes to items and serves its snapshot on fc.
func syncItems(t *testing.T, c *Client, fc *fakeConn, lsn uint64, rows ...protocol.Change) *Subscription {
	t.Helper()
	sub, err := c.Subscribe(ctxT(t), Shape{Table: "items"})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	if s.Resume || len(s.Shapes) != 1 || s.Shapes[0].ID != sub.ID() || s.Shapes[0].Table != "items" {
		t.Fatalf("subscribe %+v", s)
	}
	fc.send(itemsRel(1), snapshot(lsn, rows...), &protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestFirstSync(t *testing.T) {
	fs := newFakeServer(t)
	var statuses []Status
	var stMu sync.Mutex
	c, err := Open(context.Background(), ":memory:", &Options{URL: fs.url(), Token: "tok", OnStatus: func(s Status) {
		stMu.Lock()
		statuses = append(statuses, s)
		stMu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c)
	fc := fs.accept()
	if p := <-fs.paths; p != protocol.Path {
		t.Errorf("path %q", p)
	}
	h := fc.hello
	if h.Version != protocol.Version || h.Token != "tok" || h.LogID != "" || h.LSN != 0 ||
		!regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(h.ClientID) || h.ClientID != c.ClientID() {
		t.Fatalf("hello %+v", h)
	}
	fc.welcome("log1")
	fc.expectNothing() // no shapes yet

	sub, err := c.Subscribe(ctxT(t), Shape{Table: "items", Where: "n > $1", Params: []any{1}})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	if s.Resume || len(s.Shapes) != 1 || s.Shapes[0].Where != "n > $1" || *s.Shapes[0].Params[0] != "1" {
		t.Fatalf("subscribe %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if err := sub.Synced(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Synced before snapshot: %v", err)
	}
	cancel()
	fc.send(itemsRel(7), snapshot(100,
		ins(7, vInt(1), vText("a"), vInt(2)),
		ins(7, vInt(2), vText("b"), vInt(3))))
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: []string{sub.ID()}})
	if err := sub.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got := query(t, c, "SELECT id, title, n FROM items ORDER BY id")
	want := [][]any{{int64(1), "a", int64(2)}, {int64(2), "b", int64(3)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v", got)
	}
	waitLSN(t, c, 100)
	if logID, lsn := c.Position(); logID != "log1" || lsn != 100 {
		t.Fatalf("position %q %d", logID, lsn)
	}
	if st := c.Status(); st.State != StateOnline || st.LSN != 100 {
		t.Fatalf("status %+v", st)
	}
	// OnStatus runs after the status changes: the third report may lag.
	waitFor(t, func() bool {
		stMu.Lock()
		defer stMu.Unlock()
		return len(statuses) >= 3
	})
	stMu.Lock()
	if statuses[0].State != StateConnecting || statuses[1].State != StateOnline {
		t.Errorf("statuses %+v", statuses)
	}
	stMu.Unlock()
	// Synced is immediate for a synced shape, also on a new handle.
	sub2, err := c.Subscribe(ctxT(t), Shape{Table: "items", Where: "n > $1", Params: []any{1}})
	if err != nil || sub2.ID() != sub.ID() {
		t.Fatal(sub2, err)
	}
	if err := sub2.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	fc.expectNothing()
	if _, err := c.Subscribe(ctxT(t), Shape{ID: sub.ID(), Table: "other"}); err == nil {
		t.Fatal("same id with another definition accepted")
	}
	// The local table has the declared types and the primary key.
	cols := query(t, c, "SELECT name, type, \"notnull\", pk FROM pragma_table_info('items') ORDER BY cid")
	wantCols := [][]any{{"id", "INTEGER", int64(1), int64(1)}, {"title", "TEXT", int64(0), int64(0)}, {"n", "INTEGER", int64(0), int64(0)}}
	if !reflect.DeepEqual(cols, wantCols) {
		t.Fatalf("columns %v", cols)
	}
}

func TestStreaming(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)), ins(1, vInt(2), vText("b"), vInt(2)))
	fc.send(otherRel(2))
	fc.send(txn(11, ins(1, vInt(3), vText("c"), vInt(3)), ins(2, vText("k"), vInt(9))))
	fc.send(txn(12, upd(1, vInt(1), vText("A"), vNull())))
	fc.send(txn(13, del(1, vInt(2))))
	fc.send(txn(14, moveOut(1, vInt(3)), upd(1, vInt(4), vText("d"), vInt(4))))
	waitLSN(t, c, 14)
	got := query(t, c, "SELECT id, title, n FROM items ORDER BY id")
	want := [][]any{{int64(1), "A", nil}, {int64(4), "d", int64(4)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v", got)
	}
	if got := query(t, c, `SELECT k, v FROM "app.other"`); !reflect.DeepEqual(got, [][]any{{"k", int64(9)}}) {
		t.Fatalf("other %v", got)
	}
	rels := query(t, c, "SELECT local_name, schema, name FROM _lattice_relations ORDER BY 1")
	if !reflect.DeepEqual(rels, [][]any{{"app.other", "app", "other"}, {"items", "public", "items"}}) {
		t.Fatalf("relations %v", rels)
	}
}

func TestMultiChunkAtomic(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, filepath.Join(t.TempDir(), "a.db"), fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)))
	waitLSN(t, c, 10)

	fc.send(&protocol.Txn{LSN: 20, Flags: protocol.FlagFirst, Changes: []protocol.Change{
		upd(1, vInt(1), vText("changed"), vInt(1)), ins(1, vInt(2), vText("new"), vInt(2))}})
	// Once the chunk is applied the transaction is open: queries wait.
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := c.Query(ctx, "SELECT 1")
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil || i == 100 {
			t.Fatalf("query during transaction: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fc.send(&protocol.Txn{LSN: 20, Changes: []protocol.Change{ins(1, vInt(3), vText("x"), vInt(3))}})
	fc.kill()

	fc = fs.accept()
	if fc.hello.LSN != 10 || fc.hello.LogID != "log1" {
		t.Fatalf("hello after drop %+v", fc.hello)
	}
	got := query(t, c, "SELECT id, title FROM items ORDER BY id")
	if !reflect.DeepEqual(got, [][]any{{int64(1), "a"}}) {
		t.Fatalf("rows after drop %v", got)
	}
	if st := c.Status(); st.LastError == nil {
		t.Errorf("status %+v", st)
	}
	// The server resends the transaction, in two chunks again.
	fc.welcome("log1")
	s := fc.expectSubscribe()
	if !s.Resume {
		t.Fatalf("subscribe %+v", s)
	}
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	fc.send(itemsRel(5),
		&protocol.Txn{LSN: 20, Flags: protocol.FlagFirst, Changes: []protocol.Change{
			upd(5, vInt(1), vText("changed"), vInt(1)), ins(5, vInt(2), vText("new"), vInt(2))}},
		&protocol.Txn{LSN: 20, Flags: protocol.FlagLast, Changes: []protocol.Change{ins(5, vInt(3), vText("x"), vInt(3))}})
	waitLSN(t, c, 20)
	got = query(t, c, "SELECT id, title FROM items ORDER BY id")
	if !reflect.DeepEqual(got, [][]any{{int64(1), "changed"}, {int64(2), "new"}, {int64(3), "x"}}) {
		t.Fatalf("rows %v", got)
	}
}

func TestRestart(t *testing.T) {
	fs := newFakeServer(t)
	path := filepath.Join(t.TempDir(), "replica.db")
	c, err := Open(context.Background(), path, &Options{URL: fs.url()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	fc := fs.accept()
	fc.welcome("log1")
	sub := syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)))
	pending, err := c.Subscribe(ctxT(t), Shape{ID: "others", Table: "app.other", Where: "v = $1", Params: []any{nil}})
	if err != nil {
		t.Fatal(err)
	}
	fc.expectSubscribe() // never answered
	fc.send(txn(11, ins(1, vInt(2), vText("b"), vInt(2))))
	waitLSN(t, c, 11)
	clientID := c.ClientID()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if _, err := c.Query(ctxT(t), "SELECT 1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("query after close: %v", err)
	}

	c = testClient(t, path, fs)
	if c.ClientID() != clientID {
		t.Fatalf("client id %q, was %q", c.ClientID(), clientID)
	}
	if logID, lsn := c.Position(); logID != "log1" || lsn != 11 {
		t.Fatalf("position %q %d", logID, lsn)
	}
	if got := query(t, c, "SELECT id FROM items ORDER BY id"); !reflect.DeepEqual(got, [][]any{{int64(1)}, {int64(2)}}) {
		t.Fatalf("rows %v", got)
	}
	wantShapes := []Shape{{ID: sub.ID(), Table: "items"}, {ID: "others", Table: "app.other", Where: "v = $1", Params: []any{nil}}}
	if got := c.Shapes(); !reflect.DeepEqual(got, wantShapes) {
		t.Fatalf("shapes %+v", got)
	}
	sub, err = c.Subscribe(ctxT(t), Shape{Table: "items"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Synced(ctxT(t)); err != nil { // synced in the previous run
		t.Fatal(err)
	}
	_ = pending
	run(t, c)
	fc = fs.accept()
	if h := fc.hello; h.ClientID != clientID || h.LogID != "log1" || h.LSN != 11 {
		t.Fatalf("hello %+v", h)
	}
	fc.welcome("log1")
	s1, s2 := fc.expectSubscribe(), fc.expectSubscribe()
	if !s1.Resume || !slices.Equal(shapeIDs(s1), []string{sub.ID()}) {
		t.Fatalf("resume subscribe %+v", s1)
	}
	if s2.Resume || !slices.Equal(shapeIDs(s2), []string{"others"}) || s2.Shapes[0].Params[0] != nil {
		t.Fatalf("new subscribe %+v", s2)
	}
}

func TestResync(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("old"), vInt(1)), ins(1, vInt(2), vText("old"), vInt(2)))
	sub2, err := c.Subscribe(ctxT(t), Shape{ID: "o", Table: "app.other"})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	fc.send(otherRel(2), snapshot(12, ins(2, vText("x"), vInt(1))), &protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub2.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	waitLSN(t, c, 12)
	fc.send(&protocol.Error{Code: protocol.ErrResync, Message: "position too old"})

	fc = fs.accept()
	if fc.hello.LSN != 12 || fc.hello.LogID != "log1" {
		t.Fatalf("hello %+v", fc.hello)
	}
	fc.send(&protocol.Welcome{LogID: "log2", Resync: true, HeadLSN: 500})
	s = fc.expectSubscribe()
	if s.Resume || len(s.Shapes) != 2 {
		t.Fatalf("subscribe %+v", s)
	}
	fc.expectNothing() // one Subscribe only
	fc.send(itemsRel(3), otherRel(4), &protocol.Txn{LSN: 500,
		Flags: protocol.FlagFirst | protocol.FlagLast | protocol.FlagSnapshot | protocol.FlagReset,
		Reset: []uint32{3, 4}, Changes: []protocol.Change{ins(3, vInt(2), vText("new"), vInt(2)), ins(3, vInt(3), vText("new"), vInt(3))}})
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	waitLSN(t, c, 500)
	if got := query(t, c, "SELECT id, title FROM items ORDER BY id"); !reflect.DeepEqual(got, [][]any{{int64(2), "new"}, {int64(3), "new"}}) {
		t.Fatalf("rows %v", got)
	}
	if got := query(t, c, `SELECT count(*) FROM "app.other"`); got[0][0] != int64(0) {
		t.Fatalf("other %v", got)
	}
	if logID, lsn := c.Position(); logID != "log2" || lsn != 500 {
		t.Fatalf("position %q %d", logID, lsn)
	}
}

func TestShapeError(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	sub, err := c.Subscribe(ctxT(t), Shape{Table: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	fc.send(&protocol.Error{ReqID: s.ReqID, Code: protocol.ErrUnknownTable, Message: "nope is not electrified"})
	err = sub.Synced(ctxT(t))
	var se *ShapeError
	if !errors.As(err, &se) || se.Code != protocol.ErrUnknownTable || se.ShapeID != sub.ID() || se.Message != "nope is not electrified" {
		t.Fatalf("Synced: %v", err)
	}
	if len(c.Shapes()) != 0 {
		t.Fatalf("shapes %v", c.Shapes())
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_shapes"); got[0][0] != int64(0) {
		t.Fatal("failed shape persisted")
	}
	// The connection goes on.
	syncItems(t, c, fc, 5)
}

func TestFatalErrorReconnects(t *testing.T) {
	fs := newFakeServer(t)
	var n atomic.Int32
	c, err := Open(context.Background(), ":memory:", &Options{URL: fs.url(), TokenFunc: func(context.Context) (string, error) {
		return fmt.Sprint("t", n.Add(1)), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c)
	fc := fs.accept()
	if fc.hello.Token != "t1" {
		t.Fatal(fc.hello)
	}
	fc.send(&protocol.Error{Code: protocol.ErrUnauthorized, Message: "expired", Fatal: true})
	fc = fs.accept()
	if fc.hello.Token != "t2" {
		t.Fatal(fc.hello)
	}
	var pe *protocol.Error
	if st := c.Status(); !errors.As(st.LastError, &pe) || pe.Code != protocol.ErrUnauthorized {
		t.Fatalf("status %+v", st)
	}
}

func TestValueKinds(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	sub, err := c.Subscribe(ctxT(t), Shape{Table: "kinds"})
	if err != nil {
		t.Fatal(err)
	}
	s := fc.expectSubscribe()
	rel := &protocol.Relation{RelID: 1, Schema: "public", Table: "kinds", Columns: []protocol.Column{
		col("id", coltype.Int8, true), col("i", coltype.Int8, false), col("r", coltype.Float8, false),
		col("t", coltype.TextType, false), col("b", coltype.Bytea, false), col("nan", coltype.Float8, false),
	}, PK: []int{0}}
	fc.send(rel, snapshot(1,
		ins(1, vInt(1), vInt(math.MinInt64), vReal(-1.5e-300), vText("héllo\x00world"), vBlob([]byte{0, 1, 255}), vText("NaN")),
		ins(1, vInt(2), vNull(), vNull(), vText(""), vBlob(nil), vText("Infinity")),
		ins(1, vInt(3), vInt(math.MaxInt64), vReal(math.Inf(-1)), vText("1.5"), vBlob([]byte("x")), vReal(2.5)),
	), &protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got := query(t, c, "SELECT i, typeof(i), r, typeof(r), t, typeof(t), b, typeof(b), nan, typeof(nan) FROM kinds ORDER BY id")
	want := [][]any{
		{int64(math.MinInt64), "integer", -1.5e-300, "real", "héllo\x00world", "text", []byte{0, 1, 255}, "blob", "NaN", "text"},
		{nil, "null", nil, "null", "", "text", []byte{}, "blob", "Infinity", "text"},
		{int64(math.MaxInt64), "integer", math.Inf(-1), "real", "1.5", "text", []byte("x"), "blob", 2.5, "real"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", got, want)
	}
	// -0.0 keeps its sign (float columns have no affinity).
	fc.send(txn(2, upd(1, vInt(3), vNull(), vReal(math.Copysign(0, -1)), vNull(), vNull(), vNull())))
	waitLSN(t, c, 2)
	if got := query(t, c, "SELECT r FROM kinds WHERE id = 3"); !math.Signbit(got[0][0].(float64)) {
		t.Fatalf("-0.0 read back as %v", got[0][0])
	}

	// In an existing table with a REAL-declared column, Text "NaN" stays
	// Text (REAL affinity converts only numeric-looking text).
	if err := c.Exec(ctxT(t), "CREATE TABLE reals(id INTEGER NOT NULL PRIMARY KEY, v REAL)"); err != nil {
		t.Fatal(err)
	}
	sub, err = c.Subscribe(ctxT(t), Shape{Table: "reals"})
	if err != nil {
		t.Fatal(err)
	}
	s = fc.expectSubscribe()
	fc.send(&protocol.Relation{RelID: 2, Schema: "public", Table: "reals",
		Columns: []protocol.Column{col("id", coltype.Int8, true), col("v", coltype.Float8, false)}, PK: []int{0}},
		snapshot(3, ins(2, vInt(1), vText("NaN")), ins(2, vInt(2), vReal(2.5)), ins(2, vInt(3), vText("-Infinity"))),
		&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	if err := sub.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got = query(t, c, "SELECT v, typeof(v) FROM reals ORDER BY id")
	want = [][]any{{"NaN", "text"}, {2.5, "real"}, {"-Infinity", "text"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reals %#v", got)
	}
	if decl := query(t, c, "SELECT type FROM pragma_table_info('reals') WHERE name = 'v'"); decl[0][0] != "REAL" {
		t.Fatalf("existing table altered: %v", decl)
	}
}

func TestExecQuery(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE t(a INTEGER PRIMARY KEY, b); INSERT INTO t VALUES(1, 'x'), (2, NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "INSERT INTO t VALUES(?, ?)", uint8(3), []byte("y")); err != nil {
		t.Fatal(err)
	}
	got := query(t, c, "SELECT a, b FROM t WHERE a >= ? ORDER BY a", 2)
	if !reflect.DeepEqual(got, [][]any{{int64(2), nil}, {int64(3), []byte("y")}}) {
		t.Fatalf("rows %v", got)
	}
	rows, err := c.Query(ctx, "SELECT a AS x, b FROM t WHERE 0")
	if err != nil || !slices.Equal(rows.Columns, []string{"x", "b"}) || len(rows.Values) != 0 {
		t.Fatal(rows, err)
	}
	for _, sql := range []string{
		"DELETE FROM _lattice_state",
		"UPDATE _lattice_shapes SET synced = 0",
		"DROP TABLE _lattice_relations",
		"BEGIN",
		"COMMIT",
		"INSERT INTO t VALUES(9, 9); INSERT INTO nope VALUES(1)",
	} {
		if err := c.Exec(ctx, sql); err == nil {
			t.Errorf("Exec(%q) succeeded", sql)
		}
	}
	if got := query(t, c, "SELECT count(*) FROM t WHERE a = 9"); got[0][0] != int64(0) {
		t.Error("failed Exec not rolled back")
	}
	if err := c.Exec(ctx, "SELECT 1; SELECT 2", 1); err == nil {
		t.Error("args with two statements accepted")
	}
	if _, err := c.Query(ctx, "DELETE FROM t"); err == nil {
		t.Error("Query ran a write")
	}
	if _, err := c.Query(ctx, "SELECT 1; SELECT 2"); err == nil {
		t.Error("Query ran two statements")
	}
	if _, err := c.Query(ctx, "SELECT ?", struct{}{}); err == nil {
		t.Error("bad argument accepted")
	}
	if _, err := c.Query(ctx, "SELECT ?"); err == nil {
		t.Error("missing argument accepted")
	}
	if err := c.Run(ctx); err == nil {
		t.Error("Run without URL")
	}

	// A context ending mid-statement interrupts it and rolls back.
	const long = `WITH RECURSIVE r(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000)
		INSERT INTO t SELECT i, NULL FROM r`
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = c.Exec(short, long)
	cancel()
	if err == nil {
		t.Fatal("long Exec not interrupted")
	}
	short, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = c.Query(short, "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r")
	cancel()
	if err == nil {
		t.Fatal("long Query not interrupted")
	}
	if err := c.Exec(ctx, "INSERT INTO t VALUES(4, 'z')"); err != nil {
		t.Fatal("Exec after interrupt:", err)
	}
	if got := query(t, c, "SELECT count(*) FROM t"); got[0][0] != int64(4) {
		t.Fatalf("count %v", got)
	}
}

func TestShapeParams(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	id1, d, _, err := normalizeShape(Shape{Table: "t", Where: "a = $1", Params: []any{
		nil, "s", true, 42, int64(-7), uint16(9), 1.5, math.NaN(), math.Inf(-1), ts, time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []any
	for _, p := range d.Params {
		if p == nil {
			got = append(got, nil)
		} else {
			got = append(got, *p)
		}
	}
	want := []any{nil, "s", "true", "42", "-7", "9", "1.5", "NaN", "-Infinity", "2024-05-06T07:08:09.123456Z", "1s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("params %v", got)
	}
	id2, _, _, _ := normalizeShape(Shape{Table: "t", Where: "a = $1", Params: []any{
		nil, "s", true, 42, int64(-7), uint16(9), 1.5, math.NaN(), math.Inf(-1), ts, time.Second,
	}})
	id3, _, _, _ := normalizeShape(Shape{Table: "t", Where: "a = $1"})
	if id1 != id2 || id1 == id3 || len(id1) != 16 {
		t.Fatal(id1, id2, id3)
	}
	for _, bad := range []any{[]byte("x"), struct{}{}, map[string]int{}} {
		if _, _, _, err := normalizeShape(Shape{Table: "t", Params: []any{bad}}); err == nil {
			t.Errorf("param %T accepted", bad)
		}
	}
	if _, _, _, err := normalizeShape(Shape{}); err == nil {
		t.Error("empty table accepted")
	}
}

func TestUnauthorizedStopsRun(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	fc := fs.accept()
	fc.send(&protocol.Error{Code: protocol.ErrUnauthorized, Message: "bad token", Fatal: true})
	select {
	case err := <-done:
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.ErrUnauthorized {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
	if st := c.Status(); st.State != StateOffline || st.LastError == nil {
		t.Fatalf("status %+v", st)
	}
}

func TestBatchErrorSplits(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	good, err := c.Subscribe(ctxT(t), Shape{ID: "good", Table: "items"})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := c.Subscribe(ctxT(t), Shape{ID: "bad", Table: "items", Where: "nope = 1"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	s := fc.expectSubscribe()
	if s.Resume || !slices.Equal(shapeIDs(s), []string{"good", "bad"}) {
		t.Fatalf("subscribe %+v", s)
	}
	fc.send(&protocol.Error{ReqID: s.ReqID, Code: protocol.ErrBadShape, Message: "column nope does not exist"})
	s1, s2 := fc.expectSubscribe(), fc.expectSubscribe()
	if !slices.Equal(shapeIDs(s1), []string{"good"}) || !slices.Equal(shapeIDs(s2), []string{"bad"}) || s1.Resume || s2.Resume {
		t.Fatalf("retries %+v %+v", s1, s2)
	}
	fc.send(itemsRel(1), snapshot(5, ins(1, vInt(1), vText("a"), vInt(1))), &protocol.Subscribed{ReqID: s1.ReqID, ShapeIDs: []string{"good"}})
	fc.send(&protocol.Error{ReqID: s2.ReqID, Code: protocol.ErrBadShape, Message: "column nope does not exist"})
	if err := good.Synced(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var se *ShapeError
	if err := bad.Synced(ctxT(t)); !errors.As(err, &se) || se.ShapeID != "bad" {
		t.Fatalf("bad: %v", err)
	}
	if got := c.Shapes(); len(got) != 1 || got[0].ID != "good" {
		t.Fatalf("shapes %+v", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	c.idleTimeout = 200 * time.Millisecond
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1") // then silence: no frames, no pings
	fs.accept()
	if st := c.Status(); st.LastError == nil || !regexp.MustCompile("silent").MatchString(st.LastError.Error()) {
		t.Fatalf("status %+v", st)
	}
}

func TestUnsubscribe(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	sub := syncItems(t, c, fc, 5, ins(1, vInt(1), vText("a"), vInt(1)))
	pending, err := c.Subscribe(ctxT(t), Shape{ID: "p", Table: "app.other"})
	if err != nil {
		t.Fatal(err)
	}
	fc.expectSubscribe()
	if err := c.Unsubscribe(ctxT(t), "p"); err != nil {
		t.Fatal(err)
	}
	if err := pending.Synced(ctxT(t)); !errors.Is(err, ErrUnsubscribed) {
		t.Fatalf("Synced: %v", err)
	}
	if err := c.Unsubscribe(ctxT(t), sub.ID()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"p", sub.ID()} {
		m, ok := fc.recv().(*protocol.Unsubscribe)
		if !ok || !slices.Equal(m.ShapeIDs, []string{want}) {
			t.Fatalf("got %+v, want Unsubscribe %s", m, want)
		}
		fc.send(&protocol.Error{ReqID: m.ReqID, Code: "unsupported", Message: "reserved"})
	}
	if err := c.Unsubscribe(ctxT(t), "unknown"); err != nil {
		t.Fatal(err)
	}
	if len(c.Shapes()) != 0 {
		t.Fatalf("shapes %+v", c.Shapes())
	}
	// Rows stay, and the connection goes on.
	fc.send(txn(6, ins(1, vInt(2), vText("b"), vInt(2))))
	waitLSN(t, c, 6)
	if got := query(t, c, "SELECT count(*) FROM items"); got[0][0] != int64(2) {
		t.Fatalf("rows %v", got)
	}
}

func TestRelationChanges(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 5, ins(1, vInt(1), vText("a"), vInt(1)))
	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT * FROM items", nil, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	r.next(t)

	// The table gains a column upstream.
	rel := itemsRel(1)
	rel.Columns = append(rel.Columns, col("extra", coltype.Numeric, true))
	fc.send(rel, txn(6, upd(1, vInt(1), vText("a"), vInt(1), vText("1.50")), ins(1, vInt(2), vText("b"), vNull(), vText("2"))))
	waitLSN(t, c, 6)
	// A re-run may also see the altered table before the transaction
	// (the snapshot's notification can arrive after the first run).
	for want := [][]any{{int64(1), "a", int64(1), "1.50"}, {int64(2), "b", nil, "2"}}; ; {
		got := r.next(t)
		if reflect.DeepEqual(got, want) {
			break
		}
		if !reflect.DeepEqual(got, [][]any{{int64(1), "a", int64(1), nil}}) {
			t.Fatalf("rows %v", got)
		}
	}

	// Composite keys, and a table that is all key.
	pairs := &protocol.Relation{RelID: 2, Schema: "s p", Table: `we"ird`,
		Columns: []protocol.Column{col("a", coltype.Int8, true), col("b", coltype.TextType, true)}, PK: []int{1, 0}}
	fc.send(pairs, txn(7, ins(2, vInt(1), vText("x")), ins(2, vInt(1), vText("y")), ins(2, vInt(1), vText("x"))))
	fc.send(txn(8, del(2, vText("y"), vInt(1))))
	waitLSN(t, c, 8)
	if got := query(t, c, `SELECT a, b FROM "s p.we""ird"`); !reflect.DeepEqual(got, [][]any{{int64(1), "x"}}) {
		t.Fatalf("pairs %v", got)
	}

	// Protocol violations end the connection and roll back.
	fc.send(txn(9, ins(1, vInt(3), vText("c"), vNull(), vText("3"))), txn(10, ins(99, vInt(1))))
	fc2 := fs.accept()
	if fc2.hello.LSN != 9 {
		t.Fatalf("hello %+v", fc2.hello)
	}
	fc2.welcome("log1")
	s := fc2.expectSubscribe()
	fc2.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	fc2.send(itemsRel(1), txn(11, ins(1, vInt(1), vText("too few values"))))
	fc3 := fs.accept()
	if fc3.hello.LSN != 9 {
		t.Fatalf("hello %+v", fc3.hello)
	}
	if st := c.Status(); st.LastError == nil {
		t.Fatal("no error recorded")
	}
}

// Statements Exec ran before are kept prepared: they follow schema
// changes, a dropped table makes them fail (and be prepared again), and
// the changes and last insert id they report are their own.
func TestExecPreparedOnce(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE t(a INTEGER PRIMARY KEY, b)"); err != nil {
		t.Fatal(err)
	}
	ins := "INSERT INTO t(a, b) VALUES(?, ?)"
	for i := 1; i <= 3; i++ {
		res, err := c.ExecResult(ctx, ins, i, "v")
		if err != nil || res.Changes != 1 || res.LastInsertID != int64(i) {
			t.Fatalf("insert %d: %+v, %v", i, res, err)
		}
	}
	if err := c.Exec(ctx, "ALTER TABLE t ADD COLUMN c DEFAULT 7"); err != nil {
		t.Fatal(err)
	}
	upd := "UPDATE t SET b = ? WHERE a >= ?"
	if res, err := c.ExecResult(ctx, upd, "w", 2); err != nil || res.Changes != 2 {
		t.Fatalf("update: %+v, %v", res, err)
	}
	if got := query(t, c, "SELECT a, b, c FROM t ORDER BY a"); !reflect.DeepEqual(got, [][]any{
		{int64(1), "v", int64(7)}, {int64(2), "w", int64(7)}, {int64(3), "w", int64(7)}}) {
		t.Fatalf("rows %v", got)
	}
	if err := c.Exec(ctx, "DROP TABLE t"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, ins, 4, "x"); err == nil {
		t.Fatal("insert into a dropped table succeeded")
	}
	if err := c.Exec(ctx, "CREATE TABLE t(a INTEGER PRIMARY KEY, b)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, ins, 5, "y"); err != nil {
		t.Fatalf("insert into the new table: %v", err)
	}
	if err := c.Exec(ctx, ins, 6); err == nil {
		t.Fatal("a missing argument was accepted")
	}
	if got := query(t, c, "SELECT a, b FROM t ORDER BY a"); !reflect.DeepEqual(got, [][]any{{int64(5), "y"}}) {
		t.Fatalf("rows %v", got)
	}
}

// A statement kept prepared still tells live queries what it wrote: a live
// query on a local table sees every repeated insert.
func TestExecPreparedOnceNotifies(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	counts := make(chan int64, 16)
	cancel, err := c.LiveQuery("SELECT count(*) FROM notes", nil, func(rows *Rows, err error) {
		if err == nil {
			counts <- rows.Values[0][0].(int64)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	for i := 0; i < 3; i++ {
		waitCount(t, counts, int64(i))
		if err := c.Exec(ctx, "INSERT INTO notes(body) VALUES(?)", "n"); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, counts, 3)
}

// waitCount waits until a live query of a count delivers want.
func waitCount(t *testing.T, counts <-chan int64, want int64) {
	t.Helper()
	for got := int64(-1); got != want; {
		select {
		case got = <-counts:
		case <-time.After(5 * time.Second):
			t.Fatalf("live query stuck at %d, want %d", got, want)
		}
	}
}

// A statement kept prepared, re-prepared by SQLite after a schema change,
// is authorized again: a trigger added since writes another table, and a
// live query on that table hears of it; a write the authorizer denies
// (an internal table) stays denied.
func TestExecPreparedOnceAfterNewTrigger(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE audit(n INTEGER)"); err != nil {
		t.Fatal(err)
	}
	ins := "INSERT INTO notes(body) VALUES(?)"
	if err := c.Exec(ctx, ins, "before"); err != nil {
		t.Fatal(err)
	}
	counts := make(chan int64, 16)
	cancel, err := c.LiveQuery("SELECT count(*) FROM audit", nil, func(rows *Rows, err error) {
		if err == nil {
			counts <- rows.Values[0][0].(int64)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	waitCount(t, counts, 0)
	if err := c.Exec(ctx, "CREATE TRIGGER notes_audit AFTER INSERT ON notes BEGIN INSERT INTO audit VALUES (new.id); END"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, ins, "after"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, counts, 1)
	if err := c.Exec(ctx, ins, "again"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, counts, 2)
	// A trigger that writes the client's own tables: the statement that
	// would fire it is refused, kept prepared or not.
	if err := c.Exec(ctx, "CREATE TRIGGER notes_bad AFTER INSERT ON notes BEGIN DELETE FROM _lattice_state; END"); err != nil {
		t.Logf("creating the trigger is refused already: %v", err)
		return
	}
	if err := c.Exec(ctx, ins, "bad"); err == nil {
		t.Fatal("a kept statement fired a trigger writing _lattice_state")
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_state"); got[0][0].(int64) == 0 {
		t.Fatal("_lattice_state was emptied")
	}
}

// TestGoingAwayReconnectsAtOnce: a connection the service closes with
// status 1001 (going away: a graceful shutdown) is replaced without a
// reconnect delay, however short-lived the sessions were; an abrupt drop
// waits for the backoff.
func TestGoingAwayReconnectsAtOnce(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	online := func(fc *fakeConn) {
		t.Helper()
		fc.welcome("log1")
		deadline := time.Now().Add(testTimeout)
		for c.Status().State != StateOnline {
			if time.Now().After(deadline) {
				t.Fatal("client not online after Welcome")
			}
			time.Sleep(time.Millisecond)
		}
	}
	fc := fs.accept()
	online(fc)
	// Five short sessions in a row: with the backoff, the reconnects
	// would wait at least 50+100+200+400+800 ms.
	var total time.Duration
	for i := 0; i < 5; i++ {
		start := time.Now()
		fc.ws.Close(websocket.StatusGoingAway, "service shutting down")
		fc = fs.accept()
		d := time.Since(start)
		total += d
		t.Logf("going away %d: reconnected in %v", i, d)
		online(fc)
	}
	if total > 750*time.Millisecond {
		t.Errorf("5 reconnects after going-away took %v; want no backoff delay", total)
	}
	start := time.Now()
	fc.kill()
	fs.accept()
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("reconnected %v after an abrupt drop: want the backoff delay (>= 50 ms)", d)
	}
}
