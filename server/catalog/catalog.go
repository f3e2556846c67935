// Package catalog is the service's view of Postgres: it bootstraps the
// lattice schema, the publication and the replication slot, checks that the
// database is configured for logical replication, electrifies tables, and
// describes electrified tables (columns, types, primary keys).
package catalog

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/schema"
)

//go:embed schema.sql
var schemaSQL string

// Publication is the name of the publication holding electrified tables.
const Publication = "lattice"

// ErrNotElectrified is returned for tables that are not opted in to sync.
var ErrNotElectrified = errors.New("table is not electrified")

// ErrUnknownTable is returned for names that resolve to no table.
var ErrUnknownTable = errors.New("unknown table")

// BadName reports whether err, from resolving a client's table name with
// to_regclass, says the name itself is malformed (invalid name syntax, too
// many dotted names, a cross-database reference, bad text), so that the
// name resolves to no table. Any other error, among them those of a
// Postgres that is restarting or unreachable ("the database system is
// starting up", a failed connect: also *pgconn.PgError), says nothing of
// the table: the caller must treat it as transient, not as an unknown
// table, which a client takes as final (it drops the shape or the write).
func BadName(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch {
	case pgErr.Code == "42501": // insufficient_privilege: the service's role
		return false
	case strings.HasPrefix(pgErr.Code, "42"), // syntax error or access rule violation (42601, 42602)
		strings.HasPrefix(pgErr.Code, "22"), // data exception (a name that is not valid text)
		pgErr.Code == "0A000":               // feature_not_supported (a cross-database reference)
		return true
	}
	return false
}

// ConfigError says what is wrong with the database configuration and how
// to fix it.
type ConfigError struct {
	Problem string
	Fix     string
}

func (e *ConfigError) Error() string { return e.Problem + ": " + e.Fix }

// Querier is the subset of pgx used here.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Check verifies that the server can run logical replication for this role.
func Check(ctx context.Context, q Querier) error {
	var walLevel string
	if err := q.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return &ConfigError{
			Problem: fmt.Sprintf("Postgres has wal_level = %s, Lattice needs logical", walLevel),
			Fix:     "run ALTER SYSTEM SET wal_level = logical (or set it in postgresql.conf) and restart Postgres",
		}
	}
	var role, db string
	var repl, super, canCreate, schemaExists bool
	err := q.QueryRow(ctx, `SELECT current_user, current_database(), r.rolreplication, r.rolsuper,
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'lattice')
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&role, &db, &repl, &super, &canCreate, &schemaExists)
	if err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !repl && !super {
		return &ConfigError{
			Problem: fmt.Sprintf("role %q cannot use logical replication", role),
			Fix:     fmt.Sprintf("run ALTER ROLE %s WITH REPLICATION as a superuser", QuoteIdent(role)),
		}
	}
	var pubExists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, Publication).Scan(&pubExists); err != nil {
		return fmt.Errorf("read publications: %w", err)
	}
	if (!schemaExists || !pubExists) && !canCreate && !super {
		return &ConfigError{
			Problem: fmt.Sprintf("role %q may not create the lattice schema and publication in database %q", role, db),
			Fix:     fmt.Sprintf("run GRANT CREATE ON DATABASE %s TO %s", QuoteIdent(db), QuoteIdent(role)),
		}
	}
	return nil
}

// Bootstrap creates (idempotently) the lattice schema, its functions and the
// publication.
func Bootstrap(ctx context.Context, pool *pgxpool.Pool) error {
	if err := Check(ctx, pool); err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin bootstrap: %w", err)
	}
	defer tx.Rollback(ctx)
	// One bootstrap at a time per database (two services starting together).
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('lattice.bootstrap'))"); err != nil {
		return fmt.Errorf("lock bootstrap: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("create lattice schema: %w", err)
	}
	if _, err := schema.Install(ctx, tx); err != nil {
		return err
	}
	var pubExists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, Publication).Scan(&pubExists); err != nil {
		return fmt.Errorf("read publications: %w", err)
	}
	if !pubExists {
		if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+Publication); err != nil {
			return fmt.Errorf("create publication: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit bootstrap: %w", err)
	}
	return nil
}

// Electrify opts a table in to sync (CALL lattice.electrify).
func Electrify(ctx context.Context, q Querier, table string) error {
	if _, err := q.Exec(ctx, "CALL lattice.electrify($1::text::regclass)", table); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			msg := pgErr.Message
			if pgErr.Hint != "" {
				msg += " (hint: " + pgErr.Hint + ")"
			}
			return errors.New(msg)
		}
		return fmt.Errorf("electrify %s: %w", table, err)
	}
	return nil
}

// Slot describes a replication slot.
type Slot struct {
	Name        string
	Active      bool
	ActivePID   int
	RetainedWAL int64 // bytes of WAL Postgres keeps for it
}

// EnsureSlot creates the logical slot name for pgoutput unless it exists.
// It reports whether the slot was created now.
func EnsureSlot(ctx context.Context, q Querier, name string) (created bool, err error) {
	var exists bool
	var plugin *string
	err = q.QueryRow(ctx, `SELECT count(*) > 0, max(plugin) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, name).Scan(&exists, &plugin)
	if err != nil {
		return false, fmt.Errorf("read slots: %w", err)
	}
	if exists {
		if plugin == nil || *plugin != "pgoutput" {
			return false, fmt.Errorf("slot %s exists but does not use pgoutput", name)
		}
		return false, nil
	}
	if _, err := q.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name); err != nil {
		return false, fmt.Errorf("create replication slot %s: %w", name, err)
	}
	return true, nil
}

// OtherSlots lists lattice slots in this database other than mine: slots
// left behind by other or dead services hold WAL until dropped.
func OtherSlots(ctx context.Context, q Querier, mine string) ([]Slot, error) {
	rows, err := q.Query(ctx, `SELECT slot_name, active, coalesce(active_pid, 0),
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
		FROM pg_replication_slots
		WHERE database = current_database() AND slot_name LIKE 'lattice\_%' AND slot_name <> $1
		ORDER BY slot_name`, mine)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Slot, error) {
		var s Slot
		err := r.Scan(&s.Name, &s.Active, &s.ActivePID, &s.RetainedWAL)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	return slots, nil
}

// Tables describes electrified tables, caching descriptions by OID.
type Tables struct {
	q  Querier
	mu sync.Mutex
	// by relation OID
	rels map[uint32]*Table
}

// Table is an electrified table.
type Table struct {
	OID uint32
	Rel *changelog.Rel
	// QualifiedSQL is the quoted schema.table for queries.
	QualifiedSQL string
}

// NewTables returns a catalog reader using q.
func NewTables(q Querier) *Tables {
	return &Tables{q: q, rels: map[uint32]*Table{}}
}

// Lookup resolves a table name ("items", "public.items", "Sch.Items" with
// Postgres' identifier rules) to an electrified table.
func (t *Tables) Lookup(ctx context.Context, name string) (*Table, error) {
	var oid uint32
	var electrified bool
	err := t.q.QueryRow(ctx, `SELECT c.oid, EXISTS (SELECT 1 FROM lattice.electrified e WHERE e.relid = c.oid)
		FROM pg_class c WHERE c.oid = to_regclass($1)`, name).Scan(&oid, &electrified)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w %q", ErrUnknownTable, name)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if BadName(err) && errors.As(err, &pgErr) {
			return nil, fmt.Errorf("%w %q: %s", ErrUnknownTable, name, pgErr.Message)
		}
		return nil, fmt.Errorf("look up table %q: %w", name, err)
	}
	if !electrified {
		return nil, fmt.Errorf("%w: %s (run CALL lattice.electrify('%s'))", ErrNotElectrified, name, name)
	}
	// Reread the catalog: the table may have changed since it was cached.
	return t.Describe(ctx, oid, true)
}

// Describe returns the table with relation OID oid. With refresh it rereads
// the catalog (after a schema change).
func (t *Tables) Describe(ctx context.Context, oid uint32, refresh bool) (*Table, error) {
	t.mu.Lock()
	tb := t.rels[oid]
	t.mu.Unlock()
	if tb != nil && !refresh {
		return tb, nil
	}
	tb, err := describe(ctx, t.q, oid)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if old := t.rels[oid]; old != nil && SameRel(old.Rel, tb.Rel) {
		tb = old
	} else {
		t.rels[oid] = tb
	}
	t.mu.Unlock()
	return tb, nil
}

func describe(ctx context.Context, q Querier, oid uint32) (*Table, error) {
	var schema, name string
	err := q.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(&schema, &name)
	if err != nil {
		return nil, fmt.Errorf("describe relation %d: %w", oid, err)
	}
	rows, err := q.Query(ctx, `SELECT a.attnum, a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			t.typtype::text, coalesce(e.typtype::text, ''), t.typcategory::text, coalesce(pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute a
		JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("describe %s.%s: %w", schema, name, err)
	}
	rel := &changelog.Rel{Schema: schema, Table: name}
	attnums := map[int16]int{}
	var defaults []string
	for rows.Next() {
		var attnum int16
		var col protocol.Column
		var typOID uint32
		var typName, typType, elemType, category, defExpr string
		if err := rows.Scan(&attnum, &col.Name, &typOID, &typName, &col.NotNull, &typType, &elemType, &category, &defExpr); err != nil {
			rows.Close()
			return nil, fmt.Errorf("describe %s.%s: %w", schema, name, err)
		}
		typ, ok := coltype.BuiltinByOID(typOID)
		switch {
		case ok:
		case typType == "e":
			typ = coltype.Type{Base: coltype.Enum}
		case category == "A" && elemType == "e":
			typ = coltype.Type{Base: coltype.Enum, Array: true}
		default:
			rows.Close()
			return nil, fmt.Errorf("%s.%s column %s has unsupported type %s", schema, name, col.Name, typName)
		}
		typ.Name = typName
		col.Type = typ
		attnums[attnum] = len(rel.Columns)
		rel.Columns = append(rel.Columns, col)
		rel.Attnums = append(rel.Attnums, attnum)
		defaults = append(defaults, defExpr)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describe %s.%s: %w", schema, name, err)
	}
	for i, expr := range defaults {
		rel.Columns[i].Default = localDefault(ctx, q, expr, rel.Columns[i].Type)
	}
	var key []int16
	err = q.QueryRow(ctx, `SELECT indkey::int2[] FROM pg_index WHERE indrelid = $1 AND indisprimary`, oid).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s.%s has no primary key", schema, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", schema, name, err)
	}
	for _, k := range key {
		i, ok := attnums[k]
		if !ok {
			return nil, fmt.Errorf("primary key of %s.%s uses an unsupported column", schema, name)
		}
		rel.PK = append(rel.PK, i)
	}
	return &Table{OID: oid, Rel: rel, QualifiedSQL: QuoteIdent(schema) + "." + QuoteIdent(name)}, nil
}

// SameRel reports whether two relation descriptions are identical.
func SameRel(a, b *changelog.Rel) bool {
	if a.Schema != b.Schema || a.Table != b.Table || len(a.Columns) != len(b.Columns) || len(a.PK) != len(b.PK) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	for i := range a.PK {
		if a.PK[i] != b.PK[i] {
			return false
		}
	}
	if a.Attnums != nil && b.Attnums != nil && len(a.Attnums) == len(b.Attnums) {
		for i := range a.Attnums {
			if a.Attnums[i] != b.Attnums[i] {
				return false
			}
		}
	}
	return true
}

// ColumnList is the quoted, comma-separated column list of rel.
func ColumnList(rel *changelog.Rel) string {
	var b strings.Builder
	for i, c := range rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(QuoteIdent(c.Name))
	}
	return b.String()
}

// QuoteIdent quotes an SQL identifier.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
