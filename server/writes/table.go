package writes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
)

// stmt is an SQL statement the applier prepares once per connection, under
// a name derived from its text.
type stmt struct {
	name string
	sql  string
}

func newStmt(sql string) *stmt {
	h := sha256.Sum256([]byte(sql))
	return &stmt{name: "lattice_w_" + hex.EncodeToString(h[:12]), sql: sql}
}

// Statements that do not depend on a table.
var (
	stmtBegin  = newStmt("BEGIN ISOLATION LEVEL READ COMMITTED")
	stmtCommit = newStmt("COMMIT")
	// stmtApplied records the transaction as applied (no row: a
	// duplicate), and, in the same statement, marks the transaction in the
	// replication stream with "<txid>:<origin>" (see
	// pgrepl.OriginMessagePrefix) and sets lattice.applying for the first
	// table the transaction changes (the writes set it again for others).
	stmtApplied = newStmt("INSERT INTO lattice.applied (origin, txid) VALUES ($1, $2) ON CONFLICT DO NOTHING " +
		"RETURNING pg_logical_emit_message(true, 'lattice.origin', $3::text), set_config('lattice.applying', $4, true)")
	stmtApplying = newStmt("SELECT set_config('lattice.applying', $1, true)")
	// stmtAsUser and stmtAsService switch the role of the transaction
	// (row-level security, see package authz).
	stmtAsUser    = newStmt("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('request.jwt.claim.sub', $3, true)")
	stmtAsService = newStmt("SELECT set_config('role', 'none', true)")
)

// maxUpdateShapes bounds the UPDATE statements cached per table (one per
// set of changed columns); beyond it every column is written.
const maxUpdateShapes = 64

// table is what the applier knows about an electrified table: its columns
// (catalog order, as clients index them), their attnums (shadow arrays are
// indexed by attnum), its primary key, its foreign keys and its SQL.
type table struct {
	oid     uint32
	name    string // schema.table, for messages
	qual    string // quoted schema.table
	shadow  string // quoted lattice.shadow_<oid>
	cols    []protocol.Column
	attnums []int16
	maxAtt  int
	pk      []int  // column indexes in key order
	isPK    []bool // by column index
	// jsonMerge marks the json/jsonb columns merged per key path (nil if
	// none): lattice.electrified.json_merge.
	jsonMerge []bool
	// applying is what lattice.applying is set to while the service writes
	// this table: its OID, so the stamping trigger leaves the table alone,
	// or "" when a foreign key of the table to itself has an ON DELETE or
	// ON UPDATE action (rows changed by the cascade must be stamped; the
	// service's own shadow writes come later and win).
	applying string

	selBase   [2]*stmt // [lockNoKey], [lockUpdate]
	insShadow *stmt
	selShadow *stmt
	updShadow *stmt
	insBase   *stmt
	// insUser is insBase without ON CONFLICT, for writes as the user:
	// under row-level security ON CONFLICT also requires the new row to
	// pass the SELECT policies, which would refuse write-only inserts.
	insUser *stmt
	pkName  string // the primary key constraint
	delBase *stmt
	updAll  *stmt

	mu      sync.Mutex
	updates map[string]*stmt // by changed-column set
	fkDone  bool
	fks     []fkRef
	refs    []merge.Ref // refs[i].Table is strconv.Itoa(i): the index in fks
}

// fkRef is a foreign key of the table to the primary key of an electrified
// parent. perm[p] is the position, in the Ref's column lists, of the
// parent's p-th key column.
type fkRef struct {
	parent *table
	perm   []int
}

// Row lock modes for base rows.
const (
	lockNoKey  = 0 // FOR NO KEY UPDATE: the row is updated or re-inserted
	lockUpdate = 1 // FOR UPDATE: the row may be deleted
)

// loadTable describes the electrified table oid.
func loadTable(ctx context.Context, q catalog.Querier, cat *catalog.Tables, oid uint32, refresh bool) (*table, error) {
	desc, err := cat.Describe(ctx, oid, refresh)
	if err != nil {
		return nil, err
	}
	var shadow *string
	var attnums []int16
	var names []string
	var selfCascade bool
	var pkName *string
	var jsonMerge []string
	err = q.QueryRow(ctx, `SELECT e.shadow,
			(SELECT array_agg(a.attnum ORDER BY a.attnum) FROM pg_attribute a
			 WHERE a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
			(SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
			 WHERE a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
			EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = e.relid AND c.confrelid = e.relid AND c.contype = 'f'
			        AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd'))),
			(SELECT c.conname::text FROM pg_constraint c WHERE c.conrelid = e.relid AND c.contype = 'p'),
			e.json_merge
		FROM lattice.electrified e WHERE e.relid = $1::oid`, oid).Scan(&shadow, &attnums, &names, &selfCascade, &pkName, &jsonMerge)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s.%s", catalog.ErrNotElectrified, desc.Rel.Schema, desc.Rel.Table)
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s.%s for writes: %w", desc.Rel.Schema, desc.Rel.Table, err)
	}
	name := desc.Rel.Schema + "." + desc.Rel.Table
	if shadow == nil || *shadow == "" {
		return nil, fmt.Errorf("%s has no write metadata: run CALL lattice.electrify('%s') (or restart the service, which adds it)", name, name)
	}
	if len(attnums) != len(desc.Rel.Columns) {
		return nil, fmt.Errorf("%w: %s changed while it was described", errStaleSchema, name)
	}
	for i, c := range desc.Rel.Columns {
		if names[i] != c.Name {
			return nil, fmt.Errorf("%w: %s changed while it was described", errStaleSchema, name)
		}
	}
	t := &table{
		pkName:  optString(pkName),
		oid:     oid,
		name:    name,
		qual:    desc.QualifiedSQL,
		shadow:  *shadow,
		cols:    desc.Rel.Columns,
		attnums: attnums,
		pk:      desc.Rel.PK,
		isPK:    make([]bool, len(desc.Rel.Columns)),
		updates: map[string]*stmt{},
	}
	for i, c := range desc.Rel.Columns {
		if slices.Contains(jsonMerge, c.Name) && (c.Type.Base == coltype.JSON || c.Type.Base == coltype.JSONB) && !c.Type.Array {
			if t.jsonMerge == nil {
				t.jsonMerge = make([]bool, len(desc.Rel.Columns))
			}
			t.jsonMerge[i] = true
		}
	}
	for _, a := range attnums {
		t.maxAtt = max(t.maxAtt, int(a))
	}
	for _, i := range t.pk {
		t.isPK[i] = true
	}
	if !selfCascade {
		t.applying = strconv.FormatUint(uint64(oid), 10)
	}
	t.buildSQL()
	return t, nil
}

func (t *table) colName(i int) string { return catalog.QuoteIdent(t.cols[i].Name) }

// keyWhere is "pk1col = $1 AND pk2col = $2" with column names from name.
func (t *table) keyWhere(name func(k int) string) string {
	var b strings.Builder
	for k := range t.pk {
		if k > 0 {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "%s = $%d", name(k), k+1)
	}
	return b.String()
}

func (t *table) baseKeyWhere() string {
	return t.keyWhere(func(k int) string { return t.colName(t.pk[k]) })
}

func shadowKey(k int) string { return "pk" + strconv.Itoa(k+1) }

func (t *table) buildSQL() {
	all := make([]string, len(t.cols))
	for i := range t.cols {
		all[i] = t.colName(i)
	}
	cols := strings.Join(all, ", ")
	bw := t.baseKeyWhere()
	sw := t.keyWhere(shadowKey)
	shKeys := make([]string, len(t.pk))
	params := make([]string, len(t.pk))
	pkCols := make([]string, len(t.pk))
	for k := range t.pk {
		shKeys[k] = shadowKey(k)
		params[k] = "$" + strconv.Itoa(k+1)
		pkCols[k] = t.colName(t.pk[k])
	}
	n := len(t.pk)

	t.selBase[lockNoKey] = newStmt(fmt.Sprintf("SELECT %s FROM %s WHERE %s FOR NO KEY UPDATE", cols, t.qual, bw))
	t.selBase[lockUpdate] = newStmt(fmt.Sprintf("SELECT %s FROM %s WHERE %s FOR UPDATE", cols, t.qual, bw))
	t.insShadow = newStmt(fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT DO NOTHING",
		t.shadow, strings.Join(shKeys, ", "), strings.Join(params, ", ")))
	t.selShadow = newStmt(fmt.Sprintf("SELECT %s, col_hlc, col_origin, adds, removes, tomb, version, add_ver, docs FROM %s WHERE %s FOR UPDATE",
		strings.Join(shKeys, ", "), t.shadow, sw))
	t.updShadow = newStmt(fmt.Sprintf("UPDATE %s SET col_hlc = $%d, col_origin = $%d, adds = $%d, removes = $%d, tomb = $%d, version = $%d, add_ver = $%d, docs = $%d WHERE %s",
		t.shadow, n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, sw))
	vals := make([]string, len(t.cols))
	var sets []string
	for i := range t.cols {
		vals[i] = "$" + strconv.Itoa(i+1)
		if !t.isPK[i] {
			sets = append(sets, fmt.Sprintf("%s = excluded.%s", all[i], all[i]))
		}
	}
	action := "DO NOTHING"
	if len(sets) > 0 {
		action = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	t.insBase = newStmt(fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s) ON CONFLICT (%s) %s",
		t.qual, cols, strings.Join(vals, ", "), strings.Join(pkCols, ", "), action))
	t.insUser = newStmt(fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s)", t.qual, cols, strings.Join(vals, ", ")))
	t.delBase = newStmt(fmt.Sprintf("DELETE FROM %s WHERE %s", t.qual, bw))
	var nonKey []int
	for i := range t.cols {
		if !t.isPK[i] {
			nonKey = append(nonKey, i)
		}
	}
	if len(nonKey) > 0 {
		t.updAll = t.updateSQL(nonKey)
	}
}

func (t *table) updateSQL(cols []int) *stmt {
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s SET ", t.qual)
	for k, i := range cols {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s = $%d", t.colName(i), len(t.pk)+k+1)
	}
	fmt.Fprintf(&b, " WHERE %s", t.baseKeyWhere())
	return newStmt(b.String())
}

// update returns the UPDATE statement for the changed non-key columns
// cols (ascending), and the columns it writes: cols, or every non-key
// column once maxUpdateShapes statements exist.
func (t *table) update(cols []int) (*stmt, []int) {
	var kb strings.Builder
	for _, i := range cols {
		kb.WriteString(strconv.Itoa(i))
		kb.WriteByte(',')
	}
	key := kb.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.updates[key]; s != nil {
		return s, cols
	}
	if len(t.updates) >= maxUpdateShapes {
		var all []int
		for i := range t.cols {
			if !t.isPK[i] {
				all = append(all, i)
			}
		}
		return t.updAll, all
	}
	s := t.updateSQL(cols)
	t.updates[key] = s
	return s, cols
}

// foreignKeys returns the table's foreign keys to the primary keys of
// electrified tables, resolving them on first use. Foreign keys to other
// unique keys get no compensation (see README).
func (a *Applier) foreignKeys(ctx context.Context, t *table) ([]fkRef, []merge.Ref, error) {
	t.mu.Lock()
	if t.fkDone {
		defer t.mu.Unlock()
		return t.fks, t.refs, nil
	}
	t.mu.Unlock()

	rows, err := a.pool.Query(ctx, `SELECT confrelid::oid, conkey::int2[], confkey::int2[]
		FROM pg_constraint WHERE conrelid = $1::oid AND contype = 'f' ORDER BY conname`, t.oid)
	if err != nil {
		return nil, nil, fmt.Errorf("read foreign keys of %s: %w", t.name, err)
	}
	type con struct {
		parent          uint32
		conkey, confkey []int16
	}
	var cons []con
	for rows.Next() {
		var c con
		if err := rows.Scan(&c.parent, &c.conkey, &c.confkey); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read foreign keys of %s: %w", t.name, err)
		}
		cons = append(cons, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read foreign keys of %s: %w", t.name, err)
	}
	var fks []fkRef
	var refs []merge.Ref
	for _, c := range cons {
		var parent *table
		if c.parent == t.oid {
			parent = t
		} else {
			parent, err = a.tableByOID(ctx, c.parent)
			if errors.Is(err, catalog.ErrNotElectrified) {
				continue // cannot happen through electrify; nothing to compensate
			}
			if err != nil {
				return nil, nil, err
			}
		}
		ref := merge.Ref{Table: strconv.Itoa(len(fks))}
		ok := len(c.conkey) == len(c.confkey) && len(c.confkey) == len(parent.pk)
		for j := 0; ok && j < len(c.conkey); j++ {
			ci, pi := slices.Index(t.attnums, c.conkey[j]), slices.Index(parent.attnums, c.confkey[j])
			if ci < 0 || pi < 0 || !parent.isPK[pi] {
				ok = false
				break
			}
			ref.Cols = append(ref.Cols, ci)
			ref.ParentCols = append(ref.ParentCols, pi)
		}
		if !ok {
			continue
		}
		perm := make([]int, len(parent.pk))
		for p, pc := range parent.pk {
			perm[p] = slices.Index(ref.ParentCols, pc)
		}
		fks = append(fks, fkRef{parent: parent, perm: perm})
		refs = append(refs, ref)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.fkDone {
		t.fks, t.refs, t.fkDone = fks, refs, true
	}
	return t.fks, t.refs, nil
}

func optString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
