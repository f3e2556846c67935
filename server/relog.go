package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
)

// The replication slot lost while the service runs.
//
// An operator may drop the slot (pg_drop_replication_slot, once its
// walsender is terminated), or Postgres may invalidate it. A new slot
// starts at the current WAL position: the transactions committed between
// the end of the change log and that position are never streamed. The log
// cannot go on (a client resuming from it would silently miss them), so the
// service starts a new change log, with a new id, on a new slot, and
// every session is told to re-sync: its client reconnects, its Hello
// names the old log, and its shapes are sent again from a snapshot taken
// after the new slot exists, which holds the transactions of the gap. This
// is what a restart of the service does when it finds the slot missing
// (openLog); here it happens without one.

// logState is the change log and the slot it is fed from.
type logState struct {
	log  changelog.Store
	slot string
}

// errStale ends a session whose change log was replaced.
func errStale() error {
	return &clientError{protocol.ErrResync, "the service started a new change log (its replication slot was lost); reconnect to re-sync", true}
}

// restartLog replaces the change log of cur, whose slot is gone (cause),
// by a new one on a new slot, and tells the sessions to re-sync. On error
// nothing has changed: the caller retries later.
func (s *Service) restartLog(ctx context.Context, cur *logState, cause error) error {
	old := cur.log
	s.metrics.slotLost.Inc()
	if s.cfg.LogURL != "" {
		// A shared log is not this replica's to replace: an operator
		// removes the stream (every replica then starts a new one).
		s.log.Error("replication slot lost while the service ran: the changes since the change log's end are not in the stream, and a JetStream log is not replaced automatically; delete the stream (nats stream rm) and restart the service replicas, every client then re-syncs",
			"slot", cur.slot, "stream", s.cfg.LogStream, "log_id", old.ID(), "log_end_lsn", pglogrepl.LSN(old.EndLSN()).String(), "err", cause)
		return fmt.Errorf("%w: replication slot %s is gone and the JetStream log %s cannot continue: delete the stream and restart", ErrConfig, cur.slot, s.cfg.LogStream)
	}
	s.log.Error("replication slot lost while the service ran (dropped by an operator, or invalidated): the changes since the change log's end are not in the stream; starting a new change log on a new slot, every client re-syncs its shapes",
		"slot", cur.slot, "log_id", old.ID(), "log_end_lsn", pglogrepl.LSN(old.EndLSN()).String(), "err", cause)
	dir := filepath.Join(s.cfg.DataDir, "log")
	aside := dir + ".orphaned-" + time.Now().UTC().Format("20060102T150405.000")
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("move change log aside: %w", err)
	}
	undo := func(err error) error {
		os.RemoveAll(dir)
		if rerr := os.Rename(aside, dir); rerr != nil {
			return errors.Join(err, fmt.Errorf("move change log back: %w", rerr))
		}
		return err
	}
	l, err := changelog.Open(dir, &changelog.Options{MaxBytes: s.cfg.LogMaxBytes, MaxAge: s.cfg.LogMaxAge,
		SegmentBytes: s.cfg.LogSegmentBytes, Logger: s.log})
	if err != nil {
		return undo(fmt.Errorf("open new change log: %w", err))
	}
	slot := s.cfg.Slot
	if slot == "" {
		slot = "lattice_" + l.ID()
	}
	// The slot exists before any session sees the new log: a snapshot
	// taken for the new log is then never older than the slot's start.
	if _, err := catalog.EnsureSlot(ctx, s.pool, slot); err != nil {
		l.Close()
		return undo(fmt.Errorf("create replication slot %s: %w", slot, err))
	}
	s.cur.Store(&logState{log: l, slot: slot})
	// Every session registered now may hold the old log; later ones see
	// the new one (stored above, before this lock).
	s.connMu.Lock()
	n := len(s.conns)
	for sess := range s.conns {
		sess.markStale()
	}
	s.connMu.Unlock()
	if err := old.Close(); err != nil {
		s.log.Warn("close the old change log", "err", err)
	}
	s.log.Info("new change log started; sessions re-sync", "log_id", l.ID(), "slot", slot, "sessions", n, "old_log_moved_to", aside)
	return nil
}

// markStale tells the session that its change log was replaced.
func (s *session) markStale() {
	s.staleOnce.Do(func() { close(s.stale) })
}
