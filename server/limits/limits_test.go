package limits

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/protocol"
)

var def = Limits{Includes: DefaultIncludes, Depth: DefaultDepth, WhereBytes: DefaultWhereBytes, Params: DefaultParams}

func str(s string) *string { return &s }

func nested(depth int) []protocol.Include {
	if depth == 0 {
		return nil
	}
	return []protocol.Include{{Table: "t", Include: nested(depth - 1)}}
}

func TestCheck(t *testing.T) {
	many := func(n int, f func(i int) protocol.Include) []protocol.Include {
		out := make([]protocol.Include, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	distinct := func(i int) protocol.Include {
		return protocol.Include{Table: "issue", Where: "id <> $1", Params: []*string{str(strings.Repeat("x", i+1))}}
	}
	cases := []struct {
		name  string
		sh    protocol.Shape
		l     Limits
		limit string // "" = accepted
		msg   string
	}{
		{"plain", protocol.Shape{ID: "a", Table: "project"}, def, "", ""},
		{"64 includes", protocol.Shape{ID: "a", Table: "project", Include: many(64, distinct)}, def, "", ""},
		{"65 includes", protocol.Shape{ID: "a", Table: "project", Include: many(65, distinct)}, def, LimitIncludes, "more than 64 includes"},
		{"includes of all levels count", protocol.Shape{ID: "a", Table: "project", Include: []protocol.Include{
			{Table: "issue", Include: many(40, distinct)}, {Table: "tag", Include: many(30, distinct)}}}, def, LimitIncludes, "more than 64"},
		{"duplicate", protocol.Shape{ID: "a", Table: "project", Include: many(10000, func(int) protocol.Include { return protocol.Include{Table: "issue"} })},
			def, Duplicate, `include project -> issue (number 2 of its level) repeats include number 1`},
		{"duplicate over the include limit", protocol.Shape{ID: "a", Table: "project", Include: many(40000, func(int) protocol.Include { return protocol.Include{Table: "issue"} })},
			Limits{}, Duplicate, "repeats include number 1"},
		{"duplicate with other sub-includes", protocol.Shape{ID: "a", Table: "project", Include: []protocol.Include{
			{Table: "issue", Where: "x = 1"}, {Table: "tag"}, {Table: "issue", Where: " x = 1 ", Include: nested(1)}}}, def, Duplicate, "number 3 of its level) repeats include number 1"},
		{"same table, other where", protocol.Shape{ID: "a", Table: "project", Include: []protocol.Include{
			{Table: "issue", Where: "x = 1"}, {Table: "issue", Where: "x = 2"}, {Table: "issue", Via: "other_id"}}}, def, "", ""},
		{"same table, other params", protocol.Shape{ID: "a", Table: "project", Include: []protocol.Include{
			{Table: "issue", Where: "x = $1", Params: []*string{str("1")}}, {Table: "issue", Where: "x = $1", Params: []*string{nil}}}}, def, "", ""},
		{"same include under other parents", protocol.Shape{ID: "a", Table: "project", Include: []protocol.Include{
			{Table: "issue", Include: []protocol.Include{{Table: "comment"}}}, {Table: "issue", Where: "x", Include: []protocol.Include{{Table: "comment"}}}}}, def, "", ""},
		{"depth 8", protocol.Shape{ID: "a", Table: "t", Include: nested(8)}, def, "", ""},
		{"depth 9", protocol.Shape{ID: "a", Table: "t", Include: nested(9)}, def, LimitDepth, "more than 8 levels deep (t -> t -> t -> t -> t -> t -> t -> t -> t -> t)"},
		{"depth unlimited", protocol.Shape{ID: "a", Table: "t", Include: nested(16)}, Limits{}, "", ""},
		{"where 4096", protocol.Shape{ID: "a", Table: "t", Where: strings.Repeat(" ", 4096)}, def, "", ""},
		{"where 4097", protocol.Shape{ID: "a", Table: "t", Where: strings.Repeat(" ", 4097)}, def, LimitWhereBytes, "t: where clause of 4097 bytes, more than the service's limit of 4096"},
		{"include where", protocol.Shape{ID: "a", Table: "t", Include: []protocol.Include{{Table: "u", Where: strings.Repeat(" ", 5000)}}}, def, LimitWhereBytes, "include t -> u: where clause of 5000 bytes"},
		{"params 64", protocol.Shape{ID: "a", Table: "t", Params: make([]*string, 64)}, def, "", ""},
		{"params 65", protocol.Shape{ID: "a", Table: "t", Params: make([]*string, 65)}, def, LimitParams, "t: 65 params, more than the service's limit of 64"},
		{"include params", protocol.Shape{ID: "a", Table: "t", Include: []protocol.Include{{Table: "u", Params: make([]*string, 100)}}}, def, LimitParams, "include t -> u: 100 params"},
	}
	for _, c := range cases {
		err := Check(&c.sh, c.l)
		if c.limit == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", c.name, err)
			}
			continue
		}
		var le *Error
		if !errors.As(err, &le) {
			t.Errorf("%s: error %v, want a limits.Error", c.name, err)
			continue
		}
		if le.Limit != c.limit || !strings.Contains(le.Msg, c.msg) || !strings.HasPrefix(le.Msg, `shape "a": `) {
			t.Errorf("%s: %s: %q, want %s mentioning %q", c.name, le.Limit, le.Msg, c.limit, c.msg)
		}
	}
}

// TestCheckFast: the shapes of issue 15 are refused in microseconds.
func TestCheckFast(t *testing.T) {
	incs := make([]protocol.Include, 40000)
	for i := range incs {
		incs[i] = protocol.Include{Table: "issue"}
	}
	sh := protocol.Shape{ID: "a", Table: "project", Include: incs}
	start := time.Now()
	for range 100 {
		if Check(&sh, def) == nil {
			t.Fatal("accepted")
		}
	}
	if d := time.Since(start) / 100; d > time.Millisecond {
		t.Errorf("Check took %v", d)
	}
}

type fakeClock struct {
	t     time.Time
	slept time.Duration
	naps  int
}

func (c *fakeClock) now() time.Time { return c.t }
func (c *fakeClock) sleep(_ context.Context, d time.Duration) error {
	c.t = c.t.Add(d)
	c.slept += d
	c.naps++
	return nil
}

func TestBucket(t *testing.T) {
	ctx := context.Background()
	if b := NewBucket(0, nil); b != nil {
		t.Fatal("rate 0 has a bucket")
	}
	var none *Bucket
	if err := none.Take(ctx, 1<<30); err != nil {
		t.Fatal(err)
	}

	// 1,000 rows/s: the burst (250 rows) goes at once, the rest at the rate.
	c := &fakeClock{t: time.Unix(1000, 0)}
	b := newBucket(1000, nil, c.now, c.sleep)
	for range 250 {
		b.Take(ctx, 1)
	}
	if c.slept != 0 {
		t.Fatalf("slept %v within the burst", c.slept)
	}
	for range 10_000 {
		b.Take(ctx, 1)
	}
	// 10,000 rows after the burst take 10 s, less the debt carried (< 10 ms).
	if c.slept < 9990*time.Millisecond || c.slept > 10*time.Second {
		t.Errorf("10,000 rows at 1,000/s slept %v", c.slept)
	}
	if c.naps > 1100 {
		t.Errorf("%d naps for 10,000 rows: not batched", c.naps)
	}

	// Idle time refills the bucket, up to the burst.
	c.t = c.t.Add(time.Hour)
	c.slept = 0
	b.Take(ctx, 250)
	if c.slept != 0 {
		t.Errorf("a full bucket slept %v", c.slept)
	}
	b.Take(ctx, 1000)
	if c.slept != time.Second {
		t.Errorf("1,000 rows over an empty bucket slept %v, want 1s", c.slept)
	}

	// Alone on the service, a connection is not paced; once another
	// connects, it is, from an empty bucket.
	alone := true
	c.slept = 0
	solo := newBucket(1000, func() bool { return !alone }, c.now, c.sleep)
	solo.Take(ctx, 100_000)
	if c.slept != 0 {
		t.Errorf("a connection alone on the service slept %v", c.slept)
	}
	alone = false
	solo.Take(ctx, 1000)
	if c.slept != time.Second {
		t.Errorf("1,000 rows once shared slept %v, want 1s", c.slept)
	}

	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	real := NewBucket(10, nil)
	if err := real.Take(cctx, 100); !errors.Is(err, context.Canceled) {
		t.Errorf("Take on a cancelled context: %v", err)
	}
}
