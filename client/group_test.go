package client

import (
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/latticesync/lattice/protocol"
)

// A backlog of service transactions is applied in few SQLite commits
// (group commit), with the same result as one commit each; a transaction
// that fails inside a group keeps the completed ones before it.
func TestGroupCommit(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 5, ins(1, vInt(1), vText("a"), vInt(0)))

	var commits atomic.Int64
	if err := c.lock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.conn.CommitHook(func() bool { commits.Add(1); return true })
	c.unlock()

	const n = 300
	msgs := make([]protocol.Down, 0, n)
	for i := 1; i <= n; i++ {
		msgs = append(msgs, txn(uint64(5+i), upd(1, vInt(1), vText("a"), vInt(int64(i)))))
	}
	fc.send(msgs...)
	waitLSN(t, c, 5+n)
	if got := query(t, c, "SELECT n FROM items WHERE id = 1"); !reflect.DeepEqual(got, [][]any{{int64(n)}}) {
		t.Fatalf("rows %v", got)
	}
	if k := commits.Load(); k >= n/2 {
		t.Errorf("%d commits for %d transactions received at once: no group commit", k, n)
	} else {
		t.Logf("%d transactions applied in %d commits", n, k)
	}

	// A bad transaction after good ones: the good ones stay, the
	// connection ends, and the client resumes after the last good one.
	lsn := uint64(5 + n)
	fc.send(txn(lsn+1, upd(1, vInt(1), vText("b"), vInt(1))), txn(lsn+2, upd(1, vInt(1), vText("c"), vInt(2))),
		txn(lsn+3, ins(99, vInt(1))))
	fc2 := fs.accept()
	if fc2.hello.LSN != lsn+2 {
		t.Fatalf("resumed from %d, want %d", fc2.hello.LSN, lsn+2)
	}
	if got := query(t, c, "SELECT title, n FROM items WHERE id = 1"); !reflect.DeepEqual(got, [][]any{{"c", int64(2)}}) {
		t.Fatalf("rows after the failed transaction %v", got)
	}
}

// After a re-sync, a local transaction the service acknowledged is in the
// reset snapshot and is dropped with it: its own change may lie before the
// snapshot and never come back, and it must not keep being re-applied over
// later changes of its rows.
func TestResyncDropsAcknowledged(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 5, ins(1, vInt(1), vText("a"), vInt(0)))
	if err := c.Exec(ctxT(t), "UPDATE items SET title = 'mine' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	w := fc.expectWrite()
	fc.send(&protocol.Ack{TxnID: w.TxnID})
	fc.kill() // its own change never reaches us on this connection

	fc = fs.accept()
	fc.send(&protocol.Welcome{LogID: "log2", Resync: true, HeadLSN: 100})
	s := fc.expectSubscribe()
	fc.send(itemsRel(3), &protocol.Txn{LSN: 100,
		Flags: protocol.FlagFirst | protocol.FlagLast | protocol.FlagSnapshot | protocol.FlagReset,
		Reset: []uint32{3}, Changes: []protocol.Change{ins(3, vInt(1), vText("mine"), vInt(0))}})
	fc.send(&protocol.Subscribed{ReqID: s.ReqID, ShapeIDs: shapeIDs(s)})
	waitLSN(t, c, 100)
	// Someone else's later change wins; nothing of ours is re-applied.
	fc.send(txn(101, upd(3, vInt(1), vText("theirs"), vInt(0))))
	waitLSN(t, c, 101)
	if got := query(t, c, "SELECT title FROM items WHERE id = 1"); !reflect.DeepEqual(got, [][]any{{"theirs"}}) {
		t.Fatalf("rows %v", got)
	}
	if got := query(t, c, "SELECT count(*) FROM _lattice_txns"); got[0][0] != int64(0) {
		t.Fatalf("local transactions left: %v", got)
	}
}
