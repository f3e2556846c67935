// Package changelog is the retained change log of the Lattice service: an
// append-only, fsynced, segmented log of committed Postgres transactions that
// hundreds of client sessions read concurrently, each from its own position.
//
// The replication reader appends every committed transaction (commit LSNs
// strictly increasing) with Append, which returns only once the data is
// durable; the Postgres replication slot may then be confirmed up to
// EndLSN(). Sessions read with a Reader positioned after the last LSN their
// client has applied. Recent transactions are served from an in-memory tail
// of decoded Txns; older ones are read sequentially from segment files.
//
// Retention deletes whole old segments by total size (Options.MaxBytes) and
// by age (Options.MaxAge). A position older than TruncatedThrough() cannot be
// resumed: Reader.Next returns ErrTruncated and the client must resync.
//
// On disk, a log is a directory of segment files named by their first LSN
// (%016x.seg), each a sequence of records [uint32 length][uint32 CRC-32C]
// [payload], plus meta.json (log ID and TruncatedThrough) and a LOCK file.
// Open recovers from a crash by truncating a torn last record.
//
// Txns returned by readers are shared between readers and must be treated as
// read-only, including their Changes, rows, values and Rels.
package changelog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/protocol"
)

// Errors.
var (
	// ErrTruncated is returned by Reader.Next when transactions after the
	// reader's position were removed by retention; the client must resync.
	ErrTruncated = errors.New("changelog: position is older than the retained log")
	// ErrClosed is returned after Log.Close or Reader.Close.
	ErrClosed = errors.New("changelog: closed")
	// ErrOutOfOrder is wrapped by Append when a txn's LSN is not greater
	// than Head() (or than the previous txn of the batch).
	ErrOutOfOrder = errors.New("changelog: LSN out of order")
)

// Rel describes a table as of a transaction. Rels handed to Append become
// the log's and must not be modified afterwards; Rels read from the log are
// shared and read-only.
type Rel struct {
	Schema, Table string
	Columns       []protocol.Column
	PK            []int // indexes into Columns, in key order
	// Attnums are the columns' Postgres attribute numbers (stable across
	// RENAME COLUMN, see server/schema), one per column, or nil when not
	// known. Stored in the log (record version 3; nil for relations of
	// older records, and when its length is not that of Columns).
	Attnums []int16
}

// Change is one row change. Op is protocol.OpInsert, OpUpdate or OpDelete.
// Old is the full old row (nil for inserts; may be nil for updates when
// Postgres did not send it), New the full new row (nil for deletes). Rows
// have one value per column of Rel.
type Change struct {
	Op       protocol.Op
	Rel      *Rel
	Old, New []coltype.Value
	// Version is the row's version after the change, from the table's
	// shadow metadata (write path); 0 when unknown.
	Version uint64
}

// Txn is one committed transaction.
// OpTruncate is the Op of a Change that records a TRUNCATE of Rel: every
// row of the table is gone. It has neither Old nor New.
const OpTruncate protocol.Op = 0x10

type Txn struct {
	LSN        uint64 // commit LSN
	EndLSN     uint64 // end of the commit record: what the slot may be confirmed to
	Xid        uint32
	CommitTime int64 // unix microseconds
	// Origin and ClientTxnID name the client transaction the service applied
	// in this Postgres transaction; empty and 0 for other transactions.
	Origin      string
	ClientTxnID uint64
	Changes     []Change
}

// Options configure a Log. The zero value (or nil) gives the defaults.
type Options struct {
	// MaxBytes is the retention limit on the total size of the segment
	// files. Default 1 GiB; negative means no size limit.
	MaxBytes int64
	// MaxAge is the retention limit by age. A segment's age is measured
	// from the later of its newest txn's commit time and its last write.
	// 0 means the default of 24h; negative means no age limit.
	MaxAge time.Duration
	// SegmentBytes is the size after which Append starts a new segment
	// file. Default 64 MiB.
	SegmentBytes int64
	// MemoryBytes bounds the tail of recent transactions kept decoded in
	// memory (estimated from the record size plus per-value overhead).
	// Default 64 MiB; negative disables the tail (every read is from disk).
	MemoryBytes int64
	// Logger receives recovery and retention events; nil discards them.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultMaxAge       = 24 * time.Hour
	DefaultSegmentBytes = 64 << 20
	DefaultMemoryBytes  = 64 << 20
)

// Stats is a snapshot of a Log's state.
type Stats struct {
	Bytes            int64  // total size of the segment files
	Segments         int    // number of segment files
	MemTxns          int    // txns in the in-memory tail
	MemBytes         int64  // estimated size of the in-memory tail
	OldestLSN        uint64 // LSN of the oldest retained txn (0 if empty)
	Head             uint64 // LSN of the newest txn
	EndLSN           uint64 // EndLSN of the newest txn
	TruncatedThrough uint64 // greatest LSN removed by retention
}

type memEntry struct {
	lsn  uint64
	txn  *Txn
	size int64
}

// Log is a retained change log. Append must be called from one goroutine
// at a time (it serializes callers); everything else is safe for concurrent
// use.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger
	id   string
	now  func() time.Time // clock for segment write times (tests replace it)
	lock *os.File
	in   interner

	// appendMu serializes Append, Enforce and Close. The fields below it
	// are used only with appendMu held.
	appendMu sync.Mutex
	active   *os.File // the last segment, open for appending; nil if none
	failed   error    // sticky write/fsync failure
	enc      encoder
	buf      []byte

	// mu guards the fields below. Writers also hold appendMu.
	mu           sync.RWMutex
	segs         []*segment // oldest first; the last one is active
	bytes        int64
	mem          []memEntry // in-memory tail, oldest first
	memBytes     int64
	memBase      uint64 // sequence number of mem[0]
	memPrev      uint64 // LSN of the txn before mem[0] (Head when mem is empty)
	head, endLSN uint64
	truncThrough uint64
	notify       chan struct{} // closed and replaced on every Append
	closed       bool
}

// Open opens the log in dir, creating dir and a new log if needed. It
// recovers after a crash: a torn or corrupt tail of the last segment is
// truncated away. A corrupt segment before the last one (which can only be
// damage to fsynced data) is renamed to *.corrupt together with all older
// segments and TruncatedThrough is raised past it, so that readers behind it
// get ErrTruncated rather than a gap.
func Open(dir string, opts *Options) (*Log, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = DefaultMemoryBytes
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "changelog", "dir", dir)

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open changelog: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("open changelog: %w", err)
	}
	l := &Log{dir: dir, opts: o, log: logger, now: time.Now, lock: lock, notify: make(chan struct{})}
	if err := l.recover(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open changelog %s: %w", dir, err)
	}
	return l, nil
}

func (l *Log) recover() error {
	m, found, err := readMeta(l.dir)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("list segments: %w", err)
	}
	var firsts []uint64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			os.Remove(filepath.Join(l.dir, name))
			continue
		}
		if first, ok := parseSegName(name); ok && e.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)

	tt := m.TruncatedThrough
	dirty := false // directory entries changed
	var segs []*segment
	var prevLast uint64
	for i, first := range firsts {
		path := filepath.Join(l.dir, segName(first))
		isLast := i == len(firsts)-1
		s, fileSize, bad, err := scanSegment(path, first, prevLast)
		if err != nil {
			return err
		}
		if bad != nil && !isLast {
			// Damage to sealed, fsynced data: drop it and everything older,
			// and make positions before the next segment unresumable.
			l.log.Error("corrupt sealed segment; discarding it and older segments",
				"segment", filepath.Base(path), "reason", bad.Error(), "truncated_through", firsts[i+1]-1)
			for _, q := range append(segs, s) {
				if err := os.Rename(q.path, q.path+".corrupt"); err != nil {
					return fmt.Errorf("quarantine segment: %w", err)
				}
			}
			segs = nil
			tt = max(tt, firsts[i+1]-1)
			prevLast = max(s.last, firsts[i+1]-1)
			dirty = true
			continue
		}
		if bad != nil {
			l.log.Warn("truncating torn tail of last segment",
				"segment", filepath.Base(path), "reason", bad.Error(),
				"valid_bytes", s.size, "dropped_bytes", fileSize-s.size)
			if err := truncateFile(path, s.size); err != nil {
				return fmt.Errorf("truncate segment: %w", err)
			}
		}
		if s.count == 0 {
			l.log.Warn("removing empty segment", "segment", filepath.Base(path))
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove empty segment: %w", err)
			}
			dirty = true
			continue
		}
		segs = append(segs, s)
		prevLast = s.last
	}

	if !found {
		m.ID, err = newID()
		if err != nil {
			return err
		}
		if len(segs) > 0 {
			// Without state we cannot know what was removed before the
			// oldest segment; be conservative. (The new ID makes every
			// client resync anyway.)
			tt = max(tt, segs[0].first-1)
			l.log.Warn("state file missing; created a new log ID", "id", m.ID)
		}
	}
	// Finish a retention pass interrupted after the state was written.
	for len(segs) > 1 && segs[0].last <= tt {
		if err := os.Remove(segs[0].path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove truncated segment: %w", err)
		}
		segs = segs[1:]
		dirty = true
	}
	if !found || tt != m.TruncatedThrough {
		m.TruncatedThrough = tt
		if err := writeMeta(l.dir, m); err != nil {
			return err
		}
	} else if dirty {
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir: %w", err)
		}
	}

	l.id = m.ID
	l.truncThrough = tt
	l.segs = segs
	for _, s := range segs {
		l.bytes += s.size
	}
	if n := len(segs); n > 0 {
		last := segs[n-1]
		l.head, l.endLSN = last.last, last.lastEnd
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open segment: %w", err)
		}
		l.active = f
	}
	l.head = max(l.head, tt)
	l.memPrev = l.head
	l.log.Info("opened", "id", l.id, "segments", len(segs), "bytes", l.bytes,
		"head", l.head, "truncated_through", tt)
	return nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new log id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ID returns the log's ID: 16 random hex characters created with the log
// and kept across reopens. A client position is only meaningful together
// with the ID of the log it came from.
func (l *Log) ID() string { return l.id }

// Head returns the LSN of the newest txn (0 if the log is empty).
func (l *Log) Head() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.head
}

// EndLSN returns the EndLSN of the newest txn: the replication slot may be
// confirmed up to it, since everything appended is durable.
func (l *Log) EndLSN() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.endLSN
}

// TruncatedThrough returns the greatest LSN removed by retention (0 if
// none). Resuming after position p is possible iff p >= TruncatedThrough().
func (l *Log) TruncatedThrough() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.truncThrough
}

// Stats returns a snapshot of the log's state.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	st := Stats{
		Bytes:            l.bytes,
		Segments:         len(l.segs),
		MemTxns:          len(l.mem),
		MemBytes:         l.memBytes,
		Head:             l.head,
		EndLSN:           l.endLSN,
		TruncatedThrough: l.truncThrough,
	}
	if len(l.segs) > 0 {
		st.OldestLSN = l.segs[0].first
	}
	return st
}

// Append writes txns to the log, fsyncs once for the batch (plus once per
// segment rolled over) and then makes them visible to readers. Each LSN must
// be greater than Head() and than the previous txn's in the batch; otherwise
// nothing is written and the error wraps ErrOutOfOrder. After a restart the
// replication stream may resend transactions the log already holds (the
// slot is confirmed after Append returns): the caller must skip txns with
// LSN <= Head() itself.
//
// Append takes ownership of txns: they become the shared, read-only Txns
// that in-memory readers receive, and each Change.Rel is replaced by the
// log's canonical Rel of identical content.
//
// A write or fsync failure is sticky: the log refuses further appends and
// must be reopened (which recovers what reached the disk).
func (l *Log) Append(txns ...*Txn) error {
	if len(txns) == 0 {
		return nil
	}
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("changelog: append after earlier failure: %w", l.failed)
	}
	prev := l.head
	for i, t := range txns {
		if t == nil {
			return fmt.Errorf("changelog: append: txn %d is nil", i)
		}
		if t.LSN <= prev {
			return fmt.Errorf("%w: txn LSN %X is not after %X", ErrOutOfOrder, t.LSN, prev)
		}
		prev = t.LSN
	}

	// Encode the whole batch before touching the disk, so that invalid
	// input fails without side effects.
	type rec struct {
		start, end int
		cost       int64
	}
	recs := make([]rec, len(txns))
	buf := l.buf[:0]
	for i, t := range txns {
		start := len(buf)
		var nValues int
		var err error
		buf, nValues, err = l.enc.appendRecord(buf, t, &l.in)
		if err != nil {
			return err
		}
		recs[i] = rec{start: start, end: len(buf), cost: memCost(t, len(buf)-start, nValues)}
	}
	if cap(buf) <= 4<<20 {
		l.buf = buf
	} else {
		l.buf = nil
	}

	// Write, rolling segments as needed. Segments created here are published
	// to readers only with the txns.
	type placed struct {
		seg *segment
		off int64
	}
	where := make([]placed, len(txns))
	var cur *segment
	var curSize int64
	if n := len(l.segs); n > 0 {
		cur = l.segs[n-1]
		curSize = cur.size
	}
	orig, origSize := cur, curSize // undone to on a failed write
	var created []*segment
	// failWrite undoes a failed write (a full disk, an I/O error): the
	// segments it created are removed and the active one is cut back to
	// its size before this Append, so that nothing torn stays on disk and
	// a later Append (space back) goes on. Only when that fails too does
	// the log need reopening.
	failWrite := func(err error) error {
		if uerr := l.undoAppend(orig, origSize, created); uerr != nil {
			l.failed = fmt.Errorf("%w (and undoing it: %v)", err, uerr)
			l.log.Error("append failed; log needs reopening", "err", l.failed)
			return fmt.Errorf("changelog: append: %w", l.failed)
		}
		l.log.Error("append failed; nothing written, the next append retries", "err", err)
		return fmt.Errorf("changelog: append: %w", err)
	}
	rolled := false
	for i := 0; i < len(txns); {
		if cur == nil || curSize >= l.opts.SegmentBytes {
			if cur != nil {
				rolled = true
				if err := failpoint.Hit("changelog/rotate"); err != nil {
					return fmt.Errorf("changelog: append: %w", err)
				}
			}
			s, f, err := l.createSegment(txns[i].LSN)
			if err != nil {
				return failWrite(err)
			}
			if l.active != nil {
				l.active.Close()
			}
			l.active = f
			cur, curSize = s, 0
			created = append(created, s)
		}
		j := i
		for j < len(txns) && (j == i || curSize < l.opts.SegmentBytes) {
			where[j] = placed{seg: cur, off: curSize}
			curSize += int64(recs[j].end - recs[j].start)
			j++
		}
		if err := writeSync(l.active, buf[recs[i].start:recs[j-1].end]); err != nil {
			return failWrite(fmt.Errorf("write segment %s: %w", filepath.Base(cur.path), err))
		}
		i = j
	}
	if len(created) > 0 {
		if err := syncDir(l.dir); err != nil {
			return failWrite(fmt.Errorf("sync dir: %w", err))
		}
	}

	// Publish.
	now := l.now()
	l.mu.Lock()
	l.segs = append(l.segs, created...)
	for i, t := range txns {
		n := int64(recs[i].end - recs[i].start)
		s := where[i].seg
		s.add(txnHeader{LSN: t.LSN, EndLSN: t.EndLSN, CommitTime: t.CommitTime}, where[i].off, n)
		s.modTime = now
		l.bytes += n
		if l.opts.MemoryBytes > 0 {
			l.mem = append(l.mem, memEntry{lsn: t.LSN, txn: t, size: recs[i].cost})
			l.memBytes += recs[i].cost
		}
	}
	last := txns[len(txns)-1]
	l.head, l.endLSN = last.LSN, last.EndLSN
	k := 0
	for k < len(l.mem) && l.memBytes > l.opts.MemoryBytes {
		l.memBytes -= l.mem[k].size
		k++
	}
	l.dropMemLocked(k)
	if len(l.mem) == 0 {
		l.memPrev = l.head
	}
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()

	if rolled {
		if err := l.enforceLocked(now); err != nil {
			l.log.Error("retention failed", "err", err)
		}
	}
	return nil
}

// dropMemLocked removes the k oldest entries of the in-memory tail; the
// caller has already subtracted their sizes from memBytes.
func (l *Log) dropMemLocked(k int) {
	if k == 0 {
		return
	}
	l.memPrev = l.mem[k-1].lsn
	clear(l.mem[:k])
	l.mem = l.mem[k:]
	l.memBase += uint64(k)
}

// memCost estimates the memory held by a decoded txn whose record is recLen
// bytes: the record size (text, blobs, varints) plus the fixed size of the
// Go structures.
func memCost(t *Txn, recLen, nValues int) int64 {
	return int64(recLen) + 128 +
		int64(len(t.Changes))*int64(unsafe.Sizeof(Change{})) +
		int64(nValues)*int64(unsafe.Sizeof(coltype.Value{}))
}

func (l *Log) createSegment(first uint64) (*segment, *os.File, error) {
	path := filepath.Join(l.dir, segName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{first: first, path: path, modTime: l.now()}, f, nil
}

// undoAppend removes the segments a failed Append created and cuts the
// segment that was active before it (if any) back to size, leaving it the
// active file again. Caller holds appendMu.
func (l *Log) undoAppend(orig *segment, size int64, created []*segment) error {
	var errs []error
	if len(created) > 0 {
		if l.active != nil {
			l.active.Close()
			l.active = nil
		}
		for _, s := range created {
			if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
				errs = append(errs, fmt.Errorf("remove segment %s: %w", filepath.Base(s.path), err))
			}
		}
		if orig != nil {
			f, err := os.OpenFile(orig.path, os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				errs = append(errs, fmt.Errorf("reopen segment %s: %w", filepath.Base(orig.path), err))
			} else {
				l.active = f
			}
		}
	}
	if orig != nil && l.active != nil {
		if err := l.active.Truncate(size); err != nil {
			errs = append(errs, fmt.Errorf("truncate segment %s: %w", filepath.Base(orig.path), err))
		} else if err := l.active.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync segment %s: %w", filepath.Base(orig.path), err))
		}
	}
	if len(created) > 0 {
		if err := syncDir(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("sync dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

func writeSync(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

// Close closes the log. Blocked readers wake up with ErrClosed; further
// calls return ErrClosed.
func (l *Log) Close() error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.notify)
	l.mem = nil
	l.memBytes = 0
	l.mu.Unlock()
	var err error
	if l.active != nil {
		err = l.active.Close()
		l.active = nil
	}
	if cerr := l.lock.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close changelog: %w", err)
	}
	return nil
}

// segmentAfterLocked returns the segment following the one starting at first,
// or nil. l.mu must be held.
func (l *Log) segmentAfterLocked(first uint64) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > first })
	if i < len(l.segs) {
		return l.segs[i]
	}
	return nil
}

// locateLocked returns the segment and file offset from which to scan for
// the first txn with LSN > pos. l.mu must be held.
func (l *Log) locateLocked(pos uint64) (*segment, int64) {
	if len(l.segs) == 0 {
		return nil, 0
	}
	target := pos + 1
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > target }) - 1
	if i < 0 {
		i = 0
	}
	s := l.segs[i]
	j := sort.Search(len(s.index), func(j int) bool { return s.index[j].lsn > target }) - 1
	if j < 0 {
		return s, 0
	}
	return s, s.index[j].off
}

// Notify returns a channel that the next Append (or Close) closes. Callers
// that poll with Reader.TryNext take it before polling, so that no append
// between the poll and the wait is missed.
func (l *Log) Notify() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.notify
}
