package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/codegen"
)

// startDev runs lattice dev without the app and returns it with its
// Postgres URL once it is serving.
func startDev(t *testing.T, dir string, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, []string{"DATABASE_URL="}, append([]string{"dev", "--no-app", "--data-dir", dir, "--listen", "127.0.0.1:0"}, args...)...)
	re := regexp.MustCompile(`Postgres:\s+(\S+)`)
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
	if got, want := devCounts(t, url), [4]int{3, 200 + 2*20, 800 + 2*80, 3}; got != want {
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
	if got, want := devCounts(t, url2), [4]int{3, 240, 960, 3}; got != want {
		t.Fatalf("after a restart: %v, want %v (no second seed)", got, want)
	}
	stopDev(t, p)

	p, url3 := startDev(t, dir, "--seed", "--projects", "1", "--issues", "10", "--comments", "0")
	if got, want := devCounts(t, url3), [4]int{4, 250, 960, 3}; got != want {
		t.Fatalf("after --seed: %v, want %v", got, want)
	}
	stopDev(t, p)
}
