package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
)

func relKey(schema, table string) string { return schema + "." + table }

// process filters one transaction through the session's shapes and sends
// what the client must apply.
func (s *session) process(txn *changelog.Txn) error {
	if s.graph != nil {
		return s.processGraph(txn)
	}
	s.cursor = txn.LSN
	if len(s.byTable) == 0 {
		return nil
	}
	for _, shs := range s.byTable {
		for _, sh := range shs {
			if sh.snap != nil && txn.LSN > sh.snap.until {
				sh.snap = nil
			}
		}
	}
	w := txnWriter{s: s, lsn: txn.LSN, commitTime: txn.CommitTime, changes: s.changes[:0],
		origin: txn.Origin, clientTxnID: txn.ClientTxnID}
	defer func() { s.changes = w.changes[:0] }()
	truncatedAt, err := s.truncates(txn, &w)
	if err != nil {
		return err
	}
	// The client's own transaction returns every row it wrote: a row its
	// shapes do not hold (an insert or update out of them) moves out, or
	// the client would keep its local version for good.
	own := txn.ClientTxnID != 0 && txn.Origin == s.clientID
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		key := relKey(ch.Rel.Schema, ch.Rel.Table)
		shs := s.byTable[key]
		if len(shs) == 0 || ch.Op == changelog.OpTruncate {
			continue
		}
		if skip, err := s.skipRefused(key); skip || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		if at, ok := truncatedAt[key]; ok && i < at {
			continue // wiped by a later TRUNCATE in the same transaction
		}
		// Shapes whose initial snapshot already contains this transaction
		// must not apply it again: the client holds the snapshot's (newer)
		// version of their rows.
		ignoring, active := false, false
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				ignoring = true
			} else {
				active = true
			}
		}
		if ignoring {
			if !active || s.inSnapshot(shs, txn.Xid, ch) {
				continue
			}
		}
		var oldIn, newIn bool
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				continue
			}
			if err := s.follow(sh, ch.Rel); err != nil {
				return err
			}
			if !oldIn && ch.Old != nil && sh.match(ch.Old) {
				oldIn = true
			}
			if !newIn && ch.New != nil && sh.match(ch.New) {
				newIn = true
			}
		}
		rel := ch.Rel
		if own && !oldIn && !newIn {
			row := ch.New
			if row == nil {
				row = ch.Old
			}
			if row != nil {
				if err := w.add(protocol.OpMoveOut, rel, pkOf(rel, row)); err != nil {
					return err
				}
			}
			continue
		}
		switch ch.Op {
		case protocol.OpInsert:
			if newIn {
				if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
					return err
				}
			}
		case protocol.OpDelete:
			if oldIn && ch.Old != nil {
				if err := w.add(protocol.OpDelete, rel, pkOf(rel, ch.Old)); err != nil {
					return err
				}
			}
		case protocol.OpUpdate:
			if ch.Old == nil {
				// No old row: upsert or move out by the new key; both are safe.
				op, vals := protocol.OpUpdate, ch.New
				if !newIn {
					op, vals = protocol.OpMoveOut, pkOf(rel, ch.New)
				}
				if err := w.addVersion(op, rel, vals, ch.Version); err != nil {
					return err
				}
				continue
			}
			keyChanged := !samePK(rel, ch.Old, ch.New)
			switch {
			case keyChanged:
				if oldIn {
					if err := w.add(protocol.OpDelete, rel, pkOf(rel, ch.Old)); err != nil {
						return err
					}
				}
				if newIn {
					if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
						return err
					}
				}
			case newIn && oldIn:
				if err := w.addVersion(protocol.OpUpdate, rel, ch.New, ch.Version); err != nil {
					return err
				}
			case newIn:
				if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
					return err
				}
			case oldIn:
				if err := w.add(protocol.OpMoveOut, rel, pkOf(rel, ch.Old)); err != nil {
					return err
				}
			}
		}
	}
	if !w.started && len(w.changes) == 0 && len(w.reset) == 0 && !own {
		return nil // nothing for this client (its own writes always come back)
	}
	if err := w.finish(); err != nil {
		return err
	}
	s.sentLSN = txn.LSN
	s.lastPos = time.Now()
	return nil
}

// truncates finds TRUNCATEs of tables the session holds. A TRUNCATE wipes
// the table at its point in the transaction, so the client clears the table
// at the start of the transaction (FlagReset) and changes to the table
// before the last TRUNCATE are skipped; truncatedAt maps the table to the
// index of that TRUNCATE. A TRUNCATE that a shape's snapshot already saw is
// left to the snapshot.
func (s *session) truncates(txn *changelog.Txn, w *txnWriter) (truncatedAt map[string]int, err error) {
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		if ch.Op != changelog.OpTruncate {
			continue
		}
		key := relKey(ch.Rel.Schema, ch.Rel.Table)
		shs := s.byTable[key]
		if len(shs) == 0 {
			continue
		}
		seen := false
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				seen = true
			}
		}
		if seen {
			continue
		}
		if truncatedAt == nil {
			truncatedAt = map[string]int{}
		}
		truncatedAt[key] = i
		id, err := s.relID(ch.Rel)
		if err != nil {
			return nil, err
		}
		if !containsU32(w.reset, id) {
			w.reset = append(w.reset, id)
		}
	}
	return truncatedAt, nil
}

// inSnapshot reports whether the row a change touches was sent in the
// snapshot of a shape that already saw the change.
func (s *session) inSnapshot(shs []*shape, xid uint32, ch *changelog.Change) bool {
	for _, sh := range shs {
		if sh.snap == nil || !sh.snap.visible(xid) {
			continue
		}
		if sh.snapKeys == nil {
			return true // not tracked: the snapshot's version wins
		}
		for _, row := range [][]coltype.Value{ch.Old, ch.New} {
			if row != nil {
				if _, ok := sh.snapKeys[pkKey(ch.Rel, row)]; ok {
					return true
				}
			}
		}
	}
	return false
}

func pkKey(rel *changelog.Rel, row []coltype.Value) string {
	var b []byte
	for _, k := range rel.PK {
		b = protocol.AppendValue(b, row[k])
	}
	return string(b)
}

// follow makes the shape's predicate evaluate rows of rel: after a schema
// change (ALTER TABLE) the stream's rows have another layout, and the where
// clause is bound again to the new columns.
func (s *session) follow(sh *shape, rel *changelog.Rel) error {
	if rel == sh.rel {
		return nil
	}
	if catalog.SameRel(rel, sh.rel) {
		sh.rel = rel
		return nil
	}
	if sh.pred != nil {
		expr, err := where.ParseTable(sh.def.Where, rel.Schema, rel.Table, rel.Columns, len(sh.def.Params))
		if err == nil {
			sh.pred, err = expr.Bind(s.ctx, sh.def.Params, where.PGCoerce(s.svc.pool))
		}
		if err != nil {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q no longer fits table %s after a schema change: %v", sh.id, sh.key, err), true}
		}
	}
	s.log.Info("shape follows a schema change", "shape", sh.id, "table", sh.key)
	sh.rel = rel
	return nil
}

func (sh *shape) match(row []coltype.Value) bool {
	return sh.pred == nil || sh.pred.Match(row)
}

func pkOf(rel *changelog.Rel, row []coltype.Value) []coltype.Value {
	out := make([]coltype.Value, len(rel.PK))
	for i, k := range rel.PK {
		out[i] = row[k]
	}
	return out
}

func samePK(rel *changelog.Rel, a, b []coltype.Value) bool {
	for _, k := range rel.PK {
		if !a[k].Equal(b[k]) {
			return false
		}
	}
	return true
}

// relID returns the connection's id for rel, sending a Relation first when
// the client has not seen it, or when the last layout of the table it was
// sent is another one (after a schema change, the stream may still hold
// changes made before it): the client's table always has the layout of
// the changes it applies.
func (s *session) relID(rel *changelog.Rel) (uint32, error) {
	id, ok := s.relIDs[rel]
	if !ok {
		for known, kid := range s.relIDs {
			if catalog.SameRel(known, rel) {
				id, ok = kid, true
				s.relIDs[rel] = id // the same layout under another pointer
				break
			}
		}
	}
	if ok {
		if last := s.sentRel[relKey(rel.Schema, rel.Table)]; last == nil || last == rel || catalog.SameRel(last, rel) {
			return id, nil
		}
	} else {
		s.nextRel++
		id = s.nextRel
		s.relIDs[rel] = id
	}
	m := &protocol.Relation{RelID: id, Schema: rel.Schema, Table: rel.Table, Columns: rel.Columns, PK: rel.PK}
	if s.version >= 2 {
		m.ColumnIDs = s.columnIDs(rel)
	}
	if s.version >= 3 {
		m.Columns = s.jsonMergeColumns(rel)
	}
	s.described(rel)
	err := s.send(m)
	return id, err
}

// txnWriter splits one transaction into Txn chunks near TargetDownFrame.
type txnWriter struct {
	s          *session
	lsn        uint64
	flags      uint8 // extra flags on every chunk (FlagSnapshot)
	commitTime int64
	reset      []uint32
	changes    []protocol.Change
	// origin and clientTxnID name the client write this transaction applied.
	origin      string
	clientTxnID uint64
	size        int
	started     bool
}

func (w *txnWriter) add(op protocol.Op, rel *changelog.Rel, vals []coltype.Value) error {
	return w.addVersion(op, rel, vals, 0)
}

// addVersion adds a change carrying the row's version (Insert, Update).
func (w *txnWriter) addVersion(op protocol.Op, rel *changelog.Rel, vals []coltype.Value, version uint64) error {
	id, err := w.s.relID(rel)
	if err != nil {
		return err
	}
	w.changes = append(w.changes, protocol.Change{Op: op, RelID: id, Version: version, Values: vals})
	w.size += 4
	for i := range vals {
		w.size += 2 + len(vals[i].B)
		if vals[i].Kind == coltype.Integer || vals[i].Kind == coltype.Real {
			w.size += 8
		}
	}
	if w.size >= protocol.TargetDownFrame {
		return w.flush(0)
	}
	return nil
}

func (w *txnWriter) flush(last uint8) error {
	flags := w.flags | last
	m := &protocol.Txn{LSN: w.lsn, CommitTime: w.commitTime, Changes: w.changes,
		Origin: w.origin, ClientTxnID: w.clientTxnID}
	if !w.started {
		flags |= protocol.FlagFirst
		m.Reset = w.reset
		if len(w.reset) > 0 {
			flags |= protocol.FlagReset
		}
	}
	m.Flags = flags
	err := w.s.send(m)
	w.started = true
	clear(w.changes)
	w.changes = w.changes[:0]
	w.size = 0
	return err
}

func (w *txnWriter) finish() error { return w.flush(protocol.FlagLast) }

// xidSnapshot is a Postgres snapshot (pg_current_snapshot) used to drop
// streamed transactions that a shape's initial data already contains.
type xidSnapshot struct {
	xmin, xmax uint32
	xip        map[uint32]bool
	until      uint64 // transactions committed after this WAL position are never in it
}

// visible reports whether transaction xid had committed when the snapshot
// was taken (32-bit xids compared modulo 2^32, as Postgres does).
func (x *xidSnapshot) visible(xid uint32) bool {
	if int32(xid-x.xmin) < 0 {
		return true
	}
	if int32(xid-x.xmax) >= 0 {
		return false
	}
	return !x.xip[xid]
}

func parseSnapshot(s string) (*xidSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("parse snapshot %q", s)
	}
	xmin, err1 := strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("parse snapshot %q", s)
	}
	x := &xidSnapshot{xmin: uint32(xmin), xmax: uint32(xmax), xip: map[uint32]bool{}}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(p, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse snapshot %q", s)
			}
			x.xip[uint32(v)] = true
		}
	}
	return x, nil
}
