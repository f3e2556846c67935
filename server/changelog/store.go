package changelog

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Store is the retained change log as the service uses it. *Log keeps it
// in segment files on local disk; package changelog/jetstream keeps it in
// a NATS JetStream stream that several service replicas share. The
// contract is *Log's: Append (one goroutine at a time) returns once the
// txns are durable, commit LSNs strictly increase, readers see them in
// order, and a position older than TruncatedThrough cannot be resumed.
type Store interface {
	ID() string
	Head() uint64
	EndLSN() uint64
	TruncatedThrough() uint64
	Append(txns ...*Txn) error
	// Notify returns a channel closed by the next Append (or the next txn
	// another replica appended, for a shared store).
	Notify() <-chan struct{}
	// Cursor returns a reader of the txns with LSN > after.
	Cursor(after uint64) Cursor
	Close() error
}

// Cursor reads a Store's txns in LSN order from a position; *Reader is
// the local log's. Used by one goroutine at a time (Position from any).
type Cursor interface {
	Position() uint64
	Next(ctx context.Context) (*Txn, error)
	TryNext() (t *Txn, ok bool, err error)
	Close() error
}

// Cursor is Reader as a Cursor.
func (l *Log) Cursor(after uint64) Cursor { return l.Reader(after) }

var _ Store = (*Log)(nil)

// Codec encodes txns as the local log's records (header, CRC-32C and
// payload) and decodes them, interning Rels so that equal tables share
// one *Rel, for a Store that keeps the records elsewhere. Encode must be
// called from one goroutine at a time; Decode is safe for concurrent use.
type Codec struct {
	enc encoder
	in  interner
}

// Encode appends the record of t to dst. It replaces t's Rel pointers
// with the interned ones, as Append does.
func (c *Codec) Encode(dst []byte, t *Txn) ([]byte, error) {
	out, _, err := c.enc.appendRecord(dst, t, &c.in)
	return out, err
}

// Decode decodes one record made by Encode, checking its length and CRC.
func (c *Codec) Decode(rec []byte) (*Txn, error) {
	if len(rec) < recHeaderLen+minPayload {
		return nil, fmt.Errorf("%w: %d-byte record", ErrCorrupt, len(rec))
	}
	n := int(binary.LittleEndian.Uint32(rec[0:]))
	if n != len(rec)-recHeaderLen {
		return nil, fmt.Errorf("%w: length %d in a %d-byte record", ErrCorrupt, n, len(rec))
	}
	payload := rec[recHeaderLen:]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rec[4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return decodeTxn(payload, &c.in)
}
