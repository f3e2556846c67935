package server_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/merge"
)

// skewedClient opens a client whose wall clock is off by skew and runs
// it until the test ends.
func (e *env) skewedClient(sub string, skew time.Duration) *client.Client {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Open(ctx, ":memory:", &client.Options{URL: e.url, Token: e.token(sub), Logger: testLogger(e.t),
		Now: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		e.t.Fatalf("open client: %v", err)
	}
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done; c.Close() })
	return c
}

// writeAcked runs sql on c and waits until the service acknowledged it.
func writeAcked(t *testing.T, c *client.Client, sql string) {
	t.Helper()
	if err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	eventually(t, 20*time.Second, "the write to be acknowledged", func() (bool, string) {
		return c.PendingCount() == 0, fmt.Sprintf("%d pending", c.PendingCount())
	})
}

// titleStamp returns the HLC of the last write of items.title for id.
func (e *env) titleStamp(id int) merge.HLC {
	e.t.Helper()
	shadow := e.pgRows("SELECT shadow FROM lattice.electrified WHERE relid = 'items'::regclass")
	if len(shadow) != 1 {
		e.t.Fatalf("shadow table of items: %v", shadow)
	}
	// col_hlc is indexed by attnum: title is column 2.
	got := e.pgRows(fmt.Sprintf("SELECT col_hlc[2] FROM %s WHERE pk1 = %d", shadow[0], id))
	if len(got) != 1 {
		e.t.Fatalf("shadow row of item %d: %v", id, got)
	}
	h, err := strconv.ParseInt(got[0], 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	return merge.HLC(uint64(h))
}

func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestClockSkewAhead: a client whose clock is an hour fast wins a
// conflict only within MaxClockSkew of its write (its writes are stamped
// at most MaxClockSkew ahead of the service's clock), not for the hour;
// the clamp is counted and the skew reported in /metrics.
func TestClockSkewAhead(t *testing.T) {
	e := newEnv(t, itemsSQL+"; INSERT INTO items VALUES (1, 'start', false, 0)", "items")
	const maxSkew = 3 * time.Second
	e.stop()
	e.cfg.MaxClockSkew = maxSkew
	e.start()
	fast := e.skewedClient("fast", time.Hour)
	normal := e.skewedClient("normal", 0)
	e.subscribe(fast, client.Shape{Table: "items"})
	e.subscribe(normal, client.Shape{Table: "items"})
	q := "SELECT id, title FROM items ORDER BY id"

	before := time.Now()
	writeAcked(t, fast, "UPDATE items SET title = 'fast' WHERE id = 1")
	after := time.Now()
	h := e.titleStamp(1)
	if lo, hi := before.Add(maxSkew).UnixMilli(), after.Add(maxSkew).UnixMilli(); h.Millis() < lo || h.Millis() > hi {
		t.Fatalf("the fast client's write is stamped %s, want the service's clock + %s (%s..%s)", h,
			maxSkew, merge.MakeHLC(lo, 0), merge.MakeHLC(hi, 0))
	}
	m := e.metrics()
	if n := metricValue(t, m, "lattice_clock_skew_clamped_total"); n != 1 {
		t.Errorf("lattice_clock_skew_clamped_total = %v, want 1", n)
	}
	if s := metricValue(t, m, "lattice_clock_skew_max_seconds"); s < 3590 || s > 3610 {
		t.Errorf("lattice_clock_skew_max_seconds = %v, want about 3600", s)
	}
	waitEqual(t, e, normal, q, q)

	// Past MaxClockSkew, a write made after seeing the fast one wins (it
	// would lose for an hour if the fast client's stamp were kept).
	time.Sleep(time.Until(after.Add(maxSkew + 500*time.Millisecond)))
	writeAcked(t, normal, "UPDATE items SET title = 'normal' WHERE id = 1")
	if got := e.pgRows(q); !equalStrings(got, []string{"1|normal"}) {
		t.Fatalf("postgres holds %v after the later write, want 1|normal", got)
	}
	waitEqual(t, e, fast, q, q)
	waitEqual(t, e, normal, q, q)
	// A plain SQL write stamps after the row's newest stamp: the fast
	// client's stamp did not drag it an hour ahead.
	e.exec("UPDATE items SET title = 'sql' WHERE id = 1")
	if h := e.titleStamp(1); h.Millis() > time.Now().Add(maxSkew).UnixMilli() {
		t.Errorf("a plain SQL write after the fast client's is stamped %s, more than %s ahead", h, maxSkew)
	}
}

// TestClockSkewBehind: a client whose clock is an hour slow still wins
// with a write made after it has seen the row's last change (its clock
// follows the commit times it receives), instead of losing to that older
// write; its other writes are applied as usual, and none is clamped.
func TestClockSkewBehind(t *testing.T) {
	e := newEnv(t, itemsSQL+"; INSERT INTO items VALUES (1, 'start', false, 0)", "items")
	slow := e.skewedClient("slow", -time.Hour)
	normal := e.skewedClient("normal", 0)
	e.subscribe(slow, client.Shape{Table: "items"})
	e.subscribe(normal, client.Shape{Table: "items"})
	q := "SELECT id, title FROM items ORDER BY id"

	writeAcked(t, normal, "UPDATE items SET title = 'normal' WHERE id = 1")
	waitEqual(t, e, slow, q, q) // the slow client has seen it
	writeAcked(t, slow, "UPDATE items SET title = 'slow' WHERE id = 1")
	writeAcked(t, slow, "INSERT INTO items VALUES (2, 'new', false, 0)")
	want := []string{"1|slow", "2|new"}
	if got := e.pgRows(q); !equalStrings(got, want) {
		t.Fatalf("postgres holds %v after the slow client's writes, want %v", got, want)
	}
	waitEqual(t, e, slow, q, q)
	waitEqual(t, e, normal, q, q)
	if n := metricValue(t, e.metrics(), "lattice_clock_skew_clamped_total"); n != 0 {
		t.Errorf("lattice_clock_skew_clamped_total = %v, want 0 (a clock behind is not clamped)", n)
	}
}
