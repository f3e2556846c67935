package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// The fuzzers check that decoding never panics, that errors wrap
// ErrMalformed or ErrTooLarge, and that every accepted frame is the unique
// encoding of its message: re-encoding gives the same bytes, and decoding
// those gives an equal message. They also check that a decoded message does
// not alias its frame.
//
//	go test ./protocol -run=^$ -fuzz=FuzzDecodeUp -fuzztime=60s
//	go test ./protocol -run=^$ -fuzz=FuzzDecodeDown -fuzztime=60s

func FuzzDecodeUp(f *testing.F) {
	for _, b := range goldenFrames(f) {
		f.Add(b)
	}
	for _, m := range upCases {
		f.Add(m.Encode(nil))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkDecode(t, frame, func(b []byte) (interface{ Encode([]byte) []byte }, error) {
			m, err := DecodeUp(b)
			if err != nil {
				return nil, err
			}
			return m, nil
		})
	})
}

func FuzzDecodeDown(f *testing.F) {
	for _, b := range goldenFrames(f) {
		f.Add(b)
	}
	for _, m := range downCases {
		f.Add(m.Encode(nil))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkDecode(t, frame, func(b []byte) (interface{ Encode([]byte) []byte }, error) {
			m, err := DecodeDown(b)
			if err != nil {
				return nil, err
			}
			return m, nil
		})
	})
}

func checkDecode(t *testing.T, frame []byte, decode func([]byte) (interface{ Encode([]byte) []byte }, error)) {
	buf := bytes.Clone(frame)
	m, err := decode(buf)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error %v wraps neither ErrMalformed nor ErrTooLarge", err)
		}
		return
	}
	// Scribble over the frame: m must not change.
	for i := range buf {
		buf[i] ^= 0xff
	}
	enc := m.Encode(nil)
	if !bytes.Equal(enc, frame) {
		t.Fatalf("decoded %s from\n% x\nwhich encodes as\n% x", show(m), frame, enc)
	}
	m2, err := decode(enc)
	if err != nil {
		t.Fatalf("decoding the re-encoded %s: %v", show(m), err)
	}
	if !equal(m, m2) {
		t.Fatalf("re-encoding changed the message:\n got %s\nwant %s", show(m2), show(m))
	}
}

// FuzzDecodeValue: DecodeValue (row keys the service keeps as encoded
// values, and the value codec inside every frame) never panics, errors
// wrap ErrMalformed, it uses at most the bytes it was given, the bytes it
// used are exactly AppendValue of the value (the encoding is canonical),
// and the value does not alias its input.
//
//	go test ./protocol -run=^$ -fuzz=FuzzDecodeValue -fuzztime=60s
func FuzzDecodeValue(f *testing.F) {
	for _, v := range specialValues() {
		f.Add(AppendValue(nil, v))
	}
	f.Add([]byte{})
	f.Add([]byte{5})
	f.Add([]byte{1, 0x80, 0x00})
	f.Add([]byte{3, 5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		buf := bytes.Clone(b)
		v, n, err := DecodeValue(buf)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || n != 0 {
				t.Fatalf("error %v (n %d) does not wrap ErrMalformed", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		if enc := AppendValue(nil, v); !bytes.Equal(enc, b[:n]) {
			t.Fatalf("decoded %v from % x, which encodes as % x", v, b[:n], enc)
		}
		want := AppendValue(nil, v)
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !bytes.Equal(AppendValue(nil, v), want) {
			t.Fatalf("the value aliases its input")
		}
	})
}
