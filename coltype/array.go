package coltype

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDims is Postgres's MAXDIM.
const maxDims = 6

var errLowerBounds = errors.New("arrays with non-default lower bounds are not supported")

// arrayFromPG converts Postgres array output ("{1,NULL,\"a b\"}") into a
// JSON array. Nested braces become nested JSON arrays.
func arrayFromPG(t Type, s []byte) (Value, error) {
	if len(s) == 0 || s[0] != '{' {
		if len(s) > 0 && s[0] == '[' {
			return Value{}, fmt.Errorf("coltype: %s text %s: %w", t, quoteForError(s), errLowerBounds)
		}
		return Value{}, syntaxError(t, s)
	}
	var hint int
	switch t.Base {
	case Bool:
		hint = 3*len(s) + 2
	case Int2, Int4, Int8, Float4, Float8:
		hint = len(s) + 8
	default:
		hint = len(s) + len(s)/4 + 8
	}
	r := pgArrayReader{s: s, base: t.Base}
	out, err := r.array(make([]byte, 0, hint), 1)
	if err == nil && r.pos != len(s) {
		err = errMalformed
	}
	if err != nil {
		return Value{}, fmt.Errorf("coltype: invalid %s text %s: %w", t, quoteForError(s), err)
	}
	return Value{Kind: Text, B: out}, nil
}

var (
	errMalformed = errors.New("malformed array")
	errTooDeep   = errors.New("too many array dimensions")
	errMixed     = errors.New("array mixes sub-arrays and elements")
	errEmptySub  = errors.New("empty sub-array")
)

type pgArrayReader struct {
	s       []byte
	pos     int
	base    Base
	scratch []byte
}

func (r *pgArrayReader) array(out []byte, depth int) ([]byte, error) {
	if depth > maxDims {
		return out, errTooDeep
	}
	r.pos++ // '{'
	out = append(out, '[')
	if r.pos < len(r.s) && r.s[r.pos] == '}' {
		if depth > 1 {
			return out, errEmptySub // Postgres prints every empty array as "{}"
		}
		r.pos++
		return append(out, ']'), nil
	}
	var sub, elem bool
	for {
		if r.pos >= len(r.s) {
			return out, errMalformed
		}
		var err error
		switch r.s[r.pos] {
		case '{':
			sub = true
			out, err = r.array(out, depth+1)
		case '"':
			elem = true
			switch r.base {
			case TextType, Enum, Date, Time, Timestamp, Interval, JSON, JSONB:
				out, err = r.quotedJSON(out)
			case Bytea:
				out, err = r.quotedBytea(out)
			default:
				var e []byte
				if e, err = r.quoted(); err == nil {
					out, err = appendElemJSON(out, r.base, e)
				}
			}
		case ',', '}':
			return out, errMalformed
		default:
			elem = true
			start := r.pos
			for r.pos < len(r.s) {
				c := r.s[r.pos]
				if c == ',' || c == '}' {
					break
				}
				if c == '"' || c == '\\' || c == '{' {
					return out, errMalformed
				}
				r.pos++
			}
			e := r.s[start:r.pos]
			if isNULL(e) {
				out = append(out, "null"...)
			} else {
				out, err = appendElemJSON(out, r.base, e)
			}
		}
		if err != nil {
			return out, err
		}
		if sub && elem {
			return out, errMixed
		}
		if r.pos >= len(r.s) {
			return out, errMalformed
		}
		switch r.s[r.pos] {
		case ',':
			r.pos++
			out = append(out, ',')
		case '}':
			r.pos++
			return append(out, ']'), nil
		default:
			return out, errMalformed
		}
	}
}

func isNULL(b []byte) bool {
	return len(b) == 4 && b[0]|0x20 == 'n' && b[1]|0x20 == 'u' && b[2]|0x20 == 'l' && b[3]|0x20 == 'l'
}

// quoted reads a double-quoted element at r.pos, undoing backslash escapes.
// The result aliases r.s or r.scratch.
func (r *pgArrayReader) quoted() ([]byte, error) {
	r.pos++ // opening quote
	start := r.pos
	i := start
	for ; i < len(r.s); i++ {
		c := r.s[i]
		if c == '"' {
			r.pos = i + 1
			return r.s[start:i], nil
		}
		if c == '\\' {
			break
		}
	}
	buf := append(r.scratch[:0], r.s[start:i]...)
	for i < len(r.s) {
		c := r.s[i]
		switch c {
		case '\\':
			i++
			if i >= len(r.s) {
				return nil, errMalformed
			}
			buf = append(buf, r.s[i])
			i++
		case '"':
			r.pos = i + 1
			r.scratch = buf
			return buf, nil
		default:
			buf = append(buf, c)
			i++
		}
	}
	return nil, errMalformed
}

// quotedJSON reads a double-quoted element at r.pos and appends it as a
// JSON string, undoing backslash escapes on the way.
func (r *pgArrayReader) quotedJSON(out []byte) ([]byte, error) {
	r.pos++ // opening quote
	out = append(out, '"')
	start := r.pos
	for i := start; i < len(r.s); i++ {
		switch r.s[i] {
		case '"':
			out = appendJSONChars(out, r.s[start:i])
			r.pos = i + 1
			return append(out, '"'), nil
		case '\\':
			out = appendJSONChars(out, r.s[start:i])
			i++
			if i >= len(r.s) {
				return out, errMalformed
			}
			start = i // the escaped byte is copied with the next run
		}
	}
	return out, errMalformed
}

// quotedBytea reads a double-quoted bytea element at r.pos, which Postgres
// prints as "\\x" and hex digits, and appends it as a JSON string.
func (r *pgArrayReader) quotedBytea(out []byte) ([]byte, error) {
	s := r.s[r.pos+1:]
	if len(s) < 3 || s[0] != '\\' || s[1] != '\\' || s[2] != 'x' {
		e, err := r.quoted()
		if err != nil {
			return out, err
		}
		return out, elemError(Bytea, e)
	}
	i := 3
	for i < len(s) && unhex[s[i]] <= 15 {
		i++
	}
	if i >= len(s) || s[i] != '"' || (i-3)%2 != 0 {
		return out, elemError(Bytea, s[:min(i+1, len(s))])
	}
	out = append(out, '"')
	out = append(out, s[:i]...) // \\x and hex: the same bytes in JSON
	r.pos += 1 + i + 1
	return append(out, '"'), nil
}

// appendElemJSON appends the JSON form of one non-NULL array element given
// in Postgres text output format.
func appendElemJSON(out []byte, base Base, e []byte) ([]byte, error) {
	switch base {
	case Int2, Int4, Int8:
		i, ok := parseInt(e, intBits(base))
		if !ok {
			return out, elemError(base, e)
		}
		return strconv.AppendInt(out, i, 10), nil
	case Float4, Float8:
		f, ok := parseFloat(e, base)
		if !ok {
			return out, elemError(base, e)
		}
		return appendFloatJSON(out, f), nil
	case Bool:
		switch string(e) {
		case "t", "true":
			return append(out, "true"...), nil
		case "f", "false":
			return append(out, "false"...), nil
		}
		return out, elemError(base, e)
	case Numeric:
		if !validNumeric(e) {
			return out, elemError(base, e)
		}
		out = append(out, '"')
		out = append(out, e...)
		return append(out, '"'), nil
	case UUID:
		out = append(out, '"')
		out, ok := appendUUID(out, e)
		if !ok {
			return out, elemError(base, e)
		}
		return append(out, '"'), nil
	case Timestamptz:
		// As appendTimestamptz, escaped for JSON: Postgres prints no
		// character that needs it, but other input must not make invalid
		// JSON.
		if isInfinity(e) {
			return appendJSONString(out, e), nil
		}
		body, bc, ok := splitTimestamptz(e)
		if !ok {
			return out, elemError(base, e)
		}
		out = append(out, '"')
		out = appendJSONChars(out, body)
		out = append(out, 'Z')
		if bc {
			out = append(out, " BC"...)
		}
		return append(out, '"'), nil
	case Bytea:
		if !validByteaHex(e) {
			return out, elemError(base, e)
		}
		out = append(out, '"', '\\', '\\')
		out = append(out, e[1:]...)
		return append(out, '"'), nil
	case TextType, Enum, Date, Time, Timestamp, Interval, JSON, JSONB:
		return appendJSONString(out, e), nil
	}
	return out, fmt.Errorf("unsupported element type %s", base)
}

func elemError(base Base, e []byte) error {
	return fmt.Errorf("invalid %s element %s", base, quoteForError(e))
}

func appendFloatJSON(out []byte, f float64) []byte {
	switch {
	case f != f:
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	return strconv.AppendFloat(out, f, 'g', -1, 64)
}

// appendJSONString appends s as a JSON string. Bytes from 0x20 up, other
// than '"' and '\\', are copied as they are (s is UTF-8).
func appendJSONString(out, s []byte) []byte {
	out = append(out, '"')
	out = appendJSONChars(out, s)
	return append(out, '"')
}

// appendJSONChars appends s escaped for the inside of a JSON string.
func appendJSONChars(out, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		case '\b':
			out = append(out, '\\', 'b')
		case '\f':
			out = append(out, '\\', 'f')
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	return append(out, s[start:]...)
}

// arrayToPG converts a JSON array (as arrayFromPG makes it) into a Postgres
// array literal with every non-NULL element double-quoted.
func arrayToPG(t Type, js []byte) (string, error) {
	r := jsonArrayReader{s: js, base: t.Base}
	r.ws()
	if r.pos >= len(js) || js[r.pos] != '[' {
		return "", fmt.Errorf("coltype: %s value is not a JSON array: %s", t, quoteForError(js))
	}
	out, err := r.array(make([]byte, 0, len(js)+len(js)/4+8), 1)
	if err == nil {
		r.ws()
		if r.pos != len(js) {
			err = errors.New("data after the array")
		}
	}
	if err != nil {
		return "", fmt.Errorf("coltype: invalid %s JSON %s: %w", t, quoteForError(js), err)
	}
	return string(out), nil
}

type jsonArrayReader struct {
	s       []byte
	pos     int
	base    Base
	scratch []byte
}

func (r *jsonArrayReader) ws() {
	for r.pos < len(r.s) {
		switch r.s[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *jsonArrayReader) literal(lit string) bool {
	if len(r.s)-r.pos >= len(lit) && string(r.s[r.pos:r.pos+len(lit)]) == lit {
		r.pos += len(lit)
		return true
	}
	return false
}

type jsonKind uint8

const (
	jString jsonKind = iota
	jNumber
	jTrue
	jFalse
)

var errJSON = errors.New("invalid JSON")

func (r *jsonArrayReader) array(out []byte, depth int) ([]byte, error) {
	if depth > maxDims {
		return out, errTooDeep
	}
	r.pos++ // '['
	out = append(out, '{')
	r.ws()
	if r.pos < len(r.s) && r.s[r.pos] == ']' {
		if depth > 1 {
			return out, errEmptySub // Postgres rejects "{{}}"
		}
		r.pos++
		return append(out, '}'), nil
	}
	var sub, elem bool
	for {
		r.ws()
		if r.pos >= len(r.s) {
			return out, errJSON
		}
		var err error
		switch c := r.s[r.pos]; {
		case c == '[':
			sub = true
			out, err = r.array(out, depth+1)
		case c == 'n':
			elem = true
			if !r.literal("null") {
				return out, errJSON
			}
			out = append(out, "NULL"...)
		case c == 't':
			elem = true
			if !r.literal("true") {
				return out, errJSON
			}
			out, err = appendElemPG(out, r.base, jTrue, nil)
		case c == 'f':
			elem = true
			if !r.literal("false") {
				return out, errJSON
			}
			out, err = appendElemPG(out, r.base, jFalse, nil)
		case c == '"':
			elem = true
			var s []byte
			if s, err = r.str(); err == nil {
				out, err = appendElemPG(out, r.base, jString, s)
			}
		case c == '-' || '0' <= c && c <= '9':
			elem = true
			var s []byte
			if s, err = r.number(); err == nil {
				out, err = appendElemPG(out, r.base, jNumber, s)
			}
		default:
			return out, errJSON
		}
		if err != nil {
			return out, err
		}
		if sub && elem {
			return out, errMixed
		}
		r.ws()
		if r.pos >= len(r.s) {
			return out, errJSON
		}
		switch r.s[r.pos] {
		case ',':
			r.pos++
			out = append(out, ',')
		case ']':
			r.pos++
			return append(out, '}'), nil
		default:
			return out, errJSON
		}
	}
}

// number reads a JSON number.
func (r *jsonArrayReader) number() ([]byte, error) {
	s, i := r.s, r.pos
	start := i
	digits := func() bool {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if !digits() {
		return nil, errJSON
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return nil, errJSON
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return nil, errJSON
		}
	}
	r.pos = i
	return s[start:i], nil
}

// str reads a JSON string and returns its decoded bytes, which alias r.s or
// r.scratch.
func (r *jsonArrayReader) str() ([]byte, error) {
	s := r.s
	r.pos++ // opening quote
	start := r.pos
	i := start
	for ; i < len(s); i++ {
		c := s[i]
		if c == '"' {
			r.pos = i + 1
			return s[start:i], nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	buf := append(r.scratch[:0], s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			r.pos = i + 1
			r.scratch = buf
			return buf, nil
		case c < 0x20:
			return nil, errJSON
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		i++
		if i >= len(s) {
			return nil, errJSON
		}
		switch s[i] {
		case '"', '\\', '/':
			buf = append(buf, s[i])
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			c1, ok := hex4(s, i+1)
			if !ok {
				return nil, errJSON
			}
			i += 4
			ru := rune(c1)
			if utf16.IsSurrogate(ru) {
				c2, ok := hex4(s, i+3)
				if !ok || s[i+1] != '\\' || s[i+2] != 'u' {
					return nil, errors.New("invalid JSON: unpaired surrogate")
				}
				ru = utf16.DecodeRune(ru, rune(c2))
				if ru == utf8.RuneError {
					return nil, errors.New("invalid JSON: unpaired surrogate")
				}
				i += 6
			}
			if ru == 0 {
				return nil, errors.New("NUL character in a string")
			}
			buf = utf8.AppendRune(buf, ru)
		default:
			return nil, errJSON
		}
		i++
	}
	return nil, errJSON
}

func hex4(s []byte, i int) (uint16, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var v uint16
	for _, c := range s[i : i+4] {
		d := unhex[c]
		if d > 15 {
			return 0, false
		}
		v = v<<4 | uint16(d)
	}
	return v, true
}

// appendElemPG appends one non-NULL element, double-quoted, to a Postgres
// array literal.
func appendElemPG(out []byte, base Base, k jsonKind, s []byte) ([]byte, error) {
	switch base {
	case Int2, Int4, Int8:
		if k == jString || k == jNumber {
			if i, ok := parseInt(s, intBits(base)); ok {
				out = append(out, '"')
				out = strconv.AppendInt(out, i, 10)
				return append(out, '"'), nil
			}
		}
	case Float4, Float8:
		if k == jString || k == jNumber {
			if f, ok := parseFloat(s, base); ok {
				str, err := formatFloat(Type{Base: base}, f)
				if err != nil {
					return out, err
				}
				out = append(out, '"')
				out = append(out, str...)
				return append(out, '"'), nil
			}
		}
	case Bool:
		switch k {
		case jTrue:
			return append(out, `"t"`...), nil
		case jFalse:
			return append(out, `"f"`...), nil
		}
	case Numeric, TextType, Enum:
		if k == jString || k == jNumber {
			return appendPGQuoted(out, s), nil
		}
	case Bytea:
		if k == jString && validByteaHex(s) {
			return appendPGQuoted(out, s), nil
		}
	case UUID, Date, Time, Timestamp, Timestamptz, Interval, JSON, JSONB:
		if k == jString {
			return appendPGQuoted(out, s), nil
		}
	default:
		return out, fmt.Errorf("unsupported element type %s", base)
	}
	var shown string
	switch k {
	case jTrue:
		shown = "true"
	case jFalse:
		shown = "false"
	case jString:
		shown = quoteForError(s)
	default:
		shown = string(s)
	}
	return out, fmt.Errorf("invalid %s element %s", base, shown)
}

// appendPGQuoted appends s as a double-quoted array element, escaping '"'
// and '\\' with a backslash.
func appendPGQuoted(out, s []byte) []byte {
	out = append(out, '"')
	start := 0
	for i, c := range s {
		if c == '"' || c == '\\' {
			out = append(out, s[start:i]...)
			out = append(out, '\\', c)
			start = i + 1
		}
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
