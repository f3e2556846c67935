//go:build !js

package jsbridge

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// startService starts lattice serve (insecure) on a fresh database with
// an electrified table item, and returns the database URL and ws URL.
func startService(t *testing.T) (string, string) {
	t.Helper()
	dbURL := pgtest.DB(t)
	pgtest.Exec(t, dbURL, `CREATE TABLE item (id text PRIMARY KEY, title text NOT NULL CHECK (title <> 'bad'), n bigint)`,
		`INSERT INTO item VALUES ('a', 'first', 1), ('b', 'second', 9007199254740993)`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := server.Start(ctx, server.Config{DatabaseURL: dbURL, Insecure: true, DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		hs.Close()
		svc.Close()
	})
	pgtest.Exec(t, dbURL, `CALL lattice.electrify('item')`)
	return dbURL, "ws" + strings.TrimPrefix(hs.URL, "http")
}

func TestSyncLiveAndWriteBack(t *testing.T) {
	dbURL, wsURL := startService(t)
	b, ev := newBridge(t)
	ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app","url":"`+wsURL+`"},"tab":"t1"}`))
	ev.wait(t, 1, func(e Event) bool {
		st, _ := e["status"].(map[string]any)
		return e["event"] == "status" && st["state"] == "online"
	})
	res := ok(t, call(t, b, 1, `{"id":2,"op":"sync","shape":{"table":"item"}}`))
	if res["shapeId"] == "" {
		t.Fatalf("sync: %v", res)
	}
	rows := ok(t, call(t, b, 1, `{"id":3,"op":"query","sql":"SELECT id, title, n FROM item ORDER BY id"}`))
	if s, _ := json.Marshal(rows["rows"]); string(s) != `[["a","first",1],["b","second",{"$i":"9007199254740993"}]]` {
		t.Fatalf("synced rows: %s", s)
	}
	live := ok(t, call(t, b, 1, `{"id":4,"op":"live","sql":"SELECT title FROM item WHERE id = 'a'"}`))["live"].(float64)
	liveRows := func(want string) func(Event) bool {
		return func(e Event) bool {
			s, _ := json.Marshal(e["rows"])
			return e["event"] == "rows" && e["live"] == int(live) && string(s) == want
		}
	}
	ev.wait(t, 1, liveRows(`[["first"]]`))
	// A change in Postgres reaches the live query.
	pgtest.Exec(t, dbURL, `UPDATE item SET title = 'from pg' WHERE id = 'a'`)
	ev.wait(t, 1, liveRows(`[["from pg"]]`))
	// A local write reaches Postgres, and the pending count goes up and
	// back to zero.
	ok(t, call(t, b, 1, `{"id":5,"op":"exec","sql":"UPDATE item SET title = 'from page' WHERE id = 'a'"}`))
	ev.wait(t, 1, liveRows(`[["from page"]]`))
	waitPG(t, dbURL, `SELECT count(*) FROM item WHERE id = 'a' AND title = 'from page'`)
	ev.wait(t, 1, func(e Event) bool {
		st, _ := e["status"].(map[string]any)
		return e["event"] == "status" && st["pending"] == 0
	})
	// A write Postgres refuses is undone locally and reported.
	ok(t, call(t, b, 1, `{"id":6,"op":"exec","sql":"UPDATE item SET title = 'bad' WHERE id = 'b'"}`))
	rej := ev.wait(t, 1, func(e Event) bool { return e["event"] == "rejected" })
	if e := rej["error"].(map[string]any); e["code"] != CodeConstraint || !strings.Contains(e["message"].(string), "check") {
		t.Fatalf("rejected event: %v", rej)
	}
	waitQuery(t, b, `SELECT title FROM item WHERE id = 'b'`, `[["second"]]`)
}

func waitPG(t *testing.T, dbURL, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i := 0; i < 200; i++ {
		var n int
		if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for Postgres: %s", sql)
}

func waitQuery(t *testing.T, b *Bridge, sql, want string) {
	t.Helper()
	var got []byte
	for i := 0; i < 200; i++ {
		req, _ := json.Marshal(map[string]any{"id": 1, "op": "query", "sql": sql})
		res := ok(t, call(t, b, 1, string(req)))
		if got, _ = json.Marshal(res["rows"]); string(got) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: got %s, want %s", sql, got, want)
}

// A shape synced by two tabs stays until both unsync it.
func TestUnsyncSharedShape(t *testing.T) {
	_, wsURL := startService(t)
	b, _ := newBridge(t)
	open := `{"id":1,"op":"open","config":{"dbName":"app","url":"` + wsURL + `"}}`
	ok(t, call(t, b, 1, open))
	ok(t, call(t, b, 2, open))
	sync := `{"id":2,"op":"sync","shape":{"table":"item"}}`
	id := ok(t, call(t, b, 1, sync))["shapeId"].(string)
	if id2 := ok(t, call(t, b, 2, sync))["shapeId"].(string); id2 != id {
		t.Fatalf("same shape, ids %s and %s", id, id2)
	}
	unsync := `{"id":3,"op":"unsync","shapeId":"` + id + `"}`
	ok(t, call(t, b, 1, unsync))
	waitQuery(t, b, `SELECT count(*) FROM item`, `[[2]]`)
	time.Sleep(300 * time.Millisecond)
	waitQuery(t, b, `SELECT count(*) FROM item`, `[[2]]`)
	ok(t, call(t, b, 2, unsync))
	waitQuery(t, b, `SELECT count(*) FROM item`, `[[0]]`)
}

// The browser's offline event ends the connection at once; online
// reconnects at once.
func TestNetworkEvents(t *testing.T) {
	_, wsURL := startService(t)
	b, ev := newBridge(t)
	ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app","url":"`+wsURL+`"}}`))
	state := func(want string) func(Event) bool {
		return func(e Event) bool {
			st, _ := e["status"].(map[string]any)
			return e["event"] == "status" && st["state"] == want
		}
	}
	ev.wait(t, 1, state("online"))
	ok(t, call(t, b, -1, `{"id":null,"op":"network","online":false}`))
	start := time.Now()
	ev.wait(t, 1, state("offline"))
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("offline after %v", d)
	}
	ok(t, call(t, b, -1, `{"id":null,"op":"network","online":true}`))
	ev.wait(t, 1, state("online"))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("online again after %v", d)
	}
}

// Tokens: a page with getToken (refreshToken) is asked for every token,
// also before the current one expires, and the connection never reports
// the expiry; without it, the expiry is reported (UNAUTHORIZED, the
// service's "token expired"), nothing reconnects with the refused token,
// and setToken reconnects at once.
func TestTokenRefresh(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	dbURL := pgtest.DB(t)
	pgtest.Exec(t, dbURL, `CREATE TABLE item (id text PRIMARY KEY, title text NOT NULL)`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := server.Start(ctx, server.Config{DatabaseURL: dbURL, Auth: auth.Config{Secret: secret}, DataDir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		hs.Close()
		svc.Close()
	})
	pgtest.Exec(t, dbURL, `CALL lattice.electrify('item')`)
	wsURL := "ws" + strings.TrimPrefix(hs.URL, "http")
	token := func(ttl time.Duration) string {
		tok, err := server.SignToken(secret, "u1", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	status := func(ok func(map[string]any) bool) func(Event) bool {
		return func(e Event) bool {
			st, _ := e["status"].(map[string]any)
			return e["event"] == "status" && ok(st)
		}
	}
	isToken := func(e Event) bool { return e["event"] == "token" }

	t.Run("getToken", func(t *testing.T) {
		b, ev := newBridge(t)
		ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"a","url":"`+wsURL+`","refreshToken":true}}`))
		ev.wait(t, 1, isToken)
		first := time.Now()
		ok(t, call(t, b, 1, `{"id":2,"op":"setToken","token":"`+token(5*time.Second)+`"}`))
		ev.wait(t, 1, status(func(st map[string]any) bool { return st["state"] == "online" }))
		ok(t, call(t, b, 1, `{"id":3,"op":"sync","shape":{"table":"item"}}`))
		// Asked again before the expiry (10% of 5 s early).
		ev.wait(t, 1, isToken)
		if d := time.Since(first); d > 5*time.Second {
			t.Fatalf("asked for the next token %v after a 5 s one", d)
		}
		ok(t, call(t, b, 1, `{"id":4,"op":"setToken","token":"`+token(time.Hour)+`"}`))
		time.Sleep(time.Until(first.Add(6 * time.Second))) // past the first token's exp
		pgtest.Exec(t, dbURL, `INSERT INTO item VALUES ('x', 'after expiry')`)
		waitQuery(t, b, `SELECT title FROM item`, `[["after expiry"]]`)
		ok(t, call(t, b, 1, `{"id":5,"op":"exec","sql":"INSERT INTO item VALUES ('y', 'from page')"}`))
		waitPG(t, dbURL, `SELECT count(*) FROM item WHERE id = 'y'`)
		b.mu.Lock()
		st := b.db.status
		b.mu.Unlock()
		if st.State != client.StateOnline || st.LastError != nil {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("setToken", func(t *testing.T) {
		b, ev := newBridge(t)
		ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"b","url":"`+wsURL+`","token":"`+token(3*time.Second)+`"}}`))
		ev.wait(t, 1, status(func(st map[string]any) bool { return st["state"] == "online" }))
		ok(t, call(t, b, 1, `{"id":4,"op":"sync","shape":{"table":"item"}}`))
		ev.wait(t, 1, status(func(st map[string]any) bool {
			e, _ := st["lastError"].(map[string]any)
			return st["state"] == "offline" && e["code"] == CodeUnauthorized && e["message"] == "token expired"
		}))
		ok(t, call(t, b, 1, `{"id":2,"op":"exec","sql":"INSERT INTO item VALUES ('z', 'offline')"}`))
		time.Sleep(700 * time.Millisecond)
		b.mu.Lock()
		st := b.db.status
		b.mu.Unlock()
		if st.State != client.StateOffline {
			t.Fatalf("reconnected with the expired token: %+v", st)
		}
		ok(t, call(t, b, 1, `{"id":3,"op":"setToken","token":"`+token(time.Hour)+`"}`))
		start := time.Now()
		ev.wait(t, 1, status(func(st map[string]any) bool { return st["state"] == "online" }))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("online %v after setToken", d)
		}
		waitPG(t, dbURL, `SELECT count(*) FROM item WHERE id = 'z'`)
	})
}
