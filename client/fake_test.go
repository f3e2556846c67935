package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// fakeServer is a scripted stand-in for `lattice serve`: each accepted
// connection is handed to the test, which reads the client's messages and
// sends the service's.
type fakeServer struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *fakeConn
	paths chan string
}

type fakeConn struct {
	t     *testing.T
	ws    *websocket.Conn
	hello *protocol.Hello
	up    chan protocol.Up
	// writes receives the client's Write messages (local transactions).
	writes chan *protocol.Write
	done   chan struct{} // closed when the connection is gone
}

const testTimeout = 10 * time.Second

func newFakeServer(t *testing.T) *fakeServer {
	fs := &fakeServer{t: t, conns: make(chan *fakeConn, 8), paths: make(chan string, 8)}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case fs.paths <- r.URL.Path:
		default:
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(protocol.MaxUpFrame)
		fc := &fakeConn{t: t, ws: ws, up: make(chan protocol.Up, 64), writes: make(chan *protocol.Write, 1024), done: make(chan struct{})}
		ctx := r.Context()
		defer close(fc.done)
		defer ws.CloseNow()
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		m, err := protocol.DecodeUp(b)
		if err != nil {
			t.Errorf("fake server: decode hello: %v", err)
			return
		}
		h, ok := m.(*protocol.Hello)
		if !ok {
			t.Errorf("fake server: first message is %T, want Hello", m)
			return
		}
		fc.hello = h
		fs.conns <- fc
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			m, err := protocol.DecodeUp(b)
			if err != nil {
				t.Errorf("fake server: decode: %v", err)
				return
			}
			if w, ok := m.(*protocol.Write); ok {
				// Local transactions go to their own queue, so tests of
				// the read path see only what they expect.
				fc.writes <- w
				continue
			}
			fc.up <- m
		}
	}))
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fakeServer) url() string { return fs.srv.URL } // http://127.0.0.1:port

// accept waits for the next connection (its Hello read).
func (fs *fakeServer) accept() *fakeConn {
	fs.t.Helper()
	select {
	case fc := <-fs.conns:
		return fc
	case <-time.After(testTimeout):
		fs.t.Fatal("fake server: no connection")
	}
	return nil
}

func (fc *fakeConn) send(ms ...protocol.Down) {
	fc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, m := range ms {
		if err := fc.ws.Write(ctx, websocket.MessageBinary, m.Encode(nil)); err != nil {
			fc.t.Fatalf("fake server: send %T: %v", m, err)
		}
	}
}

func (fc *fakeConn) recv() protocol.Up {
	fc.t.Helper()
	select {
	case m := <-fc.up:
		return m
	case <-time.After(testTimeout):
		fc.t.Fatal("fake server: nothing received")
	}
	return nil
}

func (fc *fakeConn) expectSubscribe() *protocol.Subscribe {
	fc.t.Helper()
	m := fc.recv()
	s, ok := m.(*protocol.Subscribe)
	if !ok {
		fc.t.Fatalf("fake server: got %T, want Subscribe", m)
	}
	return s
}

// expectWrite waits for the client's next Write.
func (fc *fakeConn) expectWrite() *protocol.Write {
	fc.t.Helper()
	select {
	case w := <-fc.writes:
		return w
	case <-time.After(testTimeout):
		fc.t.Fatal("fake server: no Write received")
	}
	return nil
}

// expectNothing checks that the client sends nothing for a short while.
func (fc *fakeConn) expectNothing() {
	fc.t.Helper()
	select {
	case m := <-fc.up:
		fc.t.Fatalf("fake server: unexpected %T %+v", m, m)
	case <-time.After(50 * time.Millisecond):
	}
}

// kill drops the connection abruptly.
func (fc *fakeConn) kill() {
	fc.ws.CloseNow()
	<-fc.done
}

// welcome sends a Welcome without resync.
func (fc *fakeConn) welcome(logID string) {
	fc.send(&protocol.Welcome{LogID: logID})
}

// Value helpers.
func vInt(i int64) coltype.Value    { return coltype.Value{Kind: coltype.Integer, I: i} }
func vReal(f float64) coltype.Value { return coltype.Value{Kind: coltype.Real, F: f} }
func vText(s string) coltype.Value  { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
func vBlob(b []byte) coltype.Value  { return coltype.Value{Kind: coltype.Blob, B: b} }
func vNull() coltype.Value          { return coltype.Value{} }
func col(name string, b coltype.Base, notNull bool) protocol.Column {
	return protocol.Column{Name: name, Type: coltype.Type{Base: b, Name: typeNames[b]}, NotNull: notNull}
}

var typeNames = map[coltype.Base]string{
	coltype.Int8: "bigint", coltype.TextType: "text", coltype.Float8: "double precision",
	coltype.Bytea: "bytea", coltype.Bool: "boolean", coltype.Numeric: "numeric",
}

// itemsRel is public.items(id bigint PK, title text, n bigint).
func itemsRel(id uint32) *protocol.Relation {
	return &protocol.Relation{RelID: id, Schema: "public", Table: "items",
		Columns: []protocol.Column{col("id", coltype.Int8, true), col("title", coltype.TextType, false), col("n", coltype.Int8, false)},
		PK:      []int{0}}
}

// otherRel is app.other(k text PK, v bigint).
func otherRel(id uint32) *protocol.Relation {
	return &protocol.Relation{RelID: id, Schema: "app", Table: "other",
		Columns: []protocol.Column{col("k", coltype.TextType, true), col("v", coltype.Int8, false)},
		PK:      []int{0}}
}

func ins(rel uint32, vals ...coltype.Value) protocol.Change {
	return protocol.Change{Op: protocol.OpInsert, RelID: rel, Values: vals}
}
func upd(rel uint32, vals ...coltype.Value) protocol.Change {
	return protocol.Change{Op: protocol.OpUpdate, RelID: rel, Values: vals}
}
func del(rel uint32, key ...coltype.Value) protocol.Change {
	return protocol.Change{Op: protocol.OpDelete, RelID: rel, Values: key}
}
func moveOut(rel uint32, key ...coltype.Value) protocol.Change {
	return protocol.Change{Op: protocol.OpMoveOut, RelID: rel, Values: key}
}

// txn is a one-chunk transaction.
func txn(lsn uint64, changes ...protocol.Change) *protocol.Txn {
	return &protocol.Txn{LSN: lsn, Flags: protocol.FlagFirst | protocol.FlagLast, CommitTime: 1, Changes: changes}
}

// snapshot is a one-chunk snapshot.
func snapshot(lsn uint64, changes ...protocol.Change) *protocol.Txn {
	return &protocol.Txn{LSN: lsn, Flags: protocol.FlagFirst | protocol.FlagLast | protocol.FlagSnapshot, Changes: changes}
}

func shapeIDs(s *protocol.Subscribe) []string {
	var ids []string
	for _, sh := range s.Shapes {
		ids = append(ids, sh.ID)
	}
	return ids
}

// testClient opens a client on path with the fake server's URL.
func testClient(t *testing.T, path string, fs *fakeServer) *Client {
	t.Helper()
	opts := &Options{}
	if fs != nil {
		opts.URL = fs.url()
	}
	c, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run starts c.Run and stops it at cleanup.
func run(t *testing.T, c *Client) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			t.Errorf("Run returned %v", err)
		}
	})
	return cancel
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// query returns rows as [][]any.
func query(t *testing.T, c *Client, sql string, args ...any) [][]any {
	t.Helper()
	rows, err := c.Query(ctxT(t), sql, args...)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return rows.Values
}

// waitLSN waits until the client's persisted LSN reaches lsn.
func waitLSN(t *testing.T, c *Client, lsn uint64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		if _, l := c.Position(); l >= lsn {
			return
		}
		if time.Now().After(deadline) {
			_, l := c.Position()
			t.Fatalf("lsn %d, want %d", l, lsn)
		}
		time.Sleep(time.Millisecond)
	}
}
