package server_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

// queueMetric is a sample of /metrics as a number (-1 when absent).
func queueMetric(t *testing.T, e *env, name string) float64 {
	t.Helper()
	v := metric(t, e, name)
	if v == "" {
		return -1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("metric %s = %q: %v", name, v, err)
	}
	return f
}

func waitMetric(t *testing.T, e *env, name string, ok func(float64) bool) {
	t.Helper()
	eventually(t, 30*time.Second, name, func() (bool, string) {
		v := queueMetric(t, e, name)
		return ok(v), fmt.Sprintf("%s = %v", name, v)
	})
}

// TestQueueMetrics moves every queue metric: the client-write applier and
// snapshots (held up by a lock in Postgres), the pool, each session's send
// backlog and request queue (a client that stops reading).
func TestQueueMetrics(t *testing.T) {
	e := newEnv(t, itemsSQL+`; CREATE TABLE blobs (id int PRIMARY KEY, body text);
		CREATE TABLE many (id int PRIMARY KEY); INSERT INTO many SELECT generate_series(1, 3000)`, "items", "blobs", "many")
	// Snapshots read 500 rows/s: the one of table many takes seconds.
	e.stop()
	e.cfg.SnapshotRowsPerSec = 500
	e.start()
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "items"})
	waitMetric(t, e, "lattice_session_backlog_bytes_count", func(v float64) bool { return v == 1 })
	if v := queueMetric(t, e, "lattice_snapshot_wait_seconds_count"); v < 1 {
		t.Fatalf("lattice_snapshot_wait_seconds_count = %v after a subscribe", v)
	}
	for _, name := range []string{"lattice_snapshots_running", "lattice_snapshots_waiting", "lattice_client_writes_applying", "lattice_session_requests_queued"} {
		// (The snapshot ends just after its last frame reached the client.)
		waitMetric(t, e, name, func(v float64) bool { return v == 0 })
	}
	if v := queueMetric(t, e, "lattice_pg_pool_max_conns"); v != 16 {
		t.Fatalf("lattice_pg_pool_max_conns = %v", v)
	}

	// A lock holds up a client write (EXCLUSIVE: not the catalog reads
	// of the service, which ACCESS EXCLUSIVE would block too).
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	lock, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, "LOCK TABLE items IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "INSERT INTO items (id, title, done, n) VALUES (1, 'held', false, 1)"); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e, "lattice_client_writes_applying", func(v float64) bool { return v == 1 })
	c2, _ := e.clientAt(":memory:")
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sub, err := c2.Subscribe(sctx, client.Shape{Table: "many"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a snapshot held up", func() (bool, string) {
		r, w := queueMetric(t, e, "lattice_snapshots_running"), queueMetric(t, e, "lattice_snapshots_waiting")
		return r+w == 1, fmt.Sprintf("running %v, waiting %v, connections %s", r, w, metric(t, e, "lattice_connections"))
	})
	waitMetric(t, e, "lattice_pg_pool_acquired_conns", func(v float64) bool { return v >= 2 })
	if err := sub.Synced(sctx); err != nil {
		t.Fatal(err)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e, "lattice_client_writes_applying", func(v float64) bool { return v == 0 })
	waitMetric(t, e, "lattice_snapshots_running", func(v float64) bool { return v == 0 })
	waitMetric(t, e, "lattice_client_write_apply_seconds_count", func(v float64) bool { return v >= 1 })
	waitEqual(t, e, c, "SELECT id, title FROM items", "SELECT id, title FROM items")
	waitMetric(t, e, "lattice_session_backlog_bytes_count", func(v float64) bool { return v == 2 })

	// A client that stops reading: its backlog grows with the writes it
	// is not sent, and the frames it sends wait in its request queue.
	stalled := e.dialRaw(t)
	stalled.hello(e.token("slowpoke"))
	stalled.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "b", Table: "blobs"}}})
	for {
		m, err := stalled.next()
		if err != nil {
			t.Fatalf("subscribe blobs: %v", err)
		}
		if _, ok := m.(*protocol.Subscribed); ok {
			break // ... and never read again.
		}
	}
	for i := 0; i < 40; i++ {
		// 40 transactions of 1 MB each, of random hex (the backlog is
		// measured in WAL bytes: compressible values would take little).
		e.exec(`INSERT INTO blobs SELECT g, (SELECT string_agg(md5(random()::text || g || r), '') FROM generate_series(1, 1000) r)
			FROM generate_series($1::int * 32, $1::int * 32 + 31) g`, i)
	}
	eventually(t, 30*time.Second, "the stalled client's backlog", func() (bool, string) {
		v := queueMetric(t, e, "lattice_session_backlog_max_bytes")
		return v > 4<<20, fmt.Sprintf("max %v, sessions %v, sum %v, sent %s", v, queueMetric(t, e, "lattice_session_backlog_bytes_count"),
			queueMetric(t, e, "lattice_session_backlog_bytes_sum"), metric(t, e, "lattice_sent_bytes_total"))
	})
	waitMetric(t, e, `lattice_session_backlog_bytes_bucket{le="65536"}`, func(v float64) bool { return v == 2 })
	for i := 0; i < 5; i++ {
		stalled.send(&protocol.Unsubscribe{ReqID: uint32(10 + i), ShapeIDs: []string{"nope"}})
	}
	waitMetric(t, e, "lattice_session_requests_queued", func(v float64) bool { return v >= 4 })
}
