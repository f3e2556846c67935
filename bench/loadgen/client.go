package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// simClient is one client speaking the protocol: Hello, one shape over
// its project's issues, then every frame decoded as a client would. It
// keeps the issues it holds (id -> n) so that the run can compare it with
// Postgres at the end, and records the latency of every live change
// (now - the sent_ns the writer stamped just before its commit).
type simClient struct {
	id      int
	project int64
	shape   protocol.Shape
	lat     *hist
	got     *atomic.Uint64 // live issue changes received, all clients

	mu       sync.Mutex
	issues   map[int64]int64
	subbedAt time.Time
	err      error

	rel               uint32 // RelID of lg_issue on this connection; 0 unknown
	iID, iN, iSent    int
	relKnown          bool
	snapshotRows      int
	received, changes int64
}

func newShape(kind string, project int64) protocol.Shape {
	p := strconv.FormatInt(project, 10)
	if kind == "table" {
		return protocol.Shape{ID: "s", Table: "lg_issue", Where: "project_id = $1", Params: []*string{&p}}
	}
	return protocol.Shape{ID: "s", Table: "lg_project", Where: "id = $1", Params: []*string{&p},
		Include: []protocol.Include{{Table: "lg_issue"}}}
}

// run connects and reads until ctx ends or the connection fails;
// subscribed is called once, when the shape is live.
func (c *simClient) run(ctx context.Context, url, token string, subscribed func()) error {
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return fmt.Errorf("client %d: dial: %w", c.id, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(protocol.MaxDownFrame + 1024)
	hello := &protocol.Hello{Version: protocol.Version, Token: token, ClientID: fmt.Sprintf("loadgen-%d", c.id)}
	if err := conn.Write(ctx, websocket.MessageBinary, hello.Encode(nil)); err != nil {
		return fmt.Errorf("client %d: send hello: %w", c.id, err)
	}
	once := false
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				conn.Close(websocket.StatusNormalClosure, "")
				return nil
			}
			return fmt.Errorf("client %d: read: %w", c.id, err)
		}
		m, err := protocol.DecodeDown(data)
		if err != nil {
			return fmt.Errorf("client %d: decode: %w", c.id, err)
		}
		switch m := m.(type) {
		case *protocol.Welcome:
			sub := &protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{c.shape}}
			if err := conn.Write(ctx, websocket.MessageBinary, sub.Encode(nil)); err != nil {
				return fmt.Errorf("client %d: send subscribe: %w", c.id, err)
			}
		case *protocol.Relation:
			if m.Table == "lg_issue" {
				if err := c.relation(m); err != nil {
					return err
				}
			}
		case *protocol.Txn:
			c.txn(m, time.Now())
		case *protocol.Subscribed:
			if !once {
				once = true
				c.mu.Lock()
				c.subbedAt = time.Now()
				c.mu.Unlock()
				subscribed()
			}
		case *protocol.Error:
			if m.Fatal {
				return fmt.Errorf("client %d: service error %s: %s", c.id, m.Code, m.Message)
			}
			return fmt.Errorf("client %d: subscribe refused: %s: %s", c.id, m.Code, m.Message)
		}
	}
}

func (c *simClient) relation(m *protocol.Relation) error {
	c.rel, c.iID, c.iN, c.iSent = m.RelID, -1, -1, -1
	for i, col := range m.Columns {
		switch col.Name {
		case "id":
			c.iID = i
		case "n":
			c.iN = i
		case "sent_ns":
			c.iSent = i
		}
	}
	if c.iID < 0 || c.iN < 0 || c.iSent < 0 {
		return fmt.Errorf("client %d: lg_issue lacks id, n or sent_ns: %+v", c.id, m.Columns)
	}
	c.relKnown = true
	return nil
}

func (c *simClient) txn(m *protocol.Txn, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Flags&protocol.FlagReset != 0 {
		for _, id := range m.Reset {
			if id == c.rel {
				clear(c.issues)
			}
		}
	}
	snapshot := m.Flags&protocol.FlagSnapshot != 0
	for i := range m.Changes {
		ch := &m.Changes[i]
		if !c.relKnown || ch.RelID != c.rel {
			continue
		}
		switch ch.Op {
		case protocol.OpInsert, protocol.OpUpdate:
			id := ch.Values[c.iID].I
			c.issues[id] = ch.Values[c.iN].I
			if snapshot {
				c.snapshotRows++
				continue
			}
			c.changes++
			if v := ch.Values[c.iSent]; v.Kind == coltype.Integer && v.I > 0 {
				c.lat.record(now.Sub(time.Unix(0, v.I)))
				c.got.Add(1)
			}
		case protocol.OpDelete, protocol.OpMoveOut:
			delete(c.issues, ch.Values[0].I) // the key: id alone
		}
	}
	c.received++
}

// held copies what the client holds.
func (c *simClient) held() map[int64]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int64]int64, len(c.issues))
	for k, v := range c.issues {
		out[k] = v
	}
	return out
}

func (c *simClient) fail(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}
