package client

import (
	"fmt"
	"slices"
	"strings"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
)

// Rebasing local writes over the service's changes. A service transaction
// overwrites the rows it changes; when some local transactions have not
// come back from the service yet (state pending or acked), the rows they
// wrote would show the service's values until then. So, inside the SQLite
// transaction applying the service transaction, just before its commit
// (applying flag set: nothing is captured), the ops of those local
// transactions on the rows the service transaction changed are re-applied
// on top, in oplog order:
//
//   - 'I' sets every column it captured, inserting the row if it is gone;
//   - 'U' sets the columns it changed; if the row is gone it is re-created
//     only when an earlier re-applied op of ours on the row was an 'I',
//     otherwise it stays gone (the service deleted a row we only updated);
//   - 'D' deletes the row.
//
// The version store keeps the service's versions; only a row re-created
// from our own insert gets back its 0 entry (see rebaseUpsert).
//
// A service transaction returning one of our own transactions drops it
// first (ownTxnReturned), so its ops are not re-applied. Rebasing costs
// nothing when no local transaction is outstanding (loc.unreturned): the
// rows changed are only recorded when some is.

// beginRebase decides, at the first chunk of a service transaction,
// whether the rows it changes are recorded for rebasing. Caller holds db.
func (c *Client) beginRebase() {
	c.tx.rebase = c.loc.unreturned+c.loc.unretDelta > 0
	if !c.tx.rebase {
		return
	}
	if c.tx.rows == nil || len(c.tx.rows) > 4096 {
		c.tx.rows = map[string]struct{}{} // do not keep a snapshot's map
	} else {
		clear(c.tx.rows)
	}
	if c.tx.resets == nil {
		c.tx.resets = map[string]struct{}{}
	} else {
		clear(c.tx.resets)
	}
}

// recordRow records the row a change of the service transaction wrote.
func (c *Client) recordRow(r *relation, ch *protocol.Change) {
	var buf [4]coltype.Value
	key := buf[:0]
	switch ch.Op {
	case protocol.OpInsert, protocol.OpUpdate:
		for _, k := range r.pk {
			key = append(key, ch.Values[k])
		}
	default: // the key, in key order
		key = append(key, ch.Values...)
	}
	c.tx.rows[rowKey(r.local, key)] = struct{}{} // rowKey copies the bytes
}

// rebaseOp is a local op to re-apply.
type rebaseOp struct {
	ct  *captureTable
	key string
	ch  LocalChange
}

// rebaseLocal re-applies, in the open service transaction, the ops of the
// outstanding local transactions on the rows it changed. Caller holds db.
func (c *Client) rebaseLocal() error {
	if c.loc.unreturned+c.loc.unretDelta <= 0 || (len(c.tx.rows) == 0 && len(c.tx.resets) == 0) {
		return nil
	}
	ix, err := c.outstandingOps()
	if err != nil {
		return fmt.Errorf("rebase local writes: %w", err)
	}
	var idxs []int
	for k := range c.tx.rows {
		idxs = append(idxs, ix.byRow[k]...)
	}
	for t := range c.tx.resets {
		idxs = append(idxs, ix.byTbl[t]...)
	}
	slices.Sort(idxs)
	idxs = slices.Compact(idxs)
	ops := make([]rebaseOp, len(idxs))
	for i, j := range idxs {
		ops[i] = ix.ops[j]
	}
	if len(ops) == 0 {
		return nil
	}
	if err := c.setApplying(); err != nil {
		return err
	}
	if err := failpoint.Hit("client/rebase"); err != nil {
		return err
	}
	inserted := map[string]bool{} // rows an 'I' of ours re-created
	for i := range ops {
		op := &ops[i]
		if c.trace {
			c.log.Debug("lattice: trace rebase", "lsn", c.tx.lsn, "op", string(op.ch.Op), "table", op.ct.local,
				"key", fmtValues(op.ch.Key), "values", fmtValues(op.ch.Values))
		}
		var err error
		switch op.ch.Op {
		case 'I':
			err = c.rebaseUpsert(op.ct, &op.ch)
			inserted[op.key] = true
		case 'U':
			var n int64
			if n, err = c.rebaseUpdate(op.ct, &op.ch); err == nil && n == 0 && inserted[op.key] {
				err = c.rebaseUpsert(op.ct, &op.ch)
			}
		case 'D':
			err = c.rebaseDelete(op.ct, &op.ch)
			delete(inserted, op.key)
		}
		if err != nil {
			if c.conn.GetAutocommit() { // SQLite abandoned the transaction
				return fmt.Errorf("rebase local write on %s: %w", op.ct.local, err)
			}
			// The statement alone failed (a constraint): the service's row
			// stays as it is.
			c.log.Warn("lattice: cannot rebase a local write", "table", op.ct.local, "op", string(op.ch.Op), "err", err)
		}
	}
	return nil
}

// opIndex holds the ops of the outstanding local transactions (pending or
// acked), in oplog order, indexed by row and by table, so that rebasing a
// service transaction reads only what it needs. It is rebuilt when the set
// of outstanding transactions changed (loc.opGen).
type opIndex struct {
	built bool
	gen   uint64
	ops   []rebaseOp
	byRow map[string][]int // rowKey -> indexes into ops
	byTbl map[string][]int // local table -> indexes into ops
}

// outstandingOps returns the index, rebuilding it if needed. Caller holds db.
func (c *Client) outstandingOps() (*opIndex, error) {
	ix := &c.loc.opIdx
	if ix.built && ix.gen == c.loc.opGen {
		return ix, nil
	}
	ix.ops = ix.ops[:0]
	ix.byRow = map[string][]int{}
	ix.byTbl = map[string][]int{}
	type ref struct {
		seq int64
		tbl string
	}
	var refs []ref
	st := c.stmts.liveOps
	for st.Step() {
		refs = append(refs, ref{st.ColumnInt64(0), st.ColumnText(1)})
	}
	if err := st.Reset(); err != nil {
		return nil, err
	}
	for _, r := range refs {
		ct, err := c.captureTableOf(r.tbl)
		if err != nil {
			return nil, err
		}
		ch, err := ct.readOp(r.seq)
		if err != nil {
			return nil, err
		}
		k := rowKey(ct.local, ch.Key)
		i := len(ix.ops)
		ix.ops = append(ix.ops, rebaseOp{ct, k, ch})
		ix.byRow[k] = append(ix.byRow[k], i)
		ix.byTbl[ct.local] = append(ix.byTbl[ct.local], i)
	}
	ix.built, ix.gen = true, c.loc.opGen
	return ix, nil
}

// isKey reports whether relation column i is a key column of ct.
func (ct *captureTable) isKey(i int) bool {
	for _, k := range ct.pk {
		if k == i {
			return true
		}
	}
	return false
}

func (ct *captureTable) keyWhere() string {
	var w []string
	for _, k := range ct.pk {
		w = append(w, quoteIdent(ct.cols[k])+" = ?")
	}
	return strings.Join(w, " AND ")
}

// rebaseUpsert writes the key and the columns of ch, inserting the row if
// it is missing. A row it re-creates is, as when the client first inserted
// it, held at no version from the service: it gets a 0 entry in the
// version store unless it has one (the service's change removed it, or a
// reset cleared the store). The service's versions are not changed.
func (c *Client) rebaseUpsert(ct *captureTable, ch *LocalChange) error {
	existed, err := c.rowExists(ct, ch.Key)
	if err != nil {
		return err
	}
	if err := c.rebaseWrite(ct, ch); err != nil {
		return err
	}
	if existed {
		return nil
	}
	var pk, marks []string
	for _, k := range ct.pk {
		pk = append(pk, ct.cols[k])
		marks = append(marks, "?")
	}
	quoted := make([]string, len(pk))
	for i, n := range pk {
		quoted[i] = quoteIdent(n)
	}
	_, err = c.execValues("INSERT OR IGNORE INTO "+quoteIdent(versionTable(ct.local))+" ("+strings.Join(quoted, ", ")+", "+
		quoteIdent(versionCol(pk))+") VALUES ("+strings.Join(marks, ", ")+", 0)", ch.Key)
	return err
}

// rowExists reports whether the row of key exists in ct's table.
func (c *Client) rowExists(ct *captureTable, key []coltype.Value) (bool, error) {
	st, _, err := c.conn.Prepare("SELECT 1 FROM " + quoteIdent(ct.local) + " WHERE " + ct.keyWhere())
	if err != nil {
		return false, err
	}
	defer st.Close()
	for i := range key {
		if err := bindValue(st, i+1, &key[i]); err != nil {
			return false, err
		}
	}
	found := st.Step()
	return found, st.Err()
}

// rebaseWrite is the upsert of rebaseUpsert.
func (c *Client) rebaseWrite(ct *captureTable, ch *LocalChange) error {
	var names, set, marks []string
	var vals []coltype.Value
	var pk []string
	for i, k := range ct.pk {
		n := quoteIdent(ct.cols[k])
		pk = append(pk, n)
		names = append(names, n)
		marks = append(marks, "?")
		vals = append(vals, ch.Key[i])
	}
	for j, col := range ch.Columns {
		if col >= len(ct.cols) || ct.isKey(col) {
			continue
		}
		n := quoteIdent(ct.cols[col])
		names = append(names, n)
		marks = append(marks, "?")
		set = append(set, n+" = excluded."+n)
		vals = append(vals, ch.Values[j])
	}
	sql := "INSERT INTO " + quoteIdent(ct.local) + " (" + strings.Join(names, ", ") + ") VALUES (" +
		strings.Join(marks, ", ") + ") ON CONFLICT (" + strings.Join(pk, ", ") + ") DO "
	if len(set) == 0 {
		sql += "NOTHING"
	} else {
		sql += "UPDATE SET " + strings.Join(set, ", ")
	}
	_, err := c.execValues(sql, vals)
	return err
}

// rebaseUpdate sets the columns of ch on its row, if it exists; it returns
// the number of rows changed (-1 when ch changed no column).
//
// A column merged per key path whose old value the op captured gets the
// op's per-path changes (the diff of its old and new value) applied to
// the value it has now, rather than the op's whole new value: keys the
// service's changes wrote and the op did not stay as the service sent
// them.
func (c *Client) rebaseUpdate(ct *captureTable, ch *LocalChange) (int64, error) {
	var set []string
	var vals []coltype.Value
	for j, col := range ch.Columns {
		if col >= len(ct.cols) || ct.isKey(col) {
			continue
		}
		v := ch.Values[j]
		if old, ok := ch.jsonOld[col]; ok {
			var err error
			if v, err = c.rebaseJSON(ct, ch, col, old, v); err != nil {
				return 0, err
			}
		}
		set = append(set, quoteIdent(ct.cols[col])+" = ?")
		vals = append(vals, v)
	}
	if len(set) == 0 {
		return -1, nil
	}
	vals = append(vals, ch.Key...)
	return c.execValues("UPDATE "+quoteIdent(ct.local)+" SET "+strings.Join(set, ", ")+" WHERE "+ct.keyWhere(), vals)
}

func (c *Client) rebaseDelete(ct *captureTable, ch *LocalChange) error {
	_, err := c.execValues("DELETE FROM "+quoteIdent(ct.local)+" WHERE "+ct.keyWhere(), ch.Key)
	return err
}

// execValues runs one statement with values bound, returning the number
// of rows it changed.
func (c *Client) execValues(sql string, vals []coltype.Value) (int64, error) {
	st, err := c.cachedStmt(sql)
	if err != nil {
		return 0, err
	}
	for i := range vals {
		if err := bindValue(st, i+1, &vals[i]); err != nil {
			c.forgetStmt(sql)
			return 0, err
		}
	}
	if err := st.Exec(); err != nil {
		c.forgetStmt(sql)
		return 0, err
	}
	st.ClearBindings()
	return c.conn.Changes(), nil
}

// rebaseJSON returns the value of column col (merged per key path) of
// ch's row once the op's per-path changes, the diff of old and v, are
// applied to the value the row holds now. When a document is not JSON (or
// the row is gone) it returns v, the op's whole value, as for other
// columns.
func (c *Client) rebaseJSON(ct *captureTable, ch *LocalChange, col int, old, v coltype.Value) (coltype.Value, error) {
	doc := func(v coltype.Value) ([]byte, bool) {
		switch {
		case v.Kind == coltype.Null:
			return nil, true
		case v.Kind == coltype.Text && v.B != nil:
			return v.B, true
		}
		return nil, false
	}
	od, ok1 := doc(old)
	nd, ok2 := doc(v)
	if !ok1 || !ok2 {
		return v, nil
	}
	changes, err := merge.DiffJSON(od, nd)
	if err != nil {
		return v, nil
	}
	sql := "SELECT " + quoteIdent(ct.cols[col]) + " FROM " + quoteIdent(ct.local) + " WHERE " + ct.keyWhere()
	st, err := c.cachedStmt(sql)
	if err != nil {
		return v, fmt.Errorf("read %s.%s: %w", ct.local, ct.cols[col], err)
	}
	defer st.Reset()
	for i := range ch.Key {
		if err := bindValue(st, i+1, &ch.Key[i]); err != nil {
			c.forgetStmt(sql)
			return v, err
		}
	}
	if !st.Step() {
		if err := st.Err(); err != nil {
			c.forgetStmt(sql)
			return v, fmt.Errorf("read %s.%s: %w", ct.local, ct.cols[col], err)
		}
		return v, nil // no row: nothing is updated
	}
	cur, ok := doc(columnValue(st, 0))
	if !ok {
		return v, nil
	}
	out, err := merge.ApplyJSONChanges(cur, changes)
	if err != nil {
		return v, nil
	}
	if out == nil {
		return coltype.Value{}, nil
	}
	return coltype.Value{Kind: coltype.Text, B: out}, nil
}
