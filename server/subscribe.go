package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
)

// prepare validates shape requests: electrified tables, valid where clauses
// bound to their parameters.
func (s *session) prepare(reqs []protocol.Shape) ([]*shape, error) {
	if len(reqs) == 0 {
		return nil, &clientError{protocol.ErrBadShape, "no shapes in Subscribe", false}
	}
	if len(s.shapes)+len(reqs) > s.svc.cfg.MaxShapesPerConn {
		return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("too many shapes on one connection (limit %d)", s.svc.cfg.MaxShapesPerConn), false}
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
		if old, ok := s.shapes[r.ID]; ok && !sameShape(old.def, sh.def) {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q is already subscribed with another definition", r.ID), false}
		}
		out = append(out, sh)
	}
	return out, nil
}

func sameShape(a, b protocol.Shape) bool {
	if a.Table != b.Table || a.Where != b.Where || len(a.Params) != len(b.Params) {
		return false
	}
	for i := range a.Params {
		if (a.Params[i] == nil) != (b.Params[i] == nil) || (a.Params[i] != nil && *a.Params[i] != *b.Params[i]) {
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
			s.reader = s.svc.clog.Reader(s.cursor)
		}
		for _, sh := range fresh {
			s.addShape(sh)
		}
		return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
	}
	reset := s.resync
	s.resync = false
	// Every non-resume Subscribe gets exactly one snapshot transaction (empty
	// when its shapes are already live), so clients can tie it to the request.
	if err := s.snapshot(fresh, reset); err != nil {
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
func (s *session) snapshot(shapes []*shape, reset bool) error {
	l := s.svc.clog
	h := l.Head()
	if s.reader == nil || len(s.shapes) == 0 {
		if s.reader != nil {
			s.reader.Close()
		}
		s.reader = l.Reader(h)
		s.cursor = h
	} else if err := s.catchUp(h); err != nil {
		return err
	}
	tx, err := s.svc.pool.BeginTx(s.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	defer tx.Rollback(context.Background())
	var snapText, insertLSN string
	if err := tx.QueryRow(s.ctx, "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text").Scan(&snapText, &insertLSN); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	snap, err := parseSnapshot(snapText)
	if err != nil {
		return err
	}
	if lsn, err := parseLSN(insertLSN); err == nil {
		snap.until = lsn
	}
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
	rows, err := tx.Query(s.ctx, q, args...)
	if err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals, err := rowValues(rel, rows.RawValues())
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", sh.key, err)
		}
		if err := w.add(protocol.OpInsert, rel, vals); err != nil {
			return err
		}
		if sh.snapKeys != nil {
			sh.snapKeys[pkKey(rel, vals)] = struct{}{}
		}
		n++
		if max := s.svc.cfg.MaxSnapshotRows; max > 0 && n > max {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q has more than %d rows (the service's limit)", sh.id, max), w.started}
		}
	}
	if err := rows.Err(); err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	return nil
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
