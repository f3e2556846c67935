package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
)

// convergeSQL: a parent table and a child table with a foreign key (deletes
// cascade) over a small key space; the CHECK on child.v makes Postgres
// refuse some client writes, whose local effects must then be undone.
const convergeSQL = `
CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL, score int NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id) ON DELETE CASCADE,
                    v int NOT NULL CHECK (v <= 8), note text NOT NULL);
INSERT INTO parent SELECT i, 'p' || i, 0 FROM generate_series(1, 4) i;
INSERT INTO child SELECT i, 1 + i % 4, 0, 'c' || i FROM generate_series(1, 8) i;`

// TestConvergence runs random concurrent workloads: 5 clients writing
// random inserts, updates and deletes over a small key space, going
// offline and restarting at random, a plain-SQL writer in Postgres, and
// the service (a process of its own) killed with SIGKILL or stopped and
// restarted; offline clients keep writing locally. Two of the clients hold
// only the children with v < 5, so their writes (and everyone's) move rows
// in and out of their shapes. At quiescence every client's tables equal
// Postgres (what its shapes select), column for column, no client holds an
// unacknowledged write, and every transaction a client committed was
// applied exactly once or rejected.
//
// CI runs LATTICE_CONVERGE_SEEDS (default 2) seeds; set it to thousands for
// the long mode. A failing seed is printed; rerun it with
// LATTICE_CONVERGE_SEED=<n>. With LATTICE_CONVERGE_TRACE=<dir>, each seed
// writes the clients' traces (Debug logs: every change applied, local
// write re-applied, transaction sent) and the service's log to
// <dir>/seed-<n>/, kept when the seed fails.
func TestConvergence(t *testing.T) {
	seeds := []int64{1, 2}
	if s := os.Getenv("LATTICE_CONVERGE_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []int64{n}
	} else if s := os.Getenv("LATTICE_CONVERGE_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		seeds = seeds[:0]
		for i := 1; i <= n; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			runConvergence(t, seed)
		})
	}
}

type convClient struct {
	path string
	log  *slog.Logger
	// filtered: it holds child rows with v < 5 only (its writes move rows
	// in and out of its shape).
	filtered bool
	c        *client.Client
	stop     func()
}

func runConvergence(t *testing.T, seed int64) {
	t.Logf("seed %d (rerun with LATTICE_CONVERGE_SEED=%d)", seed, seed)
	tr := newConvTrace(t, seed)
	e := newProcEnvLogged(t, tr.serviceLog(), convergeSQL, "parent", "child")
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	clients := make([]*convClient, 5)
	for i := range clients {
		cc := &convClient{path: filepath.Join(dir, fmt.Sprintf("c%d.db", i)), log: tr.logger(i), filtered: i >= 3}
		cc.c, cc.stop = e.clientLogged(cc.path, cc.log)
		e.subscribe(cc.c, client.Shape{Table: "parent"})
		if cc.filtered {
			e.subscribe(cc.c, client.Shape{Table: "child", Where: "v < 5"})
		} else {
			e.subscribe(cc.c, client.Shape{Table: "child"})
		}
		clients[i] = cc
	}

	// The plain-SQL writer.
	ctx, stopSQL := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(context.Background(), e.dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		r := rand.New(rand.NewSource(seed * 7919))
		for ctx.Err() == nil {
			var q string
			switch r.Intn(4) {
			case 0:
				q = fmt.Sprintf("UPDATE parent SET score = score + 1 WHERE id = %d", 1+r.Intn(6))
			case 1:
				q = fmt.Sprintf("UPDATE child SET note = 'sql%d' WHERE id = %d", r.Intn(100), 1+r.Intn(16))
			case 2:
				q = fmt.Sprintf("INSERT INTO child VALUES (%d, %d, 0, 'sql') ON CONFLICT (id) DO UPDATE SET v = child.v + 1",
					1+r.Intn(16), 1+r.Intn(4))
			case 3:
				q = fmt.Sprintf("DELETE FROM child WHERE id = %d", 1+r.Intn(16))
			}
			// Foreign key errors (a parent deleted meanwhile) are fine here.
			conn.Exec(context.Background(), q)
			time.Sleep(time.Duration(2+r.Intn(8)) * time.Millisecond)
		}
	}()

	steps := 300
	for step := 0; step < steps; step++ {
		if step == steps/2 { // every seed sees at least one crash
			t.Logf("step %d: SIGKILL the service", step)
			tr.mark("SIGKILL the service", step)
			e.kill()
			e.startProc()
		}
		cc := clients[rng.Intn(len(clients))]
		switch p := rng.Intn(100); {
		case p < 4: // go offline (the client stops), later come back
			if cc.c != nil {
				cc.log.Debug("test: client goes offline", "step", step)
				cc.stop()
				cc.c = nil
			} else {
				cc.log.Debug("test: client comes back", "step", step)
				cc.c, cc.stop = e.clientLogged(cc.path, cc.log)
			}
			continue
		case p < 5 && step > steps/4 && step < 3*steps/4:
			// The service dies: SIGKILL (nothing flushed, no goodbye) or
			// a graceful stop, and comes back on the same data dir.
			if rng.Intn(2) == 0 {
				t.Logf("step %d: SIGKILL the service", step)
				tr.mark("SIGKILL the service", step)
				e.kill()
			} else {
				t.Logf("step %d: stop the service", step)
				tr.mark("stop the service", step)
				e.terminate()
			}
			e.startProc()
			continue
		}
		q := randomWrite(rng)
		if cc.c == nil {
			// An offline client still writes: open its file without
			// connecting, write, close; the write waits in its queue.
			off, err := client.Open(context.Background(), cc.path, &client.Options{Logger: cc.log})
			if err != nil {
				t.Fatalf("open offline client: %v", err)
			}
			err = off.Exec(context.Background(), q)
			cc.log.Debug("test: offline exec", "step", step, "sql", q, "err", err)
			off.Close()
			continue
		}
		// Errors (a local key conflict, a row already gone) are part of the game.
		err := cc.c.Exec(context.Background(), q)
		cc.log.Debug("test: exec", "step", step, "sql", q, "err", err)
		if rng.Intn(4) == 0 {
			time.Sleep(time.Duration(rng.Intn(5)) * time.Millisecond)
		}
	}
	stopSQL()
	wg.Wait()
	tr.mark("quiescence", steps)
	for _, cc := range clients {
		if cc.c == nil {
			cc.c, cc.stop = e.clientLogged(cc.path, cc.log)
		}
	}

	// Quiescence: every client equals Postgres (what its shapes select)
	// and has nothing pending.
	pq := map[string]string{
		"parent": "SELECT id, name, score FROM parent ORDER BY id",
		"child":  "SELECT id, parent_id, v, note FROM child ORDER BY id",
	}
	const filteredChild = "SELECT id, parent_id, v, note FROM child WHERE v < 5 ORDER BY id"
	for i, cc := range clients {
		eventually(t, 60*time.Second, fmt.Sprintf("client %d to converge (seed %d)", i, seed), func() (bool, string) {
			var diffs []string
			for _, tbl := range []string{"parent", "child"} {
				q := pq[tbl]
				if tbl == "child" && cc.filtered {
					q = filteredChild
				}
				want := e.pgRows(q)
				got := localRows(t, cc.c, pq[tbl])
				if !equalStrings(want, got) {
					diffs = append(diffs, fmt.Sprintf("%s:\n  postgres %v\n  client   %v", tbl, want, got))
				}
			}
			if n := cc.c.PendingCount(); n != 0 {
				diffs = append(diffs, fmt.Sprintf("%d local transactions pending", n))
			}
			if len(diffs) > 0 {
				diffs = append(diffs, clientState(t, e, cc.c))
			}
			return len(diffs) == 0, strings.Join(diffs, "\n")
		})
	}
	// Every transaction a client committed is accounted for: applied in
	// Postgres exactly once (lattice.applied holds one row per origin and
	// txid), or rejected, and reported so, by the service.
	for i, cc := range clients {
		last, rejected := localTxnLedger(t, cc.c)
		applied := e.pgRows(fmt.Sprintf("SELECT txid FROM lattice.applied WHERE origin = '%s' ORDER BY txid", cc.c.ClientID()))
		got := map[string]bool{}
		for _, a := range applied {
			got[a] = true
		}
		var missing []int64
		for id := int64(1); id <= last; id++ {
			if !got[strconv.FormatInt(id, 10)] && !rejected[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 || int64(len(applied)) > last {
			t.Errorf("client %d (seed %d): %d local transactions, %d applied in Postgres, %d rejected; missing %v",
				i, seed, last, len(applied), len(rejected), missing)
		}
	}
	// A client that has seen every version deletes everything: its deletes
	// remove every row, in Postgres and on every client (the versions it
	// held, whatever path brought them, cover every live tag).
	if err := clients[0].c.Transaction(context.Background(), func(tx *client.Tx) error {
		if err := tx.Exec("DELETE FROM child"); err != nil {
			return err
		}
		return tx.Exec("DELETE FROM parent")
	}); err != nil {
		t.Fatalf("seed %d: delete everything: %v", seed, err)
	}
	for i, cc := range clients {
		eventually(t, 60*time.Second, fmt.Sprintf("client %d empty after the final delete (seed %d)", i, seed), func() (bool, string) {
			var left []string
			for _, tbl := range []string{"parent", "child"} {
				left = append(left, e.pgRows(pq[tbl])...)
				left = append(left, localRows(t, cc.c, pq[tbl])...)
			}
			return len(left) == 0, fmt.Sprint("left (postgres, then client): ", left)
		})
	}
	if resp, err := http.Get(e.baseURL() + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "lattice_client_transactions_total") {
				t.Log(line) // since the last service restart
			}
		}
	}
}

// randomWrite returns a random local write over the small key space.
func randomWrite(rng *rand.Rand) string {
	switch rng.Intn(9) {
	case 0:
		return fmt.Sprintf("INSERT INTO parent VALUES (%d, 'new%d', 0)", 1+rng.Intn(6), rng.Intn(100))
	case 1:
		return fmt.Sprintf("UPDATE parent SET name = 'n%d' WHERE id = %d", rng.Intn(100), 1+rng.Intn(6))
	case 2:
		return fmt.Sprintf("UPDATE parent SET score = score + %d WHERE id = %d", 1+rng.Intn(3), 1+rng.Intn(6))
	case 3:
		return fmt.Sprintf("DELETE FROM parent WHERE id = %d", 5+rng.Intn(2)) // only parents the SQL writer's children don't use
	case 4, 5:
		return fmt.Sprintf("INSERT INTO child VALUES (%d, %d, %d, 'ins')", 1+rng.Intn(16), 1+rng.Intn(4), rng.Intn(10))
	case 6:
		return fmt.Sprintf("UPDATE child SET v = v + 1 WHERE id = %d", 1+rng.Intn(16))
	case 7:
		return fmt.Sprintf("UPDATE child SET note = 'u%d', v = %d WHERE id = %d", rng.Intn(100), rng.Intn(10), 1+rng.Intn(16))
	default:
		return fmt.Sprintf("DELETE FROM child WHERE id = %d", 1+rng.Intn(16))
	}
}

// localTxnLedger returns the last txid a client stamped and the txids the
// service rejected (kept in _lattice_txns with state rejected).
func localTxnLedger(t *testing.T, c *client.Client) (int64, map[int64]bool) {
	t.Helper()
	ctx := context.Background()
	rows, err := c.Query(ctx, "SELECT value FROM _lattice_state WHERE key = 'last_txid'")
	if err != nil {
		t.Fatalf("read last txid: %v", err)
	}
	var last int64
	if len(rows.Values) == 1 {
		last, _ = rows.Values[0][0].(int64)
	}
	rows, err = c.Query(ctx, "SELECT txid FROM _lattice_txns WHERE state = 'rejected'")
	if err != nil {
		t.Fatalf("read rejected transactions: %v", err)
	}
	rejected := map[int64]bool{}
	for _, r := range rows.Values {
		rejected[r[0].(int64)] = true
	}
	return last, rejected
}

// clientState describes what a diverging client holds besides its rows,
// for the failure message: its position and the service's, its local
// transactions by state, its outstanding ops and its row versions.
func clientState(t *testing.T, e *env, c *client.Client) string {
	t.Helper()
	var b strings.Builder
	st := c.Status()
	fmt.Fprintf(&b, "client %s: state %s, lsn %d, last error %v; service head %v",
		c.ClientID(), st.State, st.LSN, st.LastError, e.pgRows("SELECT pg_current_wal_lsn()"))
	for _, q := range []string{
		"SELECT state || ':' || count(*) FROM _lattice_txns GROUP BY state ORDER BY state",
		"SELECT tbl || ' seq ' || seq || ' txid ' || coalesce(txid, -1) FROM _lattice_oplog ORDER BY seq",
		"SELECT 'parent ' || id || ' v ' || coalesce(v, 'NULL') FROM _lattice_v_parent ORDER BY id",
		"SELECT 'child ' || id || ' v ' || coalesce(v, 'NULL') FROM _lattice_v_child ORDER BY id",
	} {
		rows, err := c.Query(context.Background(), q)
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: %v", q, err)
			continue
		}
		var vals []string
		for _, r := range rows.Values {
			vals = append(vals, fmt.Sprint(r[0]))
		}
		fmt.Fprintf(&b, "\n  %s", strings.Join(vals, ", "))
	}
	return b.String()
}

// convTrace keeps a seed's traces (see TestConvergence).
type convTrace struct {
	t     *testing.T
	dir   string // "" when not tracing
	files []*os.File
	logs  []*slog.Logger
}

func newConvTrace(t *testing.T, seed int64) *convTrace {
	tr := &convTrace{t: t}
	root := os.Getenv("LATTICE_CONVERGE_TRACE")
	if root == "" {
		return tr
	}
	tr.dir = filepath.Join(root, fmt.Sprintf("seed-%d", seed))
	os.RemoveAll(tr.dir)
	if err := os.MkdirAll(tr.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range tr.files {
			f.Close()
		}
		if t.Failed() {
			t.Logf("traces kept in %s", tr.dir)
		} else {
			os.RemoveAll(tr.dir)
		}
	})
	return tr
}

// serviceLog returns the service's log file ("" when not tracing).
func (tr *convTrace) serviceLog() string {
	if tr.dir == "" {
		return ""
	}
	return filepath.Join(tr.dir, "service.log")
}

// logger returns client i's logger: Debug to its trace file, or the
// test's logger when not tracing.
func (tr *convTrace) logger(i int) *slog.Logger {
	if tr.dir == "" {
		l := testLogger(tr.t)
		tr.logs = append(tr.logs, l)
		return l
	}
	f, err := os.Create(filepath.Join(tr.dir, fmt.Sprintf("c%d.log", i)))
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.files = append(tr.files, f)
	l := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr.logs = append(tr.logs, l)
	return l
}

// mark records a test event in every client's trace.
func (tr *convTrace) mark(what string, step int) {
	for _, l := range tr.logs {
		l.Debug("test: "+what, "step", step)
	}
}
