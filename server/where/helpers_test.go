package where

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
)

func TestMain(m *testing.M) {
	// Until coltype.FromPGText is implemented, read values with a local
	// implementation of the documented representation.
	if _, err := coltype.FromPGText(coltype.Type{Base: coltype.Int4, Name: "integer"}, []byte("1")); err != nil {
		fromPGText = fallbackFromPGText
	}
	pgtest.Main(m)
}

// sessionParams are the service's session settings.
var sessionParams = map[string]string{
	"DateStyle":          "ISO",
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

func connect(tb testing.TB, url string) *pgx.Conn {
	tb.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// fallbackFromPGText implements the value representation documented for
// coltype.FromPGText, for the types used in these tests.
func fallbackFromPGText(t coltype.Type, text []byte) (coltype.Value, error) {
	s := string(text)
	if t.Array {
		return coltype.Value{Kind: coltype.Text, B: []byte(s)}, nil
	}
	switch t.Base {
	case coltype.Int2, coltype.Int4, coltype.Int8:
		i, err := strconv.ParseInt(s, 10, 64)
		return coltype.Value{Kind: coltype.Integer, I: i}, err
	case coltype.Bool:
		switch s {
		case "t", "true":
			return coltype.Value{Kind: coltype.Integer, I: 1}, nil
		case "f", "false":
			return coltype.Value{Kind: coltype.Integer}, nil
		}
		return coltype.Value{}, fmt.Errorf("bad bool %q", s)
	case coltype.Float4, coltype.Float8:
		switch s {
		case "NaN":
			return coltype.Value{Kind: coltype.Text, B: []byte(s)}, nil
		case "Infinity":
			return coltype.Value{Kind: coltype.Real, F: math.Inf(1)}, nil
		case "-Infinity":
			return coltype.Value{Kind: coltype.Real, F: math.Inf(-1)}, nil
		}
		bits := 64
		if t.Base == coltype.Float4 {
			bits = 32
		}
		f, err := strconv.ParseFloat(s, bits)
		return coltype.Value{Kind: coltype.Real, F: f}, err
	case coltype.Timestamptz:
		bc := strings.HasSuffix(s, " BC")
		s = strings.TrimSuffix(s, " BC")
		s = strings.TrimSuffix(s, "+00") + "Z"
		if bc {
			s += " BC"
		}
		return coltype.Value{Kind: coltype.Text, B: []byte(s)}, nil
	case coltype.Bytea:
		b, err := hex.DecodeString(strings.TrimPrefix(s, `\x`))
		return coltype.Value{Kind: coltype.Blob, B: b}, err
	}
	return coltype.Value{Kind: coltype.Text, B: []byte(s)}, nil
}

// fakeCoerce converts literals without Postgres, for unit tests whose
// literal texts are already in Postgres output form.
func fakeCoerce(ctx context.Context, lits []Literal, texts []*string) ([]coltype.Value, error) {
	out := make([]coltype.Value, len(lits))
	for i, l := range lits {
		if texts[i] == nil {
			continue
		}
		s := *texts[i]
		if l.Type.Base == coltype.Numeric && strings.ContainsAny(s, "eE") {
			f, _ := strconv.ParseFloat(s, 64)
			s = strconv.FormatFloat(f, 'f', -1, 64)
		}
		if l.Type.Base == coltype.TextType && strings.HasPrefix(l.Type.Name, "character(") {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l.Type.Name, "character("), ")"))
			for len(s) < n {
				s += " "
			}
		}
		if l.Type.Base == coltype.Bytea && !strings.HasPrefix(s, `\x`) {
			s = `\x` + hex.EncodeToString([]byte(s))
		}
		v, err := fallbackFromPGText(l.Type, []byte(s))
		if err != nil {
			return nil, &Error{Message: fmt.Sprintf("invalid input %q for %s", s, l.Type.Name)}
		}
		out[i] = v
	}
	return out, nil
}

func col(name string, base coltype.Base, typeName string) protocol.Column {
	return protocol.Column{Name: name, Type: coltype.Type{Base: base, Name: typeName}}
}

func sp(s string) *string { return &s }

var paramRE = regexp.MustCompile(`\$([0-9]+)`)

// maxParam is the highest $n in s.
func maxParam(s string) int {
	n := 0
	for _, m := range paramRE.FindAllStringSubmatch(s, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n && v < 100 {
			n = v
		}
	}
	return n
}
