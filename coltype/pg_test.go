//go:build linux

package coltype

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/ncruces/go-sqlite3"

	"github.com/latticesync/lattice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Postgres")
	}
	url := pgtest.DB(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range SessionParams {
		cfg.RuntimeParams[k] = v
	}
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// TestBuiltinOIDs checks BuiltinByOID against pg_type.
func TestBuiltinOIDs(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	rows, err := conn.Query(ctx, `
		SELECT t.oid, format_type(t.oid, NULL), t.typarray, format_type(t.typarray, NULL), t.typdelim
		FROM pg_type t
		WHERE t.typname IN ('int2','int4','int8','float4','float8','numeric','bool','text','varchar',
			'bpchar','name','uuid','date','time','timestamp','timestamptz','interval','json','jsonb','bytea')
		  AND t.typnamespace = 'pg_catalog'::regnamespace`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var oid, aoid uint32
		var name, aname string
		var delim string
		if err := rows.Scan(&oid, &name, &aoid, &aname, &delim); err != nil {
			t.Fatal(err)
		}
		n++
		st, ok := BuiltinByOID(oid)
		if !ok || st.Array || st.Name != name {
			t.Errorf("BuiltinByOID(%d) = %+v, %v; pg_type says %q", oid, st, ok, name)
		}
		at, ok := BuiltinByOID(aoid)
		if !ok || !at.Array || at.Base != st.Base || at.Name != aname {
			t.Errorf("BuiltinByOID(%d) = %+v, %v; pg_type says %q, array of %d", aoid, at, ok, aname, oid)
		}
		if delim != "," {
			t.Errorf("%s: array delimiter %q", name, delim)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("found %d types in pg_type, want 20", n)
	}
	// No other OID below 10000 is claimed.
	count := 0
	for oid := uint32(0); oid < 10000; oid++ {
		if _, ok := BuiltinByOID(oid); ok {
			count++
		}
	}
	if count != 40 {
		t.Errorf("BuiltinByOID knows %d OIDs, want 40", count)
	}
}

type pgCol struct {
	name  string
	decl  string   // Postgres type in CREATE TABLE
	gen   string   // SQL expression for a random value
	edges []string // SQL expressions for hand-picked values
}

const nullOr = "CASE WHEN random() < 0.08 THEN NULL ELSE (%s) END"

var pgCols = []pgCol{
	{"i2", "smallint", "floor((random()-0.5) * 2^(random()*16))::smallint",
		[]string{"-32768", "32767", "0", "-1"}},
	{"i4", "integer", "floor((random()-0.5) * 2^(random()*32))::integer",
		[]string{"-2147483648", "2147483647", "0"}},
	{"i8", "bigint", "floor((random()-0.5) * 2^(random()*63))::bigint + floor(random()*1000)::bigint",
		[]string{"-9223372036854775808", "9223372036854775807", "0"}},
	{"f4", "real", "(CASE WHEN random() < 0.5 THEN -1 ELSE 1 END * (0.1 + random()) * 10 ^ (floor(random()*70) - 35))::real",
		[]string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'0'", "'1.1'", "'0.1'", "'7.038531e-26'", "'-7.038531e-26'",
			"'1e-45'", "'-1.4e-45'", "'3.4028235e38'", "'-3.4028235e38'", "'1.1754944e-38'", "'1.1754942e-38'",
			"'16777216'", "'16777217'", "'123456.7'", "'1e10'", "'3.1415927'"}},
	{"f8", "double precision", "CASE WHEN random() < 0.5 THEN -1 ELSE 1 END * (0.1 + random()) * 10 ^ (floor(random()*600) - 300)",
		[]string{"'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'0'", "'0.1'", "'1.1'", "'5e-324'", "'-5e-324'",
			"'1.7976931348623157e308'", "'2.2250738585072014e-308'", "'2.225073858507201e-308'", "'1e15'", "'1e16'",
			"'123456789012345678'", "'9007199254740993'", "'100000'", "'0.30000000000000004'", "pi()"}},
	{"n", "numeric", "round(((random()-0.5) * 10 ^ (random()*30))::numeric, floor(random()*20)::int)",
		[]string{"'NaN'", "'Infinity'", "'-Infinity'", "'123456789012345678901234567890.000000000000000001'",
			"'1.50'", "'0.0000'", "'-0.5'", "'0'", "'-0'", "'1e-20'", "'1e100'", "'-0.000000000000000000000000000001'",
			"'1e1000'", "'9.99999999999999999999999999999999999999999e-500'"}},
	{"n2", "numeric(12,4)", "round(((random()-0.5) * 10 ^ (random()*8))::numeric, 4)",
		[]string{"'1.5'", "'0'", "'-99999999.9999'", "'NaN'"}},
	{"b", "boolean", "random() < 0.5", []string{"true", "false"}},
	{"t", "text", "rnd_text(30)",
		[]string{"''", "'NULL'", "'null'", "' a '", `'"'`, `'\'`, "'{}'", "','", "'a,b'", `E'\t\n\r\x01\x1f\x7f'`,
			"'é😀'", "repeat('x', 10000)", "'[0:1]={1}'", `'{"a":1}'`, "'\\x00'", "'  '", "'NaN'"}},
	{"vc", "varchar(20)", "left(rnd_text(20), 20)", []string{"''", "'abc'", "'12345678901234567890'"}},
	{"c", "char(5)", "left(rnd_text(5), 5)", []string{"''", "'ab'", "'abcde'", "' a'", "'a    '", "'é'"}},
	{"nm", "name", "left(rnd_text(20), 20)::name", []string{"''", "'a b'", "repeat('x', 63)", "repeat('é', 40)"}},
	{"u", "uuid", "gen_random_uuid()",
		[]string{"'00000000-0000-0000-0000-000000000000'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"}},
	{"d", "date", "date '4713-11-24 BC' + floor(random()*5000000)::int",
		[]string{"'4713-11-24 BC'", "'5874897-12-31'", "'infinity'", "'-infinity'", "'0001-01-01'", "'0001-12-31 BC'",
			"'2000-02-29'", "'1970-01-01'"}},
	{"tm", "time", "time '00:00' + random() * interval '86400 seconds'",
		[]string{"'00:00:00'", "'24:00:00'", "'23:59:59.999999'", "'12:00:00.5'", "'00:00:00.000001'"}},
	{"ts", "timestamp", "CASE WHEN random() < 0.5 THEN timestamp '1900-01-01' + random() * interval '200 years' ELSE timestamp '4713-11-24 00:00:00 BC' + random() * interval '100000000 days' END",
		[]string{"'4713-11-24 00:00:00 BC'", "'294276-12-31 23:59:59.999999'", "'infinity'", "'-infinity'",
			"'2024-01-02 03:04:05'", "'2024-01-02 03:04:05.5'", "'0001-01-01 00:00:00 BC'", "'2000-01-01 00:00:00.000001'"}},
	{"ts3", "timestamp(3)", "timestamp '1900-01-01' + random() * interval '200 years'", []string{"'2024-01-02 03:04:05.123'"}},
	{"tz", "timestamptz", "CASE WHEN random() < 0.5 THEN timestamptz '1900-01-01 00:00Z' + random() * interval '200 years' ELSE timestamptz '4713-11-24 00:00:00Z BC' + random() * interval '100000000 days' END",
		[]string{"'4713-11-24 00:00:00+00 BC'", "'294276-12-31 23:59:59.999999+00'", "'infinity'", "'-infinity'",
			"'2024-01-02 03:04:05+00'", "'2024-01-02 03:04:05.5+00'", "'2024-06-01 12:00:00+05:30'",
			"'1850-01-01 00:00:00 Europe/Amsterdam'", "'1850-01-01 00:00:00 America/New_York'", "'0001-01-01 00:00:00+00 BC'",
			"'2024-01-01 00:00:00.000001+14'"}},
	{"iv", "interval", "make_interval(years => floor((random()-0.5)*200)::int * (random() < 0.5)::int, months => floor((random()-0.5)*30)::int * (random() < 0.5)::int, days => floor((random()-0.5)*1000)::int * (random() < 0.5)::int, hours => floor((random()-0.5)*100)::int * (random() < 0.5)::int, mins => floor((random()-0.5)*100)::int, secs => round(((random()-0.5)*1000)::numeric, floor(random()*7)::int)::float8 * (random() < 0.5)::int)",
		[]string{"'0'", "'-1 year -2 mons +3 days -04:05:06.5'", "'1 day -1 sec'", "'-0.5 sec'", "'178000000 years'",
			"'-178000000 years'", "'1 mon -30 days'", "'0.000001 sec'", "'-2147483648 days'", "'2147483647 mons'",
			"'2562047788:00:54.775807'", "'-2562047788:00:54.775807'", "'P1Y2M3DT4H5M6.5S'", "'1 week'"}},
	{"j", "json", `(CASE floor(random()*3)::int WHEN 0 THEN json_build_object('a', random(), 'b', rnd_text(10), 'c', json_build_array(1, 'x', NULL, true))::text WHEN 1 THEN ' [ ' || to_json(rnd_text(10))::text || E' ,\t1.50e3 ] ' ELSE to_json(rnd_text(15))::text END)::json`,
		[]string{`' {"a" : "\u00e9\n", "b":[1, 2.50]} '`, `'"\u0000"'`, "'null'", "'[]'", "'1e5'", `'{"a":1,"a":2}'`,
			`'"\ud83d\ude00 é"'`, "'  \n 1 \n'", `'"NULL"'`}},
	{"jb", "jsonb", "jsonb_build_object('k', rnd_text(10), 'n', round(random()::numeric, 3), 'a', jsonb_build_array(null, false, 1e-5))",
		[]string{`'{"a":1,"a":2}'`, `'{"b": 1.50, "a": [true, null]}'`, `'"é"'`, "'1e5'", "'null'", `'"\ud83d\ude00"'`, "'{}'", "'[]'"}},
	{"by", "bytea", "rnd_bytea(20)", []string{`'\x'`, `'\x00'`, `'\xdeadbeef'`, `'\x5c78'`}},
	{"e", "mood", "(enum_range(NULL::mood))[1 + floor(random()*6)::int]",
		[]string{"'happy'", `'a b"c\,{}'`, "'NULL'", "'é'"}},
}

// arrayEdges are hand-picked values for the array columns, by element column.
var arrayEdges = map[string][]string{
	"i2": {"'{}'", "'{NULL}'", "'{{1,2},{3,4}}'", "'{-32768,32767}'"},
	"i4": {"'{}'", "'{NULL,NULL}'", "'{{{1},{2}},{{3},{NULL}}}'"},
	"i8": {"'{-9223372036854775808,9223372036854775807,NULL}'"},
	"f4": {"'{NaN,Infinity,-Infinity,-0,1.1,7.038531e-26,1e-45,3.4028235e38}'", "'{{NaN},{-0}}'"},
	"f8": {"'{NaN,Infinity,-Infinity,-0,5e-324,1.7976931348623157e308,0.1,NULL}'"},
	"n":  {"'{NaN,Infinity,-Infinity,1.50,0.0000,NULL,123456789012345678901234567890.000000000000000001}'"},
	"b":  {"'{t,f,NULL}'", "'{{t},{f}}'"},
	"t": {`'{"NULL",NULL,"","a\"b","a\\b","{}",",","é"," x ","null","\\x00","[]"}'`, `'{{a,b},{"c d",NULL}}'`,
		`ARRAY[E'\t\n\x01', '"', '\', '''']`},
	"vc": {`'{"",NULL,"a,b"}'`},
	"c":  {`'{"",NULL,"ab","abcde"}'`},
	"nm": {`'{"",NULL,"a b"}'`},
	"u":  {"'{00000000-0000-0000-0000-000000000000,NULL}'"},
	"d":  {`'{"4713-11-24 BC",5874897-12-31,infinity,-infinity,NULL}'`},
	"tm": {"'{24:00:00,00:00:00,NULL}'"},
	"ts": {`'{"4713-11-24 00:00:00 BC",infinity,"2024-01-02 03:04:05.5",NULL}'`},
	"tz": {`'{"4713-11-24 00:00:00+00 BC",infinity,-infinity,"2024-01-02 03:04:05.5+00",NULL}'`},
	"iv": {`'{0,"-1 year -2 mons +3 days -04:05:06.5",NULL}'`},
	"j":  {`ARRAY[' {"a" : "\u00e9\n"} '::json, 'null', NULL, '"NULL"', '[1, "x"]']`},
	"jb": {`ARRAY['{"b": 1.50, "a": [true, null]}'::jsonb, 'null', NULL, '"NULL"']`},
	"by": {`'{"\\x","\\x00ff",NULL}'`},
	"e":  {`'{happy,NULL,"NULL","a b\"c\\,{}"}'`},
}

const pgSetup = `
CREATE TYPE mood AS ENUM ('happy', 'sad', 'ok', 'a b"c\,{}', 'NULL', 'é');
CREATE FUNCTION rnd_text(maxlen int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT coalesce(string_agg(CASE
      WHEN r < 0.25 THEN substr(E'"\\{},  \t\nNULL[]:=''', 1 + floor(random()*18)::int, 1)
      WHEN r < 0.6 THEN chr(1 + floor(random()*126)::int)
      WHEN r < 0.9 THEN chr(128 + floor(random()*(55295-128))::int)
      ELSE chr(65536 + floor(random()*100000)::int) END, ''), '')
  FROM (SELECT random() AS r FROM generate_series(1, floor(random()*(maxlen+1))::int)) s
$$;
CREATE FUNCTION rnd_bytea(maxlen int) RETURNS bytea LANGUAGE sql VOLATILE AS $$
  SELECT decode(coalesce(string_agg(lpad(to_hex(floor(random()*256)::int), 2, '0'), ''), ''), 'hex')
  FROM generate_series(1, floor(random()*(maxlen+1))::int)
$$;
`

// TestPostgresRoundTrip fills a table with one column per supported type
// and array type, reads every value as Postgres text, converts it with
// FromPGText and back with ToPGText, and checks in Postgres that the
// literal gives the original value (IS NOT DISTINCT FROM, and the same text
// output). The Values are then stored in SQLite with the SQLiteDecl types
// and must read back unchanged.
func TestPostgresRoundTrip(t *testing.T) {
	conn := connect(t)
	ctx := context.Background()
	exec(t, conn, pgSetup)

	var defs, names, gens []string
	for _, c := range pgCols {
		defs = append(defs, c.name+" "+c.decl, c.name+"_a "+c.decl+"[]")
		names = append(names, c.name, c.name+"_a")
		g := fmt.Sprintf(nullOr, c.gen)
		gens = append(gens, g, fmt.Sprintf(nullOr,
			"ARRAY(SELECT "+g+" FROM generate_series(1, floor(random()*5)::int) AS s(i) WHERE g > 0)"))
	}
	exec(t, conn, "CREATE TABLE t (id serial PRIMARY KEY, "+strings.Join(defs, ", ")+")")
	rowsN := 3000
	exec(t, conn, fmt.Sprintf("INSERT INTO t (%s) SELECT %s FROM generate_series(1, %d) AS g",
		strings.Join(names, ", "), strings.Join(gens, ", "), rowsN))
	for _, c := range pgCols {
		exec(t, conn, fmt.Sprintf("INSERT INTO t (%s) VALUES (%s)", c.name, strings.Join(c.edges, "), (")))
		if e := arrayEdges[c.name]; len(e) > 0 {
			exec(t, conn, fmt.Sprintf("INSERT INTO t (%s_a) VALUES (%s)", c.name, strings.Join(e, "), (")))
		}
	}

	// Column types from the catalog, as the service resolves them.
	types := make([]Type, len(names))
	{
		rows, err := conn.Query(ctx, `
			SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), t.typtype, coalesce(et.typtype, '')
			FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type et ON et.oid = t.typelem
			WHERE a.attrelid = 't'::regclass AND a.attnum > 1 AND NOT a.attisdropped ORDER BY a.attnum`)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var name, format, typtype, elemtyptype string
			var oid uint32
			if err := rows.Scan(&name, &oid, &format, &typtype, &elemtyptype); err != nil {
				t.Fatal(err)
			}
			if name != names[i] {
				t.Fatalf("column %d is %s, want %s", i, name, names[i])
			}
			ty, ok := BuiltinByOID(oid)
			switch {
			case ok:
			case typtype == "e":
				ty = Type{Base: Enum}
			case elemtyptype == "e":
				ty = Type{Base: Enum, Array: true}
			default:
				t.Fatalf("column %s: unsupported type %s", name, format)
			}
			ty.Name = format
			types[i] = ty
			i++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}

	// Read everything in text output format (the simple protocol returns
	// text; a ::text cast is not the same: bool::text gives "true" and
	// char(n)::text drops the padding).
	rows, err := conn.Query(ctx, "SELECT id, "+strings.Join(names, ", ")+" FROM t ORDER BY id", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	var raw [][][]byte // [row][col]
	for rows.Next() {
		rv := rows.RawValues()
		var id int32
		fmt.Sscan(string(rv[0]), &id)
		ids = append(ids, id)
		r := make([][]byte, len(names))
		for j := range names {
			if rv[j+1] != nil {
				r[j] = append([]byte{}, rv[j+1]...)
			}
		}
		raw = append(raw, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(raw) < rowsN {
		t.Fatalf("read %d rows", len(raw))
	}

	// Convert.
	vals := make([][]Value, len(raw))
	stats := map[Kind]int{}
	for i, r := range raw {
		vals[i] = make([]Value, len(names))
		for j, b := range r {
			v, err := FromPGText(types[j], b)
			if err != nil {
				t.Fatalf("row %d: FromPGText(%s, %q): %v", ids[i], types[j], b, err)
			}
			if (b == nil) != (v.Kind == Null) {
				t.Fatalf("row %d: FromPGText(%s, %q) = %s", ids[i], types[j], b, show(v))
			}
			if types[j].Array && v.Kind == Text && !json.Valid(v.B) {
				t.Fatalf("row %d: FromPGText(%s, %q) = invalid JSON %s", ids[i], types[j], b, v.B)
			}
			vals[i][j] = v
			stats[v.Kind]++
		}
	}
	t.Logf("%d rows x %d columns; value kinds: %v", len(raw), len(names), stats)

	// Back to Postgres, one query per column.
	for j, n := range names {
		ty := types[j]
		lits := make([]pgtype.Text, len(vals))
		orig := make([]pgtype.Text, len(vals))
		for i := range vals {
			orig[i] = pgtype.Text{String: string(raw[i][j]), Valid: raw[i][j] != nil}
			s, ok, err := ToPGText(ty, vals[i][j])
			if err != nil {
				t.Fatalf("row %d: ToPGText(%s, %s) from %q: %v", ids[i], ty, show(vals[i][j]), raw[i][j], err)
			}
			lits[i] = pgtype.Text{String: s, Valid: ok}
		}
		// The literal must give a value whose text output (concat uses the
		// output function) is the text we started from, and (except for
		// json, which has no equality) that is not distinct from the
		// stored value.
		cond := fmt.Sprintf("CASE WHEN x.raw IS NULL THEN x.v IS NULL ELSE x.v IS NOT NULL AND concat(x.v::%s) = x.raw END", ty.Name)
		if ty.Base != JSON {
			cond += fmt.Sprintf(" AND x.v::%s IS NOT DISTINCT FROM t.%s", ty.Name, n)
		}
		q := fmt.Sprintf(`SELECT x.id, x.v, x.raw FROM unnest($1::int[], $2::text[], $3::text[]) AS x(id, v, raw) JOIN t USING (id) WHERE NOT (%s) LIMIT 10`, cond)
		bad, err := conn.Query(ctx, q, ids, lits, orig)
		if err != nil {
			t.Fatalf("column %s: %v", n, err)
		}
		for bad.Next() {
			var id int32
			var v, orig *string
			if err := bad.Scan(&id, &v, &orig); err != nil {
				t.Fatal(err)
			}
			t.Errorf("column %s (%s), row %d: original %s, round trip %s", n, ty, id, strOrNull(orig), strOrNull(v))
		}
		if err := bad.Err(); err != nil {
			t.Fatalf("column %s: %v", n, err)
		}
		var count int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::int[]) AS x(id) JOIN t USING (id)", ids).Scan(&count); err != nil || count != len(ids) {
			t.Fatalf("checked %d rows, %v", count, err)
		}
	}

	storeInSQLite(t, names, types, ids, vals)
}

func strOrNull(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}

// storeInSQLite writes the values into a table declared with SQLiteDecl
// types and checks that they read back with the same Kind and contents.
func storeInSQLite(t *testing.T, names []string, types []Type, ids []int32, vals [][]Value) {
	db, err := sqlite3.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var defs, marks []string
	for j, n := range names {
		defs = append(defs, n+" "+types[j].SQLiteDecl())
		marks = append(marks, "?")
	}
	if err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, " + strings.Join(defs, ", ") + ")"); err != nil {
		t.Fatal(err)
	}
	ins, _, err := db.Prepare("INSERT INTO t VALUES (?, " + strings.Join(marks, ", ") + ")")
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	for i, row := range vals {
		ins.BindInt64(1, int64(ids[i]))
		for j, v := range row {
			p := j + 2
			var err error
			switch v.Kind {
			case Null:
				err = ins.BindNull(p)
			case Integer:
				err = ins.BindInt64(p, v.I)
			case Real:
				err = ins.BindFloat(p, v.F)
			case Text:
				err = ins.BindText(p, string(v.B))
			case Blob:
				if v.B == nil {
					v.B = []byte{}
				}
				err = ins.BindBlob(p, v.B)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := ins.Exec(); err != nil {
			t.Fatal(err)
		}
		ins.Reset()
	}
	sel, _, err := db.Prepare("SELECT * FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	i := 0
	for sel.Step() {
		if got := int32(sel.ColumnInt64(0)); got != ids[i] {
			t.Fatalf("SQLite row %d has id %d, want %d", i, got, ids[i])
		}
		for j := range names {
			var v Value
			switch sel.ColumnType(j + 1) {
			case sqlite3.NULL:
			case sqlite3.INTEGER:
				v = Value{Kind: Integer, I: sel.ColumnInt64(j + 1)}
			case sqlite3.FLOAT:
				v = Value{Kind: Real, F: sel.ColumnFloat(j + 1)}
			case sqlite3.TEXT:
				v = Value{Kind: Text, B: append([]byte{}, sel.ColumnRawText(j+1)...)}
			case sqlite3.BLOB:
				v = Value{Kind: Blob, B: append([]byte{}, sel.ColumnRawBlob(j+1)...)}
			}
			if !v.Equal(vals[i][j]) {
				t.Errorf("SQLite %s (%s %s), row %d: stored %s, read %s", names[j], types[j], types[j].SQLiteDecl(), ids[i], show(vals[i][j]), show(v))
			}
		}
		i++
	}
	if err := sel.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(vals) {
		t.Fatalf("SQLite returned %d rows, want %d", i, len(vals))
	}

	// SQLite's own JSON and date functions accept the representation.
	for j, n := range names {
		var q string
		switch {
		case types[j].Array:
			q = "SELECT count(*) FROM t WHERE " + n + " IS NOT NULL AND NOT json_valid(" + n + ")"
		case types[j].Base == Timestamptz:
			q = "SELECT count(*) FROM t WHERE " + n + " GLOB '[0-9][0-9][0-9][0-9]-*Z' AND julianday(" + n + ") IS NULL"
		default:
			continue
		}
		st, _, err := db.Prepare(q)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Step() || st.ColumnInt(0) != 0 {
			t.Errorf("%s: %d values rejected by SQLite: %s", n, st.ColumnInt(0), q)
		}
		st.Close()
	}
}

// TestSQLiteAffinity stores values of every storage class in columns of
// every SQLiteDecl type that can hold them and checks they read back as
// stored.
func TestSQLiteAffinity(t *testing.T) {
	db, err := sqlite3.Open(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Exec("CREATE TABLE t (i INTEGER, r BLOB, x TEXT, b BLOB)"); err != nil {
		t.Fatal(err)
	}
	cols := map[string][]Value{
		"i": {vI(0), vI(-1), vI(math.MaxInt64), vI(math.MinInt64)},
		"r": {vR(negZero), vR(0), vR(3), vR(1.5), vR(math.Inf(1)), vR(math.Inf(-1)), vR(5e-324), vR(1e300), vT("NaN"), vR(9.2233720368547758e18)},
		"x": {vT(""), vT("1.50"), vT("1e5"), vT(" 12 "), vT("12"), vT("NaN"), vT("Infinity"), vT("0x10"), vT("-0"), vT("[1,2]"),
			vT("2024-01-02 03:04:05.5Z"), vT("\x00")},
		"b": {vB(), vB(0), vB('1', '2')},
	}
	for col, vs := range cols {
		for _, v := range vs {
			ins, _, err := db.Prepare("INSERT INTO t (" + col + ") VALUES (?)")
			if err != nil {
				t.Fatal(err)
			}
			switch v.Kind {
			case Integer:
				ins.BindInt64(1, v.I)
			case Real:
				ins.BindFloat(1, v.F)
			case Text:
				ins.BindText(1, string(v.B))
			case Blob:
				ins.BindBlob(1, append([]byte{}, v.B...))
			}
			if err := ins.Exec(); err != nil {
				t.Fatal(err)
			}
			ins.Close()
			sel, _, err := db.Prepare("SELECT " + col + " FROM t WHERE rowid = last_insert_rowid()")
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Step() {
				t.Fatal(sel.Err())
			}
			var got Value
			switch sel.ColumnType(0) {
			case sqlite3.INTEGER:
				got = vI(sel.ColumnInt64(0))
			case sqlite3.FLOAT:
				got = vR(sel.ColumnFloat(0))
			case sqlite3.TEXT:
				got = vT(sel.ColumnText(0))
			case sqlite3.BLOB:
				got = vB(sel.ColumnBlob(0, nil)...)
			}
			sel.Close()
			if !got.Equal(v) {
				t.Errorf("column %s: stored %s, read %s", col, show(v), show(got))
			}
		}
	}
}

// TestPostgresArrayBounds checks that arrays with non-default lower bounds,
// as Postgres prints them, are rejected.
func TestPostgresArrayBounds(t *testing.T) {
	conn := connect(t)
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT '[0:1]={1,2}'::int[]::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	if _, err := FromPGText(Type{Base: Int4, Array: true}, []byte(s)); err == nil || !strings.Contains(err.Error(), "lower bounds") {
		t.Errorf("FromPGText(int[], %q): %v", s, err)
	}
}
