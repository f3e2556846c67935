package client

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ncruces/go-sqlite3"
)

// LiveQuery runs a read-only query now and again after every committed
// transaction (from the service, Exec or Transaction) that changes a table
// the query reads, and after every commit of another program on the
// database file (any table: it cannot tell which; seen within about 50 ms). The tables are found with SQLite's authorizer when the statement
// is prepared; a query reading a view depends on the view's tables.
//
// fn receives the rows, or an error if a run fails. It is called from one
// goroutine per client, in order, and only when the rows changed since
// its previous call (the first run always calls it). Calls are coalesced:
// a burst of transactions results in one call with the latest rows. A run
// never sees a half-applied transaction. fn may call the client's methods
// (Query, Exec, cancel, ...) but must not block for long: it delays the
// other live queries.
//
// If sql names a table that does not exist yet (typically a synced table
// before the first sync), LiveQuery still succeeds and the query waits:
// it is prepared, and fn first called, once a transaction creates the
// table. Other preparation errors are returned.
//
// The returned cancel function stops the query; it may be called more
// than once and from fn. Once it returns, fn is not called again (when
// called from fn, once fn returns).
func (c *Client) LiveQuery(sql string, args []any, fn func(*Rows, error)) (cancel func(), err error) {
	if fn == nil {
		return nil, errors.New("start live query: nil callback")
	}
	if err := c.lockOpen(c.closeCtx); err != nil {
		return nil, fmt.Errorf("start live query: %w", err)
	}
	lq := &liveQuery{c: c, sql: sql, args: slices.Clone(args), fn: fn}
	reads := map[string]struct{}{}
	st, err := c.prepareQuery(sql, reads)
	if err == nil {
		if err = bindArgs(st, args); err != nil {
			st.Close()
			err = fmt.Errorf("bind live query arguments: %w", err)
		}
	}
	c.unlock()
	switch {
	case err == nil:
		lq.stmt, lq.tables = st, reads
	case isNoSuchTable(err):
		// Wait for the table: retried after schema changes.
	default:
		return nil, fmt.Errorf("start live query: %w", err)
	}

	l := &c.live
	l.mu.Lock()
	lq.dirty = lq.stmt != nil
	l.queries = append(l.queries, lq)
	l.mu.Unlock()
	l.kick()
	return lq.cancel, nil
}

func isNoSuchTable(err error) bool {
	return strings.Contains(err.Error(), "no such table")
}

// liveQuery is one registered live query.
type liveQuery struct {
	c    *Client
	sql  string
	args []any
	fn   func(*Rows, error)

	stmt *sqlite3.Stmt // nil until prepared; used by the worker under db

	// Guarded by live.mu.
	tables   map[string]struct{} // lower-case names of the tables read
	dirty    bool                // needs a run
	canceled bool

	runs atomic.Int64 // for tests

	// Used by the worker only.
	called  bool
	last    *Rows
	lastErr string
}

// liveState is the live-query registry and its worker.
type liveState struct {
	mu       sync.Mutex
	idle     sync.Cond // signalled when busy is cleared
	queries  []*liveQuery
	closing  []*liveQuery // canceled queries whose statements to close
	busy     *liveQuery   // the query whose fn is running
	wake     chan struct{}
	done     chan struct{} // closed when the worker exits
	workerID uint64        // goroutine id of the worker
}

func (l *liveState) init() {
	l.idle.L = &l.mu
	l.wake = make(chan struct{}, 1)
	l.done = make(chan struct{})
}

func (l *liveState) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// notify marks dirty the live queries reading any of tables. With created
// set (tables were created or altered), queries still waiting for their
// tables are retried too; with all set (arbitrary DDL), every query is.
func (l *liveState) notify(tables map[string]struct{}, created, all bool) {
	if len(tables) == 0 && !created && !all {
		return
	}
	any := false
	l.mu.Lock()
	for _, lq := range l.queries {
		if lq.dirty {
			continue
		}
		if all || (created && lq.tables == nil) || intersects(lq.tables, tables) {
			lq.dirty = true
			any = true
		}
	}
	l.mu.Unlock()
	if any {
		l.kick()
	}
}

func intersects(a, b map[string]struct{}) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for k := range a {
		if _, ok := b[k]; ok {
			return true
		}
	}
	return false
}

func (lq *liveQuery) cancel() {
	l := &lq.c.live
	l.mu.Lock()
	defer l.mu.Unlock()
	if !lq.canceled {
		lq.canceled = true
		if i := slices.Index(l.queries, lq); i >= 0 {
			l.queries = slices.Delete(l.queries, i, i+1)
		}
		l.closing = append(l.closing, lq)
		l.kick()
	}
	if goid() == l.workerID {
		return // called from fn: no further call once it returns
	}
	for l.busy == lq {
		l.idle.Wait()
	}
}

type liveResult struct {
	skip bool
	rows *Rows
	err  error
}

// liveWorker runs dirty live queries and calls their callbacks, until the
// client is closed.
func (c *Client) liveWorker() {
	l := &c.live
	defer close(l.done)
	l.mu.Lock()
	l.workerID = goid()
	l.mu.Unlock()
	for {
		select {
		case <-l.wake:
		case <-c.closeCtx.Done():
			return
		}
		l.mu.Lock()
		var batch []*liveQuery
		for _, lq := range l.queries {
			if lq.dirty {
				lq.dirty = false
				batch = append(batch, lq)
			}
		}
		closing := l.closing
		l.closing = nil
		l.mu.Unlock()
		if len(batch) == 0 && len(closing) == 0 {
			continue
		}

		if c.lock(c.closeCtx) != nil {
			return
		}
		if c.conn == nil {
			c.unlock()
			return
		}
		for _, lq := range closing {
			lq.stmt.Close()
			lq.stmt = nil
		}
		results := make([]liveResult, len(batch))
		for i, lq := range batch {
			results[i] = c.runLive(lq)
		}
		c.unlock()

		for i, lq := range batch {
			r := results[i]
			if r.skip {
				continue
			}
			l.mu.Lock()
			if lq.canceled {
				l.mu.Unlock()
				continue
			}
			l.busy = lq
			l.mu.Unlock()
			lq.deliver(r)
			l.mu.Lock()
			l.busy = nil
			l.idle.Broadcast()
			l.mu.Unlock()
		}
	}
}

// runLive runs one live query, preparing it first if needed. Caller holds
// db.
func (c *Client) runLive(lq *liveQuery) liveResult {
	if lq.stmt == nil {
		l := &c.live
		l.mu.Lock()
		canceled := lq.canceled
		l.mu.Unlock()
		if canceled {
			return liveResult{skip: true}
		}
		reads := map[string]struct{}{}
		st, err := c.prepareQuery(lq.sql, reads)
		if err != nil {
			if isNoSuchTable(err) {
				return liveResult{skip: true} // still waiting for the table
			}
			return liveResult{err: err}
		}
		if err := bindArgs(st, lq.args); err != nil {
			st.Close()
			return liveResult{err: fmt.Errorf("bind live query arguments: %w", err)}
		}
		lq.stmt = st
		l.mu.Lock()
		lq.tables = reads
		l.mu.Unlock()
	}
	lq.runs.Add(1)
	rows, err := readRows(lq.stmt)
	if err != nil {
		lq.stmt.Reset()
		return liveResult{err: fmt.Errorf("run live query: %w", err)}
	}
	return liveResult{rows: rows}
}

// deliver calls fn unless the result equals the previous one.
func (lq *liveQuery) deliver(r liveResult) {
	if r.err != nil {
		msg := r.err.Error()
		if lq.called && lq.last == nil && lq.lastErr == msg {
			return
		}
		lq.called, lq.last, lq.lastErr = true, nil, msg
		lq.fn(nil, r.err)
		return
	}
	if lq.called && lq.last != nil && rowsEqual(lq.last, r.rows) {
		return
	}
	lq.called, lq.last, lq.lastErr = true, r.rows, ""
	lq.fn(r.rows, nil)
}

func rowsEqual(a, b *Rows) bool {
	if !slices.Equal(a.Columns, b.Columns) || len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		ra, rb := a.Values[i], b.Values[i]
		if len(ra) != len(rb) {
			return false
		}
		for j := range ra {
			if !valueEqual(ra[j], rb[j]) {
				return false
			}
		}
	}
	return true
}

func valueEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return false
}

// goid returns the current goroutine's id, parsed from its stack header
// ("goroutine 42 [running]:"). Only used to let cancel be called from a
// live-query callback without waiting for itself.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
