package client

import (
	"errors"
	"testing"
	"time"

	"github.com/latticesync/lattice/protocol"
)

// TestPushAckDrop: local transactions are sent in order as their net
// effect per row; an Ack marks them durable; their return through the
// stream drops them; a Reject is reported.
func TestPushAckDrop(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)))

	ctx := ctxT(t)
	err := c.Transaction(ctx, func(tx *Tx) error {
		for _, q := range []string{
			"INSERT INTO items VALUES (2, 'b', 2)",
			"UPDATE items SET n = 20 WHERE id = 2", // folds into the insert
			"UPDATE items SET title = 'A' WHERE id = 1",
			"UPDATE items SET n = 10 WHERE id = 1", // folds with the update
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
	w := fc.expectWrite()
	if w.TxnID != 1 || w.HLC == 0 || len(w.Changes) != 2 {
		t.Fatalf("write %+v", w)
	}
	ins2, upd1 := w.Changes[0], w.Changes[1]
	if ins2.Table != "public.items" || ins2.Op != protocol.OpInsert || len(ins2.Columns) != 3 || ins2.Values[2].I != 20 {
		t.Fatalf("insert change %+v", ins2)
	}
	if upd1.Op != protocol.OpUpdate || len(upd1.Columns) != 2 || upd1.Key[0].I != 1 {
		t.Fatalf("update change %+v", upd1)
	}
	if err := c.Exec(ctx, "DELETE FROM items WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if w2 := fc.expectWrite(); w2.TxnID != 2 || w2.Changes[0].Op != protocol.OpDelete {
		t.Fatalf("second write %+v", w2)
	}
	if c.PendingCount() != 2 {
		t.Fatalf("pending %d", c.PendingCount())
	}
	fc.send(&protocol.Ack{TxnID: 1})
	waitFor(t, func() bool { return c.PendingCount() == 1 })
	// Transaction 1 comes back through the stream: dropped from the oplog.
	back := txn(11, upd(1, vInt(1), vText("A"), vInt(10)), ins(1, vInt(2), vText("b"), vInt(20)))
	back.Origin, back.ClientTxnID = c.ClientID(), 1
	fc.send(back)
	waitLSN(t, c, 11)
	if n := query(t, c, "SELECT count(*) FROM _lattice_txns WHERE txid = 1"); n[0][0] != int64(0) {
		t.Fatalf("transaction 1 still in the oplog: %v", n)
	}
	fc.send(&protocol.Reject{TxnID: 2, Code: "check_violation", Message: "nope"})
	deadline := time.Now().Add(testTimeout)
	for {
		var rej *RejectedError
		if errors.As(c.Status().LastError, &rej) && rej.TxnID == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reject not reported: %v", c.Status().LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.PendingCount() != 0 {
		t.Fatalf("pending after reject %d", c.PendingCount())
	}
}

// TestAckedResentAfterLostReturn: the service answers a retried
// transaction it had applied before with an Ack and its rows as a
// transaction of its own, made up at the client's position (it is in no
// log). When that transaction is lost before the client commits it (the
// connection ends, or the client crashes, mid-transaction), the
// acknowledged transaction must be sent again on the next connection, or
// it stays outstanding forever, re-applied over every later change of its
// rows (found by the fault campaign, seed 1226, with
// client/before-apply-commit=exit#3).
func TestAckedResentAfterLostReturn(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")
	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)))
	if err := c.Exec(ctxT(t), "UPDATE items SET title = 'mine' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	w := fc.expectWrite()
	fc.send(&protocol.Ack{TxnID: w.TxnID})
	waitFor(t, func() bool { return c.PendingCount() == 0 })
	// Its rows, as that returned transaction, at the client's position:
	// the connection ends before its last chunk.
	back := &protocol.Txn{LSN: 10, Flags: protocol.FlagFirst, Origin: c.ClientID(), ClientTxnID: w.TxnID,
		Changes: []protocol.Change{upd(1, vInt(1), vText("mine"), vInt(1))}}
	fc.send(back)
	fc.kill()

	fc = fs.accept()
	fc.welcome("log1")
	sub := fc.expectSubscribe()
	fc.send(itemsRel(1), &protocol.Subscribed{ReqID: sub.ReqID, ShapeIDs: shapeIDs(sub)})
	again := fc.expectWrite()
	if again.TxnID != w.TxnID {
		t.Fatalf("resent transaction %d, want %d", again.TxnID, w.TxnID)
	}
	fc.send(&protocol.Ack{TxnID: w.TxnID})
	back.Flags = protocol.FlagFirst | protocol.FlagLast
	fc.send(back)
	waitFor(t, func() bool {
		n := query(t, c, "SELECT count(*) FROM _lattice_txns")
		return n[0][0] == int64(0)
	})
	// A later change of the row is no longer overridden by the local write.
	fc.send(txn(11, upd(1, vInt(1), vText("theirs"), vInt(1))))
	waitLSN(t, c, 11)
	if got := query(t, c, "SELECT title FROM items WHERE id = 1"); len(got) != 1 || got[0][0] != "theirs" {
		t.Fatalf("rows %v", got)
	}
}
