package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/ncruces/go-sqlite3"
)

// Local transactions: the capture triggers (capture.go) append every row
// change to a synced table to _lattice_oplog, unstamped (txid NULL). The
// client stamps them, in the SQLite transaction that made them when it
// made it (Exec, Transaction), or right after it sees another program's
// commit (PRAGMA data_version, polled): a new local txid and an HLC, in
// _lattice_txns. See README.md ("Local writes").

// pollInterval is how often the client checks for commits of other
// programs on the database file.
const pollInterval = 50 * time.Millisecond

// localState is the client's local-write bookkeeping. Guarded by db unless
// noted.
type localState struct {
	clock    merge.Clock
	savedHLC merge.HLC // the clock value persisted in _lattice_state

	txid      uint64 // last txid assigned, in the open transaction if any
	savedTxid uint64 // last txid committed

	pending   atomic.Int64 // committed txns in state pending; read without db
	pendDelta int64        // change of pending made by the open transaction

	// unreturned counts the committed local transactions in state pending
	// or acked (not yet returned by the service, nor rejected): the ones
	// rebased over incoming service changes (rebase.go). unretDelta is the
	// change made by the open transaction.
	unreturned int64
	unretDelta int64
	// opGen changes whenever the set of outstanding local transactions (or
	// their ops) may have changed; opIdx is valid for one value of it.
	opGen uint64
	opIdx opIndex

	stamped     bool  // the open transaction stamped local txns
	dataVersion int64 // last PRAGMA data_version handled; -1: check again
	extConsumed bool  // the open transaction consumed a data_version change

	tables map[string]*captureTable // by local name; see captureTableOf

	// ready receives a value (without blocking) after every commit that
	// stamped local transactions: the sender's wake-up. Not guarded.
	ready chan struct{}
	kick  chan struct{} // asks the watcher to poll now; not guarded
	done  chan struct{} // closed when the watcher exits; not guarded
}

// loadLocal reads the local-write state (clock, last txid, pending count)
// at Open. Caller owns the connection, inside the init transaction.
func (c *Client) loadLocal(state map[string]int64) error {
	c.loc.dataVersion = -1
	c.loc.ready = make(chan struct{}, 1)
	c.loc.kick = make(chan struct{}, 1)
	c.loc.done = make(chan struct{})
	st, _, err := c.conn.Prepare(`SELECT coalesce(max(txid), 0), coalesce(max(hlc), 0),
		count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state IN ('pending', 'acked')) FROM _lattice_txns`)
	if err != nil {
		return fmt.Errorf("load local transactions: %w", err)
	}
	st.Step()
	maxTxid, maxHLC, pending := st.ColumnInt64(0), st.ColumnInt64(1), st.ColumnInt64(2)
	c.loc.unreturned = st.ColumnInt64(3)
	err = st.Err()
	st.Close()
	if err != nil {
		return fmt.Errorf("load local transactions: %w", err)
	}
	c.loc.txid = uint64(max(state["last_txid"], maxTxid))
	c.loc.savedTxid = c.loc.txid
	c.loc.savedHLC = merge.HLC(state["hlc"])
	c.loc.clock.Restore(c.loc.savedHLC)
	c.loc.clock.Restore(merge.HLC(maxHLC))
	c.loc.pending.Store(pending)
	return nil
}

// dataVersion returns PRAGMA data_version: it changes when another
// connection commits. Caller holds db.
func (c *Client) dataVersion() (int64, error) {
	st := c.stmts.dataVersion
	st.Step()
	v := st.ColumnInt64(0)
	if err := st.Reset(); err != nil {
		return 0, fmt.Errorf("read data_version: %w", err)
	}
	return v, nil
}

// stamp makes the unstamped ops one local transaction: the next txid and
// an HLC, inside the open SQLite transaction. It returns the (local names
// of the) tables they changed; none if there were no ops. Caller holds db.
func (c *Client) stamp() ([]string, error) {
	st := c.stmts.unstamped
	var tables []string
	for st.Step() {
		tables = append(tables, st.ColumnText(0))
	}
	if err := st.Reset(); err != nil {
		return nil, fmt.Errorf("find unstamped changes: %w", err)
	}
	if len(tables) == 0 {
		return nil, nil
	}
	txid := c.loc.txid + 1
	h := c.loc.clock.Next()
	st = c.stmts.stampOps
	st.BindInt64(1, int64(txid))
	if err := st.Exec(); err != nil {
		return nil, fmt.Errorf("stamp local transaction: %w", err)
	}
	st = c.stmts.insertTxn
	st.BindInt64(1, int64(txid))
	st.BindInt64(2, int64(h))
	if err := st.Exec(); err != nil {
		return nil, fmt.Errorf("stamp local transaction: %w", err)
	}
	if err := c.setState("last_txid", int64(txid)); err != nil {
		return nil, err
	}
	c.loc.txid = txid
	if c.trace {
		c.log.Debug("lattice: trace stamp", "txid", txid, "tables", tables)
	}
	c.loc.pendDelta++
	c.loc.unretDelta++
	c.loc.opGen++
	c.loc.stamped = true
	return tables, nil
}

// stampExternal stamps, inside the open transaction, the ops committed by
// other programs since the last check, if PRAGMA data_version says there
// were commits. It reports whether there were, and the tables stamped.
// Caller holds db.
func (c *Client) stampExternal() (bool, []string, error) {
	v, err := c.dataVersion()
	if err != nil {
		return false, nil, err
	}
	if v == c.loc.dataVersion {
		return false, nil, nil
	}
	c.loc.dataVersion = v
	c.loc.extConsumed = true
	tables, err := c.stamp()
	return true, tables, err
}

// beforeCommit persists, in the open transaction, what must commit with
// it: the clock if it moved. Every transaction of the client calls it
// before COMMIT (then afterCommit, or afterRollback). Caller holds db.
func (c *Client) beforeCommit() error {
	if h := c.loc.clock.Last(); h != c.loc.savedHLC {
		if err := c.setState("hlc", int64(h)); err != nil {
			return err
		}
	}
	return nil
}

// afterCommit makes the committed transaction's local bookkeeping
// current. Caller holds db.
func (c *Client) afterCommit() {
	c.loc.savedHLC = c.loc.clock.Last()
	c.loc.savedTxid = c.loc.txid
	c.loc.pending.Add(c.loc.pendDelta)
	c.loc.pendDelta = 0
	c.loc.unreturned += c.loc.unretDelta
	c.loc.unretDelta = 0
	c.loc.extConsumed = false
	if c.loc.stamped {
		c.loc.stamped = false
		failpoint.Hit("client/after-commit") // a local commit not sent yet
		select {
		case c.loc.ready <- struct{}{}:
		default:
		}
	}
}

// afterRollback forgets the rolled back transaction's local bookkeeping.
// The clock keeps its value (still persisted by the next commit: HLCs
// never repeat). Caller holds db.
func (c *Client) afterRollback() {
	c.loc.txid = c.loc.savedTxid
	c.loc.pendDelta = 0
	c.loc.unretDelta = 0
	c.loc.opGen++
	c.loc.stamped = false
	if c.loc.extConsumed {
		c.loc.extConsumed = false
		c.loc.dataVersion = -1 // the stamp of external ops was undone too
	}
}

// observeHLC records an HLC seen from another origin (a transaction from
// the service), so that every later local transaction gets a greater HLC.
// Caller holds db. The clock is persisted by the next commit of the client
// (the service transaction being applied, when called during one) or at
// Close. A timestamp far ahead of the wall clock is accepted and logged.
func (c *Client) observeHLC(h merge.HLC) {
	if err := c.loc.clock.Observe(h); err != nil {
		c.log.Warn("lattice: clock drift", "err", err)
	}
}

// PendingCount returns the number of local transactions committed and
// stamped but not yet acknowledged by the service (state pending). It does
// not wait for the database.
func (c *Client) PendingCount() int {
	return int(c.loc.pending.Load())
}

// kickWatcher asks the watcher to look for other programs' commits now.
func (c *Client) kickWatcher() {
	select {
	case c.loc.kick <- struct{}{}:
	default:
	}
}

// watchExternal polls PRAGMA data_version every pollInterval (and when
// kicked after an API call) until Close, to stamp the ops of other
// programs' commits and re-run live queries.
func (c *Client) watchExternal() {
	defer close(c.loc.done)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.loc.kick:
		case <-c.closeCtx.Done():
			return
		}
		if err := c.pollExternal(); err != nil {
			if c.closeCtx.Err() != nil {
				return
			}
			c.log.Warn("lattice: stamp external writes", "err", err)
		}
	}
}

// pollExternal handles other programs' commits: their ops (if any) become
// one local transaction, and every live query is re-run (they may have
// written any table). Several external transactions committed between two
// polls become one local transaction.
func (c *Client) pollExternal() error {
	if err := c.lock(c.closeCtx); err != nil {
		return err
	}
	if c.conn == nil {
		c.unlock()
		return ErrClosed
	}
	v, err := c.dataVersion()
	if err != nil || v == c.loc.dataVersion {
		c.unlock()
		return err
	}
	var tables []string
	st := c.stmts.hasUnstamped
	has := st.Step()
	if err := st.Reset(); err != nil {
		c.unlock()
		return fmt.Errorf("find unstamped changes: %w", err)
	}
	if !has {
		c.loc.dataVersion = v
	} else {
		err = c.stmts.begin.Exec()
		if err == nil {
			_, tables, err = c.stampExternal()
		}
		if err == nil {
			err = c.beforeCommit()
		}
		if err == nil {
			err = c.stmts.commit.Exec()
		}
		if err != nil {
			if !c.conn.GetAutocommit() {
				c.stmts.rollback.Exec()
			}
			c.afterRollback()
			c.unlock()
			return err
		}
		c.afterCommit()
	}
	c.unlock()
	c.live.notify(lowerSet(tables), true, true)
	return nil
}

func lowerSet(tables []string) map[string]struct{} {
	m := make(map[string]struct{}, len(tables))
	for _, t := range tables {
		m[strings.ToLower(t)] = struct{}{}
	}
	return m
}

// Tx is a local transaction, open while the function passed to
// Client.Transaction runs. Its methods must be called from that function
// only (not concurrently, not after it returns).
type Tx struct {
	c       *Client
	written map[string]struct{} // lower-case names of the tables written
	schema  bool                // a statement changed the schema
	done    bool
}

// Transaction runs fn in one local SQLite transaction: the statements of
// tx.Exec and tx.Query see each other's effects, and commit together when
// fn returns nil. If fn returns an error (or panics), or a statement's
// failure made SQLite abandon the transaction, it is rolled back and
// nothing is kept or captured. ctx bounds the whole transaction: when it
// ends, the running statement is interrupted and the transaction rolled
// back.
//
// Writes to synced tables are captured (see README.md) and, at commit,
// stamped as one local transaction with the next local txid and an HLC,
// in the same SQLite transaction; they are queued to be sent to the
// service. Live queries reading the written tables re-run after the
// commit.
//
// The client's database lock is held while fn runs: fn must not call the
// Client's own methods (Query, Exec, Transaction...), which would wait for
// it. The client's _lattice_* tables cannot be written, and statements
// cannot control the transaction (BEGIN, COMMIT...).
func (c *Client) Transaction(ctx context.Context, fn func(tx *Tx) error) (err error) {
	if fn == nil {
		return errors.New("transaction: nil function")
	}
	if err := c.lockOpen(ctx); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	old := c.conn.SetInterrupt(ctx)
	tx := &Tx{c: c, written: map[string]struct{}{}}
	committed, external := false, false
	defer func() {
		tx.done = true
		c.conn.SetInterrupt(old) // first: an interrupted connection cannot roll back
		if !committed {
			if !c.conn.GetAutocommit() {
				c.stmts.rollback.Exec()
			}
			c.afterRollback()
		}
		c.unlock()
		if committed {
			c.live.notify(tx.written, tx.schema || external, tx.schema || external)
		}
		c.kickWatcher()
	}()
	if c.tx.noTriggers { // never expected: see restoreTriggers
		if c.restoreTriggers(); c.tx.noTriggers {
			return errors.New("begin transaction: triggers are disabled; writes would not be captured")
		}
	}
	if err := c.stmts.begin.Exec(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	// Ops another program committed since the last check are its own
	// local transaction, stamped before this one.
	external, tables, err := c.stampExternal()
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	tx.addWritten(tables)
	if err := fn(tx); err != nil {
		return err
	}
	if c.conn.GetAutocommit() {
		return errors.New("commit transaction: SQLite rolled it back after an error")
	}
	if tables, err = c.stamp(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	tx.addWritten(tables)
	if err := c.beforeCommit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	if err := c.stmts.commit.Exec(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	committed = true
	c.afterCommit()
	return nil
}

// scratch returns an empty Tx whose authorize records what one statement's
// preparation writes, for absorb.
func (tx *Tx) scratch() *Tx { return &Tx{c: tx.c, written: map[string]struct{}{}} }

// absorb adds what a scratch Tx recorded to tx.
func (tx *Tx) absorb(s *Tx) {
	tx.schema = tx.schema || s.schema
	for t := range s.written {
		tx.written[t] = struct{}{}
	}
}

func (tx *Tx) addWritten(tables []string) {
	for _, t := range tables {
		tx.written[strings.ToLower(t)] = struct{}{}
	}
}

var errTxDone = errors.New("transaction: already finished")

// errNoTxn: no local transaction has the txid.
var errNoTxn = errors.New("no such local transaction")

// authorize is the authorizer of tx's statements: it refuses transaction
// control and writes to the client's tables (except those of the capture
// triggers), and records the tables written and schema changes.
func (tx *Tx) authorize(action sqlite3.AuthorizerActionCode, name3rd, name4th, _, inner string) sqlite3.AuthorizerReturnCode {
	if isInternal(inner) {
		return sqlite3.AUTH_OK // inside a capture trigger
	}
	switch action {
	case sqlite3.AUTH_INSERT, sqlite3.AUTH_UPDATE, sqlite3.AUTH_DELETE:
		if isInternal(name3rd) {
			return sqlite3.AUTH_DENY
		}
		tx.written[strings.ToLower(name3rd)] = struct{}{}
	case sqlite3.AUTH_TRANSACTION:
		return sqlite3.AUTH_DENY
	case sqlite3.AUTH_DROP_TABLE, sqlite3.AUTH_CREATE_INDEX, sqlite3.AUTH_DROP_INDEX,
		sqlite3.AUTH_CREATE_TRIGGER, sqlite3.AUTH_DROP_TRIGGER:
		if isInternal(name3rd) || (action != sqlite3.AUTH_DROP_TABLE && isInternal(name4th)) {
			return sqlite3.AUTH_DENY
		}
		tx.schema = true
	case sqlite3.AUTH_ALTER_TABLE:
		if isInternal(name4th) {
			return sqlite3.AUTH_DENY
		}
		tx.schema = true
	case sqlite3.AUTH_CREATE_VIEW:
		if isInternal(name3rd) { // views name the "inner" of their reads
			return sqlite3.AUTH_DENY
		}
		tx.schema = true
	case sqlite3.AUTH_CREATE_TABLE, sqlite3.AUTH_DROP_VIEW,
		sqlite3.AUTH_CREATE_VTABLE, sqlite3.AUTH_DROP_VTABLE:
		tx.schema = true
	}
	return sqlite3.AUTH_OK
}

// Exec runs SQL statements in the transaction. args bind to the
// parameters as in Client.Query, and require a single statement. A failing
// statement's effects are undone; the transaction stays open unless
// SQLite abandoned it (then the commit fails).
func (tx *Tx) Exec(sql string, args ...any) error {
	_, err := tx.ExecResult(sql, args...)
	return err
}

// Result tells what the statements of an ExecResult call did.
type Result struct {
	// Changes is the number of rows inserted, updated or deleted by the
	// statements themselves (not by triggers).
	Changes int64
	// LastInsertID is the rowid of the most recent successful INSERT on
	// the connection (0 if there was none).
	LastInsertID int64
}

// ExecResult is Exec, also telling how many rows the statements changed
// and the last inserted rowid.
func (tx *Tx) ExecResult(sql string, args ...any) (Result, error) {
	var res Result
	if tx.done {
		return res, errTxDone
	}
	c := tx.c
	if us := c.userStmts[sql]; us != nil {
		// A single statement run before: prepared (and authorized) once;
		// what the authorizer recorded of it counts again.
		st := us.st
		tx.addWritten(us.written)
		if err := bindArgs(st, args); err != nil {
			st.ClearBindings()
			return res, fmt.Errorf("bind exec arguments: %w", err)
		}
		readOnly := st.ReadOnly()
		// SQLite re-prepares the statement by itself after a schema change
		// (a trigger added since may write other tables): the authorizer
		// sees that preparation too, and what it records is kept with the
		// statement.
		again := tx.scratch()
		c.authHook = again.authorize
		err := st.Exec()
		c.authHook = nil
		tx.absorb(again)
		for t := range again.written {
			if !slices.Contains(us.written, t) {
				us.written = append(us.written, t)
			}
		}
		st.ClearBindings()
		if err != nil {
			st.Close()
			delete(c.userStmts, sql)
			return res, fmt.Errorf("exec statement: %w", err)
		}
		if !readOnly {
			res.Changes = c.conn.Changes()
		}
		res.LastInsertID = c.conn.LastInsertRowID()
		return res, nil
	}
	whole := sql
	for n := 0; ; n++ {
		// Each statement is authorized on its own, so that what the
		// authorizer records of the first can be kept with it.
		first := tx.scratch()
		c.authHook = first.authorize
		st, tail, err := c.conn.PrepareFlags(sql, sqlite3.PREPARE_PERSISTENT)
		c.authHook = nil
		tx.absorb(first)
		if err != nil {
			return res, fmt.Errorf("prepare statement: %w", err)
		}
		if st == nil {
			if n == 0 && len(args) > 0 {
				return res, errors.New("exec statement: arguments without a statement")
			}
			res.LastInsertID = c.conn.LastInsertRowID()
			return res, nil
		}
		if n == 0 && len(args) > 0 {
			if !onlySpace(tail) {
				st.Close()
				return res, errors.New("exec statement: arguments need a single statement")
			}
			if err := bindArgs(st, args); err != nil {
				st.Close()
				return res, fmt.Errorf("bind exec arguments: %w", err)
			}
		}
		readOnly := st.ReadOnly()
		err = st.Exec()
		// Keep a single statement prepared: applications run the same
		// few statements again and again, and preparing an UPDATE of a
		// synced table (compiling its capture triggers) costs more than
		// running it.
		// (Not schema changes: rare, and they must be seen as such.)
		if n == 0 && onlySpace(tail) && err == nil && !first.schema {
			st.ClearBindings()
			c.keepUserStmt(whole, &userStmt{st: st, written: slices.Collect(maps.Keys(first.written))})
		} else {
			st.Close()
		}
		if err != nil {
			return res, fmt.Errorf("exec statement: %w", err)
		}
		if !readOnly {
			res.Changes += c.conn.Changes()
		}
		sql = tail
	}
}

// maxUserStmts bounds the application statements kept prepared.
const maxUserStmts = 64

// userStmt is an application statement kept prepared, with the tables
// the authorizer saw it write.
type userStmt struct {
	st      *sqlite3.Stmt
	written []string
}

// keepUserStmt keeps us for the next ExecResult of the same SQL. Caller
// holds db.
func (c *Client) keepUserStmt(sql string, us *userStmt) {
	if len(c.userStmts) >= maxUserStmts {
		for k, old := range c.userStmts {
			old.st.Close()
			delete(c.userStmts, k)
		}
	}
	if c.userStmts == nil {
		c.userStmts = map[string]*userStmt{}
	}
	c.userStmts[sql] = us
}

// Query runs one read-only statement in the transaction (it sees the
// transaction's writes). args bind as in Client.Query.
func (tx *Tx) Query(sql string, args ...any) (*Rows, error) {
	if tx.done {
		return nil, errTxDone
	}
	st, err := tx.c.prepareQuery(sql, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := bindArgs(st, args); err != nil {
		return nil, fmt.Errorf("bind query arguments: %w", err)
	}
	rows, err := readRows(st)
	if err != nil {
		return nil, fmt.Errorf("run query: %w", err)
	}
	return rows, nil
}

// LocalTxn is a local transaction: the changes one local commit made to
// synced tables (through the client, or by another program on the file),
// stamped with the client's next txid and an HLC. Its origin is the
// client's ClientID.
type LocalTxn struct {
	// ID is the local txid: increasing from 1, never reused (persisted).
	ID uint64
	// HLC orders the transaction among all origins; strictly increasing
	// across the client's local transactions, also across restarts, and
	// greater than every HLC passed to observeHLC before it was stamped.
	HLC merge.HLC
	// Changes are the captured row changes, in the order they were made.
	// A row changed several times appears several times.
	Changes []LocalChange
}

// LocalChange is one captured row change.
type LocalChange struct {
	Table        string // local table name
	Schema, Name string // Postgres schema and table
	// Op is 'I' (insert), 'U' (update) or 'D' (delete). An UPSERT or
	// INSERT OR REPLACE that replaced a row by its key is an 'I' (or 'U'
	// for ON CONFLICT DO UPDATE).
	Op byte
	// Key holds the primary key values, in primary key order (the
	// Relation's PK order): the new row's for I and U, the deleted row's
	// for D.
	Key []coltype.Value
	// Columns are indexes of the columns written, in the Relation's column
	// order (as stored in _lattice_relations), ascending: every column for
	// I, the columns whose value changed (kind included) for U (possibly
	// none: the statement set them to their value), none for D. Columns
	// the service no longer describes are left out.
	Columns []int
	// Values are the new values of Columns, exactly as SQLite stored them.
	Values []coltype.Value
	// Version is the version of the row the change saw, as held when it
	// was made (see README.md, "Row versions"): >= 1 a version from the
	// service, 0 none (an insert, or a row the client inserted itself and
	// the service has not returned yet), -1 unknown (the service sent 0,
	// or the change was captured before versions were kept).
	Version int64
	// jsonOld holds, for an update ('U'), the old value of each column of
	// Columns merged per key path whose old value was captured (NULL or
	// text): the write is the per-path diff of it and the new value.
	jsonOld map[int]coltype.Value
}

// pendingTxns returns up to limit (all if limit <= 0) local transactions
// in state pending, in txid order, with their changes. Caller holds db.
func (c *Client) pendingTxns(limit int) ([]LocalTxn, error) {
	st := c.stmts.pendingTxns
	if limit <= 0 {
		limit = -1
	}
	st.BindInt64(1, int64(limit))
	return c.loadTxns(st)
}

// unsentTxns returns up to limit local transactions after txid after, in
// state pending or acked, in txid order, with their changes: what a
// session sends. Acked ones are sent again: their own change may never
// come back (the service returned it as a transaction of its own, made up
// at the client's position, that a crash of the client undid), and the
// service answers a transaction applied before with an Ack and its rows,
// which completes it. Caller holds db.
func (c *Client) unsentTxns(after uint64, limit int) ([]LocalTxn, error) {
	st := c.stmts.unsentTxns
	st.BindInt64(1, int64(after))
	st.BindInt64(2, int64(limit))
	return c.loadTxns(st)
}

// loadTxns reads the (txid, hlc) rows of st, then their changes.
func (c *Client) loadTxns(st *sqlite3.Stmt) ([]LocalTxn, error) {
	var txns []LocalTxn
	for st.Step() {
		txns = append(txns, LocalTxn{ID: uint64(st.ColumnInt64(0)), HLC: merge.HLC(st.ColumnInt64(1))})
	}
	if err := st.Reset(); err != nil {
		return nil, fmt.Errorf("load pending transactions: %w", err)
	}
	for i := range txns {
		ch, err := c.txnChanges(txns[i].ID)
		if err != nil {
			return nil, err
		}
		txns[i].Changes = ch
	}
	return txns, nil
}

// txnChanges reads the captured changes of local transaction txid. Caller
// holds db.
func (c *Client) txnChanges(txid uint64) ([]LocalChange, error) {
	type opRef struct {
		seq int64
		tbl string
	}
	var refs []opRef
	st := c.stmts.txnOps
	st.BindInt64(1, int64(txid))
	for st.Step() {
		refs = append(refs, opRef{st.ColumnInt64(0), st.ColumnText(1)})
	}
	if err := st.Reset(); err != nil {
		return nil, fmt.Errorf("load changes of transaction %d: %w", txid, err)
	}
	changes := make([]LocalChange, 0, len(refs))
	for _, r := range refs {
		ct, err := c.captureTableOf(r.tbl)
		if err != nil {
			return nil, fmt.Errorf("load changes of transaction %d: %w", txid, err)
		}
		ch, err := ct.readOp(r.seq)
		if err != nil {
			return nil, fmt.Errorf("load changes of transaction %d: %w", txid, err)
		}
		changes = append(changes, ch)
	}
	return changes, nil
}

// readOp reads one captured row change from the ops table.
func (ct *captureTable) readOp(seq int64) (LocalChange, error) {
	st := ct.read
	st.BindInt64(1, seq)
	defer st.Reset()
	if !st.Step() {
		if err := st.Err(); err != nil {
			return LocalChange{}, fmt.Errorf("read op %d of %s: %w", seq, ct.local, err)
		}
		return LocalChange{}, fmt.Errorf("read op %d of %s: missing", seq, ct.local)
	}
	ch := LocalChange{Table: ct.local, Schema: ct.schema, Name: ct.name}
	op := st.ColumnText(0)
	if len(op) != 1 || !strings.Contains("IUD", op) {
		return LocalChange{}, fmt.Errorf("read op %d of %s: bad op %q", seq, ct.local, op)
	}
	ch.Op = op[0]
	ch.Version = -1 // NULL: captured before versions were
	if st.ColumnType(2) != sqlite3.NULL {
		ch.Version = st.ColumnInt64(2)
	}
	const first = 3 // data columns start after op, changed, v
	ch.Key = make([]coltype.Value, len(ct.keyData))
	for i, p := range ct.keyData {
		ch.Key[i] = columnValue(st, first+p)
	}
	if ch.Op == 'D' {
		return ch, nil
	}
	// changed: the columns written (see maxMaskBits).
	var changed func(int) bool
	switch st.ColumnType(1) {
	case sqlite3.INTEGER:
		mask := uint64(st.ColumnInt64(1))
		changed = func(k int) bool { return k < 64 && mask&(1<<k) != 0 }
	case sqlite3.TEXT:
		s := st.ColumnText(1)
		changed = func(k int) bool { return k < len(s) && s[k] == '1' }
	default:
		return LocalChange{}, fmt.Errorf("read op %d of %s: bad changed columns", seq, ct.local)
	}
	type cv struct {
		col int
		v   coltype.Value
	}
	var vals []cv
	for k, rel := range ct.dataRel {
		if rel < 0 || !changed(k) {
			continue
		}
		vals = append(vals, cv{rel, columnValue(st, first+k)})
	}
	slices.SortFunc(vals, func(a, b cv) int { return a.col - b.col })
	ch.Columns = make([]int, len(vals))
	ch.Values = make([]coltype.Value, len(vals))
	for i, x := range vals {
		ch.Columns[i], ch.Values[i] = x.col, x.v
	}
	if ch.Op == 'U' {
		oldAt := first + len(ct.dataRel)
		for k, rel := range ct.oldRel {
			if rel < 0 || !slices.Contains(ch.Columns, rel) || st.ColumnType(oldAt+k) != sqlite3.TEXT {
				continue
			}
			enc := st.ColumnRawText(oldAt + k)
			var v coltype.Value
			switch {
			case len(enc) == 1 && enc[0] == 'n':
			case len(enc) >= 1 && enc[0] == 't':
				v = coltype.Value{Kind: coltype.Text, B: slices.Clone(enc[1:])}
			default:
				continue
			}
			if ch.jsonOld == nil {
				ch.jsonOld = map[int]coltype.Value{}
			}
			ch.jsonOld[rel] = v
		}
	}
	return ch, st.Err()
}

// columnValue reads a column as a coltype.Value of its storage class.
func columnValue(st *sqlite3.Stmt, i int) coltype.Value {
	switch st.ColumnType(i) {
	case sqlite3.INTEGER:
		return coltype.Value{Kind: coltype.Integer, I: st.ColumnInt64(i)}
	case sqlite3.FLOAT:
		return coltype.Value{Kind: coltype.Real, F: st.ColumnFloat(i)}
	case sqlite3.TEXT:
		return coltype.Value{Kind: coltype.Text, B: slices.Clone(st.ColumnRawText(i))}
	case sqlite3.BLOB:
		b := st.ColumnRawBlob(i)
		return coltype.Value{Kind: coltype.Blob, B: append(make([]byte, 0, len(b)), b...)}
	}
	return coltype.Value{Kind: coltype.Null}
}

// inTxn runs f in the open SQLite transaction, or else in a transaction of
// its own. Caller holds db.
func (c *Client) inTxn(f func() error) error {
	if !c.conn.GetAutocommit() {
		return f()
	}
	err := c.stmts.begin.Exec()
	if err == nil {
		err = f()
		if err == nil {
			err = c.beforeCommit()
		}
		if err == nil {
			err = c.stmts.commit.Exec()
		}
		if err != nil && !c.conn.GetAutocommit() {
			c.stmts.rollback.Exec()
		}
	}
	if err != nil {
		c.afterRollback()
		return err
	}
	c.afterCommit()
	return nil
}

// txnState returns the state of local transaction txid ("" if unknown).
func (c *Client) txnState(txid uint64) (string, error) {
	st := c.stmts.txnState
	st.BindInt64(1, int64(txid))
	var s string
	if st.Step() {
		s = st.ColumnText(0)
	}
	return s, st.Reset()
}

// ackTxn marks local transaction id acknowledged by the service (state
// acked): it is no longer returned by pendingTxns, but its ops are kept
// until its own change comes back from the service (then dropTxn). Acking
// an acked transaction does nothing. Caller holds db; inside an open
// transaction (e.g. a service transaction being applied) the change
// commits with it.
func (c *Client) ackTxn(id uint64) error {
	return c.setTxnState(id, "acked", "")
}

// rejectTxn marks local transaction id rejected by the service, with its
// message (state rejected, error msg). Its ops are kept (for the app to
// inspect) until dropTxn. Caller holds db, as for ackTxn.
func (c *Client) rejectTxn(id uint64, msg string) error {
	return c.setTxnState(id, "rejected", msg)
}

func (c *Client) setTxnState(id uint64, state, msg string) error {
	return c.inTxn(func() error {
		old, err := c.txnState(id)
		if err != nil {
			return fmt.Errorf("mark transaction %d %s: %w", id, state, err)
		}
		if old == "" {
			return fmt.Errorf("mark transaction %d %s: %w", id, state, errNoTxn)
		}
		if old == state {
			return nil
		}
		if c.trace {
			c.log.Debug("lattice: trace txn state", "txid", id, "from", old, "to", state)
		}
		st := c.stmts.setTxnState
		st.BindText(1, state)
		if msg == "" {
			st.BindNull(2)
		} else {
			st.BindText(2, msg)
		}
		st.BindInt64(3, int64(id))
		if err := st.Exec(); err != nil {
			return fmt.Errorf("mark transaction %d %s: %w", id, state, err)
		}
		if old == "pending" {
			c.loc.pendDelta--
		}
		if (old == "pending" || old == "acked") && state == "rejected" {
			c.loc.unretDelta--
			c.loc.opGen++
		}
		return nil
	})
}

// dropAckedTxns drops every local transaction the service acknowledged.
// Caller holds db, inside the transaction applying a re-sync snapshot.
func (c *Client) dropAckedTxns() error {
	st, _, err := c.conn.Prepare(`SELECT txid FROM _lattice_txns WHERE state = 'acked'`)
	if err != nil {
		return fmt.Errorf("list acknowledged transactions: %w", err)
	}
	var ids []uint64
	for st.Step() {
		ids = append(ids, uint64(st.ColumnInt64(0)))
	}
	err = st.Close()
	if err != nil {
		return fmt.Errorf("list acknowledged transactions: %w", err)
	}
	for _, id := range ids {
		if err := c.dropTxn(id); err != nil {
			return err
		}
	}
	return nil
}

// dropTxn deletes local transaction id and its ops (once its change came
// back from the service, or was given up). Dropping an unknown
// transaction does nothing. Caller holds db, as for ackTxn.
func (c *Client) dropTxn(id uint64) error {
	return c.inTxn(func() error {
		old, err := c.txnState(id)
		if err != nil {
			return fmt.Errorf("drop transaction %d: %w", id, err)
		}
		st := c.stmts.txnTables
		st.BindInt64(1, int64(id))
		var tables []string
		for st.Step() {
			tables = append(tables, st.ColumnText(0))
		}
		if err := st.Reset(); err != nil {
			return fmt.Errorf("drop transaction %d: %w", id, err)
		}
		for _, t := range tables {
			ops := quoteIdent(opsTable(t))
			if err := c.execArgs("DELETE FROM "+ops+" WHERE seq IN (SELECT seq FROM _lattice_oplog WHERE txid = ? AND tbl = ?)",
				int64(id), t); err != nil {
				return fmt.Errorf("drop transaction %d: %w", id, err)
			}
		}
		for _, sql := range []string{`DELETE FROM _lattice_oplog WHERE txid = ?`, `DELETE FROM _lattice_txns WHERE txid = ?`} {
			if err := c.execArgs(sql, int64(id)); err != nil {
				return fmt.Errorf("drop transaction %d: %w", id, err)
			}
		}
		if c.trace {
			c.log.Debug("lattice: trace drop", "txid", id, "state", old)
		}
		if old == "pending" {
			c.loc.pendDelta--
		}
		if old == "pending" || old == "acked" {
			c.loc.unretDelta--
		}
		c.loc.opGen++
		return nil
	})
}
