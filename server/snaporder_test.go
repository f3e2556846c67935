package server

import (
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

func TestSnapshotOrder(t *testing.T) {
	col := func(name string, b coltype.Base, array bool) protocol.Column {
		return protocol.Column{Name: name, Type: coltype.Type{Base: b, Array: array}}
	}
	for _, tc := range []struct {
		name string
		cols []protocol.Column
		pk   []int
		want string
	}{
		{"bigint", []protocol.Column{col("id", coltype.Int8, false), col("t", coltype.TextType, false)}, []int{0}, ` ORDER BY r."id"`},
		{"uuid", []protocol.Column{col("t", coltype.TextType, false), col("id", coltype.UUID, false)}, []int{1}, ` ORDER BY r."id"`},
		{"text", []protocol.Column{col("Key", coltype.TextType, false)}, []int{0}, ` ORDER BY r."Key" COLLATE "C"`},
		{"composite", []protocol.Column{col("a", coltype.Int4, false), col("b", coltype.TextType, false)}, []int{1, 0}, ` ORDER BY r."b" COLLATE "C", r."a"`},
		{"timestamptz", []protocol.Column{col("at", coltype.Timestamptz, false)}, []int{0}, ""},
		{"numeric in composite", []protocol.Column{col("a", coltype.Int4, false), col("n", coltype.Numeric, false)}, []int{0, 1}, ""},
		{"array", []protocol.Column{col("a", coltype.Int4, true)}, []int{0}, ""},
	} {
		rel := &changelog.Rel{Schema: "public", Table: "t", Columns: tc.cols, PK: tc.pk}
		if got := snapshotOrder(rel); got != tc.want {
			t.Errorf("%s: snapshotOrder = %q, want %q", tc.name, got, tc.want)
		}
	}
}
