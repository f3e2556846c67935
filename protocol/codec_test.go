package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/latticesync/lattice/coltype"
)

// allUp and allDown are every test message of each direction.
func allUp() []Up {
	ms := append([]Up(nil), upCases...)
	for _, g := range golden {
		if m, ok := g.msg.(Up); ok {
			ms = append(ms, m)
		}
	}
	return ms
}

func allDown() []Down {
	ms := append([]Down(nil), downCases...)
	for _, g := range golden {
		if m, ok := g.msg.(Down); ok {
			ms = append(ms, m)
		}
	}
	return ms
}

func TestRoundTripUp(t *testing.T) {
	for _, m := range allUp() {
		frame := m.Encode(nil)
		got, err := DecodeUp(frame)
		if err != nil {
			t.Errorf("DecodeUp(%s): %v", show(m), err)
			continue
		}
		if !equal(got, m) {
			t.Errorf("round trip:\n got %s\nwant %s", show(got), show(m))
		}
		// Encode appends.
		prefixed := m.Encode([]byte("xyz"))
		if !bytes.Equal(prefixed[3:], frame) || string(prefixed[:3]) != "xyz" {
			t.Errorf("Encode(%s) does not append", show(m))
		}
	}
}

func TestRoundTripDown(t *testing.T) {
	for _, m := range allDown() {
		frame := m.Encode(nil)
		got, err := DecodeDown(frame)
		if err != nil {
			t.Errorf("DecodeDown(%s): %v", show(m), err)
			continue
		}
		if !equal(got, m) {
			t.Errorf("round trip:\n got %s\nwant %s", show(got), show(m))
		}
		prefixed := m.Encode([]byte("xyz"))
		if !bytes.Equal(prefixed[3:], frame) || string(prefixed[:3]) != "xyz" {
			t.Errorf("Encode(%s) does not append", show(m))
		}
	}
}

func TestDecodedTxnDoesNotAliasFrame(t *testing.T) {
	m := &Txn{Changes: []Change{
		{Op: OpInsert, RelID: 1, Values: []coltype.Value{vtext("abc"), vblob(1, 2, 3)}},
		{Op: OpInsert, RelID: 1, Values: []coltype.Value{vtext("def"), vblob(4, 5, 6)}},
	}}
	frame := m.Encode(nil)
	got, err := DecodeDown(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = 0xAA
	}
	if !equal(got, m) {
		t.Fatalf("decoded Txn changed with its frame: %s", show(got))
	}
	// Appending to a decoded slice must not clobber its neighbour.
	tx := got.(*Txn)
	_ = append(tx.Changes[0].Values, vint(9))
	_ = append(tx.Changes[0].Values[0].B, 'Z')
	if !equal(tx, m) {
		t.Fatalf("append to decoded slices clobbered a neighbour: %s", show(tx))
	}
}

func TestValueEncoding(t *testing.T) {
	for _, tc := range []struct {
		v    coltype.Value
		want []byte
	}{
		{vnull(), []byte{0}},
		{vint(0), []byte{1, 0}},
		{vint(-1), []byte{1, 1}},
		{vint(1), []byte{1, 2}},
		{vint(-65), []byte{1, 0x81, 0x01}},
		{vreal(1), []byte{2, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
		{vreal(math.Float64frombits(0x7ff8_0000_dead_beef)), []byte{2, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0xf8, 0x7f}},
		{vtext("hi"), []byte{3, 2, 'h', 'i'}},
		{vblob(), []byte{4, 0}},
		// Fields that do not belong to the Kind are ignored.
		{coltype.Value{Kind: coltype.Null, I: 5, F: 1, B: []byte("x")}, []byte{0}},
		{coltype.Value{Kind: coltype.Integer, I: 2, B: []byte("x")}, []byte{1, 4}},
	} {
		got := AppendValue(nil, tc.v)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("AppendValue(%+v) = % x, want % x", tc.v, got, tc.want)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	for _, v := range specialValues() {
		b := AppendValue(nil, v)
		b = append(b, 0xEE, 0xEE) // following data is not consumed
		got, n, err := DecodeValue(b)
		if err != nil {
			t.Errorf("DecodeValue(% x): %v", b, err)
			continue
		}
		if n != len(b)-2 {
			t.Errorf("DecodeValue(% x) consumed %d bytes, want %d", b, n, len(b)-2)
		}
		if !equal(got, v) {
			t.Errorf("DecodeValue(% x) = %+v, want %+v", b, got, v)
		}
		if len(got.B) > 0 {
			for i := range b {
				b[i] = 0xAA
			}
			if !equal(got, v) {
				t.Errorf("DecodeValue result aliases its input")
			}
		}
	}
	for _, b := range [][]byte{
		nil, {5}, {0xff}, {1}, {1, 0x80}, {1, 0x80, 0x00}, {2, 0, 0, 0, 0, 0, 0, 0}, {3, 2, 'a'}, {4, 0x80},
		{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
	} {
		if _, _, err := DecodeValue(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeValue(% x) error = %v, want ErrMalformed", b, err)
		}
	}
}

// TestTruncated checks that every strict prefix of every valid frame is
// rejected, except a Subscribe cut exactly before its include trailer,
// which is the same Subscribe without includes.
func TestTruncated(t *testing.T) {
	for _, m := range allUp() {
		frame := m.Encode(nil)
		trailer := len(frame)
		if s, ok := m.(*Subscribe); ok {
			c := *s
			c.Shapes = make([]Shape, len(s.Shapes))
			for i := range s.Shapes {
				c.Shapes[i] = s.Shapes[i]
				c.Shapes[i].Include = nil
			}
			trailer = len(c.Encode(nil))
		}
		for n := range len(frame) {
			if n == trailer {
				continue
			}
			if got, err := DecodeUp(frame[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeUp(% x) (%d of %d bytes of %T) = %v, %v; want ErrMalformed", frame[:n], n, len(frame), m, show(got), err)
			}
		}
	}
	for _, m := range allDown() {
		frame := m.Encode(nil)
		valid := map[int]bool{} // shorter frames that are valid Relations
		if r, ok := m.(*Relation); ok {
			c := *r
			c.Columns = slices.Clone(r.Columns)
			for i := range c.Columns {
				c.Columns[i].JSONMerge = false
			}
			valid[len(c.Encode(nil))] = true // without the v3 trailer: a v2 Relation
			c.ColumnIDs = nil
			valid[len(c.Encode(nil))] = true // without the v2 trailer: a v1 Relation
		}
		for n := range len(frame) {
			if valid[n] {
				continue
			}
			if got, err := DecodeDown(frame[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeDown(% x) (%d of %d bytes of %T) = %v, %v; want ErrMalformed", frame[:n], n, len(frame), m, show(got), err)
			}
		}
	}
}

func TestTrailingBytes(t *testing.T) {
	for _, tail := range [][]byte{{0}, {0xff}, {1, 2, 3}} {
		for _, m := range allUp() {
			frame := append(m.Encode(nil), tail...)
			if _, err := DecodeUp(frame); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeUp(% x) error = %v; want ErrMalformed", frame, err)
			}
		}
		for _, m := range allDown() {
			frame := append(m.Encode(nil), tail...)
			if _, err := DecodeDown(frame); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeDown(% x) error = %v; want ErrMalformed", frame, err)
			}
		}
	}
}

func TestFrameLimits(t *testing.T) {
	// A valid frame of exactly the limit decodes; one byte more does not.
	hello := func(size int) []byte {
		m := &Hello{Version: Version, Token: strings.Repeat("t", size)}
		b := m.Encode(nil)
		return (&Hello{Version: Version, Token: strings.Repeat("t", size-(len(b)-size))}).Encode(nil)
	}
	frame := hello(MaxUpFrame)
	if len(frame) != MaxUpFrame {
		t.Fatalf("test frame has %d bytes, want %d", len(frame), MaxUpFrame)
	}
	if _, err := DecodeUp(frame); err != nil {
		t.Errorf("DecodeUp of a %d-byte frame: %v", len(frame), err)
	}
	frame = append(frame, 0)
	if _, err := DecodeUp(frame); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeUp of a %d-byte frame: %v, want ErrTooLarge", len(frame), err)
	}

	blob := func(size int) []byte {
		m := &Txn{Changes: []Change{{Op: OpInsert, Values: []coltype.Value{vbytes(make([]byte, size))}}}}
		over := len(m.Encode(nil)) - size
		m.Changes[0].Values[0].B = make([]byte, size-over)
		return m.Encode(nil)
	}
	frame = blob(MaxDownFrame)
	if len(frame) != MaxDownFrame {
		t.Fatalf("test frame has %d bytes, want %d", len(frame), MaxDownFrame)
	}
	if _, err := DecodeDown(frame); err != nil {
		t.Errorf("DecodeDown of a %d-byte frame: %v", len(frame), err)
	}
	frame = append(frame, 0)
	if _, err := DecodeDown(frame); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeDown of a %d-byte frame: %v, want ErrTooLarge", len(frame), err)
	}
	// The Up limit applies to Down messages sent up, too.
	if _, err := DecodeUp(frame[:MaxUpFrame+1]); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeUp of a %d-byte frame: %v, want ErrTooLarge", MaxUpFrame+1, err)
	}
}

func TestLargePayloads(t *testing.T) {
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	rows := benchTxn(2000)
	for _, m := range []Down{
		&Txn{LSN: 1, Flags: FlagFirst | FlagLast, Changes: []Change{{Op: OpInsert, RelID: 1, Values: []coltype.Value{vint(1), vbytes(big)}}}},
		rows,
		&Error{Code: ErrInternal, Message: strings.Repeat("é", 1<<20)},
	} {
		frame := m.Encode(nil)
		got, err := DecodeDown(frame)
		if err != nil {
			t.Fatalf("DecodeDown(%d-byte %T): %v", len(frame), m, err)
		}
		if !equal(got, m) {
			t.Fatalf("round trip of a %d-byte %T differs", len(frame), m)
		}
		// Sampled truncations (every length would be quadratic).
		for _, n := range []int{0, 1, 2, len(frame) / 3, len(frame) / 2, len(frame) - 9, len(frame) - 1} {
			if _, err := DecodeDown(frame[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeDown of %d of %d bytes: %v, want ErrMalformed", n, len(frame), err)
			}
		}
	}
}

func TestDecodeTxnAllocs(t *testing.T) {
	frame := benchTxn(1000).Encode(nil)
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := DecodeDown(frame); err != nil {
			t.Fatal(err)
		}
	})
	// The Txn, its Changes, one array of Values, one buffer of bytes.
	if allocs > 4 {
		t.Errorf("decoding a 1000-row Txn allocates %v times, want at most 4", allocs)
	}
}

// uv appends uvarints.
func uv(b []byte, vs ...uint64) []byte {
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func TestMalformed(t *testing.T) {
	up := byte(TypeHello)
	for _, tc := range []struct {
		name  string
		up    bool
		frame []byte
	}{
		{"empty up", true, nil},
		{"empty down", false, []byte{}},
		{"unknown type", true, []byte{0x00}},
		{"unknown type 0x7f", true, []byte{0x7f, 0}},
		{"down type sent up", true, (&Welcome{}).Encode(nil)},
		{"up type sent down", false, (&Hello{}).Encode(nil)},
		{"version over 16 bits", true, uv([]byte{up}, 1<<16, 0, 0, 0, 0)},
		{"non-minimal varint", true, []byte{up, 0x81, 0x00, 0, 0, 0, 0}},
		{"non-minimal zero", true, []byte{up, 0x80, 0x00, 0, 0, 0, 0}},
		{"varint overflow", true, []byte{up, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"varint too long", true, []byte{up, 1, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
		{"string past end", true, []byte{up, 1, 5, 'a', 'b'}},
		{"huge string length", true, uv([]byte{up, 1}, math.MaxUint64, 0, 0, 0)},
		{"req id over 32 bits", true, uv([]byte{byte(TypeUnsubscribe)}, 1<<32, 0)},
		{"bool 2", true, []byte{byte(TypeSubscribe), 1, 2, 0}},
		{"huge shape count", true, uv([]byte{byte(TypeSubscribe), 1, 0}, 1<<40, 0, 0, 0, 0)},
		{"shape count exceeds frame", true, []byte{byte(TypeSubscribe), 1, 0, 2, 0, 0, 0, 0}},
		{"param flag 2", true, []byte{byte(TypeSubscribe), 1, 0, 1, 0, 0, 0, 1, 2}},
		{"huge param count", true, uv([]byte{byte(TypeSubscribe), 1, 0, 1, 0, 0, 0}, 1<<62)},
		{"huge string count", false, uv([]byte{byte(TypeSubscribed), 1}, 1<<60)},
		{"welcome resync 0xff", false, []byte{byte(TypeWelcome), 0, 0xff, 0}},
		{"unknown base", false, []byte{byte(TypeRelation), 1, 0, 0, 1, 0, byte(maxBase) + 1, 0, 0, 0, 0}},
		{"array flag 2", false, []byte{byte(TypeRelation), 1, 0, 0, 1, 0, 1, 2, 0, 0, 0}},
		{"pk out of range", false, []byte{byte(TypeRelation), 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1}},
		{"pk without columns", false, []byte{byte(TypeRelation), 1, 0, 0, 0, 1, 0}},
		{"huge column count", false, uv([]byte{byte(TypeRelation), 1, 0, 0}, 1<<50, 0, 0, 0, 0, 0)},
		{"huge pk", false, uv([]byte{byte(TypeRelation), 1, 0, 0, 1, 0, 1, 0, 0, 0, 1}, math.MaxUint64)},
		{"empty JSONMerge trailer", false, append(relV2(), 0)},
		{"JSONMerge index out of range", false, append(relV2(), 1, 2)},
		{"JSONMerge not ascending", false, append(relV2(), 2, 1, 1)},
		{"JSONMerge count exceeds frame", false, append(relV2(), 3, 0)},
		{"unknown flag", false, []byte{byte(TypeTxn), 1, 0x10, 0, 0, 0}},
		{"huge reset count", false, uv([]byte{byte(TypeTxn), 1, 0, 0}, 1<<33, 0)},
		{"reset id over 32 bits", false, uv([]byte{byte(TypeTxn), 1, 0, 0, 1}, 1<<32, 0)},
		{"change count exceeds frame", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 2, 1, 1, 0, 0}},
		{"op 0", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 0, 1, 0, 0}},
		{"op 5", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 5, 1, 0, 0}},
		{"relid over 32 bits", false, uv([]byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1}, 1<<32, 0, 0)},
		{"value count exceeds frame", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1, 1, 0, 2, 0}},
		{"unknown kind", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1, 1, 0, 1, 5}},
		{"kind 0xff", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0xff}},
		{"short float", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1, 1, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0}},
		{"text past end", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 1, 1, 1, 0, 1, 3, 2, 'a'}},
		{"bad second change", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 2, 1, 1, 0, 1, 0, 9, 1, 0, 0}},
		{"bad value in second change", false, []byte{byte(TypeTxn), 1, 3, 0, 0, 0, 0, 2, 1, 1, 0, 1, 0, 1, 1, 0, 1, 7}},
		{"error fatal 2", false, []byte{byte(TypeError), 0, 0, 0, 2}},
	} {
		var err error
		if tc.up {
			_, err = DecodeUp(tc.frame)
		} else {
			_, err = DecodeDown(tc.frame)
		}
		t.Logf("%-28s %v", tc.name, err)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decode(% x) error = %v, want ErrMalformed", tc.name, tc.frame, err)
		} else if errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: error %v wraps ErrTooLarge", tc.name, err)
		}
	}
}

func TestTypeString(t *testing.T) {
	if s := TypeTxn.String(); s != "Txn" {
		t.Errorf("TypeTxn.String() = %q", s)
	}
	if s := Type(0x42).String(); s != "Type(0x42)" {
		t.Errorf("Type(0x42).String() = %q", s)
	}
	if s := OpMoveOut.String(); s != "move_out" {
		t.Errorf("OpMoveOut.String() = %q", s)
	}
	if s := (&Error{Code: ErrResync, Message: "x"}).Error(); s != "lattice: resync: x" {
		t.Errorf("Error.Error() = %q", s)
	}
}

// relV2 is a version 2 Relation frame of two columns, for the JSONMerge
// trailer's malformed cases.
func relV2() []byte {
	r := &Relation{RelID: 1, Table: "t", Columns: []Column{{Name: "a", Type: coltype.Type{Base: coltype.Int8}}, {Name: "b", Type: coltype.Type{Base: coltype.JSONB}}},
		PK: []int{0}, ColumnIDs: []uint32{1, 2}}
	return r.Encode(nil)
}
