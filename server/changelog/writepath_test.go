package changelog

import (
	"context"
	"testing"
)

// TestWritePathFields: a transaction's client origin and the rows'
// versions survive the log, in memory and on disk.
func TestWritePathFields(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, nil)
	rng := newRNG()
	tx := makeTxn(rng, 100, 3)
	tx.Origin, tx.ClientTxnID = "c-1", 42
	for i := range tx.Changes {
		tx.Changes[i].Version = uint64(7 + i)
	}
	trunc := &Txn{LSN: 200, EndLSN: 210, Changes: []Change{{Op: OpTruncate, Rel: tx.Changes[0].Rel}}}
	if err := l.Append(tx, trunc); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		r := l.Reader(0)
		defer r.Close()
		got, err := r.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got.Origin != "c-1" || got.ClientTxnID != 42 {
			t.Fatalf("origin %q txn %d", got.Origin, got.ClientTxnID)
		}
		for i, c := range got.Changes {
			if c.Version != uint64(7+i) {
				t.Fatalf("change %d version %d", i, c.Version)
			}
		}
		got, err = r.Next(context.Background())
		if err != nil || len(got.Changes) != 1 || got.Changes[0].Op != OpTruncate || got.Changes[0].Old != nil {
			t.Fatalf("truncate: %+v %v", got, err)
		}
	}
	check(l)
	l.Close()
	// From disk, with a memory tail that holds nothing.
	l2 := mustOpen(t, dir, &Options{MemoryBytes: -1})
	defer l2.Close()
	check(l2)
}
