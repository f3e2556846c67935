// Package schema keeps the schema history of electrified tables in
// Postgres (table lattice.schema_history): an ordered, versioned record of
// every table's columns (by attnum), primary key and indexes, and of what
// changed from one version to the next. Changes are detected without a
// proxy: an event trigger records plain DDL as it runs and refuses changes
// clients cannot follow (primary-key changes, narrowing type changes);
// where the role may not create event triggers, the service records what
// it sees on the replication stream (Observe) and stops syncing a table
// whose change is not supported. See README.md.
package schema

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed history.sql
var historySQL string

// Querier is the subset of pgx used here.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Event trigger names.
const (
	TriggerDDLEnd  = "lattice_ddl_end"
	TriggerSQLDrop = "lattice_sql_drop"
)

// Install creates (idempotently) the history table and its functions in
// transaction tx, then the event triggers if the role may create them (a
// superuser, before Postgres 17). It reports whether the event triggers
// exist. The lattice schema must exist.
func Install(ctx context.Context, tx pgx.Tx) (eventTriggers bool, err error) {
	if _, err := tx.Exec(ctx, historySQL); err != nil {
		return false, fmt.Errorf("create schema history: %w", err)
	}
	if ok, err := EventTriggers(ctx, tx); err != nil || ok {
		return ok, err
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT lattice_event_triggers"); err != nil {
		return false, fmt.Errorf("create event triggers: %w", err)
	}
	_, err = tx.Exec(ctx, `CREATE EVENT TRIGGER `+TriggerDDLEnd+` ON ddl_command_end EXECUTE FUNCTION lattice.on_ddl_end();
		CREATE EVENT TRIGGER `+TriggerSQLDrop+` ON sql_drop EXECUTE FUNCTION lattice.on_sql_drop()`)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT lattice_event_triggers"); rerr != nil {
				return false, fmt.Errorf("create event triggers: %w", rerr)
			}
			return false, nil
		}
		return false, fmt.Errorf("create event triggers: %w", err)
	}
	if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT lattice_event_triggers"); err != nil {
		return false, fmt.Errorf("create event triggers: %w", err)
	}
	return true, nil
}

// EventTriggers reports whether both event triggers exist and are enabled.
func EventTriggers(ctx context.Context, q Querier) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname IN ($1, $2) AND evtenabled <> 'D'`,
		TriggerDDLEnd, TriggerSQLDrop).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read event triggers: %w", err)
	}
	return n == 2, nil
}

// Observe compares the table with relation OID relid with its last
// recorded version and records a new version if it changed (source
// "replication": the service saw it on the stream, e.g. where no event
// trigger exists). It returns why the change is not supported, or "".
func Observe(ctx context.Context, q Querier, relid uint32) (refused string, err error) {
	var why *string
	if err := q.QueryRow(ctx, `SELECT lattice.record_schema($1::oid, NULL, 'replication', true)`, relid).Scan(&why); err != nil {
		return "", fmt.Errorf("record schema of relation %d: %w", relid, err)
	}
	if why != nil {
		return *why, nil
	}
	return "", nil
}

// Refused returns, for each electrified table (schema.table) whose latest
// version is a refused change, why: the service does not sync it.
func Refused(ctx context.Context, q Querier) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (relid) table_schema, table_name, kind, coalesce(refused, '')
		FROM lattice.schema_history ORDER BY relid, version DESC`)
	if err != nil {
		return nil, fmt.Errorf("read refused schema changes: %w", err)
	}
	out := map[string]string{}
	for rows.Next() {
		var sch, name, kind, why string
		if err := rows.Scan(&sch, &name, &kind, &why); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read refused schema changes: %w", err)
		}
		if kind == KindRefused {
			out[sch+"."+name] = why
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read refused schema changes: %w", err)
	}
	return out, nil
}

// Version kinds.
const (
	KindElectrify = "electrify"
	KindBaseline  = "baseline"
	KindAlter     = "alter"
	KindDropTable = "drop_table"
	KindRefused   = "refused"
)

// Column is a column of a version, as Postgres describes it.
type Column struct {
	Attnum  int16   `json:"attnum"`
	Name    string  `json:"name"`
	Type    string  `json:"type"` // format_type()
	TypeOID uint32  `json:"typid"`
	Typmod  int32   `json:"typmod"`
	NotNull bool    `json:"not_null"`
	Default *string `json:"default"`
}

// Index is a secondary index of a version.
type Index struct {
	Name    string  `json:"name"`
	Unique  bool    `json:"unique"`
	Columns []int16 `json:"columns"` // attnums; 0 for an expression
	Partial bool    `json:"partial"`
	Def     string  `json:"def"` // pg_get_indexdef()
}

// Change is one change from the previous version.
type Change struct {
	Kind   string `json:"kind"` // add_column, drop_column, rename_column, alter_type, alter_column, rename_table, create_index, drop_index
	Column string `json:"column,omitempty"`
	Index  string `json:"index,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Version is one row of lattice.schema_history.
type Version struct {
	Version int64     `json:"version"`
	At      time.Time `json:"at"`
	RelID   uint32    `json:"relid"`
	Schema  string    `json:"schema"`
	Table   string    `json:"table"`
	Kind    string    `json:"kind"`
	Changes []Change  `json:"changes"`
	DDL     string    `json:"ddl,omitempty"`
	Source  string    `json:"source"`
	Columns []Column  `json:"columns"`
	PK      []int16   `json:"pk"` // attnums
	Indexes []Index   `json:"indexes"`
	Refused string    `json:"refused,omitempty"`
}

// History returns the versions after version since, in order; table, if
// not empty, keeps those of tables of that name ("items" or "app.items",
// any name the table had).
func History(ctx context.Context, q Querier, since int64, table string) ([]Version, error) {
	rows, err := q.Query(ctx, `SELECT version, at, relid::int8, table_schema, table_name, kind, changes, coalesce(ddl, ''),
			source, columns, pk, indexes, coalesce(refused, '')
		FROM lattice.schema_history h
		WHERE version > $1 AND ($2 = '' OR relid IN (SELECT x.relid FROM lattice.schema_history x
			WHERE x.table_name = $2 OR x.table_schema || '.' || x.table_name = $2))
		ORDER BY version`, since, table)
	if err != nil {
		return nil, fmt.Errorf("read schema history: %w", err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		var v Version
		var relid int64
		var changes, cols, idx []byte
		if err := rows.Scan(&v.Version, &v.At, &relid, &v.Schema, &v.Table, &v.Kind, &changes, &v.DDL,
			&v.Source, &cols, &v.PK, &idx, &v.Refused); err != nil {
			return nil, fmt.Errorf("read schema history: %w", err)
		}
		v.RelID = uint32(relid)
		if err := json.Unmarshal(changes, &v.Changes); err != nil {
			return nil, fmt.Errorf("read schema history version %d: changes: %w", v.Version, err)
		}
		if err := json.Unmarshal(cols, &v.Columns); err != nil {
			return nil, fmt.Errorf("read schema history version %d: columns: %w", v.Version, err)
		}
		if err := json.Unmarshal(idx, &v.Indexes); err != nil {
			return nil, fmt.Errorf("read schema history version %d: indexes: %w", v.Version, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema history: %w", err)
	}
	return out, nil
}
