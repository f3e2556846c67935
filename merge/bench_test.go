package merge

import (
	"testing"

	"github.com/latticesync/lattice/coltype"
)

// benchRow is a typical 10-column row: inserted by one client, later
// updated by another and by a plain SQL write in Postgres; the retired tags
// not compacted yet.
func benchRow() Row {
	ins := Stamp{HLC: MakeHLC(1_700_000_000_000, 0), Origin: "client-7f3a9c1e"}
	up1 := Stamp{HLC: MakeHLC(1_700_000_050_000, 3), Origin: "client-22b0d4aa"}
	up2 := Stamp{HLC: MakeHLC(1_700_000_090_000, 0), Origin: "pg:0/16B3748"}
	vals := []coltype.Value{
		{Kind: coltype.Integer, I: 42},
		{Kind: coltype.Text, B: []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},
		{Kind: coltype.Text, B: []byte("Fix the flux capacitor")},
		{Kind: coltype.Integer, I: 0},
		{Kind: coltype.Real, F: 3.25},
		{Kind: coltype.Text, B: []byte("2024-01-02 13:04:05.123456Z")},
		{},
		{Kind: coltype.Blob, B: []byte{1, 2, 3}},
		{Kind: coltype.Text, B: []byte("todo")},
		{Kind: coltype.Integer, I: 7},
	}
	set := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	r := Apply(Row{}, Op{Kind: Upsert, Stamp: ins, Set: set, Values: vals})
	r = Apply(r, Op{Kind: Upsert, Stamp: up1, Set: []int{2, 8}, Values: []coltype.Value{txt("Fix it"), txt("doing")}, Seen: r.Live()})
	r = Apply(r, Op{Kind: Upsert, Stamp: up2, Set: []int{3}, Values: []coltype.Value{i64(1)}, Seen: r.Live()})
	return r
}

func BenchmarkApply(b *testing.B) {
	r := benchRow()
	o := Op{
		Kind:   Upsert,
		Stamp:  Stamp{HLC: MakeHLC(1_700_000_100_000, 0), Origin: "client-7f3a9c1e"},
		Set:    []int{8},
		Values: []coltype.Value{txt("done")},
		Seen:   r.Live(),
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Apply(r, o)
	}
}

func BenchmarkMerge(b *testing.B) {
	r := benchRow()
	s := Apply(r, Op{Kind: Upsert, Stamp: Stamp{HLC: MakeHLC(1_700_000_100_000, 0), Origin: "client-7f3a9c1e"},
		Set: []int{8}, Values: []coltype.Value{txt("done")}, Seen: r.Live()})
	b.ReportAllocs()
	for b.Loop() {
		_ = Merge(r, s)
	}
}

func BenchmarkAppendMeta(b *testing.B) {
	r := benchRow()
	buf := r.AppendMeta(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendMeta(buf[:0])
	}
}

func BenchmarkDecodeMeta(b *testing.B) {
	enc := benchRow().AppendMeta(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := DecodeMeta(enc); err != nil {
			b.Fatal(err)
		}
	}
}
