package codegen

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/latticesync/lattice/coltype"
)

//go:embed runtime.ts
var runtimeTS []byte

// Int8 says how bigint columns appear in rows.
type Int8 string

const (
	// Int8String: rows hold bigints as decimal text (the helpers select
	// CAST(col AS TEXT)), exact at any size. The default.
	Int8String Int8 = "string"
	// Int8Number: rows hold what the database returns for an INTEGER: a
	// number within ±2^53, a bigint beyond (typed number | bigint).
	Int8Number Int8 = "number"
)

// Options tune Generate. The zero value uses the defaults.
type Options struct {
	Int8 Int8 // default Int8String
}

// Generate renders the TypeScript client of s: file name to contents
// ("index.ts", the schema's types, schema object and helpers; "runtime.ts",
// the SQL compiler they share).
func Generate(s *Schema, opts *Options) (map[string][]byte, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	switch o.Int8 {
	case "":
		o.Int8 = Int8String
	case Int8String, Int8Number:
	default:
		return nil, fmt.Errorf("bad int8 mode %q: use string or number", o.Int8)
	}
	g := &gen{s: s, o: o, used: map[string]bool{}}
	for _, n := range reservedNames {
		g.used[n] = true
	}
	if err := g.names(); err != nil {
		return nil, err
	}
	g.index()
	return map[string][]byte{"index.ts": g.b.Bytes(), "runtime.ts": runtimeTS}, nil
}

// Names exported by index.ts for the runtime.
var reservedNames = []string{
	"LatticeLike", "Row", "SqlValue", "ExecResult", "Query", "Ops", "Filter", "Where", "OrderBy",
	"FindManyArgs", "TableHelpers", "TableQueries", "Tables", "Queries",
}

type gen struct {
	s      *Schema
	o      Options
	b      bytes.Buffer
	used   map[string]bool // type names taken
	enums  map[string]string
	tables []tableNames
}

type tableNames struct {
	t    *Table
	key  string // property in tables(db) / queries
	typ  string // row type name; Insert, Update, Values, Key appended
	meta string // const holding its TableMeta
}

func (g *gen) unique(base, suffix string) string {
	name := base
	if g.used[name] && suffix != "" {
		name = base + suffix
	}
	for i := 2; g.used[name]; i++ {
		name = fmt.Sprintf("%s%d", base+suffix, i)
	}
	g.used[name] = true
	return name
}

func (g *gen) names() error {
	keys := map[string]bool{}
	for i, t := range g.s.Tables {
		base := pascal(t.Name)
		key := camel(t.Name)
		if t.Schema != "public" {
			base = pascal(t.Schema) + base
			key = camel(t.Schema) + "_" + camel(t.Name)
		}
		if keys[key] {
			return fmt.Errorf("tables %s and another table both map to the name %q in tables(db): rename one", t.qualified(), key)
		}
		keys[key] = true
		// Reserve the derived names too.
		typ := base
		for {
			free := !g.used[typ]
			for _, sfx := range []string{"Insert", "Update", "Values", "Key"} {
				free = free && !g.used[typ+sfx]
			}
			if free {
				break
			}
			typ += "Table"
		}
		for _, sfx := range []string{"", "Insert", "Update", "Values", "Key"} {
			g.used[typ+sfx] = true
		}
		g.tables = append(g.tables, tableNames{t: t, key: key, typ: typ, meta: fmt.Sprintf("table%d", i)})
	}
	g.enums = map[string]string{}
	for _, e := range g.s.Enums {
		g.enums[e.Name] = g.unique(pascal(strings.ReplaceAll(e.Name, ".", "_")), "Enum")
	}
	return nil
}

func (g *gen) p(format string, args ...any) {
	fmt.Fprintf(&g.b, format, args...)
}

func (g *gen) index() {
	g.p("%s", header)
	if g.o.Int8 == Int8String {
		g.p("%s", int8StringDoc)
	} else {
		g.p("%s", int8NumberDoc)
	}
	g.p("%s", headerEnd)
	g.p("import * as rt from './runtime.js';\n\n")
	g.p("export type {\n  LatticeLike, Row, SqlValue, ExecResult, Query, Ops, Filter, Where, OrderBy, FindManyArgs, TableHelpers, TableQueries,\n} from './runtime.js';\n")

	for _, e := range g.s.Enums {
		g.p("\n/** Postgres enum %s. */\nexport type %s =", comment(e.Name), g.enums[e.Name])
		if len(e.Labels) == 0 {
			g.p(" never;\n")
			continue
		}
		for _, l := range e.Labels {
			g.p("\n  | %s", jsString(l))
		}
		g.p(";\n")
	}

	for _, tn := range g.tables {
		g.table(tn)
	}
	g.schemaObject()
	g.metas()
	g.helpers()
}

func (g *gen) table(tn tableNames) {
	t := tn.t
	pk := map[string]bool{}
	for _, k := range t.PK {
		pk[k] = true
	}
	fkOf := map[string]string{}
	for _, fk := range t.FKs {
		ref := fk.RefTable
		if fk.RefSchema != "public" {
			ref = fk.RefSchema + "." + ref
		}
		for i, c := range fk.Columns {
			if len(fk.Columns) == 1 {
				fkOf[c] = appendSep(fkOf[c], "; ", fmt.Sprintf("references %s(%s)", ref, fk.RefColumns[i]))
			} else {
				fkOf[c] = appendSep(fkOf[c], "; ", fmt.Sprintf("(%s) references %s(%s)", strings.Join(fk.Columns, ", "), ref, strings.Join(fk.RefColumns, ", ")))
			}
		}
	}

	g.p("\n// ---- %s (local table %s)\n", comment(t.qualified()), comment(jsString(t.LocalName())))
	g.p("\n/** A row of %s. */\nexport type %s = {\n", comment(t.qualified()), tn.typ)
	for _, c := range t.Columns {
		doc := c.Type.String()
		if c.NotNull {
			doc += " NOT NULL"
		}
		if pk[c.Name] {
			doc += ", primary key"
		}
		if f := fkOf[c.Name]; f != "" {
			doc += ", " + f
		}
		g.p("  /** %s */\n  %s: %s;\n", comment(doc), propName(c.Name), nullable(g.rowType(c), !c.NotNull))
	}
	g.p("};\n")

	g.p("\n/** What create() takes for %s: columns with a local default, and nullable columns, may be left out. */\nexport type %sInsert = {\n", comment(t.qualified()), tn.typ)
	for _, c := range t.Columns {
		opt := !c.NotNull || c.Default != ""
		switch {
		case c.Default != "":
			g.p("  /** default: %s */\n", comment(c.Default))
		case c.PGDefault && c.NotNull:
			g.p("  /** Postgres' default of this column has no local equivalent (e.g. a sequence): give a value. */\n")
		}
		g.p("  %s%s: %s;\n", propName(c.Name), optMark(opt), nullable(g.valueType(c), !c.NotNull))
	}
	g.p("};\n")

	var upd []Column
	for _, c := range t.Columns {
		if !pk[c.Name] {
			upd = append(upd, c)
		}
	}
	g.p("\n/** What update() sets for %s: any columns but the primary key. */\n", comment(t.qualified()))
	if len(upd) == 0 {
		g.p("export type %sUpdate = Record<string, never>;\n", tn.typ)
	} else {
		g.p("export type %sUpdate = {\n", tn.typ)
		for _, c := range upd {
			g.p("  %s?: %s;\n", propName(c.Name), nullable(g.valueType(c), !c.NotNull))
		}
		g.p("};\n")
	}

	g.p("\n/** The values a where clause on %s compares each column with. */\nexport type %sValues = {\n", comment(t.qualified()), tn.typ)
	for _, c := range t.Columns {
		g.p("  %s: %s;\n", propName(c.Name), g.valueType(c))
	}
	g.p("};\n")

	g.p("\n/** The primary key of %s, for findUnique. */\nexport type %sKey = {\n", comment(t.qualified()), tn.typ)
	for _, k := range t.PK {
		for _, c := range t.Columns {
			if c.Name == k {
				g.p("  %s: %s;\n", propName(c.Name), g.valueType(c))
			}
		}
	}
	g.p("};\n")
}

// rowType is the TypeScript type of a column's non-NULL value in rows.
func (g *gen) rowType(c Column) string {
	if c.Type.Array {
		return "string"
	}
	switch c.Type.Base {
	case coltype.Int2, coltype.Int4:
		return "number"
	case coltype.Int8:
		if g.o.Int8 == Int8String {
			return "string"
		}
		return "number | bigint"
	case coltype.Float4, coltype.Float8:
		return "number | 'NaN'"
	case coltype.Bool:
		return "0 | 1"
	case coltype.Bytea:
		return "Uint8Array"
	case coltype.Enum:
		if n, ok := g.enums[c.Enum]; ok {
			return n
		}
		return "string"
	}
	return "string"
}

// valueType is the TypeScript type of the non-NULL values the helpers
// accept for a column (inserts, updates, where clauses).
func (g *gen) valueType(c Column) string {
	if c.Type.Array {
		return "string"
	}
	switch c.Type.Base {
	case coltype.Int8:
		return "string | number | bigint"
	case coltype.Numeric:
		return "string | number"
	case coltype.Bool:
		return "boolean | 0 | 1"
	case coltype.Date, coltype.Timestamp, coltype.Timestamptz:
		return "string | Date"
	}
	return g.rowType(c)
}

// schemaObject writes the schema createLattice takes.
func (g *gen) schemaObject() {
	type col struct {
		Name    string  `json:"name"`
		Type    string  `json:"type"`
		Array   bool    `json:"array"`
		Enum    *string `json:"enum"`
		NotNull bool    `json:"notNull"`
		Default *string `json:"default"`
	}
	type table struct {
		Schema     string   `json:"schema"`
		Name       string   `json:"name"`
		Columns    []col    `json:"columns"`
		PrimaryKey []string `json:"primaryKey"`
	}
	type schema struct {
		Version int     `json:"version"`
		Tables  []table `json:"tables"`
	}
	s := schema{Version: 1, Tables: []table{}}
	for _, t := range g.s.Tables {
		tb := table{Schema: t.Schema, Name: t.Name, PrimaryKey: t.PK}
		for _, c := range t.Columns {
			cc := col{Name: c.Name, Type: c.Type.Base.String(), Array: c.Type.Array, NotNull: c.NotNull}
			if c.Enum != "" {
				e := c.Enum
				cc.Enum = &e
			}
			if c.Default != "" {
				d := c.Default
				cc.Default = &d
			}
			tb.Columns = append(tb.Columns, cc)
		}
		s.Tables = append(s.Tables, tb)
	}
	g.p("\n/**\n * The electrified tables, for createLattice({ schema }): the local tables are\n")
	g.p(" * created from it on the first load, before any network. Tables are in\n")
	g.p(" * dependency order (referenced tables first). `type` is the Postgres base\n")
	g.p(" * type (\"enum\" for enums, whose type is named in `enum`), `default` the\n")
	g.p(" * SQLite expression local inserts use (as the service sends it).\n */\n")
	g.p("export const schema = {\n  \"version\": %d,\n  \"tables\": [\n", s.Version)
	for i, t := range s.Tables {
		g.p("    {\n      \"schema\": %s,\n      \"name\": %s,\n      \"columns\": [\n", jsString(t.Schema), jsString(t.Name))
		for j, c := range t.Columns {
			g.p("        %s%s\n", jsonText(c), comma(j, len(t.Columns)))
		}
		g.p("      ],\n      \"primaryKey\": %s\n    }%s\n", jsonText(t.PrimaryKey), comma(i, len(s.Tables)))
	}
	g.p("  ]\n} as const;\n")
}

func (g *gen) metas() {
	g.p("\n")
	for _, tn := range g.tables {
		t := tn.t
		g.p("const %s: rt.TableMeta = {\n  local: %s,\n  columns: [\n", tn.meta, jsString(t.LocalName()))
		for _, c := range t.Columns {
			kind := map[coltype.Base]string{coltype.Date: "date", coltype.Timestamp: "timestamp", coltype.Timestamptz: "timestamptz"}[c.Type.Base]
			switch {
			case c.Type.Array:
				g.p("    { name: %s },\n", jsString(c.Name))
			case c.Type.Base == coltype.Int8 && g.o.Int8 == Int8String:
				expr := "CAST(" + quoteIdent(t.LocalName()) + "." + quoteIdent(c.Name) + " AS TEXT)"
				g.p("    { name: %s, select: %s },\n", jsString(c.Name), jsString(expr))
			case kind != "":
				g.p("    { name: %s, kind: %s },\n", jsString(c.Name), jsString(kind))
			default:
				g.p("    { name: %s },\n", jsString(c.Name))
			}
		}
		g.p("  ],\n  pk: [")
		for i, k := range t.PK {
			if i > 0 {
				g.p(", ")
			}
			g.p("%s", jsString(k))
		}
		g.p("],\n};\n")
	}
}

func (g *gen) helpers() {
	g.p("\n/** The typed helpers of every table, bound to a database. */\nexport interface Tables {\n")
	for _, tn := range g.tables {
		g.p("  %s: rt.TableHelpers<%[2]s, %[2]sInsert, %[2]sUpdate, %[2]sValues, %[2]sKey>;\n", propName(tn.key), tn.typ)
	}
	g.p("}\n")
	g.p("\n/** The SQL builders of every table (no database needed), e.g. for useLiveQuery. */\nexport interface Queries {\n")
	for _, tn := range g.tables {
		g.p("  %s: rt.TableQueries<%[2]sValues, %[2]sKey>;\n", propName(tn.key), tn.typ)
	}
	g.p("}\n")
	g.p("\n/** Typed helpers over db, e.g. `tables(db).issue.findMany({ where: { status: 'open' } })`. */\n")
	g.p("export function tables(db: rt.LatticeLike): Tables {\n  return {\n")
	for _, tn := range g.tables {
		g.p("    %s: rt.tableHelpers(db, %s),\n", propName(tn.key), tn.meta)
	}
	g.p("  };\n}\n")
	g.p("\n/** SQL builders, e.g. `const q = queries.issue.findMany({ limit: 10 }); useLiveQuery(q.sql, q.params)`. */\n")
	g.p("export const queries: Queries = {\n")
	for _, tn := range g.tables {
		g.p("  %s: rt.tableQueries(%s),\n", propName(tn.key), tn.meta)
	}
	g.p("};\n")
}

const header = `// Code generated by lattice generate. DO NOT EDIT.
//
// Types, schema and helpers for the electrified tables of a Lattice database.
//
//   import { createLattice } from '@latticesync/web';
//   import { schema, tables, queries } from './lattice/index.js';
//   const db = await createLattice({ url, token, dbName: 'app', schema });
//   const t = tables(db);
//   // for a table issue (id uuid DEFAULT gen_random_uuid(), title text, status status_t, created_at timestamptz):
//   await t.issue.create({ title: 'hello' });
//   const open = await t.issue.findMany({ where: { status: { in: ['open', 'doing'] } }, orderBy: { created_at: 'desc' }, limit: 20 });
//   const q = queries.issue.findMany({ where: { title: { like: 'a%' } } }); // { sql, params } for useLiveQuery(q.sql, q.params)
//
// What rows contain (the local SQLite representation, see coltype/README.md
// in the Lattice repository), and what the helpers accept:
//
//   Postgres                          row value                  accepted
//   smallint, integer                 number                     number
`

const int8StringDoc = `//   bigint                            string (decimal text;      string | number | bigint
//                                     the helpers select it as
//                                     CAST(col AS TEXT))
`

const int8NumberDoc = `//   bigint                            number (within ±2^53),     string | number | bigint
//                                     bigint beyond
`

const headerEnd = `//   real, double precision            number, or 'NaN'           number | 'NaN'
//   numeric                           string (exact decimal)     string | number
//   boolean                           0 | 1                      boolean | 0 | 1
//   text, varchar, char, name         string                     string
//   enum                              union of its labels        the same
//   uuid                              string (lower case)        string
//   time                              string (ISO 8601)          string
//   date, timestamp                   string (ISO 8601)          string | Date (its UTC date / time)
//   timestamptz                       string, UTC ('...Z')       string | Date
//   interval                          string (ISO 8601)          string
//   json, jsonb                       string (JSON text)         string: JSON.stringify it
//   bytea                             Uint8Array                 Uint8Array
//   arrays                            string (a JSON array)      string: JSON.stringify it
//
// NULL is null. Rows read with hand-written SQL (db.query('SELECT * ...'))
// hold the same values, except bigint, which is then a number (a bigint
// beyond ±2^53) unless the query casts it to text.
//
// tables(db) names each table by the camelCase of its name for schema
// public (issue_comment -> issueComment), <schema>_<table> in camelCase
// otherwise (app.user_role -> app_userRole). Types are PascalCase (IssueComment,
// IssueCommentInsert, IssueCommentUpdate, IssueCommentValues, IssueCommentKey).
// Where clauses: { col: value } (null is IS NULL), or operators
// { eq, ne, gt, gte, lt, lte, in, notIn, isNull, like, notLike }; entries
// are ANDed, AND: [...] / OR: [...] / NOT: {...} combine clauses. Every
// value is a ? parameter. timestamptz columns order and compare without
// their 'Z' suffix, so that fractions of a second sort right.

`

var identRe = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// propName is a property name for an object type or literal.
func propName(s string) string {
	if identRe.MatchString(s) {
		return s
	}
	return jsString(s)
}

func jsString(s string) string {
	return jsonText(s)
}

// jsonText is v as JSON, which is also a TypeScript expression.
func jsonText(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only strings, bools, slices and structs of them
	}
	return strings.TrimRight(buf.String(), "\n")
}

func comma(i, n int) string {
	if i < n-1 {
		return ","
	}
	return ""
}

// comment makes s safe inside a /* */ comment.
func comment(s string) string {
	return strings.ReplaceAll(s, "*/", "*\\/")
}

func nullable(t string, null bool) string {
	if null {
		return t + " | null"
	}
	return t
}

func optMark(opt bool) string {
	if opt {
		return "?"
	}
	return ""
}

func appendSep(s, sep, more string) string {
	if s == "" {
		return more
	}
	return s + sep + more
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// words splits a name at characters that are not letters or digits.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r)) || r > unicode.MaxASCII
	})
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// pascal turns a Postgres name into a TypeScript type name:
// issue_comment -> IssueComment.
func pascal(s string) string {
	var b strings.Builder
	for _, w := range words(s) {
		b.WriteString(upperFirst(w))
	}
	out := b.String()
	if out == "" || unicode.IsDigit(rune(out[0])) {
		out = "T" + out
	}
	return out
}

// camel turns a Postgres name into a property name:
// issue_comment -> issueComment.
func camel(s string) string {
	ws := words(s)
	if len(ws) == 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(strings.ToLower(ws[0][:1]) + ws[0][1:])
	for _, w := range ws[1:] {
		b.WriteString(upperFirst(w))
	}
	return b.String()
}
