package server_test

// Read-path benchmarks (figures in BENCHMARKS.md). They need Postgres (the
// pgtest harness starts one) and are only run with -bench, e.g.
//
//	go test ./server -run '^$' -bench BenchmarkInitialSync100k -benchtime 3x
//	go test ./server -run '^$' -bench BenchmarkCommitToLiveQuery -benchtime 500x
//	go test ./server -run '^$' -bench BenchmarkIdleConnMemory -benchtime 1x
//
// bench/run.sh runs all of them the way BENCHMARKS.md reports them.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server"
)

// ---------------------------------------------------------------------------
// 1. Initial sync of 100k rows.

const initialRows = 100_000

// syncItemsSQL is a 100k-row table of ~200-byte rows (about 215 bytes per
// row in the protocol's encoding).
const syncItemsSQL = `
CREATE TABLE sync_items (
  id bigint PRIMARY KEY,
  project_id integer NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  done boolean NOT NULL,
  created timestamptz NOT NULL
);
INSERT INTO sync_items
SELECT i, i % 100,
       rpad('task ' || i || ': ', 60, 'the quick brown fox jumps over the lazy dog '),
       rpad('notes for ' || i || ' ', 100, md5(i::text) || md5((i + 1)::text)),
       i % 3 = 0,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1.25 second'
FROM generate_series(1, 100000) i`

// BenchmarkInitialSync100k: a fresh native client subscribes to a whole
// 100k-row table; one op is client.Open -> connect -> Subscribe -> Synced
// (all rows committed in the local SQLite database). The service, Postgres
// and the client share the machine.
func BenchmarkInitialSync100k(b *testing.B) {
	e := newEnv(b, syncItemsSQL, "sync_items")
	e.exec("VACUUM (FREEZE, ANALYZE) sync_items") // set hint bits once, not in the first snapshot
	for _, mode := range []string{"file", "memory"} {
		b.Run(mode, func(b *testing.B) {
			var total time.Duration
			var wire float64
			iters := 0
			for b.Loop() {
				b.StopTimer()
				path := ":memory:"
				var dir string
				if mode == "file" {
					dir = b.TempDir()
					path = filepath.Join(dir, "replica.db")
				}
				before, err := scrapeMetrics(e.http.URL + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()

				start := time.Now()
				c, stop := e.clientAt(path)
				e.subscribe(c, client.Shape{Table: "sync_items"})
				total += time.Since(start)

				b.StopTimer()
				if got := localRows(b, c, "SELECT count(*) FROM sync_items"); len(got) != 1 || got[0] != strconv.Itoa(initialRows) {
					b.Fatalf("client has %v rows, want %d", got, initialRows)
				}
				stop()
				after, err := scrapeMetrics(e.http.URL + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				wire += after["lattice_sent_bytes_total"] - before["lattice_sent_bytes_total"]
				iters++
				if dir != "" {
					os.RemoveAll(dir)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(initialRows*iters)/total.Seconds(), "rows/s")
			b.ReportMetric(wire/float64(initialRows*iters), "wire-B/row")
		})
	}
}

// ---------------------------------------------------------------------------
// 2. Commit in Postgres -> live-query callback on another client.

// liveItemsSQL: 1,000 rows in 10 projects. The benchmark updates row 1
// (project 1).
const liveItemsSQL = `
CREATE TABLE live_items (id integer PRIMARY KEY, project_id integer NOT NULL, title text NOT NULL, n bigint NOT NULL);
INSERT INTO live_items SELECT i, i % 10, 'item ' || i, 0 FROM generate_series(1, 1000) i`

// BenchmarkCommitToLiveQuery measures the latency from a Postgres commit
// to the live-query callback of a client (client.Client with a file
// database) that has the changed row in its shape. One op is one autocommit
// UPDATE of one row by a separate writer connection, waited for until the
// callback shows the new value (and, with 1,000 clients, until every other
// connection received it), then 5-10 ms of pause (not timed).
//
//   - clients=1: the observer alone.
//   - clients=1000: 999 more raw protocol connections subscribed to the same
//     shape, reading and discarding frames: every commit is sent 1,000 times.
//   - clients=1000-filtered: the 999 subscribe to another project: their
//     where clause is evaluated for every change, nothing is sent to them.
//   - clients=1000-lazy: as clients=1000, but the 999 read in bursts every
//     2 s (the kernel buffers their frames) and decode nothing, which takes
//     most of their CPU off the shared cores: closer to remote clients,
//     i.e. to the service's own fan-out cost.
//
// Metrics: p50-ms/p99-ms from just before the writer's Exec to the
// callback; after-exec-* from Exec's return (a lower bound: the commit
// itself is part of Exec); exec-p50-ms the Exec round trip; fanout-*
// from before Exec until the last of the 999 connections read the frame.
func BenchmarkCommitToLiveQuery(b *testing.B) {
	raiseFDLimit(b)
	b.Run("clients=1", func(b *testing.B) { benchCommitToLive(b, 0, false) })
	b.Run("clients=1000", func(b *testing.B) { benchCommitToLive(b, 999, false) })
	b.Run("clients=1000-filtered", func(b *testing.B) { benchCommitToLive(b, 999, true) })
	b.Run("clients=1000-lazy", func(b *testing.B) { benchCommitToLive(b, -999, false) })
}

// benchCommitToLive: others < 0 means -others lazy readers (see read).
func benchCommitToLive(b *testing.B, others int, filtered bool) {
	lazy := others < 0
	others = max(others, -others)
	ctx := context.Background()
	e := newEnv(b, liveItemsSQL, "live_items")
	shape := client.Shape{Table: "live_items", Where: "project_id = $1", Params: []any{1}}

	obs, _ := e.clientAt(filepath.Join(b.TempDir(), "observer.db"))
	e.subscribe(obs, shape)
	type seen struct {
		n  int64
		at time.Time
	}
	seenc := make(chan seen, 1024)
	cancel, err := obs.LiveQuery("SELECT n FROM live_items WHERE id = 1", nil, func(r *client.Rows, err error) {
		at := time.Now()
		if err != nil {
			b.Errorf("live query: %v", err)
			return
		}
		if len(r.Values) != 1 {
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

	// The other connections.
	fo := &fanout{want: others, arrivals: map[int64]*arrival{}}
	param := "1"
	if filtered {
		param = "2"
	}
	conns, err := dialMany(e.url, e.token("bench"), others, func(i int) protocol.Shape {
		return protocol.Shape{ID: "s", Table: "live_items", Where: "project_id = $1", Params: []*string{&param}}
	})
	defer closeAll(conns)
	if err != nil {
		b.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	for _, c := range conns {
		switch {
		case lazy:
			go c.read(rctx, nil, 2*time.Second)
		case filtered:
			go c.discard(rctx, nil)
		default:
			go c.discard(rctx, fo.got)
		}
	}

	w, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(ctx)
	// The pgtest cluster runs with synchronous_commit=off: the WAL of a
	// commit is then flushed by the WAL writer (wal_writer_delay, 200 ms)
	// and only flushed WAL is decoded, which would add 0-400 ms to every
	// sample. The writer commits as with Postgres' default setting.
	if _, err := w.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		b.Fatal(err)
	}

	var n int64
	type sample struct{ exec, afterExec, total, all time.Duration }
	commit := func() sample {
		n++
		var a *arrival
		if others > 0 && !filtered && !lazy {
			a = fo.get(n) // data frame n of every connection is commit n
		}
		t0 := time.Now()
		if _, err := w.Exec(ctx, "UPDATE live_items SET n = $1 WHERE id = 1", n); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		timeout := time.After(30 * time.Second)
		var s sample
		for {
			var got seen
			select {
			case got = <-seenc:
			case <-timeout:
				b.Fatalf("commit %d: no callback within 30s", n)
			}
			if got.n == n {
				s = sample{exec: t1.Sub(t0), afterExec: got.at.Sub(t1), total: got.at.Sub(t0)}
				break
			}
		}
		if a != nil {
			select {
			case <-a.done:
				s.all = a.last.Sub(t0)
			case <-timeout:
				b.Fatalf("commit %d: reached %d of %d connections within 30s", n, fo.count(n), others)
			}
		}
		return s
	}
	pause := func() { time.Sleep(5*time.Millisecond + rand.N(5*time.Millisecond)) }
	for range 20 { // warm up: first Relation, statement caches, ...
		commit()
		pause()
	}

	var samples []sample
	for b.Loop() {
		samples = append(samples, commit())
		b.StopTimer()
		pause()
		b.StartTimer()
	}
	b.StopTimer()

	pick := func(f func(sample) time.Duration) []time.Duration {
		out := make([]time.Duration, len(samples))
		for i, s := range samples {
			out[i] = f(s)
		}
		slices.Sort(out)
		return out
	}
	total := pick(func(s sample) time.Duration { return s.total })
	after := pick(func(s sample) time.Duration { return s.afterExec })
	execd := pick(func(s sample) time.Duration { return s.exec })
	b.ReportMetric(ms(pct(total, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(total, 0.99)), "p99-ms")
	b.ReportMetric(ms(pct(after, 0.50)), "after-exec-p50-ms")
	b.ReportMetric(ms(pct(after, 0.99)), "after-exec-p99-ms")
	b.ReportMetric(ms(pct(execd, 0.50)), "exec-p50-ms")
	if others > 0 && !filtered && !lazy {
		all := pick(func(s sample) time.Duration { return s.all })
		b.ReportMetric(ms(pct(all, 0.50)), "fanout-p50-ms")
		b.ReportMetric(ms(pct(all, 0.99)), "fanout-p99-ms")
	}
	if filtered {
		var data int64
		for _, c := range conns {
			data += c.data.Load()
		}
		if data != 0 {
			b.Fatalf("filtered connections received %d data frames", data)
		}
	}
}

// fanout records when the connections received each data frame.
type fanout struct {
	mu       sync.Mutex
	want     int
	arrivals map[int64]*arrival
}

type arrival struct {
	n    int
	last time.Time
	done chan struct{}
}

func (f *fanout) get(seq int64) *arrival {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(seq)
}

func (f *fanout) getLocked(seq int64) *arrival {
	a := f.arrivals[seq]
	if a == nil {
		a = &arrival{done: make(chan struct{})}
		f.arrivals[seq] = a
	}
	return a
}

func (f *fanout) got(seq int64) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.getLocked(seq)
	a.n++
	if a.n == f.want {
		a.last = now
		close(a.done)
	}
}

func (f *fanout) count(seq int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(seq).n
}

// ---------------------------------------------------------------------------
// 3. Memory of the service per idle connected client.

const idleItemsSQL = `
CREATE TABLE idle_items (id integer PRIMARY KEY, project_id integer NOT NULL, title text NOT NULL);
INSERT INTO idle_items SELECT i, i % 100, 'item ' || i FROM generate_series(1, 1000) i`

// BenchmarkIdleConnMemory runs the real `lattice serve` binary (built
// here) as a subprocess and opens N raw WebSocket connections from this
// process, each Hello + Subscribe to a 10-row shape (`project_id = $1`),
// then idle (a goroutine here reads, to answer pings). Per connection, it
// reports the growth of the service's RSS (/proc/<pid>/status VmRSS,
// median of samples over 3 s), heap in use and goroutine stacks in use
// (/metrics), and goroutines. One op is one fresh service process.
// conns=2000 also reports the marginal cost of its second 1,000.
func BenchmarkIdleConnMemory(b *testing.B) {
	raiseFDLimit(b)
	bin := filepath.Join(b.TempDir(), "lattice")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/latticesync/lattice/cmd/lattice").CombinedOutput(); err != nil {
		b.Fatalf("build lattice: %v\n%s", err, out)
	}
	for _, n := range []int{1000, 2000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			var res []memResult
			for b.Loop() {
				res = append(res, idleMemoryOnce(b, bin, n))
			}
			avg := func(f func(memResult) float64) float64 {
				s := 0.0
				for _, r := range res {
					s += f(r)
				}
				return s / float64(len(res))
			}
			b.ReportMetric(avg(func(r memResult) float64 { return r.rssKB }), "rss-KB/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.procRSSKB }), "proc-rss-KB/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.heapKB }), "heap-KB/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.liveHeapKB }), "live-heap-KB/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.stackKB }), "stack-KB/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.goroutines }), "goroutines/conn")
			b.ReportMetric(avg(func(r memResult) float64 { return r.baseRSSMB }), "base-rss-MB")
			if n > 1000 {
				b.ReportMetric(avg(func(r memResult) float64 { return r.marginalRSSKB }), "marginal-rss-KB/conn")
			}
			b.ReportMetric(avg(func(r memResult) float64 { return r.connectS }), "connect-s")
		})
	}
}

type memResult struct {
	rssKB, procRSSKB, heapKB, liveHeapKB, stackKB float64
	goroutines                                    float64
	baseRSSMB, marginalRSSKB, connectS            float64
}

// memSample is the service's memory at one point.
type memSample struct {
	rss                                     float64 // VmRSS, bytes (median of samples)
	procRSS, heap, stack, goroutines, conns float64 // from /metrics
	liveHeap                                float64 // heap_alloc after a GC
}

func idleMemoryOnce(b *testing.B, bin string, n int) memResult {
	ctx := context.Background()
	dbURL := pgtest.DB(b)
	pgtest.Exec(b, dbURL, idleItemsSQL)
	secret := "bench-secret-0123456789abcdef"
	addr := freeLocalAddr(b)
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", filepath.Join(b.TempDir(), "data"), "--log-level", "warn")
	// gctrace only prints a line per GC cycle (to stderr), for the live heap.
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "LATTICE_AUTH_SECRET="+secret, "GODEBUG=gctrace=1")
	var out bytes.Buffer
	var outMu sync.Mutex
	cmd.Stdout = lockedWriter{&outMu, &out}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-exited:
			outMu.Lock()
			b.Fatalf("lattice serve exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("lattice serve not healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	pgtest.Exec(b, dbURL, "CALL lattice.electrify('idle_items')")
	tok, err := server.SignToken([]byte(secret), "bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pid := cmd.Process.Pid
	gcLog := func() string {
		outMu.Lock()
		defer outMu.Unlock()
		return out.String()
	}

	time.Sleep(time.Second)
	before := sampleMemory(b, pid, base, gcLog)
	params := make([]string, 100)
	for i := range params {
		params[i] = strconv.Itoa(i)
	}
	shape := func(i int) protocol.Shape {
		return protocol.Shape{ID: "s", Table: "idle_items", Where: "project_id = $1", Params: []*string{&params[i%100]}}
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var conns []*benchConn
	defer func() { closeAll(conns) }()
	var mid memSample
	start := time.Now()
	for len(conns) < n {
		k := min(1000, n-len(conns))
		more, err := dialMany("ws://"+addr, tok, k, func(i int) protocol.Shape { return shape(len(conns) + i) })
		conns = append(conns, more...)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range more {
			go c.discard(rctx, nil)
		}
		if len(conns) == 1000 && n > 1000 {
			paused := time.Now()
			mid = sampleMemory(b, pid, base, gcLog)
			start = start.Add(time.Since(paused))
		}
	}
	connect := time.Since(start)
	after := sampleMemory(b, pid, base, gcLog)
	if int(after.conns) != n {
		b.Fatalf("service reports %v connections, want %d", after.conns, n)
	}
	outMu.Lock()
	if strings.Contains(out.String(), "level=ERROR") || strings.Contains(out.String(), "level=WARN") {
		b.Logf("service log:\n%s", out.String())
	}
	outMu.Unlock()
	per := func(a, b float64) float64 { return (a - b) / float64(n) / 1024 }
	r := memResult{
		rssKB:      per(after.rss, before.rss),
		procRSSKB:  per(after.procRSS, before.procRSS),
		heapKB:     per(after.heap, before.heap),
		liveHeapKB: per(after.liveHeap, before.liveHeap),
		stackKB:    per(after.stack, before.stack),
		goroutines: (after.goroutines - before.goroutines) / float64(n),
		baseRSSMB:  before.rss / (1 << 20),
		connectS:   connect.Seconds(),
	}
	if n > 1000 {
		r.marginalRSSKB = (after.rss - mid.rss) / float64(n-1000) / 1024
	}
	b.Logf("conns=%d before: %+v\nafter: %+v", n, before, after)
	return r
}

// sampleMemory waits for the service to settle and samples its memory:
// VmRSS every 250 ms for 3 s after a 1 s pause (median), /metrics, and
// then the live heap (which needs a GC, hence last).
func sampleMemory(b *testing.B, pid int, base string, gcLog func() string) memSample {
	time.Sleep(time.Second)
	var rss []float64
	for range 12 {
		v, err := vmRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		rss = append(rss, v)
		time.Sleep(250 * time.Millisecond)
	}
	m, err := scrapeMetrics(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	slices.Sort(rss)
	return memSample{
		rss:        rss[len(rss)/2],
		procRSS:    m["process_resident_memory_bytes"],
		heap:       m["go_memstats_heap_inuse_bytes"],
		stack:      m["go_memstats_stack_inuse_bytes"],
		goroutines: m["go_goroutines"],
		conns:      m["lattice_connections"],
		liveHeap:   liveHeap(b, base, gcLog),
	}
}

// gcLine matches a GODEBUG=gctrace=1 line; group 1 is the heap marked
// live by that cycle, in MB.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @.* \d+->\d+->(\d+) MB`)

// liveHeap makes the service collect garbage and returns its live heap as
// the GC trace reports it (MB precision). A GC cannot be forced from
// outside: /metrics scrapes allocate until the next GC cycle ends (at most
// 20 s).
func liveHeap(b *testing.B, base string, gcLog func() string) float64 {
	start := len(gcLine.FindAllStringIndex(gcLog(), -1))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := scrapeMetrics(base + "/metrics"); err != nil {
			b.Fatal(err)
		}
		if m := gcLine.FindAllStringSubmatch(gcLog(), -1); len(m) > start {
			mb, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
			return mb * (1 << 20)
		}
	}
	b.Logf("no GC in the service within 20 s of /metrics scrapes")
	return math.NaN()
}

func vmRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func freeLocalAddr(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ---------------------------------------------------------------------------
// Shared helpers.

// benchConn is a raw protocol connection that has subscribed and then
// only reads.
type benchConn struct {
	ws     *websocket.Conn
	frames atomic.Int64 // frames read after Subscribed
	data   atomic.Int64 // of which Txn frames with changes
}

// discard reads frames until the connection ends, counting them; onData
// gets the sequence number (1-based) of every Txn frame with changes.
func (c *benchConn) discard(ctx context.Context, onData func(seq int64)) {
	c.read(ctx, onData, 0)
}

// read is discard; with lazy > 0 it does not decode, and each time it has
// had to wait for a frame it sleeps for lazy (first for a random part of
// it), so that it reads what arrived meanwhile in a burst: few syscalls
// and wake-ups, little CPU.
func (c *benchConn) read(ctx context.Context, onData func(seq int64), lazy time.Duration) {
	var buf bytes.Buffer
	if lazy > 0 {
		time.Sleep(rand.N(lazy))
	}
	for {
		start := time.Now()
		_, r, err := c.ws.Reader(ctx)
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		c.frames.Add(1)
		if lazy > 0 {
			if time.Since(start) > time.Millisecond {
				time.Sleep(lazy)
			}
			continue
		}
		if f := buf.Bytes(); len(f) > 0 && f[0] == byte(protocol.TypeTxn) {
			m, err := protocol.DecodeDown(f)
			if err != nil {
				return
			}
			if t := m.(*protocol.Txn); len(t.Changes) > 0 {
				seq := c.data.Add(1)
				if onData != nil {
					onData(seq)
				}
			}
		}
	}
}

// dialMany opens n connections, 16 at a time; shape(i) is the shape of
// the i-th. On error it returns the connections opened so far.
func dialMany(url, token string, n int, shape func(i int) protocol.Shape) ([]*benchConn, error) {
	return dialShapes(url, token, n, func(*benchConn) {}, func(i int) []protocol.Shape { return []protocol.Shape{shape(i)} })
}

func closeAll(conns []*benchConn) {
	for _, c := range conns {
		c.ws.CloseNow()
	}
}

// scrapeMetrics reads a Prometheus text exposition: metric name (with its
// labels, if any, as printed) -> value.
func scrapeMetrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// raiseFDLimit raises the soft limit on open files to the hard limit; a
// lattice subprocess inherits it.
func raiseFDLimit(b testing.TB) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatal(err)
		}
	}
	if rl.Cur < 8192 {
		b.Skipf("open file limit %d is too low for thousands of connections", rl.Cur)
	}
}

// pct returns the p-quantile (nearest rank) of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
