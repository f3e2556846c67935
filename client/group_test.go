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
