package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/server"
)

// The fault campaign: what a new user would try, through the CLI only.
// Five `lattice replicate` processes keep replica files that other programs
// write with plain SQL (the sqlite3 shell when installed, else a plain
// SQLite connection of this test: no Lattice code): inserts into an
// insert-only table, updates, deletes and INSERT OR REPLACE of a mutable
// one, some in multi-statement transactions, and json_set, json_remove and
// json_patch of a jsonb column merged per key path (lattice.electrify
// option json_merge): keys of a replica's own, shared keys and a whole
// array. Meanwhile a plain-SQL writer
// changes Postgres (jsonb_set, || and - on the documents too), replicas are paused (SIGSTOP, SIGCONT a few steps later)
// and killed (SIGKILL; their files keep being written while they are down),
// and the service is killed (SIGKILL) or stopped (SIGTERM) and restarted.
// With LATTICE_FAILPOINTS-style fault points (campaignFaults) the replicas
// and the service also crash at named points of the write path and the
// stream.
//
// At quiescence every row a replica committed to the insert-only table is
// in Postgres exactly once, every replica's own document keys hold the
// last value it committed (or are gone, if it last removed them) in
// Postgres, and every replica equals Postgres (what its shapes select).
//
// CI runs LATTICE_CAMPAIGN_SEEDS (default 1) seeds of LATTICE_CAMPAIGN_OPS
// (default 150) operations. The long mode (README, "Fault campaign"):
//
//	LATTICE_CAMPAIGN_SEEDS=1000 LATTICE_CAMPAIGN_OPS=400 LATTICE_CAMPAIGN_PARALLEL=4 \
//	  LATTICE_CAMPAIGN_TRACE=/tmp/campaign go test ./cmd/lattice -run TestFaultCampaign -timeout 0
//
// Each seed runs on its own throwaway Postgres cluster. With
// LATTICE_CAMPAIGN_TRACE every seed writes the service's and the replicas'
// debug logs there (seed-<n>/), kept when the seed fails; rerun one seed
// with LATTICE_CAMPAIGN_SEED=<n>. LATTICE_CAMPAIGN_FIRST offsets the seeds.
func TestFaultCampaign(t *testing.T) {
	seeds := []int64{}
	first := envInt(t, "LATTICE_CAMPAIGN_FIRST", 1)
	if s := os.Getenv("LATTICE_CAMPAIGN_SEED"); s != "" {
		seeds = append(seeds, int64(envInt(t, "LATTICE_CAMPAIGN_SEED", 0)))
	} else {
		n := envInt(t, "LATTICE_CAMPAIGN_SEEDS", 1)
		for i := 0; i < n; i++ {
			seeds = append(seeds, int64(first+i))
		}
	}
	ops := envInt(t, "LATTICE_CAMPAIGN_OPS", 150)
	par := envInt(t, "LATTICE_CAMPAIGN_PARALLEL", 1)
	sem := make(chan struct{}, par)
	t.Run("seeds", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
				if len(seeds) > 1 {
					t.Parallel()
				}
				sem <- struct{}{}
				defer func() { <-sem }()
				runCampaign(t, seed, ops)
			})
		}
	})
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

const campaignSQL = `
CREATE TABLE item (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL);
CREATE TABLE entry (id text PRIMARY KEY, origin text NOT NULL, body text NOT NULL);
INSERT INTO item SELECT i, 0, 'i' || i FROM generate_series(1, 8) i;
CREATE TABLE doc (id int PRIMARY KEY, body jsonb);
INSERT INTO doc SELECT i, '{"n": 0, "arr": [0]}' FROM generate_series(1, 3) i;`

// campaignProc is a restartable subprocess whose output is appended to a
// log file.
type campaignProc struct {
	t       *testing.T
	args    []string
	env     []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
}

func (p *campaignProc) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(f, "==== test: start %s at %s\n", p.args[0], time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(latticeBin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	p.cmd, p.exited, p.stopped = cmd, exited, false
}

// running reports whether the process is alive (it may have crashed at a
// fault point).
func (p *campaignProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *campaignProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(sig)
	switch sig {
	case syscall.SIGSTOP:
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
	case syscall.SIGCONT:
		p.mu.Lock()
		p.stopped = false
		p.mu.Unlock()
	}
}

// kill ends the process (SIGKILL, or sig first and SIGKILL after 10 s) and
// waits for it.
func (p *campaignProc) kill(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// sqliteWriter runs plain SQL on a replica file as another program would.
type sqliteWriter struct {
	shell string // the sqlite3 shell, or "" for this test's own connection
}

func newSQLiteWriter() sqliteWriter {
	if p, err := exec.LookPath("sqlite3"); err == nil {
		return sqliteWriter{shell: p}
	}
	return sqliteWriter{}
}

// exec runs sql (one transaction, or statements in autocommit) on the file
// and reports whether it committed.
func (w sqliteWriter) exec(path, sql string) error {
	if w.shell != "" {
		cmd := exec.Command(w.shell, "-bail", "-cmd", ".timeout 3000", path, sql)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("sqlite3: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	_, err := sqliteRows(nil, path, sql)
	return err
}

type campaignReplica struct {
	name     string
	path     string
	filtered bool // item WHERE v < 5
	proc     *campaignProc
	downTill int // step at which a killed replica restarts
	contAt   int // step at which a paused replica resumes
}

func runCampaign(t *testing.T, seed int64, steps int) {
	t.Logf("seed %d, %d operations (rerun with LATTICE_CAMPAIGN_SEED=%d)", seed, steps, seed)
	rng := rand.New(rand.NewSource(seed))
	traceRoot := os.Getenv("LATTICE_CAMPAIGN_TRACE")
	var dir string
	if traceRoot != "" {
		dir = filepath.Join(traceRoot, fmt.Sprintf("seed-%d", seed))
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if !t.Failed() {
				os.RemoveAll(dir)
			} else {
				t.Logf("traces kept in %s", dir)
			}
		})
	} else {
		dir = t.TempDir()
	}

	pg, err := pgtest.Start(context.Background(), nil)
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(pg.Stop)
	dbURL := pg.URL("postgres")
	pgExec(t, dbURL, campaignSQL)

	addr := freeAddr(t)
	faults := campaignFaults(rng)
	t.Logf("fault points: service %q, replicas %q", faults.service, faults.replicas)
	svcEnv := []string{"DATABASE_URL=" + dbURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + addr,
		"LATTICE_DATA_DIR=" + filepath.Join(dir, "service-data"), "LATTICE_LOG_LEVEL=debug"}
	// Small segments: the log rotates (and trims, at the byte bound) often.
	svc := &campaignProc{t: t, args: []string{"serve", "--log-segment-bytes", "8192", "--log-max-bytes", "65536"}, env: append(slices.Clone(svcEnv), "LATTICE_FAILPOINTS="+faults.service), logPath: filepath.Join(dir, "service.log")}
	svc.start()
	t.Cleanup(func() { svc.kill(syscall.SIGKILL) })
	waitCampaignHealthy(t, addr, svc)
	if out, err := runCLI(t, svcEnv, "electrify", "item", "entry", "doc"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	pgExec(t, dbURL, `CALL lattice.electrify('doc', json_merge => ARRAY['body'])`)

	tok, _ := server.SignToken([]byte(secret), "campaign", 24*time.Hour)
	w := newSQLiteWriter()
	replicas := make([]*campaignReplica, 5)
	for i := range replicas {
		r := &campaignReplica{name: fmt.Sprintf("r%d", i), path: filepath.Join(dir, fmt.Sprintf("r%d.db", i)), filtered: i >= 3}
		args := []string{"replicate", "--url", "ws://" + addr, "--token", tok, "--db", r.path, "--log-level", "debug", "--shape", "doc", "--shape", "entry", "--shape", "item"}
		if r.filtered {
			args = append(args, "--where", "v < 5")
		}
		r.proc = &campaignProc{t: t, args: args, env: []string{"LATTICE_FAILPOINTS=" + faults.replicas}, logPath: filepath.Join(dir, r.name+".log")}
		r.proc.start()
		t.Cleanup(func() { r.proc.kill(syscall.SIGKILL) })
		replicas[i] = r
	}
	// Writes begin once every replica has its tables (and capture).
	for _, r := range replicas {
		waitFor(t, 60*time.Second, r.name+" synced", func() (bool, string) {
			// A fault point can fire during the initial syncs (a snapshot,
			// an apply): the process restarts, as in the steps below.
			for _, p := range []*campaignProc{svc, r.proc} {
				if !p.running() {
					p.start()
				}
			}
			rows, err := sqliteRows(nil, r.path, "SELECT count(*) FROM item, doc")
			return err == nil, fmt.Sprint(rows, err)
		})
	}

	// The plain-SQL writer in Postgres.
	ctx, stopPG := context.WithCancel(context.Background())
	var deadlocks atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewSource(seed * 7919))
		var conn *pgx.Conn
		n := 0
		for ctx.Err() == nil {
			if conn == nil {
				c, err := pgx.Connect(ctx, dbURL)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				conn = c
			}
			var q string
			switch r.Intn(7) {
			case 0, 1:
				q = fmt.Sprintf("UPDATE item SET v = (v + 1) %% 9, note = 'pg%d' WHERE id = %d", r.Intn(100), 1+r.Intn(10))
			case 2:
				n++
				q = fmt.Sprintf("INSERT INTO entry VALUES ('pg-%d', 'pg', 'x')", n)
			case 3:
				q = fmt.Sprintf("DELETE FROM item WHERE id = %d", 1+r.Intn(10))
			case 4:
				q = fmt.Sprintf("INSERT INTO item VALUES (%d, %d, 'pgins') ON CONFLICT (id) DO UPDATE SET note = 'pgup'", 1+r.Intn(10), r.Intn(9))
			case 5:
				q = fmt.Sprintf("UPDATE doc SET body = jsonb_set(body, '{pg}', '%d') WHERE id = %d", r.Intn(100), 1+r.Intn(3))
			case 6:
				if r.Intn(2) == 0 {
					q = fmt.Sprintf(`UPDATE doc SET body = body || '{"s%d": "pg%d"}' WHERE id = %d`, r.Intn(3), r.Intn(100), 1+r.Intn(3))
				} else {
					q = fmt.Sprintf("UPDATE doc SET body = body - 's%d' WHERE id = %d", r.Intn(3), 1+r.Intn(3))
				}
			}
			// A deadlock with the service's own writes (a row both insert:
			// the service cannot lock a row that does not exist yet) is
			// what any concurrent writer of Postgres meets: retried, as an
			// application would.
			for try := 0; ; try++ {
				_, err := conn.Exec(ctx, q)
				if err == nil || ctx.Err() != nil {
					break
				}
				var pe *pgconn.PgError
				if errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") && try < 10 {
					deadlocks.Add(1)
					continue
				}
				t.Errorf("postgres writer: %s: %v", q, err)
				break
			}
			time.Sleep(time.Duration(5+r.Intn(20)) * time.Millisecond)
		}
		if conn != nil {
			conn.Close(context.Background())
		}
	}()

	var mu sync.Mutex
	committed := map[string]string{} // entry id -> replica that committed it
	// ownKeys[doc id][replica][key]: the last value a replica committed to
	// a key of its own ("$.<replica>.<key>" of the document), "" if it
	// removed it last.
	ownKeys := map[int]map[string]map[string]string{}
	docWrites := 0 // committed replica writes of the documents
	var entryN int
	mark := func(format string, args ...any) {
		line := fmt.Sprintf("==== test: "+format+"\n", args...)
		for _, p := range append([]*campaignProc{svc}, procsOf(replicas)...) {
			if f, err := os.OpenFile(p.logPath, os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
				f.WriteString(line)
				f.Close()
			}
		}
	}
	newEntry := func(r *campaignReplica) (string, string) {
		mu.Lock()
		entryN++
		id := fmt.Sprintf("%s-%d", r.name, entryN)
		mu.Unlock()
		return id, fmt.Sprintf("INSERT INTO entry VALUES ('%s', '%s', 'b%d')", id, r.name, rng.Intn(1000))
	}

	for step := 0; step < steps; step++ {
		// Processes due back come back; crashed ones (fault points) restart.
		for _, r := range replicas {
			if r.proc.stopped && step >= r.contAt {
				r.proc.signal(syscall.SIGCONT)
			}
			if !r.proc.running() && step >= r.downTill {
				r.proc.start()
			}
		}
		if !svc.running() {
			mark("step %d: the service exited (fault point), restart", step)
			svc.start()
			waitCampaignHealthy(t, addr, svc)
		}
		r := replicas[rng.Intn(len(replicas))]
		switch p := rng.Intn(100); {
		case p < 3 && r.proc.running() && !r.proc.stopped:
			mark("step %d: SIGSTOP %s", step, r.name)
			r.proc.signal(syscall.SIGSTOP)
			r.contAt = step + 5 + rng.Intn(30)
			continue
		case p < 6 && r.proc.running():
			mark("step %d: SIGKILL %s", step, r.name)
			r.proc.kill(syscall.SIGKILL)
			r.downTill = step + rng.Intn(20)
			continue
		case p < 8:
			if rng.Intn(2) == 0 {
				mark("step %d: SIGKILL the service", step)
				svc.kill(syscall.SIGKILL)
			} else {
				mark("step %d: SIGTERM the service", step)
				svc.kill(syscall.SIGTERM)
			}
			time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
			svc.start()
			waitCampaignHealthy(t, addr, svc)
			continue
		}
		var sql string
		var ids []string
		var own func() // records a committed write of the replica's own document key
		switch q := rng.Intn(13); {
		case q >= 10: // the document merged per key path
			d, k, v := 1+rng.Intn(3), fmt.Sprintf("k%d", rng.Intn(3)), fmt.Sprint(rng.Intn(1000))
			switch x := rng.Intn(6); {
			case x < 2:
				sql = fmt.Sprintf("UPDATE doc SET body = json_set(body, '$.%s.%s', %s) WHERE id = %d", r.name, k, v, d)
			case x < 3:
				sql, v = fmt.Sprintf("UPDATE doc SET body = json_remove(body, '$.%s.%s') WHERE id = %d", r.name, k, d), ""
			case x < 4:
				sql, own = fmt.Sprintf(`UPDATE doc SET body = json_patch(body, '{"s%d": "%s%d"}') WHERE id = %d`, rng.Intn(3), r.name, step, d), func() {}
			case x < 5:
				sql, own = fmt.Sprintf("UPDATE doc SET body = json_set(body, '$.arr[#]', %d, '$.n', %d) WHERE id = %d", step, step, d), func() {}
			default:
				sql, own = fmt.Sprintf("UPDATE doc SET body = json_remove(body, '$.s%d') WHERE id = %d", rng.Intn(3), d), func() {}
			}
			if own == nil {
				own = func() {
					if ownKeys[d] == nil {
						ownKeys[d] = map[string]map[string]string{}
					}
					if ownKeys[d][r.name] == nil {
						ownKeys[d][r.name] = map[string]string{}
					}
					ownKeys[d][r.name][k] = v
				}
			}
		case q < 4:
			id, s := newEntry(r)
			ids, sql = []string{id}, s
		case q < 5: // a multi-statement transaction
			id1, s1 := newEntry(r)
			id2, s2 := newEntry(r)
			ids = []string{id1, id2}
			sql = fmt.Sprintf("BEGIN; %s; UPDATE item SET v = (v + 1) %% 9 WHERE id = %d; %s; COMMIT;", s1, 1+rng.Intn(10), s2)
		case q < 6:
			sql = fmt.Sprintf("INSERT OR REPLACE INTO item VALUES (%d, %d, '%s-rep%d')", 1+rng.Intn(10), rng.Intn(9), r.name, step)
		case q < 8:
			sql = fmt.Sprintf("UPDATE item SET v = (v + 1) %% 9, note = '%s-up%d' WHERE id = %d", r.name, step, 1+rng.Intn(10))
		case q < 9:
			sql = fmt.Sprintf("DELETE FROM item WHERE id = %d", 1+rng.Intn(10))
		default:
			sql = fmt.Sprintf("INSERT INTO item VALUES (%d, %d, '%s-ins%d')", 1+rng.Intn(10), rng.Intn(9), r.name, step)
		}
		err := w.exec(r.path, sql)
		mark("step %d: %s wrote: %s -> %v", step, r.name, sql, err)
		if err == nil {
			mu.Lock()
			for _, id := range ids {
				committed[id] = r.name
			}
			if own != nil {
				own()
				docWrites++
			}
			mu.Unlock()
		}
		if rng.Intn(3) == 0 {
			time.Sleep(time.Duration(rng.Intn(20)) * time.Millisecond)
		}
	}
	stopPG()
	wg.Wait()
	mark("quiescence")
	// Everyone comes back, without fault points, and converges.
	svc.kill(syscall.SIGTERM)
	svc.env = svcEnv
	svc.start()
	waitCampaignHealthy(t, addr, svc)
	for _, r := range replicas {
		r.proc.kill(syscall.SIGKILL)
		r.proc.env = nil
		r.proc.start()
	}

	var lastDiff string
	ok := waitUntil(120*time.Second, func() bool {
		pgEntries := pgRows(t, dbURL, "SELECT id FROM entry ORDER BY id")
		have := map[string]bool{}
		for _, id := range pgEntries {
			have[id] = true
		}
		var missing []string
		for id := range committed {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			lastDiff = fmt.Sprintf("%d committed entries missing from Postgres: %v", len(missing), missing)
			return false
		}
		if d := ownKeysDiff(t, dbURL, ownKeys); d != "" {
			lastDiff = d
			return false
		}
		for _, r := range replicas {
			if d := replicaDiff(t, dbURL, r); d != "" {
				lastDiff = d
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("seed %d did not converge: %s", seed, lastDiff)
	}
	fired := 0
	for _, p := range append([]*campaignProc{svc}, procsOf(replicas)...) {
		b, _ := os.ReadFile(p.logPath)
		fired += strings.Count(string(b), "\nfailpoint ")
	}
	t.Logf("seed %d: %d entries and %d document writes committed on replicas, %d faults fired, %d plain-SQL deadlocks retried, converged",
		seed, len(committed), docWrites, fired, deadlocks.Load())
}

func procsOf(rs []*campaignReplica) []*campaignProc {
	var ps []*campaignProc
	for _, r := range rs {
		ps = append(ps, r.proc)
	}
	return ps
}

// replicaDiff compares a replica file with Postgres; "" when equal and no
// local transaction is outstanding.
func replicaDiff(t *testing.T, dbURL string, r *campaignReplica) string {
	itemQ := "SELECT id, v, note FROM item"
	if r.filtered {
		itemQ += " WHERE v < 5"
	}
	for _, q := range []string{itemQ + " ORDER BY id", "SELECT id, origin, body FROM entry ORDER BY id"} {
		want := pgRows(t, dbURL, q)
		got, err := sqliteRows(nil, r.path, strings.Replace(q, "ORDER BY id", "ORDER BY id COLLATE BINARY", 1))
		if err != nil {
			return fmt.Sprintf("%s: %v", r.name, err)
		}
		if !slices.Equal(want, got) {
			return fmt.Sprintf("%s differs from Postgres on %q:\n  postgres %v\n  replica  %v", r.name, q, want, got)
		}
	}
	// Documents: compared as JSON (Postgres prints jsonb its own way).
	want, got := pgRows(t, dbURL, "SELECT id, body FROM doc ORDER BY id"), []string(nil)
	rows, err := sqliteRows(nil, r.path, "SELECT id, body FROM doc ORDER BY id")
	if err != nil {
		return fmt.Sprintf("%s: %v", r.name, err)
	}
	got = rows
	canon := func(rows []string) []string {
		var out []string
		for _, row := range rows {
			id, body, _ := strings.Cut(row, "|")
			if c, err := merge.CanonicalJSON([]byte(body)); err == nil {
				body = string(c)
			}
			out = append(out, id+"|"+body)
		}
		return out
	}
	if !slices.Equal(canon(want), canon(got)) {
		return fmt.Sprintf("%s differs from Postgres on doc:\n  postgres %v\n  replica  %v", r.name, canon(want), canon(got))
	}
	out, err := sqliteRows(nil, r.path, "SELECT count(*) FROM _lattice_txns WHERE state IN ('pending', 'acked')")
	if err != nil || len(out) != 1 || out[0] != "0" {
		return fmt.Sprintf("%s: outstanding local transactions: %v %v", r.name, out, err)
	}
	return ""
}

// ownKeysDiff checks that each replica's own document keys hold, in
// Postgres, the last value the replica committed (absent if it removed
// them last): nobody else writes them, so per-key merging keeps them
// whatever the others wrote to the document meanwhile. "" when they do.
func ownKeysDiff(t *testing.T, dbURL string, ownKeys map[int]map[string]map[string]string) string {
	for d, byReplica := range ownKeys {
		for name, keys := range byReplica {
			for k, v := range keys {
				rows := pgRows(t, dbURL, fmt.Sprintf("SELECT coalesce(body->'%s'->>'%s', '') FROM doc WHERE id = %d", name, k, d))
				if len(rows) != 1 || rows[0] != v {
					return fmt.Sprintf("doc %d: %s's key %s is %q in Postgres, want %q (its last committed write)", d, name, k, rows, v)
				}
			}
		}
	}
	return ""
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	ok := waitUntil(d, func() bool {
		var done bool
		done, last = cond()
		return done
	})
	if !ok {
		t.Fatalf("%s: timed out: %s", what, last)
	}
}

func waitCampaignHealthy(t *testing.T, addr string, p *campaignProc) {
	t.Helper()
	waitFor(t, 60*time.Second, "service healthy", func() (bool, string) {
		if !p.running() {
			// Crashed at a fault point while starting: start again.
			p.start()
			return false, "restarted"
		}
		return healthy(addr), ""
	})
}

// faultPlan is the LATTICE_FAILPOINTS value of the service and of the
// replicas for one seed.
type faultPlan struct{ service, replicas string }

// The fault points (internal/failpoint) of the write path and the stream.
var (
	serviceFaultPoints = []string{
		"server/before-pg-commit", // a client write received, not committed
		"server/before-ack",       // committed in Postgres, not acknowledged
		"server/snapshot",         // while a snapshot is taken
		"changelog/rotate",        // the log rolls to a new segment
		"changelog/trim",          // retention about to drop segments
		"changelog/trimmed",       // retention's meta written, files not removed
	}
	replicaFaultPoints = []string{
		"client/after-commit",        // a local commit, not sent yet
		"client/before-send",         // about to send a local transaction
		"client/rebase",              // rebasing local writes over a service transaction
		"client/before-apply-commit", // service transactions applied, not committed
	}
)

// campaignFaults draws the seed's fault points: each point is armed with
// probability 2/3, mostly to exit the process at its Nth hit (a crash at
// that exact point; the campaign restarts it), sometimes to fail the
// operation there; the service's connections are cut in the middle of a
// frame at some write. Counters restart with the process, so an armed
// point fires again in every run of it that reaches N hits. With
// LATTICE_CAMPAIGN_FAULTS=0 no point is armed.
func campaignFaults(rng *rand.Rand) faultPlan {
	if os.Getenv("LATTICE_CAMPAIGN_FAULTS") == "0" {
		return faultPlan{}
	}
	arm := func(points []string) []string {
		var out []string
		for _, p := range points {
			if rng.Intn(3) == 0 {
				continue
			}
			act := "exit"
			if rng.Intn(5) == 0 {
				act = "error"
			}
			out = append(out, fmt.Sprintf("%s=%s#%d", p, act, 2+rng.Intn(40)))
		}
		return out
	}
	svc := arm(serviceFaultPoints)
	if rng.Intn(3) != 0 {
		svc = append(svc, fmt.Sprintf("server/conn-write=cut#%d", 20+rng.Intn(1000)))
	}
	return faultPlan{service: strings.Join(svc, ","), replicas: strings.Join(arm(replicaFaultPoints), ",")}
}

// healthy reports whether the service at addr answers /readyz with 200.
func healthy(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
