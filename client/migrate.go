package client

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/latticesync/lattice/protocol"
)

// Schema changes of a synced table (see README "Schema evolution").
//
// A Relation describing a table that exists locally with other columns is
// a schema change upstream. Columns are matched by their ids (the Postgres
// attnum, Relation.ColumnIDs, protocol version 2), else by name: a column
// whose id is known under another name was renamed; one that is gone was
// dropped; a new one was added. The local table follows in the transaction
// that applies the Relation, before any change that uses it:
//
//   - RENAME COLUMN: ALTER TABLE RENAME COLUMN, on the table and on its ops
//     table, so that pending local writes follow the rename.
//   - DROP COLUMN: ALTER TABLE DROP COLUMN (indexes on it first). The ops
//     table keeps the column under a name no relation column has, so that
//     pending writes lose that column only; the client is told
//     (*SchemaChangeError in Status.LastError, and the log).
//   - ADD COLUMN: with its default when SQLite can add it so (a constant),
//     and NOT NULL when it has one, so that local inserts get the default.
//   - type changes (widening only: the service refuses the others) keep
//     the column and its stored values.
//
// The capture triggers are dropped first and made again for the new
// columns (ensureCapture).

// SchemaChangeError tells that a schema change upstream dropped columns
// that pending local writes had written: those values are not sent.
type SchemaChangeError struct {
	Table   string   // local table name
	Columns []string // the dropped columns
	Pending int      // pending local row changes that wrote them
}

func (e *SchemaChangeError) Error() string {
	return fmt.Sprintf("table %s: column(s) %s dropped upstream; %d pending local change(s) lose their value(s) for them",
		e.Table, strings.Join(e.Columns, ", "), e.Pending)
}

// droppedOpsPrefix names the ops data column of a dropped column.
const droppedOpsPrefix = opsColPrefix + "~dropped~"

// storedDef reads the relation stored for local (nil if none).
func (c *Client) storedDef(local string) (*relationDef, error) {
	st, _, err := c.conn.Prepare(`SELECT def FROM _lattice_relations WHERE local_name = ?`)
	if err != nil {
		return nil, fmt.Errorf("read relation %s: %w", local, err)
	}
	defer st.Close()
	st.BindText(1, local)
	if !st.Step() {
		return nil, st.Err()
	}
	var def relationDef
	if err := json.Unmarshal([]byte(st.ColumnText(0)), &def); err != nil {
		return nil, fmt.Errorf("read relation %s: %w", local, err)
	}
	return &def, nil
}

// migrateTable brings the existing local table to def (the Relation m).
// existing holds the local columns (lower-case). It reports whether the
// table changed. Caller holds db, in a transaction.
func (c *Client) migrateTable(local string, def *relationDef, m *protocol.Relation, existing map[string]bool) (bool, error) {
	old, err := c.storedDef(local)
	if err != nil {
		return false, err
	}
	byID := map[uint32]string{} // old column id -> old name
	if old != nil {
		for _, col := range old.Columns {
			if col.ID != 0 {
				byID[col.ID] = col.Name
			}
		}
	}
	newNames := map[string]bool{}
	for _, col := range def.Columns {
		newNames[strings.ToLower(col.Name)] = true
	}
	type rename struct{ from, to string }
	var renames []rename
	renamedFrom := map[string]bool{}
	for _, col := range def.Columns {
		if from, ok := byID[col.ID]; ok && col.ID != 0 && !strings.EqualFold(from, col.Name) && existing[strings.ToLower(from)] && !existing[strings.ToLower(col.Name)] {
			renames = append(renames, rename{from, col.Name})
			renamedFrom[strings.ToLower(from)] = true
		}
	}
	var drops []string
	if old != nil {
		for _, col := range old.Columns {
			l := strings.ToLower(col.Name)
			if !newNames[l] && !renamedFrom[l] && existing[l] {
				drops = append(drops, col.Name)
			}
		}
	}
	var adds []columnDef
	for _, col := range def.Columns {
		l := strings.ToLower(col.Name)
		renamed := false
		for _, r := range renames {
			if strings.EqualFold(r.to, col.Name) {
				renamed = true
			}
		}
		if !existing[l] && !renamed {
			adds = append(adds, col)
		}
	}
	if len(renames) == 0 && len(drops) == 0 && len(adds) == 0 {
		return false, nil
	}
	if err := c.dropCaptureTriggers(local); err != nil {
		return false, err
	}
	t := quoteIdent(local)
	ops := quoteIdent(opsTable(local))
	opsCols, err := c.tableColumns(opsTable(local))
	if err != nil {
		return false, fmt.Errorf("inspect table %s: %w", opsTable(local), err)
	}
	hasOps := map[string]bool{}
	for _, n := range opsCols {
		hasOps[strings.ToLower(n)] = true
	}
	for _, r := range renames {
		if err := c.conn.Exec("ALTER TABLE " + t + " RENAME COLUMN " + quoteIdent(r.from) + " TO " + quoteIdent(r.to)); err != nil {
			return false, fmt.Errorf("rename column %s.%s to %s: %w", local, r.from, r.to, err)
		}
		if hasOps[strings.ToLower(opsColPrefix+r.from)] && !hasOps[strings.ToLower(opsColPrefix+r.to)] {
			if err := c.conn.Exec("ALTER TABLE " + ops + " RENAME COLUMN " + quoteIdent(opsColPrefix+r.from) + " TO " + quoteIdent(opsColPrefix+r.to)); err != nil {
				return false, fmt.Errorf("rename column %s of %s: %w", r.from, opsTable(local), err)
			}
		}
		// The old values of a column merged per key path follow it too.
		if hasOps[strings.ToLower(opsOldPrefix+r.from)] && !hasOps[strings.ToLower(opsOldPrefix+r.to)] {
			if err := c.conn.Exec("ALTER TABLE " + ops + " RENAME COLUMN " + quoteIdent(opsOldPrefix+r.from) + " TO " + quoteIdent(opsOldPrefix+r.to)); err != nil {
				return false, fmt.Errorf("rename column %s%s of %s: %w", opsOldPrefix, r.from, opsTable(local), err)
			}
		}
		c.log.Info("lattice: renamed column", "table", local, "from", r.from, "to", r.to)
	}
	if len(drops) > 0 {
		pending := 0
		for _, col := range drops {
			oc := opsColPrefix + col
			if !hasOps[strings.ToLower(oc)] {
				continue
			}
			n, err := c.countPendingWith(local, oc, opsDataIndex(opsCols, oc))
			if err != nil {
				return false, err
			}
			pending += n
			// Keep the ops column (the changed masks index ops columns by
			// position) under a name no relation column matches.
			gone := droppedOpsPrefix + col
			for i := 2; hasOps[strings.ToLower(gone)]; i++ {
				gone = fmt.Sprintf("%s%s~%d", droppedOpsPrefix, col, i)
			}
			if err := c.conn.Exec("ALTER TABLE " + ops + " RENAME COLUMN " + quoteIdent(oc) + " TO " + quoteIdent(gone)); err != nil {
				return false, fmt.Errorf("retire column %s of %s: %w", col, opsTable(local), err)
			}
			hasOps[strings.ToLower(gone)] = true
		}
		for _, col := range drops {
			if err := c.dropIndexesOn(local, col); err != nil {
				return false, err
			}
			if err := c.conn.Exec("ALTER TABLE " + t + " DROP COLUMN " + quoteIdent(col)); err != nil {
				return false, fmt.Errorf("drop column %s.%s: %w", local, col, err)
			}
			c.log.Info("lattice: dropped column", "table", local, "column", col)
		}
		if pending > 0 {
			e := &SchemaChangeError{Table: local, Columns: drops, Pending: pending}
			c.log.Warn("lattice: " + e.Error())
			c.schemaNotices = append(c.schemaNotices, e)
		}
	}
	for _, col := range adds {
		sql := "ALTER TABLE " + t + " ADD COLUMN " + quoteIdent(col.Name)
		if col.Decl != "" {
			sql += " " + col.Decl
		}
		if col.Default != "" {
			// SQLite adds a column with a constant default only; Postgres
			// gave existing rows that value too. NOT NULL needs one.
			withDefault := sql
			if col.NotNull {
				withDefault += " NOT NULL"
			}
			withDefault += " DEFAULT (" + col.Default + ")"
			if err := c.conn.Exec(withDefault); err == nil {
				c.log.Info("lattice: added column", "table", local, "column", col.Name, "default", col.Default)
				if err := c.defaultPendingInserts(local, col, opsCols); err != nil {
					return false, err
				}
				opsCols, err = c.tableColumns(opsTable(local))
				if err != nil {
					return false, fmt.Errorf("inspect table %s: %w", opsTable(local), err)
				}
				continue
			}
		}
		if err := c.conn.Exec(sql); err != nil {
			return false, fmt.Errorf("add column %s.%s: %w", local, col.Name, err)
		}
		c.log.Info("lattice: added column", "table", local, "column", col.Name)
		if col.Default != "" {
			// A default SQLite cannot add (now(), a random uuid): Postgres
			// gave the existing rows values the stream never shows. The
			// rows are fetched again.
			if err := c.refetchTable(local, col.Name); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// refetchTable marks the shapes holding rows of local unsynced, in the
// transaction at hand, so that the next connection subscribes them afresh
// (a snapshot with the rows as Postgres holds them), and asks for that
// connection once the transaction is committed (serve).
func (c *Client) refetchTable(local, column string) error {
	var n int
	st, _, err := c.conn.Prepare(`SELECT count(*) FROM (SELECT 1 FROM ` + quoteIdent(local) + ` LIMIT 1)`)
	if err != nil {
		return fmt.Errorf("count rows of %s: %w", local, err)
	}
	if st.Step() {
		n = st.ColumnInt(0)
	}
	err = st.Err()
	st.Close()
	if err != nil || n == 0 {
		return err
	}
	for _, sub := range c.subList {
		if !sub.synced || !shapeHolds(sub.table, sub.include, local) {
			continue
		}
		if err := c.execArgs(`UPDATE _lattice_shapes SET synced = 0 WHERE id = ?`, sub.id); err != nil {
			return fmt.Errorf("mark shape %s for a new snapshot: %w", sub.id, err)
		}
		sub.synced = false
		c.refetch = true
	}
	if c.refetch {
		c.log.Info("lattice: a new column's default has no SQLite equivalent for existing rows; their shapes are fetched again", "table", local, "column", column)
	}
	return nil
}

// shapeHolds reports whether a shape of root table with includes holds
// rows of local table local.
func shapeHolds(table string, include map[string]includeDef, local string) bool {
	name := table
	if s, t, ok := strings.Cut(table, "."); ok {
		name = localName(s, t)
	}
	if strings.EqualFold(name, local) {
		return true
	}
	for t, inc := range include {
		if shapeHolds(t, inc.Include, local) {
			return true
		}
	}
	return false
}

// opsDataIndex is the position of ops column oc among the ops table's
// data columns (the bit or character of the changed mask), -1 if none.
func opsDataIndex(opsCols []string, oc string) int {
	k := 0
	for _, n := range opsCols {
		if !strings.HasPrefix(n, opsColPrefix) {
			continue
		}
		if strings.EqualFold(n, oc) {
			return k
		}
		k++
	}
	return -1
}

// pendingOps is the condition on ops rows o of changes not yet
// acknowledged.
const pendingOps = `o.seq IN (SELECT l.seq FROM _lattice_oplog l LEFT JOIN _lattice_txns x ON x.txid = l.txid
		WHERE x.txid IS NULL OR x.state = 'pending')`

// maskHas is the SQL condition that the changed mask of ops row o has
// data column k.
func maskHas(k int) string {
	return fmt.Sprintf(`((typeof(o.changed) = 'integer' AND %[1]d < 63 AND (o.changed >> %[1]d) & 1 = 1) OR (typeof(o.changed) = 'text' AND substr(o.changed, %[2]d, 1) = '1'))`, k, k+1)
}

// countPendingWith counts the pending (unacknowledged) captured changes
// of local that wrote ops column oc (data column k).
func (c *Client) countPendingWith(local, oc string, k int) (int, error) {
	if k < 0 {
		return 0, nil
	}
	st, _, err := c.conn.Prepare(`SELECT count(*) FROM ` + quoteIdent(opsTable(local)) + ` o
		WHERE o.op <> 'D' AND ` + maskHas(k) + ` AND ` + pendingOps)
	if err != nil {
		return 0, fmt.Errorf("count pending writes of %s: %w", local, err)
	}
	defer st.Close()
	n := 0
	if st.Step() {
		n = st.ColumnInt(0)
	}
	if err := st.Err(); err != nil {
		return 0, fmt.Errorf("count pending writes of %s: %w", local, err)
	}
	return n, nil
}

// defaultPendingInserts gives pending local inserts into local the
// default of the column col just added (as Postgres would give a row
// inserted without it): the ops table gains the column now, with the
// default written in the pending inserts. opsCols are the ops table's
// columns.
func (c *Client) defaultPendingInserts(local string, col columnDef, opsCols []string) error {
	oc := opsColPrefix + col.Name
	if len(opsCols) == 0 || opsDataIndex(opsCols, oc) >= 0 {
		return nil
	}
	k := opsDataIndex(append(opsCols, oc), oc)
	ops := quoteIdent(opsTable(local))
	if err := c.conn.Exec("ALTER TABLE " + ops + " ADD COLUMN " + quoteIdent(oc)); err != nil {
		return fmt.Errorf("add column %s to %s: %w", col.Name, opsTable(local), err)
	}
	mark := fmt.Sprintf(`CASE WHEN typeof(changed) = 'integer' AND %[1]d < 63 THEN changed | (1 << %[1]d)
		WHEN typeof(changed) = 'text' THEN substr(changed || replace(zeroblob(%[1]d), x'00', '0'), 1, %[1]d) || '1' || substr(changed, %[2]d)
		ELSE changed END`, k, k+2)
	q := "UPDATE " + ops + " AS o SET " + quoteIdent(oc) + " = (" + col.Default + "), changed = " + mark + " WHERE o.op = 'I' AND " + pendingOps
	if err := c.conn.Exec(q); err != nil {
		return fmt.Errorf("default %s in pending inserts of %s: %w", col.Name, local, err)
	}
	return nil
}

// dropCaptureTriggers drops the capture triggers of local (made again by
// ensureCapture): SQLite refuses to drop a column a trigger names.
func (c *Client) dropCaptureTriggers(local string) error {
	names, err := c.schemaNames(`SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? AND name LIKE '\_lattice\_%' ESCAPE '\'`, local)
	if err != nil {
		return fmt.Errorf("list triggers of %s: %w", local, err)
	}
	for _, n := range names {
		if err := c.conn.Exec("DROP TRIGGER " + quoteIdent(n)); err != nil {
			return fmt.Errorf("drop trigger %s: %w", n, err)
		}
	}
	return nil
}

// dropIndexesOn drops the indexes of local that use column col (SQLite
// refuses to drop an indexed column).
func (c *Client) dropIndexesOn(local, col string) error {
	names, err := c.schemaNames(`SELECT DISTINCT s.name FROM sqlite_schema s, pragma_index_info(s.name) i
		WHERE s.type = 'index' AND s.tbl_name = ? AND s.sql IS NOT NULL AND i.name = ? COLLATE NOCASE`, local, col)
	if err != nil {
		return fmt.Errorf("list indexes of %s: %w", local, err)
	}
	for _, n := range names {
		if err := c.conn.Exec("DROP INDEX " + quoteIdent(n)); err != nil {
			return fmt.Errorf("drop index %s: %w", n, err)
		}
		c.log.Info("lattice: dropped local index on a dropped column", "table", local, "index", n, "column", col)
	}
	return nil
}

// schemaNames runs a query of text arguments returning one text column.
func (c *Client) schemaNames(sql string, args ...string) ([]string, error) {
	st, _, err := c.conn.Prepare(sql)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for i, a := range args {
		st.BindText(i+1, a)
	}
	var out []string
	for st.Step() {
		out = append(out, st.ColumnText(0))
	}
	return out, st.Err()
}
