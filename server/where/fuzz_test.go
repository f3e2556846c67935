package where

import (
	"context"
	"math/rand"
	"strings"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

var soup = []string{
	"i4", "tx", "c4", "b", "n", "f4", "d", "ts", "tz", "iv", "jb", "j", "arr", "e", "u", "by", "t.i4", "\"MixedCase\"", "x",
	"=", "<>", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "||", "~~", "~", "::", ".", ",", "(", ")", "[", "]", ";",
	"AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE", "UNKNOWN", "DISTINCT", "FROM", "IN", "BETWEEN", "SYMMETRIC",
	"LIKE", "ILIKE", "ESCAPE", "SIMILAR", "TO", "CAST", "AS", "SELECT", "WHERE", "UNION", "ORDER", "BY", "LIMIT", "ANY", "ALL",
	"ARRAY", "ROW", "CASE", "WHEN", "THEN", "ELSE", "END", "COLLATE", "EXISTS", "OVER", "count(*)", "now()", "lower", "coalesce",
	"1", "-1", "1.5", "1e400", "3000000000", "99999999999999999999", "0x1F", "1_000", "'a'", "'%'", "''", "'\\'", "E'\\n'", "$$x$$",
	"$1", "$2", "$0", "$99", "int", "text", "numeric(10,2)", "char(2)", "date", "interval", "mood", "int[]", "jsonb",
	"--", "/*", "*/", "'", "\"", "$", "\x00", "é", "\xff",
}

// TestParseRobust: Parse never panics on garbage or token soup, and
// whatever it accepts binds and evaluates without panicking.
func TestParseRobust(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	rows := [][]coltype.Value{nil, row(), make([]coltype.Value, len(diffCols)+1), row("i4", 1, "tx", "a", "b", true, "n", "1.5", "d", "2024-01-01", "iv", "P1D", "jb", "1")}
	var accepted int
	for i := 0; i < 20000; i++ {
		var s string
		switch i % 4 {
		case 3:
			// Mutate a valid clause.
			g := newGen(int64(i))
			toks := strings.Fields(g.pred(0))
			for j := r.Intn(3); j > 0 && len(toks) > 0; j-- {
				k := r.Intn(len(toks))
				switch r.Intn(3) {
				case 0:
					toks[k] = soup[r.Intn(len(soup))]
				case 1:
					toks = append(toks[:k], toks[k+1:]...)
				default:
					toks = append(toks[:k], append([]string{soup[r.Intn(len(soup))]}, toks[k:]...)...)
				}
			}
			s = strings.Join(toks, " ")
		case 0:
			b := make([]byte, r.Intn(40))
			r.Read(b)
			s = string(b)
		case 1:
			b := make([]byte, r.Intn(40))
			for j := range b {
				b[j] = byte(32 + r.Intn(95))
			}
			s = string(b)
		default:
			var parts []string
			for j := r.Intn(12) + 1; j > 0; j-- {
				parts = append(parts, soup[r.Intn(len(soup))])
			}
			s = strings.Join(parts, " ")
		}
		var e *Expr
		var err error
		if i%4 == 3 {
			e, err = ParseTable(s, "public", "t", diffEnvCols(), maxParam(s))
		} else {
			e, err = Parse(s, unitCols, maxParam(s))
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Parse(%q) error is %T", s, err)
			}
			continue
		}
		accepted++
		params := make([]*string, e.NumParams())
		for j := range params {
			if j%2 == 0 {
				params[j] = sp("1")
			}
		}
		p, err := e.Bind(context.Background(), params, fakeCoerce)
		if err != nil {
			continue
		}
		for _, rw := range rows {
			p.Eval(rw)
		}
	}
	t.Logf("%d of 20000 random inputs parsed", accepted)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"i4 = 1", "tx LIKE 'a%' AND NOT b", "i4 IN (1, $1, NULL)", "d BETWEEN '2024-01-01' AND $2", "true; drop table x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s, unitCols, maxParam(s))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is %T", err)
			}
			return
		}
		if p, err := e.Bind(context.Background(), make([]*string, e.NumParams()), fakeCoerce); err == nil {
			p.Eval(row("i4", 1, "tx", "a"))
		}
	})
}

func diffEnvCols() []protocol.Column {
	cols := []protocol.Column{col("id", coltype.Int4, "integer")}
	for _, c := range diffCols {
		cols = append(cols, protocol.Column{Name: c.name, Type: c.ct})
	}
	return cols
}
