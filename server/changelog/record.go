package changelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// On-disk record format (all integers little-endian):
//
//	record  = length:uint32 crc:uint32 payload[length]   crc = CRC-32C(payload)
//	payload = version:byte(1) lsn:uint64
//	          endLSN:uvarint xid:uvarint commitTime:varint
//	          nValues:uvarint nBytes:uvarint        (totals, for slab allocation)
//	          nRels:uvarint  { relLen:uvarint rel[relLen] }
//	          nChanges:uvarint { op:byte rel:uvarint flags:byte [old:row] [new:row] }
//	rel     = schema:str table:str nCols:uvarint { name:str base:byte colFlags:byte typeName:str }
//	          nPK:uvarint { pk:uvarint }
//	          nAttnums:uvarint { attnum:varint }     (version 3: 0 or nCols Postgres attnums)
//	row     = n:uvarint { value }
//	value   = kind:byte, then Integer: zigzag varint; Real: 8 bytes IEEE 754;
//	          Text/Blob: uvarint length + bytes; Null: nothing
//	str     = uvarint length + bytes
//
// The encoding is private to this package (it is deliberately not the wire
// codec of package protocol, so that the disk format is versioned on its
// own). The encoded rel bytes double as the interning key.

const (
	recHeaderLen = 8
	// payloadVersion 2 added Txn.Origin, Txn.ClientTxnID and
	// Change.Version; 3 added Rel.Attnums. Versions 1 and 2 are still
	// read.
	payloadVersion = 3
	// minPayload is version + LSN + 7 one-byte varints.
	minPayload = 1 + 8 + 7
	// maxRecord bounds one encoded transaction.
	maxRecord = 1 << 30
)

// change flags
const (
	hasOld = 1 << 0
	hasNew = 1 << 1
)

// column flags
const (
	colArray   = 1 << 0
	colNotNull = 1 << 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by errors about records that fail their checksum or
// cannot be decoded.
var ErrCorrupt = errors.New("changelog: corrupt record")

// encoder holds scratch state reused across Append calls (appender only).
type encoder struct {
	idx    map[*Rel]int // caller's Rel pointer -> index in canon
	canon  []*Rel       // distinct canonical Rels of the current txn
	keys   [][]byte     // encoded Rel of canon[i]
	keyBuf []byte
}

// appendRecord appends the record (header and payload) of t to dst. It
// canonicalizes t's Rel pointers through in (replacing Change.Rel with the
// interned Rel of identical content). It returns the new dst and the number
// of row values in t.
func (e *encoder) appendRecord(dst []byte, t *Txn, in *interner) ([]byte, int, error) {
	if e.idx == nil {
		e.idx = make(map[*Rel]int)
	}
	clear(e.idx)
	e.canon = e.canon[:0]
	e.keys = e.keys[:0]
	e.keyBuf = e.keyBuf[:0]

	// Pass 1: validate, collect distinct Rels, count values and bytes.
	nValues, nBytes := 0, 0
	var last *Rel
	lastIdx := -1
	for i := range t.Changes {
		c := &t.Changes[i]
		if err := validateChange(c); err != nil {
			return dst, 0, fmt.Errorf("changelog: txn %X change %d: %w", t.LSN, i, err)
		}
		orig := c.Rel
		var ri int
		if orig == last {
			ri = lastIdx
		} else if j, ok := e.idx[orig]; ok {
			ri = j
		} else {
			if err := validateRel(orig); err != nil {
				return dst, 0, fmt.Errorf("changelog: txn %X change %d: %w", t.LSN, i, err)
			}
			start := len(e.keyBuf)
			e.keyBuf = appendRel(e.keyBuf, orig)
			key := e.keyBuf[start:len(e.keyBuf):len(e.keyBuf)]
			canon := in.intern(key, orig)
			ri = -1
			for j, r := range e.canon {
				if r == canon {
					ri = j
					break
				}
			}
			if ri < 0 {
				ri = len(e.canon)
				e.canon = append(e.canon, canon)
				e.keys = append(e.keys, key)
			}
			e.idx[orig] = ri
		}
		last, lastIdx = orig, ri
		c.Rel = e.canon[ri]
		for _, row := range [2][]coltype.Value{c.Old, c.New} {
			nValues += len(row)
			for k := range row {
				if row[k].Kind == coltype.Text || row[k].Kind == coltype.Blob {
					nBytes += len(row[k].B)
				}
			}
		}
	}
	// (Each key was sliced with a capped capacity, so it stays valid even
	// when keyBuf grew into a new array afterwards.)

	// Pass 2: encode.
	start := len(dst)
	dst = append(dst, make([]byte, recHeaderLen)...)
	p := len(dst)
	dst = append(dst, payloadVersion)
	dst = binary.LittleEndian.AppendUint64(dst, t.LSN)
	dst = binary.AppendUvarint(dst, t.EndLSN)
	dst = binary.AppendUvarint(dst, uint64(t.Xid))
	dst = binary.AppendVarint(dst, t.CommitTime)
	dst = appendString(dst, t.Origin)
	dst = binary.AppendUvarint(dst, t.ClientTxnID)
	dst = binary.AppendUvarint(dst, uint64(nValues))
	dst = binary.AppendUvarint(dst, uint64(nBytes))
	dst = binary.AppendUvarint(dst, uint64(len(e.canon)))
	for _, k := range e.keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(t.Changes)))
	last, lastIdx = nil, -1
	for i := range t.Changes {
		c := &t.Changes[i]
		if c.Rel != last {
			for j, r := range e.canon {
				if r == c.Rel {
					lastIdx = j
					break
				}
			}
			last = c.Rel
		}
		dst = append(dst, byte(c.Op))
		dst = binary.AppendUvarint(dst, uint64(lastIdx))
		var f byte
		if c.Old != nil {
			f |= hasOld
		}
		if c.New != nil {
			f |= hasNew
		}
		dst = append(dst, f)
		dst = binary.AppendUvarint(dst, c.Version)
		if c.Old != nil {
			dst = appendRow(dst, c.Old)
		}
		if c.New != nil {
			dst = appendRow(dst, c.New)
		}
	}
	n := len(dst) - p
	if n > maxRecord {
		return dst[:start], 0, fmt.Errorf("changelog: txn %X encodes to %d bytes, over the %d byte limit", t.LSN, n, maxRecord)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[p:], castagnoli))
	return dst, nValues, nil
}

func validateChange(c *Change) error {
	if c.Rel == nil {
		return errors.New("nil Rel")
	}
	switch c.Op {
	case protocol.OpInsert, protocol.OpUpdate:
		if c.New == nil {
			return fmt.Errorf("op %d without New row", c.Op)
		}
	case protocol.OpDelete:
		if c.Old == nil {
			return errors.New("delete without Old row")
		}
	case OpTruncate:
		if c.Old != nil || c.New != nil {
			return errors.New("truncate with a row")
		}
	default:
		return fmt.Errorf("invalid op %d", c.Op)
	}
	nc := len(c.Rel.Columns)
	if c.Old != nil && len(c.Old) != nc {
		return fmt.Errorf("Old row has %d values, %s.%s has %d columns", len(c.Old), c.Rel.Schema, c.Rel.Table, nc)
	}
	if c.New != nil && len(c.New) != nc {
		return fmt.Errorf("New row has %d values, %s.%s has %d columns", len(c.New), c.Rel.Schema, c.Rel.Table, nc)
	}
	return nil
}

func validateRel(r *Rel) error {
	for _, k := range r.PK {
		if k < 0 || k >= len(r.Columns) {
			return fmt.Errorf("%s.%s: primary key index %d out of range", r.Schema, r.Table, k)
		}
	}
	return nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendRel(dst []byte, r *Rel) []byte {
	dst = appendRelV2(dst, r)
	attnums := relAttnums(r)
	dst = binary.AppendUvarint(dst, uint64(len(attnums)))
	for _, a := range attnums {
		dst = binary.AppendVarint(dst, int64(a))
	}
	return dst
}

// relAttnums returns r.Attnums if there is one per column, else nil
// (unknown).
func relAttnums(r *Rel) []int16 {
	if len(r.Attnums) != len(r.Columns) || len(r.Columns) == 0 {
		return nil
	}
	return r.Attnums
}

// appendRelV2 appends a rel as records of version 1 and 2 hold it (no
// attnums).
func appendRelV2(dst []byte, r *Rel) []byte {
	dst = appendString(dst, r.Schema)
	dst = appendString(dst, r.Table)
	dst = binary.AppendUvarint(dst, uint64(len(r.Columns)))
	for i := range r.Columns {
		c := &r.Columns[i]
		dst = appendString(dst, c.Name)
		dst = append(dst, byte(c.Type.Base))
		var f byte
		if c.Type.Array {
			f |= colArray
		}
		if c.NotNull {
			f |= colNotNull
		}
		dst = append(dst, f)
		dst = appendString(dst, c.Type.Name)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.PK)))
	for _, k := range r.PK {
		dst = binary.AppendUvarint(dst, uint64(k))
	}
	return dst
}

func appendRow(dst []byte, row []coltype.Value) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(row)))
	for i := range row {
		v := &row[i]
		switch v.Kind {
		case coltype.Null:
			dst = append(dst, byte(coltype.Null))
		case coltype.Integer:
			dst = append(dst, byte(coltype.Integer))
			dst = binary.AppendVarint(dst, v.I)
		case coltype.Real:
			dst = append(dst, byte(coltype.Real))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.F))
		case coltype.Text, coltype.Blob:
			dst = append(dst, byte(v.Kind))
			dst = binary.AppendUvarint(dst, uint64(len(v.B)))
			dst = append(dst, v.B...)
		default:
			// Unknown kinds are stored as Null rather than failing the
			// whole replication stream; coltype never produces them.
			dst = append(dst, byte(coltype.Null))
		}
	}
	return dst
}

// decoder reads a payload. Errors are sticky; reads after an error return
// zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", ErrCorrupt, what, d.off)
	}
	d.off = len(d.b)
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) byte1() byte {
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u64() uint64 {
	if d.remaining() < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.off < len(d.b) && d.b[d.off] < 0x80 {
		v := d.b[d.off]
		d.off++
		return uint64(v)
	}
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// bytes reads a length-prefixed byte string aliasing d.b.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(d.remaining()) {
		d.fail("length exceeds record")
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

func (d *decoder) str() string { return string(d.bytes()) }

// count reads a count of elements of at least minSize bytes each.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64(d.remaining()/minSize) {
		d.fail("count exceeds record")
		return 0
	}
	return int(n)
}

// txnHeader is the fixed part of a payload, decoded without the changes.
type txnHeader struct {
	Version     byte // payload version
	LSN, EndLSN uint64
	Xid         uint32
	CommitTime  int64
	Origin      string
	ClientTxnID uint64
}

func (d *decoder) header() txnHeader {
	var h txnHeader
	h.Version = d.byte1()
	if (h.Version < 1 || h.Version > payloadVersion) && d.err == nil {
		d.fail(fmt.Sprintf("unknown record version %d", h.Version))
	}
	h.LSN = d.u64()
	h.EndLSN = d.uvarint()
	x := d.uvarint()
	if x > math.MaxUint32 {
		d.fail("xid exceeds 32 bits")
	}
	h.Xid = uint32(x)
	h.CommitTime = d.varint()
	if h.Version >= 2 {
		h.Origin = d.str()
		h.ClientTxnID = d.uvarint()
	}
	return h
}

func decodeHeader(payload []byte) (txnHeader, error) {
	d := decoder{b: payload}
	h := d.header()
	return h, d.err
}

// decodeTxn decodes a payload into a new Txn whose Rels are interned in in.
// The Txn never aliases payload.
func decodeTxn(payload []byte, in *interner) (*Txn, error) {
	d := decoder{b: payload}
	h := d.header()
	t := &Txn{LSN: h.LSN, EndLSN: h.EndLSN, Xid: h.Xid, CommitTime: h.CommitTime, Origin: h.Origin, ClientTxnID: h.ClientTxnID}
	nValues := d.count(1)
	nBytes := d.count(1)
	nRels := d.count(1)
	var relArr [8]*Rel
	rels := relArr[:0]
	for range nRels {
		key := d.bytes()
		if d.err != nil {
			break
		}
		r := in.get(key)
		if r == nil {
			var err error
			if r, err = decodeRel(key, h.Version); err != nil {
				return nil, err
			}
			r = in.intern(key, r)
		}
		rels = append(rels, r)
	}
	nChanges := d.count(3)
	if d.err != nil {
		return nil, d.err
	}
	if nChanges > 0 {
		t.Changes = make([]Change, nChanges)
	}
	var vals []coltype.Value
	if nValues > 0 {
		vals = make([]coltype.Value, nValues)
	}
	var slab []byte
	if nBytes > 0 {
		slab = make([]byte, 0, nBytes)
	}
	row := func() []coltype.Value {
		n := d.count(1)
		if n > len(vals) {
			d.fail("row exceeds value count")
			return nil
		}
		if n == 0 {
			return []coltype.Value{}
		}
		r := vals[:n:n]
		vals = vals[n:]
		for i := range r {
			k := coltype.Kind(d.byte1())
			switch k {
			case coltype.Null:
			case coltype.Integer:
				r[i] = coltype.Value{Kind: k, I: d.varint()}
			case coltype.Real:
				r[i] = coltype.Value{Kind: k, F: math.Float64frombits(d.u64())}
			case coltype.Text, coltype.Blob:
				b := d.bytes()
				if len(b) > cap(slab)-len(slab) {
					d.fail("value bytes exceed total")
					return nil
				}
				r[i].Kind = k
				if len(b) > 0 {
					s := len(slab)
					slab = append(slab, b...)
					r[i].B = slab[s:len(slab):len(slab)]
				}
			default:
				d.fail(fmt.Sprintf("unknown value kind %d", k))
				return nil
			}
		}
		return r
	}
	for i := range t.Changes {
		c := &t.Changes[i]
		c.Op = protocol.Op(d.byte1())
		ri := d.uvarint()
		f := d.byte1()
		if d.err != nil {
			break
		}
		if ri >= uint64(len(rels)) {
			d.fail("rel index out of range")
			break
		}
		c.Rel = rels[ri]
		if h.Version >= 2 {
			c.Version = d.uvarint()
		}
		if f&hasOld != 0 {
			c.Old = row()
		}
		if f&hasNew != 0 {
			c.New = row()
		}
		// Only what Append accepts decodes: readers may rely on valid ops
		// and on rows of one value per column.
		if d.err == nil {
			if err := validateChange(c); err != nil {
				d.fail(fmt.Sprintf("change %d: %v", i, err))
				break
			}
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return t, nil
}

// decodeRel decodes a rel of a record of version ver.
func decodeRel(key []byte, ver byte) (*Rel, error) {
	d := decoder{b: key}
	r := &Rel{Schema: d.str(), Table: d.str()}
	if n := d.count(4); n > 0 {
		r.Columns = make([]protocol.Column, n)
	}
	for i := range r.Columns {
		c := &r.Columns[i]
		c.Name = d.str()
		c.Type.Base = coltype.Base(d.byte1())
		f := d.byte1()
		c.Type.Array = f&colArray != 0
		c.NotNull = f&colNotNull != 0
		c.Type.Name = d.str()
	}
	if n := d.count(1); n > 0 {
		r.PK = make([]int, n)
	}
	for i := range r.PK {
		k := d.uvarint()
		if k >= uint64(len(r.Columns)) {
			d.fail("primary key index out of range")
			break
		}
		r.PK[i] = int(k)
	}
	if ver >= 3 && d.err == nil {
		switch n := d.count(1); {
		case n == 0:
		case n != len(r.Columns):
			d.fail(fmt.Sprintf("%d attnums for %d columns", n, len(r.Columns)))
		default:
			r.Attnums = make([]int16, n)
			for i := range r.Attnums {
				a := d.varint()
				if a < math.MinInt16 || a > math.MaxInt16 {
					d.fail("attnum out of range")
					break
				}
				r.Attnums[i] = int16(a)
			}
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("trailing bytes in relation")
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// maxInterned bounds the interner; when it is full it starts afresh (Rels
// handed out earlier stay valid, later ones are new pointers).
const maxInterned = 4096

// interner maps the encoded form of a Rel to one shared *Rel, so that Txns
// appended in memory and Txns decoded from disk use the same pointer for the
// same table shape.
type interner struct {
	mu sync.RWMutex
	m  map[string]*Rel
}

func (in *interner) get(key []byte) *Rel {
	in.mu.RLock()
	r := in.m[string(key)]
	in.mu.RUnlock()
	return r
}

// intern returns the Rel interned under key, or interns a private copy of r
// (so that later changes to the caller's Rel cannot alter the log's).
func (in *interner) intern(key []byte, r *Rel) *Rel {
	if e := in.get(key); e != nil {
		return e
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if e := in.m[string(key)]; e != nil {
		return e
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]*Rel)
	}
	c := &Rel{Schema: r.Schema, Table: r.Table}
	if r.Columns != nil {
		c.Columns = append([]protocol.Column(nil), r.Columns...)
	}
	if r.PK != nil {
		c.PK = append([]int(nil), r.PK...)
	}
	if a := relAttnums(r); a != nil {
		c.Attnums = append([]int16(nil), a...)
	}
	in.m[string(key)] = c
	return c
}
