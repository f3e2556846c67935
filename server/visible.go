package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/server/changelog"
)

// Reading Postgres at a position of the change log.
//
// The service reads Postgres at a log position P (a shape's snapshot sent
// at P, a relational move-in fetched while streaming the transaction at P,
// the rows restored after a Reject) and then streams the log after P, so
// the read must see every transaction logged at or before P. Being in the
// log does not make a transaction visible: Postgres writes the commit
// record to the WAL (where logical decoding reads it) before it marks the
// transaction finished for new snapshots, and a backend descheduled
// between the two leaves a window, milliseconds on a loaded machine, in
// which a snapshot does not see a transaction the log already holds. A
// read in that window silently lost that transaction for the client.
//
// So the service remembers the xids of the transactions it logs (recentXids)
// until a snapshot shows them finished, and a read at P checks its
// snapshot against them: if some transaction at or before P is not
// visible, it takes a new snapshot.

// recentXids holds the xid and commit LSN of each transaction added to the
// change log that no Postgres snapshot has shown visible yet. A
// transaction visible in one snapshot is visible in every later one, so it
// is forgotten then.
type recentXids struct {
	mu   sync.Mutex
	ents []xidAt // in log order
}

type xidAt struct {
	lsn uint64
	xid uint32
}

// maxRecentXids bounds the memory kept when no snapshot is taken for a
// long time: the oldest entries are dropped beyond it (a transaction that
// stayed invisible while that many later ones were logged is not a case
// Postgres produces).
const maxRecentXids = 1 << 16

// add records transactions about to be logged (before they are, so that
// no reader can see a log position without its entry).
func (r *recentXids) add(txns []*changelog.Txn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range txns {
		if len(r.ents) >= maxRecentXids {
			n := copy(r.ents, r.ents[len(r.ents)/4:])
			r.ents = r.ents[:n]
		}
		r.ents = append(r.ents, xidAt{t.LSN, t.Xid})
	}
}

// seesUpTo reports whether snap sees every recorded transaction logged at
// or before upto, and forgets the ones it sees.
func (r *recentXids) seesUpTo(snap *xidSnapshot, upto uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := true
	k := 0
	for _, e := range r.ents {
		if snap.visible(e.xid) {
			continue
		}
		if e.lsn <= upto {
			ok = false
		}
		r.ents[k] = e
		k++
	}
	clear(r.ents[k:])
	r.ents = r.ents[:k]
	return ok
}

// settleTimeout bounds the wait for logged transactions to become visible.
const settleTimeout = 10 * time.Second

// snapshotAt opens a read-only REPEATABLE READ transaction whose snapshot
// sees every transaction logged at or before upto, and returns it with the
// snapshot (its until set to the WAL insert position when it was taken).
func (s *Service) snapshotAt(ctx context.Context, upto uint64) (pgx.Tx, *xidSnapshot, error) {
	started := time.Now()
	s.metrics.snapshotsWaiting.Inc()
	defer s.metrics.snapshotsWaiting.Dec()
	deadline := started.Add(settleTimeout)
	wait := 500 * time.Microsecond
	for {
		tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, nil, fmt.Errorf("begin snapshot: %w", err)
		}
		var snapText, insertLSN string
		if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text").Scan(&snapText, &insertLSN); err != nil {
			tx.Rollback(context.Background())
			return nil, nil, fmt.Errorf("read snapshot: %w", err)
		}
		snap, err := parseSnapshot(snapText)
		if err != nil {
			tx.Rollback(context.Background())
			return nil, nil, err
		}
		if lsn, err := parseLSN(insertLSN); err == nil {
			snap.until = lsn
		}
		if s.recent.seesUpTo(snap, upto) {
			if err := failpoint.Hit("server/snapshot"); err != nil {
				tx.Rollback(context.Background())
				return nil, nil, fmt.Errorf("snapshot: %w", err)
			}
			s.metrics.snapshotWait.Observe(time.Since(started).Seconds())
			s.metrics.snapshotsRunning.Inc()
			return &runningTx{Tx: tx, running: s.metrics.snapshotsRunning}, snap, nil
		}
		tx.Rollback(context.Background())
		s.metrics.snapshotRetries.Inc()
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("snapshot at %X/%X: logged transactions still not visible after %v", upto>>32, uint32(upto), settleTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// waitVisible returns once every transaction logged at or before upto is
// visible to new snapshots (for reads outside a snapshotAt transaction).
func (s *Service) waitVisible(ctx context.Context, upto uint64) error {
	tx, _, err := s.snapshotAt(ctx, upto)
	if err != nil {
		return err
	}
	return tx.Rollback(ctx)
}
