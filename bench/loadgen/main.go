// Command loadgen is Lattice's load generator: many protocol clients in a
// process of their own, a writer committing to Postgres at a steady rate,
// and a report of commit -> client latency (p50/p99/max), throughput,
// and the service's own memory, CPU, goroutines and file descriptors,
// scraped from its /metrics. At the end every client's rows are compared
// with Postgres.
//
// Against a running service and database:
//
//	go run ./bench/loadgen --url ws://HOST:5133/v1/sync --database-url URL --setup \
//	    --clients 1000 --projects 100 --rate 1000 --duration 60s
//
// Or all local (a throwaway Postgres and `lattice serve` as child
// processes; see bench/fanout.sh):
//
//	go build -o /tmp/lattice ./cmd/lattice
//	go run ./bench/loadgen --local --lattice /tmp/lattice --clients 10000 --projects 1000 \
//	    --rate 1000 --duration 30m --sample 30s
//
// The workload: tables lg_project(id, name) and lg_issue(id, project_id,
// title, n, sent_ns), --projects projects of --issues issues each. Client
// i holds project i mod --projects with its issues, as a relational shape
// (project where id = $1, include its issues; --shape relational) or a
// table shape (issue where project_id = $1; --shape table). The writer
// updates random issues (n = n + 1, sent_ns = the time just before the
// statement is sent), so each update reaches the clients of its project,
// and each of those records now - sent_ns: commit -> client, including the
// commit. Clocks are one: the writer and the clients share this process.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/catalog"
)

type config struct {
	URL, DatabaseURL, MetricsURL string
	Local                        bool
	Lattice                      string   // lattice binary for --local
	ServeArgs                    []string // extra `lattice serve` flags
	Setup                        bool
	AuthSecret                   string
	Clients, Projects, Issues    int
	Shape                        string
	Rate                         int // writes per second
	Writers                      int // concurrent writer connections
	Warmup, Duration, Sample     time.Duration
	DialParallel                 int
	JSON                         string
	WorkDir                      string
}

// result is what a run measured (also written as JSON with --json).
type result struct {
	Clients, Projects, Issues     int
	Shape                         string
	Rate                          int
	SubscribeSeconds              float64 // first dial -> last client's Subscribed
	SnapshotRows                  int64
	Writes, WritesBehind          int64   // committed; not sent because the writer fell behind
	WritesPerSec                  float64 // achieved over the measured period
	Expected, Received            uint64  // live changes due to clients and received (whole run)
	ChangesPerSec                 float64 // received per second over the measured period
	P50ms, P99ms, MaxMs           float64 // commit -> client, measured period
	ClientsEqual                  int     // clients equal to Postgres at the end
	ClientErrors                  []string
	ServiceRSSWarmMiB             float64 // after warm-up
	ServiceRSSEndMiB              float64
	ServiceRSSMaxMiB              float64
	GoroutinesWarm, GoroutinesEnd float64
	FDsWarm, FDsEnd               float64
	ServiceCPUSeconds             float64 // measured period
	CPUMicrosPerChange            float64 // service CPU per change received by a client
	LoadgenCPUPercent             float64 // this process, measured period (100 = one core)
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	res, err := run(ctx, cfg, os.Stdout)
	if res != nil && cfg.JSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(cfg.JSON, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "", "service WebSocket URL (ws://HOST:PORT/v1/sync); not with --local")
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "Postgres the service syncs (the writer commits there); not with --local")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "the service's /metrics (default: derived from --url)")
	fs.BoolVar(&c.Local, "local", false, "start a throwaway Postgres and `lattice serve` (--lattice) as child processes")
	fs.StringVar(&c.Lattice, "lattice", "lattice", "the lattice binary (with --local)")
	serveArgs := fs.String("serve-args", "", "extra flags for lattice serve, space-separated (with --local)")
	fs.BoolVar(&c.Setup, "setup", false, "create and seed lg_project/lg_issue and electrify them if absent (implied by --local)")
	fs.StringVar(&c.AuthSecret, "auth-secret", os.Getenv("LATTICE_AUTH_SECRET"), "HMAC secret to sign each client's token (sub loadgen-N); empty: no token (--insecure service)")
	fs.IntVar(&c.Clients, "clients", 100, "protocol clients")
	fs.IntVar(&c.Projects, "projects", 10, "projects; client i holds project i mod projects")
	fs.IntVar(&c.Issues, "issues", 20, "issues per project")
	fs.StringVar(&c.Shape, "shape", "relational", "relational (project id = $1 with its issues) or table (issue project_id = $1)")
	fs.IntVar(&c.Rate, "rate", 100, "writes per second (updates of random issues)")
	fs.IntVar(&c.Writers, "writers", 8, "concurrent writer connections")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "writes before measuring")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measured period")
	fs.DurationVar(&c.Sample, "sample", 10*time.Second, "print a line of figures this often")
	fs.IntVar(&c.DialParallel, "dial-parallel", 64, "clients connecting at once")
	fs.StringVar(&c.JSON, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&c.WorkDir, "work-dir", "", "with --local: directory for Postgres, the change log and the service log (default: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *serveArgs != "" {
		c.ServeArgs = strings.Fields(*serveArgs)
	}
	switch {
	case c.Local && (c.URL != "" || c.DatabaseURL != "" && os.Getenv("DATABASE_URL") != c.DatabaseURL):
		return nil, errors.New("--local starts its own service and Postgres: no --url or --database-url")
	case !c.Local && (c.URL == "" || c.DatabaseURL == ""):
		return nil, errors.New("give --url and --database-url, or --local")
	case c.Clients < 1 || c.Projects < 1 || c.Issues < 1 || c.Rate < 1 || c.Writers < 1 || c.DialParallel < 1:
		return nil, errors.New("--clients, --projects, --issues, --rate, --writers and --dial-parallel must be positive")
	case c.Shape != "relational" && c.Shape != "table":
		return nil, fmt.Errorf("--shape %q: want relational or table", c.Shape)
	}
	if c.Local {
		c.DatabaseURL = ""
		c.Setup = true
	}
	return c, nil
}

func run(ctx context.Context, cfg *config, out io.Writer) (*result, error) {
	if cfg.Local {
		dir := cfg.WorkDir
		if dir == "" {
			d, err := os.MkdirTemp("", "lattice-loadgen-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(d)
			os.Chmod(d, 0o755) // Postgres runs as user postgres when we are root
			dir = d
		}
		pg, err := pgtest.Start(ctx, &pgtest.Options{Conf: []string{"max_connections = 200"}})
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
		defer pg.Stop()
		cfg.DatabaseURL = pg.URL("postgres")
		if err := setup(ctx, cfg); err != nil {
			return nil, err
		}
		svc, err := startService(ctx, cfg.Lattice, cfg.DatabaseURL, dir, dir+"/service.log", cfg.ServeArgs)
		if err != nil {
			return nil, err
		}
		defer svc.stop()
		cfg.URL = "ws://" + svc.addr + protocol.Path
		fmt.Fprintf(out, "local: postgres %s, service %s (log %s/service.log)\n", cfg.DatabaseURL, cfg.URL, dir)
	} else if cfg.Setup {
		if err := setup(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsURL == "" {
		u := strings.Replace(strings.Replace(cfg.URL, "wss://", "https://", 1), "ws://", "http://", 1)
		cfg.MetricsURL = strings.TrimSuffix(u, protocol.Path) + "/metrics"
	}
	return measure(ctx, cfg, out)
}

const setupSQL = `
CREATE TABLE IF NOT EXISTS lg_project (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS lg_issue (
	id bigint PRIMARY KEY,
	project_id bigint NOT NULL REFERENCES lg_project(id),
	title text NOT NULL,
	n bigint NOT NULL DEFAULT 0,
	sent_ns bigint NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS lg_issue_project_id ON lg_issue (project_id);
`

// setup creates and seeds the workload's tables when they are empty, and
// checks that existing data matches --projects and --issues.
func setup(ctx context.Context, cfg *config) error {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, setupSQL); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	var projects, issues int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM lg_project), (SELECT count(*) FROM lg_issue)`).Scan(&projects, &issues); err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	switch {
	case projects == 0 && issues == 0:
		if _, err := pool.Exec(ctx, `INSERT INTO lg_project SELECT p, 'project ' || p FROM generate_series(1, $1::int) p`, cfg.Projects); err != nil {
			return fmt.Errorf("seed projects: %w", err)
		}
		// Titles of about 120 bytes: rows of the size the other benchmarks use.
		if _, err := pool.Exec(ctx, `INSERT INTO lg_issue (id, project_id, title)
			SELECT i, (i - 1) / $2::int + 1, 'issue ' || i || ' ' || repeat(md5(i::text), 3)
			FROM generate_series(1, $1::int * $2::int) i`, cfg.Projects, cfg.Issues); err != nil {
			return fmt.Errorf("seed issues: %w", err)
		}
	case projects != cfg.Projects || issues != cfg.Projects*cfg.Issues:
		return fmt.Errorf("lg_project has %d rows and lg_issue %d; --projects %d --issues %d want %d and %d (drop the tables to start over)",
			projects, issues, cfg.Projects, cfg.Issues, cfg.Projects, cfg.Projects*cfg.Issues)
	}
	if err := catalog.Bootstrap(ctx, pool); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	for _, t := range []string{"lg_project", "lg_issue"} {
		if err := catalog.Electrify(ctx, pool, t); err != nil {
			return fmt.Errorf("electrify %s: %w", t, err)
		}
	}
	_, err = pool.Exec(ctx, `ANALYZE lg_project; ANALYZE lg_issue`)
	return err
}

// measure connects the clients, writes, samples and reports.
func measure(ctx context.Context, cfg *config, out io.Writer) (*result, error) {
	res := &result{Clients: cfg.Clients, Projects: cfg.Projects, Issues: cfg.Issues, Shape: cfg.Shape, Rate: cfg.Rate}
	var lat hist
	var got atomic.Uint64
	perProject := make([]uint64, cfg.Projects+1)
	clients := make([]*simClient, cfg.Clients)
	for i := range clients {
		p := int64(i%cfg.Projects) + 1
		perProject[p]++
		clients[i] = &simClient{id: i, project: p, shape: newShape(cfg.Shape, p), lat: &lat, got: &got, issues: map[int64]int64{}}
	}

	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var wg sync.WaitGroup
	var subscribed sync.WaitGroup
	subscribed.Add(len(clients))
	failed := make(chan error, len(clients))
	sem := make(chan struct{}, cfg.DialParallel)
	start := time.Now()
	fmt.Fprintf(out, "connecting %d clients (%s shapes over %d projects of %d issues)\n", cfg.Clients, cfg.Shape, cfg.Projects, cfg.Issues)
	for _, c := range clients {
		token := ""
		if cfg.AuthSecret != "" {
			t, err := server.SignToken([]byte(cfg.AuthSecret), fmt.Sprintf("loadgen-%d", c.id), 24*time.Hour)
			if err != nil {
				return nil, fmt.Errorf("sign token: %w", err)
			}
			token = t
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			done := false
			err := c.run(cctx, cfg.URL, token, func() {
				done = true
				<-sem
				subscribed.Done()
			})
			if !done {
				<-sem
				subscribed.Done()
			}
			if err != nil && cctx.Err() == nil {
				c.fail(err)
				failed <- err
			}
		}()
	}
	allSubscribed := make(chan struct{})
	go func() { subscribed.Wait(); close(allSubscribed) }()
	select {
	case <-allSubscribed:
	case err := <-failed:
		return nil, fmt.Errorf("while subscribing: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case err := <-failed:
		return nil, fmt.Errorf("while subscribing: %w", err)
	default:
	}
	var last time.Time
	for _, c := range clients {
		c.mu.Lock()
		last = maxTime(last, c.subbedAt)
		res.SnapshotRows += int64(c.snapshotRows)
		c.mu.Unlock()
	}
	res.SubscribeSeconds = last.Sub(start).Seconds()
	fmt.Fprintf(out, "subscribed: %d clients in %.2f s (%d snapshot rows)\n", cfg.Clients, res.SubscribeSeconds, res.SnapshotRows)

	pool, err := pgxpool.New(ctx, cfg.DatabaseURL+sep(cfg.DatabaseURL)+fmt.Sprintf("pool_max_conns=%d", cfg.Writers))
	if err != nil {
		return nil, fmt.Errorf("connect writer: %w", err)
	}
	defer pool.Close()
	w := &writer{pool: pool, cfg: cfg, perProject: perProject}
	wctx, stopWriter := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- w.run(wctx) }()

	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case err := <-failed:
			return fmt.Errorf("a client failed: %w", err)
		case err := <-werr:
			return fmt.Errorf("writer: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sleep(cfg.Warmup); err != nil {
		stopWriter()
		return nil, err
	}
	warm, err := scrape(ctx, cfg.MetricsURL)
	if err != nil {
		stopWriter()
		return nil, err
	}
	res.ServiceRSSWarmMiB, res.GoroutinesWarm, res.FDsWarm = warm.rss/(1<<20), warm.goroutines, warm.fds
	res.ServiceRSSMaxMiB = res.ServiceRSSWarmMiB
	base := lat.snapshot()
	baseGot, baseWrites := got.Load(), w.done.Load()
	t0, cpu0 := time.Now(), selfCPU()
	prev, prevM, prevGot := base, warm, baseGot
	fmt.Fprintf(out, "%8s %6s %9s %6s %6s %6s %9s %8s %8s %8s\n", "t", "conns", "rss-MiB", "gorout", "fds", "cpu%", "changes/s", "p50-ms", "p99-ms", "max-ms")
	for elapsed := time.Duration(0); elapsed < cfg.Duration; {
		step := min(cfg.Sample, cfg.Duration-elapsed)
		if err := sleep(step); err != nil {
			stopWriter()
			return nil, err
		}
		elapsed += step
		m, err := scrape(ctx, cfg.MetricsURL)
		if err != nil {
			stopWriter()
			return nil, err
		}
		s := lat.snapshot()
		iv := s.since(prev)
		g := got.Load()
		dt := m.at.Sub(prevM.at).Seconds()
		res.ServiceRSSMaxMiB = max(res.ServiceRSSMaxMiB, m.rss/(1<<20))
		fmt.Fprintf(out, "%8s %6.0f %9.1f %6.0f %6.0f %6.0f %9.0f %8.2f %8.2f %8.2f\n",
			elapsed.Round(time.Second), m.connections, m.rss/(1<<20), m.goroutines, m.fds, 100*(m.cpu-prevM.cpu)/dt,
			float64(g-prevGot)/dt, ms(iv.quantile(0.5)), ms(iv.quantile(0.99)), ms(maxIn(iv)))
		prev, prevM, prevGot = s, m, g
	}
	measured := time.Since(t0).Seconds()
	res.LoadgenCPUPercent = 100 * (selfCPU() - cpu0).Seconds() / measured
	end := prevM
	stopWriter()
	if err := <-werr; err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("writer: %w", err)
	}
	all := lat.snapshot().since(base)
	res.Writes, res.WritesBehind = w.done.Load(), w.behind.Load()
	res.WritesPerSec = float64(res.Writes-baseWrites) / measured
	res.ChangesPerSec = float64(prevGot-baseGot) / measured
	res.P50ms, res.P99ms, res.MaxMs = ms(all.quantile(0.5)), ms(all.quantile(0.99)), ms(maxIn(all))
	res.ServiceRSSEndMiB, res.GoroutinesEnd, res.FDsEnd = end.rss/(1<<20), end.goroutines, end.fds
	res.ServiceCPUSeconds = end.cpu - warm.cpu
	if n := prevGot - baseGot; n > 0 {
		res.CPUMicrosPerChange = res.ServiceCPUSeconds * 1e6 / float64(n)
	}

	// Quiesce: every change due is received, then compare with Postgres.
	res.Expected = w.expected.Load()
	deadline := time.Now().Add(60 * time.Second)
	for got.Load() < res.Expected && time.Now().Before(deadline) {
		if err := sleep(50 * time.Millisecond); err != nil {
			return res, err
		}
	}
	res.Received = got.Load()
	eq, err := compare(ctx, pool, clients)
	if err != nil {
		return res, err
	}
	res.ClientsEqual = eq
	stopClients()
	wg.Wait()
	for _, c := range clients {
		if c.err != nil {
			res.ClientErrors = append(res.ClientErrors, c.err.Error())
		}
	}
	report(out, res)
	switch {
	case len(res.ClientErrors) > 0:
		return res, fmt.Errorf("%d clients failed, first: %s", len(res.ClientErrors), res.ClientErrors[0])
	case res.Received != res.Expected:
		return res, fmt.Errorf("clients received %d live changes, %d were due", res.Received, res.Expected)
	case res.ClientsEqual != len(clients):
		return res, fmt.Errorf("%d of %d clients differ from Postgres", len(clients)-res.ClientsEqual, len(clients))
	}
	return res, nil
}

func report(out io.Writer, r *result) {
	fmt.Fprintf(out, "\nclients %d, %s shapes, %d projects x %d issues; subscribed in %.2f s\n", r.Clients, r.Shape, r.Projects, r.Issues, r.SubscribeSeconds)
	fmt.Fprintf(out, "writes: %d (%.0f/s measured, asked %d/s, %d not sent: writer behind)\n", r.Writes, r.WritesPerSec, r.Rate, r.WritesBehind)
	fmt.Fprintf(out, "live changes received: %d of %d due; %.0f/s\n", r.Received, r.Expected, r.ChangesPerSec)
	fmt.Fprintf(out, "commit -> client: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", r.P50ms, r.P99ms, r.MaxMs)
	fmt.Fprintf(out, "service: RSS %.1f MiB after warm-up, %.1f at the end, %.1f max; goroutines %.0f -> %.0f; fds %.0f -> %.0f\n",
		r.ServiceRSSWarmMiB, r.ServiceRSSEndMiB, r.ServiceRSSMaxMiB, r.GoroutinesWarm, r.GoroutinesEnd, r.FDsWarm, r.FDsEnd)
	fmt.Fprintf(out, "service CPU: %.1f s over the measured period, %.1f µs per change received\n", r.ServiceCPUSeconds, r.CPUMicrosPerChange)
	fmt.Fprintf(out, "load generator CPU: %.0f%% of one core (if near nproc x 100%%, the figures measure it, not the service)\n", r.LoadgenCPUPercent)
	fmt.Fprintf(out, "clients equal to Postgres: %d of %d\n", r.ClientsEqual, r.Clients)
}

// writer commits updates of random issues at cfg.Rate per second.
type writer struct {
	pool       *pgxpool.Pool
	cfg        *config
	perProject []uint64
	done       atomic.Int64  // committed
	behind     atomic.Int64  // not sent: all writer connections busy
	expected   atomic.Uint64 // live changes due to clients
}

func (w *writer) run(ctx context.Context) error {
	jobs := make(chan int64, w.cfg.Writers*4)
	errc := make(chan error, w.cfg.Writers+1)
	var wg sync.WaitGroup
	// A statement sent is waited for even when ctx ends: a commit the
	// writer did not count would be a change the clients receive but
	// were not due.
	wctx := context.WithoutCancel(ctx)
	for range w.cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				sent := time.Now().UnixNano()
				ectx, cancel := context.WithTimeout(wctx, 30*time.Second)
				_, err := w.pool.Exec(ectx, `UPDATE lg_issue SET n = n + 1, sent_ns = $1 WHERE id = $2`, sent, id)
				cancel()
				if err != nil {
					errc <- fmt.Errorf("update issue %d: %w", id, err)
					return
				}
				w.done.Add(1)
				w.expected.Add(w.perProject[(id-1)/int64(w.cfg.Issues)+1])
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()
	total := int64(w.cfg.Projects * w.cfg.Issues)
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * float64(w.cfg.Rate))
			for ; sent < due; sent++ {
				select {
				case jobs <- rand.Int64N(total) + 1:
				default:
					w.behind.Add(1)
				}
			}
		}
	}
}

// compare reads each project's issues from Postgres and counts the
// clients that hold exactly them.
func compare(ctx context.Context, pool *pgxpool.Pool, clients []*simClient) (int, error) {
	want := map[int64]map[int64]int64{}
	for _, c := range clients {
		if _, ok := want[c.project]; ok {
			continue
		}
		rows, err := pool.Query(ctx, `SELECT id, n FROM lg_issue WHERE project_id = $1`, c.project)
		if err != nil {
			return 0, fmt.Errorf("read project %d: %w", c.project, err)
		}
		m := map[int64]int64{}
		for rows.Next() {
			var id, n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return 0, err
			}
			m[id] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		want[c.project] = m
	}
	equal := 0
	for _, c := range clients {
		h, w := c.held(), want[c.project]
		same := len(h) == len(w)
		for id, n := range w {
			if h[id] != n {
				same = false
				break
			}
		}
		if same {
			equal++
		}
	}
	return equal, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// maxIn is the upper edge of the highest non-empty bucket (an interval's
// max, within 2%).
func maxIn(s *histSnap) time.Duration {
	for i := len(s.counts) - 1; i >= 0; i-- {
		if s.counts[i] > 0 {
			return min(s.max, durationOfBucket(i+1))
		}
	}
	return 0
}

func durationOfBucket(i int) time.Duration {
	return time.Duration(math.Pow(histGrowth, float64(i)) * float64(time.Microsecond))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func sep(url string) string {
	if strings.Contains(url, "?") {
		return "&"
	}
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return "?"
	}
	return " "
}
