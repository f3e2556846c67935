package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/authz"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/writes"
)

// write applies a client transaction in Postgres (package writes) and
// answers Ack, or Reject when Postgres refuses it. Transactions of one
// client are applied in the order it sends them. A failure that is not the
// transaction's fault ends the session: the client reconnects and sends it
// again, and the service applies it at most once.
func (s *session) write(m *protocol.Write) error {
	if s.clientID == "" {
		return s.send(&protocol.Reject{TxnID: m.TxnID, Code: writes.CodeBadChange, Message: "writes need a client id in Hello"})
	}
	if err := s.remapChanges(m); err != nil {
		return err
	}
	txn := &writes.Txn{Origin: s.clientID, ID: m.TxnID, HLC: s.admitHLC(m), Changes: make([]writes.Change, len(m.Changes))}
	for i, c := range m.Changes {
		wc := writes.Change{Table: c.Table, Key: c.Key, Values: c.Values}
		if c.Version == protocol.VersionCurrent {
			wc.SeenLive = true // held at an unknown version
		} else {
			wc.BySeenVersion, wc.SeenVersion = true, c.Version
		}
		switch c.Op {
		case protocol.OpInsert:
			wc.Op = writes.Insert
		case protocol.OpUpdate:
			wc.Op = writes.Update
		case protocol.OpDelete:
			wc.Op = writes.Delete
		}
		if len(c.Columns) > 0 {
			wc.Set = make([]int, len(c.Columns))
			for j, col := range c.Columns {
				wc.Set[j] = int(col &^ protocol.ColumnJSONChanges)
				if col&protocol.ColumnJSONChanges == 0 {
					continue
				}
				// Per-path changes of a column merged per key.
				var chs []merge.JSONChange
				var err error
				if v := c.Values[j]; v.Kind != coltype.Text {
					err = errors.New("not text")
				} else {
					chs, err = merge.DecodeJSONChanges(v.B)
				}
				if err != nil {
					return s.send(&protocol.Reject{TxnID: m.TxnID, Code: writes.CodeBadChange,
						Message: fmt.Sprintf("change %d: column %d: bad JSON changes: %v", i, wc.Set[j], err)})
				}
				if wc.JSON == nil {
					wc.JSON = map[int][]merge.JSONChange{}
				}
				wc.JSON[wc.Set[j]] = chs
			}
		}
		txn.Changes[i] = wc
	}
	if s.acc != nil {
		txn.Role, txn.Claims, txn.Sub = s.acc.Role(), s.acc.Claims(), s.acc.Sub()
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	s.svc.metrics.writesApplying.Inc()
	started := time.Now()
	res, err := s.svc.applier.Apply(ctx, txn)
	s.svc.metrics.writeSeconds.Observe(time.Since(started).Seconds())
	s.svc.metrics.writesApplying.Dec()
	var rej *writes.Rejected
	switch {
	case err == nil && !res.Applied:
		// Applied before (a retry after a lost ack or a service crash).
		// Its own change may never come back to this client: it can lie
		// before the client's position (a client that re-synced past it).
		// So its rows follow the Ack, as Postgres holds them now, as that
		// returned transaction: the client drops it from its queue.
		s.svc.metrics.writes.WithLabelValues("duplicate").Inc()
		s.log.Debug("client transaction applied before", "txid", m.TxnID)
		if err := s.send(&protocol.Ack{TxnID: m.TxnID}); err != nil {
			return err
		}
		return s.restoreRows(m, true)
	case err == nil:
		s.svc.metrics.writes.WithLabelValues("applied").Inc()
		s.log.Debug("client transaction applied", "txid", m.TxnID)
		if err := failpoint.Hit("server/before-ack"); err != nil {
			return &clientError{protocol.ErrInternal, "could not acknowledge transaction: " + err.Error(), true}
		}
		return s.send(&protocol.Ack{TxnID: m.TxnID})
	case errors.As(err, &rej):
		s.svc.metrics.writes.WithLabelValues("rejected").Inc()
		s.log.Info("client transaction rejected", "txid", m.TxnID, "code", rej.Code, "reason", rej.Reason)
		if err := s.send(&protocol.Reject{TxnID: m.TxnID, Code: rej.Code, Message: rej.Error()}); err != nil {
			return err
		}
		return s.restoreRows(m, false)
	default:
		s.log.Error("apply client transaction", "txid", m.TxnID, "err", err)
		return &clientError{protocol.ErrInternal, "could not apply transaction: " + err.Error(), true}
	}
}

// admitHLC returns the HLC a client transaction is applied with: its own,
// unless it is more than MaxClockSkew ahead of the service's wall clock
// (merge.CapSkew), and always after the session's previous one.
func (s *session) admitHLC(m *protocol.Write) merge.HLC {
	h := merge.HLC(m.HLC)
	if h == 0 {
		return 0 // refused by the applier
	}
	limit := s.svc.cfg.MaxClockSkew
	now := time.Now()
	capped, ahead := merge.CapSkew(h, now.UnixMilli(), limit, s.lastHLC)
	s.lastHLC = capped
	s.svc.metrics.observeSkew(ahead)
	if limit > 0 && ahead > limit {
		s.svc.metrics.skewClamped.Inc()
		if now.Sub(s.skewWarned) >= time.Minute { // at most once a minute per connection
			s.skewWarned = now
			s.log.Warn("client clock is ahead of the service's: its transaction is stamped at the service's clock + the maximum skew",
				"txid", m.TxnID, "ahead", ahead.Round(time.Millisecond).String(), "max_clock_skew", limit.String(),
				"client_hlc", h.String(), "stamped", capped.String())
		}
	}
	return capped
}

// restoreRows follows a Reject with the rows the rejected transaction wrote,
// as Postgres holds them now, in one transaction at the session's position:
// the client replaces its local (rejected) versions with them, so the
// rejected effects are undone visibly. A row Postgres does not hold, or
// that none of the client's shapes holds, moves out. With returned, the
// transaction is sent as the client's own write coming back (Origin and
// ClientTxnID set; see the duplicate case of write), even when empty.
func (s *session) restoreRows(m *protocol.Write, returned bool) error {
	w := txnWriter{s: s, lsn: s.cursor, changes: s.changes[:0]}
	if returned {
		w.origin, w.clientTxnID = s.clientID, m.TxnID
	}
	defer func() { s.changes = w.changes[:0] }()
	// The rows are read after the session's position; they must hold
	// every transaction streamed up to it.
	if err := s.svc.waitVisible(s.ctx, s.cursor); err != nil {
		return fmt.Errorf("read rows of a transaction: %w", err)
	}
	for _, c := range m.Changes {
		tb, err := s.svc.tables.Lookup(s.ctx, c.Table)
		if err != nil || len(c.Key) != len(tb.Rel.PK) {
			continue // nothing of it can be local
		}
		rel := tb.Rel
		conds := make([]string, len(rel.PK))
		args := []any{pgx.QueryExecModeSimpleProtocol}
		ok := true
		for i, k := range rel.PK {
			txt, notNull, err := coltype.ToPGText(rel.Columns[k].Type, c.Key[i])
			if err != nil || !notNull {
				ok = false
				break
			}
			conds[i] = fmt.Sprintf("%s = $%d", catalog.QuoteIdent(rel.Columns[k].Name), i+1)
			args = append(args, txt)
		}
		if !ok {
			continue
		}
		vals, ver, err := s.readRow(tb, "SELECT "+catalog.ColumnList(rel)+" FROM "+tb.QualifiedSQL+
			" WHERE "+strings.Join(conds, " AND "), args)
		if err != nil {
			return fmt.Errorf("read rows of a rejected transaction: %w", err)
		}
		held := false
		if vals != nil && s.graph != nil {
			// A relational session knows what the client holds.
			held = s.graph.held[relKey(rel.Schema, rel.Table)][pkKey(rel, vals)] != nil
		} else if vals != nil {
			for _, sh := range s.byTable[relKey(rel.Schema, rel.Table)] {
				if err := s.follow(sh, rel); err == nil && sh.match(vals) {
					held = true
					break
				}
			}
		}
		if held {
			err = w.addVersion(protocol.OpUpdate, rel, vals, ver)
		} else {
			err = w.add(protocol.OpMoveOut, rel, c.Key)
		}
		if err != nil {
			return err
		}
	}
	if len(w.changes) == 0 && !w.started && !returned {
		return nil
	}
	return w.finish()
}

// readRow reads one row with its version. Under row-level security it is
// read as the user: a row the user may not read is not returned (its
// values must not reach the client, even in a rejection's restore).
func (s *session) readRow(tb *catalog.Table, q string, args []any) ([]coltype.Value, uint64, error) {
	if s.acc == nil {
		return s.queryRow(s.svc.pool, tb, versioned(tb, q), args)
	}
	tx, err := s.svc.pool.BeginTx(s.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback(context.Background())
	if err := authz.As(s.ctx, tx, s.acc.Role(), s.acc.Claims(), s.acc.Sub()); err != nil {
		return nil, 0, err
	}
	var visible bool
	if err := tx.QueryRow(s.ctx, "SELECT EXISTS ("+q+")", args...).Scan(&visible); err != nil {
		return nil, 0, err
	}
	if err := authz.Unset(s.ctx, tx); err != nil || !visible {
		return nil, 0, err
	}
	return s.queryRow(tx, tb, versioned(tb, q), args)
}

func (s *session) queryRow(q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, tb *catalog.Table, sql string, args []any) ([]coltype.Value, uint64, error) {
	rows, err := q.Query(s.ctx, sql, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var vals []coltype.Value
	var ver uint64
	for rows.Next() {
		if vals, ver, err = versionedRow(tb.Rel, rows.RawValues()); err != nil {
			return nil, 0, err
		}
	}
	return vals, ver, rows.Err()
}
