package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/codegen"
)

// startDev runs lattice dev without the app and returns it with its
// Postgres URL once it is serving.
func startDev(t *testing.T, dir string, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, []string{"DATABASE_URL="}, append([]string{"dev", "--no-app", "--data-dir", dir, "--listen", "127.0.0.1:0"}, args...)...)
	re := regexp.MustCompile(`(?m)^\s+Postgres:\s+(\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil && strings.Contains(p.out.String(), "msg=listening") {
			return p, m[1]
		}
		select {
		case <-p.exited:
			t.Fatalf("lattice dev exited:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lattice dev did not start:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func devCounts(t *testing.T, url string) [4]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var c [4]int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM project), (SELECT count(*) FROM issue),
		(SELECT count(*) FROM comment), (SELECT count(*) FROM lattice.electrified)`).Scan(&c[0], &c[1], &c[2], &c[3])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stopDev(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("lattice dev did not stop on SIGINT:\n%s", p.out.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("lattice dev exited with %d:\n%s", code, p.out.String())
	}
}

// TestDevSeedsOnceAndReusesData: the first run creates the cluster, the
// schema and the seed (the first project full size, the others a tenth);
// Ctrl-C stops it cleanly; the next run reuses the data without seeding
// again; --seed adds projects.
func TestDevSeedsOnceAndReusesData(t *testing.T) {
	parent, err := os.MkdirTemp("", "lattice-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o755) // Postgres runs as user postgres when we are root
	dir := filepath.Join(parent, ".lattice-dev")

	p, url := startDev(t, dir, "--projects", "3", "--issues", "200", "--comments", "800")
	if got, want := devCounts(t, url), [4]int{3, 200 + 2*20, 800 + 2*80, 4}; got != want {
		t.Fatalf("after the first run: projects, issues, comments, electrified = %v, want %v", got, want)
	}
	rows := pgRows(t, url, `SELECT count(DISTINCT status), count(DISTINCT priority), min(length(title)) > 5 FROM issue`)
	if rows[0] != "5|5|t" {
		t.Errorf("seeded issues: distinct statuses|priorities|titles long enough = %s", rows[0])
	}
	// The example app commits the client generated from this schema.
	files, _, err := generate(context.Background(), url, codegen.Int8String)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		path := filepath.Join("..", "..", "examples", "react", "src", "generated", name)
		if got, err := os.ReadFile(path); err != nil || string(got) != string(want) {
			t.Errorf("%s is not what lattice generate writes for the demo schema (%v): run lattice dev (it regenerates) and commit it", path, err)
		}
	}
	stopDev(t, p)

	p, url2 := startDev(t, dir)
	if url2 != url {
		t.Errorf("second run on %s, first on %s (same port expected when free)", url2, url)
	}
	if got, want := devCounts(t, url2), [4]int{3, 240, 960, 4}; got != want {
		t.Fatalf("after a restart: %v, want %v (no second seed)", got, want)
	}
	stopDev(t, p)

	p, url3 := startDev(t, dir, "--seed", "--projects", "1", "--issues", "10", "--comments", "0")
	if got, want := devCounts(t, url3), [4]int{4, 250, 960, 4}; got != want {
		t.Fatalf("after --seed: %v, want %v", got, want)
	}
	stopDev(t, p)
}

// devClient opens an in-memory client of the demo's service as user (its
// token from /dev-token) subscribed to every project and its own
// memberships.
func devClient(t *testing.T, svcAddr, user string) *client.Client {
	t.Helper()
	resp, err := http.Get("http://" + svcAddr + "/dev-token?user=" + user)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token, User, Expires string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.User != user || tok.Token == "" {
		t.Fatalf("GET /dev-token?user=%s: %d %+v %v", user, resp.StatusCode, tok, err)
	}
	if exp, err := time.Parse(time.RFC3339, tok.Expires); err != nil || time.Until(exp) < 23*time.Hour {
		t.Errorf("token expires %q (%v), want in 24h", tok.Expires, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Open(ctx, ":memory:", &client.Options{URL: "ws://" + svcAddr, Token: tok.Token})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	for _, sh := range []client.Shape{{Table: "project"}, {Table: "project_member"}, {Table: "issue"}} {
		sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
		sub, err := c.Subscribe(sctx, sh)
		if err == nil {
			err = sub.Synced(sctx)
		}
		scancel()
		if err != nil {
			t.Fatalf("%s: subscribe %+v: %v", user, sh, err)
		}
	}
	return c
}

func devLocal(t *testing.T, c *client.Client, q string) string {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("local %q: %v", q, err)
	}
	var out []string
	for _, r := range rows.Values {
		out = append(out, fmt.Sprint(r...))
	}
	return strings.Join(out, ",")
}

func devWaitLocal(t *testing.T, c *client.Client, what, q, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := devLocal(t, c, q)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %q, want %q (last error: %v)", what, q, got, want, c.Status().LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDevAccessPerUser: lattice dev enforces the demo's row-level security
// with tokens from /dev-token: the seeded users see their own projects
// (demo every one, alice and bob different ones); a member adds another
// user, whose client gets the project live; a write to a project the user
// is not a member of is rejected; anyone creates a project and becomes its
// member; comments follow their issue's project; the secret is kept
// across runs.
func TestDevAccessPerUser(t *testing.T) {
	parent, err := os.MkdirTemp("", "lattice-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o755)
	dir := filepath.Join(parent, ".lattice-dev")
	p, url := startDev(t, dir, "--projects", "3", "--issues", "20", "--comments", "60")
	svcAddr := regexp.MustCompile(`Service:\s+ws://(\S+)`).FindStringSubmatch(p.out.String())[1]

	if resp, err := http.Get("http://" + svcAddr + "/dev-token?user=not%20a%20name"); err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad user name: %v %v", resp, err)
	}
	const qp = "SELECT name FROM project ORDER BY name"
	alice, bob, demo := devClient(t, svcAddr, "alice"), devClient(t, svcAddr, "bob"), devClient(t, svcAddr, "demo")
	devWaitLocal(t, demo, "demo's projects", qp, "Atlas,Beacon,Compass")
	devWaitLocal(t, alice, "alice's projects", qp, "Atlas,Compass")
	devWaitLocal(t, bob, "bob's projects", qp, "Beacon")
	devWaitLocal(t, bob, "bob's memberships", "SELECT user_id, count(*) FROM project_member GROUP BY 1", "bob1")
	if got, want := devLocal(t, bob, "SELECT count(*) FROM issue"), pgRows(t, url, "SELECT count(*) FROM issue i JOIN project p ON p.id = i.project_id WHERE p.name = 'Beacon'")[0]; got != want {
		t.Errorf("bob holds %s issues, Beacon has %s", got, want)
	}
	atlas := pgRows(t, url, "SELECT id FROM project WHERE name = 'Atlas'")[0]
	compass := pgRows(t, url, "SELECT id FROM project WHERE name = 'Compass'")[0]
	ctx := context.Background()

	// Alice adds bob to Atlas: it reaches bob live, with its issues; the
	// membership row (bob's) moves out of alice's replica.
	t0 := time.Now()
	if err := alice.Exec(ctx, "INSERT INTO project_member (project_id, user_id) VALUES (?, 'bob')", atlas); err != nil {
		t.Fatal(err)
	}
	devWaitLocal(t, bob, "bob's projects after alice added him", qp, "Atlas,Beacon")
	t.Logf("add member -> project at the other user: %v", time.Since(t0).Round(time.Millisecond))
	devWaitLocal(t, bob, "Atlas' issues at bob", "SELECT count(*) > 0 FROM issue WHERE project_id = '"+atlas+"'", "1")
	devWaitLocal(t, alice, "alice's memberships", "SELECT user_id FROM project_member ORDER BY 1", "alice,alice")

	// Bob writes to Compass (not his): rejected, undone, not in Postgres.
	if err := bob.Exec(ctx, "INSERT INTO issue (id, project_id, title) VALUES ('00000000-0000-0000-0000-000000000001', ?, 'intruder')", compass); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rej *client.RejectedError
		if err := bob.Status().LastError; errors.As(err, &rej) && rej.Code == "permission_denied" && bob.PendingCount() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's write to Compass: last error %v, %d pending", bob.Status().LastError, bob.PendingCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	devWaitLocal(t, bob, "bob's rejected issue undone", "SELECT count(*) FROM issue WHERE title = 'intruder'", "0")
	if n := pgRows(t, url, "SELECT count(*) FROM issue WHERE title = 'intruder'")[0]; n != "0" {
		t.Fatalf("bob's denied write reached Postgres")
	}

	// Bob creates a project and makes himself its member, in one transaction.
	err = bob.Transaction(ctx, func(tx *client.Tx) error {
		if err := tx.Exec("INSERT INTO project (id, name, description, created, modified) VALUES ('00000000-0000-0000-0000-0000000000b0', 'Bob''s', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"); err != nil {
			return err
		}
		return tx.Exec("INSERT INTO project_member (project_id, user_id) VALUES ('00000000-0000-0000-0000-0000000000b0', 'bob')")
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for pgRows(t, url, "SELECT count(*) FROM project_member WHERE project_id = '00000000-0000-0000-0000-0000000000b0' AND user_id = 'bob'")[0] != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("bob's project not in Postgres (last error %v)", bob.Status().LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
	devWaitLocal(t, bob, "bob's projects", qp, "Atlas,Beacon,Bob's")
	devWaitLocal(t, demo, "demo's projects (not a member of bob's)", qp, "Atlas,Beacon,Compass")
	// A stranger may not make themselves a member of a project that has members.
	mallory := devClient(t, svcAddr, "mallory")
	if err := mallory.Exec(ctx, "INSERT INTO project_member (project_id, user_id) VALUES (?, 'mallory')", atlas); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for mallory.PendingCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("mallory's write still pending")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := pgRows(t, url, "SELECT count(*) FROM project_member WHERE user_id = 'mallory'")[0]; n != "0" {
		t.Fatalf("mallory joined Atlas by herself")
	}
	devWaitLocal(t, mallory, "mallory's projects", qp, "")

	// Comments carry their issue's project (the comment policy reads it),
	// also when the issue moves.
	pgExec(t, url, `UPDATE issue SET project_id = $1 WHERE id = (SELECT issue_id FROM comment WHERE project_id <> $1 LIMIT 1)`, compass)
	if bad := pgRows(t, url, "SELECT count(*) FROM comment c JOIN issue i ON i.id = c.issue_id WHERE c.project_id <> i.project_id")[0]; bad != "0" {
		t.Errorf("%s comments not in their issue's project", bad)
	}
	secret, err := os.ReadFile(filepath.Join(dir, "auth-secret"))
	if err != nil || len(strings.TrimSpace(string(secret))) != 64 {
		t.Fatalf("auth-secret: %q %v", secret, err)
	}
	stopDev(t, p)

	// Restarted: the same secret, the policies in place (idempotent).
	p, url = startDev(t, dir)
	if again, _ := os.ReadFile(filepath.Join(dir, "auth-secret")); string(again) != string(secret) {
		t.Errorf("the secret changed across runs")
	}
	svcAddr = regexp.MustCompile(`Service:\s+ws://(\S+)`).FindStringSubmatch(p.out.String())[1]
	devWaitLocal(t, devClient(t, svcAddr, "bob"), "bob's projects after a restart", qp, "Atlas,Beacon,Bob's")
	if n := pgRows(t, url, "SELECT count(*) FROM pg_policy WHERE polname LIKE 'issue_%'")[0]; n != "4" {
		t.Errorf("%s issue policies after a restart, want 4", n)
	}
	stopDev(t, p)
}
