package server_test

// The cost of one client's heavy subscribes to the others (issue 15;
// figures in BENCHMARKS.md, "Heavy subscribes and shape limits"). Needs
// Postgres (the pgtest harness starts one); runs only with -bench:
//
//	go test ./server -run '^$' -bench BenchmarkHeavySubscribeLatency -benchtime 300x

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/limits"
)

const heavyIssues = 20000

// heavySQL: project 1 with 10 issues (the normal client's), project 2
// with 20,000 issues of about 100 bytes (the heavy client's).
var heavySQL = fmt.Sprintf(`
CREATE TABLE project (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE issue (id integer PRIMARY KEY, project_id integer NOT NULL REFERENCES project(id), title text NOT NULL, n bigint NOT NULL);
CREATE INDEX ON issue(project_id);
INSERT INTO project VALUES (1, 'normal'), (2, 'heavy');
INSERT INTO issue SELECT i, 1, 'issue ' || i, 0 FROM generate_series(1, 10) i;
INSERT INTO issue SELECT i, 2, 'issue ' || i || ' ' || repeat(md5(i::text), 2), 0 FROM generate_series(11, %d) i;
`, 10+heavyIssues)

// BenchmarkHeavySubscribeLatency measures commit -> client latency of a
// normal client while another connection subscribes, again and again, to
// the heaviest shape the default limits admit, next to the same latency
// without it, in the same run.
//
// The normal client is a client.Client (file database) holding project 1
// with its issues (a relational shape, so its stream goes through the
// router that the heavy session also updates); one op is an autocommit
// UPDATE of one of its issues, waited for until a live query shows it,
// then 5-10 ms of pause (not timed), as in BenchmarkCommitToLiveQuery.
// The heavy client (a raw protocol connection, reading and decoding every
// frame) subscribes to project 2 with 64 includes of its issues, each
// with its own where clause matching all 20,000 (so the service reads
// 64 x 20,000 = 1.28M rows and sends 20,001), waits for Subscribed,
// unsubscribes, and starts over.
//
// The commits are timed in 6 rounds of a quiet block (no heavy client)
// and a heavy block (a fresh heavy client, whose first subscribe has been
// reading for 300 ms, closed at the end of the block), b.N/6 commits
// each: quiet-* and heavy-*, side by side on the same, shared, machine.
// Then cycle-*: commits while a heavy client goes through a whole cycle
// (the rest of its first subscribe, Subscribed, when the session
// registers the interests of 20,000 rows with the router under its lock,
// the Unsubscribe, when it drops them, and the next Subscribe);
// heavy-subscribe-s is that first subscribe's Subscribe -> Subscribed.
// rate=default runs with the default --snapshot-rows-per-sec (50,000),
// rate=unlimited without a limit.
func BenchmarkHeavySubscribeLatency(b *testing.B) {
	b.Run("rate=default", func(b *testing.B) { benchHeavy(b, 0) })
	b.Run("rate=unlimited", func(b *testing.B) { benchHeavy(b, -1) })
}

func benchHeavy(b *testing.B, rate int) {
	ctx := context.Background()
	e := newEnv(b, heavySQL, "project", "issue")
	e.stop()
	e.cfg.SnapshotRowsPerSec = rate
	e.start()
	e.exec("VACUUM ANALYZE")

	obs, _ := e.clientAt(filepath.Join(b.TempDir(), "observer.db"))
	e.subscribe(obs, mustParseShapeB(b, `{"table":"project","where":"id = $1","params":[1],"include":{"issue":{}}}`))
	type seen struct {
		n  int64
		at time.Time
	}
	seenc := make(chan seen, 1024)
	cancel, err := obs.LiveQuery("SELECT n FROM issue WHERE id = 1", nil, func(r *client.Rows, err error) {
		at := time.Now()
		if err != nil || len(r.Values) != 1 {
			return
		}
		n, _ := r.Values[0][0].(int64)
		select {
		case seenc <- seen{n, at}:
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()

	w, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(ctx)
	if _, err := w.Exec(ctx, "SET synchronous_commit = on"); err != nil { // see benchCommitToLive
		b.Fatal(err)
	}
	var n int64
	commit := func() time.Duration {
		n++
		t0 := time.Now()
		if _, err := w.Exec(ctx, "UPDATE issue SET n = $1 WHERE id = 1", n); err != nil {
			b.Fatal(err)
		}
		timeout := time.After(60 * time.Second)
		for {
			select {
			case got := <-seenc:
				if got.n == n {
					return got.at.Sub(t0)
				}
			case <-timeout:
				b.Fatalf("commit %d: no callback within 60s", n)
			}
		}
	}
	pause := func() { time.Sleep(5*time.Millisecond + rand.N(5*time.Millisecond)) }
	phase := func(k int) []time.Duration {
		out := make([]time.Duration, 0, k)
		for range k {
			out = append(out, commit())
			pause()
		}
		slices.Sort(out)
		return out
	}
	for range 20 { // warm up
		commit()
		pause()
	}

	// startHeavy starts a heavy client and returns once its first
	// subscribe has been reading for a moment; stop closes it and waits
	// until the service has let it go.
	conns := func() float64 {
		m, err := scrapeMetrics(e.http.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		return m["lattice_connections"]
	}
	type heavyRun struct {
		st     *heavyStats
		cancel context.CancelFunc
		done   chan error
	}
	startHeavy := func() *heavyRun {
		hctx, cancel := context.WithCancel(ctx)
		h := &heavyRun{st: &heavyStats{}, cancel: cancel, done: make(chan error, 1)}
		go func() { h.done <- heavyLoop(hctx, e.url, e.token("heavy"), h.st) }()
		for h.st.started.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		return h
	}
	stop := func(h *heavyRun) {
		h.cancel()
		if err := <-h.done; err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			b.Logf("heavy client ended: %v", err)
		}
		for conns() > 1 {
			time.Sleep(10 * time.Millisecond)
		}
	}

	b.ResetTimer()
	// Quiet and heavy blocks alternate, so that the machine's other load
	// falls on both alike.
	const rounds = 6
	k := max(b.N/rounds, 10)
	var quiet, heavy []time.Duration
	for range rounds {
		quiet = append(quiet, phase(k)...)
		h := startHeavy()
		heavy = append(heavy, phase(k)...)
		select {
		case err := <-h.done:
			b.Fatalf("heavy client: %v", err)
		default:
		}
		stop(h)
	}
	slices.Sort(quiet)
	slices.Sort(heavy)

	// A whole cycle of the heavy client: the rest of its first subscribe,
	// Subscribed (its interests registered with the router), the
	// Unsubscribe (dropped) and the next Subscribe.
	h := startHeavy()
	cstart := time.Now()
	var cycle []time.Duration
	for h.st.cycles.Load() < 1 || len(cycle) < k {
		select {
		case err := <-h.done:
			b.Fatalf("heavy client: %v", err)
		default:
		}
		if time.Since(cstart) > 10*time.Minute {
			b.Fatal("the heavy client did not finish a cycle in 10 minutes")
		}
		cycle = append(cycle, phase(10)...)
	}
	time.Sleep(300 * time.Millisecond) // into the next subscribe
	cycle = append(cycle, phase(10)...)
	slices.Sort(cycle)
	cdur := time.Since(cstart)
	firstDur := time.Duration(h.st.firstNs.Load())
	stop(h)
	b.StopTimer()

	report := func(name string, d []time.Duration) {
		b.ReportMetric(ms(pct(d, 0.50)), name+"-p50-ms")
		b.ReportMetric(ms(pct(d, 0.99)), name+"-p99-ms")
		b.ReportMetric(ms(d[len(d)-1]), name+"-max-ms")
	}
	report("quiet", quiet)
	report("heavy", heavy)
	report("cycle", cycle)
	b.ReportMetric(float64(len(cycle)), "cycle-commits")
	b.ReportMetric(cdur.Seconds(), "cycle-s")
	b.ReportMetric(firstDur.Seconds(), "heavy-subscribe-s")
}

type heavyStats struct {
	started atomic.Int64 // Subscribes sent
	cycles  atomic.Int64 // Unsubscribes answered
	firstNs atomic.Int64 // Subscribe -> Subscribed of the first
}

// heavyLoop subscribes to the heavy shape, waits for Subscribed,
// unsubscribes, waits for the answer, and starts over until ctx ends.
func heavyLoop(ctx context.Context, url, token string, st *heavyStats) error {
	ws, _, err := websocket.Dial(ctx, url+protocol.Path, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	ws.SetReadLimit(protocol.MaxDownFrame)
	send := func(m interface{ Encode([]byte) []byte }) error {
		return ws.Write(ctx, websocket.MessageBinary, m.Encode(nil))
	}
	if err := send(&protocol.Hello{Version: protocol.Version, Token: token, ClientID: "heavy"}); err != nil {
		return err
	}
	incs := make([]protocol.Include, limits.DefaultIncludes)
	for i := range incs {
		incs[i] = protocol.Include{Table: "issue", Where: fmt.Sprintf("id <> %d", -1-i)}
	}
	// wait reads frames (decoding each, as a client does) until the
	// answer to reqID.
	wait := func(reqID uint32) error {
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return err
			}
			m, err := protocol.DecodeDown(data)
			if err != nil {
				return err
			}
			switch m := m.(type) {
			case *protocol.Error:
				return m
			case *protocol.Subscribed:
				if m.ReqID == reqID {
					return nil
				}
			}
		}
	}
	if _, _, err := ws.Read(ctx); err != nil { // Welcome
		return err
	}
	for i := uint32(1); ctx.Err() == nil; i++ {
		id := fmt.Sprintf("heavy%d", i)
		if err := send(&protocol.Subscribe{ReqID: 2 * i, Shapes: []protocol.Shape{{ID: id, Table: "project", Where: "id = 2", Include: incs}}}); err != nil {
			return err
		}
		t0 := time.Now()
		st.started.Add(1)
		if err := wait(2 * i); err != nil {
			return err
		}
		if i == 1 {
			st.firstNs.Store(int64(time.Since(t0)))
		}
		if err := send(&protocol.Unsubscribe{ReqID: 2*i + 1, ShapeIDs: []string{id}}); err != nil {
			return err
		}
		if err := wait(2*i + 1); err != nil {
			return err
		}
		st.cycles.Add(1)
	}
	return nil
}

func mustParseShapeB(b *testing.B, js string) client.Shape {
	b.Helper()
	sh, err := client.ParseShape([]byte(js))
	if err != nil {
		b.Fatal(err)
	}
	return sh
}
