package server_test

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "items"})
	e.exec("INSERT INTO items VALUES (1, 'a', false, 1)")
	waitEqual(t, e, c, "SELECT id FROM items", "SELECT id FROM items")
	resp, err := http.Get(e.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"lattice_connections 1", "lattice_shapes 1", "lattice_replication_lag_bytes",
		"lattice_replication_lag_seconds", "lattice_changes_total", "lattice_sent_bytes_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestStalledClient: a client that stops reading neither slows the others
// nor grows the service's memory; it is disconnected after WriteTimeout.
func TestStalledClient(t *testing.T) {
	e := newEnv(t, `CREATE TABLE blobs (id int PRIMARY KEY, body text)`, "blobs")
	e.stop()
	e.cfg.WriteTimeout = 2 * time.Second
	e.start()
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "blobs"})

	stalled := e.dialRaw(t)
	stalled.hello(e.token("slowpoke"))
	stalled.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "s", Table: "blobs"}}})
	// ... and never read again.

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q := "SELECT count(*), sum(length(body)) FROM blobs"
	for i := 0; i < 40; i++ {
		// 40 transactions of 1 MB each: far more than socket buffers hold.
		e.exec("INSERT INTO blobs SELECT g, repeat(md5(g::text), 1000) FROM generate_series($1::int * 32, $1::int * 32 + 31) g", i)
	}
	start := time.Now()
	waitEqual(t, e, good, q, q)
	t.Logf("healthy client caught up %v after the writes", time.Since(start))
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 96<<20 {
		t.Errorf("heap grew by %d MB while a client stalled", grow>>20)
	}
	// The service cuts the stalled client off (without our reading a byte).
	eventually(t, 30*time.Second, "the stalled client to be disconnected", func() (bool, string) {
		resp, err := http.Get(e.http.URL + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), "lattice_connections 1\n") &&
			strings.Contains(string(body), `lattice_client_errors_total{code="too_slow"} 1`), "still connected"
	})
}
