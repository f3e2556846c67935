package merge

import (
	"errors"
	"testing"
	"time"
)

// fakeWall is an injectable wall clock.
type fakeWall struct{ ms int64 }

func (f *fakeWall) now() time.Time { return time.UnixMilli(f.ms) }

func TestHLCLayout(t *testing.T) {
	h := MakeHLC(1_700_000_000_123, 7)
	if h.Millis() != 1_700_000_000_123 || h.Logical() != 7 {
		t.Fatalf("got %d/%d", h.Millis(), h.Logical())
	}
	if uint64(h) != 1_700_000_000_123<<16|7 {
		t.Fatalf("layout: %#x", uint64(h))
	}
	if got, want := h.String(), "2023-11-14T22:13:20.123Z/7"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if MakeHLC(-5, 1) != MakeHLC(0, 1) {
		t.Fatal("negative millis not clamped to 0")
	}
	if got := MakeHLC(1<<50, 2); got.Millis() != MaxMillis || got.Logical() != 2 {
		t.Fatalf("large millis not clamped: %d", got.Millis())
	}
	if MakeHLC(5, 0xFFFF) >= MakeHLC(6, 0) {
		t.Fatal("order: millis must dominate logical")
	}
}

func TestClock(t *testing.T) {
	type step struct {
		wall    int64  // wall time before the step
		observe HLC    // if nonzero: Observe this instead of Next
		want    HLC    // Next's result (ignored for Observe)
		drift   bool   // Observe must report drift
		name    string // what the step shows
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"follows wall time", []step{
			{wall: 1000, want: MakeHLC(1000, 0)},
			{wall: 1005, want: MakeHLC(1005, 0)},
		}},
		{"same millisecond counts up", []step{
			{wall: 1000, want: MakeHLC(1000, 0)},
			{wall: 1000, want: MakeHLC(1000, 1)},
			{wall: 1000, want: MakeHLC(1000, 2)},
			{wall: 1001, want: MakeHLC(1001, 0)},
		}},
		{"wall clock going backwards", []step{
			{wall: 5000, want: MakeHLC(5000, 0)},
			{wall: 4000, want: MakeHLC(5000, 1)},
			{wall: 1, want: MakeHLC(5000, 2)},
			{wall: 5000, want: MakeHLC(5000, 3)},
			{wall: 5001, want: MakeHLC(5001, 0)},
		}},
		{"observe a later remote", []step{
			{wall: 1000, want: MakeHLC(1000, 0)},
			{wall: 1000, observe: MakeHLC(3000, 9)},
			{wall: 1001, want: MakeHLC(3000, 10)},
			{wall: 3001, want: MakeHLC(3001, 0)},
		}},
		{"observe an older remote changes nothing", []step{
			{wall: 1000, want: MakeHLC(1000, 0)},
			{wall: 1000, observe: MakeHLC(10, 9)},
			{wall: 1000, want: MakeHLC(1000, 1)},
		}},
		{"logical overflow borrows the next millisecond", []step{
			{wall: 1000, observe: MakeHLC(1000, 0xFFFE)},
			{wall: 1000, want: MakeHLC(1000, 0xFFFF)},
			{wall: 1000, want: MakeHLC(1001, 0)},
			{wall: 1000, want: MakeHLC(1001, 1)},
			{wall: 1002, want: MakeHLC(1002, 0)},
		}},
		{"drift over MaxDrift is accepted and reported", []step{
			{wall: 0, observe: MakeHLC(DefaultMaxDrift.Milliseconds()+1, 0), drift: true},
			{wall: 0, want: MakeHLC(DefaultMaxDrift.Milliseconds()+1, 1)},
			{wall: 0, observe: MakeHLC(DefaultMaxDrift.Milliseconds(), 0)}, // exactly MaxDrift: fine
		}},
		{"end of range saturates", []step{
			{wall: 0, observe: ^HLC(0), drift: true},
			{wall: 0, want: ^HLC(0)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWall{}
			c := Clock{Now: w.now}
			var last HLC
			for i, s := range tc.steps {
				w.ms = s.wall
				if s.observe != 0 {
					err := c.Observe(s.observe)
					var de *DriftError
					if got := errors.As(err, &de); got != s.drift {
						t.Fatalf("step %d: Observe(%v) error %v, want drift %v", i, s.observe, err, s.drift)
					}
					if c.Last() < s.observe {
						t.Fatalf("step %d: Last %v < observed %v", i, c.Last(), s.observe)
					}
					last = c.Last()
					continue
				}
				got := c.Next()
				if got != s.want {
					t.Fatalf("step %d: Next = %v, want %v", i, got, s.want)
				}
				if got <= last && got != ^HLC(0) {
					t.Fatalf("step %d: Next %v not after %v", i, got, last)
				}
				last = got
			}
		})
	}
}

func TestClockMaxDrift(t *testing.T) {
	w := &fakeWall{ms: 1_000_000}
	c := Clock{Now: w.now, MaxDrift: time.Second}
	if err := c.Observe(MakeHLC(1_001_000, 0)); err != nil {
		t.Fatalf("1s ahead with MaxDrift 1s: %v", err)
	}
	err := c.Observe(MakeHLC(1_001_001, 0))
	var de *DriftError
	if !errors.As(err, &de) || de.Ahead != 1001*time.Millisecond || de.WallMillis != 1_000_000 {
		t.Fatalf("got %v", err)
	}
	if c.Last() != MakeHLC(1_001_001, 0) {
		t.Fatal("drifting timestamp not accepted")
	}
	c.MaxDrift = -1
	if err := c.Observe(MakeHLC(1<<40, 0)); err != nil {
		t.Fatalf("negative MaxDrift must disable the report: %v", err)
	}
}

func TestClockRestore(t *testing.T) {
	w := &fakeWall{ms: 1000}
	var c Clock
	c.Now = w.now
	c.Next()
	c.Next()
	saved := c.Last()

	c2 := Clock{Now: w.now} // a restart, wall clock now behind
	w.ms = 500
	c2.Restore(saved)
	if got := c2.Next(); got <= saved {
		t.Fatalf("after Restore(%v), Next = %v", saved, got)
	}
	c2.Restore(MakeHLC(1, 0)) // never moves backwards
	if c2.Last() < saved {
		t.Fatal("Restore moved the clock backwards")
	}
}

func TestClockZeroValueUsesTimeNow(t *testing.T) {
	var c Clock
	before := time.Now().UnixMilli()
	h := c.Next()
	after := time.Now().UnixMilli()
	if h.Millis() < before || h.Millis() > after {
		t.Fatalf("Next = %v, wall between %d and %d", h, before, after)
	}
}

func TestClockMonotonicRandomWall(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	w := &fakeWall{ms: 1000}
	c := Clock{Now: w.now, MaxDrift: -1}
	var last HLC
	for i := range 20000 {
		w.ms += int64(rng.IntN(5)) - 2 // the wall clock jitters back and forth
		if rng.IntN(10) == 0 {
			h := MakeHLC(w.ms+int64(rng.IntN(200))-100, uint16(rng.IntN(1<<16)))
			c.Observe(h)
			last = max(last, h)
			continue
		}
		h := c.Next()
		if h <= last {
			t.Fatalf("seed %d step %d: Next %v not after %v", seed, i, h, last)
		}
		last = h
	}
}

func TestCapSkew(t *testing.T) {
	const wall = 1_000_000_000
	minute := time.Minute.Milliseconds()
	for _, c := range []struct {
		name      string
		h, after  HLC
		maxSkew   time.Duration
		want      HLC
		wantAhead time.Duration
	}{
		{"on time", MakeHLC(wall, 3), 0, 0, MakeHLC(wall, 3), 0},
		{"within the skew", MakeHLC(wall+minute-1, 7), 0, 0, MakeHLC(wall+minute-1, 7), time.Minute - time.Millisecond},
		{"an hour ahead", MakeHLC(wall+60*minute, 0), 0, 0, MakeHLC(wall+minute, 0), time.Hour},
		{"custom bound", MakeHLC(wall+60*minute, 0), 0, 5 * time.Second, MakeHLC(wall+5000, 0), time.Hour},
		{"capped after a capped one", MakeHLC(wall+60*minute, 9), MakeHLC(wall+minute, 0), 0, MakeHLC(wall+minute, 1), time.Hour},
		{"an hour behind", MakeHLC(wall-60*minute, 0), 0, 0, MakeHLC(wall-60*minute, 0), -time.Hour},
		{"disabled", MakeHLC(wall+60*minute, 0), 0, -1, MakeHLC(wall+60*minute, 0), time.Hour},
		{"not after the previous", MakeHLC(wall, 0), MakeHLC(wall, 5), -1, MakeHLC(wall, 6), 0},
	} {
		got, ahead := CapSkew(c.h, wall, c.maxSkew, c.after)
		if got != c.want || ahead != c.wantAhead {
			t.Errorf("%s: CapSkew(%v, after %v) = %v, %v; want %v, %v", c.name, c.h, c.after, got, ahead, c.want, c.wantAhead)
		}
	}
}

func TestCapSkewKeepsOriginOrder(t *testing.T) {
	seed := testSeed(t)
	rng := newRand(seed)
	wall := int64(1_000_000)
	var h, after HLC
	for i := range 10000 {
		wall += int64(rng.IntN(3)) // the receiver's clock, never backwards here
		h += HLC(1 + rng.IntN(1<<20))
		if rng.IntN(50) == 0 {
			h = max(h, MakeHLC(wall+int64(rng.IntN(7_200_000)), 0)) // the sender's clock jumps ahead
		}
		got, _ := CapSkew(h, wall, time.Minute, after)
		if got <= after {
			t.Fatalf("seed %d step %d: CapSkew(%v) = %v, not after %v", seed, i, h, got, after)
		}
		if got > h {
			t.Fatalf("seed %d step %d: CapSkew(%v) = %v, later than the write's own stamp", seed, i, h, got)
		}
		after = got
	}
}
