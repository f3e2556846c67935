package coltype

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// FromPGText converts a value in Postgres text output format (as sent by
// pgoutput and by text-format queries run with the session settings in
// SessionParams) into its SQLite representation.
//
// A nil text is SQL NULL and gives a Null Value; a non-nil empty text is an
// empty value (the empty string for text types). The result never aliases
// text. README.md lists the representation of every type.
func FromPGText(t Type, text []byte) (Value, error) {
	if text == nil {
		return Value{}, nil
	}
	if t.Array {
		return arrayFromPG(t, text)
	}
	switch t.Base {
	case Int2, Int4, Int8:
		i, ok := parseInt(text, intBits(t.Base))
		if !ok {
			return Value{}, syntaxError(t, text)
		}
		return Value{Kind: Integer, I: i}, nil
	case Float4, Float8:
		f, ok := parseFloat(text, t.Base)
		if !ok {
			return Value{}, syntaxError(t, text)
		}
		if f != f {
			return Value{Kind: Text, B: []byte("NaN")}, nil
		}
		return Value{Kind: Real, F: f}, nil
	case Bool:
		switch string(text) {
		case "t", "true": // "true" and "false" are what bool::text gives
			return Value{Kind: Integer, I: 1}, nil
		case "f", "false":
			return Value{Kind: Integer, I: 0}, nil
		}
		return Value{}, syntaxError(t, text)
	case Numeric:
		if !validNumeric(text) {
			return Value{}, syntaxError(t, text)
		}
		return textValue(text), nil
	case TextType, Enum, Date, Time, Timestamp, Interval, JSON, JSONB:
		return textValue(text), nil
	case UUID:
		b, ok := appendUUID(make([]byte, 0, 36), text)
		if !ok {
			return Value{}, syntaxError(t, text)
		}
		return Value{Kind: Text, B: b}, nil
	case Timestamptz:
		b, ok := appendTimestamptz(make([]byte, 0, len(text)), text)
		if !ok {
			return Value{}, syntaxError(t, text)
		}
		return Value{Kind: Text, B: b}, nil
	case Bytea:
		b, ok := decodeBytea(text)
		if !ok {
			return Value{}, syntaxError(t, text)
		}
		return Value{Kind: Blob, B: b}, nil
	}
	return Value{}, unsupportedError(t)
}

// ToPGText converts a Value back into Postgres text input format.
// ok is false for NULL.
//
// Values as FromPGText makes them convert back exactly. A few other values
// that an SQLite client may have stored are accepted too: an Integer or an
// integral Real for integer types, an Integer or a number in Text for
// floating-point types, an Integer or Real for numeric and text types.
func ToPGText(t Type, v Value) (text string, ok bool, err error) {
	if v.Kind == Null {
		return "", false, nil
	}
	if t.Array {
		if v.Kind != Text {
			return "", false, kindError(t, v)
		}
		s, err := arrayToPG(t, v.B)
		if err != nil {
			return "", false, err
		}
		return s, true, nil
	}
	switch t.Base {
	case Int2, Int4, Int8:
		var i int64
		switch v.Kind {
		case Integer:
			i = v.I
		case Real:
			// SQLite's INTEGER affinity leaves only non-integral or huge
			// reals as Real; accept the integral ones that fit.
			if v.F != math.Trunc(v.F) || v.F < -(1<<63) || v.F >= 1<<63 {
				return "", false, valueError(t, v, "not an integer")
			}
			i = int64(v.F)
		default:
			return "", false, kindError(t, v)
		}
		if !intInRange(i, intBits(t.Base)) {
			return "", false, valueError(t, v, "out of range")
		}
		return strconv.FormatInt(i, 10), true, nil
	case Float4, Float8:
		switch v.Kind {
		case Real:
			s, err := formatFloat(t, v.F)
			return s, err == nil, err
		case Integer:
			return strconv.FormatInt(v.I, 10), true, nil
		case Text:
			f, ok := parseFloat(v.B, t.Base)
			if !ok {
				return "", false, syntaxError(t, v.B)
			}
			s, err := formatFloat(t, f)
			return s, err == nil, err
		}
		return "", false, kindError(t, v)
	case Bool:
		if v.Kind == Integer {
			switch v.I {
			case 0:
				return "f", true, nil
			case 1:
				return "t", true, nil
			}
			return "", false, valueError(t, v, "boolean must be 0 or 1")
		}
		return "", false, kindError(t, v)
	case Numeric, TextType, Enum:
		switch v.Kind {
		case Text:
			return string(v.B), true, nil
		case Integer:
			return strconv.FormatInt(v.I, 10), true, nil
		case Real:
			return formatFloat64(v.F), true, nil
		}
		return "", false, kindError(t, v)
	case UUID, Date, Time, Timestamp, Timestamptz, Interval, JSON, JSONB:
		if v.Kind == Text {
			return string(v.B), true, nil
		}
		return "", false, kindError(t, v)
	case Bytea:
		if v.Kind == Blob {
			return string(appendByteaHex(make([]byte, 0, 2+2*len(v.B)), v.B)), true, nil
		}
		return "", false, kindError(t, v)
	}
	return "", false, unsupportedError(t)
}

func textValue(b []byte) Value {
	c := make([]byte, len(b))
	copy(c, b)
	return Value{Kind: Text, B: c}
}

func intBits(b Base) uint {
	switch b {
	case Int2:
		return 16
	case Int4:
		return 32
	}
	return 64
}

func intInRange(i int64, bits uint) bool {
	if bits >= 64 {
		return true
	}
	lim := int64(1) << (bits - 1)
	return i >= -lim && i < lim
}

// parseInt parses an optionally negative decimal integer that fits in bits.
func parseInt(b []byte, bits uint) (int64, bool) {
	n := len(b)
	if n == 0 || n > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	i := 0
	if neg {
		i = 1
		if n == 1 {
			return 0, false
		}
	}
	var u uint64
	for ; i < n; i++ {
		c := b[i] - '0'
		if c > 9 {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c)
	}
	lim := uint64(1) << (bits - 1)
	if neg {
		if u > lim {
			return 0, false
		}
		return -int64(u), true // wraps correctly for u == 1<<63
	}
	if u >= lim {
		return 0, false
	}
	return int64(u), true
}

// parseFloat parses a float as Postgres prints it: a decimal number (with
// optional exponent), "NaN", "Infinity" or "-Infinity". For Float4 the
// result is a float64 whose conversion to float32 is the correctly rounded
// float32 of the text: usually the float64 nearest the text (so "1.1"
// gives 1.1), but when rounding the text to float64 and then to float32
// would round twice into a different float32 (e.g. "7.038531e-26"), the
// exact float32 value.
func parseFloat(b []byte, base Base) (float64, bool) {
	switch string(b) {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		return math.Inf(1), true
	case "-Infinity":
		return math.Inf(-1), true
	}
	if len(b) == 0 || len(b) > 400 {
		return 0, false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			return 0, false
		}
	}
	s := string(b)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !(isRangeErr(err) && math.IsInf(f, 0)) {
		return 0, false
	}
	if base == Float4 && float32Midpoint(f) {
		// Rounding the text to float64 cannot step over the midpoint (it
		// is a float64), only land on it; then float32(f) may round to
		// the wrong side, so round the text to float32 directly.
		g, err := strconv.ParseFloat(s, 32)
		if err != nil && !(isRangeErr(err) && math.IsInf(g, 0)) {
			return 0, false
		}
		if math.Float32bits(float32(f)) != math.Float32bits(float32(g)) {
			f = g
		}
	}
	return f, true
}

// float32Midpoint reports whether f lies exactly half-way between two
// adjacent float32 values.
func float32Midpoint(f float64) bool {
	x := float32(f)
	if float64(x) == f || math.IsInf(float64(x), 0) {
		return false
	}
	toward := float32(math.Inf(1))
	if f < float64(x) {
		toward = float32(math.Inf(-1))
	}
	y := math.Nextafter32(x, toward)
	return (float64(x)+float64(y))/2 == f
}

func isRangeErr(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && ne.Err == strconv.ErrRange
}

// formatFloat formats f as Postgres float input for the column's type:
// shortest round-trip digits of float32(f) for real, of f for double
// precision; "NaN", "Infinity", "-Infinity" for the special values.
func formatFloat(t Type, f float64) (string, error) {
	if f != f {
		return "NaN", nil
	}
	if math.IsInf(f, 0) {
		if f > 0 {
			return "Infinity", nil
		}
		return "-Infinity", nil
	}
	if t.Base == Float4 {
		x := float32(f)
		if math.IsInf(float64(x), 0) || (x == 0 && f != 0) {
			return "", valueError(t, Value{Kind: Real, F: f}, "out of range for real")
		}
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}

func formatFloat64(f float64) string {
	s, _ := formatFloat(Type{Base: Float8}, f)
	return s
}

// validNumeric reports whether b is a numeric as Postgres prints it:
// -?digits[.digits], NaN, Infinity or -Infinity.
func validNumeric(b []byte) bool {
	switch string(b) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	i := 0
	if len(b) > 0 && b[0] == '-' {
		i = 1
	}
	start := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	if i == start {
		return false
	}
	if i == len(b) {
		return true
	}
	if b[i] != '.' {
		return false
	}
	i++
	start = i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i > start && i == len(b)
}

// appendUUID appends the canonical lower-case form of a UUID printed as
// 8-4-4-4-12 hex digits.
func appendUUID(dst, b []byte) ([]byte, bool) {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return dst, false
	}
	n := len(dst)
	dst = append(dst, b...)
	u := dst[n:]
	for i, c := range u {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		d := unhex[c]
		if d > 15 {
			return dst[:n], false
		}
		u[i] = hexDigits[d]
	}
	return dst, true
}

func isInfinity(b []byte) bool {
	return string(b) == "infinity" || string(b) == "-infinity"
}

// appendTimestamptz appends the stored form of a timestamptz printed in
// UTC: the "+00" offset becomes "Z" ("2024-01-02 03:04:05.5+00" ->
// "2024-01-02 03:04:05.5Z", "0001-01-01 00:00:00+00 BC" ->
// "0001-01-01 00:00:00Z BC"); infinity and -infinity are kept.
func appendTimestamptz(dst, b []byte) ([]byte, bool) {
	if isInfinity(b) {
		return append(dst, b...), true
	}
	body, bc, ok := splitTimestamptz(b)
	if !ok {
		return dst, false
	}
	dst = append(dst, body...)
	dst = append(dst, 'Z')
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst, true
}

// splitTimestamptz splits a finite timestamptz printed in UTC into the
// part before "+00" and whether " BC" follows.
func splitTimestamptz(b []byte) (body []byte, bc, ok bool) {
	n := len(b)
	bc = n >= 3 && string(b[n-3:]) == " BC"
	if bc {
		n -= 3
	}
	if n < 4 || string(b[n-3:n]) != "+00" || b[n-4] < '0' || b[n-4] > '9' {
		return nil, false, false
	}
	return b[:n-3], bc, true
}

var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	for c := 'A'; c <= 'F'; c++ {
		t[c] = byte(c - 'A' + 10)
	}
	return t
}()

// validByteaHex reports whether b is bytea hex output: \x and pairs of hex
// digits.
func validByteaHex(b []byte) bool {
	if len(b) < 2 || b[0] != '\\' || b[1] != 'x' || len(b)%2 != 0 {
		return false
	}
	for _, c := range b[2:] {
		if unhex[c] == 0xff {
			return false
		}
	}
	return true
}

// decodeBytea decodes bytea hex output ("\x0a1b...").
func decodeBytea(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != '\\' || b[1] != 'x' || len(b)%2 != 0 {
		return nil, false
	}
	h := b[2:]
	out := make([]byte, len(h)/2)
	for i := range out {
		hi, lo := unhex[h[2*i]], unhex[h[2*i+1]]
		if hi > 15 || lo > 15 {
			return nil, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

const hexDigits = "0123456789abcdef"

// appendByteaHex appends bytea hex input format: \x and lower-case hex.
func appendByteaHex(dst, b []byte) []byte {
	dst = append(dst, '\\', 'x')
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

func quoteForError(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "..."
	}
	return strconv.Quote(string(b))
}

func syntaxError(t Type, b []byte) error {
	return fmt.Errorf("coltype: invalid %s text %s", t, quoteForError(b))
}

func unsupportedError(t Type) error {
	return fmt.Errorf("coltype: unsupported type %s", t)
}

var kindNames = [...]string{Null: "NULL", Integer: "INTEGER", Real: "REAL", Text: "TEXT", Blob: "BLOB"}

func (k Kind) name() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

func kindError(t Type, v Value) error {
	return fmt.Errorf("coltype: cannot convert a %s value to %s", v.Kind.name(), t)
}

func valueError(t Type, v Value, why string) error {
	var s string
	switch v.Kind {
	case Integer:
		s = strconv.FormatInt(v.I, 10)
	case Real:
		s = strconv.FormatFloat(v.F, 'g', -1, 64)
	default:
		s = quoteForError(v.B)
	}
	return fmt.Errorf("coltype: %s value %s for %s: %s", v.Kind.name(), s, t, why)
}
