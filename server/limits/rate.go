package limits

import (
	"context"
	"time"
)

// DefaultRowsPerSec is the default rate of Bucket in `lattice serve`.
const DefaultRowsPerSec = 50_000

// Burst is how many seconds' worth of rows a full Bucket holds: a
// connection reads that many rows at full speed before it is paced.
const Burst = 0.25

// minSleep is the shortest pause Take makes: a smaller debt is carried
// to the next call (the refill repays it), so that pacing row by row
// does not sleep once per row.
const minSleep = 10 * time.Millisecond

// Bucket is a token bucket of rows for one connection: Take(n) returns
// once n more rows may be read, so that the connection reads at most
// rate rows per second on average, after a burst of Burst seconds'
// worth. Pacing protects the service's other clients, so it applies only
// while the service is shared (the shared func reports whether other
// connections are open): a client alone on the service reads at full
// speed. A nil Bucket has no limit. It is not safe for concurrent use.
type Bucket struct {
	shared func() bool
	rate   float64 // rows per second
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
}

// NewBucket returns a full bucket of rowsPerSec, or nil (no limit) when
// rowsPerSec is zero or less. shared reports whether other clients share
// the service; nil: always.
func NewBucket(rowsPerSec int, shared func() bool) *Bucket {
	if rowsPerSec <= 0 {
		return nil
	}
	return newBucket(rowsPerSec, shared, time.Now, sleepCtx)
}

func newBucket(rowsPerSec int, shared func() bool, now func() time.Time, sleep func(context.Context, time.Duration) error) *Bucket {
	r := float64(rowsPerSec)
	b := max(r*Burst, 1)
	if shared == nil {
		shared = func() bool { return true }
	}
	return &Bucket{shared: shared, rate: r, burst: b, tokens: b, last: now(), now: now, sleep: sleep}
}

// Take takes n rows from the bucket, waiting (until ctx ends) while it
// owes more than minSleep's worth.
func (b *Bucket) Take(ctx context.Context, n int) error {
	if b == nil || n <= 0 {
		return nil
	}
	now := b.now()
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return nil
	}
	if !b.shared() {
		// Alone on the service: nobody to protect. The debt is forgiven
		// (down to an empty bucket), so that a client joining later
		// pauses this one for no more than it would have anyway.
		b.tokens = 0
		return nil
	}
	wait := time.Duration(-b.tokens / b.rate * float64(time.Second))
	if wait < minSleep {
		return nil
	}
	// The refill of the next call counts the time slept.
	return b.sleep(ctx, wait)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
