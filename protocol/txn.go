package protocol

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/latticesync/lattice/coltype"
)

// Op is the kind of a Change.
type Op uint8

const (
	OpInsert  Op = 1 // Values: the full row (also used for snapshot rows and move-in)
	OpUpdate  Op = 2 // Values: the full new row
	OpDelete  Op = 3 // Values: the primary key columns, in PK order
	OpMoveOut Op = 4 // Values: the primary key columns; remove locally, it is not a delete
)

// String returns the op's name, e.g. "insert", or "Op(9)".
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpMoveOut:
		return "move_out"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Change is one row change in a Txn.
type Change struct {
	Op    Op
	RelID uint32
	// Version is the row's version after the change (Insert, Update), as
	// counted by the service's shadow metadata; 0 when unknown. A client
	// sends the version it holds with a write to that row (Write), which
	// tells the service which versions of the row the write had seen.
	Version uint64
	Values  []coltype.Value
}

// Txn flags.
const (
	FlagFirst    uint8 = 1 << 0 // first chunk of a transaction
	FlagLast     uint8 = 1 << 1 // last chunk: the client commits and stores LSN
	FlagSnapshot uint8 = 1 << 2 // initial data of shapes
	FlagReset    uint8 = 1 << 3 // delete all rows of the tables in Reset first (resync snapshot, TRUNCATE)
)

// knownFlags are the flag bits of protocol v1; the others must be zero.
const knownFlags = FlagFirst | FlagLast | FlagSnapshot | FlagReset

// Txn is one chunk of a transaction. A transaction is one or more chunks
// with the same LSN, from FlagFirst to FlagLast; the client applies all of
// them in one local transaction.
//
// A decoded Txn keeps the bytes of all its Text and Blob values in one
// buffer of its own (not the frame); each Change's Values and each value's
// B are capped slices of shared backing arrays, so appending to them
// reallocates rather than overwriting a neighbour.
type Txn struct {
	LSN        uint64 // commit LSN (snapshot: the log position it is consistent with)
	Flags      uint8
	CommitTime int64    // unix microseconds; 0 for snapshots
	Reset      []uint32 // with FlagReset on the first chunk: RelIDs to clear
	// Origin and ClientTxnID name the client transaction (Write) that this
	// transaction applied in Postgres; empty and 0 for other transactions.
	// A client recognises its own writes coming back by them.
	Origin      string
	ClientTxnID uint64
	Changes     []Change
}

// Encode appends the Txn frame to dst. Encoding a Change with an unknown
// Op, or a Txn with flag bits outside FlagFirst|FlagLast|FlagSnapshot|FlagReset,
// yields a frame that decoders reject.
func (m *Txn) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeTxn))
	dst = binary.AppendUvarint(dst, m.LSN)
	dst = append(dst, m.Flags)
	dst = binary.AppendVarint(dst, m.CommitTime)
	dst = binary.AppendUvarint(dst, uint64(len(m.Reset)))
	for _, id := range m.Reset {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	dst = appendString(dst, m.Origin)
	dst = binary.AppendUvarint(dst, m.ClientTxnID)
	dst = binary.AppendUvarint(dst, uint64(len(m.Changes)))
	for i := range m.Changes {
		dst = AppendChange(dst, &m.Changes[i])
	}
	return dst
}

// AppendChange appends the wire encoding of one Change to dst: Op byte,
// RelID, Version, value count, values. A Txn frame's body ends with a count of
// changes followed by that many of these, so a service can encode changes
// once and splice them into chunks.
func AppendChange(dst []byte, c *Change) []byte {
	dst = append(dst, byte(c.Op))
	dst = binary.AppendUvarint(dst, uint64(c.RelID))
	dst = binary.AppendUvarint(dst, c.Version)
	dst = binary.AppendUvarint(dst, uint64(len(c.Values)))
	for i := range c.Values {
		dst = AppendValue(dst, c.Values[i])
	}
	return dst
}

const minChange = 4 // Op, RelID, Version, value count

func validOp(o Op) bool { return o >= OpInsert && o <= OpMoveOut }

func (d *decoder) txn() *Txn {
	m := new(Txn)
	m.LSN = d.uvarint()
	m.Flags = d.byte1()
	if m.Flags&^knownFlags != 0 && d.err == nil {
		d.failAt(d.off-1, "unknown flag bits")
	}
	m.CommitTime = d.varint()
	if n := d.count(1); n > 0 {
		m.Reset = make([]uint32, n)
	}
	for i := range m.Reset {
		m.Reset[i] = d.u32()
	}
	m.Origin = d.string()
	m.ClientTxnID = d.uvarint()
	n := d.count(minChange)
	if n == 0 || d.err != nil {
		return m
	}
	// Two passes, so that decoding allocates three slices in all rather
	// than one per change and one per Text or Blob value.
	start := d.off
	nvals, nbytes := d.scanChanges(n)
	if d.err != nil {
		return m
	}
	changes := make([]Change, n)
	var vals []coltype.Value
	if nvals > 0 {
		vals = make([]coltype.Value, nvals)
	}
	var buf []byte
	if nbytes > 0 {
		buf = make([]byte, nbytes)
	}
	fillChanges(d.b, start, changes, vals, buf)
	m.Changes = changes
	return m
}

// scanChanges validates n changes from d.off, leaving d.off after them, and
// returns their total number of values and of Text and Blob bytes. It is
// the hot loop of decoding: the common one-byte varints are read inline,
// and the decoder's methods handle the rest and all errors.
func (d *decoder) scanChanges(n int) (nvals, nbytes int) {
	b, off := d.b, d.off
	// uv skips a uvarint at b[off:] and reports its value.
	uv := func() (uint64, bool) {
		if off < len(b) && b[off] < 0x80 {
			off++
			return uint64(b[off-1]), true
		}
		d.off = off
		v := d.uvarintSlow()
		off = d.off
		return v, d.err == nil
	}
	for range n {
		if off >= len(b) {
			d.off = off
			d.fail("truncated")
			return
		}
		if !validOp(Op(b[off])) {
			d.failAt(off, "unknown op")
			return
		}
		off++
		pos := off
		relID, ok := uv()
		if !ok {
			return
		}
		if relID > math.MaxUint32 {
			d.failAt(pos, "value exceeds 32 bits")
			return
		}
		if _, ok := uv(); !ok { // Version
			return
		}
		pos = off
		k, ok := uv()
		if !ok {
			return
		}
		if k > uint64(len(b)-off) { // each value takes at least one byte
			d.failAt(pos, "count exceeds frame")
			return
		}
		nvals += int(k)
		for range k {
			if off >= len(b) {
				d.off = off
				d.fail("truncated")
				return
			}
			kind := coltype.Kind(b[off])
			off++
			switch kind {
			case coltype.Null:
			case coltype.Integer:
				if _, ok := uv(); !ok {
					return
				}
			case coltype.Real:
				if len(b)-off < 8 {
					d.failAt(off-1, "truncated float")
					return
				}
				off += 8
			case coltype.Text, coltype.Blob:
				pos := off
				l, ok := uv()
				if !ok {
					return
				}
				if l > uint64(len(b)-off) {
					d.failAt(pos, "length exceeds frame")
					return
				}
				off += int(l)
				nbytes += int(l)
			default:
				d.failAt(off-1, "unknown value kind")
				return
			}
		}
	}
	d.off = off
	return
}

// fillChanges decodes the changes that scanChanges validated, from
// b[off:], into changes, slicing their values from vals and the values'
// bytes from buf, which scanChanges sized.
func fillChanges(b []byte, off int, changes []Change, vals []coltype.Value, buf []byte) {
	uv := func() uint64 {
		if c := b[off]; c < 0x80 {
			off++
			return uint64(c)
		}
		v, n := binary.Uvarint(b[off:])
		off += n
		return v
	}
	for i := range changes {
		c := &changes[i]
		c.Op = Op(b[off])
		off++
		c.RelID = uint32(uv())
		c.Version = uv()
		k := int(uv())
		if k == 0 {
			continue
		}
		c.Values = vals[:k:k]
		vals = vals[k:]
		for j := range c.Values {
			v := &c.Values[j] // zero
			v.Kind = coltype.Kind(b[off])
			off++
			switch v.Kind {
			case coltype.Integer:
				ux := uv()
				v.I = int64(ux >> 1)
				if ux&1 != 0 {
					v.I = ^v.I
				}
			case coltype.Real:
				v.F = math.Float64frombits(binary.LittleEndian.Uint64(b[off:]))
				off += 8
			case coltype.Text, coltype.Blob:
				l := int(uv())
				if l > 0 {
					copy(buf, b[off:off+l])
					v.B = buf[:l:l]
					buf = buf[l:]
					off += l
				}
			}
		}
	}
}
