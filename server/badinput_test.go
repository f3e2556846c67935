package server_test

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server"
)

// rawConn is a hand-driven protocol connection.
type rawConn struct {
	t    *testing.T
	conn *websocket.Conn
}

func (e *env) dialRaw(t *testing.T) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, e.url+protocol.Path, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(protocol.MaxDownFrame)
	t.Cleanup(func() { conn.CloseNow() })
	return &rawConn{t: t, conn: conn}
}

func (r *rawConn) sendBytes(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.conn.Write(ctx, websocket.MessageBinary, b)
}

func (r *rawConn) send(m interface{ Encode([]byte) []byte }) {
	r.t.Helper()
	if err := r.sendBytes(m.Encode(nil)); err != nil {
		r.t.Fatalf("send %T: %v", m, err)
	}
}

// next reads the next message, or returns the read error.
func (r *rawConn) next() (protocol.Down, error) {
	return r.nextWithin(20 * time.Second)
}

// nextWithin is next, waiting at most d (the read error then closes
// the connection).
func (r *rawConn) nextWithin(d time.Duration) (protocol.Down, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, data, err := r.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	m, err := protocol.DecodeDown(data)
	if err != nil {
		r.t.Fatalf("decode down frame: %v", err)
	}
	return m, nil
}

// expectError reads until an Error arrives and checks its code.
func (r *rawConn) expectError(code string, fatal bool) *protocol.Error {
	r.t.Helper()
	for {
		m, err := r.next()
		if err != nil {
			r.t.Fatalf("waiting for error %s: connection ended: %v", code, err)
		}
		if e, ok := m.(*protocol.Error); ok {
			if e.Code != code || e.Fatal != fatal {
				r.t.Fatalf("got error %+v, want code %s fatal %v", e, code, fatal)
			}
			if e.Message == "" {
				r.t.Fatalf("error %s without a message", code)
			}
			return e
		}
	}
}

func (r *rawConn) expectClosed() {
	r.t.Helper()
	for {
		if _, err := r.next(); err != nil {
			return
		}
	}
}

func (r *rawConn) hello(tok string) *protocol.Welcome {
	r.t.Helper()
	r.send(&protocol.Hello{Version: protocol.Version, Token: tok, ClientID: "raw"})
	m, err := r.next()
	if err != nil {
		r.t.Fatalf("hello: %v", err)
	}
	w, ok := m.(*protocol.Welcome)
	if !ok {
		r.t.Fatalf("hello answered with %+v", m)
	}
	return w
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.exec("CREATE TABLE secret (id int PRIMARY KEY)")
	// A healthy client that must keep working throughout.
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "items"})
	q := "SELECT id, title FROM items ORDER BY id"
	step := 0
	stillServing := func() {
		t.Helper()
		step++
		e.exec("INSERT INTO items VALUES ($1, 'after bad input', false, 0)", step)
		waitEqual(t, e, good, q, q)
	}

	t.Run("malformed frame", func(t *testing.T) {
		r := e.dialRaw(t)
		r.sendBytes([]byte{0xff, 0x01, 0x02})
		r.expectError(protocol.ErrBadFrame, true)
		r.expectClosed()
		stillServing()
	})
	t.Run("truncated hello", func(t *testing.T) {
		r := e.dialRaw(t)
		b := (&protocol.Hello{Version: 1, Token: "abc", ClientID: "x"}).Encode(nil)
		r.sendBytes(b[:len(b)-2])
		r.expectError(protocol.ErrBadFrame, true)
		stillServing()
	})
	t.Run("text frame", func(t *testing.T) {
		r := e.dialRaw(t)
		r.conn.Write(context.Background(), websocket.MessageText, []byte("hello"))
		r.expectError(protocol.ErrBadFrame, true)
		stillServing()
	})
	oversized := func(t *testing.T, r *rawConn, size int) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- r.sendBytes(bytes.Repeat([]byte{1}, size)) }()
		// The client is told why, then the service closes with 1009
		// (message too big), reading no more than the limit of it.
		er := r.expectError(protocol.ErrFrameTooLarge, true)
		if !strings.Contains(er.Message, "1048576") {
			t.Errorf("message %q does not give the limit", er.Message)
		}
		_, err := r.next()
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Errorf("closed with %v, want status 1009", err)
		}
		<-done
	}
	t.Run("oversized frame", func(t *testing.T) {
		r := e.dialRaw(t)
		r.hello(e.token("bob"))
		oversized(t, r, protocol.MaxUpFrame+10)
		stillServing()
	})
	t.Run("oversized hello", func(t *testing.T) {
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		oversized(t, e.dialRaw(t), 64<<20)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// The service holds at most the limit of the 64 MiB frame (this
		// process also holds the 64 MiB it sent).
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 80<<20 {
			t.Errorf("%d MB allocated for a 64 MiB frame", grew>>20)
		}
		stillServing()
	})
	t.Run("bad token", func(t *testing.T) {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: 1, Token: "not.a.jwt"})
		r.expectError(protocol.ErrUnauthorized, true)
		stillServing()
	})
	t.Run("wrong secret", func(t *testing.T) {
		tok, _ := server.SignToken([]byte("another secret"), "mallory", time.Hour)
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: 1, Token: tok})
		r.expectError(protocol.ErrUnauthorized, true)
	})
	t.Run("expired token", func(t *testing.T) {
		tok, _ := server.SignToken(testSecret, "alice", -time.Minute)
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: 1, Token: tok})
		er := r.expectError(protocol.ErrUnauthorized, true)
		if !strings.Contains(er.Message, "expired") {
			t.Fatalf("message %q does not say expired", er.Message)
		}
	})
	t.Run("missing token", func(t *testing.T) {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: 1})
		r.expectError(protocol.ErrUnauthorized, true)
	})
	t.Run("token expires mid-connection", func(t *testing.T) {
		tok, _ := server.SignToken(testSecret, "alice", 1500*time.Millisecond)
		r := e.dialRaw(t)
		r.hello(tok)
		r.expectError(protocol.ErrUnauthorized, true)
	})
	t.Run("wrong version", func(t *testing.T) {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: 99, Token: e.token("bob")})
		r.expectError(protocol.ErrVersion, true)
	})
	t.Run("subscribe before hello", func(t *testing.T) {
		r := e.dialRaw(t)
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "a", Table: "items"}}})
		r.expectError(protocol.ErrBadFrame, true)
	})
	t.Run("bad shapes keep the connection", func(t *testing.T) {
		r := e.dialRaw(t)
		r.hello(e.token("bob"))
		p := func(s string) *string { return &s }
		cases := []struct {
			sh   protocol.Shape
			code string
			msg  string
		}{
			{protocol.Shape{ID: "1", Table: "nope"}, protocol.ErrUnknownTable, "nope"},
			{protocol.Shape{ID: "2", Table: "secret"}, protocol.ErrUnknownTable, "electrif"},
			{protocol.Shape{ID: "3", Table: "items", Where: "titel = 'x'"}, protocol.ErrBadShape, "titel"},
			{protocol.Shape{ID: "4", Table: "items", Where: "id = "}, protocol.ErrBadShape, "syntax"},
			{protocol.Shape{ID: "5", Table: "items", Where: "n > random()"}, protocol.ErrBadShape, "random"},
			{protocol.Shape{ID: "6", Table: "items", Where: "true; DROP TABLE items"}, protocol.ErrBadShape, ""},
			{protocol.Shape{ID: "7", Table: "items", Where: "id = $2", Params: []*string{p("1")}}, protocol.ErrBadShape, "$2"},
			{protocol.Shape{ID: "8", Table: "items", Where: "id = $1", Params: []*string{p("one")}}, protocol.ErrBadShape, "integer"},
			{protocol.Shape{ID: "9", Table: "items", Where: "id IN (SELECT id FROM secret)"}, protocol.ErrBadShape, ""},
			// Malformed names (to_regclass raises): unknown tables too.
			{protocol.Shape{ID: "10", Table: "a.b.c.d"}, protocol.ErrUnknownTable, "a.b.c.d"},
			{protocol.Shape{ID: "11", Table: "otherdb.public.items"}, protocol.ErrUnknownTable, "otherdb"},
			{protocol.Shape{ID: "12", Table: `"items`}, protocol.ErrUnknownTable, "items"},
		}
		for i, c := range cases {
			r.send(&protocol.Subscribe{ReqID: uint32(i + 1), Shapes: []protocol.Shape{c.sh}})
			er := r.expectError(c.code, false)
			if er.ReqID != uint32(i+1) || !strings.Contains(er.Message, c.msg) {
				t.Errorf("shape %+v: error %+v, want mention of %q", c.sh, er, c.msg)
			}
		}
		// The connection still works.
		r.send(&protocol.Subscribe{ReqID: 100, Shapes: []protocol.Shape{{ID: "ok", Table: "items"}}})
		for {
			m, err := r.next()
			if err != nil {
				t.Fatalf("after bad shapes: %v", err)
			}
			if s, ok := m.(*protocol.Subscribed); ok && s.ReqID == 100 {
				break
			}
		}
		if err := e.pgRowsErr(); err != nil {
			t.Fatal(err)
		}
		stillServing()
	})
}

// pgRowsErr checks that the items table survived the injection attempt.
func (e *env) pgRowsErr() error {
	e.pgRows("SELECT count(*) FROM items")
	return nil
}

func TestBadWrites(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	r := e.dialRaw(t)
	r.send(&protocol.Hello{Version: protocol.Version, Token: e.token("w"), ClientID: "raw-writer"})
	if _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	i32 := func(i int64) coltype.Value { return coltype.Value{Kind: coltype.Integer, I: i} }
	txt := func(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
	cases := []protocol.WriteChange{
		{Table: "nope", Op: protocol.OpInsert, Key: []coltype.Value{i32(1)}},
		{Table: "items", Op: protocol.OpInsert, Key: []coltype.Value{i32(1), i32(2)}},
		{Table: "items", Op: protocol.OpUpdate, Key: []coltype.Value{i32(1)}, Columns: []uint32{99}, Values: []coltype.Value{i32(1)}},
		{Table: "items", Op: protocol.OpUpdate, Key: []coltype.Value{i32(1)}, Columns: []uint32{3}, Values: []coltype.Value{txt("not a number")}},
		{Table: "items", Op: protocol.OpInsert, Key: []coltype.Value{i32(1)}, Columns: []uint32{0, 1, 2, 3}, Values: []coltype.Value{i32(1), {}, i32(0), i32(0)}}, // NOT NULL
		{Table: "items", Op: protocol.OpUpdate, Key: []coltype.Value{txt("x")}, Columns: []uint32{1}, Values: []coltype.Value{txt("t")}},
	}
	for i, c := range cases {
		id := uint64(i + 1)
		r.send(&protocol.Write{TxnID: id, HLC: 1 << 32, Changes: []protocol.WriteChange{c}})
		for {
			m, err := r.next()
			if err != nil {
				t.Fatalf("case %d: connection ended: %v", i, err)
			}
			if rej, ok := m.(*protocol.Reject); ok {
				if rej.TxnID != id || rej.Code == "" || rej.Message == "" {
					t.Fatalf("case %d: reject %+v", i, rej)
				}
				t.Logf("case %d: %s: %s", i, rej.Code, rej.Message)
				break
			}
			if ack, ok := m.(*protocol.Ack); ok {
				t.Fatalf("case %d: bad write acknowledged: %+v", i, ack)
			}
		}
	}
	// A good write still goes through on the same connection.
	r.send(&protocol.Write{TxnID: 100, HLC: 1 << 32, Changes: []protocol.WriteChange{{Table: "items", Op: protocol.OpInsert,
		Key: []coltype.Value{i32(7)}, Columns: []uint32{0, 1, 2, 3}, Values: []coltype.Value{i32(7), txt("ok"), i32(0), i32(1)}}}})
	for {
		m, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ack, ok := m.(*protocol.Ack); ok && ack.TxnID == 100 {
			break
		}
	}
	if rows := e.pgRows("SELECT id, title FROM items"); len(rows) != 1 || rows[0] != "7|ok" {
		t.Fatalf("items: %v", rows)
	}
}
