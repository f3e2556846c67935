package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/latticesync/lattice/protocol"
)

// Shape is a subscription: the rows of Table matching Where, and the rows
// related to them that Include names. Rows that a held row references by a
// foreign key are always synced too (referential closure), so local
// foreign keys hold.
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
	// Include maps a related table ("issue" or "schema.issue") to what of
	// it to sync: the rows that reference a row of this level by a
	// foreign key (a project's issues), or that a row of this level
	// references (an issue's assignee).
	Include map[string]Include
}

// Include is one related table of a shape level.
type Include struct {
	// Via names the foreign key column when several foreign keys relate
	// the two tables.
	Via string
	// Where and Params filter the related rows, as in Shape.
	Where  string
	Params []any
	// Include goes on to the tables related to these rows.
	Include map[string]Include
}

// ParseShape decodes a shape from its JSON form, the one `lattice
// replicate --shape` and the JavaScript API take:
//
//	{"table": "project", "where": "id = $1", "params": ["p1"],
//	 "include": {"issue": {"where": "status <> $1", "params": ["done"],
//	                       "include": {"comment": {}, "users": {"via": "assignee_id"}}}}}
//
// "id" is optional. Params may be strings, numbers, booleans or null.
// Unknown fields are errors.
func ParseShape(data []byte) (Shape, error) {
	var j jsonShape
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return Shape{}, fmt.Errorf("parse shape: %w", err)
	}
	if dec.More() {
		return Shape{}, errors.New("parse shape: trailing data after the JSON object")
	}
	if j.Table == "" {
		return Shape{}, errors.New(`parse shape: "table" is missing`)
	}
	s := Shape{ID: j.ID, Table: j.Table, Where: j.Where}
	var err error
	if s.Params, err = jsonParams(j.Params, "params"); err != nil {
		return Shape{}, err
	}
	if s.Include, err = jsonIncludes(j.Include, j.Table, 1); err != nil {
		return Shape{}, err
	}
	return s, nil
}

type jsonShape struct {
	ID      string                 `json:"id"`
	Table   string                 `json:"table"`
	Where   string                 `json:"where"`
	Params  []any                  `json:"params"`
	Include map[string]jsonInclude `json:"include"`
}

type jsonInclude struct {
	Via     string                 `json:"via"`
	Where   string                 `json:"where"`
	Params  []any                  `json:"params"`
	Include map[string]jsonInclude `json:"include"`
}

func jsonParams(ps []any, where string) ([]any, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]any, len(ps))
	for i, p := range ps {
		switch v := p.(type) {
		case nil, string, bool:
			out[i] = v
		case json.Number:
			out[i] = v.String()
		default:
			return nil, fmt.Errorf("parse shape: %s[%d]: a parameter must be a string, number, boolean or null", where, i)
		}
	}
	return out, nil
}

func jsonIncludes(m map[string]jsonInclude, path string, depth int) (map[string]Include, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if depth > protocol.MaxIncludeDepth {
		return nil, fmt.Errorf("parse shape: includes nested deeper than %d at %s", protocol.MaxIncludeDepth, path)
	}
	out := make(map[string]Include, len(m))
	for table, j := range m {
		p := path + ".include." + table
		if table == "" {
			return nil, fmt.Errorf("parse shape: empty table name in %s.include", path)
		}
		params, err := jsonParams(j.Params, p+".params")
		if err != nil {
			return nil, err
		}
		sub, err := jsonIncludes(j.Include, p, depth+1)
		if err != nil {
			return nil, err
		}
		out[table] = Include{Via: j.Via, Where: j.Where, Params: params, Include: sub}
	}
	return out, nil
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
	id      string
	table   string
	where   string
	params  []*string
	include map[string]includeDef
	def     string // JSON, as persisted
	synced  bool
	done    chan struct{} // closed when synced or failed
	err     error         // *ShapeError when failed
	// sess and reqID identify the Subscribe in flight for the shape, if
	// any, so that it is not sent twice on one connection.
	sess  *session
	reqID uint32
}

func newSubState(id string, d *shapeDef, def string, synced bool) *subState {
	st := &subState{id: id, table: d.Table, where: d.Where, params: d.Params, include: d.Include, def: def, synced: synced, done: make(chan struct{})}
	if synced {
		close(st.done)
	}
	return st
}

func (st *subState) wire() protocol.Shape {
	return protocol.Shape{ID: st.id, Table: st.table, Where: st.where, Params: st.params, Include: wireIncludes(st.include)}
}

func (st *subState) shape() Shape {
	return Shape{ID: st.id, Table: st.table, Where: st.where, Params: apiParams(st.params), Include: apiIncludes(st.include)}
}

// markSynced records that the shape's initial data is local.
func (st *subState) markSynced() {
	st.synced = true
	select {
	case <-st.done: // synced before (a shape fetched again, see refetchTable)
	default:
		close(st.done)
	}
}

// shapeDef is the persisted (JSON) form of a shape's definition.
type shapeDef struct {
	Table   string                `json:"table"`
	Where   string                `json:"where,omitempty"`
	Params  []*string             `json:"params,omitempty"`
	Include map[string]includeDef `json:"include,omitempty"`
}

type includeDef struct {
	Via     string                `json:"via,omitempty"`
	Where   string                `json:"where,omitempty"`
	Params  []*string             `json:"params,omitempty"`
	Include map[string]includeDef `json:"include,omitempty"`
}

func textParams(ps []any, what string) ([]*string, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]*string, len(ps))
	for i, p := range ps {
		t, ok, err := paramText(p)
		if err != nil {
			return nil, fmt.Errorf("subscribe shape: %sparameter $%d: %w", what, i+1, err)
		}
		if ok {
			out[i] = &t
		}
	}
	return out, nil
}

func includeDefs(m map[string]Include, path string, depth int) (map[string]includeDef, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if depth > protocol.MaxIncludeDepth {
		return nil, fmt.Errorf("subscribe shape: includes nested deeper than %d at %s", protocol.MaxIncludeDepth, path)
	}
	out := make(map[string]includeDef, len(m))
	for table, in := range m {
		p := path + " -> " + table
		if table == "" {
			return nil, fmt.Errorf("subscribe shape: include with an empty table name under %s", path)
		}
		params, err := textParams(in.Params, "include "+p+": ")
		if err != nil {
			return nil, err
		}
		sub, err := includeDefs(in.Include, p, depth+1)
		if err != nil {
			return nil, err
		}
		out[table] = includeDef{Via: in.Via, Where: in.Where, Params: params, Include: sub}
	}
	return out, nil
}

// wireIncludes converts includes to the wire form, ordered by table name.
func wireIncludes(m map[string]includeDef) []protocol.Include {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]protocol.Include, len(keys))
	for i, k := range keys {
		d := m[k]
		out[i] = protocol.Include{Table: k, Via: d.Via, Where: d.Where, Params: d.Params, Include: wireIncludes(d.Include)}
	}
	return out
}

func apiIncludes(m map[string]includeDef) map[string]Include {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]Include, len(m))
	for k, d := range m {
		out[k] = Include{Via: d.Via, Where: d.Where, Params: apiParams(d.Params), Include: apiIncludes(d.Include)}
	}
	return out
}

func apiParams(ps []*string) []any {
	if ps == nil {
		return nil
	}
	out := make([]any, len(ps))
	for i, p := range ps {
		if p != nil {
			out[i] = *p
		}
	}
	return out
}

// normalize checks s and returns its ID, definition and JSON.
func normalizeShape(s Shape) (id string, d *shapeDef, def string, err error) {
	if s.Table == "" {
		return "", nil, "", fmt.Errorf("subscribe shape: empty table name")
	}
	d = &shapeDef{Table: s.Table, Where: s.Where}
	if d.Params, err = textParams(s.Params, ""); err != nil {
		return "", nil, "", err
	}
	if d.Include, err = includeDefs(s.Include, s.Table, 1); err != nil {
		return "", nil, "", err
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
	if err := c.dropUnsub(id); err != nil {
		return nil, err
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

// Unsubscribe removes a shape. The service moves out the rows that no
// remaining shape holds (they are removed locally, not deleted in
// Postgres). It works offline too: the removal is persisted and sent to
// the service on the next connection. It is a no-op for an unknown id.
func (c *Client) Unsubscribe(ctx context.Context, id string) error {
	if err := c.lockOpen(ctx); err != nil {
		return fmt.Errorf("unsubscribe shape: %w", err)
	}
	defer c.unlock()
	st := c.subs[id]
	if st == nil {
		return nil
	}
	if err := c.execArgs(`BEGIN`); err != nil {
		return fmt.Errorf("unsubscribe shape: %w", err)
	}
	err := c.execArgs(`DELETE FROM _lattice_shapes WHERE id = ?`, id)
	if err == nil {
		err = c.execArgs(`INSERT OR REPLACE INTO _lattice_unsubscribed(id, def) VALUES(?, ?)`, id, st.def)
	}
	if err == nil {
		err = c.execArgs(`COMMIT`)
	}
	if err != nil {
		c.execArgs(`ROLLBACK`)
		return fmt.Errorf("unsubscribe shape: %w", err)
	}
	c.removeSub(st)
	if !st.synced {
		st.err = ErrUnsubscribed
		st.synced = true
		close(st.done)
	}
	gone := &subState{id: id, table: st.table, where: st.where, params: st.params, include: st.include, def: st.def, synced: true}
	c.unsubs = append(c.unsubs, gone)
	if s := c.sess; s != nil && s.ready {
		s.unsubscribe([]*subState{gone})
	}
	return nil
}

// dropUnsub forgets a pending unsubscription. Caller holds db.
func (c *Client) dropUnsub(id string) error {
	for i, u := range c.unsubs {
		if u.id == id {
			if err := c.execArgs(`DELETE FROM _lattice_unsubscribed WHERE id = ?`, id); err != nil {
				return fmt.Errorf("forget unsubscribed shape: %w", err)
			}
			c.unsubs = append(c.unsubs[:i:i], c.unsubs[i+1:]...)
			return nil
		}
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
	st2, _, err := c.conn.Prepare(`SELECT id, def FROM _lattice_unsubscribed ORDER BY rowid`)
	if err != nil {
		return fmt.Errorf("load shapes: %w", err)
	}
	defer st2.Close()
	for st2.Step() {
		id, def := st2.ColumnText(0), st2.ColumnText(1)
		var d shapeDef
		if err := json.Unmarshal([]byte(def), &d); err != nil {
			return fmt.Errorf("load unsubscribed shape %q: %w", id, err)
		}
		c.unsubs = append(c.unsubs, newSubState(id, &d, def, true))
	}
	if err := st2.Err(); err != nil {
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
