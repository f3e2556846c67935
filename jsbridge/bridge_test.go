package jsbridge

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
)

// events collects what the bridge emits, per port.
type events struct {
	mu sync.Mutex
	ev map[int][]Event
	ch chan struct{}
}

func (e *events) emit(port int, ev Event) {
	e.mu.Lock()
	e.ev[port] = append(e.ev[port], ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// wait returns the first event of port satisfying ok, waiting for it.
func (e *events) wait(t *testing.T, port int, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		for i, ev := range e.ev[port] {
			if ok(ev) {
				e.ev[port] = append(e.ev[port][:i:i], e.ev[port][i+1:]...)
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("port %d: no matching event; have %v", port, e.ev[port])
		}
	}
}

func newBridge(t *testing.T) (*Bridge, *events) {
	t.Helper()
	dir := t.TempDir()
	ev := &events{ev: map[int][]Event{}, ch: make(chan struct{}, 1)}
	b := New(Options{
		Emit:   ev.emit,
		TxIdle: 2 * time.Second,
		Open: func(ctx context.Context, name string, opts *client.Options) (*client.Client, error) {
			return client.Open(ctx, filepath.Join(dir, name+".db"), opts)
		},
	})
	t.Cleanup(b.Close)
	return b, ev
}

// call sends a request given as JSON (as the worker script encodes it) and
// returns the reply re-decoded from its JSON, as the worker receives it.
func call(t *testing.T, b *Bridge, port int, req string) map[string]any {
	t.Helper()
	r, err := DecodeRequest(req)
	if err != nil {
		t.Fatalf("decode %s: %v", req, err)
	}
	rep := b.Handle(context.Background(), port, r)
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("encode reply: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ok(t *testing.T, rep map[string]any) map[string]any {
	t.Helper()
	if rep["ok"] != true {
		t.Fatalf("request failed: %v", rep["error"])
	}
	return rep["result"].(map[string]any)
}

func errCode(t *testing.T, rep map[string]any) string {
	t.Helper()
	if rep["ok"] != false {
		t.Fatalf("request succeeded, want an error: %v", rep)
	}
	return rep["error"].(map[string]any)["code"].(string)
}

const createT = `{"id":2,"op":"exec","sql":"CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, big INTEGER, f REAL, b BLOB)"}`

func TestQueryExecValues(t *testing.T) {
	b, _ := newBridge(t)
	res := ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app"},"tab":"x"}`))
	if res["clientId"] == "" {
		t.Fatalf("open: no clientId: %v", res)
	}
	ok(t, call(t, b, 1, createT))
	res = ok(t, call(t, b, 1, `{"id":3,"op":"exec","sql":"INSERT INTO t VALUES (?, ?, ?, ?, ?)","params":[5, "a\"b\n\u00e9", {"$i":"9007199254740993"}, 1.5, {"$b":"AAEC"}]}`))
	if res["changes"] != 1.0 || res["lastInsertRowid"] != 5.0 {
		t.Fatalf("exec result = %v", res)
	}
	ok(t, call(t, b, 1, `{"id":4,"op":"exec","sql":"INSERT INTO t VALUES (6, 7, 1, 0.25, NULL), (7, NULL, 2, 1e999, x'')"}`))
	res = ok(t, call(t, b, 1, `{"id":5,"op":"query","sql":"SELECT id, name, big, f, b, typeof(name) AS ty FROM t ORDER BY id"}`))
	got, _ := json.Marshal(res)
	want := `{"columns":["id","name","big","f","b","ty"],"rows":[[5,"a\"b\né",{"$i":"9007199254740993"},1.5,{"$b":"AAEC"},"text"],[6,"7",1,0.25,null,"text"],[7,null,2,{"$f":"Infinity"},{"$b":""},"null"]],"special":true}`
	if string(got) != want {
		t.Fatalf("query result\n got %s\nwant %s", got, want)
	}
}

func TestErrorsHaveCodes(t *testing.T) {
	b, _ := newBridge(t)
	if c := errCode(t, call(t, b, 1, `{"id":1,"op":"query","sql":"SELECT 1"}`)); c != CodeClosed {
		t.Errorf("query before open: code %s", c)
	}
	ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app"}}`))
	ok(t, call(t, b, 1, `{"id":2,"op":"exec","sql":"CREATE TABLE u(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"}`))
	for _, c := range []struct{ req, code string }{
		{`{"id":3,"op":"query","sql":"SELEC 1"}`, CodeSQL},
		{`{"id":3,"op":"query","sql":"SELECT * FROM nope"}`, CodeSQL},
		{`{"id":3,"op":"exec","sql":"INSERT INTO u VALUES (1, NULL)"}`, CodeConstraint},
		{`{"id":3,"op":"exec","sql":"INSERT INTO u VALUES (?, ?)","params":[1]}`, CodeSQL},
		{`{"id":3,"op":"query","sql":"SELECT ?","params":[{"a":1}]}`, CodeBadRequest},
		{`{"id":3,"op":"nope"}`, CodeBadRequest},
		{`{"id":3,"op":"query"}`, CodeBadRequest},
		{`{"id":3,"op":"commit","tx":99}`, CodeBadRequest},
		{`{"id":3,"op":"sync","shape":{"tabel":"x"}}`, CodeBadShape},
		{`{"id":3,"op":"open","config":{"dbName":"other"}}`, CodeBadRequest},
	} {
		if got := errCode(t, call(t, b, 1, c.req)); got != c.code {
			t.Errorf("%s: code %s, want %s", c.req, got, c.code)
		}
	}
	if _, err := DecodeRequest(`{"id":1,`); Code(err) != CodeBadRequest {
		t.Errorf("malformed JSON: %v", err)
	}
	// Still working after all that.
	ok(t, call(t, b, 1, `{"id":4,"op":"query","sql":"SELECT 1"}`))
}

func TestInteractiveTransaction(t *testing.T) {
	b, _ := newBridge(t)
	ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app"}}`))
	ok(t, call(t, b, 1, createT))
	tx := ok(t, call(t, b, 1, `{"id":3,"op":"begin"}`))["tx"].(float64)
	txs := func(s string) string { return strings.ReplaceAll(s, "TX", jsonNum(tx)) }
	ok(t, call(t, b, 1, txs(`{"id":4,"op":"exec","tx":TX,"sql":"INSERT INTO t(id) VALUES (1)"}`)))
	n := ok(t, call(t, b, 1, txs(`{"id":5,"op":"query","tx":TX,"sql":"SELECT count(*) FROM t"}`)))
	if s, _ := json.Marshal(n["rows"]); string(s) != "[[1]]" {
		t.Fatalf("inside transaction: %s", s)
	}
	ok(t, call(t, b, 1, txs(`{"id":6,"op":"rollback","tx":TX}`)))
	n = ok(t, call(t, b, 1, `{"id":7,"op":"query","sql":"SELECT count(*) FROM t"}`))
	if s, _ := json.Marshal(n["rows"]); string(s) != "[[0]]" {
		t.Fatalf("after rollback: %s", s)
	}

	tx = ok(t, call(t, b, 1, `{"id":8,"op":"begin"}`))["tx"].(float64)
	ok(t, call(t, b, 1, txs(`{"id":9,"op":"exec","tx":TX,"sql":"INSERT INTO t(id) VALUES (2)"}`)))
	ok(t, call(t, b, 1, txs(`{"id":10,"op":"commit","tx":TX}`)))
	n = ok(t, call(t, b, 1, `{"id":11,"op":"query","sql":"SELECT count(*) FROM t"}`))
	if s, _ := json.Marshal(n["rows"]); string(s) != "[[1]]" {
		t.Fatalf("after commit: %s", s)
	}

	// An abandoned transaction rolls back after TxIdle and frees the
	// database.
	tx = ok(t, call(t, b, 1, `{"id":12,"op":"begin"}`))["tx"].(float64)
	ok(t, call(t, b, 1, txs(`{"id":13,"op":"exec","tx":TX,"sql":"INSERT INTO t(id) VALUES (3)"}`)))
	n = ok(t, call(t, b, 1, `{"id":14,"op":"query","sql":"SELECT count(*) FROM t"}`))
	if s, _ := json.Marshal(n["rows"]); string(s) != "[[1]]" {
		t.Fatalf("after abandoned transaction: %s", s)
	}
	if c := errCode(t, call(t, b, 1, txs(`{"id":15,"op":"commit","tx":TX}`))); c != CodeInternal && c != CodeBadRequest {
		t.Fatalf("commit of expired transaction: code %s", c)
	}
}

func jsonNum(f float64) string { s, _ := json.Marshal(f); return string(s) }

func TestLiveQueriesAndPorts(t *testing.T) {
	b, ev := newBridge(t)
	ok(t, call(t, b, 1, `{"id":1,"op":"open","config":{"dbName":"app"}}`))
	ok(t, call(t, b, 2, `{"id":1,"op":"open","config":{"dbName":"app"}}`))
	ok(t, call(t, b, 1, createT))
	rowsOf := func(e Event) string {
		s, _ := json.Marshal(e["rows"])
		return string(s)
	}
	isRows := func(n float64, want string) func(Event) bool {
		return func(e Event) bool { return e["event"] == "rows" && e["live"] == int(n) && rowsOf(e) == want }
	}
	l1 := ok(t, call(t, b, 1, `{"id":2,"op":"live","sql":"SELECT count(*) AS n FROM t"}`))["live"].(float64)
	l2 := ok(t, call(t, b, 2, `{"id":2,"op":"live","sql":"SELECT count(*) AS n FROM t"}`))["live"].(float64)
	ev.wait(t, 1, isRows(l1, "[[0]]"))
	ev.wait(t, 2, isRows(l2, "[[0]]"))
	ok(t, call(t, b, 2, `{"id":3,"op":"exec","sql":"INSERT INTO t(id) VALUES (1)"}`))
	ev.wait(t, 1, isRows(l1, "[[1]]"))
	ev.wait(t, 2, isRows(l2, "[[1]]"))

	// Port 2 goes away: its live query stops, port 1 keeps working.
	ok(t, call(t, b, 2, `{"id":4,"op":"detach"}`))
	ok(t, call(t, b, 1, `{"id":5,"op":"exec","sql":"INSERT INTO t(id) VALUES (2)"}`))
	ev.wait(t, 1, isRows(l1, "[[2]]"))
	ok(t, call(t, b, 1, jsonReq(`{"id":6,"op":"unlive","live":%s}`, l1)))
	ok(t, call(t, b, 1, `{"id":7,"op":"exec","sql":"INSERT INTO t(id) VALUES (3)"}`))
	time.Sleep(200 * time.Millisecond)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, e := range ev.ev[1] {
		if e["event"] == "rows" {
			t.Errorf("event after unlive: %v", e)
		}
	}
	for _, e := range ev.ev[2] {
		if e["event"] == "rows" {
			t.Errorf("event to a detached port: %v", e)
		}
	}
}

func jsonReq(format string, n float64) string { return strings.Replace(format, "%s", jsonNum(n), 1) }

func TestEncodeNegativeZero(t *testing.T) {
	r := EncodeRows(&client.Rows{Columns: []string{"a", "b"}, Values: [][]any{{negZero(), "\x01\xff"}}})
	if got := string(r.Rows); got != `[[-0,"\u0001\ufffd"]]` {
		t.Fatalf("got %s", got)
	}
}

func negZero() float64 {
	z := 0.0
	return -z
}
