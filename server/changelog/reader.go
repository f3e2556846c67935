package changelog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
)

// readerBufSize is the read buffer of a reader that is reading from disk.
const readerBufSize = 16 << 10

// Reader reads the txns of a Log in LSN order from a position. It costs no
// goroutine: idle readers wait on a channel shared by all readers that
// Append closes. A reader whose next txn is in the in-memory tail reads it
// from there; otherwise it reads the segment files sequentially with its own
// file handle, which it closes as soon as it catches up with the tail.
//
// A Reader must be used by one goroutine at a time (Position may be called
// from any goroutine). The returned Txns are shared: do not modify them.
type Reader struct {
	l   *Log
	pos atomic.Uint64

	closed bool

	// memory mode
	inMem   bool
	nextSeq uint64 // sequence number of the next in-memory entry

	// disk mode
	f   *os.File
	br  *bufio.Reader
	seg *segment
	buf []byte
}

// Reader returns a reader of the txns with LSN > after, in order.
func (l *Log) Reader(after uint64) *Reader {
	r := &Reader{l: l}
	r.pos.Store(after)
	return r
}

// Position returns the LSN of the last txn returned (or the starting
// position): the reader continues with the txns after it.
func (r *Reader) Position() uint64 { return r.pos.Load() }

// Close releases the reader's file handle. Further calls return ErrClosed.
func (r *Reader) Close() error {
	r.closed = true
	r.closeFile()
	return nil
}

// Next returns the next txn, waiting for it to be appended if needed. It
// returns ctx.Err() when ctx ends first, an error wrapping ErrTruncated when
// the txns after the reader's position were removed by retention, and
// ErrClosed when the log or the reader was closed.
func (r *Reader) Next(ctx context.Context) (*Txn, error) {
	for {
		t, wait, err := r.next()
		if t != nil || err != nil {
			return t, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryNext returns the next txn if it has been appended, without waiting
// for new appends (it may still read from disk). ok is false when the
// reader is at the head of the log.
func (r *Reader) TryNext() (t *Txn, ok bool, err error) {
	t, _, err = r.next()
	return t, t != nil, err
}

// next returns the next txn, or (nil, wait, nil) where wait is closed by
// the next Append.
func (r *Reader) next() (*Txn, <-chan struct{}, error) {
	if r.closed {
		return nil, nil, ErrClosed
	}
	l := r.l
	pos := r.pos.Load()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		r.closeFile()
		return nil, nil, ErrClosed
	}
	if pos < l.truncThrough {
		tt := l.truncThrough
		l.mu.RUnlock()
		r.closeFile()
		return nil, nil, truncErr(pos, tt)
	}
	if pos >= l.memPrev {
		// Everything after pos is in the in-memory tail.
		var i int
		if r.inMem && r.nextSeq >= l.memBase && r.nextSeq-l.memBase <= uint64(len(l.mem)) {
			i = int(r.nextSeq - l.memBase)
		} else {
			i = sort.Search(len(l.mem), func(i int) bool { return l.mem[i].lsn > pos })
		}
		for i < len(l.mem) && l.mem[i].lsn <= pos {
			i++ // only for a position beyond Head
		}
		r.inMem = true
		var t *Txn
		if i < len(l.mem) {
			t = l.mem[i].txn
			i++
		}
		r.nextSeq = l.memBase + uint64(i)
		wait := l.notify
		l.mu.RUnlock()
		r.closeFile()
		if t == nil {
			return nil, wait, nil
		}
		r.pos.Store(t.LSN)
		return t, nil, nil
	}
	// A txn after pos exists and is durable on disk but not in memory.
	r.inMem = false
	var seg *segment
	var off int64
	if r.f == nil {
		seg, off = l.locateLocked(pos)
	}
	l.mu.RUnlock()
	t, err := r.readDisk(pos, seg, off)
	if err != nil {
		r.closeFile()
		if tt := l.TruncatedThrough(); pos < tt {
			return nil, nil, truncErr(pos, tt)
		}
		return nil, nil, err
	}
	r.pos.Store(t.LSN)
	return t, nil, nil
}

func truncErr(pos, tt uint64) error {
	return fmt.Errorf("%w: position %X, truncated through %X", ErrTruncated, pos, tt)
}

// readDisk returns the first txn with LSN > pos from the segment files,
// opening seg at off if the reader has no file open.
func (r *Reader) readDisk(pos uint64, seg *segment, off int64) (*Txn, error) {
	if r.f == nil {
		if seg == nil {
			return nil, fmt.Errorf("changelog: no segment holds txns after %X", pos)
		}
		if err := r.openSegment(seg, off); err != nil {
			return nil, err
		}
	}
	for {
		t, err := r.readRecord(pos)
		if err == io.EOF {
			// The next txn is in a later segment.
			r.l.mu.RLock()
			next := r.l.segmentAfterLocked(r.seg.first)
			r.l.mu.RUnlock()
			if next == nil {
				return nil, fmt.Errorf("changelog: unexpected end of segment %s after %X",
					filepath.Base(r.seg.path), pos)
			}
			r.closeFile()
			if err := r.openSegment(next, 0); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read segment %s: %w", filepath.Base(r.seg.path), err)
		}
		return t, nil
	}
}

func (r *Reader) openSegment(s *segment, off int64) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("seek segment: %w", err)
		}
	}
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, readerBufSize)
	} else {
		r.br.Reset(f)
	}
	r.f, r.seg = f, s
	return nil
}

func (r *Reader) closeFile() {
	if r.f == nil {
		return
	}
	r.f.Close()
	r.f, r.seg = nil, nil
	r.br = nil
	if cap(r.buf) > 256<<10 {
		r.buf = nil
	}
}

// readRecord returns the next txn with LSN > pos from the open segment,
// skipping older records without decoding them. io.EOF means the segment
// ends at a record boundary.
func (r *Reader) readRecord(pos uint64) (*Txn, error) {
	for {
		hdr, err := r.br.Peek(recHeaderLen + 1 + 8)
		if len(hdr) == 0 && err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n < minPayload || n > maxRecord {
			return nil, fmt.Errorf("%w: invalid length %d", ErrCorrupt, n)
		}
		if lsn := binary.LittleEndian.Uint64(hdr[recHeaderLen+1:]); lsn <= pos {
			if _, err := r.br.Discard(recHeaderLen + n); err != nil {
				return nil, noEOF(err)
			}
			continue
		}
		r.br.Discard(recHeaderLen)
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		b := r.buf[:n]
		if _, err := io.ReadFull(r.br, b); err != nil {
			return nil, noEOF(err)
		}
		if crc32.Checksum(b, castagnoli) != sum {
			return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
		}
		return decodeTxn(b, &r.l.in)
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
