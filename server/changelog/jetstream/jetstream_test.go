package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/natstest"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/changelog/jetstream"
)

var rel = &changelog.Rel{Schema: "public", Table: "items",
	Columns: []protocol.Column{{Name: "id", Type: coltype.Type{Base: coltype.Int8, Name: "bigint"}, NotNull: true}, {Name: "title", Type: coltype.Type{Base: coltype.TextType, Name: "text"}}},
	PK:      []int{0}}

func txn(lsn uint64) *changelog.Txn {
	return &changelog.Txn{LSN: lsn, EndLSN: lsn + 1, Xid: uint32(lsn), CommitTime: int64(lsn) * 1000,
		Changes: []changelog.Change{{Op: protocol.OpInsert, Rel: rel, Version: 1,
			New: []coltype.Value{{Kind: coltype.Integer, I: int64(lsn)}, {Kind: coltype.Text, B: []byte(fmt.Sprintf("row %d", lsn))}}}}}
}

func open(t *testing.T, url string, opts jetstream.Options) *jetstream.Log {
	t.Helper()
	opts.URL = url
	l, err := jetstream.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readAll(t *testing.T, c changelog.Cursor, n int) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []uint64
	for range n {
		tx, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if v := tx.Changes[0].New[1]; string(v.B) != fmt.Sprintf("row %d", tx.LSN) {
			t.Fatalf("txn %d holds %q", tx.LSN, v.B)
		}
		got = append(got, tx.LSN)
	}
	return got
}

func lsns(from, to, step uint64) []uint64 {
	var out []uint64
	for l := from; l <= to; l += step {
		out = append(out, l)
	}
	return out
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAppendAndFollow: an appender's txns reach a second Log (another
// service replica) in order, readers resume from any position (from the
// in-memory tail or fetched from the stream), and a reopened Log has the
// same id and head.
func TestAppendAndFollow(t *testing.T) {
	ns := natstest.Start(t)
	a := open(t, ns.URL(), jetstream.Options{TailTxns: 5})
	b := open(t, ns.URL(), jetstream.Options{TailTxns: 5})
	if a.ID() == "" || a.ID() != b.ID() {
		t.Fatalf("ids %q and %q: want one log id", a.ID(), b.ID())
	}
	live := b.Cursor(0)
	for lsn := uint64(10); lsn <= 200; lsn += 10 {
		if err := a.Append(txn(lsn)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readAll(t, live, 20); !equal(got, lsns(10, 200, 10)) {
		t.Fatalf("follower read %v", got)
	}
	if a.Head() != 200 || a.EndLSN() != 201 {
		t.Fatalf("head %d end %d", a.Head(), a.EndLSN())
	}
	// Behind the 5-txn tail: fetched from the stream, then the tail.
	for _, after := range []uint64{0, 15, 50, 150, 190} {
		c := b.Cursor(after)
		want := lsns((after/10+1)*10, 200, 10)
		if got := readAll(t, c, len(want)); !equal(got, want) {
			t.Fatalf("cursor after %d: %v, want %v", after, got, want)
		}
		if _, ok, err := c.TryNext(); ok || err != nil {
			t.Fatalf("cursor after %d: at the head, TryNext = %v, %v", after, ok, err)
		}
	}
	if err := a.Append(txn(200)); !errors.Is(err, changelog.ErrOutOfOrder) {
		t.Fatalf("append at the head: %v, want ErrOutOfOrder", err)
	}
	a.Close()
	r := open(t, ns.URL(), jetstream.Options{})
	if r.ID() != b.ID() || r.Head() != 200 {
		t.Fatalf("reopened: id %s head %d, want %s 200", r.ID(), r.Head(), b.ID())
	}
	if err := r.Append(txn(210)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, live, 1); got[0] != 210 {
		t.Fatalf("follower read %v after the new appender", got)
	}
}

// TestAppendersFenced: two replicas both believing they ingest append
// at once, each the LSN after the head it has seen. The stream never
// interleaves them: every message names the message before it as its
// predecessor, LSNs increase, and an appender whose view is stale gets
// an error instead.
func TestAppendersFenced(t *testing.T) {
	ns := natstest.Start(t)
	logs := []*jetstream.Log{open(t, ns.URL(), jetstream.Options{}), open(t, ns.URL(), jetstream.Options{})}
	var wg sync.WaitGroup
	var ok, refused [2]int
	for i, l := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if err := l.Append(txn(l.Head() + 1)); err != nil {
					refused[i]++
				} else {
					ok[i]++
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("appends accepted %v, refused %v", ok, refused)
	if ok[0]+ok[1] == 0 {
		t.Fatal("no append succeeded")
	}
	r := open(t, ns.URL(), jetstream.Options{})
	got := readAll(t, r.Cursor(0), ok[0]+ok[1])
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("stream %v: %d follows %d", got, got[i], got[i-1])
		}
	}
	if r.Head() != got[len(got)-1] {
		t.Fatalf("head %d, last read %d", r.Head(), got[len(got)-1])
	}
	if _, more, err := r.Cursor(got[len(got)-1]).TryNext(); more || err != nil {
		t.Fatalf("more txns than accepted appends: %v %v", more, err)
	}
}

// TestRetention: with a stream limited by bytes, a position before the
// oldest retained txn is ErrTruncated, as with the local log.
func TestRetention(t *testing.T) {
	ns := natstest.Start(t)
	l := open(t, ns.URL(), jetstream.Options{MaxBytes: 8 << 10, TailTxns: 2})
	for lsn := uint64(1); lsn <= 200; lsn++ {
		if err := l.Append(txn(lsn)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // TruncatedThrough is cached for 1 s
	tt := l.TruncatedThrough()
	if tt == 0 || tt >= 200 {
		t.Fatalf("truncated through %d after 200 txns in 8 KiB", tt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.Cursor(0).Next(ctx); !errors.Is(err, changelog.ErrTruncated) {
		t.Fatalf("reading from 0: %v, want ErrTruncated", err)
	}
	c := l.Cursor(tt)
	want := lsns(tt+1, 200, 1)
	if got := readAll(t, c, len(want)); !equal(got, want) {
		t.Fatalf("from the truncation point: %v", got)
	}
}
