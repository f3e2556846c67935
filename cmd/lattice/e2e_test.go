package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ncruces/go-sqlite3"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
)

var latticeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lattice-bin-")
	if err != nil {
		panic(err)
	}
	latticeBin = filepath.Join(dir, "lattice")
	out, err := exec.Command("go", "build", "-o", latticeBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build lattice: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

const secret = "e2e-secret"

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a lattice subprocess.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(latticeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	return p
}

func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func waitHealthy(t *testing.T, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("lattice serve exited:\n%s", p.out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("service not ready in 30 s (/readyz: %s):\n%s", last, p.out.String())
}

func runCLI(t *testing.T, env []string, args ...string) (string, error) {
	cmd := exec.Command(latticeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func pgExec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// sqliteRows reads a replica file like any SQLite program would.
func sqliteRows(t *testing.T, path, q string) ([]string, error) {
	db, err := sqlite3.Open(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.BusyTimeout(5 * time.Second)
	stmt, _, err := db.Prepare(q)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	var out []string
	for stmt.Step() {
		var parts []string
		for i := 0; i < stmt.ColumnCount(); i++ {
			parts = append(parts, stmt.ColumnText(i))
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out, stmt.Err()
}

func pgRows(t *testing.T, url, q string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var parts []string
		for _, b := range rows.RawValues() {
			parts = append(parts, string(b))
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

// TestServiceKilledMidStream: a writer commits continuously while the
// service is killed with SIGKILL and restarted; the replica file ends equal
// to Postgres with no transaction applied twice and none missing.
func TestServiceKilledMidStream(t *testing.T) {
	dbURL := pgtest.DB(t)
	pgExec(t, dbURL, `CREATE TABLE events (id bigint PRIMARY KEY, batch int NOT NULL, payload text NOT NULL)`)
	addr := freeAddr(t)
	dataDir := t.TempDir()
	env := []string{"DATABASE_URL=" + dbURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + addr, "LATTICE_DATA_DIR=" + dataDir}
	svc := start(t, env, "serve")
	waitHealthy(t, addr, svc)
	if out, err := runCLI(t, env, "electrify", "events"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	tok, _ := server.SignToken([]byte(secret), "e2e", time.Hour)
	replica := filepath.Join(t.TempDir(), "replica.db")
	rep := start(t, nil, "replicate", "--url", "ws://"+addr, "--token", tok, "--db", replica, "--shape", "events", "--where", "payload NOT LIKE 'a%'")
	_ = rep

	// Writer: transactions of 1-20 rows, ids increasing.
	var next atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		r := rand.New(rand.NewSource(1))
		batch := 0
		for ctx.Err() == nil {
			n := 1 + r.Intn(20)
			first := next.Load()
			_, err := conn.Exec(context.Background(), `INSERT INTO events SELECT i, $3, md5(i::text) FROM generate_series($1::bigint, $2::bigint) i`, first, first+int64(n)-1, batch)
			if err != nil {
				t.Error(err)
				return
			}
			next.Add(int64(n))
			batch++
			time.Sleep(time.Duration(r.Intn(3)) * time.Millisecond)
		}
	}()

	// Wait for the replica to exist, then install a duplicate detector:
	// events are never updated in Postgres, so any UPDATE is a re-delivery.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sqliteRows(t, replica, "SELECT count(*) FROM events")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never got the events table: %v\n%s", err, rep.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := sqliteRows(t, replica, `CREATE TABLE IF NOT EXISTS dup (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := sqliteRows(t, replica, `CREATE TRIGGER IF NOT EXISTS dup_detect AFTER UPDATE ON events BEGIN INSERT INTO dup VALUES (new.id); END`); err != nil {
		t.Fatal(err)
	}

	for round := 0; round < 3; round++ {
		time.Sleep(700 * time.Millisecond)
		svc.kill(syscall.SIGKILL)
		time.Sleep(300 * time.Millisecond)
		svc = start(t, env, "serve")
		waitHealthy(t, addr, svc)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	q := "SELECT id, batch, payload FROM events WHERE payload NOT LIKE 'a%' ORDER BY id"
	var want, got []string
	deadline = time.Now().Add(60 * time.Second)
	for {
		want = pgRows(t, dbURL, q)
		got, _ = sqliteRows(t, replica, "SELECT id, batch, payload FROM events ORDER BY id")
		if strings.Join(want, "\n") == strings.Join(got, "\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica (%d rows) never matched postgres (%d rows)\nreplicate log:\n%s", len(got), len(want), rep.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups, err := sqliteRows(t, replica, "SELECT count(*) FROM dup")
	if err != nil || dups[0] != "0" {
		t.Fatalf("transactions applied twice: %v %v\nreplicate log:\n%s", dups, err, rep.out.String())
	}
	t.Logf("%d rows written, %d replicated, service killed 3 times", next.Load(), len(got))
}

// TestReplicateRelationalShape: lattice replicate with a JSON shape keeps
// a project, its issues and their comments, and follows a move.
func TestReplicateRelationalShape(t *testing.T) {
	dbURL := pgtest.DB(t)
	pgExec(t, dbURL, `CREATE TABLE project (id text PRIMARY KEY);
		CREATE TABLE issue (id text PRIMARY KEY, project_id text NOT NULL REFERENCES project(id));
		CREATE TABLE comment (id text PRIMARY KEY, issue_id text NOT NULL REFERENCES issue(id), body text);
		INSERT INTO project VALUES ('p1'), ('p2');
		INSERT INTO issue VALUES ('i1', 'p1'), ('i2', 'p2');
		INSERT INTO comment VALUES ('c1', 'i1', 'x'), ('c2', 'i2', 'y')`)
	addr := freeAddr(t)
	env := []string{"DATABASE_URL=" + dbURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + addr, "LATTICE_DATA_DIR=" + t.TempDir()}
	svc := start(t, env, "serve")
	waitHealthy(t, addr, svc)
	if out, err := runCLI(t, env, "electrify", "project", "issue", "comment"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	tok, _ := server.SignToken([]byte(secret), "e2e", time.Hour)
	replica := filepath.Join(t.TempDir(), "replica.db")
	rep := start(t, nil, "replicate", "--url", "ws://"+addr, "--token", tok, "--db", replica,
		"--shape", `{"table":"project","where":"id = $1","params":["p1"],"include":{"issue":{"include":{"comment":{}}}}}`)
	wait := func(q, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := sqliteRows(t, replica, q)
			if err == nil && strings.Join(got, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %v (%v), want %s\nreplicate log:\n%s", q, got, err, want, rep.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("SELECT id FROM comment ORDER BY id", "c1")
	pgExec(t, dbURL, "UPDATE issue SET project_id = 'p1' WHERE id = 'i2'")
	wait("SELECT id FROM comment ORDER BY id", "c1,c2")
	pgExec(t, dbURL, "UPDATE issue SET project_id = 'p2' WHERE id = 'i1'")
	wait("SELECT id FROM comment ORDER BY id", "c2")
	wait("SELECT id FROM issue ORDER BY id", "i2")
}

func TestCLIErrors(t *testing.T) {
	dbURL := pgtest.DB(t)
	pgExec(t, dbURL, `CREATE TABLE nopk (a int); CREATE TABLE parent (id int PRIMARY KEY);
		CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent(id));
		CREATE TABLE weird (id int PRIMARY KEY, p point, r int4range)`)
	env := []string{"DATABASE_URL=" + dbURL}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"electrify", "nopk"}, "no primary key"},
		{[]string{"electrify", "child"}, "parent"},
		{[]string{"electrify", "weird"}, "unsupported column type"},
		{[]string{"electrify", "nosuchtable"}, "nosuchtable"},
		{[]string{"serve"}, "LATTICE_AUTH_SECRET"},
		{[]string{"replicate", "--db", "x.db"}, "--shape"},
		{[]string{"replicate", "--db", "x.db", "--shape", `{"table":"t","inclde":{}}`}, "inclde"},
		{[]string{"replicate", "--db", "x.db", "--shape", `{"table":"t"}`, "--where", "a = 1"}, "JSON --shape"},
		{[]string{"bogus"}, "unknown command"},
	}
	for _, c := range cases {
		out, err := runCLI(t, env, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("lattice %v: err=%v, output does not mention %q:\n%s", c.args, err, c.want, out)
		}
	}
	// Electrifying the parent first makes the child work.
	if out, err := runCLI(t, env, "electrify", "parent", "child"); err != nil {
		t.Errorf("electrify parent child: %v\n%s", err, out)
	}
}

func TestServeRefusesWithoutLogicalWAL(t *testing.T) {
	pg, err := pgtest.Start(context.Background(), &pgtest.Options{WalLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	out, err := runCLI(t, []string{"DATABASE_URL=" + pg.URL("postgres"), "LATTICE_AUTH_SECRET=x", "LATTICE_DATA_DIR=" + t.TempDir()}, "serve")
	if err == nil || !strings.Contains(out, "wal_level = logical") {
		t.Fatalf("serve on wal_level=replica: err=%v\n%s", err, out)
	}
}

// TestServeAsPlainRole runs the service as a role with REPLICATION and no
// superuser, and checks the message when REPLICATION is missing.
func TestServeAsPlainRole(t *testing.T) {
	dbURL := pgtest.DB(t)
	dbName := dbURL[strings.LastIndex(dbURL, "/")+1 : strings.Index(dbURL, "?")]
	pgExec(t, dbURL, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'norepl') THEN CREATE ROLE norepl LOGIN; END IF;
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app LOGIN REPLICATION; END IF;
		END $$`)
	pgExec(t, dbURL, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO app, norepl; GRANT CREATE ON SCHEMA public TO app`, dbName))
	srv := pgtest.Shared(t)
	urlAs := func(role string) string {
		return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, srv.Port, dbName)
	}
	out, err := runCLI(t, []string{"DATABASE_URL=" + urlAs("norepl"), "LATTICE_AUTH_SECRET=x", "LATTICE_DATA_DIR=" + t.TempDir()}, "serve")
	if err == nil || !strings.Contains(out, "WITH REPLICATION") {
		t.Fatalf("serve as a role without REPLICATION: err=%v\n%s", err, out)
	}
	appURL := urlAs("app")
	pgExec(t, appURL, `CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	addr := freeAddr(t)
	env := []string{"DATABASE_URL=" + appURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + addr, "LATTICE_DATA_DIR=" + t.TempDir()}
	svc := start(t, env, "serve")
	waitHealthy(t, addr, svc)
	pgExec(t, appURL, `CALL lattice.electrify('notes')`)
	pgExec(t, appURL, `INSERT INTO notes VALUES (1, 'one'), (2, 'two')`)
	tok, _ := server.SignToken([]byte(secret), "u", time.Hour)
	replica := filepath.Join(t.TempDir(), "r.db")
	rep := start(t, nil, "replicate", "--url", "ws://"+addr, "--token", tok, "--db", replica, "--shape", "notes")
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, _ := sqliteRows(t, replica, "SELECT id, body FROM notes ORDER BY id")
		if strings.Join(rows, ",") == "1|one,2|two" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica: %v\nserve:\n%s\nreplicate:\n%s", rows, svc.out.String(), rep.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A bad where clause makes replicate exit with the reason.
	out, err = runCLI(t, nil, "replicate", "--url", "ws://"+addr, "--token", tok, "--db", filepath.Join(t.TempDir(), "x.db"), "--shape", "notes", "--where", "nope = 1")
	if err == nil || !strings.Contains(out, "nope") {
		t.Fatalf("replicate with a bad where: err=%v\n%s", err, out)
	}
}

// TestReplicateJSONMergePerKey: two `lattice replicate` replicas of a table
// whose jsonb column is merged per key path (lattice.electrify option
// json_merge), written by plain SQLite programs on the replica files:
// each json_sets a different key of one document, and json_removes
// another, while its document is stale on the other's key (one replica is
// stopped meanwhile); plain SQL in Postgres jsonb_sets a third. Postgres
// and both replicas end with every edit.
func TestReplicateJSONMergePerKey(t *testing.T) {
	dbURL := pgtest.DB(t)
	pgExec(t, dbURL, `CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb);
		INSERT INTO docs VALUES (1, '{"a": 0, "b": 0, "c": 0, "x": true, "y": true}')`)
	addr := freeAddr(t)
	env := []string{"DATABASE_URL=" + dbURL, "LATTICE_AUTH_SECRET=" + secret, "LATTICE_LISTEN=" + addr, "LATTICE_DATA_DIR=" + t.TempDir()}
	svc := start(t, env, "serve")
	waitHealthy(t, addr, svc)
	pgExec(t, dbURL, `CALL lattice.electrify('docs', json_merge => ARRAY['body'])`)
	tok, _ := server.SignToken([]byte(secret), "e2e", time.Hour)
	dir := t.TempDir()
	replicas := []string{filepath.Join(dir, "r1.db"), filepath.Join(dir, "r2.db")}
	reps := make([]*proc, 2)
	replicate := func(i int) {
		reps[i] = start(t, nil, "replicate", "--url", "ws://"+addr, "--token", tok, "--db", replicas[i], "--shape", "docs")
	}
	const localQ = `SELECT json_extract(body, '$.a'), json_extract(body, '$.b'), json_extract(body, '$.c'),
		json_type(body, '$.x') IS NOT NULL, json_type(body, '$.y') IS NOT NULL FROM docs`
	const pgQ = `SELECT body->>'a', body->>'b', body->>'c', (body ? 'x')::int, (body ? 'y')::int FROM docs`
	wait := func(i int, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := sqliteRows(t, replicas[i], localQ)
			if err == nil && strings.Join(got, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: got %v (%v), want %s\nreplicate log:\n%s", i, got, err, want, reps[i].out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitPG := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := pgRows(t, dbURL, pgQ)
			if strings.Join(got, ",") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("postgres: got %v, want %s\nreplicate logs:\n%s\n%s", got, want, reps[0].out.String(), reps[1].out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	sqliteExec := func(i int, sql string) {
		t.Helper()
		if _, err := sqliteRows(t, replicas[i], sql); err != nil {
			t.Fatalf("sqlite3 %s on replica %d: %v", sql, i, err)
		}
	}
	replicate(0)
	replicate(1)
	wait(0, "0|0|0|1|1")
	wait(1, "0|0|0|1|1")

	// Replica 1 stops (offline); replica 0 edits a and removes x; Postgres
	// sets c; then replica 1, offline, edits b and removes y on its stale
	// document (later than both) and comes back.
	reps[1].kill(syscall.SIGTERM)
	sqliteExec(0, `UPDATE docs SET body = json_remove(json_set(body, '$.a', 1), '$.x') WHERE id = 1`)
	waitPG("1|0|0|0|1")
	pgExec(t, dbURL, `UPDATE docs SET body = jsonb_set(body, '{c}', '3') WHERE id = 1`)
	wait(0, "1|0|3|0|1")
	sqliteExec(1, `UPDATE docs SET body = json_remove(json_set(body, '$.b', 2), '$.y') WHERE id = 1`)
	replicate(1)
	const want = "1|2|3|0|0"
	waitPG(want)
	wait(0, want)
	wait(1, want)
}
