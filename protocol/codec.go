package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DecodeUp decodes one whole client frame. It returns an error wrapping
// ErrTooLarge for a frame over MaxUpFrame and ErrMalformed for any other
// invalid input. The result never aliases frame.
func DecodeUp(frame []byte) (Up, error) {
	if len(frame) > MaxUpFrame {
		return nil, fmt.Errorf("%w: %d-byte frame exceeds the %d-byte limit of client frames", ErrTooLarge, len(frame), MaxUpFrame)
	}
	if len(frame) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	d := decoder{b: frame, off: 1, typ: Type(frame[0])}
	var m Up
	switch d.typ {
	case TypeHello:
		m = d.hello()
	case TypeSubscribe:
		m = d.subscribe()
	case TypeUnsubscribe:
		m = d.unsubscribe()
	case TypeWrite:
		m = d.write()
	default:
		return nil, fmt.Errorf("%w: unknown client message type 0x%02x", ErrMalformed, frame[0])
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeDown decodes one whole service frame. It returns an error wrapping
// ErrTooLarge for a frame over MaxDownFrame and ErrMalformed for any other
// invalid input. The result never aliases frame.
func DecodeDown(frame []byte) (Down, error) {
	if len(frame) > MaxDownFrame {
		return nil, fmt.Errorf("%w: %d-byte frame exceeds the %d-byte limit of service frames", ErrTooLarge, len(frame), MaxDownFrame)
	}
	if len(frame) == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	d := decoder{b: frame, off: 1, typ: Type(frame[0])}
	var m Down
	switch d.typ {
	case TypeWelcome:
		m = d.welcome()
	case TypeRelation:
		m = d.relation()
	case TypeTxn:
		m = d.txn()
	case TypeSubscribed:
		m = d.subscribed()
	case TypeError:
		m = d.errorMsg()
	case TypeAck:
		m = d.ack()
	case TypeReject:
		m = d.reject()
	default:
		return nil, fmt.Errorf("%w: unknown service message type 0x%02x", ErrMalformed, frame[0])
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// decoder reads a frame front to back. The first error sticks: later reads
// return zero values, so decoding code can check d.err once at the end,
// except before allocating (see count).
type decoder struct {
	b   []byte
	off int
	typ Type // for error messages; 0 when decoding a lone value
	err error
}

func (d *decoder) fail(what string) { d.failAt(d.off, what) }

// failAt records an error about the item that starts at byte pos.
func (d *decoder) failAt(pos int, what string) {
	if d.err == nil {
		where := "value"
		if d.typ != 0 {
			where = d.typ.String() + " frame"
		}
		d.err = fmt.Errorf("%w: %s: %s at byte %d", ErrMalformed, where, what, pos)
	}
	d.off = len(d.b)
}

// finish reports the first error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)-d.off))
	}
	return d.err
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// uvarint reads an unsigned LEB128 varint. Encodings must be minimal (no
// trailing 0x80 groups), so that every message has exactly one encoding.
func (d *decoder) uvarint() uint64 {
	if d.off < len(d.b) && d.b[d.off] < 0x80 { // fast path, inlined
		v := d.b[d.off]
		d.off++
		return uint64(v)
	}
	return d.uvarintSlow()
}

func (d *decoder) uvarintSlow() uint64 {
	if d.err != nil {
		return 0
	}
	b := d.b[d.off:]
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		d.fail("truncated varint")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case b[n-1] == 0:
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return v
}

// varint reads a zigzag-encoded signed varint.
func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) u32() uint32 {
	pos := d.off
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.failAt(pos, "value exceeds 32 bits")
		return 0
	}
	return uint32(v)
}

func (d *decoder) byte1() byte {
	if d.off < len(d.b) {
		v := d.b[d.off]
		d.off++
		return v
	}
	d.fail("truncated")
	return 0
}

func (d *decoder) bool() bool {
	switch d.byte1() {
	case 0:
		return false
	case 1:
		return true
	}
	d.failAt(d.off-1, "bool is neither 0 nor 1")
	return false
}

// bytes reads a length-prefixed byte string. The result aliases the frame.
func (d *decoder) bytes() []byte {
	pos := d.off
	n := d.uvarint()
	if n > uint64(d.remaining()) {
		d.failAt(pos, "length exceeds frame")
		return nil
	}
	b := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return b
}

// string reads a length-prefixed string (a copy).
func (d *decoder) string() string { return string(d.bytes()) }

// count reads an element count and checks that count elements of at least
// minSize bytes each fit in the rest of the frame, so that allocating count
// elements costs O(len(frame)). It returns 0 on error.
func (d *decoder) count(minSize int) int {
	pos := d.off
	n := d.uvarint()
	if n > uint64(d.remaining()/minSize) {
		d.failAt(pos, "count exceeds frame")
		return 0
	}
	return int(n)
}

// strings reads a count and that many strings; nil when empty.
func (d *decoder) strings() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	s := make([]string, n)
	for i := range s {
		s[i] = d.string()
	}
	return s
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = appendString(dst, s)
	}
	return dst
}
