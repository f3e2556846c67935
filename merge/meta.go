package merge

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Row metadata encoding, version 1 (see README.md, "Metadata encoding"):
//
//	version  byte = 1
//	origins  uvarint n, then n × (uvarint len, len bytes)
//	cols     uvarint n, then n × (uvarint ref [, varint delta])
//	         ref 0: the zero stamp (never written), no delta follows;
//	         ref k > 0: origin k-1, then the HLC as a zigzag varint of its
//	         difference (mod 2^64) from the HLC of the previous non-zero
//	         column (0 for the first)
//	adds     uvarint n, then n × (uvarint origin, uvarint delta): the HLC as
//	         its difference from the previous entry's HLC (0 for the first);
//	         entries in Stamp order, unique
//	removes  as adds
//
// Origins are listed in order of first use (cols, adds, removes), so equal
// rows encode to equal bytes.

const metaVersion = 1

// ErrMeta is wrapped by every error DecodeMeta returns.
var ErrMeta = errors.New("merge: malformed row metadata")

func metaErr(what string) error { return fmt.Errorf("%w: %s", ErrMeta, what) }

// interner assigns origin indexes in order of first use. Its methods take
// and return it by value, so that a table on the caller's stack stays there.
type interner struct {
	list  []string
	index map[string]int // built once list outgrows a linear search
}

func (t interner) lookup(o string) (int, bool) {
	if t.index != nil {
		i, ok := t.index[o]
		return i, ok
	}
	for i, s := range t.list {
		if s == o {
			return i, true
		}
	}
	return 0, false
}

func (t interner) add(o string) interner {
	if _, ok := t.lookup(o); ok {
		return t
	}
	t.list = append(t.list, o)
	if t.index != nil {
		t.index[o] = len(t.list) - 1
	} else if len(t.list) > 32 {
		t.index = make(map[string]int, 2*len(t.list))
		for i, s := range t.list {
			t.index[s] = i
		}
	}
	return t
}

// AppendMeta appends the encoding of r's metadata (Cols, Adds and Removes;
// not Values) to dst and returns the extended slice. Origins are stored once
// each, in a table at the start; HLCs are delta-encoded as varints. A column
// written by the newest transaction of an origin that wrote the previous
// column costs 2 bytes, a never-written column 1 byte.
func (r Row) AppendMeta(dst []byte) []byte {
	adds, removes := asSet(r.Adds), asSet(r.Removes)
	var small [16]string
	t := interner{list: small[:0]}
	for _, s := range r.Cols {
		if !s.IsZero() {
			t = t.add(s.Origin)
		}
	}
	for _, s := range adds {
		t = t.add(s.Origin)
	}
	for _, s := range removes {
		t = t.add(s.Origin)
	}

	dst = append(dst, metaVersion)
	dst = binary.AppendUvarint(dst, uint64(len(t.list)))
	for _, o := range t.list {
		dst = binary.AppendUvarint(dst, uint64(len(o)))
		dst = append(dst, o...)
	}

	dst = binary.AppendUvarint(dst, uint64(len(r.Cols)))
	var prev HLC
	for _, s := range r.Cols {
		if s.IsZero() {
			dst = append(dst, 0)
			continue
		}
		k, _ := t.lookup(s.Origin)
		dst = binary.AppendUvarint(dst, uint64(k)+1)
		dst = binary.AppendVarint(dst, int64(s.HLC-prev))
		prev = s.HLC
	}
	dst = appendStampSet(dst, t, adds)
	return appendStampSet(dst, t, removes)
}

func appendStampSet(dst []byte, t interner, set []Stamp) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(set)))
	var prev HLC
	for _, s := range set {
		k, _ := t.lookup(s.Origin)
		dst = binary.AppendUvarint(dst, uint64(k))
		dst = binary.AppendUvarint(dst, uint64(s.HLC-prev))
		prev = s.HLC
	}
	return dst
}

// metaReader reads the encoding; the first error sticks.
type metaReader struct {
	b   []byte
	off int
	err error
}

func (r *metaReader) fail(what string) {
	if r.err == nil {
		r.err = metaErr(what)
	}
	r.off = len(r.b)
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

func (r *metaReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

// count reads a length that must not exceed the bytes left divided by
// minSize (each entry takes at least minSize bytes), which bounds every
// allocation by the size of the input.
func (r *metaReader) count(minSize int) int {
	v := r.uvarint()
	if v > uint64((len(r.b)-r.off)/minSize) {
		r.fail("count exceeds input")
		return 0
	}
	return int(v)
}

// DecodeMeta decodes what AppendMeta encoded. It never panics, rejects
// trailing bytes and sets that are not sorted and unique, and allocates at
// most a small multiple of len(b). The returned slices are nil when empty
// and share no memory with b.
func DecodeMeta(b []byte) (cols, adds, removes []Stamp, err error) {
	if len(b) == 0 {
		return nil, nil, nil, metaErr("empty")
	}
	if b[0] != metaVersion {
		return nil, nil, nil, metaErr("unknown version")
	}
	r := metaReader{b: b, off: 1}

	// Origins: one string holding the whole table, sliced per origin.
	norig := r.count(1)
	start := r.off
	for range norig {
		n := r.uvarint()
		if n > uint64(len(b)-r.off) {
			r.fail("origin exceeds input")
			break
		}
		r.off += int(n)
	}
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	var small [16]string
	origins := small[:0]
	if norig > len(small) {
		origins = make([]string, 0, norig)
	}
	table := string(b[start:r.off])
	for sub := (metaReader{b: b[start:r.off]}); len(origins) < norig; {
		n := int(sub.uvarint())
		origins = append(origins, table[sub.off:sub.off+n])
		sub.off += n
	}

	// First pass: structure and counts; second pass: fill.
	body := r.off
	nc, na, nr := r.scan(norig)
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	if r.off != len(b) {
		return nil, nil, nil, metaErr("trailing bytes")
	}
	buf := make([]Stamp, nc+na+nr)
	r.off = body
	cols, adds, removes = buf[:nc:nc], buf[nc:nc+na:nc+na], buf[nc+na:]
	r.fill(origins, cols, adds, removes)
	if !isSet(adds) || !isSet(removes) {
		return nil, nil, nil, metaErr("tags not sorted and unique")
	}
	if nc == 0 {
		cols = nil
	}
	if na == 0 {
		adds = nil
	}
	if nr == 0 {
		removes = nil
	}
	return cols, adds, removes, nil
}

// scan checks the cols, adds and removes sections and returns their sizes.
func (r *metaReader) scan(norig int) (nc, na, nr int) {
	nc = r.count(1)
	for range nc {
		k := r.uvarint()
		if k > uint64(norig) {
			r.fail("origin index out of range")
		}
		if k != 0 {
			r.varint()
		}
	}
	na = r.scanSet(norig)
	nr = r.scanSet(norig)
	return nc, na, nr
}

func (r *metaReader) scanSet(norig int) int {
	n := r.count(2)
	var h HLC
	for range n {
		if r.uvarint() >= uint64(norig) {
			r.fail("origin index out of range")
		}
		d := HLC(r.uvarint())
		if h+d < h {
			r.fail("HLC overflow")
		}
		h += d
	}
	return n
}

// fill decodes the sections checked by scan.
func (r *metaReader) fill(origins []string, cols, adds, removes []Stamp) {
	r.uvarint()
	var prev HLC
	for i := range cols {
		k := r.uvarint()
		if k == 0 {
			continue
		}
		prev += HLC(r.varint())
		cols[i] = Stamp{HLC: prev, Origin: origins[k-1]}
	}
	r.fillSet(origins, adds)
	r.fillSet(origins, removes)
}

func (r *metaReader) fillSet(origins []string, set []Stamp) {
	r.uvarint()
	var h HLC
	for i := range set {
		k := r.uvarint()
		h += HLC(r.uvarint())
		set[i] = Stamp{HLC: h, Origin: origins[k]}
	}
}
