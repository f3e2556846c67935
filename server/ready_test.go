package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestLivenessAndReadiness: /readyz is 200 once replication has caught
// up, 503 "shutting down" while the service drains, when /healthz (liveness)
// is still 200: restarting a draining service helps nothing. After Close
// liveness fails.
func TestLivenessAndReadiness(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	base := e.http.URL
	eventually(t, 20*time.Second, "ready", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == 200 && body == "ok", fmt.Sprint(code, " ", body)
	})
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.svc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "shutting down" {
		t.Fatalf("readyz while draining: %d %q", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz while draining: %d %q", code, body)
	}
	e.svc.Close()
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || body != "closed" {
		t.Fatalf("healthz after Close: %d %q", code, body)
	}
}

// TestReadinessReplicationLag: with a lag bound of a nanosecond, WAL
// written faster than replication confirms it makes /readyz 503 with the
// lag; once the writes stop and replication reaches the end of the WAL,
// it is 200 again. Liveness stays 200 throughout.
func TestReadinessReplicationLag(t *testing.T) {
	e := newEnv(t, itemsSQL+"; CREATE TABLE unsynced (id serial PRIMARY KEY, v text)", "items")
	e.stop()
	e.cfg.ReadyMaxLag = time.Nanosecond
	e.start()
	base := e.http.URL
	eventually(t, 20*time.Second, "ready before the writes", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == 200, fmt.Sprint(code, " ", body)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			conn.Exec(ctx, "INSERT INTO unsynced (v) SELECT repeat('x', 500) FROM generate_series(1, 50)")
		}
	}()
	eventually(t, 30*time.Second, "not ready while behind", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "replication behind Postgres by"), fmt.Sprint(code, " ", body)
	})
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz while behind: %d %q", code, body)
	}
	cancel()
	wg.Wait()
	eventually(t, 30*time.Second, "ready after catching up", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == 200, fmt.Sprint(code, " ", body)
	})
}
