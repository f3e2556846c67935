package server

import (
	"testing"
	"time"
)

// TestWALLag: replication is behind by the age of the oldest WAL sample
// it has not reached, and not caught up before it reaches the first one.
func TestWALLag(t *testing.T) {
	var w walLag
	t0 := time.Unix(1000, 0)
	if _, ok := w.lag(t0, 0); ok {
		t.Fatal("caught up before any sample")
	}
	w.sample(t0, 100)
	if _, ok := w.lag(t0.Add(time.Minute), 99); ok {
		t.Fatal("caught up below the first sample")
	}
	if lag, ok := w.lag(t0.Add(time.Second), 100); !ok || lag != 0 {
		t.Fatalf("at the sample: lag %v, caught up %v", lag, ok)
	}
	w.sample(t0.Add(2*time.Second), 200)
	w.sample(t0.Add(3*time.Second), 200) // no new WAL: dated by the older sample
	w.sample(t0.Add(4*time.Second), 300)
	if lag, ok := w.lag(t0.Add(10*time.Second), 150); !ok || lag != 8*time.Second {
		t.Fatalf("behind the 200 sample: lag %v (want 8s), caught up %v", lag, ok)
	}
	if lag, _ := w.lag(t0.Add(10*time.Second), 250); lag != 6*time.Second {
		t.Fatalf("behind the 300 sample: lag %v, want 6s", lag)
	}
	if lag, ok := w.lag(t0.Add(10*time.Second), 300); !ok || lag != 0 {
		t.Fatalf("caught up: lag %v, %v", lag, ok)
	}
	// Stuck: the samples stay bounded, the oldest dates the lag.
	for i := range 3 * maxWALSamples {
		w.sample(t0.Add(time.Duration(20+i)*time.Second), uint64(400+i))
	}
	if len(w.samples) > maxWALSamples {
		t.Fatalf("%d samples kept, bound %d", len(w.samples), maxWALSamples)
	}
	if lag, _ := w.lag(t0.Add(time.Hour), 300); lag != time.Hour-20*time.Second {
		t.Fatalf("stuck: lag %v, want %v", lag, time.Hour-20*time.Second)
	}
}
