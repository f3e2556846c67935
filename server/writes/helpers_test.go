package writes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/server/catalog"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is a fresh database with the lattice schema, some electrified
// tables and an Applier.
type env struct {
	tb   testing.TB
	ctx  context.Context
	url  string
	pool *pgxpool.Pool
	a    *Applier
}

// itemsSQL: columns 0 id, 1 title, 2 n, 3 note.
const itemsSQL = `CREATE TABLE items (
	id bigint PRIMARY KEY,
	title text NOT NULL,
	n integer CONSTRAINT n_not_negative CHECK (n >= 0),
	note text
)`

// projects (0 id, 1 name) and issues (0 id, 1 project_id, 2 title).
const projectsSQL = `CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects, title text NOT NULL)`

func newEnv(tb testing.TB, schema string, tables ...string) *env {
	tb.Helper()
	e := &env{tb: tb, ctx: context.Background(), url: pgtest.DB(tb)}
	cfg, err := pgxpool.ParseConfig(e.url)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range coltype.SessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns = 8
	e.pool, err = pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.pool.Close)
	if err := catalog.Bootstrap(e.ctx, e.pool); err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	if schema != "" {
		e.exec(schema)
	}
	for _, t := range tables {
		e.exec("CALL lattice.electrify('" + t + "')")
	}
	e.a = NewApplier(e.pool, catalog.NewTables(e.pool))
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.tb.Helper()
	if _, err := e.pool.Exec(e.ctx, sql, args...); err != nil {
		e.tb.Fatalf("exec %q: %v", sql, err)
	}
}

func (e *env) apply(txn *Txn) Result {
	e.tb.Helper()
	res, err := e.a.Apply(e.ctx, txn)
	if err != nil {
		e.tb.Fatalf("apply %s/%d: %v", txn.Origin, txn.ID, err)
	}
	return res
}

// Values.
func I(i int64) coltype.Value  { return coltype.Value{Kind: coltype.Integer, I: i} }
func T(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }

var Null = coltype.Value{}

// h returns an HLC at a fixed base time plus ms milliseconds.
func h(ms int64) merge.HLC { return merge.MakeHLC(1_700_000_000_000+ms, 0) }

func st(ms int64, origin string) merge.Stamp { return merge.Stamp{HLC: h(ms), Origin: origin} }

func stamps(s ...merge.Stamp) []merge.Stamp { return s }

var txnIDs = map[string]uint64{}

// txn builds a transaction of origin at HLC h(ms), with the next id of
// that origin.
func txn(origin string, ms int64, changes ...Change) *Txn {
	txnIDs[origin]++
	return &Txn{Origin: origin, ID: txnIDs[origin], HLC: h(ms), Changes: changes}
}

func ins(table string, key coltype.Value, vals ...coltype.Value) Change {
	return Change{Table: table, Op: Insert, Key: []coltype.Value{key}, Values: vals}
}

func upd(table string, key coltype.Value, seen []merge.Stamp, setVals ...any) Change {
	c := Change{Table: table, Op: Update, Key: []coltype.Value{key}, Seen: seen}
	for i := 0; i < len(setVals); i += 2 {
		c.Set = append(c.Set, setVals[i].(int))
		c.Values = append(c.Values, setVals[i+1].(coltype.Value))
	}
	return c
}

// seenV makes c report what its author saw as a row version (protocol 2.6).
func seenV(c Change, v uint64) Change {
	c.Seen, c.BySeenVersion, c.SeenVersion = nil, true, v
	return c
}

func del(table string, key coltype.Value, seen ...merge.Stamp) Change {
	return Change{Table: table, Op: Delete, Key: []coltype.Value{key}, Seen: seen}
}

// row reads a base row as text (nil values are NULL), or nil if absent.
func (e *env) row(table, where string, args ...any) []*string {
	e.tb.Helper()
	args = append([]any{pgx.QueryExecModeSimpleProtocol}, args...) // text format
	rows, err := e.pool.Query(e.ctx, "SELECT * FROM "+table+" WHERE "+where, args...)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			e.tb.Fatal(err)
		}
		return nil
	}
	raw := rows.RawValues()
	out := make([]*string, len(raw))
	for i, v := range raw {
		if v != nil {
			s := string(v)
			out[i] = &s
		}
	}
	return out
}

// rowStr formats a base row as "a|b|NULL", or "<none>".
func (e *env) rowStr(table, where string, args ...any) string {
	e.tb.Helper()
	r := e.row(table, where, args...)
	if r == nil {
		return "<none>"
	}
	parts := make([]string, len(r))
	for i, v := range r {
		if v == nil {
			parts[i] = "NULL"
		} else {
			parts[i] = *v
		}
	}
	return strings.Join(parts, "|")
}

// shadow is a shadow row, decoded.
type shadow struct {
	Cols    []merge.Stamp // by attnum-1; zero = never written
	Adds    []merge.Stamp
	Removes []merge.Stamp
	Tomb    []*string // nil slice when the row exists
	Version int64
	AddVer  map[merge.Stamp]int64 // version at which each tag of Adds was added
}

func (s shadow) live() []merge.Stamp {
	return merge.Row{Adds: s.Adds, Removes: s.Removes}.Live()
}

// shadowOf reads the shadow row of table's row with the given key (as
// text; one key column), or nil.
func (e *env) shadowOf(table, key string) *shadow {
	e.tb.Helper()
	var name string
	if err := e.pool.QueryRow(e.ctx, "SELECT shadow FROM lattice.electrified WHERE relid = $1::text::regclass", table).Scan(&name); err != nil {
		e.tb.Fatal(err)
	}
	var hl, or, ad, rm, tomb *string
	var s shadow
	var addVer []int64
	err := e.pool.QueryRow(e.ctx, "SELECT col_hlc::text, col_origin::text, adds::text, removes::text, tomb::text, version, add_ver FROM "+name+" WHERE pk1 = $1::text::"+e.keyType(table), key).
		Scan(&hl, &or, &ad, &rm, &tomb, &s.Version, &addVer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		e.tb.Fatal(err)
	}
	hs, err := parseArray([]byte(*hl))
	if err != nil {
		e.tb.Fatal(err)
	}
	os, err := parseArray([]byte(*or))
	if err != nil {
		e.tb.Fatal(err)
	}
	for a := 1; a < len(hs); a++ {
		var x merge.Stamp
		if hs[a] != nil {
			v, _ := strconv.ParseInt(string(hs[a]), 10, 64)
			x = merge.Stamp{HLC: merge.HLC(v), Origin: string(os[a])}
		}
		s.Cols = append(s.Cols, x)
	}
	if s.Adds, err = parseTags([]byte(*ad)); err != nil {
		e.tb.Fatal(err)
	}
	if s.Removes, err = parseTags([]byte(*rm)); err != nil {
		e.tb.Fatal(err)
	}
	if len(addVer) != len(s.Adds) {
		e.tb.Fatalf("shadow of %s %s: %d add versions for %d tags", table, key, len(addVer), len(s.Adds))
	}
	s.AddVer = map[merge.Stamp]int64{}
	for i, tag := range s.Adds {
		s.AddVer[tag] = addVer[i]
	}
	if tomb != nil {
		ts, err := parseArray([]byte(*tomb))
		if err != nil {
			e.tb.Fatal(err)
		}
		s.Tomb = []*string{}
		for _, v := range ts[1:] {
			if v == nil {
				s.Tomb = append(s.Tomb, nil)
			} else {
				x := string(v)
				s.Tomb = append(s.Tomb, &x)
			}
		}
	}
	return &s
}

func (e *env) keyType(table string) string {
	var typ string
	err := e.pool.QueryRow(e.ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = $1::text::regclass AND i.indisprimary`, table).Scan(&typ)
	if err != nil {
		e.tb.Fatal(err)
	}
	return typ
}

func fmtStamps(s []merge.Stamp) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = fmt.Sprintf("%d@%s", x.HLC.Millis()-1_700_000_000_000, x.Origin)
		if x.HLC.Millis() < 1_600_000_000_000 || x.HLC.Millis() > 1_800_000_000_000 {
			parts[i] = x.String()
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func wantStamps(t testing.TB, what string, got []merge.Stamp, want ...merge.Stamp) {
	t.Helper()
	g := slices.Clone(got)
	w := slices.Clone(want)
	slices.SortFunc(g, merge.Stamp.Compare)
	slices.SortFunc(w, merge.Stamp.Compare)
	if !slices.Equal(g, w) {
		t.Errorf("%s = %s, want %s", what, fmtStamps(g), fmtStamps(w))
	}
}

func wantRow(t testing.TB, e *env, table, where, want string, args ...any) {
	t.Helper()
	if got := e.rowStr(table, where, args...); got != want {
		t.Errorf("%s where %s = %q, want %q", table, where, got, want)
	}
}

// nowHLC is an HLC of the current wall time.
func nowHLC(offset time.Duration) merge.HLC {
	return merge.MakeHLC(time.Now().Add(offset).UnixMilli(), 0)
}

func bootstrap(e *env) error { return catalog.Bootstrap(e.ctx, e.pool) }
