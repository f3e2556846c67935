package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/natstest"
)

// TestJetStreamReplicas: two service replicas on one Postgres share their
// change log in a NATS JetStream stream (Config.LogURL). One reads the
// replication slot and appends; both serve clients from the stream, with
// one log id. Clients on either converge with Postgres and with each other
// for writes made in Postgres and by clients of either replica. When the
// replica reading the slot stops, the other takes the slot over and its
// clients keep receiving; a client of the stopped one resumes on it after
// its restart with the same log id (no re-sync), and a client given both
// URLs fails over to whichever is up.
func TestJetStreamReplicas(t *testing.T) {
	ns := natstest.Start(t)
	a := newEnv(t, itemsSQL, "items")
	a.stop()
	a.cfg.LogURL = ns.URL()
	a.start()
	b := &env{t: t, dbURL: a.dbURL, cfg: a.cfg}
	b.cfg.DataDir = filepath.Join(t.TempDir(), "data-b")
	b.start()
	defer b.stop()
	if a.svc.LogID() != b.svc.LogID() {
		t.Fatalf("log ids %s and %s: want the stream's one", a.svc.LogID(), b.svc.LogID())
	}
	// Both are ready on an idle database: the one streaming the slot, and
	// the one serving from the stream it appends to.
	for name, e := range map[string]*env{"a": a, "b": b} {
		waitHealth(t, e, 20*time.Second, "replica "+name+" ready", func(code int, _ string) bool { return code == 200 })
	}

	ca, _ := a.clientAt(filepath.Join(t.TempDir(), "a.db"))
	cb, _ := b.clientAt(filepath.Join(t.TempDir(), "b.db"))
	a.subscribe(ca, client.Shape{Table: "items"})
	b.subscribe(cb, client.Shape{Table: "items"})
	// A client given both replicas' URLs fails over between them.
	both := &env{t: t, dbURL: a.dbURL, url: a.url + "," + b.url}
	cab, _ := both.clientAt(filepath.Join(t.TempDir(), "ab.db"))
	both.subscribe(cab, client.Shape{Table: "items"})
	q := "SELECT id, title FROM items ORDER BY id"
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		a.exec("INSERT INTO items (id, title) VALUES ($1, $2)", i, fmt.Sprint("pg ", i))
	}
	if err := ca.Exec(ctx, "INSERT INTO items (id, title) VALUES (101, 'from a')"); err != nil {
		t.Fatal(err)
	}
	if err := cb.Exec(ctx, "INSERT INTO items (id, title) VALUES (102, 'from b')"); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, a, ca, q, q)
	waitEqual(t, b, cb, q, q)
	logA, _ := ca.Position()
	logB, _ := cb.Position()
	if logA != a.svc.LogID() || logB != a.svc.LogID() {
		t.Fatalf("client positions in logs %q and %q, the stream's is %q", logA, logB, a.svc.LogID())
	}

	// Stop each replica in turn while rows are written: the other serves
	// (and, if the stopped one read the slot, takes it over).
	for round, pair := range [][2]*env{{a, b}, {b, a}} {
		down, up := pair[0], pair[1]
		upClient := cb
		if up == a {
			upClient = ca
		}
		down.stop()
		for i := 1; i <= 20; i++ {
			up.exec("INSERT INTO items (id, title) VALUES ($1, $2)", 1000*(round+1)+i, "while a replica is down")
		}
		waitEqual(t, up, upClient, q, q)
		waitEqual(t, up, cab, q, q) // on the replica that is up
		down.start()
	}
	waitEqual(t, a, ca, q, q)
	waitEqual(t, b, cb, q, q)
	waitEqual(t, a, cab, q, q)
	if l, _ := cab.Position(); l != logA {
		t.Fatalf("client of both replicas: log %q, was %q (it re-synced)", l, logA)
	}
	if l, _ := ca.Position(); l != logA {
		t.Fatalf("client of the restarted replica: log %q, was %q (it re-synced)", l, logA)
	}
	if got := a.pgRows("SELECT count(*) FROM items"); got[0] != "62" {
		t.Fatalf("items in Postgres: %s, want 62", got[0])
	}
}
