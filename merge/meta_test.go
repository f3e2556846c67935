package merge

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func stampsEqual(a, b []Stamp) bool { return slices.Equal(a, b) }

func checkRoundTrip(t testing.TB, r Row) []byte {
	t.Helper()
	prefix := []byte("prefix")
	enc := r.AppendMeta(slices.Clip(prefix))
	if !bytes.HasPrefix(enc, prefix) {
		t.Fatal("AppendMeta clobbered dst")
	}
	enc = enc[len(prefix):]
	cols, adds, removes, err := DecodeMeta(enc)
	if err != nil {
		t.Fatalf("DecodeMeta(AppendMeta(%s)) = %v", rowString(r), err)
	}
	wantCols := r.Cols
	if len(wantCols) == 0 {
		wantCols = nil
	}
	if !stampsEqual(cols, wantCols) || !stampsEqual(adds, asSet(r.Adds)) || !stampsEqual(removes, asSet(r.Removes)) {
		t.Fatalf("round trip of %s gives cols %v adds %v removes %v", rowString(r), cols, adds, removes)
	}
	return enc
}

func TestMetaRoundTrip(t *testing.T) {
	forCases(t, 5000, func(t *testing.T, g *gen) bool {
		r := g.state()
		if g.r.IntN(4) == 0 {
			r.Adds = g.set(nil, 6, true) // unsorted input is normalized
		}
		if g.r.IntN(10) == 0 {
			for i := range 40 { // many origins: past the linear interning
				r.Adds = append(r.Adds, Stamp{HLC: MakeHLC(int64(i), 0), Origin: string(rune('A' + i))})
			}
		}
		if g.r.IntN(10) == 0 {
			r.Removes = append(r.Removes, Stamp{HLC: ^HLC(0), Origin: "max"}) // extreme HLC deltas
			r.Cols = append(r.Cols, Stamp{HLC: ^HLC(0), Origin: "x"}, Stamp{HLC: 1, Origin: ""})
		}
		enc := checkRoundTrip(t, r)
		// Deterministic: equal states encode to equal bytes.
		if again := r.Clone().AppendMeta(nil); !bytes.Equal(again, enc) {
			t.Errorf("encoding not deterministic")
			return false
		}
		return true
	})
}

func TestMetaGolden(t *testing.T) {
	r := Row{
		Cols:    []Stamp{st(1, "a"), {}, st(1, "a"), st(2, "bb")},
		Adds:    []Stamp{st(2, "bb")},
		Removes: []Stamp{st(1, "a")},
	}
	want := []byte{
		1,                      // version
		2, 1, 'a', 2, 'b', 'b', // origins
		4,                // cols
		1, 0x80, 0x80, 8, // a, +1<<16 zigzag = 0x20000
		0,    // zero stamp
		1, 0, // a, same HLC
		2, 0x80, 0x80, 8, // bb, +1<<16
		1, 1, 0x80, 0x80, 8, // adds: bb@2
		1, 0, 0x80, 0x80, 4, // removes: a@1
	}
	if got := r.AppendMeta(nil); !bytes.Equal(got, want) {
		t.Fatalf("AppendMeta = % x\nwant          % x", got, want)
	}
	checkRoundTrip(t, r)
}

func TestDecodeMetaErrors(t *testing.T) {
	valid := Row{Cols: []Stamp{st(1, "a")}, Adds: []Stamp{st(1, "a"), st(2, "b")}, Removes: []Stamp{st(1, "a")}}.AppendMeta(nil)
	for n := range len(valid) {
		if _, _, _, err := DecodeMeta(valid[:n]); err == nil {
			t.Errorf("prefix of %d bytes decoded", n)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{2, 0, 0, 0, 0}},
		{"trailing bytes", append(slices.Clip(valid), 0)},
		{"origin count beyond input", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0}},
		{"origin beyond input", []byte{1, 1, 9, 'a', 0, 0, 0}},
		{"col count beyond input", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0}},
		{"col origin out of range", []byte{1, 1, 1, 'a', 1, 2, 0, 0, 0}},
		{"add origin out of range", []byte{1, 1, 1, 'a', 0, 1, 1, 0, 0}},
		{"adds not sorted", []byte{1, 1, 1, 'a', 0, 2, 0, 5, 0, 0, 0}}, // a@5, a@5: duplicate
		{"removes HLC overflow", []byte{1, 1, 1, 'a', 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1}},
		{"overlong varint", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
	} {
		cols, adds, removes, err := DecodeMeta(tc.b)
		if err == nil || !errors.Is(err, ErrMeta) || cols != nil || adds != nil || removes != nil {
			t.Errorf("%s: got %v %v %v %v", tc.name, cols, adds, removes, err)
		}
	}
	// Unused and repeated origins are accepted.
	cols, _, _, err := DecodeMeta([]byte{1, 3, 1, 'a', 1, 'a', 0, 1, 2, 4, 0, 0})
	if err != nil || len(cols) != 1 || cols[0] != (Stamp{HLC: 2, Origin: "a"}) {
		t.Fatalf("got %v %v", cols, err)
	}
}

func TestDecodeMetaAllocs(t *testing.T) {
	r := benchRow()
	enc := r.AppendMeta(nil)
	allocs := testing.AllocsPerRun(100, func() { DecodeMeta(enc) })
	if allocs > 2 {
		t.Errorf("DecodeMeta: %v allocs, want <= 2", allocs)
	}
	buf := make([]byte, 0, 256)
	if allocs := testing.AllocsPerRun(100, func() { r.AppendMeta(buf[:0]) }); allocs > 0 {
		t.Errorf("AppendMeta into a large enough buffer: %v allocs", allocs)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	g := newGen(1)
	for range 20 {
		r := g.state()
		f.Add(r.AppendMeta(nil))
	}
	f.Add(benchRow().AppendMeta(nil))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{1, 3, 1, 'a', 1, 'a', 0, 1, 2, 4, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cols, adds, removes, err := DecodeMeta(b)
		if err != nil {
			return
		}
		if len(cols)+len(adds)+len(removes) > len(b) {
			t.Fatalf("%d stamps from %d bytes", len(cols)+len(adds)+len(removes), len(b))
		}
		r := Row{Cols: cols, Adds: adds, Removes: removes}
		enc := checkRoundTrip(t, r)
		cols2, adds2, removes2, _ := DecodeMeta(enc)
		if again := (Row{Cols: cols2, Adds: adds2, Removes: removes2}).AppendMeta(nil); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding not a fixed point:\n% x\n% x", enc, again)
		}
	})
}
