package changelog

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/latticesync/lattice/protocol"
)

// relUsersAttnums is relUsers with Postgres attnums (a column dropped
// before "name": 4 is missing).
var relUsersAttnums = func() *Rel {
	r := *relUsers
	r.Attnums = []int16{1, 2, 3, 5}
	return &r
}()

// TestAttnumsStored: Rel.Attnums survive the record encoding (the local
// log, reopened, and the Codec of other Stores such as the JetStream log);
// two layouts equal but for their attnums (a column dropped and added
// again under its name) stay two Rels; attnums not one per column are
// stored as unknown.
func TestAttnumsStored(t *testing.T) {
	other := *relUsersAttnums
	other.Attnums = []int16{1, 2, 6, 5}
	bad := *relUsers
	bad.Attnums = []int16{1}
	txn := &Txn{LSN: 1, EndLSN: 2, Changes: []Change{
		{Op: protocol.OpInsert, Rel: relUsersAttnums, New: userRow(1)},
		{Op: protocol.OpInsert, Rel: &other, New: userRow(2)},
		{Op: protocol.OpInsert, Rel: &bad, New: userRow(3)},
		{Op: protocol.OpInsert, Rel: relUsers, New: userRow(4)},
	}}
	check := func(what string, got *Txn) {
		t.Helper()
		want := [][]int16{{1, 2, 3, 5}, {1, 2, 6, 5}, nil, nil}
		for i, c := range got.Changes {
			if !slices.Equal(c.Rel.Attnums, want[i]) {
				t.Errorf("%s: change %d: attnums %v, want %v", what, i, c.Rel.Attnums, want[i])
			}
		}
		if got.Changes[0].Rel == got.Changes[1].Rel {
			t.Errorf("%s: layouts with other attnums share a Rel", what)
		}
		if got.Changes[2].Rel != got.Changes[3].Rel {
			t.Errorf("%s: layouts with unknown attnums are two Rels", what)
		}
	}

	var enc, dec Codec
	rec, err := enc.Encode(nil, cloneTxn(txn))
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.Decode(rec)
	if err != nil {
		t.Fatal(err)
	}
	check("codec", got)

	dir := filepath.Join(t.TempDir(), "log")
	l := mustOpen(t, dir, nil)
	if err := l.Append(cloneTxn(txn)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = mustOpen(t, dir, nil)
	defer l.Close()
	got, ok, err := l.Reader(0).TryNext()
	if err != nil || !ok {
		t.Fatalf("read the reopened log: %v %v", ok, err)
	}
	check("log reopened", got)
}
