package changelog

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	rel := &Rel{Schema: "s", Table: "t", Columns: []protocol.Column{
		{Name: "a", Type: coltype.Type{Base: coltype.Int8, Name: "bigint"}, NotNull: true},
		{Name: "b", Type: coltype.Type{Base: coltype.Float8, Array: true, Name: "float8[]"}},
		{Name: "c", Type: coltype.Type{Base: coltype.Enum, Name: "public.mood"}},
		{Name: "d", Type: coltype.Type{Base: coltype.Bytea, Name: "bytea"}},
		{Name: "e", Type: coltype.Type{Base: coltype.Numeric, Name: "numeric(10,2)"}},
	}, PK: []int{0}}
	noPK := &Rel{Schema: "s", Table: "nopk", Columns: []protocol.Column{{Name: "x", Type: coltype.Type{Base: coltype.Bool, Name: "boolean"}}}}
	row := []coltype.Value{
		{Kind: coltype.Integer, I: math.MinInt64},
		{Kind: coltype.Real, F: math.Inf(-1)},
		txt("happy ☺"),
		{Kind: coltype.Blob, B: []byte{0, 1, 2, 255}},
		{},
	}
	row2 := slices.Clone(row)
	row2[0] = num(math.MaxInt64)
	in := &Txn{LSN: 0x16B3748, EndLSN: 0x16B3778, Xid: math.MaxUint32, CommitTime: -5, Changes: []Change{
		{Op: protocol.OpInsert, Rel: rel, New: row},
		{Op: protocol.OpUpdate, Rel: rel, New: row2},
		{Op: protocol.OpUpdate, Rel: rel, Old: row, New: row2},
		{Op: protocol.OpDelete, Rel: noPK, Old: []coltype.Value{num(1)}},
	}}
	var e encoder
	var it interner
	rec, nv, err := e.appendRecord(nil, in, &it)
	if err != nil {
		t.Fatal(err)
	}
	if nv != 5*4+1 {
		t.Errorf("nValues = %d", nv)
	}
	out, err := decodeTxn(rec[recHeaderLen:], &it)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	if out.Changes[0].Rel != in.Changes[0].Rel || out.Changes[3].Rel != in.Changes[3].Rel {
		t.Error("decoded Rels are not the interned ones")
	}
	if out.Changes[0].Rel == rel {
		t.Error("log kept the caller's Rel instead of a private copy")
	}
	// Values never alias the record.
	out.Changes[0].New[2].B[0] = 'X'
	if out2, _ := decodeTxn(rec[recHeaderLen:], &it); string(out2.Changes[0].New[2].B) != "happy ☺" {
		t.Error("decoded value aliases the record")
	}
	// Every truncation of the payload fails cleanly.
	for i := range len(rec) - recHeaderLen {
		if _, err := decodeTxn(rec[recHeaderLen:recHeaderLen+i], &it); err == nil {
			t.Fatalf("truncated payload (%d bytes) decoded", i)
		}
	}
}

func TestAppendValidation(t *testing.T) {
	l := mustOpen(t, t.TempDir(), nil)
	defer l.Close()
	rng := newRNG()
	if err := l.Append(makeTxn(rng, 100, 3)); err != nil {
		t.Fatal(err)
	}
	for _, lsn := range []uint64{100, 99} {
		if err := l.Append(makeTxn(rng, lsn, 1)); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("LSN %d: err = %v, want ErrOutOfOrder", lsn, err)
		}
	}
	// A bad txn in a batch rejects the whole batch.
	if err := l.Append(makeTxn(rng, 200, 1), makeTxn(rng, 150, 1)); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("batch: err = %v, want ErrOutOfOrder", err)
	}
	bad := []Change{
		{Op: protocol.OpInsert, New: userRow(1)},
		{Op: protocol.OpInsert, Rel: relUsers},
		{Op: protocol.OpDelete, Rel: relUsers, New: userRow(1)},
		{Op: protocol.OpMoveOut, Rel: relUsers, New: userRow(1)},
		{Op: protocol.OpInsert, Rel: relUsers, New: userRow(1)[:2]},
		{Op: protocol.OpInsert, Rel: &Rel{Table: "x", PK: []int{3}}, New: []coltype.Value{}},
	}
	for i, c := range bad {
		if err := l.Append(makeTxn(rng, 300, 1), &Txn{LSN: 301, Changes: []Change{c}}); err == nil || errors.Is(err, ErrOutOfOrder) {
			t.Errorf("bad change %d: err = %v", i, err)
		}
	}
	if h := l.Head(); h != 100 {
		t.Errorf("Head = %d after rejected appends", h)
	}
	if got := readAll(t, l.Reader(0)); !slices.Equal(got, []uint64{100}) {
		t.Errorf("read %v", got)
	}
	if err := l.Append(); err != nil {
		t.Error(err)
	}
}

func TestAppendRead(t *testing.T) {
	for _, name := range []string{"memory", "disk"} {
		t.Run(name, func(t *testing.T) {
			o := &Options{SegmentBytes: 8 << 10}
			if name == "disk" {
				o.MemoryBytes = -1
			}
			l := mustOpen(t, t.TempDir(), o)
			defer l.Close()
			rng := newRNG()
			var want []uint64
			lsn := uint64(1000)
			for b := range 60 {
				var batch []*Txn
				for range 1 + b%7 {
					batch = append(batch, makeTxn(rng, lsn, 1+int(lsn)%10))
					want = append(want, lsn)
					lsn += 1 + uint64(rng.IntN(500))
				}
				if err := l.Append(batch...); err != nil {
					t.Fatal(err)
				}
			}
			if l.Stats().Segments < 3 {
				t.Fatalf("want several segments, have %+v", l.Stats())
			}
			if h := l.Head(); h != want[len(want)-1] {
				t.Errorf("Head = %X, want %X", h, want[len(want)-1])
			}
			if e := l.EndLSN(); e != want[len(want)-1]+40 {
				t.Errorf("EndLSN = %X", e)
			}
			if got := readAll(t, l.Reader(0)); !slices.Equal(got, want) {
				t.Fatalf("from 0: got %d txns, want %d", len(got), len(want))
			}
			// From every position, including between LSNs.
			for i := 0; i < len(want); i += 7 {
				if got := readAll(t, l.Reader(want[i])); !slices.Equal(got, want[i+1:]) {
					t.Fatalf("after %X: got %v", want[i], got)
				}
				if got := readAll(t, l.Reader(want[i]-1)); !slices.Equal(got, want[i:]) {
					t.Fatalf("after %X-1: got %d", want[i], len(got))
				}
			}
			if got := readAll(t, l.Reader(l.Head())); len(got) != 0 {
				t.Fatalf("at head: got %v", got)
			}
			// Content check of one txn read back.
			r := l.Reader(want[10] - 1)
			txn, _, err := r.TryNext()
			if err != nil {
				t.Fatal(err)
			}
			if txn.LSN != want[10] || txn.EndLSN != want[10]+40 || txn.Xid != uint32(want[10]) || len(txn.Changes) != 1+int(want[10])%10 {
				t.Fatalf("txn %+v", txn)
			}
			if c := txn.Changes[0]; c.Rel.Table != "items" || c.Op != protocol.OpInsert || c.New[0].I != int64(want[10])*16 {
				t.Fatalf("change %+v", c)
			}
		})
	}
}

func TestReaderBlocksAtHead(t *testing.T) {
	l := mustOpen(t, t.TempDir(), nil)
	defer l.Close()
	rng := newRNG()
	appendN(t, l, rng, 10, 10, 5)
	r := l.Reader(l.Head())
	got := make(chan *Txn)
	go func() {
		txn, err := r.Next(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- txn
	}()
	select {
	case txn := <-got:
		t.Fatalf("Next returned %v before append", txn)
	case <-time.After(20 * time.Millisecond):
	}
	appendN(t, l, rng, 100, 1, 1)
	select {
	case txn := <-got:
		if txn.LSN != 100 {
			t.Fatalf("got %X", txn.LSN)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake up")
	}

	// ctx cancel.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := r.Next(ctx)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := r.Next(ctxTimeout(t, time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if r.Position() != 100 {
		t.Fatalf("position %X", r.Position())
	}

	// Close wakes blocked readers with ErrClosed.
	go func() {
		_, err := r.Next(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v", err)
	}
	if err := l.Append(makeTxn(rng, 1000, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if _, _, err := l.Reader(0).TryNext(); !errors.Is(err, ErrClosed) {
		t.Fatalf("new reader after close: %v", err)
	}
}

func TestReaderBeyondHead(t *testing.T) {
	l := mustOpen(t, t.TempDir(), nil)
	defer l.Close()
	rng := newRNG()
	appendN(t, l, rng, 10, 10, 3)
	r := l.Reader(1000)
	appendN(t, l, rng, 500, 250, 4) // 500, 750, 1000, 1250
	if got := readAll(t, r); !slices.Equal(got, []uint64{1250}) {
		t.Fatalf("got %v", got)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	o := &Options{SegmentBytes: 4 << 10}
	l := mustOpen(t, dir, o)
	id := l.ID()
	if !validID(id) {
		t.Fatalf("ID %q", id)
	}
	if l.Head() != 0 || l.EndLSN() != 0 {
		t.Fatal("new log not empty")
	}
	if _, err := Open(dir, o); err == nil {
		t.Fatal("second Open of a locked log succeeded")
	}
	rng := newRNG()
	want := appendN(t, l, rng, 1, 3, 200)
	st := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal("second Close:", err)
	}

	l = mustOpen(t, dir, o)
	defer l.Close()
	if l.ID() != id {
		t.Errorf("ID changed: %s -> %s", id, l.ID())
	}
	st2 := l.Stats()
	if st2.Head != st.Head || st2.EndLSN != st.EndLSN || st2.Bytes != st.Bytes || st2.Segments != st.Segments || st2.OldestLSN != 1 {
		t.Errorf("stats %+v, before reopen %+v", st2, st)
	}
	if got := readAll(t, l.Reader(0)); !slices.Equal(got, want) {
		t.Fatalf("got %d txns", len(got))
	}
	// Appending continues the log; disk and memory txns share Rels.
	appendN(t, l, rng, 1000, 1, 3)
	r := l.Reader(0)
	first, _, _ := r.TryNext()
	all := readAll(t, r)
	if all[len(all)-1] != 1002 {
		t.Fatalf("tail %v", all[len(all)-3:])
	}
	r = l.Reader(1001)
	last, _, _ := r.TryNext()
	if first.Changes[0].Rel != last.Changes[0].Rel || first.Changes[0].Rel.Table != "items" {
		t.Error("Rel from disk and from memory are different pointers")
	}
}

func TestRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	o := &Options{SegmentBytes: 4 << 10, MaxBytes: 16 << 10, MaxAge: -1, MemoryBytes: 2 << 10}
	l := mustOpen(t, dir, o)
	rng := newRNG()
	behind := l.Reader(0)
	if _, _, err := behind.TryNext(); err != nil { // at head, in memory
		t.Fatal(err)
	}
	diskReader := l.Reader(0)
	want := appendN(t, l, rng, 1, 2, 12)
	if _, _, err := diskReader.TryNext(); err != nil || diskReader.f == nil {
		t.Fatalf("disk reader: %v, file %v", err, diskReader.f)
	}
	want = append(want, appendN(t, l, rng, 100, 2, 400)...)
	st := l.Stats()
	if st.Bytes > o.MaxBytes+o.SegmentBytes+4<<10 || st.TruncatedThrough == 0 {
		t.Fatalf("stats after retention %+v", st)
	}
	tt := l.TruncatedThrough()
	i := slices.Index(want, tt)
	if i < 0 || want[i+1] != st.OldestLSN {
		t.Fatalf("TruncatedThrough %X is not the txn before the oldest %X", tt, st.OldestLSN)
	}
	for _, r := range []*Reader{behind, diskReader, l.Reader(0), l.Reader(tt - 1)} {
		if _, err := r.Next(context.Background()); !errors.Is(err, ErrTruncated) {
			t.Fatalf("reader at %X: err = %v, want ErrTruncated", r.Position(), err)
		}
		if r.f != nil {
			t.Fatal("truncated reader kept its file open")
		}
	}
	if got := readAll(t, l.Reader(tt)); !slices.Equal(got, want[i+1:]) {
		t.Fatalf("from TruncatedThrough: got %d txns want %d", len(got), len(want[i+1:]))
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != st.Segments {
		t.Fatalf("%d files, %d segments", len(segs), st.Segments)
	}
	l.Close()
	l = mustOpen(t, dir, o)
	defer l.Close()
	if l.TruncatedThrough() != tt || l.Stats().OldestLSN != st.OldestLSN {
		t.Fatalf("after reopen: %+v", l.Stats())
	}
	if _, _, err := l.Reader(0).TryNext(); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
}

func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	o := &Options{SegmentBytes: 2 << 10, MaxAge: time.Hour, MaxBytes: -1}
	l := mustOpen(t, dir, o)
	defer l.Close()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := t0
	l.now = func() time.Time { return clock }
	rng := newRNG()
	mk := func(lsn uint64, commit time.Time) *Txn {
		txn := makeTxn(rng, lsn, 3)
		txn.CommitTime = commit.UnixMicro()
		return txn
	}
	var lsn uint64 = 1
	// Old data: written at t0, committed at t0.
	for range 30 {
		if err := l.Append(mk(lsn, t0)); err != nil {
			t.Fatal(err)
		}
		lsn++
	}
	oldLast := lsn - 1
	// New data written two hours later, though committed at t0 (a catch-up
	// replay): its age counts from the write.
	clock = t0.Add(2 * time.Hour)
	for range 30 {
		if err := l.Append(mk(lsn, t0)); err != nil {
			t.Fatal(err)
		}
		lsn++
	}
	before := l.Stats()
	// Rolling already enforced at the clock; nothing is old yet at t0+2h
	// except the segments written at t0.
	if err := l.Enforce(t0.Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if l.Stats().Segments != before.Segments {
		t.Fatal("young segments removed")
	}
	if err := l.Enforce(t0.Add(2*time.Hour + 30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	tt := l.TruncatedThrough()
	if tt == 0 || tt > oldLast || st.Segments < 2 {
		t.Fatalf("after age retention: tt %X, old data up to %X, %+v", tt, oldLast, st)
	}
	// Segments holding a txn written after t0 survive; the first one left
	// starts right after tt.
	if st.OldestLSN != tt+1 {
		t.Fatalf("oldest %X, tt %X", st.OldestLSN, tt)
	}
	if _, err := l.Reader(tt - 1).Next(context.Background()); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	// Everything ages out except the active segment.
	if err := l.Enforce(t0.Add(100 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Segments != 1 || st.TruncatedThrough != st.OldestLSN-1 {
		t.Fatalf("%+v", st)
	}
	got := readAll(t, l.Reader(l.TruncatedThrough()))
	if len(got) == 0 || got[len(got)-1] != lsn-1 {
		t.Fatalf("active segment: %v", got)
	}

	// Negative MaxAge disables age retention.
	l2 := mustOpen(t, t.TempDir(), &Options{SegmentBytes: 1 << 10, MaxAge: -1})
	defer l2.Close()
	appendN(t, l2, rng, 1, 1, 50)
	n := l2.Stats().Segments
	if err := l2.Enforce(time.Now().Add(1000 * time.Hour)); err != nil || l2.Stats().Segments != n {
		t.Fatalf("segments %d -> %d, %v", n, l2.Stats().Segments, err)
	}
}

func TestReaderMemoryDiskMemory(t *testing.T) {
	l := mustOpen(t, t.TempDir(), &Options{SegmentBytes: 16 << 10, MemoryBytes: 16 << 10})
	defer l.Close()
	rng := newRNG()
	want := appendN(t, l, rng, 1, 1, 10)
	r := l.Reader(0)
	var got []uint64
	read := func(n int) {
		for range n {
			txn, ok, err := r.TryNext()
			if err != nil || !ok {
				t.Fatalf("after %X: %v %v", r.Position(), ok, err)
			}
			got = append(got, txn.LSN)
		}
	}
	read(5)
	if !r.inMem || r.f != nil {
		t.Fatal("reader not in memory")
	}
	// Fall behind the memory tail.
	want = append(want, appendN(t, l, rng, 100, 1, 300)...)
	if l.Stats().MemTxns >= 300 {
		t.Fatalf("memory not bounded: %+v", l.Stats())
	}
	read(1)
	if r.inMem || r.f == nil {
		t.Fatal("reader did not move to disk")
	}
	// Catch up across segments; appends continue meanwhile.
	sawDisk := 0
	for i := 0; r.Position() < l.Head(); i++ {
		if i%50 == 0 {
			want = append(want, appendN(t, l, rng, l.Head()+1, 1, 5)...)
		}
		read(1)
		if r.f != nil {
			sawDisk++
		}
	}
	if !r.inMem || r.f != nil {
		t.Fatal("reader did not return to memory")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %d txns, want %d", len(got), len(want))
	}
	if sawDisk < 100 {
		t.Fatalf("only %d reads from disk", sawDisk)
	}
	if _, ok, _ := r.TryNext(); ok {
		t.Fatal("read past head")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.TryNext(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

func TestConcurrentReaders(t *testing.T) {
	const (
		readers = 1000
		txns    = 200
	)
	l := mustOpen(t, t.TempDir(), &Options{SegmentBytes: 32 << 10, MemoryBytes: 64 << 10})
	defer l.Close()
	rng := newRNG()
	var want []uint64
	// Some history on disk only.
	want = append(want, appendN(t, l, rng, 1, 1, 100)...) // LSNs 1..100
	ctx := ctxTimeout(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		start := []uint64{0, 80, l.Head()}[i%3] // disk, memory, head
		r := l.Reader(start)
		wg.Go(func() {
			defer r.Close()
			prev := start
			for prev < 100+txns {
				txn, err := r.Next(ctx)
				if err != nil {
					errs <- err
					return
				}
				if txn.LSN != prev+1 || len(txn.Changes) == 0 {
					errs <- errors.New("out of order")
					return
				}
				prev = txn.LSN
			}
		})
	}
	for b := 0; b < txns; {
		n := min(1+b%8, txns-b)
		var batch []*Txn
		for range n {
			b++
			batch = append(batch, makeTxn(rng, uint64(100+b), 1+b%10))
		}
		if err := l.Append(batch...); err != nil {
			t.Fatal(err)
		}
		if b%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestFailedAppendIsSticky(t *testing.T) {
	l := mustOpen(t, t.TempDir(), nil)
	defer l.Close()
	rng := newRNG()
	appendN(t, l, rng, 1, 1, 3)
	l.active.Close() // make the next write fail
	if err := l.Append(makeTxn(rng, 10, 1)); err == nil {
		t.Fatal("append to closed file succeeded")
	}
	if err := l.Append(makeTxn(rng, 11, 1)); err == nil {
		t.Fatal("append after failure succeeded")
	}
	if l.Head() != 3 {
		t.Fatalf("head %d", l.Head())
	}
	if _, err := os.Stat(l.dir); err != nil {
		t.Fatal(err)
	}
}

func TestSparseIndexPositioning(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, &Options{MemoryBytes: -1})
	rng := newRNG()
	var want []uint64
	for lsn := uint64(10); lsn < 10+3000*3; lsn += 3 * 250 {
		var batch []*Txn
		for i := range uint64(250) {
			batch = append(batch, makeTxn(rng, lsn+3*i, 4))
			want = append(want, lsn+3*i)
		}
		if err := l.Append(batch...); err != nil {
			t.Fatal(err)
		}
	}
	// An empty txn is fine too.
	if err := l.Append(&Txn{LSN: l.Head() + 1}); err != nil {
		t.Fatal(err)
	}
	want = append(want, l.Head())
	check := func() {
		t.Helper()
		if n := len(l.segs[0].index); n < 10 {
			t.Fatalf("index has %d entries", n)
		}
		for _, i := range []int{0, 1, 499, 500, 1234, 2998, 2999, 3000} {
			for _, pos := range []uint64{want[i] - 1, want[i]} {
				r := l.Reader(pos)
				txn, ok, err := r.TryNext()
				j := i
				if pos == want[i] {
					j++
				}
				if j == len(want) {
					if ok || err != nil {
						t.Fatalf("after head: %v %v", txn, err)
					}
					continue
				}
				if err != nil || !ok || txn.LSN != want[j] {
					t.Fatalf("after %X: %v %v %v, want %X", pos, txn, ok, err, want[j])
				}
				r.Close()
			}
		}
	}
	check()
	l.Close()
	l = mustOpen(t, dir, &Options{MemoryBytes: -1})
	defer l.Close()
	check()
}
