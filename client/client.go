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
// Local writes to synced tables — through Exec or Transaction, or by any
// other SQLite program on the database file — are captured by SQL
// triggers, stamped as local transactions (a local txid and an HLC) and
// queued durably, online or offline. (Sending them to the service comes
// with the write path of the protocol.)
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
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/latticesync/lattice/protocol"
)

// Options configure a Client. The zero value (or a nil *Options) gives a
// client that can only be used locally: Run needs a URL.
type Options struct {
	// URL of the service, e.g. "ws://localhost:5133" or
	// "https://sync.example.com". http and https are mapped to ws and wss.
	// protocol.Path ("/v1/sync") is appended unless the URL has a path.
	// Several URLs separated by commas name replicas of one service (one
	// change log, `lattice serve --log-url`): each connection tries the
	// next, so a replica that is down or shutting down is failed over.
	URL string
	// Token is the JWT sent in Hello. Empty for a service run --insecure.
	Token string
	// TokenFunc, when set, is called on every (re)connect for a fresh token
	// and wins over Token (unless SetToken gave one since the last
	// connection). It is also called when the service refuses a token
	// (then the client reconnects at once with the new one), and a little
	// before the current token's exp (see Run). It should return a cached
	// token while that one is valid. An error fails that connection
	// attempt, which is retried with backoff. Calls come one at a time,
	// from the client's goroutines.
	TokenFunc func(ctx context.Context) (string, error)
	// Logger receives connection and apply events. nil discards them.
	Logger *slog.Logger
	// OnStatus, when set, is called after every change of Status (state,
	// LSN, LastError), from the goroutine running Run, in order. It must
	// not block for long: it delays the apply of incoming transactions.
	OnStatus func(Status)
	// Schema, when set, creates the local tables it describes that do not
	// exist yet, when the database opens, so that an app can query and
	// write them before its first sync (see ParseSchema). The service's
	// definitions replace them on sync.
	Schema []protocol.Relation
	// Now, when set, is the wall clock the client's HLC clock reads to
	// stamp local transactions; nil means time.Now. Tests inject a skewed
	// clock with it. The clock also follows the commit time of every
	// transaction received from the service (see README.md, "Clock skew").
	Now func() time.Time
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
	// An error sent by the service is its *protocol.Error (Code and the
	// service's Message, e.g. unauthorized "token expired"). A planned
	// switch to a refreshed token is not an error and is not recorded.
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
	// trace: log records Debug events (see trace.go).
	trace bool
	path  string

	// schemaNotices: *SchemaChangeError of the Relation being applied,
	// for Status.LastError (migrate.go). Guarded by db.
	schemaNotices []error
	// refetch: shapes were marked unsynced by a schema change
	// (refetchTable); the session ends once that is committed, so that
	// the next one fetches them again. Guarded by db.
	refetch bool

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
	unsubs   []*subState          // unsubscribed, not confirmed by the service; guarded by db
	subMu    sync.Mutex           // lets Shapes read subList without db
	sess     *session             // the current connection, if any
	tx       txState              // the service transaction being applied
	stmts    internalStmts
	// stmtCache holds the client's own statements built at run time
	// (cachedStmt). Guarded by db.
	stmtCache map[string]*sqlite3.Stmt
	// userStmts holds single statements the application executed
	// (Tx.ExecResult), prepared once. Guarded by db.
	userStmts map[string]*userStmt

	stMu     sync.Mutex
	status   Status // guarded by stMu
	posLogID string // guarded by stMu; the persisted log id (status.LSN is the LSN)

	live liveState
	loc  localState // local writes; see local.go

	// net is what NetworkChanged acts on: the current session (dialing or
	// connected) and the wake-up of Run's wait between attempts.
	net struct {
		mu   sync.Mutex
		sess *session
		wake chan struct{}
	}
	tok tokenState // see token.go

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

	// Local writes (local.go).
	setApplying  *sqlite3.Stmt // (0 or 1)
	appTriggers  *sqlite3.Stmt // -> a row if the database has triggers other than the client's
	dataVersion  *sqlite3.Stmt
	unstamped    *sqlite3.Stmt // -> distinct tbl of the unstamped ops
	hasUnstamped *sqlite3.Stmt
	stampOps     *sqlite3.Stmt // (txid)
	insertTxn    *sqlite3.Stmt // (txid, hlc)
	pendingTxns  *sqlite3.Stmt // (limit) -> txid, hlc
	unsentTxns   *sqlite3.Stmt // (after, limit) -> txid, hlc of pending and acked txns
	txnOps       *sqlite3.Stmt // (txid) -> seq, tbl
	txnTables    *sqlite3.Stmt // (txid) -> distinct tbl
	txnState     *sqlite3.Stmt // (txid) -> state
	setTxnState  *sqlite3.Stmt // (state, error, txid)
	liveOps      *sqlite3.Stmt // -> seq, tbl of the ops of pending and acked txns, in order (rebase.go)
}

const schemaSQL = `
CREATE TABLE IF NOT EXISTS _lattice_state(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS _lattice_shapes(
	id TEXT PRIMARY KEY,
	def TEXT NOT NULL, -- JSON of the shape
	synced INTEGER NOT NULL DEFAULT 0
);
-- Shapes unsubscribed while the service had not confirmed it yet: sent
-- again (subscribe, then unsubscribe) on the next connection so that the
-- service moves their rows out.
CREATE TABLE IF NOT EXISTS _lattice_unsubscribed(
	id TEXT PRIMARY KEY,
	def TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _lattice_relations(
	local_name TEXT PRIMARY KEY,
	schema TEXT,
	name TEXT,
	def TEXT -- JSON: columns and primary key
);
-- Local writes (see capture.go, local.go). applying is 1 only inside the
-- client's own transactions applying service changes: the capture
-- triggers do nothing then.
CREATE TABLE IF NOT EXISTS _lattice_flags(applying INTEGER NOT NULL);
INSERT INTO _lattice_flags(applying) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM _lattice_flags);
UPDATE _lattice_flags SET applying = 0 WHERE applying IS NOT 0;
-- One row per captured row change, in order; its values are in the
-- table's _lattice_ops_<table>. txid is NULL until the change is stamped.
CREATE TABLE IF NOT EXISTS _lattice_oplog(
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	tbl TEXT NOT NULL, -- local table name
	txid INTEGER
);
CREATE INDEX IF NOT EXISTS _lattice_oplog_txid ON _lattice_oplog(txid, tbl);
CREATE TABLE IF NOT EXISTS _lattice_txns(
	txid INTEGER PRIMARY KEY,
	hlc INTEGER NOT NULL,
	state TEXT NOT NULL DEFAULT 'pending', -- pending, acked, rejected
	error TEXT
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
	c.net.wake = make(chan struct{}, 1)
	c.tok.wake = make(chan struct{}, 1)
	if opts != nil {
		c.opts = *opts
		c.loc.clock.Now = opts.Now
	}
	c.tok.token = c.opts.Token
	c.log = c.opts.Logger
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.trace = traceEnabled(c.log)
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
	go c.watchExternal()
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
	if !isMemory(c.path) && runtime.GOOS != "js" {
		// Best effort: a VFS without shared memory cannot do WAL; the
		// database then keeps its journal mode. In browsers (idbvfs) WAL
		// is never available and commits are batch-atomic without it.
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
	err := c.prepareInternal()
	if err == nil {
		err = c.loadState()
	}
	if err == nil {
		err = c.createSchema()
	}
	if err == nil {
		err = c.ensureAllCapture()
	}
	if err == nil {
		// Writes other programs made while the client was closed.
		_, _, err = c.stampExternal()
	}
	if err == nil {
		err = c.beforeCommit()
	}
	if err == nil {
		err = conn.Exec("COMMIT")
	}
	if err != nil {
		conn.Exec("ROLLBACK")
		return err
	}
	c.afterCommit()
	select { // nobody listens yet
	case <-c.loc.ready:
	default:
	}
	return nil
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
	c.stmts.setApplying = prep(`UPDATE _lattice_flags SET applying = ?`)
	c.stmts.appTriggers = prep(`SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND lower(substr(name, 1, 9)) <> '_lattice_' LIMIT 1`)
	c.stmts.dataVersion = prep(`PRAGMA data_version`)
	c.stmts.unstamped = prep(`SELECT DISTINCT tbl FROM _lattice_oplog WHERE txid IS NULL`)
	c.stmts.hasUnstamped = prep(`SELECT 1 FROM _lattice_oplog WHERE txid IS NULL LIMIT 1`)
	c.stmts.stampOps = prep(`UPDATE _lattice_oplog SET txid = ? WHERE txid IS NULL`)
	c.stmts.insertTxn = prep(`INSERT INTO _lattice_txns(txid, hlc) VALUES(?, ?)`)
	c.stmts.pendingTxns = prep(`SELECT txid, hlc FROM _lattice_txns WHERE state = 'pending' ORDER BY txid LIMIT ?`)
	c.stmts.unsentTxns = prep(`SELECT txid, hlc FROM _lattice_txns WHERE state IN ('pending', 'acked') AND txid > ? ORDER BY txid LIMIT ?`)
	c.stmts.txnOps = prep(`SELECT seq, tbl FROM _lattice_oplog WHERE txid = ? ORDER BY seq`)
	c.stmts.txnTables = prep(`SELECT DISTINCT tbl FROM _lattice_oplog WHERE txid = ?`)
	c.stmts.txnState = prep(`SELECT state FROM _lattice_txns WHERE txid = ?`)
	c.stmts.setTxnState = prep(`UPDATE _lattice_txns SET state = ?, error = ? WHERE txid = ?`)
	c.stmts.liveOps = prep(`SELECT l.seq, l.tbl FROM _lattice_oplog l JOIN _lattice_txns t ON t.txid = l.txid
		WHERE t.state IN ('pending', 'acked') ORDER BY l.seq`)
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
	ints := map[string]int64{}
	for st.Step() {
		switch k := st.ColumnText(0); k {
		case "last_txid", "hlc":
			ints[k] = st.ColumnInt64(1)
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
	if err := c.loadLocal(ints); err != nil {
		return err
	}
	return c.loadShapes()
}

// execArgs runs one internal statement with args. Caller holds db (or owns
// the connection).
func (c *Client) execArgs(sql string, args ...any) error {
	st, err := c.cachedStmt(sql)
	if err != nil {
		return err
	}
	for i, a := range args {
		if err := bindArg(st, i+1, a); err != nil {
			c.forgetStmt(sql)
			return err
		}
	}
	if err := st.Exec(); err != nil {
		c.forgetStmt(sql)
		return err
	}
	st.ClearBindings()
	return nil
}

// maxCachedStmts bounds the statements cachedStmt keeps.
const maxCachedStmts = 128

// cachedStmt returns a prepared statement for sql (one statement, built
// by the client, not the application's), preparing it once: rebasing and
// dropping local transactions run the same few statements per table
// again and again, and preparing an UPDATE of a table with triggers costs
// far more than running it. SQLite re-prepares a cached statement by
// itself after a schema change; one that failed is forgotten (forgetStmt),
// so a dropped table costs a new prepare. Caller holds db.
func (c *Client) cachedStmt(sql string) (*sqlite3.Stmt, error) {
	if st := c.stmtCache[sql]; st != nil {
		return st, nil
	}
	if len(c.stmtCache) >= maxCachedStmts {
		for k, st := range c.stmtCache {
			st.Close()
			delete(c.stmtCache, k)
		}
	}
	st, _, err := c.conn.PrepareFlags(sql, sqlite3.PREPARE_PERSISTENT)
	if err != nil {
		return nil, err
	}
	if c.stmtCache == nil {
		c.stmtCache = map[string]*sqlite3.Stmt{}
	}
	c.stmtCache[sql] = st
	return st, nil
}

// forgetStmt closes and forgets the cached statement for sql, after it
// failed. Caller holds db.
func (c *Client) forgetStmt(sql string) {
	if st := c.stmtCache[sql]; st != nil {
		st.Close()
		delete(c.stmtCache, sql)
	}
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
		<-c.loc.done
		c.lock(context.Background())
		defer c.unlock()
		if c.loc.clock.Last() != c.loc.savedHLC { // observed HLCs not persisted yet
			if err := c.inTxn(c.beforeCommit); err != nil {
				c.log.Warn("lattice: persist clock", "err", err)
			}
		}
		c.closeStmts()
		c.stmtCache, c.userStmts = nil, nil
		c.loc.tables = nil
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
