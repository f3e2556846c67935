package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/natstest"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
)

// TestJetStreamFailover: three `lattice serve` replicas share one change
// log in a 3-node JetStream cluster (stream replicated 3 times); two
// `lattice replicate` processes are given all three URLs. While Postgres
// is written and one replica file is written with sqlite, the test kills
// -9 each service replica in turn (the one reading the slot among them)
// and shuts a NATS node down. At the end both replica files hold exactly
// Postgres' rows, every row written to the replica file is in Postgres,
// and no row reached a replica twice.
//
// Two bugs it found are fixed: a replica taking over the slot was sent
// again what the stream held and refused to append (jetstream.Append now
// skips what the stream holds), and replicas serving from another's
// stream were never ready on an idle database. On a failure the test
// prints the services' and the replicate's warnings and the replica's
// local transactions by state.
func TestJetStreamFailover(t *testing.T) {
	dbURL := pgtest.DB(t)
	pgExec(t, dbURL, `CREATE TABLE events (id bigint PRIMARY KEY, src text NOT NULL, payload text NOT NULL)`)
	nc := natstest.StartCluster(t, 3)
	type svc struct {
		addr string
		env  []string
		p    *proc
	}
	svcs := make([]*svc, 3)
	var urls []string
	for i := range svcs {
		s := &svc{addr: freeAddr(t)}
		s.env = []string{"DATABASE_URL=" + dbURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + s.addr,
			"LATTICE_DATA_DIR=" + t.TempDir(), "LATTICE_LOG_URL=" + nc.URL()}
		s.p = start(t, s.env, "serve", "--log-replicas", "3")
		waitHealthy(t, s.addr, s.p)
		svcs[i] = s
		urls = append(urls, "ws://"+s.addr)
	}
	if out, err := runCLI(t, svcs[0].env, "electrify", "events"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	tok, _ := server.SignToken([]byte(secret), "e2e", time.Hour)
	dir := t.TempDir()
	replicas := []string{filepath.Join(dir, "r1.db"), filepath.Join(dir, "r2.db")}
	reps := []*proc{
		start(t, nil, "replicate", "--url", strings.Join(urls, ","), "--token", tok, "--db", replicas[0], "--shape", "events"),
		start(t, nil, "replicate", "--url", urls[2]+","+urls[1]+","+urls[0], "--token", tok, "--db", replicas[1], "--shape", "events"),
	}
	for i, r := range replicas {
		waitFor(t, 60*time.Second, "replica "+r, func() (bool, string) {
			_, err := sqliteRows(t, r, "SELECT count(*) FROM events")
			return err == nil, fmt.Sprint(err, "\n", reps[i].out.String())
		})
		// A row applied twice is an update of a row that is never updated.
		if _, err := sqliteRows(t, r, `CREATE TABLE dup (id INTEGER);
			CREATE TRIGGER dup_detect AFTER UPDATE ON events BEGIN INSERT INTO dup VALUES (old.id); END;`); err != nil {
			t.Fatal(err)
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var pgRowsWritten, localRows atomic.Int64
	wg.Add(2)
	go func() { // Postgres: batches of 1-10 rows
		defer wg.Done()
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		next := int64(1)
		for b := 0; ctx.Err() == nil; b++ {
			n := int64(1 + b%10)
			if _, err := conn.Exec(context.Background(), `INSERT INTO events SELECT i, 'pg', md5(i::text) FROM generate_series($1::bigint, $2::bigint) i`, next, next+n-1); err != nil {
				t.Error(err)
				return
			}
			next += n
			pgRowsWritten.Store(next - 1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() { // the first replica's file, written with plain SQLite
		defer wg.Done()
		for i := int64(1); ctx.Err() == nil; i++ {
			if _, err := sqliteRows(t, replicas[0], fmt.Sprintf(`INSERT INTO events VALUES (%d, 'local', 'row %d')`, 1_000_000+i, i)); err != nil {
				if strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "busy") {
					i--
					continue
				}
				t.Error(err)
				return
			}
			localRows.Store(i)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	progress := func(what string) {
		t.Helper()
		pg0, loc0 := pgRowsWritten.Load(), localRows.Load()
		waitFor(t, 60*time.Second, what, func() (bool, string) {
			return pgRowsWritten.Load() > pg0+50 && localRows.Load() > loc0+5, ""
		})
	}
	progress("writes before the faults")
	for i, s := range svcs {
		s.p.kill(syscall.SIGKILL)
		progress(fmt.Sprintf("writes with service replica %d killed", i+1))
		s.p = start(t, s.env, "serve", "--log-replicas", "3")
		waitHealthy(t, s.addr, s.p)
	}
	nc.Servers[1].Shutdown()
	progress("writes with a NATS node down")
	nc.Servers[1].Restart(t)
	progress("writes after the NATS node returned")
	stop()
	wg.Wait()

	want := pgRows(t, dbURL, "SELECT count(*), count(*) FILTER (WHERE src = 'local'), coalesce(sum(id), 0) FROM events")
	for i, r := range replicas {
		var got []string
		equalPG := waitUntil(90*time.Second, func() bool {
			var err error
			got, err = sqliteRows(t, r, "SELECT count(*), count(*) FILTER (WHERE src = 'local'), coalesce(sum(id), 0) FROM events")
			return err == nil && len(got) == 1 && got[0] == want[0]
		})
		if !equalPG {
			for j, s := range svcs {
				t.Logf("service replica %d:\n%s", j+1, grepLines(s.p.out.String(), "level=(WARN|ERROR)", 30))
			}
			t.Logf("replicate %d:\n%s", i+1, grepLines(reps[i].out.String(), "level=(WARN|ERROR)|reconnect|connected", 40))
			if st, err := sqliteRows(t, r, "SELECT state, count(*), min(txid), max(txid) FROM _lattice_txns GROUP BY state"); err == nil {
				t.Logf("replica %d local transactions by state: %v", i+1, st)
			}
			t.Fatalf("replica %s: %v, Postgres %v", r, got, want)
		}
		if d, err := sqliteRows(t, r, "SELECT count(*) FROM dup"); err != nil || d[0] != "0" {
			t.Errorf("replica %s: rows applied twice: %v %v", r, d, err)
		}
	}
	if n := localRows.Load(); want[0] == "" || !strings.Contains(want[0], fmt.Sprintf("|%d|", n)) {
		t.Errorf("Postgres %s: want all %d rows written to the replica file", want[0], n)
	}
	t.Logf("Postgres: rows|local rows|sum of ids = %s", want[0])
}

// grepLines is the last n lines of s that match re.
func grepLines(s, re string, n int) string {
	var out []string
	m := regexp.MustCompile(re)
	for _, l := range strings.Split(s, "\n") {
		if m.MatchString(l) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}
