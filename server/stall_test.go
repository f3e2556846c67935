package server_test

// Issue 15, faults beyond kill -9: clients that stop reading, connections
// that never speak, and (skew_test.go) client clocks far off.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
)

// newProcEnvWith is newProcEnv with extra environment for the service
// process (LATTICE_TEST_SERVICE_SERVE, LATTICE_TEST_SERVICE_HELLO_TIMEOUT;
// see serviceMain).
func newProcEnvWith(t testing.TB, procEnv []string, setup string, tables ...string) *env {
	t.Helper()
	e := &env{t: t, dbURL: pgtest.DB(t), data: filepath.Join(t.TempDir(), "data"), procEnv: procEnv}
	if setup != "" {
		pgtest.Exec(t, e.dbURL, setup)
	}
	e.addr = freeLocalAddr(t)
	e.url = "ws://" + e.addr
	e.startProc()
	for _, tb := range tables {
		e.exec("CALL lattice.electrify('" + tb + "')")
	}
	return e
}

// stallProxy forwards TCP connections to a service; stall makes it stop
// reading from both sides, as a SIGSTOPped client does: the service's
// frames pile up in the kernel's socket buffers, and pongs stop.
type stallProxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	gate   chan struct{} // closed while forwarding
	// ports are the local ports of the proxy's connections to the service.
	ports []int
}

func newStallProxy(t testing.TB, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{t: t, ln: ln, target: target, gate: make(chan struct{})}
	close(p.gate)
	t.Cleanup(func() { ln.Close() })
	go p.accept()
	return p
}

func (p *stallProxy) url() string { return "ws://" + p.ln.Addr().String() }

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.ports = append(p.ports, s.LocalAddr().(*net.TCPAddr).Port)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		gate := p.gate
		p.mu.Unlock()
		<-gate
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// queued returns what the kernel holds of the i-th connection's stream
// from the service: the service socket's send queue and the proxy
// socket's receive queue (/proc/net/tcp).
func (p *stallProxy) queued(i int) (send, recv int64) {
	p.mu.Lock()
	port := p.ports[i]
	p.mu.Unlock()
	svcPort := p.target[strings.LastIndexByte(p.target, ':')+1:]
	sp, _ := strconv.Atoi(svcPort)
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		lp, rp := hexPort(f[1]), hexPort(f[2])
		q := strings.Split(f[4], ":")
		tx, _ := strconv.ParseInt(q[0], 16, 64)
		rx, _ := strconv.ParseInt(q[1], 16, 64)
		switch {
		case lp == sp && rp == port:
			send = tx
		case lp == port && rp == sp:
			recv = rx
		}
	}
	return send, recv
}

func hexPort(addr string) int {
	n, _ := strconv.ParseInt(addr[strings.LastIndexByte(addr, ':')+1:], 16, 64)
	return int(n)
}

func (p *stallProxy) conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ports)
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	close(p.gate)
	p.mu.Unlock()
}

// serviceRSS returns the service process's VmRSS in bytes.
func (e *env) serviceRSS() float64 {
	e.t.Helper()
	v, err := vmRSS(e.proc.Process.Pid)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) metricValues() map[string]float64 {
	e.t.Helper()
	m, err := scrapeMetrics(e.baseURL() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// latencyProbe commits a marker row and returns how long until c holds it.
func latencyProbe(t testing.TB, e *env, c *client.Client, id int) time.Duration {
	t.Helper()
	start := time.Now()
	e.exec("INSERT INTO items VALUES ($1, 'probe', false, 0)", id)
	q := "SELECT count(*) FROM items WHERE id = " + strconv.Itoa(id)
	deadline := start.Add(60 * time.Second)
	for {
		if got := localRows(t, c, q); len(got) == 1 && got[0] == "1" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe row %d not received within 60s", id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stallDuration is how long TestStalledClientReturns keeps its client stalled:
// LATTICE_STALL_SECONDS, default 45 (past the ping timeout, 25 s, and
// WriteTimeout, 30 s: after those, a longer stall changes nothing for the
// service, which holds nothing for the client any more).
func stallDuration(t testing.TB) time.Duration {
	if v := os.Getenv("LATTICE_STALL_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("LATTICE_STALL_SECONDS: %v", err)
		}
		return time.Duration(n) * time.Second
	}
	return 45 * time.Second
}

// TestStalledClientReturns stalls a real client (its connection stops being
// read, as when the process is SIGSTOPped) while 50,000 rows are
// written: the service's memory stays flat, it cuts the client off
// (too_slow) instead of holding data for it, another client's commit ->
// receive latency stays low throughout, and on its return the stalled
// client catches up from the retained log.
func TestStalledClientReturns(t *testing.T) {
	e := newProcEnvWith(t, []string{"LATTICE_TEST_SERVICE_SERVE=1"}, itemsSQL, "items")
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "items"})

	px := newStallProxy(t, e.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	staller, err := client.Open(ctx, filepath.Join(t.TempDir(), "staller.db"),
		&client.Options{URL: px.url(), Token: e.token("alice"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer staller.Close()
	runDone := make(chan struct{})
	go func() { staller.Run(ctx); close(runDone) }()
	defer func() { cancel(); <-runDone }()
	e.subscribe(staller, client.Shape{Table: "items"})

	if n := e.metricValues()["lattice_connections"]; n != 2 {
		t.Fatalf("lattice_connections = %v, want 2", n)
	}
	time.Sleep(time.Second) // let the service settle before the baseline
	baseRSS := e.serviceRSS()

	stalledConn := px.conns() - 1
	px.stall()
	stalledAt := time.Now()
	stall := stallDuration(t)
	const rows, perTxn = 50000, 500
	var lat []time.Duration
	maxRSS := baseRSS
	var cutAfter time.Duration
	var maxSendQ, maxRecvQ int64
	sample := func() {
		maxRSS = max(maxRSS, e.serviceRSS())
		sq, rq := px.queued(stalledConn)
		maxSendQ, maxRecvQ = max(maxSendQ, sq), max(maxRecvQ, rq)
		if cutAfter == 0 && e.metricValues()["lattice_connections"] == 1 {
			cutAfter = time.Since(stalledAt)
		}
	}
	probe := 1_000_000
	for i := 0; i < rows; i += perTxn {
		// ~150-byte rows: 7.5 MB of changes, more than the socket buffers hold.
		e.exec("INSERT INTO items SELECT g, 'row ' || g || ' ' || repeat('x', 120), false, g FROM generate_series($1::int, $2::int) g",
			i+1, i+perTxn)
		if (i/perTxn)%5 == 4 {
			probe++
			lat = append(lat, latencyProbe(t, e, good, probe))
		}
		sample()
	}
	written := time.Since(stalledAt)
	for time.Since(stalledAt) < stall {
		probe++
		lat = append(lat, latencyProbe(t, e, good, probe))
		sample()
		time.Sleep(500 * time.Millisecond)
	}
	sample()
	m := e.metricValues()
	if cutAfter == 0 {
		t.Fatalf("the stalled client is still connected after %s (lattice_connections %v)", time.Since(stalledAt), m["lattice_connections"])
	}
	if n := m[`lattice_client_errors_total{code="too_slow"}`]; n < 1 {
		t.Errorf(`lattice_client_errors_total{code="too_slow"} = %v, want >= 1`, n)
	}
	slices.Sort(lat)
	t.Logf("stalled %s (50,000 rows written in %s); cut off after %s; service RSS %.1f MiB before, max %.1f MiB while stalled",
		time.Since(stalledAt).Round(time.Second), written.Round(time.Second), cutAfter.Round(time.Second), baseRSS/(1<<20), maxRSS/(1<<20))
	t.Logf("other client's commit->receive latency over %d probes: p50 %s, p99 %s, max %s",
		len(lat), pct(lat, 0.5).Round(time.Millisecond), pct(lat, 0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	// The bound: the service holds at most one frame per session; the
	// growth is the change log's in-memory tail of recent transactions
	// (shared by all sessions, at most 64 MiB by default) and the Go
	// runtime's slack.
	const rssBound = 96 << 20
	if grow := maxRSS - baseRSS; grow > rssBound {
		t.Errorf("service RSS grew by %.1f MiB while a client was stalled, bound %d MiB", grow/(1<<20), rssBound>>20)
	}
	if worst := lat[len(lat)-1]; worst > 5*time.Second {
		t.Errorf("the other client's commit->receive latency reached %s while a client was stalled", worst)
	}

	px.resume()
	want := e.pgRows("SELECT count(*) FROM items")
	eventually(t, 120*time.Second, "the stalled client to catch up", func() (bool, string) {
		got := localRows(t, staller, "SELECT count(*) FROM items")
		return equalStrings(got, want), fmt.Sprintf("client %v, postgres %v", got, want)
	})
	waitEqual(t, e, staller, "SELECT id, title FROM items ORDER BY id", "SELECT id, title FROM items ORDER BY id")
	t.Logf("while stalled the kernel held up to %d bytes in the service's send queue and %d in the stalled side's receive queue; the client's last error: %v",
		maxSendQ, maxRecvQ, staller.Status().LastError)
}

// sockstatTCPMem returns the kernel's memory for TCP socket buffers, in
// bytes (/proc/net/sockstat "TCP: ... mem <pages>"), host-wide.
func sockstatTCPMem(t testing.TB) float64 {
	t.Helper()
	data, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, _ := strconv.ParseFloat(f[i+1], 64)
				return pages * float64(os.Getpagesize())
			}
		}
	}
	return 0
}

// silentConns opens n raw TCP connections that never send a byte, and n
// WebSocket connections that complete the upgrade and never send Hello.
func silentConns(t testing.TB, addr string, n int) (tcp []net.Conn, ws []*websocket.Conn) {
	t.Helper()
	tcp = make([]net.Conn, n)
	ws = make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := net.DialTimeout("tcp", addr, 30*time.Second)
				if err != nil {
					errs <- err
					return
				}
				tcp[i] = c
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				w, _, err := websocket.Dial(ctx, "ws://"+addr+protocol.Path, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
				cancel()
				if err != nil {
					errs <- err
					return
				}
				ws[i] = w
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("open silent connections: %v", err)
	}
	t.Cleanup(func() {
		for i := range n {
			tcp[i].Close()
			ws[i].CloseNow()
		}
	})
	return tcp, ws
}

// TestSilentAndStalledConnsRSS opens 2,000 connections that never speak
// (1,000 raw TCP, 1,000 WebSocket upgrades without Hello) and 1,000
// clients that subscribe and never read again, with rows written to
// them, against the service as a process: its RSS stays under the
// bound, another client is served throughout, the silent connections
// are closed after HelloTimeout (the WebSocket ones with the reason) and
// the stalled ones after the ping timeout. HelloTimeout is 30 s here (10 s
// by default) so that all 3,000 are open at once. The figures are in
// BENCHMARKS.md ("Stalled clients and silent connections"; bench/stalled.sh).
func TestSilentAndStalledConnsRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 connections")
	}
	raiseFDLimit(t) // before the service process starts: it inherits it
	const helloTimeout = 30 * time.Second
	const n = 1000
	e := newProcEnvWith(t, []string{"LATTICE_TEST_SERVICE_SERVE=1", "LATTICE_TEST_SERVICE_HELLO_TIMEOUT=" + helloTimeout.String()},
		itemsSQL+"; INSERT INTO items SELECT g, 'item ' || g, false, g FROM generate_series(1, 100) g", "items")
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "items"})
	time.Sleep(2 * time.Second)
	baseRSS, baseKernel := e.serviceRSS(), sockstatTCPMem(t)
	baseHeap := e.metricValues()["go_memstats_heap_inuse_bytes"]

	start := time.Now()
	tcp, ws := silentConns(t, e.addr, n)
	silentAt := time.Now()
	stalled, err := dialMany(e.url, e.token("stalled"), n, func(int) protocol.Shape {
		return protocol.Shape{ID: "s", Table: "items"}
	})
	if err != nil {
		t.Fatalf("open stalled clients: %v", err)
	}
	defer closeAll(stalled) // ... which never read again
	opened := time.Since(start)

	// Rows for everyone: 20 transactions of 50 rows × ~150 B reach each
	// stalled session (150 KB each, unread), with probes of the other
	// client's commit -> receive latency in between.
	var lat []time.Duration
	peakRSS, peakKernel, peakConns := 0.0, 0.0, 0.0
	sample := func() {
		if v := e.serviceRSS(); v > peakRSS {
			peakRSS = v
			peakConns = e.metricValues()["lattice_connections"]
		}
		peakKernel = max(peakKernel, sockstatTCPMem(t))
	}
	for i := range 20 {
		e.exec("INSERT INTO items SELECT g, 'row ' || g || ' ' || repeat('x', 120), false, g FROM generate_series($1::int, $2::int) g",
			1000+i*50, 1000+i*50+49)
		lat = append(lat, latencyProbe(t, e, good, 1_000_000+i))
		sample()
	}
	withM := e.metricValues()
	withConns, withHeap := withM["lattice_connections"], withM["go_memstats_heap_inuse_bytes"]
	withRSS := e.serviceRSS()
	sample()
	if time.Since(silentAt) < helloTimeout && withConns != float64(1+2*n) {
		t.Errorf("lattice_connections = %v with everything open, want %d (the good client, %d upgrades without Hello, %d stalled)", withConns, 1+2*n, n, n)
	}

	// Everything is cut off: the silent connections after HelloTimeout,
	// the stalled ones when they answer no ping.
	eventually(t, helloTimeout+90*time.Second, "the silent and stalled connections to be closed", func() (bool, string) {
		for range 5 {
			lat = append(lat, latencyProbe(t, e, good, 2_000_000+len(lat)))
		}
		sample()
		c := e.metricValues()["lattice_connections"]
		return c == 1, fmt.Sprintf("lattice_connections %v", c)
	})
	cutAt := time.Since(start)
	// A raw TCP connection reads EOF; an upgraded one the close reason.
	for i, c := range tcp {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent TCP connection %d: read %v, want EOF (closed by the service)", i, err)
		}
	}
	for i, w := range ws[:10] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := w.Read(ctx)
		cancel()
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "too_slow: no Hello within 30s" {
			t.Fatalf("silent WebSocket %d: read %v, want close 1008 too_slow: no Hello within 30s", i, err)
		}
	}
	m := e.metricValues()
	if got := m[`lattice_client_errors_total{code="too_slow"}`]; got < 2*n {
		t.Errorf(`lattice_client_errors_total{code="too_slow"} = %v, want >= %d`, got, 2*n)
	}
	time.Sleep(5 * time.Second)
	afterRSS, afterKernel := e.serviceRSS(), sockstatTCPMem(t)
	afterHeap := e.metricValues()["go_memstats_heap_inuse_bytes"]
	slices.Sort(lat)
	mib := func(v float64) float64 { return v / (1 << 20) }
	t.Logf("opened %d silent TCP + %d silent WebSocket + %d stalled in %s; all cut off %s after the first",
		n, n, n, opened.Round(time.Second), cutAt.Round(time.Second))
	t.Logf("service RSS: before %.1f MiB, with all open %.1f MiB (peak %.1f MiB at %v sessions), after %.1f MiB",
		mib(baseRSS), mib(withRSS), mib(peakRSS), peakConns, mib(afterRSS))
	t.Logf("service heap in use: before %.1f MiB, with all open %.1f MiB, after %.1f MiB (RSS stays up: the Go runtime returns freed pages to the OS lazily)",
		mib(baseHeap), mib(withHeap), mib(afterHeap))
	t.Logf("kernel TCP buffers (host-wide, both ends: the test's unread sockets stay open until it ends): before %.1f MiB, peak %.1f MiB, after %.1f MiB",
		mib(baseKernel), mib(peakKernel), mib(afterKernel))
	t.Logf("other client's commit->receive latency over %d probes: p50 %s, p99 %s, max %s",
		len(lat), pct(lat, 0.5).Round(time.Millisecond), pct(lat, 0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	const rssBound = 256 << 20 // stated in README.md and BENCHMARKS.md
	if peakRSS > rssBound {
		t.Errorf("service RSS peaked at %.1f MiB, bound %d MiB", mib(peakRSS), rssBound>>20)
	}
	if worst := lat[len(lat)-1]; worst > 5*time.Second {
		t.Errorf("the other client's commit->receive latency reached %s", worst)
	}
}

// TestSilentConnections: connections that never speak are closed after
// HelloTimeout, an upgraded one with the reason, while a client is served.
func TestSilentConnections(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.stop()
	e.cfg.HelloTimeout = time.Second
	e.start()
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "items"})
	// The service's own server (e.http is an httptest server, without the
	// header timeout).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.svc.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	addr := ln.Addr().String()

	start := time.Now()
	tcp, ws := silentConns(t, addr, 20)
	for i, c := range tcp {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent TCP connection %d: read %v, want EOF", i, err)
		}
	}
	for i, w := range ws {
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, _, err := w.Read(rctx)
		rcancel()
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "too_slow: no Hello within 1s" {
			t.Fatalf("silent WebSocket %d: read %v, want close 1008 too_slow: no Hello within 1s", i, err)
		}
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("silent connections closed after %s, HelloTimeout 1s", d)
	}
	if !strings.Contains(e.metrics(), `lattice_client_errors_total{code="too_slow"} 20`) {
		t.Errorf("the 20 silent WebSockets are not counted as too_slow")
	}
	latencyProbe(t, e, good, 1)
}
