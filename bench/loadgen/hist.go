package main

import (
	"math"
	"sync/atomic"
	"time"
)

// hist is a lock-free latency histogram: log-spaced buckets 2% apart from
// 1 µs to about 100 s, so a percentile is within 2% of the exact one.
// Many goroutines record into it at once.
type hist struct {
	buckets [histBuckets]atomic.Uint64
	n       atomic.Uint64
	max     atomic.Int64 // nanoseconds
}

const (
	histGrowth  = 1.02
	histBuckets = 940 // 1.02^940 µs ≈ 120 s
)

var histLogGrowth = math.Log(histGrowth)

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Log(us) / histLogGrowth)
	return min(i, histBuckets-1)
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucketOf(d)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// snapshot copies the counts, so that an interval's figures are the
// difference of two snapshots.
type histSnap struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

func (h *hist) snapshot() *histSnap {
	s := &histSnap{n: h.n.Load(), max: time.Duration(h.max.Load())}
	for i := range s.counts {
		s.counts[i] = h.buckets[i].Load()
	}
	return s
}

// since is the histogram of what was recorded after prev (its max is the
// whole run's).
func (s *histSnap) since(prev *histSnap) *histSnap {
	d := &histSnap{n: s.n - prev.n, max: s.max}
	for i := range d.counts {
		d.counts[i] = s.counts[i] - prev.counts[i]
	}
	return d
}

// quantile is the upper edge of the bucket holding the q-th value.
func (s *histSnap) quantile(q float64) time.Duration {
	var total uint64
	for _, c := range s.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			return durationOfBucket(i + 1)
		}
	}
	return s.max
}
