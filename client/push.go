package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
)

// maxInFlight bounds the local transactions sent and not yet acknowledged.
const maxInFlight = 64

// pusher sends pending local transactions in txid order while the session
// lasts: at start, and after every commit that stamped new ones or an Ack
// that freed room.
func (s *session) pusher() {
	c := s.c
	for {
		if err := c.lock(s.ctx); err != nil {
			return
		}
		err := c.pushLocked(s)
		c.unlock()
		if err != nil {
			s.abort(fmt.Errorf("send local transactions: %w", err))
			return
		}
		select {
		case <-c.loc.ready:
		case <-s.pushWake:
		case <-s.ctx.Done():
			return
		}
	}
}

// pushLocked sends the pending transactions after the last one sent on
// this session. Caller holds db.
func (c *Client) pushLocked(s *session) error {
	if !s.ready || len(s.inFlight) >= maxInFlight || s.awaitingWelcomeAnswers() {
		return nil
	}
	txns, err := c.unsentTxns(s.sentTxn, maxInFlight-len(s.inFlight))
	if err != nil {
		return err
	}
	for _, t := range txns {
		if t.ID <= s.sentTxn {
			continue
		}
		if len(s.inFlight) >= maxInFlight {
			break
		}
		w, err := c.writeMessage(t)
		if err != nil {
			return err
		}
		if c.trace {
			for _, ch := range w.Changes {
				c.log.Debug("lattice: trace send", "txid", t.ID, "op", ch.Op.String(), "table", ch.Table,
					"key", fmtValues(ch.Key), "columns", ch.Columns, "values", fmtValues(ch.Values), "version", ch.Version)
			}
		}
		if err := failpoint.Hit("client/before-send"); err != nil {
			return err
		}
		s.send(w)
		s.sentTxn = t.ID
		s.inFlight[t.ID] = struct{}{}
	}
	return nil
}

// awaitingWelcomeAnswers reports whether a Subscribe sent on Welcome is
// unanswered: the service describes the tables first (a Relation with
// their columns now), and writes index columns by that description.
func (s *session) awaitingWelcomeAnswers() bool {
	for id, req := range s.pending {
		if id <= s.welcomeReq && !req.unsub {
			return true
		}
	}
	return false
}

// rowKey identifies a row within one transaction.
func rowKey(table string, key []coltype.Value) string {
	var b []byte
	b = append(b, table...)
	b = append(b, 0)
	for _, v := range key {
		b = protocol.AppendValue(b, v)
	}
	return string(b)
}

// writeMessage turns a local transaction into a Write: the net effect of
// the transaction on each row, in the order rows were first written.
//
// A column merged per key path that the net effect updates (the row was
// not inserted by the transaction) and whose value before the transaction
// was captured is sent as the per-path diff of that value and the new one
// (protocol.ColumnJSONChanges; see jsonWrites).
func (c *Client) writeMessage(t LocalTxn) (*protocol.Write, error) {
	w := &protocol.Write{TxnID: t.ID, HLC: uint64(t.HLC)}
	idx := map[string]int{}
	// bases[i][col]: the value of col before the transaction, for the
	// columns of w.Changes[i] merged per key path.
	var bases map[int]map[int]coltype.Value
	addBases := func(i int, wc *protocol.WriteChange, ch *LocalChange) {
		for col, old := range ch.jsonOld {
			if wc.Op != protocol.OpUpdate || slices.Contains(wc.Columns, uint32(col)) {
				continue // written before in the transaction: its base is known, or unknown
			}
			if bases == nil {
				bases = map[int]map[int]coltype.Value{}
			}
			if bases[i] == nil {
				bases[i] = map[int]coltype.Value{}
			}
			bases[i][col] = old
		}
	}
	for _, ch := range t.Changes {
		k := rowKey(ch.Table, ch.Key)
		i, seen := idx[k]
		if !seen {
			// The net effect carries the version the row's first change
			// in the transaction saw: the one held before it.
			idx[k] = len(w.Changes)
			w.Changes = append(w.Changes, protocol.WriteChange{Table: ch.Schema + "." + ch.Name, Key: ch.Key, Version: wireVersion(ch.Version)})
			i = len(w.Changes) - 1
		}
		wc := &w.Changes[i]
		op, err := wireOp(ch.Op)
		if err != nil {
			return nil, err
		}
		switch {
		case !seen, op == protocol.OpDelete:
			wc.Op = op
			wc.Columns, wc.Values = nil, nil
			delete(bases, i)
			addBases(i, wc, &ch)
			setColumns(wc, ch.Columns, ch.Values)
		case op == protocol.OpInsert: // after a delete (or a REPLACE): the whole row anew
			wc.Op = protocol.OpInsert
			wc.Columns, wc.Values = nil, nil
			delete(bases, i)
			setColumns(wc, ch.Columns, ch.Values)
		default: // an update after an insert or an update
			if wc.Op == protocol.OpDelete {
				wc.Op = protocol.OpInsert // cannot happen: a deleted row cannot be updated
			}
			addBases(i, wc, &ch)
			setColumns(wc, ch.Columns, ch.Values)
		}
	}
	for i, b := range bases {
		c.jsonWrites(&w.Changes[i], b)
	}
	// An update that changed no column still asserts the row exists.
	return w, nil
}

// jsonWrites turns the writes of wc to columns merged per key path whose
// value before the transaction is in base into per-path changes: the diff
// of the old and the new document (merge.DiffJSON; arrays and scalars are
// whole values), as protocol.ColumnJSONChanges. A value that is not JSON
// text (nor NULL), before or after, stays a whole value: the service
// refuses it as for any JSON column.
func (c *Client) jsonWrites(wc *protocol.WriteChange, base map[int]coltype.Value) {
	doc := func(v coltype.Value) ([]byte, bool) {
		switch v.Kind {
		case coltype.Null:
			return nil, true
		case coltype.Text:
			if v.B == nil {
				return []byte{}, true
			}
			return v.B, true
		}
		return nil, false
	}
	for k, col := range wc.Columns {
		old, ok := base[int(col)]
		if !ok || col&protocol.ColumnJSONChanges != 0 {
			continue
		}
		od, ok1 := doc(old)
		nd, ok2 := doc(wc.Values[k])
		if !ok1 || !ok2 {
			continue
		}
		changes, err := merge.DiffJSON(od, nd)
		if err != nil {
			c.log.Debug("lattice: a column merged per key path is sent whole: not a JSON document", "table", wc.Table, "column", col, "err", err)
			continue
		}
		wc.Columns[k] = col | protocol.ColumnJSONChanges
		wc.Values[k] = coltype.Value{Kind: coltype.Text, B: merge.AppendJSONChanges(nil, changes)}
	}
}

// setColumns merges written columns into wc (later values win).
func setColumns(wc *protocol.WriteChange, cols []int, vals []coltype.Value) {
	for j, col := range cols {
		found := false
		for k, have := range wc.Columns {
			if int(have) == col {
				wc.Values[k] = vals[j]
				found = true
				break
			}
		}
		if !found {
			wc.Columns = append(wc.Columns, uint32(col))
			wc.Values = append(wc.Values, vals[j])
		}
	}
}

// wireVersion maps LocalChange.Version to WriteChange.Version.
func wireVersion(v int64) uint64 {
	if v < 0 {
		return protocol.VersionCurrent
	}
	return uint64(v)
}

func wireOp(op byte) (protocol.Op, error) {
	switch op {
	case 'I':
		return protocol.OpInsert, nil
	case 'U':
		return protocol.OpUpdate, nil
	case 'D':
		return protocol.OpDelete, nil
	}
	return 0, fmt.Errorf("unknown local op %q", op)
}

// handleAck marks a sent transaction durable in Postgres. It stays in the
// oplog until its effects come back through the stream. Caller holds db.
func (c *Client) handleAck(s *session, m *protocol.Ack) error {
	if _, ok := s.inFlight[m.TxnID]; !ok {
		return fmt.Errorf("handle Ack: transaction %d was not sent on this connection", m.TxnID)
	}
	delete(s.inFlight, m.TxnID)
	if err := c.ackTxn(m.TxnID); err != nil && !errors.Is(err, errNoTxn) {
		return err
	}
	s.wakePusher()
	return nil
}

// handleReject records that Postgres refused a transaction: its ops are no
// longer re-applied over the service's changes, and the service follows
// the Reject with the rows the transaction wrote as Postgres holds them,
// which replace the local ones (undoing its effects). The reason is
// reported through Status.LastError and RejectedTxns.
func (c *Client) handleReject(s *session, m *protocol.Reject) error {
	delete(s.inFlight, m.TxnID)
	c.log.Warn("lattice: local transaction rejected", "txid", m.TxnID, "code", m.Code, "message", m.Message)
	if err := c.rejectTxn(m.TxnID, m.Code+": "+m.Message); err != nil && !errors.Is(err, errNoTxn) {
		return err
	}
	rej := &RejectedError{TxnID: m.TxnID, Code: m.Code, Message: m.Message}
	s.post = append(s.post, func(st *Status) { st.LastError = rej })
	s.wakePusher()
	return nil
}

// RejectedError reports a local transaction that the service refused.
type RejectedError struct {
	TxnID   uint64
	Code    string
	Message string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("local transaction %d rejected: %s: %s", e.TxnID, e.Code, e.Message)
}

func (s *session) wakePusher() {
	select {
	case s.pushWake <- struct{}{}:
	default:
	}
}

// ownTxnReturned drops a local transaction whose effects came back through
// the stream (inside the transaction applying them). Caller holds db.
func (c *Client) ownTxnReturned(id uint64) error {
	err := c.dropTxn(id)
	if err != nil && (errors.Is(err, errNoTxn) || strings.Contains(err.Error(), "no such")) {
		return nil
	}
	return err
}
