package server

import (
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

// TestRemapWriteJSONChanges: a write made against the layout described
// before a column drop names its columns by that layout; remapWrite moves
// them to the columns' indexes now, a ColumnJSONChanges bit staying with
// its column, and drops the dropped column's value.
func TestRemapWriteJSONChanges(t *testing.T) {
	cols := func(names ...string) []protocol.Column {
		var out []protocol.Column
		for _, n := range names {
			out = append(out, protocol.Column{Name: n, Type: coltype.Type{Base: coltype.JSONB}})
		}
		return out
	}
	sent := &changelog.Rel{Schema: "public", Table: "docs", Columns: cols("id", "junk", "body"), PK: []int{0}, Attnums: []int16{1, 2, 3}}
	cur := &changelog.Rel{Schema: "public", Table: "docs", Columns: cols("id", "body"), PK: []int{0}, Attnums: []int16{1, 3}}
	s := &session{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.described(sent)
	v := func(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
	gotCols, gotVals := s.remapWrite("public.docs", cur,
		[]uint32{2 | protocol.ColumnJSONChanges, 1}, []coltype.Value{v(`[["set",["a"],1]]`), v("junk")})
	if want := []uint32{1 | protocol.ColumnJSONChanges}; !reflect.DeepEqual(gotCols, want) {
		t.Fatalf("columns %v, want %v", gotCols, want)
	}
	if len(gotVals) != 1 || string(gotVals[0].B) != `[["set",["a"],1]]` {
		t.Fatalf("values %v", gotVals)
	}
}
