package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSoakShort is the soak's short mode (the long one is
// bench/fanout.sh soak): 300 clients, in this process, on a `lattice
// serve` of its own, take 300 writes/s for 20 s. Every live change due
// reaches its clients, every client ends equal to Postgres, and the
// service's goroutines and file descriptors are what they were after
// warm-up (no leak per change).
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the lattice binary and runs for 30 s")
	}
	bin := filepath.Join(t.TempDir(), "lattice")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/lattice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/lattice: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "lattice-soak-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	cfg, err := parseFlags([]string{"--local", "--lattice", bin, "--work-dir", dir,
		"--clients", "300", "--projects", "30", "--issues", "10", "--rate", "300",
		"--warmup", "5s", "--duration", "20s", "--sample", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		if log, rerr := os.ReadFile(filepath.Join(dir, "service.log")); rerr == nil {
			t.Logf("service log (end):\n%s", tail(string(log), 40))
		}
		t.Fatal(err)
	}
	if res.Writes < 300*20/2 {
		t.Errorf("%d writes in 25 s, asked 300/s", res.Writes)
	}
	if res.Received == 0 || res.P99ms <= 0 {
		t.Errorf("nothing measured: %+v", res)
	}
	if res.GoroutinesEnd > res.GoroutinesWarm+20 {
		t.Errorf("service goroutines grew from %.0f to %.0f", res.GoroutinesWarm, res.GoroutinesEnd)
	}
	if res.FDsEnd > res.FDsWarm+10 {
		t.Errorf("service file descriptors grew from %.0f to %.0f", res.FDsWarm, res.FDsEnd)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
