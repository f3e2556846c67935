package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

// rlsBenchSQL: 1,000 items in 10 projects (plus project 11, empty until a
// benchmark fills it), 1,000 users, each a member of one project (user
// uN of project N % 10), and a membership policy on items.
var rlsBenchSQL = `
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + rlsRole + `') THEN CREATE ROLE ` + rlsRole + ` NOLOGIN; END IF;
END $$;
CREATE TABLE rb_member (project_id integer NOT NULL, user_id text NOT NULL, PRIMARY KEY (project_id, user_id));
CREATE TABLE rb_item (id integer PRIMARY KEY, project_id integer NOT NULL, title text NOT NULL, n bigint NOT NULL);
INSERT INTO rb_item SELECT i, i % 10, 'item ' || i, 0 FROM generate_series(1, 1000) i;
INSERT INTO rb_item SELECT 100000 + i, 11, 'moved ' || i, 0 FROM generate_series(1, 100) i;
INSERT INTO rb_member SELECT i % 10, 'u' || i FROM generate_series(0, 999) i;
GRANT SELECT, INSERT, UPDATE, DELETE ON rb_member, rb_item TO ` + rlsRole + `;
ALTER TABLE rb_item ENABLE ROW LEVEL SECURITY;
ALTER TABLE rb_member ENABLE ROW LEVEL SECURITY;
CREATE POLICY rb_member_own ON rb_member FOR SELECT USING (user_id = ` + claimSub + `);
CREATE POLICY rb_item_members ON rb_item FOR SELECT USING (project_id IN (SELECT project_id FROM rb_member WHERE user_id = ` + claimSub + `));
`

// BenchmarkRLSStream measures what row-level security costs on the
// stream, side by side with the same run without it: 1,000 connected
// users, the observer u1 (a client.Client with a file database) and 999
// raw protocol connections. With policies, every user subscribes to the
// whole of rb_item and the membership policy gives each the 100 items of
// its project; without, each subscribes to rb_item where project_id = its
// project: the same rows reach the same users, so the difference is the
// cost of the policies (and of the relational bookkeeping they need).
//
// Metrics: p50-ms/p99-ms commit -> the observer's live query (one UPDATE
// of an item of project 1, 5-10 ms apart); changes/s: 100 transactions of
// 100 updates (10 per project) committed back to back, until every
// connection received all 100.
func BenchmarkRLSStream(b *testing.B) {
	raiseFDLimit(b)
	b.Run("policies=none", func(b *testing.B) { benchRLSStream(b, false) })
	b.Run("policies=membership", func(b *testing.B) { benchRLSStream(b, true) })
}

func benchRLSStream(b *testing.B, rls bool) {
	ctx := context.Background()
	e := rlsBenchEnv(b, rls)
	shapeOf := func(i int) client.Shape {
		if rls {
			return client.Shape{Table: "rb_item"}
		}
		return client.Shape{Table: "rb_item", Where: "project_id = $1", Params: []any{i % 10}}
	}
	obs := e.benchObserver(b, "u1", shapeOf(1))
	seen := obs.watch(b, "SELECT n FROM rb_item WHERE id = 1")

	var frames sync.Map // conn index -> *atomic.Int64 of data frames
	conns := dialUsers(b, e, 999, func(i int) (string, protocol.Shape) {
		user := (i + 2) % 1000 // u2..u999, then u0 (u1 is the observer)
		sh := shapeOf(user)
		ps := &protocol.Shape{ID: "s", Table: sh.Table, Where: sh.Where}
		for _, p := range sh.Params {
			s := fmt.Sprint(p)
			ps.Params = append(ps.Params, &s)
		}
		return fmt.Sprint("u", user), *ps
	})
	defer closeAll(conns)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	for i, c := range conns {
		var n atomic.Int64
		frames.Store(i, &n)
		go c.discard(rctx, func(int64) { n.Add(1) })
	}

	w := benchWriter(b, e)
	defer w.Close(ctx)
	var n int64
	commit := func() time.Duration {
		n++
		t0 := time.Now()
		if _, err := w.Exec(ctx, "UPDATE rb_item SET n = $1 WHERE id = 1", n); err != nil {
			b.Fatal(err)
		}
		return seen.until(b, n).Sub(t0)
	}
	for range 20 {
		commit()
	}
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, commit())
		b.StopTimer()
		time.Sleep(5*time.Millisecond + rand.N(5*time.Millisecond))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(pct(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")

	// Throughput: 100 transactions of 100 changes, every connection gets all.
	base := make([]int64, len(conns))
	for i := range conns {
		v, _ := frames.Load(i)
		base[i] = v.(*atomic.Int64).Load()
	}
	t0 := time.Now()
	for k := range 100 {
		if _, err := w.Exec(ctx, "UPDATE rb_item SET n = n + 1 WHERE (id / 10) % 10 = $1 AND id <= 1000", k%10); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(120 * time.Second)
	for i := range conns {
		v, _ := frames.Load(i)
		for v.(*atomic.Int64).Load() < base[i]+100 {
			if time.Now().After(deadline) {
				b.Fatalf("connection %d got %d of 100 transactions", i, v.(*atomic.Int64).Load()-base[i])
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(10000/time.Since(t0).Seconds(), "changes/s")
}

// BenchmarkRLSMoveIn: a membership row inserted -> the 100 items of the
// project on the user's client (a client.Client with a file database), with
// 1,000 users connected. One op inserts the membership and waits; then the
// membership is deleted and the items waited out (not timed).
func BenchmarkRLSMoveIn(b *testing.B) {
	raiseFDLimit(b)
	ctx := context.Background()
	e := rlsBenchEnv(b, true)
	obs := e.benchObserver(b, "u1", client.Shape{Table: "rb_item"})
	count := obs.watch(b, "SELECT count(*) FROM rb_item WHERE project_id = 11")
	conns := dialUsers(b, e, 999, func(i int) (string, protocol.Shape) {
		return fmt.Sprint("u", (i+2)%1000), protocol.Shape{ID: "s", Table: "rb_item"}
	})
	defer closeAll(conns)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	for _, c := range conns {
		go c.discard(rctx, nil)
	}
	w := benchWriter(b, e)
	defer w.Close(ctx)
	round := func() time.Duration {
		t0 := time.Now()
		if _, err := w.Exec(ctx, "INSERT INTO rb_member VALUES (11, 'u1')"); err != nil {
			b.Fatal(err)
		}
		d := count.until(b, 100).Sub(t0)
		if _, err := w.Exec(ctx, "DELETE FROM rb_member WHERE project_id = 11 AND user_id = 'u1'"); err != nil {
			b.Fatal(err)
		}
		count.until(b, 0)
		return d
	}
	for range 3 {
		round()
	}
	var lat []time.Duration
	for b.Loop() {
		lat = append(lat, round())
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(pct(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")
}

func rlsBenchEnv(b *testing.B, rls bool) *env {
	if rls {
		return newRLSEnv(b, rlsBenchSQL, "rb_member", "rb_item")
	}
	return newEnv(b, rlsBenchSQL, "rb_member", "rb_item")
}

// benchObserver is a client of user sub on a file database, subscribed.
func (e *env) benchObserver(b *testing.B, sub string, sh client.Shape) *observer {
	c, _ := e.clientAsAt(sub, filepath.Join(b.TempDir(), "observer.db"))
	e.subscribe(c, sh)
	return &observer{c: c}
}

type observer struct{ c *client.Client }

// watchedValue follows the int64 of a one-row live query.
type watchedValue struct {
	mu   sync.Mutex
	cond *sync.Cond
	v    int64
	at   time.Time
}

func (o *observer) watch(b *testing.B, sql string) *watchedValue {
	wv := &watchedValue{}
	wv.cond = sync.NewCond(&wv.mu)
	cancel, err := o.c.LiveQuery(sql, nil, func(r *client.Rows, err error) {
		at := time.Now()
		if err != nil || len(r.Values) != 1 {
			return
		}
		v, _ := r.Values[0][0].(int64)
		wv.mu.Lock()
		wv.v, wv.at = v, at
		wv.cond.Broadcast()
		wv.mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cancel)
	return wv
}

// until waits for the value v and returns when the live query saw it.
func (wv *watchedValue) until(b *testing.B, v int64) time.Time {
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			wv.mu.Lock()
			wv.cond.Broadcast()
			wv.mu.Unlock()
		}
	})
	defer timer.Stop()
	deadline := time.Now().Add(60 * time.Second)
	wv.mu.Lock()
	defer wv.mu.Unlock()
	for wv.v != v {
		if time.Now().After(deadline) {
			close(done)
			b.Fatalf("live query: value %d, want %d after 60s", wv.v, v)
		}
		wv.cond.Wait()
	}
	close(done)
	return wv.at
}

// dialUsers opens n raw connections, 16 at a time; user(i) gives the user
// and shape of the i-th.
func dialUsers(b *testing.B, e *env, n int, user func(i int) (string, protocol.Shape)) []*benchConn {
	conns, err := dialEach(n, func(ctx context.Context, i int) (*benchConn, error) {
		sub, sh := user(i)
		return dialBenchShapes(ctx, e.url, e.token(sub), fmt.Sprintf("bench-%d-%d", i, rand.Int64()), []protocol.Shape{sh})
	})
	if err != nil {
		closeAll(conns)
		b.Fatalf("dial: %v", err)
	}
	return conns
}

func benchWriter(b *testing.B, e *env) *pgx.Conn {
	ctx := context.Background()
	w, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		b.Fatal(err)
	}
	return w
}
