package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/limits"
	"github.com/latticesync/lattice/server/where"
)

// prepare validates shape requests: electrified tables, valid where clauses
// bound to their parameters.
func (s *session) prepare(reqs []protocol.Shape) ([]*shape, error) {
	if len(reqs) == 0 {
		return nil, &clientError{protocol.ErrBadShape, "no shapes in Subscribe", false}
	}
	// Shapes already live on this connection (a repeated Subscribe) do
	// not count twice.
	fresh := 0
	for i := range reqs {
		if _, ok := s.shapes[reqs[i].ID]; !ok {
			fresh++
		}
	}
	if max := s.svc.cfg.MaxShapesPerConn; max > 0 && len(s.shapes)+fresh > max {
		return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("too many shapes on one connection: %d live and %d more asked for, more than the service's limit of %d (--max-shapes)", len(s.shapes), fresh, max), false}
	}
	// The limits first: a shape over them costs no lookup, no parse.
	lim := s.svc.shapeLimits()
	for i := range reqs {
		if err := limits.Check(&reqs[i], lim); err != nil {
			return nil, &clientError{protocol.ErrBadShape, err.Error(), false}
		}
	}
	out := make([]*shape, 0, len(reqs))
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.ID == "" {
			return nil, &clientError{protocol.ErrBadShape, "shape without an id", false}
		}
		if seen[r.ID] {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q appears twice", r.ID), false}
		}
		seen[r.ID] = true
		tb, err := s.svc.tables.Lookup(s.ctx, r.Table)
		if err != nil {
			if errors.Is(err, catalog.ErrUnknownTable) || errors.Is(err, catalog.ErrNotElectrified) {
				return nil, &clientError{protocol.ErrUnknownTable, fmt.Sprintf("shape %q: %v", r.ID, err), false}
			}
			return nil, fmt.Errorf("look up %s: %w", r.Table, err)
		}
		sh := &shape{id: r.ID, table: tb, key: relKey(tb.Rel.Schema, tb.Rel.Table), def: r, rel: tb.Rel}
		if strings.TrimSpace(r.Where) != "" {
			expr, err := where.ParseTable(r.Where, tb.Rel.Schema, tb.Rel.Table, tb.Rel.Columns, len(r.Params))
			if err != nil {
				return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: where: %v", r.ID, err), false}
			}
			pred, err := expr.Bind(s.ctx, r.Params, where.PGCoerce(s.svc.pool))
			if err != nil {
				var we *where.Error
				if errors.As(err, &we) {
					return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: where: %v", r.ID, err), false}
				}
				return nil, fmt.Errorf("bind shape %q: %w", r.ID, err)
			}
			sh.pred = pred
			sh.def.Where = expr.SQL()
		} else if len(r.Params) > 0 {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q has params but no where clause", r.ID), false}
		}
		if err := s.shapeTree(sh); err != nil {
			return nil, err
		}
		if err := s.readableTree(sh); err != nil {
			return nil, err
		}
		if old, ok := s.shapes[r.ID]; ok && !sameShape(old.def, sh.def) {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q is already subscribed with another definition", r.ID), false}
		}
		out = append(out, sh)
	}
	return out, nil
}

// shapeTree builds the nodes of a shape's includes and finds out whether
// the shape is flat (one table without includes or foreign keys).
func (s *session) shapeTree(sh *shape) error {
	g := s.graph
	if g == nil {
		g = s.pending
		if g == nil {
			g = newGraph(s)
			s.pending = g
		}
	}
	if err := s.buildTree(g, sh); err != nil {
		return err
	}
	if len(sh.def.Include) == 0 && s.acc == nil {
		// Under row-level security every shape is relational: the graph
		// knows what the client holds, so access changes can move rows
		// out exactly.
		fks, err := s.foreignKeys(s.ctx, sh.table.OID)
		if err != nil {
			return err
		}
		sh.flat = true
		for _, d := range fks {
			if d.child == sh.table.OID {
				sh.flat = false
			}
		}
	}
	return nil
}

func sameShape(a, b protocol.Shape) bool {
	if a.Table != b.Table || a.Where != b.Where || !sameParams(a.Params, b.Params) {
		return false
	}
	return sameIncludes(a.Include, b.Include)
}

func sameParams(a, b []*string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || (a[i] != nil && *a[i] != *b[i]) {
			return false
		}
	}
	return true
}

func sameIncludes(a, b []protocol.Include) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Table != y.Table || x.Via != y.Via || x.Where != y.Where || !sameParams(x.Params, y.Params) || !sameIncludes(x.Include, y.Include) {
			return false
		}
	}
	return true
}

func (s *session) addShape(sh *shape) {
	if _, ok := s.shapes[sh.id]; ok {
		return
	}
	s.shapes[sh.id] = sh
	s.byTable[sh.key] = append(s.byTable[sh.key], sh)
	s.svc.metrics.shapes.Inc()
}

func (s *session) subscribe(m *protocol.Subscribe) error {
	shapes, err := s.prepare(m.Shapes)
	s.pending = nil
	if err == nil && (s.graph != nil || !allFlat(shapes)) {
		return s.subscribeGraph(m, shapes)
	}
	if err != nil {
		var ce *clientError
		if errors.As(err, &ce) {
			return s.sendErr(m.ReqID, ce.code, ce.msg, false)
		}
		s.log.Error("subscribe failed", "err", err)
		return s.sendErr(m.ReqID, protocol.ErrInternal, err.Error(), false)
	}
	ids := make([]string, len(shapes))
	for i, sh := range shapes {
		ids[i] = sh.id
	}
	// Shapes already live on this connection need nothing more.
	var fresh []*shape
	for _, sh := range shapes {
		if _, ok := s.shapes[sh.id]; !ok {
			fresh = append(fresh, sh)
		}
	}
	if m.Resume && !s.resync {
		if s.reader == nil {
			s.reader = s.clog.Cursor(s.cursor)
		}
		for _, sh := range fresh {
			s.addShape(sh)
			// The table as it is now, before any write of the client's is
			// read (they index its columns): a schema change made while
			// the client was away reaches it first.
			if _, err := s.relID(sh.table.Rel); err != nil {
				return err
			}
		}
		return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
	}
	reset := s.resync
	s.resync = false
	// Every non-resume Subscribe gets exactly one snapshot transaction (empty
	// when its shapes are already live), so clients can tie it to the request.
	if err := s.snapshot(fresh, reset, nil); err != nil {
		var ce *clientError
		if errors.As(err, &ce) && !ce.fatal {
			return s.sendErr(m.ReqID, ce.code, ce.msg, false)
		}
		return err
	}
	return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
}

// snapshot sends the initial data of shapes from one consistent Postgres
// snapshot, at a point of the session's stream where nothing is lost or
// applied twice: the session first streams its existing shapes up to the
// log head H read before the snapshot; the snapshot's rows are then sent as
// a transaction at H; later transactions that the snapshot already saw
// (by xid) are not applied again for these shapes.
func (s *session) snapshot(shapes []*shape, reset bool, extraReset []*changelog.Rel) error {
	l := s.clog
	h := l.Head()
	if s.reader == nil || len(s.shapes) == 0 {
		if s.reader != nil {
			s.reader.Close()
		}
		s.reader = l.Cursor(h)
		s.cursor = h
	} else if err := s.catchUp(h); err != nil {
		return err
	}
	tx, snap, err := s.svc.snapshotAt(s.ctx, s.cursor)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	w := txnWriter{s: s, lsn: s.cursor, flags: protocol.FlagSnapshot}
	if reset {
		// The client lost its position: it deletes the rows of every table it
		// holds before applying this snapshot of all its shapes.
		for _, sh := range shapes {
			id, err := s.relID(sh.table.Rel)
			if err != nil {
				return err
			}
			if !containsU32(w.reset, id) {
				w.reset = append(w.reset, id)
			}
		}
		for _, rel := range extraReset {
			id, err := s.relID(rel)
			if err != nil {
				return err
			}
			if !containsU32(w.reset, id) {
				w.reset = append(w.reset, id)
			}
		}
	}
	for _, sh := range shapes {
		if len(s.byTable[sh.key]) > 0 {
			sh.snapKeys = map[string]struct{}{}
		}
		// The client creates the table even when the shape has no rows yet.
		if _, err := s.relID(sh.table.Rel); err != nil {
			return err
		}
		if err := s.snapshotShape(tx, &w, sh); err != nil {
			return err
		}
	}
	if err := w.finish(); err != nil {
		return err
	}
	if err := tx.Commit(s.ctx); err != nil {
		return fmt.Errorf("end snapshot: %w", err)
	}
	s.sentLSN = s.cursor
	s.lastPos = time.Now()
	for _, sh := range shapes {
		sh.snap = snap
		s.addShape(sh)
	}
	return nil
}

func allFlat(shapes []*shape) bool {
	for _, sh := range shapes {
		if !sh.flat {
			return false
		}
	}
	return true
}

// subscribeGraph serves a Subscribe on a session with relational shapes.
// A session turns relational with its first shape that has includes or
// foreign keys; its single-table shapes then join the graph, and the
// client's rows are replaced by one snapshot of all its shapes. A resume
// is also served with such a snapshot: the service keeps no state between
// connections, and what a client holds of a relational shape depends on
// rows the stream does not show.
func (s *session) subscribeGraph(m *protocol.Subscribe, shapes []*shape) error {
	ids := make([]string, len(shapes))
	var fresh []*shape
	for i, sh := range shapes {
		ids[i] = sh.id
		if _, ok := s.shapes[sh.id]; !ok {
			fresh = append(fresh, sh)
		}
	}
	reset := s.resync || m.Resume || (s.graph == nil && len(s.shapes) > 0)
	if m.Resume && !s.resync && s.reader == nil {
		// The snapshot replaces the client's rows, but the transactions
		// the client wrote itself since its position must still come
		// back to it (as empty transactions naming their origin), or it
		// would wait for them forever.
		s.reader = s.clog.Cursor(s.cursor)
		if s.graph == nil {
			s.graph = newGraph(s)
		}
		if err := s.catchUp(s.clog.Head()); err != nil {
			return err
		}
	}
	s.resync = false
	for _, sh := range fresh {
		s.addShape(sh)
	}
	todo, err := s.attachGraph(fresh, reset)
	if err == nil {
		err = s.snapshotGraph(todo, reset, nil)
	}
	if err != nil {
		var ce *clientError
		if !errors.As(err, &ce) || ce.fatal {
			return err
		}
		// Nothing was sent: take the fresh shapes back out.
		for _, sh := range fresh {
			if s.graph != nil && sh.root != nil && sh.root.members != nil {
				if err := s.graph.detach(sh); err != nil {
					return err
				}
			}
			s.removeShape(sh)
		}
		if reset && len(s.shapes) > 0 {
			todo, err := s.attachGraph(nil, true)
			if err == nil {
				err = s.snapshotGraph(todo, true, nil)
			}
			if err != nil {
				if errors.As(err, &ce) {
					ce.fatal = true
				}
				return err
			}
		}
		return s.sendErr(m.ReqID, ce.code, ce.msg, false)
	}
	return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
}

// attachGraph adds fresh shapes (already in s.shapes) to the graph and
// returns the shapes to snapshot. With reset, or when the session has no
// graph yet, the graph is built anew from all shapes and all are returned.
func (s *session) attachGraph(fresh []*shape, reset bool) ([]*shape, error) {
	if s.graph != nil && !reset {
		for _, sh := range fresh {
			if err := s.graph.attach(sh); err != nil {
				return nil, err
			}
		}
		return fresh, nil
	}
	all := make([]*shape, 0, len(s.shapes))
	for _, sh := range s.shapes {
		all = append(all, sh)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].id < all[j].id })
	if s.graph != nil {
		s.graph.drop()
	}
	g := newGraph(s)
	s.graph = g
	for _, sh := range all {
		if err := s.buildTree(g, sh); err != nil {
			return nil, err
		}
		if err := g.attach(sh); err != nil {
			return nil, err
		}
	}
	return all, nil
}

func (s *session) removeShape(sh *shape) {
	if _, ok := s.shapes[sh.id]; !ok {
		return
	}
	delete(s.shapes, sh.id)
	list := s.byTable[sh.key]
	for i, x := range list {
		if x == sh {
			s.byTable[sh.key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(s.byTable[sh.key]) == 0 {
		delete(s.byTable, sh.key)
	}
	s.svc.metrics.shapes.Dec()
}

// unsubscribe drops shapes. The rows no remaining shape holds move out, in
// one transaction at the current stream position, followed by Subscribed
// with the request's id and the dropped shape ids. Unknown ids are ignored.
func (s *session) unsubscribe(m *protocol.Unsubscribe) error {
	var gone []*shape
	for _, id := range m.ShapeIDs {
		if sh := s.shapes[id]; sh != nil {
			gone = append(gone, sh)
		}
	}
	switch {
	case len(gone) == 0:
	case s.graph != nil:
		w := txnWriter{s: s, lsn: s.cursor, flags: protocol.FlagSnapshot}
		s.graph.w = &w
		for _, sh := range gone {
			if err := s.graph.detach(sh); err != nil {
				return err
			}
			s.removeShape(sh)
		}
		s.graph.flush()
		if err := w.finish(); err != nil {
			return err
		}
		s.sentLSN = s.cursor
		s.lastPos = time.Now()
	default:
		// Single-table shapes keep no state: the client clears their
		// tables and gets the rows of the remaining shapes on them again.
		var rels []*changelog.Rel
		tables := map[string]bool{}
		for _, sh := range gone {
			s.removeShape(sh)
			if !tables[sh.key] {
				tables[sh.key] = true
				rels = append(rels, sh.rel)
			}
		}
		var again []*shape
		for _, sh := range s.shapes {
			if tables[sh.key] {
				again = append(again, sh)
			}
		}
		sort.Slice(again, func(i, j int) bool { return again[i].id < again[j].id })
		if err := s.snapshot(again, true, rels); err != nil {
			return err
		}
	}
	ids := make([]string, len(gone))
	for i, sh := range gone {
		ids[i] = sh.id
	}
	return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
}

func containsU32(xs []uint32, x uint32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *session) snapshotShape(tx pgx.Tx, w *txnWriter, sh *shape) error {
	rel := sh.table.Rel
	q := "SELECT " + catalog.ColumnList(rel) + " FROM " + sh.table.QualifiedSQL
	args := []any{pgx.QueryExecModeSimpleProtocol}
	if sh.pred != nil {
		q += " WHERE (" + sh.def.Where + ")"
		for _, p := range sh.def.Params {
			if p == nil {
				args = append(args, nil)
			} else {
				args = append(args, *p)
			}
		}
	}
	rows, err := tx.Query(s.ctx, versioned(sh.table, q)+snapshotOrder(rel), args...)
	if err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals, ver, err := versionedRow(rel, rows.RawValues())
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", sh.key, err)
		}
		if err := w.addVersion(protocol.OpInsert, rel, vals, ver); err != nil {
			return err
		}
		if sh.snapKeys != nil {
			sh.snapKeys[pkKey(rel, vals)] = struct{}{}
		}
		n++
		if err := s.rows.Take(s.ctx, 1); err != nil {
			return fmt.Errorf("snapshot %s: %w", sh.key, err)
		}
		if max := s.svc.cfg.MaxSnapshotRows; max > 0 && n > max {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q has more than %d rows (the service's limit)", sh.id, max), w.started}
		}
	}
	if err := rows.Err(); err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	return nil
}

// snapshotOrder is the ORDER BY of a snapshot query (on versioned's "r"):
// the primary key, in the order SQLite keeps the local key, when each key
// column is an integer, a uuid (its text form sorts as its bytes) or text
// (compared bytewise, COLLATE "C", as SQLite's BINARY); "" otherwise. Rows
// in key order make the client's inserts appends to its key index: with
// random keys (uuid) in heap order, each insert descended to a random leaf
// of the index B-tree, past SQLite's page cache (2 MiB): `lattice
// replicate` of 100,000 uuid rows took 1.25 s of CPU (bigint 0.57), of
// 1,000,000 31.6 s (bigint 4.7); in key order 0.68 and 8.4 s
// (bench/initial-sync.sh, BENCHMARKS.md). Postgres pays a sort (or an
// index scan) instead. Only a speed-up: the client applies rows in any
// order.
func snapshotOrder(rel *changelog.Rel) string {
	var b strings.Builder
	for _, k := range rel.PK {
		c := rel.Columns[k]
		if c.Type.Array {
			return ""
		}
		b.WriteString(", r.")
		b.WriteString(catalog.QuoteIdent(c.Name))
		switch c.Type.Base {
		case coltype.Int2, coltype.Int4, coltype.Int8, coltype.UUID:
		case coltype.TextType:
			b.WriteString(` COLLATE "C"`)
		default:
			return ""
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return " ORDER BY " + b.String()[2:]
}

// snapshotErr reports a failed snapshot query. Once part of the snapshot
// was sent the error is fatal: the client rolls the partial transaction back.
func (s *session) snapshotErr(sh *shape, err error, sent bool) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: %s", sh.id, pgErr.Message), sent}
	}
	return fmt.Errorf("snapshot %s: %w", sh.key, err)
}

func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse lsn %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse lsn %q", s)
	}
	return h<<32 | l, nil
}

// rowValues converts a row read in text format (a query of rel's columns
// under coltype.SessionParams) to values.
func rowValues(rel *changelog.Rel, raw [][]byte) ([]coltype.Value, error) {
	vals := make([]coltype.Value, len(raw))
	for i, b := range raw {
		if b == nil {
			continue
		}
		v, err := coltype.FromPGText(rel.Columns[i].Type, b)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", rel.Columns[i].Name, err)
		}
		vals[i] = v
	}
	return vals, nil
}
