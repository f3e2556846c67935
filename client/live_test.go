package client

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/latticesync/lattice/protocol"
)

// recorder collects live-query calls.
type recorder struct {
	mu    sync.Mutex
	calls []*Rows
	errs  []error
	ch    chan struct{}
	seen  int // calls consumed by next
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) fn(rows *Rows, err error) {
	r.mu.Lock()
	r.calls = append(r.calls, rows)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// next waits for the next call and returns its rows.
func (r *recorder) next(t *testing.T) [][]any {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(testTimeout):
		t.Fatal("no live query call")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.seen
	r.seen++
	if err := r.errs[i]; err != nil {
		t.Fatalf("live query error: %v", err)
	}
	return r.calls[i].Values
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case <-r.ch:
		t.Fatalf("unexpected live query call: %v", r.calls[len(r.calls)-1])
	case <-time.After(50 * time.Millisecond):
	}
}

// drain consumes all calls so far.
func (r *recorder) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.ch) > 0 {
		<-r.ch
	}
	r.seen = len(r.calls)
}

func TestLiveQuery(t *testing.T) {
	fs := newFakeServer(t)
	c := testClient(t, ":memory:", fs)
	run(t, c)
	fc := fs.accept()
	fc.welcome("log1")

	// Registered before the table exists: waits for it.
	early := newRecorder()
	cancelEarly, err := c.LiveQuery("SELECT count(*) FROM items", nil, early.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelEarly()
	early.none(t)

	syncItems(t, c, fc, 10, ins(1, vInt(1), vText("a"), vInt(1)), ins(1, vInt(2), vText("b"), vInt(2)))
	if got := early.next(t); !reflect.DeepEqual(got, [][]any{{int64(1 + 1)}}) {
		t.Fatalf("early %v", got)
	}

	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT id, title FROM items WHERE n >= ? ORDER BY id", []any{2}, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{int64(2), "b"}}) {
		t.Fatalf("initial %v", got)
	}
	c.live.mu.Lock()
	lq := c.live.queries[len(c.live.queries)-1]
	tables := lq.tables
	c.live.mu.Unlock()
	if !reflect.DeepEqual(tables, map[string]struct{}{"items": {}}) {
		t.Fatalf("tables %v", tables)
	}

	// A relevant transaction.
	fc.send(txn(11, ins(1, vInt(3), vText("c"), vInt(3))))
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{int64(2), "b"}, {int64(3), "c"}}) {
		t.Fatalf("after insert %v", got)
	}
	early.next(t)

	// A transaction on another table does not re-run it; one that does
	// not change the result re-runs it without a call.
	before := r.n()
	runs := lq.runs.Load()
	fc.send(otherRel(2), txn(12, ins(2, vText("k"), vInt(1))))
	waitLSN(t, c, 12)
	r.none(t)
	if n := lq.runs.Load(); n != runs {
		t.Fatalf("re-run %d times after a transaction on another table", n-runs)
	}
	fc.send(txn(13, upd(1, vInt(1), vText("a2"), vInt(1))))
	waitLSN(t, c, 13)
	early.none(t)
	r.none(t)
	if r.n() != before {
		t.Fatal("called without change")
	}
	if n := lq.runs.Load(); n != runs+1 {
		t.Fatalf("re-run %d times after a relevant transaction", n-runs)
	}

	// A burst is coalesced and ends with the latest rows.
	const burst = 200
	var frames []protocol.Down
	for i := range burst {
		frames = append(frames, txn(uint64(100+i), upd(1, vInt(3), vText(fmt.Sprint("c", i)), vInt(3))))
	}
	before = r.n()
	fc.send(frames...)
	waitLSN(t, c, 100+burst-1)
	want := [][]any{{int64(2), "b"}, {int64(3), fmt.Sprint("c", burst-1)}}
	deadline := time.Now().Add(testTimeout)
	for {
		r.mu.Lock()
		last := r.calls[len(r.calls)-1].Values
		r.mu.Unlock()
		if reflect.DeepEqual(last, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last call %v", last)
		}
		time.Sleep(time.Millisecond)
	}
	if calls := r.n() - before; calls >= burst/2 {
		t.Errorf("%d calls for a burst of %d transactions", calls, burst)
	} else {
		t.Logf("%d calls for a burst of %d transactions", calls, burst)
	}

	// Exec'd local writes notify too.
	r.drain()
	if err := c.Exec(ctxT(t), "UPDATE items SET n = 0 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{int64(3), fmt.Sprint("c", burst-1)}}) {
		t.Fatalf("after exec %v", got)
	}

	// Cancel stops calls; a second cancel is harmless.
	cancel()
	cancel()
	fc.send(txn(1000, ins(1, vInt(4), vText("d"), vInt(4))))
	waitLSN(t, c, 1000)
	r.none(t)
	early.next(t)
}

func TestLiveQueryCancelFromCallback(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE t(a)"); err != nil {
		t.Fatal(err)
	}
	calls := make(chan int, 10)
	var cancel func()
	var mu sync.Mutex
	n := 0
	mu.Lock()
	cancel, err := c.LiveQuery("SELECT count(*) FROM t", nil, func(r *Rows, err error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		calls <- n
		if n == 2 {
			cancel()
			// Queries work from callbacks.
			if _, err := c.Query(ctx, "SELECT * FROM t"); err != nil {
				t.Error(err)
			}
		}
	})
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	<-calls
	c.Exec(ctx, "INSERT INTO t VALUES(1)")
	<-calls
	c.Exec(ctx, "INSERT INTO t VALUES(2)")
	select {
	case <-calls:
		t.Fatal("called after cancel")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestLiveQueryErrors(t *testing.T) {
	c := testClient(t, ":memory:", nil)
	if _, err := c.LiveQuery("SELEC", nil, func(*Rows, error) {}); err == nil {
		t.Error("syntax error accepted")
	}
	if _, err := c.LiveQuery("DELETE FROM _lattice_state", nil, func(*Rows, error) {}); err == nil {
		t.Error("write accepted")
	}
	if _, err := c.LiveQuery("SELECT ?", nil, func(*Rows, error) {}); err == nil {
		t.Error("missing argument accepted")
	}
	if _, err := c.LiveQuery("SELECT 1", nil, nil); err == nil {
		t.Error("nil callback accepted")
	}
	// A view depends on its tables.
	ctx := ctxT(t)
	if err := c.Exec(ctx, "CREATE TABLE a(x); CREATE TABLE b(y); CREATE VIEW v AS SELECT x FROM a"); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	cancel, err := c.LiveQuery("SELECT * FROM v", nil, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	r.next(t)
	c.Exec(ctx, "INSERT INTO b VALUES(1)")
	r.none(t)
	c.Exec(ctx, "INSERT INTO a VALUES(1)")
	if got := r.next(t); !reflect.DeepEqual(got, [][]any{{int64(1)}}) {
		t.Fatal(got)
	}
	c.Close()
	if _, err := c.LiveQuery("SELECT 1", nil, r.fn); err == nil {
		t.Error("live query on closed client")
	}
}
