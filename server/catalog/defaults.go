package catalog

import (
	"context"
	"encoding/hex"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/latticesync/lattice/coltype"
)

// Local defaults: a Postgres column default becomes a SQLite expression
// that clients use for local inserts leaving the column out. Constants are
// evaluated by Postgres and converted like any value; the usual clock and
// UUID functions map to SQLite equivalents producing Lattice's
// representation; anything else (sequences, other functions) has none.

var (
	constDefault = regexp.MustCompile(`^(?:'(?:[^']|'')*'(?:::[\w ."\[\]()]+)?|\(?-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?\)?(?:::[\w ]+)?|true|false)$`)
	nowDefault   = regexp.MustCompile(`^(now\(\)|CURRENT_TIMESTAMP|statement_timestamp\(\)|transaction_timestamp\(\)|clock_timestamp\(\))$`)
	uuidDefault  = regexp.MustCompile(`^(gen_random_uuid\(\)|(public\.)?uuid_generate_v4\(\))$`)
)

const (
	sqliteNowUTC = `(strftime('%Y-%m-%d %H:%M:%f', 'now') || 'Z')`
	sqliteNow    = `(strftime('%Y-%m-%d %H:%M:%f', 'now'))`
	sqliteToday  = `(date('now'))`
	sqliteUUIDv4 = `(lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || ` +
		`substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))))`
)

// localDefault maps the default expression expr (pg_get_expr) of a column
// of type t to a SQLite expression, or "".
func localDefault(ctx context.Context, q Querier, expr string, t coltype.Type) string {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return ""
	case nowDefault.MatchString(expr) && !t.Array:
		switch t.Base {
		case coltype.Timestamptz:
			return sqliteNowUTC
		case coltype.Timestamp:
			return sqliteNow
		case coltype.Date:
			return sqliteToday
		}
		return ""
	case expr == "CURRENT_DATE" && t.Base == coltype.Date && !t.Array:
		return sqliteToday
	case uuidDefault.MatchString(expr) && t.Base == coltype.UUID && !t.Array:
		return sqliteUUIDv4
	case constDefault.MatchString(expr):
		var text *string
		// expr is Postgres' own deparsed constant: safe to evaluate.
		if err := q.QueryRow(ctx, "SELECT format('%s', "+expr+")").Scan(&text); err != nil || text == nil {
			return ""
		}
		v, err := coltype.FromPGText(t, []byte(*text))
		if err != nil {
			return ""
		}
		return sqliteLiteral(v)
	}
	return ""
}

// sqliteLiteral renders a value as a SQLite literal.
func sqliteLiteral(v coltype.Value) string {
	switch v.Kind {
	case coltype.Integer:
		return strconv.FormatInt(v.I, 10)
	case coltype.Real:
		if math.IsInf(v.F, 0) || math.IsNaN(v.F) {
			return "" // no literal: leave the default out
		}
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case coltype.Text:
		return "'" + strings.ReplaceAll(string(v.B), "'", "''") + "'"
	case coltype.Blob:
		return "X'" + hex.EncodeToString(v.B) + "'"
	}
	return "NULL"
}
