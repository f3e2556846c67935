// Package client is the platform-independent core of a Lattice client: it
// keeps a local SQLite replica of the shapes it subscribes to, in sync with
// a `lattice serve` service over the WebSocket protocol of package protocol.
//
// The package runs natively (Go applications, the `lattice replicate`
// command, tests) and in a browser Web Worker built with GOOS=js
// GOARCH=wasm; it contains no OS-specific code. The database path (and, on
// js, the SQLite VFS it names) is the caller's business.
//
// A Client owns one SQLite connection. Synced rows, the replication
// position and the subscribed shapes live in the same database, so that a
// transaction received from the service commits atomically with the
// position it advances. See README.md for the design.
//
// Typical use:
//
//	c, err := client.Open(ctx, "app.db", &client.Options{URL: "ws://localhost:5133", Token: jwt})
//	...
//	go c.Run(ctx)
//	sub, err := c.Subscribe(ctx, client.Shape{Table: "items", Where: "owner = $1", Params: []any{me}})
//	err = sub.Synced(ctx)
//	rows, err := c.Query(ctx, "SELECT id, title FROM items")
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// Options configure a Client. The zero value (or a nil *Options) gives a
// client that can only be used locally: Run needs a URL.
type Options struct {
	// URL of the service, e.g. "ws://localhost:5133" or
	// "https://sync.example.com". http and https are mapped to ws and wss.
	// protocol.Path ("/v1/sync") is appended unless the URL has a path.
	URL string
	// Token is the JWT sent in Hello. Empty for a service run --insecure.
	Token string
	// TokenFunc, when set, is called on every (re)connect for a fresh token
	// and wins over Token. An error fails that connection attempt, which is
	// retried with backoff.
	TokenFunc func(ctx context.Context) (string, error)
	// Logger receives connection and apply events. nil discards them.
	Logger *slog.Logger
	// OnStatus, when set, is called after every change of Status (state,
	// LSN, LastError), from the goroutine running Run, in order. It must
	// not block for long: it delays the apply of incoming transactions.
	OnStatus func(Status)
}

// Connection states reported in Status.State.
const (
	StateConnecting = "connecting" // dialing, or waiting for Welcome
	StateOnline     = "online"     // Welcome received; streaming
	StateOffline    = "offline"    // not running, or waiting to reconnect
)

// Status describes a client's connection.
type Status struct {
	// State is StateConnecting, StateOnline or StateOffline.
	State string
	// LSN is the position of the last transaction committed locally.
	LSN uint64
	// LastError is the error that ended the most recent connection (or
	// connection attempt); nil if none did. It is kept when the client
	// comes online again, so that it tells why the last reconnect happened.
	LastError error
}

// ErrClosed is returned by methods of a closed Client, and by Run and
// Synced when Close ends them.
var ErrClosed = errors.New("client: closed")

// Client is a local SQLite replica kept in sync with a Lattice service.
// Its methods are safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger
	path string

	// db is the lock of the SQLite connection (a one-slot semaphore, so
	// that waiting for it can honour a context). Whoever holds it may use
	// conn and the fields marked "guarded by db". The apply of a service
	// transaction holds it from the first chunk to the last.
	db   chan struct{}
	conn *sqlite3.Conn
	// authHook, when set, receives the SQLite authorizer callbacks of the
	// statement being prepared. Guarded by db.
	authHook func(action sqlite3.AuthorizerActionCode, name3rd, name4th, schema, inner string) sqlite3.AuthorizerReturnCode

	// Guarded by db.
	clientID string
	logID    string // persisted position
	lsn      uint64
	subs     map[string]*subState // also guarded by subMu for writes
	subList  []*subState          // subscription order; as subs
	subMu    sync.Mutex           // lets Shapes read subList without db
	sess     *session             // the current connection, if any
	tx       txState              // the service transaction being applied
	stmts    internalStmts

	stMu     sync.Mutex
	status   Status // guarded by stMu
	posLogID string // guarded by stMu; the persisted log id (status.LSN is the LSN)

	live liveState

	idleTimeout time.Duration // see the constant; tests shorten it

	closeCtx    context.Context // done when Close is called
	closeCancel context.CancelFunc
	runMu       sync.Mutex
	running     bool
	runWG       sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
}

// internalStmts are statements prepared once at Open.
type internalStmts struct {
	begin, commit, rollback *sqlite3.Stmt
	setState                *sqlite3.Stmt // (key, value)
	setSynced               *sqlite3.Stmt // (id)
}

const schemaSQL = `
CREATE TABLE IF NOT EXISTS _lattice_state(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS _lattice_shapes(
	id TEXT PRIMARY KEY,
	def TEXT NOT NULL, -- JSON of the shape
	synced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS _lattice_relations(
	local_name TEXT PRIMARY KEY,
	schema TEXT,
	name TEXT,
	def TEXT -- JSON: columns and primary key
);
`

// Open opens (creating if needed) the local replica at path and the state
// tables in it. path is ":memory:", a file name or an SQLite URI
// ("file:app.db?vfs=..."); on js/wasm the caller chooses a suitable VFS.
// File databases use WAL journaling (best effort) so that other processes
// can read them while the client runs. Open does not connect: call Run.
// opts may be nil for local use.
func Open(ctx context.Context, path string, opts *Options) (*Client, error) {
	c := &Client{
		path: path,
		db:   make(chan struct{}, 1),
		subs: make(map[string]*subState),
	}
	if opts != nil {
		c.opts = *opts
	}
	c.log = c.opts.Logger
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.status.State = StateOffline
	c.idleTimeout = idleTimeout
	conn, err := sqlite3.OpenContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	c.conn = conn
	if err := c.init(); err != nil {
		c.closeStmts()
		conn.Close()
		return nil, err
	}
	c.status.LSN = c.lsn
	c.posLogID = c.logID
	c.closeCtx, c.closeCancel = context.WithCancel(context.Background())
	c.live.init()
	go c.liveWorker()
	return c, nil
}

func isMemory(path string) bool {
	return path == "" || path == ":memory:" || strings.Contains(path, "mode=memory")
}

// init configures the connection, creates the state tables and loads the
// state. The connection is not shared yet.
func (c *Client) init() error {
	conn := c.conn
	if err := conn.BusyTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("set busy timeout: %w", err)
	}
	if !isMemory(c.path) {
		// Best effort: a VFS without shared memory (some js VFSes) cannot
		// do WAL; the database then keeps its journal mode.
		if mode, err := c.pragmaText("PRAGMA journal_mode=WAL"); err != nil || !strings.EqualFold(mode, "wal") {
			c.log.Warn("lattice: WAL journal mode unavailable", "mode", mode, "err", err)
		}
		if err := conn.Exec("PRAGMA synchronous=NORMAL"); err != nil {
			return fmt.Errorf("set synchronous mode: %w", err)
		}
	}
	if err := conn.SetAuthorizer(c.authorize); err != nil {
		return fmt.Errorf("set authorizer: %w", err)
	}
	if err := conn.Exec("BEGIN IMMEDIATE;" + schemaSQL); err != nil {
		conn.Exec("ROLLBACK")
		return fmt.Errorf("create state tables: %w", err)
	}
	err := c.loadState()
	if err == nil {
		err = conn.Exec("COMMIT")
	}
	if err != nil {
		conn.Exec("ROLLBACK")
		return err
	}
	return c.prepareInternal()
}

func (c *Client) pragmaText(sql string) (string, error) {
	st, _, err := c.conn.Prepare(sql)
	if err != nil {
		return "", err
	}
	defer st.Close()
	var v string
	if st.Step() {
		v = st.ColumnText(0)
	}
	return v, st.Err()
}

func (c *Client) prepareInternal() error {
	var err error
	prep := func(sql string) *sqlite3.Stmt {
		if err != nil {
			return nil
		}
		var st *sqlite3.Stmt
		st, _, err = c.conn.PrepareFlags(sql, sqlite3.PREPARE_PERSISTENT)
		return st
	}
	c.stmts.begin = prep("BEGIN IMMEDIATE")
	c.stmts.commit = prep("COMMIT")
	c.stmts.rollback = prep("ROLLBACK")
	c.stmts.setState = prep(`INSERT INTO _lattice_state(key, value) VALUES(?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`)
	c.stmts.setSynced = prep(`UPDATE _lattice_shapes SET synced = 1 WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("prepare state statements: %w", err)
	}
	return nil
}

// loadState reads (creating client_id if needed) the persisted state.
func (c *Client) loadState() error {
	st, _, err := c.conn.Prepare(`SELECT key, value FROM _lattice_state`)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	for st.Step() {
		switch st.ColumnText(0) {
		case "client_id":
			c.clientID = st.ColumnText(1)
		case "log_id":
			c.logID = st.ColumnText(1)
		case "lsn":
			c.lsn = uint64(st.ColumnInt64(1))
		}
	}
	err = st.Err()
	st.Close()
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	if c.clientID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("create client id: %w", err)
		}
		c.clientID = hex.EncodeToString(b[:])
		if err := c.execArgs(`INSERT INTO _lattice_state(key, value) VALUES('client_id', ?)`, c.clientID); err != nil {
			return fmt.Errorf("store client id: %w", err)
		}
	}
	return c.loadShapes()
}

// execArgs runs one internal statement with args. Caller holds db (or owns
// the connection).
func (c *Client) execArgs(sql string, args ...any) error {
	st, _, err := c.conn.Prepare(sql)
	if err != nil {
		return err
	}
	defer st.Close()
	for i, a := range args {
		if err := bindArg(st, i+1, a); err != nil {
			return err
		}
	}
	return st.Exec()
}

// lock acquires the database lock, or fails when ctx is done.
func (c *Client) lock(ctx context.Context) error {
	select {
	case c.db <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.db <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) unlock() { <-c.db }

// lockOpen acquires the database lock for a public method: it fails when
// ctx is done or the client is closed.
func (c *Client) lockOpen(ctx context.Context) error {
	if c.closeCtx.Err() != nil {
		return ErrClosed
	}
	if err := c.lock(ctx); err != nil {
		return err
	}
	if c.conn == nil {
		c.unlock()
		return ErrClosed
	}
	return nil
}

// authorize is the connection's SQLite authorizer. It forwards to
// authHook, which is set only while the client prepares a statement whose
// table accesses it tracks.
func (c *Client) authorize(action sqlite3.AuthorizerActionCode, name3rd, name4th, schema, inner string) sqlite3.AuthorizerReturnCode {
	if h := c.authHook; h != nil {
		return h(action, name3rd, name4th, schema, inner)
	}
	return sqlite3.AUTH_OK
}

// Status returns the connection status.
func (c *Client) Status() Status {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	return c.status
}

// Position returns the replication position persisted in the database:
// the id of the service log and the LSN of the last committed transaction.
// Both are zero for a replica that never synced.
func (c *Client) Position() (logID string, lsn uint64) {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	return c.posLogID, c.status.LSN
}

// ClientID returns the replica's stable random id, sent in Hello.
func (c *Client) ClientID() string {
	return c.clientID // written once in Open
}

// updateStatus applies f to the status and reports the result to
// OnStatus.
func (c *Client) updateStatus(f func(*Status)) {
	c.stMu.Lock()
	f(&c.status)
	s := c.status
	c.stMu.Unlock()
	if c.opts.OnStatus != nil {
		c.opts.OnStatus(s)
	}
}

// Close stops Run (waiting for it to return), stops live queries and
// closes the database. A transaction being applied is rolled back. Close
// is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeCancel()
		c.runWG.Wait()
		c.live.mu.Lock()
		fromWorker := goid() == c.live.workerID
		c.live.mu.Unlock()
		if !fromWorker { // else Close is called from a live-query callback
			<-c.live.done
		}
		c.lock(context.Background())
		defer c.unlock()
		c.closeStmts()
		if err := c.conn.Close(); err != nil {
			c.closeErr = fmt.Errorf("close database: %w", err)
		}
		c.conn = nil
	})
	return c.closeErr
}

// closeStmts finalizes every statement of the connection.
func (c *Client) closeStmts() {
	var all []*sqlite3.Stmt
	for st := range c.conn.Stmts() {
		all = append(all, st)
	}
	for _, st := range all {
		st.Close()
	}
}
