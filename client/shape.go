package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/latticesync/lattice/protocol"
)

// Shape is a subscription: the rows of Table matching Where.
type Shape struct {
	// ID names the shape; it must be unique per client. When empty,
	// Subscribe derives it from the definition (a hash of Table, Where and
	// Params), so the same definition always gets the same ID.
	ID string
	// Table is "items" (schema public) or "schema.items".
	Table string
	// Where is an optional Postgres boolean expression over the table's
	// columns, with $1..$n referring to Params.
	Where string
	// Params are the values of $1..$n. They travel as text and the service
	// coerces them to the compared column's type. Accepted: nil (NULL),
	// string, bool, the integer and float types (NaN and ±Inf as "NaN",
	// "Infinity", "-Infinity"), time.Time (RFC 3339 with microseconds) and
	// fmt.Stringer. []byte and other types are rejected. Shapes returned
	// by Client.Shapes hold the text form: string or nil.
	Params []any
}

// ShapeError is returned by Subscription.Synced when the service rejects
// a shape (Error message answering its Subscribe). The shape is then
// removed from the client's persisted shapes.
type ShapeError struct {
	ShapeID string
	Code    string // protocol error code, e.g. protocol.ErrBadShape
	Message string
}

// Error returns "shape <id>: <code>: <message>".
func (e *ShapeError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("shape %s: %s", e.ShapeID, e.Code)
	}
	return fmt.Sprintf("shape %s: %s: %s", e.ShapeID, e.Code, e.Message)
}

// Subscription is a handle on a subscribed shape.
type Subscription struct {
	c  *Client
	st *subState
}

// ID returns the shape's ID.
func (s *Subscription) ID() string { return s.st.id }

// Synced waits until the shape's initial data is in the local database. It
// returns at once if the shape was synced before (also in an earlier run
// of the program), a *ShapeError if the service rejected the shape,
// ctx.Err() if ctx ends first and ErrClosed if the client is closed.
func (s *Subscription) Synced(ctx context.Context) error {
	select {
	case <-s.st.done:
		return s.st.err
	default:
	}
	select {
	case <-s.st.done:
		return s.st.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.c.closeCtx.Done():
		return ErrClosed
	}
}

// subState is the in-memory state of a persisted shape. Fields are guarded
// by the client's db lock, except done and err (err is written before done
// is closed).
type subState struct {
	id     string
	table  string
	where  string
	params []*string
	def    string // JSON, as persisted
	synced bool
	done   chan struct{} // closed when synced or failed
	err    error         // *ShapeError when failed
	// sess and reqID identify the Subscribe in flight for the shape, if
	// any, so that it is not sent twice on one connection.
	sess  *session
	reqID uint32
}

func newSubState(id string, d *shapeDef, def string, synced bool) *subState {
	st := &subState{id: id, table: d.Table, where: d.Where, params: d.Params, def: def, synced: synced, done: make(chan struct{})}
	if synced {
		close(st.done)
	}
	return st
}

func (st *subState) wire() protocol.Shape {
	return protocol.Shape{ID: st.id, Table: st.table, Where: st.where, Params: st.params}
}

func (st *subState) shape() Shape {
	s := Shape{ID: st.id, Table: st.table, Where: st.where}
	if st.params != nil {
		s.Params = make([]any, len(st.params))
		for i, p := range st.params {
			if p != nil {
				s.Params[i] = *p
			}
		}
	}
	return s
}

// markSynced records that the shape's initial data is local.
func (st *subState) markSynced() {
	if !st.synced {
		st.synced = true
		close(st.done)
	}
}

// shapeDef is the persisted (JSON) form of a shape's definition.
type shapeDef struct {
	Table  string    `json:"table"`
	Where  string    `json:"where,omitempty"`
	Params []*string `json:"params,omitempty"`
}

// normalize checks s and returns its ID, definition and JSON.
func normalizeShape(s Shape) (id string, d *shapeDef, def string, err error) {
	if s.Table == "" {
		return "", nil, "", fmt.Errorf("subscribe shape: empty table name")
	}
	d = &shapeDef{Table: s.Table, Where: s.Where}
	if len(s.Params) > 0 {
		d.Params = make([]*string, len(s.Params))
		for i, p := range s.Params {
			t, ok, err := paramText(p)
			if err != nil {
				return "", nil, "", fmt.Errorf("subscribe shape: parameter $%d: %w", i+1, err)
			}
			if ok {
				d.Params[i] = &t
			}
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return "", nil, "", fmt.Errorf("encode shape: %w", err)
	}
	def = string(b)
	id = s.ID
	if id == "" {
		sum := sha256.Sum256(b)
		id = hex.EncodeToString(sum[:8])
	}
	return id, d, def, nil
}

// timeParamLayout is RFC 3339 with microseconds, Postgres's precision.
const timeParamLayout = "2006-01-02T15:04:05.000000Z07:00"

// paramText converts a shape parameter to its text form; ok is false for
// NULL.
func paramText(p any) (text string, ok bool, err error) {
	switch v := p.(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	case *string:
		if v == nil {
			return "", false, nil
		}
		return *v, true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case int:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int8:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int16:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int32:
		return strconv.FormatInt(int64(v), 10), true, nil
	case int64:
		return strconv.FormatInt(v, 10), true, nil
	case uint:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint8:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case uint64:
		return strconv.FormatUint(v, 10), true, nil
	case float32:
		return floatText(float64(v), 32), true, nil
	case float64:
		return floatText(v, 64), true, nil
	case time.Time:
		return v.Format(timeParamLayout), true, nil
	case []byte:
		return "", false, fmt.Errorf("[]byte is not supported (pass a string, e.g. a hex bytea literal)")
	case fmt.Stringer:
		return v.String(), true, nil
	}
	return "", false, fmt.Errorf("unsupported type %T", p)
}

func floatText(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// Subscribe adds a shape to the replica. The shape is persisted at once
// (it survives restarts and is resumed on every connection) and, when the
// client is connected, requested from the service right away; otherwise
// on the next connection. Subscribing again with the same ID and
// definition returns a handle on the existing subscription; the same ID
// with another definition is an error. Use Subscription.Synced to wait for
// the shape's initial data.
func (c *Client) Subscribe(ctx context.Context, s Shape) (*Subscription, error) {
	id, d, def, err := normalizeShape(s)
	if err != nil {
		return nil, err
	}
	if err := c.lockOpen(ctx); err != nil {
		return nil, fmt.Errorf("subscribe shape: %w", err)
	}
	defer c.unlock()
	if st := c.subs[id]; st != nil {
		if st.def != def {
			return nil, fmt.Errorf("subscribe shape: shape %q exists with another definition (%s)", id, st.def)
		}
		return &Subscription{c: c, st: st}, nil
	}
	if err := c.execArgs(`INSERT INTO _lattice_shapes(id, def, synced) VALUES(?, ?, 0)`, id, def); err != nil {
		return nil, fmt.Errorf("store shape: %w", err)
	}
	st := newSubState(id, d, def, false)
	c.addSub(st)
	if s := c.sess; s != nil && s.ready {
		s.subscribe(false, []*subState{st})
	}
	return &Subscription{c: c, st: st}, nil
}

// ErrUnsubscribed is returned by Synced for a shape unsubscribed before it
// synced.
var ErrUnsubscribed = errors.New("client: shape unsubscribed")

// Unsubscribe removes a shape from the persisted shapes, so that later
// connections no longer request it. It is a no-op for an unknown id.
//
// The shape's rows stay in the local tables: protocol v1 reserves row
// removal for later. On the current connection the client also sends
// Unsubscribe (which a v1 service may refuse; the answer is ignored), and
// the service may keep streaming the shape's changes until the next
// reconnect.
func (c *Client) Unsubscribe(ctx context.Context, id string) error {
	if err := c.lockOpen(ctx); err != nil {
		return fmt.Errorf("unsubscribe shape: %w", err)
	}
	defer c.unlock()
	st := c.subs[id]
	if st == nil {
		return nil
	}
	if err := c.execArgs(`DELETE FROM _lattice_shapes WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete shape: %w", err)
	}
	c.removeSub(st)
	if !st.synced {
		st.err = ErrUnsubscribed
		st.synced = true
		close(st.done)
	}
	if s := c.sess; s != nil && s.ready {
		s.nextReq++
		s.pending[s.nextReq] = request{ids: []string{id}, unsub: true}
		s.send(&protocol.Unsubscribe{ReqID: s.nextReq, ShapeIDs: []string{id}})
	}
	return nil
}

// Shapes returns the persisted shapes, in subscription order. Their Params
// are in text form (string or nil).
func (c *Client) Shapes() []Shape {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	out := make([]Shape, len(c.subList))
	for i, st := range c.subList {
		out[i] = st.shape()
	}
	return out
}

// addSub and removeSub update the shape registry. Caller holds db.
func (c *Client) addSub(st *subState) {
	c.subMu.Lock()
	c.subs[st.id] = st
	c.subList = append(c.subList, st)
	c.subMu.Unlock()
}

func (c *Client) removeSub(st *subState) {
	c.subMu.Lock()
	delete(c.subs, st.id)
	for i, x := range c.subList {
		if x == st {
			c.subList = append(c.subList[:i:i], c.subList[i+1:]...)
			break
		}
	}
	c.subMu.Unlock()
}

// loadShapes reads the persisted shapes. Called by Open.
func (c *Client) loadShapes() error {
	st, _, err := c.conn.Prepare(`SELECT id, def, synced FROM _lattice_shapes ORDER BY rowid`)
	if err != nil {
		return fmt.Errorf("load shapes: %w", err)
	}
	defer st.Close()
	for st.Step() {
		id, def := st.ColumnText(0), st.ColumnText(1)
		var d shapeDef
		if err := json.Unmarshal([]byte(def), &d); err != nil {
			return fmt.Errorf("load shape %q: %w", id, err)
		}
		s := newSubState(id, &d, def, st.ColumnInt64(2) != 0)
		c.subs[id] = s
		c.subList = append(c.subList, s)
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("load shapes: %w", err)
	}
	return nil
}

// failShapes records that the service rejected the shapes: they are
// deleted from _lattice_shapes and their Synced waiters get a ShapeError.
// Rows already replicated for them stay. Caller holds db.
func (c *Client) failShapes(ids []string, e *protocol.Error) {
	for _, id := range ids {
		st := c.subs[id]
		if st == nil {
			continue
		}
		if err := c.execArgs(`DELETE FROM _lattice_shapes WHERE id = ?`, id); err != nil {
			c.log.Error("lattice: delete failed shape", "shape", id, "err", err)
		}
		c.removeSub(st)
		if !st.synced {
			st.err = &ShapeError{ShapeID: id, Code: e.Code, Message: e.Message}
			st.synced = true // done is closed
			close(st.done)
		}
		c.log.Warn("lattice: shape rejected", "shape", id, "code", e.Code, "message", e.Message)
	}
}
