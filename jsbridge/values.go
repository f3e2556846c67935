package jsbridge

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

const maxSafeInt = 1<<53 - 1

// DecodeRequest decodes a request that the worker script encoded with
// JSON.stringify, where a BigInt became {"$i": "<decimal>"}, a Uint8Array
// {"$b": "<base64>"} and a Date its ISO 8601 text.
func DecodeRequest(data string) (Request, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest("malformed request: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest("a request must be an object, not %s", typeName(v))
	}
	out, err := fromJSON(m)
	if err != nil {
		return nil, err
	}
	return Request(out.(map[string]any)), nil
}

// fromJSON replaces json.Number and the {"$i"} / {"$b"} objects in v.
func fromJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && i >= -maxSafeInt && i <= maxSafeInt {
			return float64(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, badRequest("bad number %s", x)
		}
		return f, nil
	case []any:
		for i := range x {
			e, err := fromJSON(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = e
		}
		return x, nil
	case map[string]any:
		if len(x) == 1 {
			if s, ok := x["$i"].(string); ok {
				i, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return nil, badRequest("BigInt %s does not fit in 64 bits", s)
				}
				return i, nil
			}
			if s, ok := x["$b"].(string); ok {
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return nil, badRequest("bad Uint8Array encoding: %v", err)
				}
				return b, nil
			}
		}
		for k, e := range x {
			e, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			x[k] = e
		}
		return x, nil
	}
	return v, nil
}

func (r Request) str(k string) (string, error) {
	v, ok := r[k]
	if !ok {
		return "", badRequest("missing %s", k)
	}
	s, ok := v.(string)
	if !ok {
		return "", badRequest("%s must be a string, not %s", k, typeName(v))
	}
	return s, nil
}

// optStr returns the string field k, "" when absent or null.
func (r Request) optStr(k string) (string, error) {
	if v, ok := r[k]; !ok || v == nil {
		return "", nil
	}
	return r.str(k)
}

func (r Request) int(k string) (int, error) {
	v, ok := r[k]
	if !ok {
		return 0, badRequest("missing %s", k)
	}
	switch n := v.(type) {
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= maxSafeInt {
			return int(n), nil
		}
	case int64:
		return int(n), nil
	}
	return 0, badRequest("%s must be an integer", k)
}

func (r Request) obj(k string) (Request, error) {
	v, ok := r[k]
	if !ok {
		return nil, badRequest("missing %s", k)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badRequest("%s must be an object, not %s", k, typeName(v))
	}
	return Request(m), nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case int64:
		return "a bigint"
	case string:
		return "a string"
	case []byte:
		return "a Uint8Array"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// params converts the params of a request to SQLite arguments: integral
// numbers within ±2^53 bind as INTEGER (so 5 stored in a TEXT column reads
// "5", not "5.0"), other numbers as REAL, booleans as 1/0, BigInts as
// INTEGER, strings as TEXT, Uint8Arrays as BLOB and null as NULL.
func params(v any) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, badRequest("params must be an array, not %s", typeName(v))
	}
	args := make([]any, len(list))
	for i, p := range list {
		switch x := p.(type) {
		case nil, string, []byte, int64:
			args[i] = x
		case bool:
			if x {
				args[i] = int64(1)
			} else {
				args[i] = int64(0)
			}
		case float64:
			if x == math.Trunc(x) && math.Abs(x) <= maxSafeInt && !(x == 0 && math.Signbit(x)) {
				args[i] = int64(x)
			} else {
				args[i] = x
			}
		default:
			return nil, badRequest("params[%d]: %s cannot be bound", i, typeName(p))
		}
	}
	return args, nil
}

// parseShape turns the shape object of a sync request into a client.Shape
// (same JSON as `lattice replicate --shape`).
func parseShape(v any) (client.Shape, error) {
	if _, ok := v.(map[string]any); !ok {
		return client.Shape{}, &Error{Code: CodeBadShape, Message: "shape must be an object, not " + typeName(v)}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return client.Shape{}, &Error{Code: CodeBadShape, Message: err.Error()}
	}
	s, err := client.ParseShape(data)
	if err != nil {
		return client.Shape{}, &Error{Code: CodeBadShape, Message: err.Error()}
	}
	return s, nil
}

func parseSchema(v any) ([]protocol.Relation, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, badRequest("schema: %v", err)
	}
	rels, err := client.ParseSchema(data)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return rels, nil
}

// Rows is an encoded query result, as replies and events carry it:
// {columns, rows, special}. rows is a JSON array of rows, each an array of
// values, which the worker script turns into row objects (MESSAGES.md);
// one JSON.parse in the worker is much cheaper than building every value
// through syscall/js. Values JSON cannot carry are objects, and Special is
// true when there is one: {"$i": "<decimal>"} an INTEGER outside ±2^53 (a
// BigInt), {"$f": "NaN" | "Infinity" | "-Infinity"} and {"$b": "<base64>"}
// a BLOB.
type Rows struct {
	Columns []string        `json:"columns"`
	Rows    json.RawMessage `json:"rows"`
	Special bool            `json:"special,omitempty"`
}

// appendRow appends one row as a JSON array; special reports a value the
// page must decode (see appendValue).
func appendRow(buf []byte, row []any) (_ []byte, special bool) {
	buf = append(buf, '[')
	for j, v := range row {
		if j > 0 {
			buf = append(buf, ',')
		}
		var sp bool
		buf, sp = appendValue(buf, v)
		special = special || sp
	}
	return append(buf, ']'), special
}

// EncodeRows encodes a query result.
func EncodeRows(rows *client.Rows) *Rows {
	buf := make([]byte, 0, 64+len(rows.Values)*len(rows.Columns)*8)
	special := false
	buf = append(buf, '[')
	for i, row := range rows.Values {
		if i > 0 {
			buf = append(buf, ',')
		}
		var sp bool
		buf, sp = appendRow(buf, row)
		special = special || sp
	}
	buf = append(buf, ']')
	cols := rows.Columns
	if cols == nil {
		cols = []string{}
	}
	return &Rows{Columns: cols, Rows: buf, Special: special}
}

func appendValue(buf []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), false
	case int64:
		if x > maxSafeInt || x < -maxSafeInt {
			buf = append(buf, `{"$i":"`...)
			buf = strconv.AppendInt(buf, x, 10)
			return append(buf, `"}`...), true
		}
		return strconv.AppendInt(buf, x, 10), false
	case float64:
		switch {
		case math.IsNaN(x):
			return append(buf, `{"$f":"NaN"}`...), true
		case math.IsInf(x, 1):
			return append(buf, `{"$f":"Infinity"}`...), true
		case math.IsInf(x, -1):
			return append(buf, `{"$f":"-Infinity"}`...), true
		case x == 0 && math.Signbit(x):
			return append(buf, "-0"...), false
		}
		return strconv.AppendFloat(buf, x, 'g', -1, 64), false
	case string:
		return appendJSONString(buf, x), false
	case []byte:
		buf = append(buf, `{"$b":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, x)
		return append(buf, `"}`...), true
	}
	return appendJSONString(buf, fmt.Sprint(v)), false
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as it would crossing into a JS string anyway.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
