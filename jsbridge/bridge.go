// Package jsbridge serves the page-facing API of a Lattice worker: it
// turns the requests of MESSAGES.md into calls on a client.Client and
// sends back replies and events.
//
// The package is split at the platform edge: this file and the others
// without a build tag hold the request handling, value conversion rules
// and result encoding, and run (and are tested) natively; js.go moves
// values across syscall/js and is the only code that touches JavaScript.
package jsbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/latticesync/lattice/client"
)

// Request is one decoded page request (see DecodeRequest): the fields of
// the message object. Values are nil, bool, float64, int64 (from a JS
// BigInt), string, []byte, []any and map[string]any.
type Request map[string]any

// Event is a message to a port (a reply or an event), encoded with
// encoding/json for the worker script; rows in it (see Rows) become row
// objects there.
type Event map[string]any

// Options configure a Bridge.
type Options struct {
	// Open opens the database of dbName and returns a client on it (not
	// yet running). The bridge calls Run itself.
	Open func(ctx context.Context, dbName string, opts *client.Options) (*client.Client, error)
	// Emit sends an event to a port. It must not block for long.
	Emit func(port int, ev Event)
	// Logger receives the bridge's and the client's logs; nil discards.
	Logger *slog.Logger
	// TxIdle rolls back an interactive transaction that saw no request
	// for this long (a page that died or forgot to commit). Default 30s.
	TxIdle time.Duration
	// PendingEvery is how often the pending-write count is checked for
	// changes between requests. Default 250ms.
	PendingEvery time.Duration
	// TokenWait bounds how long the client waits for a page to answer a
	// token event. Default 15s.
	TokenWait time.Duration
}

// Bridge serves the requests of the ports (tabs) attached to one worker.
// It holds at most one open database; all ports share it.
type Bridge struct {
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	db    *openDB
	ports map[int]*port
	// holds counts, per shape id, the sync requests of each port not yet
	// undone by unsync: a shape is unsubscribed only when no port holds it.
	holds   map[string]map[int]int
	nextID  int // live query and transaction ids, unique per bridge
	closing bool
}

type openDB struct {
	name  string
	c     *client.Client
	token string // guarded by Bridge.mu
	// tokenWaits are the client's token requests waiting for a page's
	// answer (setToken or tokenError). Guarded by Bridge.mu.
	tokenWaits []chan tokenAnswer
	cancel     context.CancelFunc
	done       chan struct{}
	status     client.Status // last reported; guarded by Bridge.mu
	pending    int           // last reported; guarded by Bridge.mu
}

type port struct {
	id    int
	lives map[int]func()
	txs   map[int]*itx
	// refresh: the page has a getToken to answer token events with.
	refresh bool
}

type tokenAnswer struct {
	token string
	err   error
}

// New returns a Bridge.
func New(opts Options) *Bridge {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TxIdle <= 0 {
		opts.TxIdle = 30 * time.Second
	}
	if opts.PendingEvery <= 0 {
		opts.PendingEvery = 250 * time.Millisecond
	}
	if opts.TokenWait <= 0 {
		opts.TokenWait = 15 * time.Second
	}
	return &Bridge{opts: opts, log: opts.Logger, ports: map[int]*port{}, holds: map[string]map[int]int{}}
}

// Handle runs one request from a port and returns its reply message
// ({id, ok, result} or {id, ok:false, error}). It blocks for as long as
// the request takes: call it on its own goroutine.
func (b *Bridge) Handle(ctx context.Context, portID int, req Request) Event {
	id := req["id"]
	result, err := b.handle(ctx, portID, req)
	if err != nil {
		return Event{"id": id, "ok": false, "error": errorValue(err)}
	}
	if result == nil {
		result = map[string]any{}
	}
	return Event{"id": id, "ok": true, "result": result}
}

func (b *Bridge) handle(ctx context.Context, portID int, req Request) (any, error) {
	op, err := req.str("op")
	if err != nil {
		return nil, err
	}
	switch op {
	case "open":
		return b.open(ctx, portID, req)
	case "detach", "close":
		b.detach(portID)
		return nil, nil
	case "network":
		// From the worker script: the browser's online / offline events.
		online, ok := req["online"].(bool)
		if !ok {
			return nil, badRequest("network: online must be a boolean")
		}
		b.mu.Lock()
		db := b.db
		b.mu.Unlock()
		if db != nil {
			db.c.NetworkChanged(online)
		}
		return nil, nil
	}
	db, p, err := b.attached(portID)
	if err != nil {
		return nil, err
	}
	switch op {
	case "query":
		return b.query(ctx, db, p, req)
	case "exec":
		return b.exec(ctx, db, p, req)
	case "begin":
		return b.begin(ctx, db, p)
	case "commit", "rollback":
		return b.finish(ctx, db, p, req, op == "commit")
	case "live":
		return b.live(db, p, req)
	case "unlive":
		n, err := req.int("live")
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		cancel := p.lives[n]
		delete(p.lives, n)
		b.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return nil, nil
	case "sync":
		return b.sync(ctx, db, p, req)
	case "unsync":
		id, err := req.str("shapeId")
		if err != nil {
			return nil, err
		}
		if b.release(id, p.id) {
			return nil, nil // another tab still holds it
		}
		if err := db.c.Unsubscribe(ctx, id); err != nil {
			return nil, fmt.Errorf("unsubscribe %s: %w", id, err)
		}
		return nil, nil
	case "setToken":
		tok, err := req.str("token")
		if err != nil {
			return nil, err
		}
		b.tokenAnswered(db, tokenAnswer{token: tok})
		return nil, nil
	case "tokenError":
		msg, _ := req.optStr("message")
		b.tokenAnswered(db, tokenAnswer{err: fmt.Errorf("getToken failed: %s", msg)})
		return nil, nil
	case "status":
		b.mu.Lock()
		defer b.mu.Unlock()
		return statusValue(db.status, db.pending), nil
	}
	return nil, badRequest("unknown op %q", op)
}

// attached returns the open database and the port's state, or an error
// if the port has not opened it.
func (b *Bridge) attached(portID int) (*openDB, *port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.ports[portID]
	if p == nil || b.db == nil {
		return nil, nil, &Error{Code: CodeClosed, Message: "database not open: send open first"}
	}
	return b.db, p, nil
}

func (b *Bridge) open(ctx context.Context, portID int, req Request) (any, error) {
	cfg, err := req.obj("config")
	if err != nil {
		return nil, err
	}
	name, err := cfg.str("dbName")
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, badRequest("config.dbName is empty")
	}
	url, _ := cfg.optStr("url")
	token, _ := cfg.optStr("token")
	refresh, _ := cfg["refreshToken"].(bool)
	var schema any
	if v, ok := cfg["schema"]; ok && v != nil {
		schema = v
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil, &Error{Code: CodeClosed, Message: "worker is closing"}
	}
	if b.db != nil {
		if b.db.name != name {
			return nil, badRequest("this worker serves database %q, not %q", b.db.name, name)
		}
		if token != "" {
			b.db.token = token
		}
		b.attach(portID).refresh = refresh
		return map[string]any{"clientId": b.db.c.ClientID(), "status": statusValue(b.db.status, b.db.pending)}, nil
	}
	db := &openDB{name: name, token: token, done: make(chan struct{})}
	opts := &client.Options{
		URL:       url,
		Logger:    b.log,
		TokenFunc: func(ctx context.Context) (string, error) { return b.tokenFor(ctx, db) },
		OnStatus:  func(st client.Status) { b.statusChanged(db, st) },
	}
	if schema != nil {
		rels, err := parseSchema(schema)
		if err != nil {
			return nil, err
		}
		opts.Schema = rels
	}
	// Opening reads the database (IndexedDB in a browser): do not hold
	// the lock meanwhile? Other requests need db, and a second open must
	// wait for this one, so holding it is what we want.
	c, err := b.opts.Open(ctx, name, opts)
	if err != nil {
		return nil, fmt.Errorf("open database %q: %w", name, err)
	}
	db.c = c
	db.status = c.Status()
	db.pending = c.PendingCount()
	b.db = db
	b.attach(portID).refresh = refresh
	runCtx, cancel := context.WithCancel(context.Background())
	db.cancel = cancel
	if url != "" {
		go func() {
			defer close(db.done)
			if err := c.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, client.ErrClosed) {
				b.log.Error("lattice: sync stopped", "err", err)
			}
		}()
	} else {
		close(db.done)
	}
	go b.watchPending(runCtx, db)
	return map[string]any{"clientId": c.ClientID(), "status": statusValue(db.status, db.pending)}, nil
}

// attach registers a port. Caller holds mu.
func (b *Bridge) attach(portID int) *port {
	if b.ports[portID] == nil {
		b.ports[portID] = &port{id: portID, lives: map[int]func(){}, txs: map[int]*itx{}}
	}
	return b.ports[portID]
}

// tokenFor is the client's TokenFunc. When a page has a getToken
// (refreshToken in its open config), the token comes from it: a token
// event goes to those pages and the first answer (setToken, or tokenError)
// is the result. Otherwise it is the token last given (open, setToken):
// after the service refused it, the client waits for a setToken.
func (b *Bridge) tokenFor(ctx context.Context, db *openDB) (string, error) {
	b.mu.Lock()
	var ask []int
	for id, p := range b.ports {
		if p.refresh {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 || b.db != db {
		tok := db.token
		b.mu.Unlock()
		return tok, nil
	}
	ch := make(chan tokenAnswer, 1)
	db.tokenWaits = append(db.tokenWaits, ch)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		db.tokenWaits = slices.DeleteFunc(db.tokenWaits, func(w chan tokenAnswer) bool { return w == ch })
		b.mu.Unlock()
	}()
	b.broadcast(ask, Event{"event": "token"})
	t := time.NewTimer(b.opts.TokenWait)
	defer t.Stop()
	select {
	case a := <-ch:
		return a.token, a.err
	case <-t.C:
		return "", fmt.Errorf("no page answered the token request within %v (getToken)", b.opts.TokenWait)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tokenAnswered delivers a page's token (or getToken failure) to the
// client: to its waiting token requests if any, else, for a token, as the
// token of its next connection (client.SetToken, which reconnects at once
// when the client is waiting for one).
func (b *Bridge) tokenAnswered(db *openDB, a tokenAnswer) {
	b.mu.Lock()
	if a.err == nil {
		db.token = a.token
	}
	waits := db.tokenWaits
	db.tokenWaits = nil
	b.mu.Unlock()
	for _, w := range waits {
		w <- a // buffered, one answer each
	}
	if len(waits) == 0 && a.err == nil {
		db.c.SetToken(a.token)
	}
}

// detach drops a port: its live queries stop and its open transactions
// roll back. When the last port goes, the database closes.
func (b *Bridge) detach(portID int) {
	b.mu.Lock()
	p := b.ports[portID]
	delete(b.ports, portID)
	// Its shapes stay subscribed (subscriptions are persisted; the app
	// unsyncs them), held by the remaining tabs if any.
	for id, h := range b.holds {
		if delete(h, portID); len(h) == 0 {
			delete(b.holds, id)
		}
	}
	var db *openDB
	if len(b.ports) == 0 && b.db != nil {
		db, b.db = b.db, nil
	}
	b.mu.Unlock()
	if p != nil {
		for _, cancel := range p.lives {
			cancel()
		}
		for _, t := range p.txs {
			t.abort()
		}
	}
	if db != nil {
		db.cancel()
		<-db.done
		if err := db.c.Close(); err != nil {
			b.log.Warn("lattice: close database", "err", err)
		}
	}
}

// Close detaches every port and closes the database.
func (b *Bridge) Close() {
	b.mu.Lock()
	b.closing = true
	ids := make([]int, 0, len(b.ports))
	for id := range b.ports {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for _, id := range ids {
		b.detach(id)
	}
}

func (b *Bridge) newID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	return b.nextID
}

func (b *Bridge) query(ctx context.Context, db *openDB, p *port, req Request) (any, error) {
	sql, args, err := statement(req)
	if err != nil {
		return nil, err
	}
	if t, err := b.txOf(p, req); err != nil || t != nil {
		if err != nil {
			return nil, err
		}
		return t.do(ctx, func(tx *client.Tx) (any, error) {
			rows, err := tx.Query(sql, args...)
			if err != nil {
				return nil, err
			}
			return EncodeRows(rows), nil
		})
	}
	rows, err := db.c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return EncodeRows(rows), nil
}

func (b *Bridge) exec(ctx context.Context, db *openDB, p *port, req Request) (any, error) {
	sql, args, err := statement(req)
	if err != nil {
		return nil, err
	}
	if t, err := b.txOf(p, req); err != nil || t != nil {
		if err != nil {
			return nil, err
		}
		return t.do(ctx, func(tx *client.Tx) (any, error) {
			res, err := tx.ExecResult(sql, args...)
			if err != nil {
				return nil, err
			}
			return resultValue(res), nil
		})
	}
	res, err := db.c.ExecResult(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	b.checkPending(db)
	return resultValue(res), nil
}

func resultValue(r client.Result) map[string]any {
	return map[string]any{"changes": r.Changes, "lastInsertRowid": r.LastInsertID}
}

func statement(req Request) (string, []any, error) {
	sql, err := req.str("sql")
	if err != nil {
		return "", nil, err
	}
	args, err := params(req["params"])
	if err != nil {
		return "", nil, err
	}
	return sql, args, nil
}

func (b *Bridge) live(db *openDB, p *port, req Request) (any, error) {
	sql, args, err := statement(req)
	if err != nil {
		return nil, err
	}
	n := b.newID()
	portID := p.id
	// The previous result sent, which the next is a delta against. fn is
	// called from one goroutine, in order.
	var memo *liveMemo
	cancel, err := db.c.LiveQuery(sql, args, func(rows *client.Rows, err error) {
		ev := Event{"event": "rows", "live": n}
		if err != nil {
			ev["error"] = errorValue(err)
			memo = nil // the page keeps its rows; the next result is sent in full
		} else {
			r, delta, skip, next := encodeLive(memo, rows)
			memo = next
			if skip {
				return
			}
			ev["columns"], ev["rows"] = r.Columns, r.Rows
			if delta {
				ev["delta"] = true
			}
			if r.Special {
				ev["special"] = true
			}
		}
		b.opts.Emit(portID, ev)
	})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.ports[portID] != p { // detached meanwhile
		b.mu.Unlock()
		cancel()
		return nil, &Error{Code: CodeClosed, Message: "port detached"}
	}
	p.lives[n] = cancel
	b.mu.Unlock()
	return map[string]any{"live": n}, nil
}

// release drops one hold of port on shape id and reports whether another
// port still holds it.
func (b *Bridge) release(id string, port int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.holds[id]
	if h[port] > 1 {
		h[port]--
	} else {
		delete(h, port)
	}
	if len(h) == 0 {
		delete(b.holds, id)
		return false
	}
	return true
}

func (b *Bridge) sync(ctx context.Context, db *openDB, p *port, req Request) (any, error) {
	v, ok := req["shape"]
	if !ok {
		return nil, badRequest("missing shape")
	}
	shape, err := parseShape(v)
	if err != nil {
		return nil, err
	}
	sub, err := db.c.Subscribe(ctx, shape)
	if err != nil {
		return nil, err
	}
	if err := sub.Synced(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.ports[p.id] == p {
		if b.holds[sub.ID()] == nil {
			b.holds[sub.ID()] = map[int]int{}
		}
		b.holds[sub.ID()][p.id]++
	}
	b.mu.Unlock()
	return map[string]any{"shapeId": sub.ID()}, nil
}

func (b *Bridge) statusChanged(db *openDB, st client.Status) {
	b.mu.Lock()
	prev := db.status.LastError
	db.status = st
	evs := []Event{{"event": "status", "status": statusValue(st, db.pending)}}
	var rej *client.RejectedError
	if st.LastError != nil && st.LastError != prev && errors.As(st.LastError, &rej) {
		evs = append(evs, Event{"event": "rejected", "txnId": rej.TxnID, "error": errorValue(rej)})
	}
	ports := b.portIDs()
	b.mu.Unlock()
	b.broadcast(ports, evs...)
}

// broadcast sends events to ports (listed under mu, sent without it).
func (b *Bridge) broadcast(ports []int, evs ...Event) {
	for _, id := range ports {
		for _, ev := range evs {
			b.opts.Emit(id, ev)
		}
	}
}

// checkPending sends a status event when the pending-write count changed.
func (b *Bridge) checkPending(db *openDB) {
	n := db.c.PendingCount()
	b.mu.Lock()
	if n == db.pending {
		b.mu.Unlock()
		return
	}
	db.pending = n
	ev := Event{"event": "status", "status": statusValue(db.status, n)}
	ports := b.portIDs()
	b.mu.Unlock()
	b.broadcast(ports, ev)
}

func (b *Bridge) watchPending(ctx context.Context, db *openDB) {
	t := time.NewTicker(b.opts.PendingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.checkPending(db)
		}
	}
}

// portIDs lists the attached ports. Caller holds mu.
func (b *Bridge) portIDs() []int {
	ids := make([]int, 0, len(b.ports))
	for id := range b.ports {
		ids = append(ids, id)
	}
	return ids
}

func statusValue(st client.Status, pending int) map[string]any {
	v := map[string]any{"state": st.State, "pending": pending}
	if st.State == "" {
		v["state"] = client.StateOffline
	}
	if st.LastError != nil {
		v["lastError"] = errorValue(st.LastError)
	}
	return v
}
