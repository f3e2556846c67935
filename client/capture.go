package client

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ncruces/go-sqlite3"
)

// Capture of local writes: plain SQL triggers on every synced table append
// each row change made by any SQLite program to a local oplog. See
// README.md ("Local writes").
//
// For a synced table T the client keeps:
//
//   - "_lattice_ops_T"(seq INTEGER PRIMARY KEY, op TEXT NOT NULL, changed,
//     v, "c.<column>"...): one row per captured row change, seq being the
//     change's _lattice_oplog.seq, v the row version the change saw (see
//     below). The data columns are untyped (no affinity), so values keep
//     their kind and bytes. They are named after the table's columns and
//     only ever appended (the order is stable), so ops recorded before a
//     schema change stay readable. (v is appended to ops tables made before
//     it existed, after their data columns: columns are found by name.)
//   - "_lattice_v_T"(<key columns>, v INTEGER, PRIMARY KEY(<key>)) WITHOUT
//     ROWID: the version of each held row, compressed: no entry means
//     version 1 (most rows: inserted once, never updated), v >= 1 that
//     version, v = 0 no version (a row the client inserted, not returned by
//     the service yet), v NULL an unknown version (the service sent 0). The
//     service's changes maintain it (apply.go); the capture triggers read
//     it, and add the 0 entries.
//   - triggers "_lattice_ins_T", "_lattice_upd_T", "_lattice_del_T" (AFTER
//     INSERT / UPDATE OF the synced columns / DELETE) writing the oplog, and
//     "_lattice_pk_T" (BEFORE UPDATE) refusing primary key changes.
//
// A column the service merges per key path (columnDef.JSONMerge) also has
// an "o.<column>" column in the ops table: an UPDATE that changed the
// column records its old value there ('n' for NULL, 't' and the text for
// a text; NULL when not recorded: another kind, or an op captured before),
// so that the write is sent as the per-path diff of the old and the new
// document (push.go) and re-applied as such over the service's changes
// (rebase.go).
//
// All of them do nothing while _lattice_flags.applying is 1, i.e. while the
// client applies a service transaction.

// Names of the capture objects of a local table.
func opsTable(local string) string     { return "_lattice_ops_" + local }
func versionTable(local string) string { return "_lattice_v_" + local }

// versionCol is the name of the version column of a version table: "v",
// or "v_", "v__"... when a key column is named so.
func versionCol(pk []string) string {
	name := "v"
	for {
		taken := false
		for _, k := range pk {
			if strings.EqualFold(k, name) {
				taken = true
			}
		}
		if !taken {
			return name
		}
		name += "_"
	}
}

// opsVersionCol is the ops table's version column (the data columns being
// prefixed, it cannot collide).
const opsVersionCol = "v"

const opsColPrefix = "c."

// opsOldPrefix prefixes the ops columns holding the old values of columns
// merged per key path.
const opsOldPrefix = "o."

// maxMaskBits is the number of data columns up to which the columns an op
// wrote (changed: all the captured columns for an INSERT, those whose
// value changed for an UPDATE) are recorded as an integer bitmask (bit k =
// data column k of the ops table); wider tables record a text of '0'/'1'
// characters (character k = data column k).
const maxMaskBits = 63

// sqlString quotes s as an SQL string literal.
func sqlString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// tableColumns returns the column names of a table in declaration order
// (nil if the table does not exist).
func (c *Client) tableColumns(table string) ([]string, error) {
	info, err := c.tableInfo(table)
	if err != nil {
		return nil, err
	}
	var cols []string
	for _, col := range info {
		cols = append(cols, col.name)
	}
	return cols, nil
}

// columnInfo is a row of pragma table_info.
type columnInfo struct {
	name, decl string
	pk         int // position in the primary key from 1, 0 if not in it
}

// tableInfo returns the columns of a table in declaration order (nil if
// the table does not exist).
func (c *Client) tableInfo(table string) ([]columnInfo, error) {
	st, _, err := c.conn.Prepare(`SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid`)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st.BindText(1, table)
	var cols []columnInfo
	for st.Step() {
		cols = append(cols, columnInfo{st.ColumnText(0), st.ColumnText(1), st.ColumnInt(2)})
	}
	return cols, st.Err()
}

// ensureVersionTable creates the version table of a synced table, keyed
// by the table's columns named in pk, with their declared types (so values
// convert as in the table), or re-creates it when its key columns differ.
// A new version table holds an unknown version (NULL) for every row the
// table already has.
func (c *Client) ensureVersionTable(local string, pk []string) error {
	base, err := c.tableInfo(local)
	if err != nil {
		return fmt.Errorf("inspect table %s: %w", local, err)
	}
	want := make([]columnInfo, 0, len(pk)+1)
	for i, k := range pk {
		found := false
		for _, col := range base {
			if strings.EqualFold(col.name, k) {
				want = append(want, columnInfo{col.name, col.decl, i + 1})
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("version table of %s: key column %s missing", local, k)
		}
	}
	want = append(want, columnInfo{versionCol(pk), "INTEGER", 0})
	vt := versionTable(local)
	have, err := c.tableInfo(vt)
	if err != nil {
		return fmt.Errorf("inspect table %s: %w", vt, err)
	}
	if slices.Equal(have, want) {
		return nil
	}
	if len(have) > 0 {
		if err := c.conn.Exec("DROP TABLE " + quoteIdent(vt)); err != nil {
			return fmt.Errorf("drop %s: %w", vt, err)
		}
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE " + quoteIdent(vt) + " (")
	var key []string
	for _, col := range want {
		b.WriteString(quoteIdent(col.name))
		if col.decl != "" {
			b.WriteString(" " + col.decl)
		}
		b.WriteString(", ")
		if col.pk > 0 {
			key = append(key, quoteIdent(col.name))
		}
	}
	b.WriteString("PRIMARY KEY (" + strings.Join(key, ", ") + ")) WITHOUT ROWID")
	if err := c.conn.Exec(b.String()); err != nil {
		return fmt.Errorf("create %s: %w", vt, err)
	}
	// Rows the table already holds (a replica made before versions were
	// kept, or whose key changed) are at versions the client does not
	// know: not 1, which an absent entry would mean.
	var notNull []string
	for _, k := range key {
		notNull = append(notNull, k+" IS NOT NULL")
	}
	fill := "INSERT OR IGNORE INTO " + quoteIdent(vt) + " (" + strings.Join(key, ", ") + ") SELECT " + strings.Join(key, ", ") +
		" FROM " + quoteIdent(local) + " WHERE " + strings.Join(notNull, " AND ")
	if err := c.conn.Exec(fill); err != nil {
		return fmt.Errorf("fill %s: %w", vt, err)
	}
	return nil
}

// ensureCapture creates or updates the ops table, the version table and
// the capture triggers of a synced table (which must exist), so that they
// cover every column of def. It is idempotent: triggers whose SQL is unchanged are kept. Caller
// holds db, inside a transaction.
func (c *Client) ensureCapture(local string, def *relationDef) error {
	base, err := c.tableColumns(local)
	if err != nil {
		return fmt.Errorf("inspect table %s: %w", local, err)
	}
	inBase := make(map[string]string, len(base)) // lower-case -> actual name
	for _, n := range base {
		inBase[strings.ToLower(n)] = n
	}
	for _, k := range def.PK {
		if _, ok := inBase[strings.ToLower(k)]; !ok {
			return fmt.Errorf("capture writes to %s: key column %s missing", local, k)
		}
	}

	// The ops table: create it, or append the columns it lacks.
	ops := opsTable(local)
	existing, err := c.tableColumns(ops)
	if err != nil {
		return fmt.Errorf("inspect table %s: %w", ops, err)
	}
	var data []string // ops data columns, ops order, without the prefix
	have := map[string]bool{}
	hasV := false
	for _, n := range existing {
		if strings.HasPrefix(n, opsColPrefix) {
			data = append(data, n[len(opsColPrefix):])
			have[strings.ToLower(n[len(opsColPrefix):])] = true
		} else if strings.EqualFold(n, opsVersionCol) {
			hasV = true
		}
	}
	var add []string
	for _, col := range def.Columns {
		if !have[strings.ToLower(col.Name)] {
			have[strings.ToLower(col.Name)] = true
			add = append(add, col.Name)
		}
	}
	if len(existing) == 0 {
		var b strings.Builder
		b.WriteString("CREATE TABLE " + quoteIdent(ops) + " (seq INTEGER PRIMARY KEY, op TEXT NOT NULL, changed, " + opsVersionCol)
		for _, n := range add {
			b.WriteString(", " + quoteIdent(opsColPrefix+n))
		}
		b.WriteString(")")
		if err := c.conn.Exec(b.String()); err != nil {
			return fmt.Errorf("create %s: %w", ops, err)
		}
	} else {
		if !hasV { // made by a client without row versions
			if err := c.conn.Exec("ALTER TABLE " + quoteIdent(ops) + " ADD COLUMN " + opsVersionCol); err != nil {
				return fmt.Errorf("add column %s to %s: %w", opsVersionCol, ops, err)
			}
		}
		for _, n := range add {
			if err := c.conn.Exec("ALTER TABLE " + quoteIdent(ops) + " ADD COLUMN " + quoteIdent(opsColPrefix+n)); err != nil {
				return fmt.Errorf("add column %s to %s: %w", n, ops, err)
			}
		}
	}
	data = append(data, add...)

	// Old-value columns of the columns merged per key path (kept when a
	// column stops being merged: ops captured before may use them).
	var olds []string
	haveOld := map[string]bool{}
	for _, n := range existing {
		if strings.HasPrefix(n, opsOldPrefix) {
			olds = append(olds, n[len(opsOldPrefix):])
			haveOld[strings.ToLower(n[len(opsOldPrefix):])] = true
		}
	}
	merged := map[string]bool{} // lower-case names of the columns merged per key
	for _, col := range def.Columns {
		if !col.JSONMerge {
			continue
		}
		merged[strings.ToLower(col.Name)] = true
		if haveOld[strings.ToLower(col.Name)] {
			continue
		}
		haveOld[strings.ToLower(col.Name)] = true
		if err := c.conn.Exec("ALTER TABLE " + quoteIdent(ops) + " ADD COLUMN " + quoteIdent(opsOldPrefix+col.Name)); err != nil {
			return fmt.Errorf("add column %s%s to %s: %w", opsOldPrefix, col.Name, ops, err)
		}
		olds = append(olds, col.Name)
	}

	if err := c.ensureVersionTable(local, def.PK); err != nil {
		return err
	}

	// The triggers. A data column whose table column no longer exists
	// (renamed locally) is left NULL and never marked changed.
	cols := make([]string, len(data)) // table column of each data column, or ""
	for i, n := range data {
		cols[i] = inBase[strings.ToLower(n)]
	}
	oldCols := make([]string, len(olds)) // table column of each old-value column still merged, or ""
	for i, n := range olds {
		if merged[strings.ToLower(n)] {
			oldCols[i] = inBase[strings.ToLower(n)]
		}
	}
	for _, tr := range captureTriggers(local, def.PK, data, cols, olds, oldCols, inBase) {
		if err := c.ensureTrigger(tr.name, tr.sql); err != nil {
			return fmt.Errorf("create capture trigger on %s: %w", local, err)
		}
	}
	c.forgetCaptureTable(local)
	return nil
}

type triggerDef struct{ name, sql string }

// captureTriggers returns the trigger definitions of a synced table. data
// are the ops table's data columns, cols the matching table columns ("" if
// absent); olds are its old-value columns, oldCols the matching table
// columns merged per key path ("": not recorded).
func captureTriggers(local string, pk, data, cols, olds, oldCols []string, inBase map[string]string) []triggerDef {
	t := quoteIdent(local)
	ops := quoteIdent(opsTable(local))
	lit := sqlString(local)
	const when = "(SELECT applying FROM _lattice_flags) = 0"
	logOp := "INSERT INTO _lattice_oplog(tbl) VALUES(" + lit + ");\n"
	// differs is true when a column's value changed, kind included (1 IS
	// 1.0 in SQL) and whatever the column's collation.
	differs := func(col string) string {
		q := quoteIdent(col)
		return "(OLD." + q + " IS NOT NEW." + q + " COLLATE BINARY OR typeof(OLD." + q + ") <> typeof(NEW." + q + "))"
	}

	var names, newVals, synced []string
	for i, n := range data {
		if cols[i] == "" {
			continue
		}
		names = append(names, quoteIdent(opsColPrefix+n))
		newVals = append(newVals, "NEW."+quoteIdent(cols[i]))
		synced = append(synced, quoteIdent(cols[i]))
	}

	// An update records the old value of each column merged per key path
	// that it changed.
	updNames, updVals := slices.Clone(names), slices.Clone(newVals)
	for i, n := range olds {
		if oldCols[i] == "" {
			continue
		}
		q := "OLD." + quoteIdent(oldCols[i])
		updNames = append(updNames, quoteIdent(opsOldPrefix+n))
		updVals = append(updVals, "CASE WHEN "+differs(oldCols[i])+" THEN CASE WHEN "+q+" IS NULL THEN 'n' WHEN typeof("+q+") = 'text' THEN 't' || "+q+" END END")
	}

	// changed of an insert: every column it wrote (not the columns the
	// ops table gains later).
	var insMask string
	if len(data) <= maxMaskBits {
		var m uint64
		for i := range data {
			if cols[i] != "" {
				m |= 1 << i
			}
		}
		insMask = strconv.FormatUint(m, 10)
	} else {
		b := make([]byte, len(data))
		for i := range data {
			b[i] = '0'
			if cols[i] != "" {
				b[i] = '1'
			}
		}
		insMask = sqlString(string(b))
	}

	var mask strings.Builder
	for i := range data {
		term := "0"
		if cols[i] != "" {
			term = differs(cols[i])
		}
		if len(data) <= maxMaskBits {
			if i > 0 {
				mask.WriteString(" | ")
			}
			mask.WriteString("(" + term + " << " + strconv.Itoa(i) + ")")
		} else {
			if i > 0 {
				mask.WriteString(" || ")
			}
			mask.WriteString("(" + term + ")")
		}
	}
	if len(data) == 0 {
		mask.WriteString("0")
	}

	var keyNames, keyCols, oldKeys, newKeys, keyChanged, keyOf, oldMatch, newMatch, newNotNull []string
	seen := map[string]bool{}
	for _, k := range pk {
		col := inBase[strings.ToLower(k)]
		q := quoteIdent(col)
		keyNames = append(keyNames, quoteIdent(opsColPrefix+k))
		oldKeys = append(oldKeys, "OLD."+q)
		newKeys = append(newKeys, "NEW."+q)
		keyChanged = append(keyChanged, differs(col))
		keyOf = append(keyOf, q)
		keyCols = append(keyCols, q)
		oldMatch = append(oldMatch, "_v."+q+" = OLD."+q)
		newMatch = append(newMatch, "_v."+q+" = NEW."+q)
		newNotNull = append(newNotNull, "NEW."+q+" IS NOT NULL")
		seen[strings.ToLower(col)] = true
	}
	// The rowid's names too: it is the key when the key is a rowid alias.
	for _, n := range []string{"rowid", "_rowid_", "oid"} {
		if !seen[n] {
			keyOf = append(keyOf, n)
		}
	}
	join := func(s []string) string { return strings.Join(s, ", ") }
	prefixed := func(s []string) string {
		if len(s) == 0 {
			return ""
		}
		return ", " + join(s)
	}

	// The version the write saw (see the version table): held, 1 when the
	// row has no entry, -1 for unknown (NULL entry). An insert saw none
	// (0), and gives its row a 0 entry unless it has one, so that later
	// writes of a row the client made itself send 0 until the service
	// returns it. The entry is added without a conflict (NOT EXISTS, key
	// not NULL): the conflict clause of the statement firing the trigger
	// (INSERT OR REPLACE, OR ROLLBACK...) would override the trigger's own.
	vt := quoteIdent(versionTable(local))
	vc := quoteIdent(versionCol(pk))
	held := "coalesce((SELECT coalesce(_v." + vc + ", -1) FROM " + vt + " AS _v WHERE " + strings.Join(oldMatch, " AND ") + "), 1)"
	addEntry := "INSERT INTO " + vt + "(" + join(keyCols) + ", " + vc + ") SELECT " + join(newKeys) + ", 0 WHERE " +
		strings.Join(newNotNull, " AND ") + " AND NOT EXISTS (SELECT 1 FROM " + vt + " AS _v WHERE " + strings.Join(newMatch, " AND ") + ");\n"

	ins := "CREATE TRIGGER " + quoteIdent("_lattice_ins_"+local) + " AFTER INSERT ON " + t +
		" WHEN " + when + " BEGIN\n" + logOp +
		"INSERT INTO " + ops + "(seq, op, changed, " + opsVersionCol + prefixed(names) + ") VALUES(last_insert_rowid(), 'I', " + insMask + ", 0" + prefixed(newVals) + ");\n" +
		addEntry + "END"
	upd := "CREATE TRIGGER " + quoteIdent("_lattice_upd_"+local) + " AFTER UPDATE OF " + join(synced) + " ON " + t +
		" WHEN " + when + " BEGIN\n" + logOp +
		"INSERT INTO " + ops + "(seq, op, changed, " + opsVersionCol + prefixed(updNames) + ") VALUES(last_insert_rowid(), 'U', " + mask.String() + ", " + held + prefixed(updVals) + ");\nEND"
	del := "CREATE TRIGGER " + quoteIdent("_lattice_del_"+local) + " AFTER DELETE ON " + t +
		" WHEN " + when + " BEGIN\n" + logOp +
		"INSERT INTO " + ops + "(seq, op, " + opsVersionCol + prefixed(keyNames) + ") VALUES(last_insert_rowid(), 'D', " + held + prefixed(oldKeys) + ");\nEND"
	// UPDATE OF: only statements that assign a key column (or the rowid)
	// run it; the service's upserts never do.
	pkt := "CREATE TRIGGER " + quoteIdent("_lattice_pk_"+local) + " BEFORE UPDATE OF " + join(keyOf) + " ON " + t +
		" WHEN " + when + " AND (" + strings.Join(keyChanged, " OR ") + ") BEGIN\n" +
		"SELECT RAISE(ABORT, " + sqlString("lattice: the primary key of "+local+" cannot be updated; delete and insert instead") + ");\nEND"
	return []triggerDef{
		{"_lattice_pk_" + local, pkt},
		{"_lattice_ins_" + local, ins},
		{"_lattice_upd_" + local, upd},
		{"_lattice_del_" + local, del},
	}
}

// ensureTrigger creates trigger name with sql, replacing a trigger of that
// name with different SQL.
func (c *Client) ensureTrigger(name, sql string) error {
	st, _, err := c.conn.Prepare(`SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?`)
	if err != nil {
		return err
	}
	st.BindText(1, name)
	found, same := false, false
	if st.Step() {
		found = true
		same = st.ColumnText(0) == sql
	}
	err = st.Err()
	st.Close()
	if err != nil || same {
		return err
	}
	if found {
		if err := c.conn.Exec("DROP TRIGGER " + quoteIdent(name)); err != nil {
			return err
		}
	}
	return c.conn.Exec(sql)
}

// ensureAllCapture installs capture on every synced table that exists, at
// Open (so that a replica made by an older client, or whose triggers were
// dropped, captures writes before the service describes its tables again).
// Caller owns the connection, inside a transaction.
func (c *Client) ensureAllCapture() error {
	st, _, err := c.conn.Prepare(`SELECT local_name, def FROM _lattice_relations`)
	if err != nil {
		return fmt.Errorf("load relations: %w", err)
	}
	type rel struct {
		local string
		def   relationDef
	}
	var rels []rel
	for st.Step() {
		r := rel{local: st.ColumnText(0)}
		if err := json.Unmarshal(st.ColumnRawText(1), &r.def); err != nil {
			st.Close()
			return fmt.Errorf("load relation %s: %w", r.local, err)
		}
		rels = append(rels, r)
	}
	err = st.Err()
	st.Close()
	if err != nil {
		return fmt.Errorf("load relations: %w", err)
	}
	for _, r := range rels {
		cols, err := c.tableColumns(r.local)
		if err != nil {
			return fmt.Errorf("inspect table %s: %w", r.local, err)
		}
		if len(cols) == 0 || len(r.def.PK) == 0 {
			continue // dropped locally: recreated by the next Relation
		}
		if err := c.ensureCapture(r.local, &r.def); err != nil {
			// Do not make the replica unusable: the next Relation of the
			// table retries (and fails its connection if still wrong).
			c.log.Error("lattice: cannot capture writes to a synced table", "table", r.local, "err", err)
		}
	}
	return nil
}

// captureTable describes how to read the ops of one synced table.
type captureTable struct {
	local, schema, name string
	cols                []string // relation column names, in relation order
	pk                  []int    // relation column index of each key column, in key order
	dataRel             []int    // relation column index of each ops data column, or -1
	keyData             []int    // ops data column of each key column, in key order
	// oldRel is the relation column index of each old-value column
	// (opsOldPrefix) whose column the service merges per key path, or -1.
	oldRel []int
	read   *sqlite3.Stmt // (seq) -> op, changed, v, data columns, old-value columns
}

func (ct *captureTable) close() {
	if ct.read != nil {
		ct.read.Close()
	}
}

// forgetCaptureTable drops the cached description of a table whose
// capture changed.
func (c *Client) forgetCaptureTable(local string) {
	if ct := c.loc.tables[local]; ct != nil {
		ct.close()
		delete(c.loc.tables, local)
	}
}

// captureTableOf returns the (cached) description of a synced table, by
// its local name as recorded in _lattice_oplog.tbl. Caller holds db.
func (c *Client) captureTableOf(local string) (*captureTable, error) {
	if ct := c.loc.tables[local]; ct != nil {
		return ct, nil
	}
	ct := &captureTable{local: local}
	var def relationDef
	st, _, err := c.conn.Prepare(`SELECT schema, name, def FROM _lattice_relations WHERE local_name = ?`)
	if err != nil {
		return nil, err
	}
	st.BindText(1, local)
	found := st.Step()
	if found {
		ct.schema, ct.name = st.ColumnText(0), st.ColumnText(1)
		err = json.Unmarshal(st.ColumnRawText(2), &def)
	}
	if e := st.Err(); e != nil {
		err = e
	}
	st.Close()
	if err != nil {
		return nil, fmt.Errorf("load relation %s: %w", local, err)
	}
	if !found {
		return nil, fmt.Errorf("load relation %s: not a synced table", local)
	}
	relIdx := map[string]int{}
	for i, col := range def.Columns {
		relIdx[strings.ToLower(col.Name)] = i
		ct.cols = append(ct.cols, col.Name)
	}
	ops := opsTable(local)
	cols, err := c.tableColumns(ops)
	if err != nil {
		return nil, fmt.Errorf("inspect table %s: %w", ops, err)
	}
	dataPos := map[string]int{}
	var sel strings.Builder
	ver := "NULL" // an ops table not upgraded yet (its table dropped locally): unknown
	for _, n := range cols {
		if strings.EqualFold(n, opsVersionCol) {
			ver = quoteIdent(n)
		}
	}
	sel.WriteString("SELECT op, changed, " + ver)
	for _, n := range cols {
		if !strings.HasPrefix(n, opsColPrefix) {
			continue
		}
		name := strings.ToLower(n[len(opsColPrefix):])
		dataPos[name] = len(ct.dataRel)
		if i, ok := relIdx[name]; ok {
			ct.dataRel = append(ct.dataRel, i)
		} else {
			ct.dataRel = append(ct.dataRel, -1)
		}
		sel.WriteString(", " + quoteIdent(n))
	}
	for _, n := range cols {
		if !strings.HasPrefix(n, opsOldPrefix) {
			continue
		}
		i, ok := relIdx[strings.ToLower(n[len(opsOldPrefix):])]
		if !ok || !def.Columns[i].JSONMerge {
			i = -1
		}
		ct.oldRel = append(ct.oldRel, i)
		sel.WriteString(", " + quoteIdent(n))
	}
	for _, k := range def.PK {
		p, ok := dataPos[strings.ToLower(k)]
		if !ok {
			return nil, fmt.Errorf("load ops of %s: no column for key %s", local, k)
		}
		ct.pk = append(ct.pk, relIdx[strings.ToLower(k)])
		ct.keyData = append(ct.keyData, p)
	}
	sel.WriteString(" FROM " + quoteIdent(ops) + " WHERE seq = ?")
	ct.read, _, err = c.conn.PrepareFlags(sel.String(), sqlite3.PREPARE_PERSISTENT)
	if err != nil {
		return nil, fmt.Errorf("prepare ops read of %s: %w", local, err)
	}
	if c.loc.tables == nil {
		c.loc.tables = map[string]*captureTable{}
	}
	c.loc.tables[local] = ct
	return ct, nil
}
