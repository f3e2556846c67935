package where

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
)

var (
	diffSeed    = flag.Int64("where.seed", 1, "seed of the random where clauses in TestDifferential (0: time-based)")
	diffClauses = flag.Int("where.clauses", 3000, "number of random where clauses in TestDifferential")
)

type fam int

const (
	fNum fam = iota
	fText
	fDate
	fTime
	fIv
	fBool
	fUUID
	fEnum
	fBytea
	fJSONB
	fArray
	nfam
)

type gcol struct {
	name   string
	pgtype string // in CREATE TABLE
	ct     coltype.Type
	fam    fam
	pool   []string // input texts
}

var diffCols = []gcol{
	{"i2", "int2", coltype.Type{Base: coltype.Int2, Name: "smallint"}, fNum,
		[]string{"0", "1", "-1", "2", "5", "10", "100", "-32768", "32767", "7"}},
	{"i4", "int4", coltype.Type{Base: coltype.Int4, Name: "integer"}, fNum,
		[]string{"0", "1", "-1", "2", "5", "10", "100", "2147483647", "-2147483648", "16777217", "7"}},
	{"i8", "int8", coltype.Type{Base: coltype.Int8, Name: "bigint"}, fNum,
		[]string{"0", "1", "-1", "2", "5", "100", "9007199254740993", "9223372036854775807", "-9223372036854775808", "3000000000"}},
	{"n", "numeric", coltype.Type{Base: coltype.Numeric, Name: "numeric"}, fNum,
		[]string{"0", "1", "1.0", "1.5", "-1.5", "2.50", "1.1", "0.1", "100", "100000000000000000000", "NaN", "Infinity", "-Infinity", "3.14159265358979323846", "-0.0001", "5", "2", "16777217", "9007199254740993"}},
	{"n2", "numeric(10,2)", coltype.Type{Base: coltype.Numeric, Name: "numeric(10,2)"}, fNum,
		[]string{"0", "1", "1.5", "-1.5", "2.5", "1.1", "0.1", "100", "5", "2"}},
	{"f4", "real", coltype.Type{Base: coltype.Float4, Name: "real"}, fNum,
		[]string{"0", "-0", "1", "1.1", "1.5", "2.5", "NaN", "Infinity", "-Infinity", "16777217", "3.4e38", "1e-45", "0.1", "5"}},
	{"f8", "float8", coltype.Type{Base: coltype.Float8, Name: "double precision"}, fNum,
		[]string{"0", "-0", "1", "1.1", "0.1", "1.5", "NaN", "Infinity", "-Infinity", "9007199254740993", "1e308", "5e-324", "1.100000023841858", "5", "2.5"}},
	{"b", "bool", coltype.Type{Base: coltype.Bool, Name: "boolean"}, fBool, []string{"t", "f"}},
	{"tx", "text", coltype.Type{Base: coltype.TextType, Name: "text"}, fText,
		[]string{"", "a", "A", "abc", "ab", "ab ", "ab  ", " a", "%", "_", "a%b", "a_b", `\`, `a\b`, "é", "École", "école", "zebra", "Zebra", "open", "closed", "it's", "abcd", "ABCD", "a b", "aé_"}},
	{"vc", "varchar(10)", coltype.Type{Base: coltype.TextType, Name: "character varying(10)"}, fText,
		[]string{"", "a", "A", "ab", "ab ", "ab  ", "%", "a%b", "open", "closed", "abcd", "é", "ABCD"}},
	{"c4", "char(4)", coltype.Type{Base: coltype.TextType, Name: "character(4)"}, fText,
		[]string{"", "a", "ab", "ab ", "abcd", " a", "%", "A", "_", "é", "ab_", "ABCD"}},
	{"nm", "name", coltype.Type{Base: coltype.TextType, Name: "name"}, fText,
		[]string{"a", "ab", "abc", "", "Zebra", "open", "ab "}},
	{"u", "uuid", coltype.Type{Base: coltype.UUID, Name: "uuid"}, fUUID,
		[]string{"00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "ffffffff-ffff-ffff-ffff-ffffffffffff", "12345678-1234-1234-1234-123456789abc"}},
	{"d", "date", coltype.Type{Base: coltype.Date, Name: "date"}, fDate,
		[]string{"2024-01-01", "2024-02-29", "1970-01-01", "0001-01-01", "0044-03-15 BC", "0001-12-31 BC", "infinity", "-infinity", "2000-01-01", "9999-12-31", "2023-12-31"}},
	{"ts", "timestamp", coltype.Type{Base: coltype.Timestamp, Name: "timestamp without time zone"}, fDate,
		[]string{"2024-01-01 00:00:00", "2024-01-01 12:34:56.789", "2023-12-31 23:59:59.999999", "infinity", "-infinity", "0001-01-01 00:00:00 BC", "1970-01-01 00:00:00", "2024-01-01 00:00:00.000001", "2000-01-01 00:00:00", "1999-12-31 23:00:00"}},
	{"tz", "timestamptz", coltype.Type{Base: coltype.Timestamptz, Name: "timestamp with time zone"}, fDate,
		[]string{"2024-01-01 00:00:00+00", "2024-01-01 02:00:00+02", "2023-12-31 23:59:59.999999+00", "infinity", "-infinity", "0001-01-01 00:00:00+00 BC", "1970-01-01 00:00:00+00", "2024-01-01 12:34:56.789+00", "2000-01-01 00:00:00-05"}},
	{"tm", "time", coltype.Type{Base: coltype.Time, Name: "time without time zone"}, fTime,
		[]string{"00:00:00", "12:00:00", "23:59:59.999999", "24:00:00", "12:34:56.5", "00:00:00.000001", "06:30:00"}},
	{"iv", "interval", coltype.Type{Base: coltype.Interval, Name: "interval"}, fIv,
		[]string{"1 day", "24 hours", "1 mon", "30 days", "1 year", "360 days", "-1 day", "0", "1 mon -30 days", "1.5 sec", "-00:00:00.5", "100 hours", "12:00:00", "1 day 12:00:00", "-1 mon", "-1 mon 30 days 00:00:00.000001"}},
	{"e", "mood", coltype.Type{Base: coltype.Enum, Name: "mood"}, fEnum, []string{"sad", "ok", "happy"}},
	{"by", "bytea", coltype.Type{Base: coltype.Bytea, Name: "bytea"}, fBytea,
		[]string{`\x`, `\x00`, `\x0000`, `\x01`, `\xff`, `\x6162`, `\x61`, `\x00ff`}},
	{"jb", "jsonb", coltype.Type{Base: coltype.JSONB, Name: "jsonb"}, fJSONB,
		[]string{`1`, `1.0`, `{"a":1}`, `{"a":1.0}`, `[1,2]`, `"x"`, `null`, `{"b":[1,{"c":true}],"a":null}`, `[1]`, `{}`, `[]`, `{"a": 1, "b": 2}`, `2.50`, `2.5`, `[1.0, 2]`}},
	{"arr", "int4[]", coltype.Type{Base: coltype.Int4, Array: true, Name: "integer[]"}, fArray, []string{"{1,2}", "{}", "{NULL}"}},
}

func quoteLit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// gen generates random where clauses over diffCols.
type gen struct {
	r      *rand.Rand
	params []*string
	byFam  [nfam][]int
}

func newGen(seed int64) *gen {
	g := &gen{r: rand.New(rand.NewSource(seed))}
	for i, c := range diffCols {
		g.byFam[c.fam] = append(g.byFam[c.fam], i)
	}
	return g
}

func (g *gen) pick(s []string) string { return s[g.r.Intn(len(s))] }
func (g *gen) chance(p float64) bool  { return g.r.Float64() < p }

func (g *gen) famValue(f fam) string {
	idx := g.byFam[f]
	c := diffCols[idx[g.r.Intn(len(idx))]]
	if c.fam == fNum && g.chance(0.15) {
		return g.pick([]string{"1.1", "16777216", "-0.5", "1e3", "1.10", "3000000000", "99999999999999999999", "0.1", "2.5", "7"})
	}
	if c.fam == fText && g.chance(0.1) {
		return g.pick([]string{"abcdefghijklmnop", "ab   ", "é_", "closed", "op%"})
	}
	if c.fam == fDate && g.chance(0.2) {
		return g.pick([]string{"2024-01-01 00:00:00", "2024-01-01", "2023-12-31 19:00:00-05", "epoch", "2024-01-01 12:00"})
	}
	return g.pick(c.pool)
}

func (g *gen) param(v *string) string {
	if len(g.params) > 0 && g.chance(0.15) {
		// Reuse a parameter: its type is fixed by its first use.
		return fmt.Sprintf("$%d", 1+g.r.Intn(len(g.params)))
	}
	g.params = append(g.params, v)
	return fmt.Sprintf("$%d", len(g.params))
}

var famCasts = map[fam][]string{
	fNum:   {"int2", "int4", "int8", "bigint", "numeric", "real", "float8", "double precision", "numeric(10,2)", "decimal"},
	fText:  {"text", "varchar", "bpchar", "char(4)", "name", "varchar(3)", "character varying"},
	fDate:  {"date", "timestamp", "timestamptz", "timestamp with time zone", "timestamp(0)", "timestamptz(2)"},
	fTime:  {"time", "interval", "time(0)"},
	fIv:    {"interval"},
	fBool:  {"bool", "boolean"},
	fUUID:  {"uuid"},
	fEnum:  {"mood"},
	fBytea: {"bytea"},
	fJSONB: {"jsonb"},
}

// constant returns a constant or parameter of family f.
func (g *gen) constant(f fam) string {
	if g.chance(0.05) {
		return "NULL"
	}
	v := g.famValue(f)
	if f == fBool {
		v = g.pick([]string{"true", "false", "t", "f", "yes", "off"})
	}
	switch x := g.r.Intn(10); {
	case x < 3:
		p := g.param(&v)
		if g.chance(0.3) {
			p += "::" + g.pick(famCasts[f])
		}
		return p
	case x < 5 && f == fNum && isPlainNumber(v):
		if g.chance(0.2) {
			return v + "::" + g.pick(famCasts[f])
		}
		return v
	case x < 5 && f == fBool:
		if v == "true" || v == "false" {
			return v
		}
	case x < 7:
		if g.chance(0.5) {
			return "CAST(" + quoteLit(v) + " AS " + g.pick(famCasts[f]) + ")"
		}
		return quoteLit(v) + "::" + g.pick(famCasts[f])
	}
	return quoteLit(v)
}

func isPlainNumber(s string) bool {
	if s == "" || s == "-0" {
		return false
	}
	for i, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == '-' && i == 0) {
			return false
		}
	}
	return true
}

var colCasts = map[fam][]string{
	fNum: {"i2::int8", "i4::numeric", "f4::float8", "i8::float8", "n::float8", "i4::real", "b::int4", "i2::int4", "n2::numeric", "i4::float4",
		"(i2::int4 + i2)", "(i4::int8 * 3)", "(i4::int8 - i2)", "(i2 * 2)", "(2 - i2)", "coalesce(i4, i2, 0)", "coalesce(n, 1.5)", "coalesce(f4, i4)", "coalesce(n2, i2)", "-i4::int8", "-f8", "-n"},
	fText: {"i4::text", "n::text", "b::text", "u::text", "e::text", "d::text", "ts::text", "tz::text", "tm::text", "c4::text", "c4::varchar", "nm::text", "tx::bpchar", "vc::text", "tx::name", "CAST(i8 AS varchar)", "n2::text",
		"lower(tx)", "upper(vc)", "lower(c4)", "coalesce(tx, vc)", "coalesce(c4, 'x')", "upper(nm)", "coalesce(tx, '')", "coalesce(vc, c4)"},
	fDate: {"ts::date", "tz::date", "d::timestamp", "tz::timestamp", "ts::timestamptz", "d::timestamptz", "coalesce(d, ts)", "coalesce(tz, d)"},
	fTime: {"ts::time", "tz::time", "coalesce(tm, '12:00')"},
	fBool: {"i4::bool", "coalesce(b, false)"},
}

// column returns a column (or a cast of one) of family f.
func (g *gen) column(f fam) string {
	if cs := colCasts[f]; len(cs) > 0 && g.chance(0.15) {
		return g.pick(cs)
	}
	idx := g.byFam[f]
	c := diffCols[idx[g.r.Intn(len(idx))]].name
	if g.chance(0.1) {
		c = "t." + c
	}
	return c
}

func (g *gen) operand(f fam) string {
	if g.chance(0.3) {
		return g.column(f)
	}
	return g.constant(f)
}

var cmpFams = []fam{fNum, fNum, fNum, fText, fText, fText, fDate, fDate, fTime, fIv, fBool, fUUID, fEnum, fBytea, fJSONB}

func (g *gen) cmpFam() fam {
	return cmpFams[g.r.Intn(len(cmpFams))]
}

func (g *gen) op(f fam) string {
	if f == fEnum || f == fJSONB {
		return g.pick([]string{"=", "<>", "!="})
	}
	return g.pick([]string{"=", "<>", "!=", "<", "<=", ">", ">="})
}

func (g *gen) rhsFam(f fam) fam {
	if f == fTime && g.chance(0.2) {
		return fIv
	}
	if f == fIv && g.chance(0.2) {
		return fTime
	}
	return f
}

var likePatterns = []string{"%", "a%", "%b", "_", "a_b", "%\\%%", "%\\_%", "ab  ", "ab%", "AB%", "", "\\%", "%a%", "_b%", "é%", "É%", "%_", "a\\_b", "ab _", "%\\\\%", "a%%b", "_%_", "%é", "ab", "ab "}

func (g *gen) pred(depth int) string {
	n := 12
	if depth >= 3 {
		n = 9
	}
	switch x := g.r.Intn(n); x {
	case 0, 1, 2:
		f := g.cmpFam()
		l := g.column(f)
		if g.chance(0.1) {
			return g.operand(g.rhsFam(f)) + " " + g.op(f) + " " + l
		}
		return l + " " + g.op(f) + " " + g.operand(g.rhsFam(f))
	case 3:
		f := g.cmpFam()
		var items []string
		for i := 1 + g.r.Intn(4); i > 0; i-- {
			if g.chance(0.15) {
				items = append(items, g.column(f))
			} else {
				items = append(items, g.constant(f))
			}
		}
		not := ""
		if g.chance(0.3) {
			not = "NOT "
		}
		l := g.column(f)
		if g.chance(0.1) {
			l = g.constant(f)
		}
		return l + " " + not + "IN (" + strings.Join(items, ", ") + ")"
	case 4:
		f := g.cmpFam()
		for f == fEnum || f == fJSONB {
			f = g.cmpFam()
		}
		kw := g.pick([]string{"BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC"})
		return g.column(f) + " " + kw + " " + g.operand(f) + " AND " + g.operand(f)
	case 5:
		l := g.column(fText)
		var p string
		switch {
		case g.chance(0.2):
			p = g.column(fText)
		case g.chance(0.2):
			v := g.pick(likePatterns)
			p = g.param(&v)
		default:
			p = quoteLit(g.pick(likePatterns))
		}
		return l + " " + g.pick([]string{"LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE", "~~", "!~~", "~~*"}) + " " + p
	case 6:
		var arg string
		if g.chance(0.3) && depth < 3 {
			arg = "(" + g.pred(depth+1) + ")"
		} else {
			arg = diffCols[g.r.Intn(len(diffCols))].name
		}
		return arg + " " + g.pick([]string{"IS NULL", "IS NOT NULL", "ISNULL", "NOTNULL"})
	case 7:
		arg := "b"
		if g.chance(0.5) && depth < 3 {
			arg = "(" + g.pred(depth+1) + ")"
		}
		return arg + " " + g.pick([]string{"IS TRUE", "IS NOT TRUE", "IS FALSE", "IS NOT FALSE", "IS UNKNOWN", "IS NOT UNKNOWN"})
	case 8:
		f := g.cmpFam()
		return g.column(f) + " " + g.pick([]string{"IS DISTINCT FROM", "IS NOT DISTINCT FROM"}) + " " + g.operand(g.rhsFam(f))
	case 9:
		return g.pred(depth+1) + " " + g.pick([]string{"AND", "OR"}) + " " + g.pred(depth+1)
	case 10:
		return "NOT (" + g.pred(depth+1) + ")"
	default:
		return "(" + g.pred(depth+1) + ") " + g.pick([]string{"AND", "OR"}) + " (" + g.pred(depth+1) + ")"
	}
}

// diffEnv is a table of random rows in Postgres and in Go.
type diffEnv struct {
	conn *pgx.Conn
	cols []protocol.Column
	ids  []int64
	rows [][]coltype.Value // rows[i][0] is id
}

func setupDiff(t testing.TB, seed int64, nrows int) *diffEnv {
	url := pgtest.DB(t)
	conn := connect(t, url)
	ctx := context.Background()
	var ddl []string
	for _, c := range diffCols {
		ddl = append(ddl, c.name+" "+c.pgtype)
	}
	for _, q := range []string{
		"CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
		"CREATE TABLE t (id int PRIMARY KEY, " + strings.Join(ddl, ", ") + ")",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewSource(seed))
	var names []string
	for _, c := range diffCols {
		names = append(names, c.name)
	}
	var values []string
	for id := 1; id <= nrows; id++ {
		vals := []string{fmt.Sprint(id)}
		for _, c := range diffCols {
			if r.Float64() < 0.2 {
				vals = append(vals, "NULL")
			} else {
				vals = append(vals, quoteLit(c.pool[r.Intn(len(c.pool))]))
			}
		}
		values = append(values, "("+strings.Join(vals, ", ")+")")
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t (id, "+strings.Join(names, ", ")+") VALUES "+strings.Join(values, ", ")); err != nil {
		t.Fatal(err)
	}
	env := &diffEnv{conn: conn}
	env.cols = append(env.cols, col("id", coltype.Int4, "integer"))
	for _, c := range diffCols {
		env.cols = append(env.cols, protocol.Column{Name: c.name, Type: c.ct})
	}
	res := conn.PgConn().ExecParams(ctx, "SELECT id, "+strings.Join(names, ", ")+" FROM t ORDER BY id", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, raw := range res.Rows {
		row := make([]coltype.Value, len(env.cols))
		for i, b := range raw {
			if b == nil {
				continue
			}
			v, err := fromPGText(env.cols[i].Type, b)
			if err != nil {
				t.Fatalf("FromPGText(%s, %q): %v", env.cols[i].Type.Name, b, err)
			}
			row[i] = v
		}
		env.ids = append(env.ids, row[0].I)
		env.rows = append(env.rows, row)
	}
	return env
}

// pgIDs runs SELECT id FROM t WHERE (<where>) with the parameters sent as
// text of unspecified type, so that Postgres deduces their types.
func (env *diffEnv) pgIDs(where string, params []*string) ([]int64, error) {
	vals := make([][]byte, len(params))
	for i, p := range params {
		if p != nil {
			vals[i] = []byte(*p)
		}
	}
	res := env.conn.PgConn().ExecParams(context.Background(), "SELECT id FROM t WHERE ("+where+") ORDER BY id", vals, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	ids := make([]int64, 0, len(res.Rows))
	for _, r := range res.Rows {
		var id int64
		fmt.Sscan(string(r[0]), &id)
		ids = append(ids, id)
	}
	return ids, nil
}

func (env *diffEnv) goIDs(p *Pred) []int64 {
	ids := []int64{}
	for i, row := range env.rows {
		if p.Match(row) {
			ids = append(ids, env.ids[i])
		}
	}
	return ids
}

func (env *diffEnv) rowString(id int64) string {
	for i, row := range env.rows {
		if env.ids[i] != id {
			continue
		}
		var parts []string
		for j, v := range row {
			var s string
			switch v.Kind {
			case coltype.Null:
				s = "NULL"
			case coltype.Integer:
				s = fmt.Sprint(v.I)
			case coltype.Real:
				s = fmt.Sprint(v.F)
			case coltype.Text:
				s = fmt.Sprintf("%q", v.B)
			case coltype.Blob:
				s = fmt.Sprintf("%x", v.B)
			}
			parts = append(parts, env.cols[j].Name+"="+s)
		}
		return strings.Join(parts, " ")
	}
	return "?"
}

func diffIDs(a, b []int64) (onlyA, onlyB []int64) {
	in := map[int64]int{}
	for _, x := range a {
		in[x] |= 1
	}
	for _, x := range b {
		in[x] |= 2
	}
	for x, m := range in {
		switch m {
		case 1:
			onlyA = append(onlyA, x)
		case 2:
			onlyB = append(onlyB, x)
		}
	}
	sort.Slice(onlyA, func(i, j int) bool { return onlyA[i] < onlyA[j] })
	sort.Slice(onlyB, func(i, j int) bool { return onlyB[i] < onlyB[j] })
	return
}

func paramString(ps []*string) string {
	var s []string
	for i, p := range ps {
		if p == nil {
			s = append(s, fmt.Sprintf("$%d=NULL", i+1))
		} else {
			s = append(s, fmt.Sprintf("$%d=%q", i+1, *p))
		}
	}
	return strings.Join(s, " ")
}

// TestDifferential evaluates random where clauses in Postgres and in Go on
// the same rows and requires the same result.
func TestDifferential(t *testing.T) {
	seed := *diffSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	env := setupDiff(t, seed, 300)
	ctx := context.Background()
	coerce := PGCoerce(env.conn)
	g := newGen(seed)
	var checked, selective, rejected, bindErrs, failures int
	rejectedByUs := map[string]int{}
	for i := 0; i < *diffClauses && failures < 20; i++ {
		g.params = nil
		clause := g.pred(0)
		params := g.params
		report := func(format string, args ...any) {
			failures++
			t.Errorf("seed %d clause %d: %s\n  params: %s\n  %s", seed, i, clause, paramString(params), fmt.Sprintf(format, args...))
		}
		pgWant, pgErr := env.pgIDs(clause, params)
		e, err := ParseTable(clause, "public", "t", env.cols, len(params))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				report("Parse returned %T, not *Error: %v", err, err)
			}
			rejected++
			if pgErr == nil {
				msg := err.Error()
				if j := strings.Index(msg, " at position"); j > 0 {
					msg = msg[:j]
				}
				rejectedByUs[msg]++
				if testing.Verbose() && rejectedByUs[msg] <= 3 {
					t.Logf("rejected: %s\n  params: %s\n  %v", clause, paramString(params), err)
				}
			}
			continue
		}
		pred, err := e.Bind(ctx, params, coerce)
		if err != nil {
			bindErrs++
			if _, ok := err.(*Error); !ok {
				report("Bind returned %T, not *Error: %v", err, err)
			} else if pgErr == nil {
				report("Bind failed but Postgres runs the clause: %v", err)
			}
			continue
		}
		if pgErr != nil {
			report("Postgres fails but Parse and Bind succeed: %v", pgErr)
			continue
		}
		checked++
		got := env.goIDs(pred)
		if len(got) > 0 && len(got) < len(env.rows) {
			selective++
		}
		if onlyPG, onlyGo := diffIDs(pgWant, got); len(onlyPG)+len(onlyGo) > 0 {
			var rows []string
			for _, id := range onlyPG {
				rows = append(rows, "  only Postgres: "+env.rowString(id))
			}
			for _, id := range onlyGo {
				rows = append(rows, "  only Go: "+env.rowString(id))
			}
			if len(rows) > 4 {
				rows = append(rows[:4], fmt.Sprintf("  ... (%d rows differ)", len(rows)))
			}
			report("SQL: %s\n%s", e.SQL(), strings.Join(rows, "\n"))
			continue
		}
		deparsed, err := env.pgIDs(e.SQL(), params)
		if err != nil {
			report("deparsed SQL %q fails in Postgres: %v", e.SQL(), err)
			continue
		}
		if a, b := diffIDs(pgWant, deparsed); len(a)+len(b) > 0 {
			report("deparsed SQL %q selects different rows: %v vs %v", e.SQL(), a, b)
		}
	}
	t.Logf("seed %d: %d clauses checked against Postgres (%d selecting some but not all rows), %d rejected by Parse (%d of them run in Postgres), %d failed in Bind (and in Postgres)",
		seed, checked, selective, rejected, sumMap(rejectedByUs), bindErrs)
	if testing.Verbose() {
		type kv struct {
			k string
			v int
		}
		var kvs []kv
		for k, v := range rejectedByUs {
			kvs = append(kvs, kv{k, v})
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v })
		for _, x := range kvs {
			t.Logf("  rejected by Parse, accepted by Postgres: %4d × %s", x.v, x.k)
		}
	}
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
