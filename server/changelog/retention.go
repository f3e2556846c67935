package changelog

import (
	"errors"
	"fmt"
	"github.com/latticesync/lattice/internal/failpoint"
	"os"
	"path/filepath"
	"time"
)

// Enforce applies retention as of now: it deletes the oldest segments while
// the total size exceeds MaxBytes or while a segment's age (from the later of
// its newest commit time and its last write) exceeds MaxAge. The active
// (newest) segment is never removed. Append calls it whenever it rolls to a
// new segment; call it periodically as well so that age retention applies
// when the log is idle.
//
// The new TruncatedThrough is persisted before any file is deleted, so a
// crash in between only leaves files that the next Open removes.
func (l *Log) Enforce(now time.Time) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.enforceLocked(now)
}

// enforceLocked is Enforce with appendMu held.
func (l *Log) enforceLocked(now time.Time) error {
	// segs and bytes change only with appendMu held, which we hold.
	segs := l.segs
	total := l.bytes
	k := 0
	var removed int64
	for k < len(segs)-1 {
		s := segs[k]
		bySize := l.opts.MaxBytes > 0 && total > l.opts.MaxBytes
		byAge := l.opts.MaxAge > 0 && now.Sub(s.expiry()) > l.opts.MaxAge
		if !bySize && !byAge {
			break
		}
		total -= s.size
		removed += s.size
		k++
	}
	if k == 0 {
		return nil
	}
	tt := max(l.truncThrough, segs[k-1].last)
	if err := failpoint.Hit("changelog/trim"); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if err := writeMeta(l.dir, meta{ID: l.id, TruncatedThrough: tt}); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if err := failpoint.Hit("changelog/trimmed"); err != nil { // meta written, segments not removed yet
		return fmt.Errorf("retention: %w", err)
	}

	l.mu.Lock()
	l.segs = append([]*segment(nil), segs[k:]...)
	l.bytes -= removed
	l.truncThrough = tt
	// Transactions at or before tt are gone for every reader; release them.
	m := 0
	for m < len(l.mem) && l.mem[m].lsn <= tt {
		l.memBytes -= l.mem[m].size
		m++
	}
	l.dropMemLocked(m)
	if len(l.mem) == 0 {
		l.memPrev = l.head
	}
	l.mu.Unlock()

	var errs []error
	for _, s := range segs[:k] {
		// Readers may still have the file open; on Unix they can finish
		// the record they are reading, and then get ErrTruncated.
		if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("remove segment %s: %w", filepath.Base(s.path), err))
		}
	}
	l.log.Info("retention removed segments", "segments", k, "bytes", removed,
		"truncated_through", tt, "remaining_bytes", total)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}
