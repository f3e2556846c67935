package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/ncruces/go-sqlite3"
)

// relation is a table announced by a Relation message on the current
// connection (RelIDs are per connection), with its statements.
type relation struct {
	id     uint32
	local  string // local table name
	key    string // lower-case local name, for live-query invalidation
	ncols  int
	npk    int
	pk     []int         // column index of each key column, in key order
	upsert *sqlite3.Stmt // all columns, in Relation order
	insert *sqlite3.Stmt // as upsert, without ON CONFLICT (cheaper; see handleTxn)
	del    *sqlite3.Stmt // primary key columns, in key order
	clear  *sqlite3.Stmt // DELETE FROM t
	// The row versions (see capture.go): vSet upserts an entry (key
	// columns in key order, then the version or NULL), vDel deletes one
	// (key), vClear all.
	vSet, vDel, vClear *sqlite3.Stmt
	// touched is the txState.seq of the last transaction that changed the
	// table, so that each table is recorded once per transaction.
	touched uint64
}

func (r *relation) close() {
	r.upsert.Close()
	r.insert.Close()
	r.del.Close()
	r.clear.Close()
	r.vSet.Close()
	r.vDel.Close()
	r.vClear.Close()
}

// txState is the service transaction being applied. Guarded by db, which
// is held from its first chunk to its last.
type txState struct {
	open  bool
	lsn   uint64
	reset bool
	snap  bool // a snapshot: it answers the oldest pending non-resume Subscribe
	// snapRows counts the rows of the snapshot applied so far.
	snapRows int
	// origin and clientTxn name the client write the service applied in
	// this transaction (our own when origin is our ClientID).
	origin    string
	clientTxn uint64
	seq       uint64
	tables    []string // keys of the tables it changed
	schema    bool     // it created or altered tables (listed in tables)
	// applying: _lattice_flags.applying is 1 in it (see setApplying).
	applying bool
	// noTriggers: trigger execution is disabled on the connection for
	// this transaction (see disableTriggers).
	noTriggers bool
	// rebase: local transactions were not yet returned when it began, so
	// the rows it changes are recorded for rebasing (rebase.go).
	rebase bool
	rows   map[string]struct{} // rowKey of each row changed, when rebase

	// held: the last service transaction is applied but its SQLite
	// transaction is left open (and db held), to commit together with the
	// next ones already received (group commit, see commitTxn). open is
	// false then. The position of the group's last transaction is already
	// in c.logID and c.lsn; committedLogID and committedLSN are the
	// persisted ones, restored if the group rolls back.
	held           bool
	heldSince      time.Time
	heldN          int
	committedLogID string
	committedLSN   uint64
	heldSynced     []*subState
	// savepoint: the open transaction began inside a held group, after
	// SAVEPOINT lattice_txn, so that its failure keeps the group's
	// completed transactions (see abortTxn); savePend and saveUnret are the
	// local bookkeeping deltas at the savepoint.
	savepoint           bool
	savePend, saveUnret int64
	resets              map[string]struct{} // local names of the tables reset, when rebase
}

// localName returns the local table name of a Postgres table: the table
// name for schema public, "<schema>.<table>" otherwise.
func localName(schema, table string) string {
	if schema == "public" || schema == "" {
		return table
	}
	return schema + "." + table
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// relationDef is the JSON stored in _lattice_relations.def.
type relationDef struct {
	Columns []columnDef `json:"columns"`
	PK      []string    `json:"pk"`
}

type columnDef struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // Postgres spelling
	Base    uint8  `json:"base"`
	Array   bool   `json:"array,omitempty"`
	NotNull bool   `json:"not_null,omitempty"`
	Decl    string `json:"decl"`              // SQLite declared type
	Default string `json:"default,omitempty"` // SQLite default expression
	ID      uint32 `json:"id,omitempty"`      // Relation.ColumnIDs (attnum), 0 if unknown
	// JSONMerge: the service merges the column per key path (Relation
	// JSONMerge, protocol version 3); its updates are captured with the
	// old value and sent as per-path changes (capture.go, push.go).
	JSONMerge bool `json:"json_merge,omitempty"`
}

// handleRelation creates or extends the local table of m and prepares its
// statements. Caller holds db. Inside a service transaction the DDL is part
// of it; otherwise it runs in a transaction of its own.
func (c *Client) handleRelation(s *session, m *protocol.Relation) (err error) {
	if len(m.PK) == 0 {
		return fmt.Errorf("apply relation %s.%s: no primary key", m.Schema, m.Table)
	}
	local := localName(m.Schema, m.Table)
	if !c.tx.open {
		if err := c.stmts.begin.Exec(); err != nil {
			return fmt.Errorf("begin relation transaction: %w", err)
		}
		defer func() {
			if err == nil {
				if err = c.stmts.commit.Exec(); err != nil {
					err = fmt.Errorf("commit relation %s: %w", local, err)
				}
			}
			if err != nil {
				c.stmts.rollback.Exec()
			}
		}()
	}
	changed, err := c.ensureTable(local, m)
	if err != nil {
		return err
	}
	r, err := c.prepareRelation(local, m)
	if err != nil {
		return err
	}
	if old := s.rels[m.RelID]; old != nil {
		old.close()
	}
	s.rels[m.RelID] = r
	for _, e := range c.schemaNotices {
		s.post = append(s.post, func(st *Status) { st.LastError = e })
	}
	c.schemaNotices = nil
	if changed {
		if c.tx.open {
			c.tx.tables = append(c.tx.tables, r.key)
			c.tx.schema = true
		} else {
			s.notifyTables[r.key] = struct{}{}
			s.notifySchema = true
		}
	}
	return nil
}

// ensureTable creates the local table, or adds the columns it lacks. It
// reports whether the schema changed.
func (c *Client) ensureTable(local string, m *protocol.Relation) (bool, error) {
	existing := map[string]bool{}
	var localPK []string
	st, _, err := c.conn.Prepare(`SELECT name, pk FROM pragma_table_info(?) ORDER BY pk`)
	if err != nil {
		return false, fmt.Errorf("inspect table %s: %w", local, err)
	}
	st.BindText(1, local)
	for st.Step() {
		name := st.ColumnText(0)
		existing[strings.ToLower(name)] = true
		if st.ColumnInt(1) > 0 {
			localPK = append(localPK, name)
		}
	}
	err = st.Err()
	st.Close()
	if err != nil {
		return false, fmt.Errorf("inspect table %s: %w", local, err)
	}

	def := relationDef{}
	for i, col := range m.Columns {
		cd := columnDef{
			Name: col.Name, Type: col.Type.Name, Base: uint8(col.Type.Base),
			Array: col.Type.Array, NotNull: col.NotNull, Decl: col.Type.SQLiteDecl(),
			Default: col.Default, JSONMerge: col.JSONMerge,
		}
		if i < len(m.ColumnIDs) {
			cd.ID = m.ColumnIDs[i]
		}
		def.Columns = append(def.Columns, cd)
	}
	for _, k := range m.PK {
		def.PK = append(def.PK, m.Columns[k].Name)
	}

	changed := false
	if len(existing) == 0 {
		// Versions of an earlier table of that name (dropped locally)
		// are not those of the rows to come.
		if err := c.conn.Exec("DROP TABLE IF EXISTS " + quoteIdent(versionTable(local))); err != nil {
			return false, fmt.Errorf("drop versions of %s: %w", local, err)
		}
		var b strings.Builder
		b.WriteString("CREATE TABLE IF NOT EXISTS ")
		b.WriteString(quoteIdent(local))
		b.WriteString(" (")
		for i, col := range def.Columns {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(col.Name))
			if col.Decl != "" {
				b.WriteString(" " + col.Decl)
			}
			if col.NotNull {
				b.WriteString(" NOT NULL")
			}
			if col.Default != "" {
				b.WriteString(" DEFAULT (" + col.Default + ")")
			}
		}
		b.WriteString(", PRIMARY KEY (")
		for i, k := range def.PK {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quoteIdent(k))
		}
		b.WriteString("))")
		if err := c.conn.Exec(b.String()); err != nil {
			return false, fmt.Errorf("create table %s: %w", local, err)
		}
		changed = true
	} else {
		// A schema change upstream (migrate.go). A changed primary key
		// (which the service refuses) is only logged: the table keeps its key.
		changed, err = c.migrateTable(local, &def, m, existing)
		if err != nil {
			return false, err
		}
		if !equalFoldSlices(localPK, def.PK) {
			c.log.Warn("lattice: primary key of local table differs from the service's", "table", local, "local", localPK, "service", def.PK)
		}
	}
	js, _ := json.Marshal(def)
	if err := c.execArgs(`INSERT INTO _lattice_relations(local_name, schema, name, def) VALUES(?, ?, ?, ?)
		ON CONFLICT(local_name) DO UPDATE SET schema = excluded.schema, name = excluded.name, def = excluded.def`,
		local, m.Schema, m.Table, string(js)); err != nil {
		return false, fmt.Errorf("store relation %s: %w", local, err)
	}
	// Capture local writes to the table (ops table and triggers, kept in
	// step with its columns).
	if err := c.ensureCapture(local, &def); err != nil {
		return false, err
	}
	return changed, nil
}

func equalFoldSlices(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// prepareRelation prepares the upsert, delete and clear statements of a
// relation.
func (c *Client) prepareRelation(local string, m *protocol.Relation) (*relation, error) {
	q := quoteIdent(local)
	isPK := make([]bool, len(m.Columns))
	var pk []string
	for _, k := range m.PK {
		isPK[k] = true
		pk = append(pk, quoteIdent(m.Columns[k].Name))
	}

	var b strings.Builder
	b.WriteString("INSERT INTO " + q + " (")
	for i, col := range m.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(col.Name))
	}
	b.WriteString(") VALUES (")
	for i := range m.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?")
	}
	b.WriteString(")")
	insertSQL := b.String()
	b.WriteString(" ON CONFLICT (" + strings.Join(pk, ", ") + ") DO ")
	var set []string
	for i, col := range m.Columns {
		if !isPK[i] {
			n := quoteIdent(col.Name)
			set = append(set, n+" = excluded."+n)
		}
	}
	if len(set) == 0 {
		b.WriteString("NOTHING")
	} else {
		b.WriteString("UPDATE SET " + strings.Join(set, ", "))
	}
	upsertSQL := b.String()

	var where []string
	for _, k := range pk {
		where = append(where, k+" = ?")
	}
	delSQL := "DELETE FROM " + q + " WHERE " + strings.Join(where, " AND ")
	clearSQL := "DELETE FROM " + q

	var pkNames []string
	for _, k := range m.PK {
		pkNames = append(pkNames, m.Columns[k].Name)
	}
	vt := quoteIdent(versionTable(local))
	vc := quoteIdent(versionCol(pkNames))
	vSetSQL := "INSERT INTO " + vt + " (" + strings.Join(pk, ", ") + ", " + vc + ") VALUES (" +
		strings.Repeat("?, ", len(pk)) + "?) ON CONFLICT (" + strings.Join(pk, ", ") + ") DO UPDATE SET " + vc + " = excluded." + vc
	vDelSQL := "DELETE FROM " + vt + " WHERE " + strings.Join(where, " AND ")
	vClearSQL := "DELETE FROM " + vt

	r := &relation{id: m.RelID, local: local, key: strings.ToLower(local), ncols: len(m.Columns), npk: len(m.PK), pk: append([]int(nil), m.PK...)}
	var err error
	for _, p := range []struct {
		st  **sqlite3.Stmt
		sql string
	}{{&r.upsert, upsertSQL}, {&r.insert, insertSQL}, {&r.del, delSQL}, {&r.clear, clearSQL},
		{&r.vSet, vSetSQL}, {&r.vDel, vDelSQL}, {&r.vClear, vClearSQL}} {
		*p.st, _, err = c.conn.PrepareFlags(p.sql, sqlite3.PREPARE_PERSISTENT)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("prepare statements of %s: %w", local, err)
		}
	}
	return r, nil
}

// bindValue binds one replicated value. Text is bound without a Go copy
// (SQLite copies it into its own memory); empty Text and Blob values are
// bound as empty, not NULL.
func bindValue(st *sqlite3.Stmt, i int, v *coltype.Value) error {
	switch v.Kind {
	case coltype.Null:
		return st.BindNull(i)
	case coltype.Integer:
		return st.BindInt64(i, v.I)
	case coltype.Real:
		return st.BindFloat(i, v.F)
	case coltype.Text:
		return st.BindText(i, unsafe.String(unsafe.SliceData(v.B), len(v.B)))
	case coltype.Blob:
		if len(v.B) == 0 {
			return st.BindZeroBlob(i, 0)
		}
		return st.BindBlob(i, v.B)
	}
	return fmt.Errorf("unknown value kind %d", v.Kind)
}

// handleTxn applies one chunk of a service transaction. Caller holds db;
// on return with c.tx.open still set, the lock stays held for the next
// chunk.
func (c *Client) handleTxn(s *session, m *protocol.Txn) error {
	if m.Flags&protocol.FlagFirst != 0 {
		if c.tx.open {
			return fmt.Errorf("apply txn %d: first chunk inside transaction %d", m.LSN, c.tx.lsn)
		}
		if !c.tx.held {
			if err := c.stmts.begin.Exec(); err != nil {
				return fmt.Errorf("begin transaction: %w", err)
			}
		} else {
			if err := c.execArgs("SAVEPOINT lattice_txn"); err != nil {
				return fmt.Errorf("begin transaction: %w", err)
			}
			c.tx.savepoint = true
			c.tx.savePend, c.tx.saveUnret = c.loc.pendDelta, c.loc.unretDelta
		}
		c.tx.open = true
		c.tx.applying = false
		if m.Flags&protocol.FlagSnapshot != 0 {
			if err := c.disableTriggers(); err != nil {
				return fmt.Errorf("begin transaction: %w", err)
			}
		}
		if m.CommitTime > 0 {
			// The commit time is the service side's clock: observing it
			// keeps a client whose clock is behind from stamping its next
			// writes before the changes it has seen (which would lose to
			// them). Persisted with this transaction.
			c.observeHLC(merge.MakeHLC(m.CommitTime/1000, 0))
		}
		c.tx.lsn = m.LSN
		c.tx.reset = m.Flags&protocol.FlagReset != 0
		c.tx.snap = m.Flags&protocol.FlagSnapshot != 0
		c.tx.snapRows = 0
		c.tx.origin, c.tx.clientTxn = m.Origin, m.ClientTxnID
		c.tx.seq++
		c.tx.tables = c.tx.tables[:0]
		c.tx.schema = false
		c.beginRebase()
		if c.trace {
			c.log.Debug("lattice: trace txn", "lsn", m.LSN, "origin", m.Origin, "client_txn", m.ClientTxnID,
				"snapshot", c.tx.snap, "reset", c.tx.reset, "held", c.tx.held, "rebase", c.tx.rebase)
		}
		if c.tx.reset && len(m.Reset) > 0 {
			if err := c.setApplying(); err != nil {
				return err
			}
			for _, id := range m.Reset {
				r := s.rels[id]
				if r == nil {
					return fmt.Errorf("apply txn %d: reset of unknown relation %d", m.LSN, id)
				}
				if err := r.clear.Exec(); err != nil {
					return fmt.Errorf("reset table %s: %w", r.local, err)
				}
				if err := r.vClear.Exec(); err != nil {
					return fmt.Errorf("reset versions of %s: %w", r.local, err)
				}
				c.touch(r)
				if c.tx.rebase {
					c.tx.resets[r.local] = struct{}{}
				}
			}
		}
	} else if !c.tx.open {
		return fmt.Errorf("apply txn %d: chunk without a first chunk", m.LSN)
	} else if m.LSN != c.tx.lsn {
		return fmt.Errorf("apply txn %d: chunk inside transaction %d", m.LSN, c.tx.lsn)
	}

	if len(m.Changes) > 0 {
		if err := c.setApplying(); err != nil {
			return err
		}
	}
	var r *relation
	for i := range m.Changes {
		ch := &m.Changes[i]
		if r == nil || r.id != ch.RelID {
			if r = s.rels[ch.RelID]; r == nil {
				return fmt.Errorf("apply txn %d: unknown relation %d", m.LSN, ch.RelID)
			}
			c.touch(r)
		}
		var st *sqlite3.Stmt
		switch ch.Op {
		case protocol.OpInsert, protocol.OpUpdate:
			if len(ch.Values) != r.ncols {
				return fmt.Errorf("apply %s on %s: %d values for %d columns", ch.Op, r.local, len(ch.Values), r.ncols)
			}
			st = r.upsert
			if ch.Op == protocol.OpInsert {
				// Most inserts (all of an initial sync) are new rows: a
				// plain INSERT runs about 1.7x faster than the upsert, which
				// is the fallback when the row exists.
				st = r.insert
			}
		case protocol.OpDelete, protocol.OpMoveOut:
			if len(ch.Values) != r.npk {
				return fmt.Errorf("apply %s on %s: %d values for %d key columns", ch.Op, r.local, len(ch.Values), r.npk)
			}
			st = r.del
		default:
			return fmt.Errorf("apply txn %d: unknown op %s", m.LSN, ch.Op)
		}
		for j := range ch.Values {
			if err := bindValue(st, j+1, &ch.Values[j]); err != nil {
				return fmt.Errorf("bind %s.%d: %w", r.local, j, err)
			}
		}
		err := st.Exec()
		if err != nil && st == r.insert && isPKConflict(err) {
			st = r.upsert
			for j := range ch.Values {
				if err := bindValue(st, j+1, &ch.Values[j]); err != nil {
					return fmt.Errorf("bind %s.%d: %w", r.local, j, err)
				}
			}
			err = st.Exec()
		}
		if err != nil {
			return fmt.Errorf("apply %s on %s: %w", ch.Op, r.local, err)
		}
		// The row's version. A new row at version 1 needs no entry (and
		// no statement: the initial sync's rows).
		if st != r.insert || ch.Version != 1 {
			if err := r.setVersion(ch); err != nil {
				return fmt.Errorf("apply %s on %s: %w", ch.Op, r.local, err)
			}
		}
		if c.tx.rebase {
			c.recordRow(r, ch)
		}
		if c.trace {
			c.log.Debug("lattice: trace change", "lsn", m.LSN, "op", ch.Op.String(), "table", r.local,
				"values", fmtValues(ch.Values), "version", ch.Version)
		}
	}

	if c.tx.snap {
		// A line per snapshotProgress rows, for long initial syncs (and
		// bench/initial-sync.sh's per-step times).
		before := c.tx.snapRows
		c.tx.snapRows += len(m.Changes)
		if c.tx.snapRows/snapshotProgress > before/snapshotProgress {
			c.log.Info("lattice: snapshot progress", "lsn", c.tx.lsn, "rows", c.tx.snapRows)
		}
	}
	if m.Flags&protocol.FlagLast != 0 {
		return c.commitTxn(s)
	}
	return nil
}

// snapshotProgress is how many rows of a snapshot make one progress line.
const snapshotProgress = 100_000

// setVersion records the version of the row a change of the service
// wrote (see capture.go): Insert or Update at version 1 deletes the row's
// entry (the default), at a greater version sets it, at 0 (unknown) sets
// it NULL; Delete and MoveOut delete it.
func (r *relation) setVersion(ch *protocol.Change) error {
	row := ch.Op == protocol.OpInsert || ch.Op == protocol.OpUpdate
	st := r.vDel
	if row && ch.Version != 1 {
		st = r.vSet
	}
	for j := range r.npk {
		v := &ch.Values[j] // Delete, MoveOut: the key
		if row {
			v = &ch.Values[r.pk[j]]
		}
		if err := bindValue(st, j+1, v); err != nil {
			return fmt.Errorf("bind version key: %w", err)
		}
	}
	if st == r.vSet {
		if ch.Version == 0 || ch.Version > math.MaxInt64 {
			st.BindNull(r.npk + 1)
		} else {
			st.BindInt64(r.npk+1, int64(ch.Version))
		}
	}
	if err := st.Exec(); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	return nil
}

// isPKConflict reports whether err is a primary key (or rowid) conflict.
func isPKConflict(err error) bool {
	var e *sqlite3.Error
	return errors.As(err, &e) && e.ExtendedCode() == sqlite3.CONSTRAINT_PRIMARYKEY
}

// setApplying sets _lattice_flags.applying to 1, before the first change
// of the service transaction, so that the capture triggers ignore its
// changes. It is set back to 0 just before COMMIT, and a rollback undoes
// it, so it is never left set. (Set lazily: a transaction without changes
// writes no flag page.)
func (c *Client) setApplying() error {
	if c.tx.applying {
		return nil
	}
	c.stmts.setApplying.BindInt(1, 1)
	if err := c.stmts.setApplying.Exec(); err != nil {
		return fmt.Errorf("apply txn %d: set applying flag: %w", c.tx.lsn, err)
	}
	c.tx.applying = true
	return nil
}

// disableTriggers turns trigger execution off on the client's connection
// for a snapshot transaction, when the only triggers in the database are
// the client's capture triggers (which would do nothing anyway, the
// applying flag being set): a trigger, even one whose WHEN is false, costs
// about 1 µs per row written. Toggling the setting makes SQLite re-prepare
// every statement once, which a snapshot's many rows amortize; one-row
// stream transactions rely on the flag alone. Other connections are not
// affected. Caller holds db, at the start of a service transaction.
func (c *Client) disableTriggers() error {
	st := c.stmts.appTriggers
	other := st.Step()
	if err := st.Reset(); err != nil {
		return fmt.Errorf("list triggers: %w", err)
	}
	if other { // the app's triggers must see the service's changes
		return nil
	}
	if _, err := c.conn.Config(sqlite3.DBCONFIG_ENABLE_TRIGGER, false); err != nil {
		return fmt.Errorf("disable triggers: %w", err)
	}
	c.tx.noTriggers = true
	return nil
}

// restoreTriggers turns trigger execution back on after disableTriggers,
// at the end of the service transaction (commit or rollback).
func (c *Client) restoreTriggers() {
	if !c.tx.noTriggers {
		return
	}
	if _, err := c.conn.Config(sqlite3.DBCONFIG_ENABLE_TRIGGER, true); err != nil {
		// Never expected; local writes would not be captured.
		c.log.Error("lattice: re-enable triggers", "err", err)
		return
	}
	c.tx.noTriggers = false
}

func (c *Client) touch(r *relation) {
	if r.touched != c.tx.seq {
		r.touched = c.tx.seq
		c.tx.tables = append(c.tx.tables, r.key)
	}
}

// commitTxn stores the position and commits the service transaction.
func (c *Client) commitTxn(s *session) error {
	lsn := c.tx.lsn
	logID := s.logID
	if !c.tx.reset && logID == c.logID && c.lsn > lsn {
		lsn = c.lsn // never move backwards within a log
	}
	if logID != c.logID {
		if err := c.setState("log_id", logID); err != nil {
			return err
		}
	}
	if lsn != c.lsn {
		if err := c.setState("lsn", int64(lsn)); err != nil {
			return err
		}
	}
	if c.tx.origin != "" && c.tx.origin == c.clientID {
		// Our own transaction came back: its effects are now the service's.
		if err := c.ownTxnReturned(c.tx.clientTxn); err != nil {
			return err
		}
	}
	if c.tx.snap && c.tx.reset && s.dropAcked {
		// A re-sync's snapshot holds the effects of every transaction of
		// ours acknowledged before it (acks precede it on the stream), and
		// their own changes may lie before its position: they are done.
		if err := c.dropAckedTxns(); err != nil {
			return fmt.Errorf("commit transaction %d: %w", c.tx.lsn, err)
		}
		s.dropAcked = false
	}
	if c.tx.rebase {
		// Local writes the service has not returned yet stay visible:
		// re-apply them over the rows this transaction changed.
		if err := c.rebaseLocal(); err != nil {
			return fmt.Errorf("commit transaction %d: %w", c.tx.lsn, err)
		}
	}
	var synced []*subState
	if c.tx.snap {
		// The service answers Subscribes in order, each non-resume one with
		// exactly one snapshot: mark its shapes synced with their data, so a
		// connection lost before Subscribed cannot make us fetch them again.
		var err error
		if synced, err = c.markSnapshotShapes(s); err != nil {
			return err
		}
	}
	if c.tx.applying {
		c.stmts.setApplying.BindInt(1, 0)
		if err := c.stmts.setApplying.Exec(); err != nil {
			return fmt.Errorf("commit transaction %d: %w", c.tx.lsn, err)
		}
	}
	if c.tx.savepoint {
		if err := c.execArgs("RELEASE lattice_txn"); err != nil {
			return fmt.Errorf("commit transaction %d: %w", c.tx.lsn, err)
		}
		c.tx.savepoint = false
	}
	if !c.tx.held {
		c.tx.committedLogID, c.tx.committedLSN = c.logID, c.lsn
	}
	c.tx.open = false
	c.logID, c.lsn = logID, lsn
	c.tx.heldSynced = append(c.tx.heldSynced, synced...)
	s.committed(c.tx.tables, c.tx.schema)
	// Group commit: when more frames are already queued (catching up, or
	// a busy stream), leave the SQLite transaction open and apply them in
	// it, up to maxGroup transactions or maxGroupDelay, so a backlog costs
	// one commit (one IndexedDB transaction in a browser) instead of one
	// each. Snapshots commit at once (they end with trigger state to
	// restore and shapes to mark synced).
	if !c.tx.held {
		c.tx.heldSince, c.tx.heldN = time.Now(), 0
	}
	c.tx.held = true
	c.tx.heldN++
	if c.tx.snap || c.tx.noTriggers || !s.moreQueued() || c.tx.heldN >= maxGroup || time.Since(c.tx.heldSince) >= maxGroupDelay {
		return c.commitHeld()
	}
	return nil
}

// Group commit bounds (see commitTxn).
const (
	maxGroup      = 500
	maxGroupDelay = 10 * time.Millisecond
)

// commitHeld commits the held SQLite transaction: the service
// transactions applied since the last commit. Caller holds db.
func (c *Client) commitHeld() error {
	if !c.tx.held {
		return nil
	}
	if err := c.beforeCommit(); err != nil {
		return fmt.Errorf("commit transaction %d: %w", c.lsn, err)
	}
	if err := failpoint.Hit("client/before-apply-commit"); err != nil {
		return fmt.Errorf("commit transaction %d: %w", c.lsn, err)
	}
	if err := c.stmts.commit.Exec(); err != nil {
		return fmt.Errorf("commit transaction %d: %w", c.lsn, err)
	}
	c.tx.held = false
	c.afterCommit()
	c.restoreTriggers()
	for _, st := range c.tx.heldSynced {
		st.markSynced()
		c.log.Info("lattice: shape synced", "shape", st.id)
	}
	clear(c.tx.heldSynced)
	c.tx.heldSynced = c.tx.heldSynced[:0]
	return nil
}

func (c *Client) setState(key string, value any) error {
	st := c.stmts.setState
	st.BindText(1, key)
	if err := bindArg(st, 2, value); err != nil {
		return err
	}
	if err := st.Exec(); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// abortTxn rolls back the service transaction being applied, if any.
// Caller holds db.
func (c *Client) abortTxn() {
	if !c.tx.open && !c.tx.held {
		return
	}
	if c.tx.held {
		// Keep the group's completed transactions: undo only the partial
		// one (back to its savepoint), then commit.
		err := error(nil)
		if c.tx.open && c.tx.savepoint {
			err = c.conn.Exec("ROLLBACK TO lattice_txn; RELEASE lattice_txn")
			c.loc.pendDelta, c.loc.unretDelta = c.tx.savePend, c.tx.saveUnret
			c.restoreTriggers()
			c.tx.open, c.tx.savepoint = false, false
			if err == nil {
				c.log.Info("lattice: rolled back partial transaction", "lsn", c.tx.lsn)
			}
		}
		if err == nil && !c.tx.open {
			if err = c.commitHeld(); err == nil {
				return
			}
		}
		c.log.Error("lattice: keep applied transactions", "err", err)
	}
	c.tx.savepoint = false
	if err := c.stmts.rollback.Exec(); err != nil {
		c.log.Error("lattice: roll back transaction", "lsn", c.tx.lsn, "err", err)
	}
	c.afterRollback()
	c.restoreTriggers()
	if c.tx.held {
		// The group's completed transactions are lost with it: the
		// position goes back to the last commit, so they are fetched again.
		c.logID, c.lsn = c.tx.committedLogID, c.tx.committedLSN
		clear(c.tx.heldSynced)
		c.tx.heldSynced = c.tx.heldSynced[:0]
		c.log.Info("lattice: rolled back uncommitted transactions", "since_lsn", c.lsn)
	}
	c.tx.open, c.tx.held = false, false
	c.log.Info("lattice: rolled back partial transaction", "lsn", c.tx.lsn)
}

// markSnapshotShapes marks, inside the open transaction, the shapes of the
// oldest pending non-resume Subscribe as synced.
func (c *Client) markSnapshotShapes(s *session) ([]*subState, error) {
	// Requests are answered in order: the oldest pending one is the one
	// this snapshot answers (a resume or an unsubscribe marks nothing).
	var reqID uint32
	found := false
	for id := range s.pending {
		if !found || id < reqID {
			reqID, found = id, true
		}
	}
	if !found || s.pending[reqID].resume || s.pending[reqID].unsub {
		return nil, nil
	}
	var out []*subState
	for _, id := range s.pending[reqID].ids {
		st := c.subs[id]
		if st == nil || st.synced {
			continue
		}
		c.stmts.setSynced.BindText(1, st.id)
		if err := c.stmts.setSynced.Exec(); err != nil {
			return nil, fmt.Errorf("mark shape %s synced: %w", st.id, err)
		}
		out = append(out, st)
	}
	return out, nil
}
