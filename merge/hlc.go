package merge

import (
	"strconv"
	"time"
)

// HLC is a hybrid logical clock timestamp: the high 48 bits are Unix
// milliseconds, the low 16 bits a logical counter. HLCs compare as plain
// integers.
type HLC uint64

// MaxMillis is the largest millisecond value an HLC can hold
// (2^48-1 ms, in the year 10889).
const MaxMillis = 1<<48 - 1

// MakeHLC returns the HLC with the given Unix milliseconds and logical
// counter. ms is clamped to [0, MaxMillis].
func MakeHLC(ms int64, logical uint16) HLC {
	if ms < 0 {
		ms = 0
	}
	if ms > MaxMillis {
		ms = MaxMillis
	}
	return HLC(uint64(ms)<<16 | uint64(logical))
}

// Millis returns the Unix milliseconds of h.
func (h HLC) Millis() int64 { return int64(h >> 16) }

// Logical returns the logical counter of h.
func (h HLC) Logical() uint16 { return uint16(h) }

// String formats h as its UTC wall time with millisecond precision followed
// by "/" and the logical counter, e.g. "2024-01-02T13:04:05.123Z/0".
func (h HLC) String() string {
	t := time.UnixMilli(h.Millis()).UTC()
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(h.Logical()), 10)
	return string(b)
}

// DefaultMaxDrift is the drift a Clock reports when its MaxDrift is zero.
const DefaultMaxDrift = time.Hour

// Clock issues HLCs for one origin.
//
// Next returns a timestamp strictly greater than every timestamp the clock
// issued, observed or was restored to, and at least the current wall time.
// The zero value is ready to use (wall time from time.Now).
//
// A Clock is not safe for concurrent use: callers serialize Next, Observe,
// Last and Restore (one mutex per origin is enough).
type Clock struct {
	// Now returns the wall time; nil means time.Now. Tests inject it.
	Now func() time.Time

	// MaxDrift is how far ahead of the local wall time an observed
	// timestamp may be before Observe reports it: 0 means
	// DefaultMaxDrift, a negative value disables the report.
	MaxDrift time.Duration

	last HLC
}

func (c *Clock) wallMillis() int64 {
	var t time.Time
	if c.Now != nil {
		t = c.Now()
	} else {
		t = time.Now()
	}
	return t.UnixMilli()
}

// Next returns a new timestamp: the greater of the wall time (logical 0)
// and the last issued or observed timestamp plus one. When the logical
// counter of the last timestamp is at its maximum, plus one carries into
// the milliseconds: the clock borrows the next millisecond and runs ahead
// of the wall time until the wall time catches up.
//
// Only at the very end of the HLC range (MaxMillis and logical 0xFFFF,
// reachable only by observing such a timestamp, which Observe reports as
// drift) does Next stop advancing and return that maximum again.
func (c *Clock) Next() HLC {
	wall := MakeHLC(c.wallMillis(), 0)
	next := c.last + 1
	if c.last == ^HLC(0) {
		next = c.last
	}
	if wall > next {
		next = wall
	}
	c.last = next
	return next
}

// Observe records a timestamp seen from another origin, so that every later
// Next is greater than h. h is always accepted, however far ahead it is:
// refusing it would break the guarantee that a write is ordered after
// everything its author saw. When h is more than MaxDrift ahead of the local
// wall time, Observe returns a *DriftError after recording h, for the caller
// to log or alert on (a remote clock is wrong, or this one is); the clock
// then runs ahead of the wall time by the logical counter until the wall
// time catches up.
func (c *Clock) Observe(h HLC) error {
	if h > c.last {
		c.last = h
	}
	limit := c.MaxDrift
	if limit < 0 {
		return nil
	}
	if limit == 0 {
		limit = DefaultMaxDrift
	}
	wall := c.wallMillis()
	if ahead := h.Millis() - wall; ahead > limit.Milliseconds() {
		return &DriftError{Remote: h, WallMillis: wall, Ahead: time.Duration(ahead) * time.Millisecond}
	}
	return nil
}

// Last returns the greatest timestamp the clock has issued, observed or been
// restored to (0 for a new clock). Persist it to Restore after a restart.
func (c *Clock) Last() HLC { return c.last }

// Restore makes every later Next greater than h, e.g. with the value of Last
// persisted before a restart. It never moves the clock backwards.
func (c *Clock) Restore(h HLC) {
	if h > c.last {
		c.last = h
	}
}

// DriftError reports an observed timestamp more than the clock's MaxDrift
// ahead of its wall time. The timestamp was accepted nevertheless.
type DriftError struct {
	Remote     HLC           // the observed timestamp
	WallMillis int64         // the local wall time, Unix milliseconds
	Ahead      time.Duration // how far Remote is ahead of the wall time
}

func (e *DriftError) Error() string {
	return "merge: observed timestamp " + e.Remote.String() + " is " + e.Ahead.String() +
		" ahead of the local wall clock (accepted; check the clocks)"
}

// DefaultMaxSkew is the skew CapSkew allows when its limit is zero.
const DefaultMaxSkew = time.Minute

// CapSkew bounds a timestamp received from another origin (a client write
// reaching the service) at the receiver's wall time plus maxSkew, so that
// a clock running ahead neither wins every conflict for as long as it is
// ahead nor drags the stamps derived from it (a later plain SQL write to
// the row is stamped after it) into the future: a write stamped beyond
// the bound is stamped at the bound instead. after is the previous HLC the
// receiver admitted for the same origin (0 if none): the result is always
// greater than it, so one origin's writes keep their order. maxSkew 0
// means DefaultMaxSkew, a negative value disables the bound (h is returned
// as is, or after+1 when h does not exceed after).
//
// A timestamp behind the wall time is left alone: it cannot be told from a
// write made offline some time ago, which must keep its place in time. (A
// client whose clock is behind catches up with every HLC it observes; see
// Clock.Observe.)
//
// ahead is how far h is ahead of wall (negative when behind). The caller
// counts and logs the writes it capped (the result differs from h).
func CapSkew(h HLC, wallMillis int64, maxSkew time.Duration, after HLC) (capped HLC, ahead time.Duration) {
	ahead = time.Duration(h.Millis()-wallMillis) * time.Millisecond
	capped = h
	if maxSkew == 0 {
		maxSkew = DefaultMaxSkew
	}
	if maxSkew > 0 {
		if bound := MakeHLC(wallMillis+maxSkew.Milliseconds(), 0); h > bound {
			capped = bound
		}
	}
	if capped <= after && after != ^HLC(0) {
		capped = after + 1
	}
	return capped, ahead
}
