package changelog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

var (
	relItems = &Rel{
		Schema: "public", Table: "items",
		Columns: []protocol.Column{
			{Name: "id", Type: coltype.Type{Base: coltype.Int8, Name: "bigint"}, NotNull: true},
			{Name: "title", Type: coltype.Type{Base: coltype.TextType, Name: "text"}},
			{Name: "price", Type: coltype.Type{Base: coltype.Float8, Name: "double precision"}},
			{Name: "tags", Type: coltype.Type{Base: coltype.TextType, Array: true, Name: "text[]"}},
			{Name: "owner", Type: coltype.Type{Base: coltype.UUID, Name: "uuid"}, NotNull: true},
			{Name: "updated", Type: coltype.Type{Base: coltype.Timestamptz, Name: "timestamp with time zone"}},
		},
		PK: []int{0},
	}
	relUsers = &Rel{
		Schema: "app", Table: "users",
		Columns: []protocol.Column{
			{Name: "org", Type: coltype.Type{Base: coltype.Int4, Name: "integer"}, NotNull: true},
			{Name: "id", Type: coltype.Type{Base: coltype.Int4, Name: "integer"}, NotNull: true},
			{Name: "name", Type: coltype.Type{Base: coltype.TextType, Name: "character varying(100)"}},
			{Name: "avatar", Type: coltype.Type{Base: coltype.Bytea, Name: "bytea"}},
		},
		PK: []int{0, 1},
	}
)

func txt(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
func num(i int64) coltype.Value  { return coltype.Value{Kind: coltype.Integer, I: i} }

func itemRow(rng *rand.Rand, id int64) []coltype.Value {
	return []coltype.Value{
		num(id),
		txt(fmt.Sprintf("item %d %s", id, "some title text")),
		{Kind: coltype.Real, F: rng.Float64() * 100},
		txt(`["a","b"]`),
		{Kind: coltype.Blob, B: []byte("0123456789abcdef")},
		num(time.Now().UnixMicro()),
	}
}

func userRow(id int64) []coltype.Value {
	return []coltype.Value{num(1), num(id), txt("user name"), {}}
}

// makeTxn builds a realistic small txn with n changes.
func makeTxn(rng *rand.Rand, lsn uint64, n int) *Txn {
	t := &Txn{LSN: lsn, EndLSN: lsn + 40, Xid: uint32(lsn), CommitTime: time.Now().UnixMicro()}
	for i := range n {
		id := int64(lsn)*16 + int64(i)
		switch i % 4 {
		case 0:
			t.Changes = append(t.Changes, Change{Op: protocol.OpInsert, Rel: relItems, New: itemRow(rng, id)})
		case 1:
			t.Changes = append(t.Changes, Change{Op: protocol.OpUpdate, Rel: relItems, Old: itemRow(rng, id), New: itemRow(rng, id)})
		case 2:
			t.Changes = append(t.Changes, Change{Op: protocol.OpUpdate, Rel: relUsers, New: userRow(id)})
		case 3:
			t.Changes = append(t.Changes, Change{Op: protocol.OpDelete, Rel: relUsers, Old: userRow(id)})
		}
	}
	return t
}

func newRNG() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// appendN appends n txns with LSNs start, start+step, ... in batches of
// up to 8.
func appendN(t testing.TB, l *Log, rng *rand.Rand, start, step uint64, n int) []uint64 {
	t.Helper()
	var lsns []uint64
	var batch []*Txn
	for i := range n {
		lsn := start + uint64(i)*step
		batch = append(batch, makeTxn(rng, lsn, 1+i%5))
		lsns = append(lsns, lsn)
		if len(batch) == 1+i%8 || i == n-1 {
			if err := l.Append(batch...); err != nil {
				t.Fatalf("append %X: %v", lsn, err)
			}
			batch = batch[:0]
		}
	}
	return lsns
}

func mustOpen(t testing.TB, dir string, o *Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

// readAll reads with TryNext until the reader is at the head.
func readAll(t testing.TB, r *Reader) []uint64 {
	t.Helper()
	var got []uint64
	for {
		txn, ok, err := r.TryNext()
		if err != nil {
			t.Fatalf("read after %X: %v", r.Position(), err)
		}
		if !ok {
			return got
		}
		got = append(got, txn.LSN)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
