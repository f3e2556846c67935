// Package codegen generates the typed TypeScript client of a database's
// electrified tables (`lattice generate`): per table a row type, an insert
// type and an update type, the schema object that createLattice takes to
// create the local tables before any network, and thin typed helpers
// (findMany, findUnique, liveMany, create, update, delete, query) that
// compile to SQLite SQL for the @latticesync/web database.
//
// Load reads the tables from Postgres through server/catalog, so columns,
// types, NOT NULL and local defaults are exactly what the service sends
// clients in its Relation messages; Generate renders the TypeScript. The
// mapping of types is documented in README.md next to this file and in the
// header of the generated code.
package codegen

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/server/catalog"
)

// Schema is the set of electrified tables of a database.
type Schema struct {
	// Tables in dependency order: a table comes after the tables its
	// foreign keys reference (ties by schema and name).
	Tables []*Table
	// Enums used by the tables' columns, by qualified name.
	Enums []*Enum
}

// Table is an electrified table.
type Table struct {
	Schema, Name string
	Columns      []Column
	PK           []string // primary key column names, in key order
	FKs          []ForeignKey
}

// Column is a column of an electrified table.
type Column struct {
	Name    string
	Type    coltype.Type
	NotNull bool
	// Default is the SQLite expression the client uses for local inserts
	// that leave the column out ("" when there is none, or when Postgres'
	// default has no local equivalent, e.g. a sequence).
	Default string
	// PGDefault reports whether Postgres has a default for the column.
	PGDefault bool
	// Enum is the enum type's name (as format_type prints it, without
	// "[]") when the column or its elements are of an enum type.
	Enum string
}

// Enum is an enum type.
type Enum struct {
	Name   string   // as format_type prints it: "mood", or "app.mood" outside the search path
	Labels []string // in sort order
}

// ForeignKey is a foreign key between electrified tables.
type ForeignKey struct {
	Columns    []string
	RefSchema  string
	RefTable   string
	RefColumns []string
}

// Load describes every electrified table of the database q is connected
// to. q's session must use coltype.SessionParams (constant defaults are
// read through Postgres' text output, like the service does).
func Load(ctx context.Context, q catalog.Querier) (*Schema, error) {
	var hasSchema bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('lattice.electrified') IS NOT NULL`).Scan(&hasSchema); err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	if !hasSchema {
		return nil, errors.New("the database has no lattice schema: electrify tables first (lattice electrify TABLE, or start lattice serve)")
	}
	rows, err := q.Query(ctx, `SELECT c.oid FROM lattice.electrified e
		JOIN pg_class c ON c.oid = e.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY n.nspname, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list electrified tables: %w", err)
	}
	var oids []uint32
	for rows.Next() {
		var oid uint32
		if err := rows.Scan(&oid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list electrified tables: %w", err)
		}
		oids = append(oids, oid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list electrified tables: %w", err)
	}

	enumCols, enums, err := loadEnums(ctx, q)
	if err != nil {
		return nil, err
	}
	pgDefaults, err := loadPGDefaults(ctx, q)
	if err != nil {
		return nil, err
	}
	fks, err := loadFKs(ctx, q)
	if err != nil {
		return nil, err
	}

	cat := catalog.NewTables(q)
	byOID := map[uint32]*Table{}
	var tables []*Table
	for _, oid := range oids {
		d, err := cat.Describe(ctx, oid, true)
		if err != nil {
			return nil, fmt.Errorf("describe table %d: %w", oid, err)
		}
		t := &Table{Schema: d.Rel.Schema, Name: d.Rel.Table}
		for _, c := range d.Rel.Columns {
			key := colKey{oid, c.Name}
			t.Columns = append(t.Columns, Column{
				Name: c.Name, Type: c.Type, NotNull: c.NotNull, Default: c.Default,
				PGDefault: pgDefaults[key], Enum: enumCols[key],
			})
		}
		for _, i := range d.Rel.PK {
			t.PK = append(t.PK, d.Rel.Columns[i].Name)
		}
		byOID[oid] = t
		tables = append(tables, t)
	}
	deps := map[*Table][]*Table{}
	for _, fk := range fks {
		t, ref := byOID[fk.oid], byOID[fk.refOID]
		if t == nil || ref == nil {
			continue // a key to a table that is not electrified (refused by electrify)
		}
		t.FKs = append(t.FKs, ForeignKey{Columns: fk.cols, RefSchema: ref.Schema, RefTable: ref.Name, RefColumns: fk.refCols})
		if ref != t {
			deps[t] = append(deps[t], ref)
		}
	}
	s := &Schema{Tables: dependencyOrder(tables, deps)}
	var names []string
	for n := range enums {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Enums = append(s.Enums, enums[n])
	}
	return s, nil
}

type colKey struct {
	oid  uint32
	name string
}

// loadEnums returns the enum type name of every enum (or enum array)
// column of electrified tables, and the enums with their labels.
func loadEnums(ctx context.Context, q catalog.Querier) (map[colKey]string, map[string]*Enum, error) {
	rows, err := q.Query(ctx, `SELECT a.attrelid::oid, a.attname, format_type(et.oid, NULL),
			array_agg(en.enumlabel::text ORDER BY en.enumsortorder)
		FROM lattice.electrified e
		JOIN pg_attribute a ON a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped
		JOIN pg_type t ON t.oid = a.atttypid
		JOIN pg_type et ON et.oid = CASE WHEN t.typtype = 'e' THEN t.oid ELSE t.typelem END AND et.typtype = 'e'
		JOIN pg_enum en ON en.enumtypid = et.oid
		GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, nil, fmt.Errorf("read enum types: %w", err)
	}
	defer rows.Close()
	cols := map[colKey]string{}
	enums := map[string]*Enum{}
	for rows.Next() {
		var k colKey
		var e Enum
		if err := rows.Scan(&k.oid, &k.name, &e.Name, &e.Labels); err != nil {
			return nil, nil, fmt.Errorf("read enum types: %w", err)
		}
		cols[k] = e.Name
		enums[e.Name] = &e
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read enum types: %w", err)
	}
	return cols, enums, nil
}

// loadPGDefaults returns the columns of electrified tables that have a
// Postgres default.
func loadPGDefaults(ctx context.Context, q catalog.Querier) (map[colKey]bool, error) {
	rows, err := q.Query(ctx, `SELECT a.attrelid::oid, a.attname
		FROM lattice.electrified e
		JOIN pg_attribute a ON a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE a.atthasdef OR a.attidentity <> ''`)
	if err != nil {
		return nil, fmt.Errorf("read column defaults: %w", err)
	}
	defer rows.Close()
	m := map[colKey]bool{}
	for rows.Next() {
		var k colKey
		if err := rows.Scan(&k.oid, &k.name); err != nil {
			return nil, fmt.Errorf("read column defaults: %w", err)
		}
		m[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read column defaults: %w", err)
	}
	return m, nil
}

type fkRow struct {
	oid, refOID   uint32
	cols, refCols []string
}

// loadFKs returns the foreign keys of electrified tables, columns in key
// order.
func loadFKs(ctx context.Context, q catalog.Querier) ([]fkRow, error) {
	rows, err := q.Query(ctx, `SELECT c.conrelid::oid, c.confrelid::oid,
			array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
				JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
			array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
				JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
		FROM pg_constraint c JOIN lattice.electrified e ON e.relid = c.conrelid
		WHERE c.contype = 'f'
		ORDER BY c.conrelid, c.conname`)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	var out []fkRow
	for rows.Next() {
		var r fkRow
		if err := rows.Scan(&r.oid, &r.refOID, &r.cols, &r.refCols); err != nil {
			return nil, fmt.Errorf("read foreign keys: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	return out, nil
}

// dependencyOrder sorts tables so that referenced tables come first,
// keeping the given order otherwise; cycles are broken in that order.
func dependencyOrder(tables []*Table, deps map[*Table][]*Table) []*Table {
	out := make([]*Table, 0, len(tables))
	state := map[*Table]int{} // 1 visiting, 2 done
	var visit func(t *Table)
	visit = func(t *Table) {
		if state[t] != 0 {
			return
		}
		state[t] = 1
		for _, d := range deps[t] {
			visit(d)
		}
		state[t] = 2
		out = append(out, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return out
}

// qualified returns schema.name for messages.
func (t *Table) qualified() string {
	return t.Schema + "." + t.Name
}

// LocalName is the name of the table in the client's SQLite database: the
// table name for schema public, "<schema>.<table>" otherwise (as one
// identifier), like the client names it.
func (t *Table) LocalName() string {
	if t.Schema == "public" || t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}
