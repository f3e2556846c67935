package protocol

import (
	"encoding/binary"
	"math"

	"github.com/latticesync/lattice/coltype"
)

// AppendValue appends the wire encoding of v to dst: one byte Kind, then
// for Integer a zigzag varint, for Real 8 bytes little-endian IEEE 754
// bits, for Text and Blob a uvarint length and the bytes, for Null nothing.
// Fields that do not belong to v.Kind are ignored. A Value of an unknown
// Kind is written as its Kind byte alone, which decoders reject.
func AppendValue(dst []byte, v coltype.Value) []byte {
	dst = append(dst, byte(v.Kind))
	switch v.Kind {
	case coltype.Integer:
		dst = binary.AppendVarint(dst, v.I)
	case coltype.Real:
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v.F))
	case coltype.Text, coltype.Blob:
		dst = appendBytes(dst, v.B)
	}
	return dst
}

// DecodeValue decodes one value from the start of b and returns it with the
// number of bytes it used. Errors wrap ErrMalformed. The B of a Text or Blob
// value is a fresh copy (nil when empty) and never aliases b.
func DecodeValue(b []byte) (coltype.Value, int, error) {
	d := decoder{b: b}
	v := d.value()
	if d.err != nil {
		return coltype.Value{}, 0, d.err
	}
	if (v.Kind == coltype.Text || v.Kind == coltype.Blob) && len(v.B) > 0 {
		v.B = append([]byte(nil), v.B...)
	}
	return v, d.off, nil
}

// value reads one value. The B of a Text or Blob value aliases the frame.
func (d *decoder) value() coltype.Value {
	k := coltype.Kind(d.byte1())
	switch k {
	case coltype.Null:
		return coltype.Value{}
	case coltype.Integer:
		return coltype.Value{Kind: k, I: d.varint()}
	case coltype.Real:
		if d.remaining() < 8 {
			d.failAt(d.off-1, "truncated float")
			return coltype.Value{}
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
		return coltype.Value{Kind: k, F: f}
	case coltype.Text, coltype.Blob:
		b := d.bytes()
		if len(b) == 0 {
			return coltype.Value{Kind: k}
		}
		return coltype.Value{Kind: k, B: b}
	}
	if d.err == nil {
		d.failAt(d.off-1, "unknown value kind")
	}
	return coltype.Value{}
}
