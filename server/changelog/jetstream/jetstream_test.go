package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	if err := a.Append(txn(200)); err != nil || a.Head() != 200 {
		t.Fatalf("append at the head (a resend after a takeover): %v, head %d; want it skipped", err, a.Head())
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

// TestAppendersFenced: two appenders racing on one stream (a replica
// that lost its lease without knowing, and its successor, both sent the
// slot's transactions) never interleave or duplicate a transaction: the
// stream stays one chain, and every txn an Append accepted is in it.
func TestAppendersFenced(t *testing.T) {
	ns := natstest.Start(t)
	logs := []*jetstream.Log{open(t, ns.URL(), jetstream.Options{}), open(t, ns.URL(), jetstream.Options{})}
	var wg sync.WaitGroup
	var accepted [2][]uint64
	var refused [2]int
	for i, l := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				lsn := l.Head() + 1
				if err := l.Append(txn(lsn)); err != nil {
					refused[i]++
				} else {
					accepted[i] = append(accepted[i], lsn)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("appends accepted %d+%d, refused %v", len(accepted[0]), len(accepted[1]), refused)
	if len(accepted[0])+len(accepted[1]) == 0 {
		t.Fatal("no append succeeded")
	}
	r := open(t, ns.URL(), jetstream.Options{})
	head := r.Head()
	got := readAll(t, r.Cursor(0), int(head))
	for i, lsn := range got {
		if lsn != uint64(i+1) {
			t.Fatalf("stream %v: position %d holds %d", got, i, lsn)
		}
	}
	for i := range accepted {
		for _, lsn := range accepted[i] {
			if lsn > head {
				t.Fatalf("appender %d: txn %d accepted, stream head %d", i, lsn, head)
			}
		}
	}
	if _, more, err := r.Cursor(head).TryNext(); more || err != nil {
		t.Fatalf("more txns than the head: %v %v", more, err)
	}
}

// TestTakeoverRepublish: an appender sent again what the stream holds
// (a replica taking over the slot before its consumer delivered its
// predecessor's last messages) skips it and goes on after the stream's
// head.
func TestTakeoverRepublish(t *testing.T) {
	ns := natstest.Start(t)
	a := open(t, ns.URL(), jetstream.Options{})
	b := open(t, ns.URL(), jetstream.Options{})
	for lsn := uint64(10); lsn <= 100; lsn += 10 {
		if err := a.Append(txn(lsn)); err != nil {
			t.Fatal(err)
		}
	}
	// b's view may or may not include a's last appends yet: either way
	// the slot's resend of 80..100 is skipped and 110 follows 100.
	if err := b.Append(txn(80), txn(90), txn(100), txn(110)); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(txn(100), txn(110), txn(120)); err != nil {
		t.Fatal(err)
	}
	r := open(t, ns.URL(), jetstream.Options{})
	if got := readAll(t, r.Cursor(0), 12); !equal(got, lsns(10, 120, 10)) {
		t.Fatalf("stream %v", got)
	}
	if _, more, err := r.Cursor(120).TryNext(); more || err != nil {
		t.Fatalf("more txns than appended: %v %v", more, err)
	}
	if err := b.Append(txn(130), txn(125)); !errors.Is(err, changelog.ErrOutOfOrder) {
		t.Fatalf("batch out of order: %v, want ErrOutOfOrder", err)
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

// TestAttnums: the columns' Postgres attnums of a Rel (the schema history's
// column ids, sent to clients in version 2 Relations and used to remap
// writes made against an older layout) reach the other replicas, from the
// in-memory tail and fetched from the stream.
func TestAttnums(t *testing.T) {
	ns := natstest.Start(t)
	a := open(t, ns.URL(), jetstream.Options{TailTxns: 1})
	b := open(t, ns.URL(), jetstream.Options{TailTxns: 1})
	live := b.Cursor(0)
	renamed := *rel
	renamed.Columns = []protocol.Column{rel.Columns[0], {Name: "name", Type: rel.Columns[1].Type}}
	renamed.Attnums = []int16{1, 3}
	withIDs := *rel
	withIDs.Attnums = []int16{1, 3}
	want := map[uint64][]int16{10: nil, 20: {1, 3}, 30: {1, 3}}
	for _, tx := range []*changelog.Txn{txn(10), txn(20), txn(30)} {
		switch tx.LSN {
		case 20:
			tx.Changes[0].Rel = &withIDs
		case 30:
			tx.Changes[0].Rel = &renamed
		}
		if err := a.Append(tx); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, c changelog.Cursor) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for range 3 {
			tx, err := c.Next(ctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got := tx.Changes[0].Rel.Attnums; !slices.Equal(got, want[tx.LSN]) {
				t.Errorf("%s: txn %d: attnums %v, want %v", what, tx.LSN, got, want[tx.LSN])
			}
		}
	}
	check("follower, live", live)
	check("follower, fetched", b.Cursor(0))
}
