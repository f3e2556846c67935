package client

import (
	"reflect"
	"testing"

	"github.com/latticesync/lattice/protocol"
)

// rebaseSetup syncs items with rows 1 (a, 1) and 2 (b, 2).
func rebaseSetup(t *testing.T) (*Client, *fakeConn) {
	t.Helper()
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)), ins(1, vInt(2), vText("b"), vInt(2)))
	return c, fc
}

func localExec(t *testing.T, c *Client, fc *fakeConn, sql string) *protocol.Write {
	t.Helper()
	if err := c.Exec(ctxT(t), sql); err != nil {
		t.Fatal(err)
	}
	return fc.expectWrite()
}

func expectRows(t *testing.T, c *Client, want [][]any) {
	t.Helper()
	if got := query(t, c, "SELECT id, title, n FROM items ORDER BY id"); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// own returns a service transaction carrying our local transaction id.
func own(c *Client, id uint64, m *protocol.Txn) *protocol.Txn {
	m.Origin, m.ClientTxnID = c.ClientID(), id
	return m
}

// TestRebaseUpdate: a pending local update of a column survives the
// service's update of the row (other columns take the service's values),
// until our own transaction comes back.
func TestRebaseUpdate(t *testing.T) {
	c, fc := rebaseSetup(t)
	w := localExec(t, c, fc, "UPDATE items SET title = 'mine' WHERE id = 1")
	fc.send(txn(11, upd(1, vInt(1), vText("srv"), vInt(100))))
	waitLSN(t, c, 11)
	expectRows(t, c, [][]any{{int64(1), "mine", int64(100)}, {int64(2), "b", int64(2)}})
	// The rebase is not captured: nothing new to send, still one txn.
	if n := query(t, c, "SELECT count(*) FROM _lattice_oplog"); n[0][0] != int64(1) {
		t.Fatalf("oplog rows %v", n)
	}
	fc.send(own(c, w.TxnID, txn(12, upd(1, vInt(1), vText("merged"), vInt(100)))))
	waitLSN(t, c, 12)
	expectRows(t, c, [][]any{{int64(1), "merged", int64(100)}, {int64(2), "b", int64(2)}})
	// Nothing outstanding any more: the service's changes apply as sent.
	fc.send(txn(13, upd(1, vInt(1), vText("srv2"), vInt(101))))
	waitLSN(t, c, 13)
	expectRows(t, c, [][]any{{int64(1), "srv2", int64(101)}, {int64(2), "b", int64(2)}})
}

// TestRebaseAcked: an acknowledged transaction not yet returned is rebased
// too; a rejected one is not.
func TestRebaseAcked(t *testing.T) {
	c, fc := rebaseSetup(t)
	w1 := localExec(t, c, fc, "UPDATE items SET title = 'acked' WHERE id = 1")
	w2 := localExec(t, c, fc, "UPDATE items SET title = 'rejected' WHERE id = 2")
	fc.send(&protocol.Ack{TxnID: w1.TxnID}, &protocol.Reject{TxnID: w2.TxnID, Code: "check_violation", Message: "no"})
	waitFor(t, func() bool { return c.PendingCount() == 0 })
	fc.send(txn(11, upd(1, vInt(1), vText("s1"), vInt(10)), upd(1, vInt(2), vText("s2"), vInt(20))))
	waitLSN(t, c, 11)
	expectRows(t, c, [][]any{{int64(1), "acked", int64(10)}, {int64(2), "s2", int64(20)}})
}

// TestRebaseInsertSurvivesDelete: a pending local insert stays when the
// service deletes or moves out the row.
func TestRebaseInsertSurvivesDelete(t *testing.T) {
	c, fc := rebaseSetup(t)
	localExec(t, c, fc, "INSERT INTO items VALUES (5, 'new', 5)")
	localExec(t, c, fc, "UPDATE items SET n = 55 WHERE id = 5")
	fc.send(txn(11, moveOut(1, vInt(5))))
	waitLSN(t, c, 11)
	want := [][]any{{int64(1), "a", int64(1)}, {int64(2), "b", int64(2)}, {int64(5), "new", int64(55)}}
	expectRows(t, c, want)
	fc.send(txn(12, upd(1, vInt(5), vText("srv"), vInt(9)), del(1, vInt(5))))
	waitLSN(t, c, 12)
	expectRows(t, c, want)
}

// TestRebaseDeleteStays: a pending local delete stays deleted when the
// service updates the row; a pending update of a row the service deletes
// does not bring it back.
func TestRebaseDeleteStays(t *testing.T) {
	c, fc := rebaseSetup(t)
	localExec(t, c, fc, "DELETE FROM items WHERE id = 2")
	localExec(t, c, fc, "UPDATE items SET title = 'x' WHERE id = 1")
	fc.send(txn(11, upd(1, vInt(2), vText("srv"), vInt(20)), del(1, vInt(1))))
	waitLSN(t, c, 11)
	if got := query(t, c, "SELECT id FROM items"); len(got) != 0 {
		t.Fatalf("rows %v, want none", got)
	}
}

// TestRebaseAfterOwnReturn: when the service returns our transaction N,
// N is dropped first and only the later ones are re-applied.
func TestRebaseAfterOwnReturn(t *testing.T) {
	c, fc := rebaseSetup(t)
	w1 := localExec(t, c, fc, "UPDATE items SET title = 't1', n = 11 WHERE id = 1")
	localExec(t, c, fc, "UPDATE items SET title = 't2' WHERE id = 1")
	// The service applied 1 with another n (a merge on its side).
	fc.send(own(c, w1.TxnID, txn(11, upd(1, vInt(1), vText("t1"), vInt(12)))))
	waitLSN(t, c, 11)
	expectRows(t, c, [][]any{{int64(1), "t2", int64(12)}, {int64(2), "b", int64(2)}})
	if err := c.lock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n := c.loc.unreturned
	c.unlock()
	if n != 1 {
		t.Fatalf("unreturned %d", n)
	}
}

// TestRebaseReset: a reset snapshot (resync) keeps pending local writes.
func TestRebaseReset(t *testing.T) {
	c, fc := rebaseSetup(t)
	localExec(t, c, fc, "INSERT INTO items VALUES (7, 'mine', 7)")
	localExec(t, c, fc, "UPDATE items SET title = 'mine' WHERE id = 1")
	m := snapshot(20, ins(1, vInt(1), vText("s"), vInt(100)))
	m.Flags |= protocol.FlagReset
	m.Reset = []uint32{1}
	fc.send(m)
	waitLSN(t, c, 20)
	expectRows(t, c, [][]any{{int64(1), "mine", int64(100)}, {int64(7), "mine", int64(7)}})
}

// TestRebaseNothingPending: without outstanding local transactions the
// service's changes apply as sent and no rows are recorded.
func TestRebaseNothingPending(t *testing.T) {
	c, fc := rebaseSetup(t)
	fc.send(txn(11, upd(1, vInt(1), vText("srv"), vInt(100)), del(1, vInt(2))))
	waitLSN(t, c, 11)
	expectRows(t, c, [][]any{{int64(1), "srv", int64(100)}})
	if err := c.lock(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	rebase, rows := c.tx.rebase, len(c.tx.rows)
	c.unlock()
	if rebase || rows != 0 {
		t.Fatalf("rebase %v, %d rows recorded", rebase, rows)
	}
}

// TestRebaseLiveQuery: live queries see the rebased row, never the
// service's value of a column with a pending local write.
func TestRebaseLiveQuery(t *testing.T) {
	c, fc := rebaseSetup(t)
	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT title, n FROM items WHERE id = 1", nil, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{"a", int64(1)}}) {
		t.Fatalf("first %v", got)
	}
	w := localExec(t, c, fc, "UPDATE items SET title = 'mine' WHERE id = 1")
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{"mine", int64(1)}}) {
		t.Fatalf("after local write %v", got)
	}
	fc.send(txn(11, upd(1, vInt(1), vText("srv"), vInt(100))))
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{"mine", int64(100)}}) {
		t.Fatalf("after service update %v", got)
	}
	fc.send(own(c, w.TxnID, txn(12, upd(1, vInt(1), vText("mine"), vInt(100)))))
	waitLSN(t, c, 12)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rows := range r.calls {
		if r.errs[i] != nil {
			t.Fatalf("call %d: %v", i, r.errs[i])
		}
		for _, row := range rows.Values {
			if row[0] == "srv" {
				t.Fatalf("call %d showed the service's title: %v", i, rows.Values)
			}
		}
	}
}
