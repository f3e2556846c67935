package where

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
)

var unitCols = []protocol.Column{
	col("id", coltype.Int8, "bigint"),
	col("i2", coltype.Int2, "smallint"),
	col("i4", coltype.Int4, "integer"),
	col("n", coltype.Numeric, "numeric(10,2)"),
	col("f4", coltype.Float4, "real"),
	col("f8", coltype.Float8, "double precision"),
	col("b", coltype.Bool, "boolean"),
	col("tx", coltype.TextType, "text"),
	col("vc", coltype.TextType, "character varying(10)"),
	col("c4", coltype.TextType, "character(4)"),
	col("u", coltype.UUID, "uuid"),
	col("d", coltype.Date, "date"),
	col("ts", coltype.Timestamp, "timestamp without time zone"),
	col("tz", coltype.Timestamptz, "timestamp with time zone"),
	col("tm", coltype.Time, "time without time zone"),
	col("iv", coltype.Interval, "interval"),
	col("e", coltype.Enum, "mood"),
	col("by", coltype.Bytea, "bytea"),
	col("j", coltype.JSON, "json"),
	col("jb", coltype.JSONB, "jsonb"),
	{Name: "arr", Type: coltype.Type{Base: coltype.Int4, Array: true, Name: "integer[]"}},
	col("MixedCase", coltype.Int4, "integer"),
	col("geom", coltype.Unsupported, "geometry"),
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		msg  string
		pos  int
	}{
		{"", "the where clause is empty", 0},
		{"i4 = ", "syntax error at end of input at position 6", 6},
		{"i4 = = 1", `syntax error at or near "=" at position 6`, 6},
		{"i4 = 1 x", `syntax error at or near "x" at position 8`, 8},
		{"true; drop table x", "the where clause must be a single expression; ';' is not allowed at position 5", 5},
		{"i4 = 1;", "the where clause must be a single expression; ';' is not allowed at position 7", 7},
		{"i4 = 1 -- )", "comments are not allowed in a where clause at position 8", 8},
		{"i4 = 1 /* ) OR (true */", "comments are not allowed in a where clause at position 8", 8},
		{"true) OR (1=1", `syntax error at or near ")" at position 5`, 5},
		{"1 = 1 FROM t", `syntax error at or near "FROM" at position 7`, 7},
		{"x = 1", `column "x" does not exist at position 1`, 1},
		{"mixedcase = 1", `column "mixedcase" does not exist; did you mean "MixedCase"? (quote names that have capital letters) at position 1`, 1},
		{"other.i4 = 1", `column reference "other.i4" is qualified; a shape filters a single table, write just "i4" at position 1`, 1},
		{"*", `syntax error at or near "*" at position 1`, 1},
		{"t.* IS NULL", "* is not supported in a where clause; name a column at position 1", 1},
		{"geom IS NULL", `column "geom" has type geometry, which shape filters do not support at position 1`, 1},
		{"i4 = (SELECT 1)", "subqueries are not supported in a where clause at position 6", 6},
		{"EXISTS (SELECT 1)", "subqueries are not supported in a where clause at position 1", 1},
		{"i4 IN (SELECT 1)", "subqueries are not supported in a where clause at position 4", 4},
		{"count(*) > 1", "aggregate functions are not allowed in a where clause at position 1", 1},
		{"sum(i4) > 1", "aggregate functions are not allowed in a where clause at position 1", 1},
		{"row_number() OVER () = 1", "window functions are not allowed in a where clause at position 1", 1},
		{"ts < now()", "now() is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 6", 6},
		{"random() < 0.5", "random() is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 1", 1},
		{"ts < clock_timestamp()", "clock_timestamp() is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 6", 6},
		{"i4 = nextval('s')", "nextval() is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 6", 6},
		{"tx = current_user", "current_user is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 6", 6},
		{"d = current_date", "current_date is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing at position 5", 5},
		{"length(tx) > 1", "function length() is not supported in a where clause (supported: lower, upper, coalesce) at position 1", 1},
		{"lower(i4) = 'a'", "lower() is only supported on text, not on integer at position 1", 1},
		{"lower(tx, 1) = 'a'", "lower() takes one argument at position 1", 1},
		{"coalesce(i4, tx) = 1", "COALESCE arguments have no common type at position 1", 1},
		{"i4 + 1.5 = 2", "operator + is only supported on integer types, not on integer and numeric at position 4", 4},
		{"'1' + '2' = 3", "operator is not unique: unknown + unknown; add a cast at position 5", 5},
		{"i4 / 2 = 1", "operator / is not supported: only +, - and * on integers are at position 4", 4},
		{"i4 = $3", "there is no parameter $3: the shape has 2 parameters ($1..$2) at position 6", 6},
		{"$1 IS NULL", "could not determine the type of parameter $1; add a cast, e.g. $1::text at position 1", 1},
		{"$1 IS NULL OR i4 = $1", "could not determine the type of parameter $1; add a cast, e.g. $1::text at position 1", 1},
		{"i4 = $2", "parameter $1 is not used in the where clause", 0},
		{"j = j", "operator = is not supported on json; cast the column to jsonb or text at position 3", 3},
		{"j < '1'", "operator < is not supported on json; cast the column to jsonb or text at position 3", 3},
		{"jb < jb", "operator < is not supported on jsonb values: only =, <>, IN and IS [NOT] DISTINCT FROM are at position 4", 4},
		{"e < 'ok'", "operator < is not supported on enum values (mood): only =, <>, IN and IS [NOT] DISTINCT FROM are at position 3", 3},
		{"arr = arr", "operator = is not supported on arrays (integer[]): only IS NULL and IS NOT NULL are at position 5", 5},
		{"i4 = b", "operator does not exist: integer = boolean at position 4", 4},
		{"u = tx", "operator does not exist: uuid = text at position 3", 3},
		{"tx || 'a' = 'b'", "operator || is not supported: only +, - and * on integers are at position 4", 4},
		{"tx ~ 'a'", "operator ~ is not supported at position 4", 4},
		{"tx SIMILAR TO 'a'", "SIMILAR TO is not supported; use LIKE at position 4", 4},
		{"tx LIKE 'a' ESCAPE '#'", "LIKE ... ESCAPE is not supported; the escape character is always backslash at position 4", 4},
		{"tx LIKE vc", "LIKE pattern must be a constant or a parameter, not a column at position 4", 4},
		{"i4 LIKE '1%'", "LIKE is not supported on type integer; it needs a text column (cast with ::text) at position 4", 4},
		{"i4", "argument of WHERE must be type boolean, not type integer at position 1", 1},
		{"i4 AND b", "argument of AND must be type boolean, not type integer at position 1", 1},
		{"i4 IS TRUE", "argument of IS TRUE must be type boolean, not type integer at position 1", 1},
		{"tx COLLATE \"C\" = 'a'", `COLLATE is not supported; text comparisons always use the C collation (byte order) at position 4`, 4},
		{"ARRAY[1] IS NULL", "array constructors are not supported at position 1", 1},
		{"CASE WHEN b THEN true END", "CASE is not supported at position 1", 1},
		{"i4 = ANY('{1}')", "ANY/ALL with arrays is not supported; use IN (...) at position 4", 4},
		{"i4::int[] IS NULL", "array types are not supported at position 5", 5},
		{"'x'::geometry IS NULL", "type geometry is not supported in a where clause (enum types of this table: mood) at position 6", 6},
		{"tx::uuid = u", "casting text to uuid is not supported at position 3", 3},
		{"i4::numeric(5,2) = 1", "type modifiers in casts are only supported on constants and parameters at position 5", 5},
		{"B'101' IS NULL", "bit-string constants are not supported at position 1", 1},
		{"i4 = 1 AND (i4 = 2 OR \x00)", "the where clause contains a NUL character at position 23", 23},
		{"$1 IN (i4, f8)", "inconsistent types deduced for parameter $1: integer and double precision at position 1", 1},
		{"\xff", "the where clause is not valid UTF-8", 0},
		{strings.Repeat("NOT ", 200) + "true", "the where clause is nested too deeply", 0},
	} {
		_, err := Parse(tc.expr, unitCols, 2)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want %q", tc.expr, tc.msg)
			continue
		}
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("Parse(%q) error is %T, want *Error", tc.expr, err)
			continue
		}
		if e.Message != tc.msg || e.Pos != tc.pos {
			t.Errorf("Parse(%q):\n got %q (pos %d)\nwant %q (pos %d)", tc.expr, e.Message, e.Pos, tc.msg, tc.pos)
		}
	}
}

func TestParseTable(t *testing.T) {
	for _, tc := range []struct{ expr, sql, err string }{
		{"t.i4 = 1", "i4 = 1", ""},
		{"public.t.i4 = 1", "i4 = 1", ""},
		{"other.t.i4 = 1", "", `column reference "other.t.i4" refers to another table; a shape can only use columns of "t" at position 1`},
		{"u.i4 = 1", "", `column reference "u.i4" refers to another table; a shape can only use columns of "t" at position 1`},
		{"x.public.t.i4 = 1", "", `column reference "x.public.t.i4" refers to another table; a shape can only use columns of "t" at position 1`},
	} {
		e, err := ParseTable(tc.expr, "public", "t", unitCols, 0)
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseTable(%q) = %v, want error %q", tc.expr, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseTable(%q): %v", tc.expr, err)
		case e.SQL() != tc.sql:
			t.Errorf("ParseTable(%q).SQL() = %q, want %q", tc.expr, e.SQL(), tc.sql)
		}
	}
	e, err := Parse("i4 = 1", unitCols[:3], 0)
	if err == nil {
		_, err = Parse("x = 1", unitCols[:3], 0)
	}
	if err == nil || err.Error() != `column "x" does not exist (columns: id, i2, i4) at position 1` {
		t.Errorf("few columns: %v %v", e, err)
	}
}

func TestSQLAndLiterals(t *testing.T) {
	for _, tc := range []struct {
		expr string
		sql  string
		lits string // param/text/type, ...
	}{
		{"i4 = 1", "i4 = 1", "1:integer"},
		{"I4=1 and \"MixedCase\" != $1", `i4 = 1 AND "MixedCase" <> $1`, "1:integer $1:integer"},
		{"f4 = 1.1", "f4 = 1.1", "1.1:double precision"},
		{"f4 IN (1.1, 2.2)", "f4 IN (1.1, 2.2)", "1.1:real 2.2:real"},
		{"f4 IN (1.1)", "f4 IN (1.1)", "1.1:double precision"},
		{"i4 = 1.5", "i4 = 1.5", "1.5:numeric"},
		{"n = $1", "n = $1", "$1:numeric"},
		{"vc = 'abc'", "vc = 'abc'", "abc:text"},
		{"c4 = 'ab'", "c4 = 'ab'", "ab:bpchar"},
		{"c4 IN ('a'::text, 'b')", "c4 IN ('a'::text, 'b')", "a:text b:bpchar"},
		{"e IN ('ok', $1)", "e IN ('ok', $1)", "ok:mood $1:mood"},
		{"d > '2024-01-01'::timestamp", "d > '2024-01-01'::timestamp", "2024-01-01:timestamp without time zone"},
		{"$1::numeric(10,2) = n", "$1::numeric(10, 2) = n", "$1:numeric(10,2)"},
		{"'abc'::char(2) = c4", "'abc'::char(2) = c4", "abc:character(2)"},
		{"i4 BETWEEN $1 AND $2", "i4 BETWEEN $1 AND $2", "$1:integer $2:integer"},
		{"$1 BETWEEN i2 AND f8", "$1 BETWEEN i2 AND f8", "$1:smallint $1:smallint"},
		{"'5' BETWEEN i2 AND f8", "'5' BETWEEN i2 AND f8", "5:smallint 5:double precision"},
		{"$1 IN (i4, 5)", "$1 IN (i4, 5)", "$1:integer $1:integer 5:integer"},
		{"'5' IN (i4, f8, 6, 7)", "'5' IN (i4, f8, 6, 7)", "5:integer 6:integer 7:integer 5:integer 5:double precision"},
		{"'1e3' IN (1.5, 2.5, 3.5)", "'1e3' IN (1.5, 2.5, 3.5)", "1e3:numeric 1.5:numeric 2.5:numeric 3.5:numeric"},
		{"$1 IN (1.5, 2.5, i2)", "$1 IN (1.5, 2.5, i2)", "$1:numeric 1.5:numeric 2.5:numeric $1:numeric"},
		{"5 IN (i4, f8, 6, 7)", "5 IN (i4, f8, 6, 7)", "5:integer 6:integer 7:integer 5:integer 5:double precision"},
		{"i4 IN (1, NULL)", "i4 IN (1, NULL)", "1:integer NULL:integer"},
		{"b AND 'true'", "b AND 'true'", "true:boolean"},
		{"tx LIKE $1", "tx LIKE $1", "$1:text"},
		{"tx = 'it''s' AND tx = E'a\\\\b'", `tx = 'it''s' AND tx = E'a\\b'`, `it's:text a\b:text`},
		{"(a.i4 IS DISTINCT FROM 1) IS TRUE", `(("i4" IS DISTINCT FROM 1) IS TRUE)`, "1:integer"},
		{"(NOT b) IS NULL", `((NOT "b") IS NULL)`, ""},
		{"(lower(tx) IS DISTINCT FROM coalesce(vc, 'x')) IS TRUE", `(("lower"("tx") IS DISTINCT FROM COALESCE("vc", 'x')) IS TRUE)`, "x:character varying"},
		{"n = 1.5::numeric(10,2) OR n = 5::numeric(3,1)", "n = (1.5)::numeric(10, 2) OR n = 5::numeric(3, 1)", "1.5:numeric(10,2) 5:numeric(3,1)"},
		{"i4 = -(5)", "i4 = -5", "-5:integer"},
		{"id = -(-2147483648)", "id = 2147483648", "2147483648:bigint"},
		{"i4 = 1_000 OR i4 = 0x10 OR n = 1_000.5", "i4 = 1000 OR i4 = 16 OR n = 1000.5", "1000:integer 16:integer 1000.5:numeric"},
		{"tx = 'é'  AND  true", "tx = 'é' AND true", "é:text true:boolean"},
	} {
		e, err := ParseTable(tc.expr, "public", "a", unitCols, maxParam(tc.expr))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.expr, err)
			continue
		}
		var lits []string
		for _, l := range e.Literals() {
			s := "NULL"
			switch {
			case l.Param > 0:
				s = "$" + string(rune('0'+l.Param))
			case l.Text != nil:
				s = *l.Text
			}
			lits = append(lits, s+":"+l.Type.Name)
		}
		if e.SQL() != tc.sql || strings.Join(lits, " ") != tc.lits {
			t.Errorf("Parse(%q):\n got SQL %q lits %q\nwant SQL %q lits %q", tc.expr, e.SQL(), strings.Join(lits, " "), tc.sql, tc.lits)
		}
	}
}

// row builds a row of unitCols from name=value pairs; values are Go values:
// int/int64 -> Integer, float64 -> Real, string -> Text, []byte -> Blob,
// bool -> Integer 0/1.
func row(kv ...any) []coltype.Value {
	r := make([]coltype.Value, len(unitCols))
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		idx := -1
		for j, c := range unitCols {
			if c.Name == name {
				idx = j
			}
		}
		var v coltype.Value
		switch x := kv[i+1].(type) {
		case int:
			v = coltype.Value{Kind: coltype.Integer, I: int64(x)}
		case int64:
			v = coltype.Value{Kind: coltype.Integer, I: x}
		case bool:
			v = coltype.Value{Kind: coltype.Integer}
			if x {
				v.I = 1
			}
		case float64:
			v = coltype.Value{Kind: coltype.Real, F: x}
		case string:
			v = coltype.Value{Kind: coltype.Text, B: []byte(x)}
		case []byte:
			v = coltype.Value{Kind: coltype.Blob, B: x}
		}
		r[idx] = v
	}
	return r
}

// unitCoerce is PGCoerce on a database with the enum type of unitCols.
func unitCoerce(t *testing.T) Coerce {
	conn := connect(t, pgtest.DB(t))
	if _, err := conn.Exec(context.Background(), "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')"); err != nil {
		t.Fatal(err)
	}
	return PGCoerce(conn)
}

func TestEval(t *testing.T) {
	coerce := unitCoerce(t)
	nan := "NaN"
	for _, tc := range []struct {
		expr   string
		params []*string
		row    []coltype.Value
		want   Tri
	}{
		// three-valued logic
		{"i4 = 1", nil, row(), Unknown},
		{"i4 = 1", nil, row("i4", 1), True},
		{"i4 <> 1", nil, row("i4", 1), False},
		{"i4 = 1 OR b", nil, row("i4", 1), True},
		{"i4 = 2 OR b", nil, row("i4", 1), Unknown},
		{"i4 = 2 AND b", nil, row("i4", 1), False},
		{"i4 = 1 AND b", nil, row("i4", 1), Unknown},
		{"NOT b", nil, row(), Unknown},
		{"NOT b", nil, row("b", false), True},
		{"b", nil, row("b", true), True},
		{"NULL", nil, row(), Unknown},
		{"true AND NOT false", nil, row(), True},
		{"i4 = $1", []*string{nil}, row("i4", 1), Unknown},
		{"i4 = $1", []*string{sp("1")}, row("i4", 1), True},
		// IN / NOT IN with NULLs
		{"i4 IN (1, NULL)", nil, row("i4", 1), True},
		{"i4 IN (2, NULL)", nil, row("i4", 1), Unknown},
		{"i4 NOT IN (2, NULL)", nil, row("i4", 1), Unknown},
		{"i4 NOT IN (1, NULL)", nil, row("i4", 1), False},
		{"i4 NOT IN (2, 3)", nil, row("i4", 1), True},
		{"i4 IN (2, 3)", nil, row(), Unknown},
		{"i4 IN (i2, 3)", nil, row("i4", 1), Unknown},
		{"i4 IN (i2, 1)", nil, row("i4", 1), True},
		{"tx IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j')", nil, row("tx", "j"), True},
		{"tx NOT IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j')", nil, row("tx", "k"), True},
		// IS [NOT] NULL / TRUE / FALSE / UNKNOWN / DISTINCT
		{"i4 IS NULL", nil, row(), True},
		{"i4 IS NOT NULL", nil, row(), False},
		{"arr IS NOT NULL", nil, row("arr", "[1]"), True},
		{"b IS NOT TRUE", nil, row(), True},
		{"b IS FALSE", nil, row("b", false), True},
		{"(i4 = 1) IS UNKNOWN", nil, row(), True},
		{"(i4 = 1) IS NOT UNKNOWN", nil, row(), False},
		{"i4 IS DISTINCT FROM NULL", nil, row(), False},
		{"i4 IS DISTINCT FROM 1", nil, row(), True},
		{"i4 IS NOT DISTINCT FROM 1", nil, row("i4", 1), True},
		// numbers
		{"i4 = 1.5", nil, row("i4", 1), False},
		{"i4 < 1.5", nil, row("i4", 1), True},
		{"i4 = 1.0", nil, row("i4", 1), True},
		{"id = 9007199254740993", nil, row("id", int64(9007199254740993)), True},
		{"id = 9007199254740992::float8", nil, row("id", int64(9007199254740993)), True},
		{"n = 1.5", nil, row("n", "1.50"), True},
		{"n > 1.49999999999999999999", nil, row("n", "1.50"), True},
		{"n > 100000000000000000000", nil, row("n", "Infinity"), True},
		{"n > 'Infinity'", nil, row("n", "NaN"), True},
		{"n = 'NaN'", nil, row("n", "NaN"), True},
		{"n < -1", nil, row("n", "-Infinity"), True},
		{"n = i4", nil, row("n", "-0.00", "i4", 0), True},
		{"f4 = 1.1", nil, row("f4", 1.1), False},
		{"f4 = '1.1'", nil, row("f4", 1.1), True},
		{"f4 IN (1.1, 2.2)", nil, row("f4", 1.1), True},
		{"f4 IN (1.1)", nil, row("f4", 1.1), False},
		{"f8 = 'NaN'", nil, row("f8", nan), True},
		{"f8 > 'Infinity'", nil, row("f8", nan), True},
		{"f8 = -0.0", nil, row("f8", 0.0), True},
		{"f8 = '-0'", nil, row("f8", math.Copysign(0, -1)), True},
		{"f8 < 'NaN'", nil, row("f8", math.Inf(1)), True},
		{"i4 = f8", nil, row("i4", 1, "f8", 1.0), True},
		{"i4 BETWEEN 1 AND 3", nil, row("i4", 3), True},
		{"i4 NOT BETWEEN 1 AND 3", nil, row("i4", 3), False},
		{"i4 BETWEEN 3 AND 1", nil, row("i4", 2), False},
		{"i4 BETWEEN SYMMETRIC 3 AND 1", nil, row("i4", 2), True},
		{"i4 BETWEEN 1 AND NULL", nil, row("i4", 0), False},
		{"i4 BETWEEN 1 AND NULL", nil, row("i4", 2), Unknown},
		{"-i4 = -5", nil, row("i4", 5), True},
		{"i4::text = '5'", nil, row("i4", 5), True},
		{"b::int4 = 1", nil, row("b", true), True},
		{"i4 + 1 = 3", nil, row("i4", 2), True},
		{"i2 * i2 > 0", nil, row("i2", 200), Unknown}, // smallint out of range: Postgres raises an error
		{"i2 * i4 > 0", nil, row("i2", 200, "i4", 200), True},
		{"id - 1 < id", nil, row("id", math.MinInt64), Unknown},
		{"coalesce(i4, i2, 7) = 7", nil, row(), True},
		{"coalesce(i4, i2, 7) = 2", nil, row("i2", 2), True},
		{"coalesce(f4, i4) = 1.1", nil, row("f4", 1.1), False},
		{"lower(tx) = 'école'", nil, row("tx", "École"), False},
		{"lower(tx) = 'École'", nil, row("tx", "ÉCOLE"), True}, // ASCII only: É stays
		{"f8 IN (1.1::real, 0)", nil, row("f8", 1.1), False},
		{"f8 IN (1.1::real, 0)", nil, row("f8", float64(float32(1.1))), True},
		{"lower(tx) = 'École'", nil, row("tx", "École"), True},
		{"upper(c4) = 'AB'", nil, row("c4", "ab  "), True},
		// text
		{"tx < 'b'", nil, row("tx", "B"), True},
		{"tx > 'z'", nil, row("tx", "é"), True},
		{"tx = ''", nil, row("tx", ""), True},
		{"c4 = 'ab'", nil, row("c4", "ab  "), True},
		{"c4 = 'ab   '", nil, row("c4", "ab  "), True},
		{"c4 = 'ab'::text", nil, row("c4", "ab  "), True},
		{"c4 = 'ab '::text", nil, row("c4", "ab  "), False},
		{"c4 = tx", nil, row("c4", "ab  ", "tx", "ab"), True},
		{"c4::text = 'ab'", nil, row("c4", "ab  "), True},
		{"c4 LIKE 'ab'", nil, row("c4", "ab  "), False},
		{"c4 LIKE 'ab%'", nil, row("c4", "ab  "), True},
		{"vc < 'b'", nil, row("vc", "a"), True},
		// LIKE / ILIKE
		{"tx LIKE 'a%'", nil, row("tx", "abc"), True},
		{"tx LIKE 'a_c'", nil, row("tx", "aéc"), True},
		{"tx LIKE 'a__c'", nil, row("tx", "aéc"), False},
		{"tx LIKE '%\\%'", nil, row("tx", "50%"), True},
		{"tx LIKE '%\\%'", nil, row("tx", "50"), False},
		{"tx LIKE 'a\\_c'", nil, row("tx", "abc"), False},
		{"tx LIKE 'a\\_c'", nil, row("tx", "a_c"), True},
		{"tx LIKE '%'", nil, row("tx", ""), True},
		{"tx LIKE ''", nil, row("tx", ""), True},
		{"tx NOT LIKE 'a%'", nil, row("tx", "b"), True},
		{"tx ILIKE 'ABC'", nil, row("tx", "abc"), True},
		{"tx ILIKE 'É'", nil, row("tx", "é"), False},
		{"tx LIKE $1", []*string{sp("%b%")}, row("tx", "abc"), True},
		{"tx LIKE 'a%'", nil, row(), Unknown},
		// uuid, bytea, enum, jsonb
		{"u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", nil, row("u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), True},
		{"u < 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", nil, row("u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), True},
		{"by < '\\x0000'", nil, row("by", []byte{0}), True},
		{"by > '\\x00'", nil, row("by", []byte{0, 0}), True},
		{"by = 'ab'", nil, row("by", []byte("ab")), True},
		{"e = 'ok'", nil, row("e", "ok"), True},
		{"e IN ('sad', 'happy')", nil, row("e", "ok"), False},
		{"jb = '{\"a\": 1}'", nil, row("jb", `{"a": 1.0}`), True},
		{"jb = '[1, 2]'", nil, row("jb", `[1, 2.00]`), True},
		{"jb = '1'", nil, row("jb", `[1]`), False},
		{"jb <> '{\"a\": \"x\"}'", nil, row("jb", `{"a": "y"}`), True},
		// dates and times
		{"d = '2024-01-01'", nil, row("d", "2024-01-01"), True},
		{"d < '0001-01-01'", nil, row("d", "0044-03-15 BC"), True},
		{"d < '0044-03-16 BC'", nil, row("d", "0044-03-15 BC"), True},
		{"d > '9999-12-31'", nil, row("d", "infinity"), True},
		{"d < '0001-01-01 BC'", nil, row("d", "-infinity"), True},
		{"d = '2024-01-01 00:00:00'::timestamp", nil, row("d", "2024-01-01"), True},
		{"d < '2024-01-01 00:00:01'::timestamp", nil, row("d", "2024-01-01"), True},
		{"ts = 'infinity'::date", nil, row("ts", "infinity"), True},
		{"ts > '2024-01-01 12:00:00'", nil, row("ts", "2024-01-01 12:00:00.000001"), True},
		{"ts::date = '2024-01-01'", nil, row("ts", "2024-01-01 23:59:59.999999"), True},
		{"tz = '2024-01-01 02:00:00+02'", nil, row("tz", "2024-01-01 00:00:00Z"), True},
		{"tz = ts", nil, row("tz", "2024-01-01 00:00:00Z", "ts", "2024-01-01 00:00:00"), True},
		{"tz::text = '2024-01-01 00:00:00+00'", nil, row("tz", "2024-01-01 00:00:00Z"), True},
		{"tm > '23:59:59.999999'", nil, row("tm", "24:00:00"), True},
		{"tm = '12:00'::interval", nil, row("tm", "12:00:00"), True},
		{"iv = '30 days'", nil, row("iv", "P1M"), True},
		{"iv = '24 hours'", nil, row("iv", "P1D"), True},
		{"iv < '1 day'", nil, row("iv", "PT23H59M59.999999S"), True},
		{"iv > '-1 day'", nil, row("iv", "PT-0.5S"), True},
		{"iv = '0'", nil, row("iv", "P1M-30D"), True},
		{"iv > '1 mon'", nil, row("iv", "P1M1DT-23H"), True},
	} {
		e, err := Parse(tc.expr, unitCols, len(tc.params))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.expr, err)
			continue
		}
		p, err := e.Bind(context.Background(), tc.params, coerce)
		if err != nil {
			t.Errorf("Bind(%q): %v", tc.expr, err)
			continue
		}
		if got := p.Eval(tc.row); got != tc.want {
			t.Errorf("%s: Eval = %v, want %v", tc.expr, got, tc.want)
		}
		if got := p.Match(tc.row); got != (tc.want == True) {
			t.Errorf("%s: Match = %v", tc.expr, got)
		}
	}
}

func TestBindErrors(t *testing.T) {
	coerce := unitCoerce(t)
	for _, tc := range []struct {
		expr    string
		nparams int
		params  []*string
		msg     string
	}{
		{"i4 = $1", 1, nil, "the shape takes 1 parameter, got 0"},
		{"i4 = $1", 1, []*string{sp("x")}, `parameter $1: invalid input syntax for type integer: "x"`},
		{"i4 = 'x'", 0, nil, `invalid input syntax for type integer: "x" at position 6`},
		{"i2 = $1 AND i4 = $2", 2, []*string{sp("1"), sp("3000000000")}, `parameter $2: value "3000000000" is out of range for type integer`},
		{"d = $1", 1, []*string{sp("2024-02-30")}, `parameter $1: date/time field value out of range: "2024-02-30"`},
		{"e = $1", 1, []*string{sp("glad")}, `parameter $1: invalid input value for enum mood: "glad"`},
		{"ts > 'now'", 0, nil, `"now" is a non-deterministic value and cannot be used in a shape at position 6`},
		{"ts = 'tomorrow 12:00'", 0, nil, `"tomorrow 12:00" is a non-deterministic value and cannot be used in a shape at position 6`},
		{"d = $1", 1, []*string{sp(" Today ")}, `parameter $1: " Today " is a non-deterministic value and cannot be used in a shape`},
		{"tx LIKE 'a\\'", 0, nil, "LIKE pattern must not end with escape character at position 4"},
		{"i2 = 100000::int2", 0, nil, "cannot convert the integer value to smallint (out of range or invalid) at position 12"},
		{"i4 = -(-2147483648)::int4", 0, nil, "integer out of range at position 6"},
	} {
		e, err := Parse(tc.expr, unitCols, tc.nparams)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.expr, err)
			continue
		}
		_, err = e.Bind(context.Background(), tc.params, coerce)
		if err == nil {
			t.Errorf("Bind(%q) succeeded, want %q", tc.expr, tc.msg)
			continue
		}
		if _, ok := err.(*Error); !ok || err.Error() != tc.msg {
			t.Errorf("Bind(%q):\n got %T %q\nwant %q", tc.expr, err, err, tc.msg)
		}
	}
}

// TestEvalShortRow: rows shorter than the column list, or with values of
// unexpected kinds, read as NULL and never panic.
func TestEvalOddRows(t *testing.T) {
	exprs := []string{"i4 = 1", "tx = 'a'", "i4 IN (1, 2)", "tx IN ('a', 'b')", "d > '2024-01-01'", "iv > 'P1D'", "n > 1", "f4 < 1", "c4 LIKE 'a%'", "jb = '1'", "b", "ts::date = d", "tx::name = 'x'", "-i4 = 1"}
	rows := [][]coltype.Value{
		nil,
		make([]coltype.Value, 3),
	}
	odd := make([]coltype.Value, len(unitCols))
	for i := range odd {
		odd[i] = coltype.Value{Kind: coltype.Kind(i%6 + 1), B: []byte("garbage\xff"), I: math.MinInt64, F: math.NaN()}
	}
	rows = append(rows, odd)
	for _, s := range exprs {
		e, err := Parse(s, unitCols, 0)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.Bind(context.Background(), nil, fakeCoerce)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			p.Eval(r)
		}
		if got := p.Eval(nil); got != Unknown {
			t.Errorf("%s on an empty row: %v, want unknown", s, got)
		}
	}
}

func TestEvalNoAlloc(t *testing.T) {
	for _, s := range []string{
		"id = 5 AND tx IN ('open', 'closed')",
		"tx = 'abc' OR vc < 'b' OR c4 = 'ab'",
		"n > 1.5 AND f8 < 2 AND f4 = 1.1 AND i2 = i4",
		"d > '2024-01-01' AND ts < '2025-01-01 00:00:00' AND tz > ts AND tm < '12:00:00' AND iv > 'P1D'",
		"tx LIKE 'a%b%' AND tx ILIKE '%B' AND u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
		"b IS TRUE AND i4 IS NOT NULL AND i4 IS DISTINCT FROM 3 AND i4 BETWEEN 1 AND 10",
	} {
		e, err := Parse(s, unitCols, 0)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.Bind(context.Background(), nil, fakeCoerce)
		if err != nil {
			t.Fatal(err)
		}
		r := row("id", 5, "tx", "abcb", "vc", "a", "c4", "ab  ", "n", "1.75", "f8", 1.5, "f4", 1.1, "i2", 3, "i4", 3,
			"d", "2024-06-01", "ts", "2024-06-01 00:00:00", "tz", "2024-06-02 00:00:00Z", "tm", "11:00:00", "iv", "P2D",
			"u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b", true)
		if n := testing.AllocsPerRun(100, func() { p.Eval(r) }); n != 0 {
			t.Errorf("%s: %v allocations per Eval", s, n)
		}
	}
}
