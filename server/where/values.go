package where

import (
	"bytes"
	"math"
	"strconv"
	"unsafe"

	"github.com/latticesync/lattice/coltype"
)

// scalar is a value during evaluation, in the representation of its type:
//
//	integers, bool         i
//	numeric                decimal text b, or i when num is set (an integer converted to numeric)
//	float4, float8         f (float4 values are exactly representable in float32)
//	string types, uuid,
//	enum, json(b), bytea   b
//	date                   i = days since 1970-01-01 (posInf/negInf for ±infinity)
//	timestamp(tz)          i = microseconds since 1970-01-01 00:00 UTC (posInf/negInf)
//	time                   i = microseconds since midnight
//	interval               i = days, j = microseconds in [0, 1 day): the span
//	                       normalized as Postgres compares intervals
//	                       (1 month = 30 days); posInf/negInf in i for ±infinity
type scalar struct {
	null bool
	num  bool
	i, j int64
	f    float64
	b    []byte
}

const (
	posInf    = math.MaxInt64
	negInf    = math.MinInt64
	dayMicros = 86400_000_000
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// fromValue converts a column value (as produced by coltype.FromPGText) of
// type k into a scalar. A value that does not have the expected form reads
// as NULL.
func fromValue(v *coltype.Value, k tkind) scalar {
	switch v.Kind {
	case coltype.Null:
		return scalar{null: true}
	}
	if k == tArray {
		return scalar{b: v.B} // only tested for NULL
	}
	switch v.Kind {
	case coltype.Integer:
		switch k {
		case tInt2, tInt4, tInt8, tBool:
			return scalar{i: v.I}
		case tFloat4, tFloat8:
			return scalar{f: float64(v.I)}
		case tNumeric:
			return scalar{num: true, i: v.I}
		}
	case coltype.Real:
		switch k {
		case tFloat4:
			return scalar{f: float64(float32(v.F))}
		case tFloat8:
			return scalar{f: v.F}
		}
	case coltype.Text:
		switch k {
		case tFloat4, tFloat8:
			switch bstr(v.B) {
			case "NaN":
				return scalar{f: math.NaN()}
			case "Infinity":
				return scalar{f: math.Inf(1)}
			case "-Infinity":
				return scalar{f: math.Inf(-1)}
			}
		case tDate:
			if d, ok := parseDate(v.B); ok {
				return scalar{i: d}
			}
		case tTimestamp, tTimestamptz:
			if t, ok := parseTimestamp(v.B); ok {
				return scalar{i: t}
			}
		case tTime:
			if t, ok := parseTime(v.B); ok {
				return scalar{i: t}
			}
		case tInterval:
			if d, t, ok := parseInterval(v.B); ok {
				return scalar{i: d, j: t}
			}
		case tInt2, tInt4, tInt8, tBool, tBytea, tArray, tUnsupported:
		default:
			return scalar{b: v.B}
		}
	case coltype.Blob:
		if k == tBytea {
			return scalar{b: v.B}
		}
	}
	return scalar{null: true}
}

// ---- comparisons ----

func cmpInt(a, b int64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// cmpFloat orders floats as Postgres does: NaN equals NaN and sorts above
// everything else; -0 equals 0.
func cmpFloat(a, b float64) int {
	an, bn := a != a, b != b
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compare(d domain, a, b *scalar) int {
	switch d {
	case dInt:
		return cmpInt(a.i, b.i)
	case dFloat:
		return cmpFloat(a.f, b.f)
	case dNumeric:
		return cmpNumeric(a, b)
	case dBpchar:
		return bytes.Compare(rtrim(a.b), rtrim(b.b))
	case dInterval:
		if c := cmpInt(a.i, b.i); c != 0 {
			return c
		}
		return cmpInt(a.j, b.j)
	case dJSONB:
		if jsonbEqual(a.b, b.b) {
			return 0
		}
		return 1
	}
	return bytes.Compare(a.b, b.b)
}

func rtrim(b []byte) []byte {
	n := len(b)
	for n > 0 && b[n-1] == ' ' {
		n--
	}
	return b[:n]
}

func cmpNumeric(a, b *scalar) int {
	if a.num && b.num {
		return cmpInt(a.i, b.i)
	}
	var ab, bb [24]byte
	x, y := a.b, b.b
	if a.num {
		x = strconv.AppendInt(ab[:0], a.i, 10)
	}
	if b.num {
		y = strconv.AppendInt(bb[:0], b.i, 10)
	}
	return cmpDecimal(x, y)
}

// decClass classifies Postgres numeric output: -2 -Infinity, 0 finite,
// 2 Infinity, 3 NaN.
func decClass(s []byte) int {
	switch bstr(s) {
	case "NaN":
		return 3
	case "Infinity":
		return 2
	case "-Infinity":
		return -2
	}
	return 0
}

// cmpDecimal compares two numbers in Postgres numeric output format
// ([-]digits[.digits], NaN, Infinity, -Infinity) exactly, with Postgres's
// ordering: -Infinity < finite < Infinity < NaN, NaN = NaN.
func cmpDecimal(a, b []byte) int {
	ca, cb := decClass(a), decClass(b)
	if ca != 0 || cb != 0 {
		return cmpInt(int64(ca), int64(cb))
	}
	na, ia, fa := splitDecimal(a)
	nb, ib, fb := splitDecimal(b)
	za := len(ia) == 0 && len(fa) == 0
	zb := len(ib) == 0 && len(fb) == 0
	if za {
		na = false
	}
	if zb {
		nb = false
	}
	if na != nb {
		if na {
			return -1
		}
		return 1
	}
	c := cmpMagnitude(ia, fa, ib, fb)
	if na {
		return -c
	}
	return c
}

// splitDecimal returns the sign, the integer digits without leading zeros
// and the fraction digits without trailing zeros.
func splitDecimal(s []byte) (neg bool, ip, fp []byte) {
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	dot := bytes.IndexByte(s, '.')
	if dot < 0 {
		ip = s
	} else {
		ip, fp = s[:dot], s[dot+1:]
	}
	for len(ip) > 0 && ip[0] == '0' {
		ip = ip[1:]
	}
	for len(fp) > 0 && fp[len(fp)-1] == '0' {
		fp = fp[:len(fp)-1]
	}
	return
}

func cmpMagnitude(ia, fa, ib, fb []byte) int {
	if len(ia) != len(ib) {
		return cmpInt(int64(len(ia)), int64(len(ib)))
	}
	if c := bytes.Compare(ia, ib); c != 0 {
		return c
	}
	return bytes.Compare(fa, fb) // no trailing zeros, so lexicographic order is numeric order
}

// ---- dates and times ----

func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return
}

func digits(s []byte, n int) (int64, bool) {
	if len(s) < n {
		return 0, false
	}
	var v int64
	for _, c := range s[:n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// cutBC removes a trailing " BC" and reports whether it was there.
func cutBC(s []byte) ([]byte, bool) {
	if len(s) >= 3 && bstr(s[len(s)-3:]) == " BC" {
		return s[:len(s)-3], true
	}
	return s, false
}

// parseYMD parses YYYY-MM-DD (the year may have more digits) at the start
// of s and returns the astronomical year, month, day and the rest.
func parseYMD(s []byte) (y, m, d int64, rest []byte, ok bool) {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n < 1 || n > 9 {
		return
	}
	y, _ = digits(s, n)
	s = s[n:]
	if len(s) < 6 || s[0] != '-' || s[3] != '-' {
		return
	}
	var ok1, ok2 bool
	m, ok1 = digits(s[1:], 2)
	d, ok2 = digits(s[4:], 2)
	if !ok1 || !ok2 || m < 1 || m > 12 || d < 1 || d > 31 {
		return
	}
	return y, m, d, s[6:], true
}

func parseDate(s []byte) (int64, bool) {
	switch bstr(s) {
	case "infinity":
		return posInf, true
	case "-infinity":
		return negInf, true
	}
	s, bc := cutBC(s)
	y, m, d, rest, ok := parseYMD(s)
	if !ok || len(rest) != 0 {
		return 0, false
	}
	if bc {
		y = 1 - y
	}
	return daysFromCivil(y, m, d), true
}

// parseClock parses HH:MM:SS[.ffffff] at the start of s.
func parseClock(s []byte) (int64, []byte, bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, nil, false
	}
	h, ok1 := digits(s, 2)
	mi, ok2 := digits(s[3:], 2)
	se, ok3 := digits(s[6:], 2)
	if !ok1 || !ok2 || !ok3 {
		return 0, nil, false
	}
	t := ((h*60+mi)*60 + se) * 1_000_000
	s = s[8:]
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
		scale := int64(100_000)
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			if n < 6 {
				t += int64(s[n]-'0') * scale
				scale /= 10
			}
			n++
		}
		if n == 0 {
			return 0, nil, false
		}
		s = s[n:]
	}
	return t, s, true
}

func parseTime(s []byte) (int64, bool) {
	t, rest, ok := parseClock(s)
	if !ok || len(rest) != 0 {
		return 0, false
	}
	return t, true
}

// parseTimestamp parses "YYYY-MM-DD HH:MM:SS[.ffffff]" with an optional UTC
// offset ("Z", "+00", "+05:30") and an optional " BC", into microseconds
// since 1970-01-01 00:00 UTC.
func parseTimestamp(s []byte) (int64, bool) {
	switch bstr(s) {
	case "infinity":
		return posInf, true
	case "-infinity":
		return negInf, true
	}
	s, bc := cutBC(s)
	y, m, d, rest, ok := parseYMD(s)
	if !ok || len(rest) < 1 || (rest[0] != ' ' && rest[0] != 'T') {
		return 0, false
	}
	t, rest, ok := parseClock(rest[1:])
	if !ok {
		return 0, false
	}
	var off int64
	if len(rest) > 0 && rest[0] == 'Z' {
		rest = rest[1:]
	} else if len(rest) > 0 && (rest[0] == '+' || rest[0] == '-') {
		sign := int64(1)
		if rest[0] == '-' {
			sign = -1
		}
		rest = rest[1:]
		hh, ok := digits(rest, 2)
		if !ok {
			return 0, false
		}
		off = hh * 3600
		rest = rest[2:]
		for _, mul := range [2]int64{60, 1} {
			if len(rest) >= 3 && rest[0] == ':' {
				v, ok := digits(rest[1:], 2)
				if !ok {
					return 0, false
				}
				off += v * mul
				rest = rest[3:]
			}
		}
		off *= sign
	}
	if !bc {
		rest, bc = cutBC(rest)
	}
	if len(rest) != 0 {
		return 0, false
	}
	if bc {
		y = 1 - y
	}
	return daysFromCivil(y, m, d)*dayMicros + t - off*1_000_000, true
}

// parseInterval parses ISO 8601 interval output (IntervalStyle iso_8601,
// e.g. "P1Y2M3DT4H5M6.5S", "PT-0.5S") into the normalized span.
func parseInterval(s []byte) (days, micros int64, ok bool) {
	switch bstr(s) {
	case "infinity":
		return posInf, 0, true
	case "-infinity":
		return negInf, 0, true
	}
	if len(s) < 2 || s[0] != 'P' {
		return 0, 0, false
	}
	s = s[1:]
	var months, d, t int64
	inTime := false
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return 0, 0, false
			}
			inTime = true
			s = s[1:]
			continue
		}
		neg := false
		if s[0] == '-' || s[0] == '+' {
			neg = s[0] == '-'
			s = s[1:]
		}
		var n, frac, fscale int64
		nd := 0
		for nd < len(s) && s[nd] >= '0' && s[nd] <= '9' {
			n = n*10 + int64(s[nd]-'0')
			nd++
			if nd > 18 {
				return 0, 0, false
			}
		}
		if nd == 0 {
			return 0, 0, false
		}
		s = s[nd:]
		fscale = 1
		if len(s) > 0 && s[0] == '.' {
			s = s[1:]
			nf := 0
			for nf < len(s) && s[nf] >= '0' && s[nf] <= '9' {
				if nf < 6 {
					frac = frac*10 + int64(s[nf]-'0')
					fscale *= 10
				}
				nf++
			}
			s = s[nf:]
		}
		if len(s) == 0 {
			return 0, 0, false
		}
		unit := s[0]
		s = s[1:]
		if frac != 0 && !(inTime && unit == 'S') {
			return 0, 0, false
		}
		if neg {
			n, frac = -n, -frac
		}
		switch {
		case !inTime && unit == 'Y':
			months += n * 12
		case !inTime && unit == 'M':
			months += n
		case !inTime && unit == 'W':
			d += n * 7
		case !inTime && unit == 'D':
			d += n
		case inTime && unit == 'H':
			t += n * 3600_000_000
		case inTime && unit == 'M':
			t += n * 60_000_000
		case inTime && unit == 'S':
			t += n*1_000_000 + frac*(1_000_000/fscale)
		default:
			return 0, 0, false
		}
	}
	d += months * 30
	d += floorDiv(t, dayMicros)
	t = floorMod(t, dayMicros)
	return d, t, true
}

func appendPad(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

func appendDate(dst []byte, days int64) ([]byte, bool) {
	y, m, d := civilFromDays(days)
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	dst = appendPad(dst, y, 4)
	dst = append(dst, '-')
	dst = appendPad(dst, m, 2)
	dst = append(dst, '-')
	dst = appendPad(dst, d, 2)
	return dst, bc
}

func appendClock(dst []byte, t int64) []byte {
	sec := t / 1_000_000
	us := t % 1_000_000
	dst = appendPad(dst, sec/3600, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, sec/60%60, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, sec%60, 2)
	if us != 0 {
		n := len(dst)
		dst = append(dst, '.')
		dst = appendPad(dst, us, 6)
		for dst[len(dst)-1] == '0' && len(dst) > n+1 {
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

// formatDate, formatTimestamp and formatTime produce Postgres text output
// under DateStyle ISO and TimeZone UTC (what a ::text cast yields).
func formatDate(days int64) []byte {
	switch days {
	case posInf:
		return []byte("infinity")
	case negInf:
		return []byte("-infinity")
	}
	b, bc := appendDate(nil, days)
	if bc {
		b = append(b, " BC"...)
	}
	return b
}

func formatTimestamp(t int64, tz bool) []byte {
	switch t {
	case posInf:
		return []byte("infinity")
	case negInf:
		return []byte("-infinity")
	}
	b, bc := appendDate(nil, floorDiv(t, dayMicros))
	b = append(b, ' ')
	b = appendClock(b, floorMod(t, dayMicros))
	if tz {
		b = append(b, "+00"...)
	}
	if bc {
		b = append(b, " BC"...)
	}
	return b
}

// ---- casts ----

// convert casts s (not NULL) from type from to type to. ok is false when
// Postgres would raise an error (overflow, invalid value); the caller has
// checked that the cast is supported.
func convert(s scalar, from, to ptype) (scalar, bool) {
	if from.same(to) {
		return s, true
	}
	f, t := from.k, to.k
	switch {
	case isInt(f):
		switch {
		case isInt(t):
			return s, fitsInt(s.i, t)
		case t == tNumeric:
			return scalar{num: true, i: s.i}, true
		case t == tFloat8:
			return scalar{f: float64(s.i)}, true
		case t == tFloat4:
			return scalar{f: float64(float32(s.i))}, true
		case t == tBool:
			return scalar{i: b2i(s.i != 0)}, true
		case t == tText || t == tVarchar || t == tBpchar || t == tName:
			return scalar{b: strconv.AppendInt(nil, s.i, 10)}, true
		}
	case f == tNumeric:
		switch {
		case t == tFloat8 || t == tFloat4:
			return numericToFloat(s, t == tFloat4)
		case isInt(t):
			return numericToInt(s, t)
		case isString(t):
			if s.num {
				return scalar{b: strconv.AppendInt(nil, s.i, 10)}, true
			}
			return s, true
		}
	case isFloat(f):
		switch {
		case t == tFloat8:
			return s, true
		case t == tFloat4:
			r := float32(s.f)
			if math.IsInf(float64(r), 0) && !math.IsInf(s.f, 0) || r == 0 && s.f != 0 {
				return s, false
			}
			return scalar{f: float64(r)}, true
		case isInt(t):
			if s.f != s.f || math.IsInf(s.f, 0) {
				return s, false
			}
			r := math.RoundToEven(s.f)
			if r < -9223372036854775808.0 || r >= 9223372036854775808.0 {
				return s, false
			}
			v := int64(r)
			return scalar{i: v}, fitsInt(v, t)
		}
	case f == tBool:
		switch {
		case t == tInt4:
			return s, true
		case isString(t):
			if s.i != 0 {
				return scalar{b: []byte("true")}, true
			}
			return scalar{b: []byte("false")}, true
		}
	case isString(f):
		switch t {
		case tText, tVarchar:
			if f == tBpchar {
				return scalar{b: rtrim(s.b)}, true
			}
			return s, true
		case tBpchar:
			return s, true
		case tName:
			b := s.b
			if f == tBpchar {
				b = rtrim(b)
			}
			return scalar{b: clipName(b)}, true
		}
	case f == tUUID || f == tEnum || f == tJSON || f == tJSONB:
		if isString(t) {
			return s, true
		}
		if f == tJSONB && t == tJSON || f == tJSON && t == tJSONB {
			return s, true
		}
	case f == tDate:
		switch t {
		case tTimestamp, tTimestamptz:
			if s.i == posInf || s.i == negInf {
				return s, true
			}
			return scalar{i: s.i * dayMicros}, true
		case tText, tVarchar, tBpchar, tName:
			return scalar{b: formatDate(s.i)}, true
		}
	case f == tTimestamp || f == tTimestamptz:
		switch t {
		case tTimestamp, tTimestamptz:
			return s, true
		case tDate:
			if s.i == posInf || s.i == negInf {
				return s, true
			}
			return scalar{i: floorDiv(s.i, dayMicros)}, true
		case tTime:
			if s.i == posInf || s.i == negInf {
				return scalar{null: true}, true
			}
			return scalar{i: floorMod(s.i, dayMicros)}, true
		case tText, tVarchar, tBpchar, tName:
			return scalar{b: formatTimestamp(s.i, f == tTimestamptz)}, true
		}
	case f == tTime:
		switch t {
		case tInterval:
			return scalar{i: floorDiv(s.i, dayMicros), j: floorMod(s.i, dayMicros)}, true
		case tText, tVarchar, tBpchar, tName:
			return scalar{b: appendClock(nil, s.i)}, true
		}
	}
	return s, false
}

// negate is unary minus on a number of kind k.
func negate(s scalar, k tkind) (scalar, bool) {
	switch {
	case isInt(k):
		if s.i == math.MinInt64 {
			return s, false
		}
		return scalar{i: -s.i}, fitsInt(-s.i, k)
	case isFloat(k):
		return scalar{f: -s.f}, true
	case k == tNumeric:
		if s.num {
			if s.i != math.MinInt64 {
				return scalar{num: true, i: -s.i}, true
			}
			s = scalar{b: strconv.AppendInt(nil, s.i, 10)}
		}
		switch decClass(s.b) {
		case 3:
			return s, true
		case 2:
			return scalar{b: []byte("-Infinity")}, true
		case -2:
			return scalar{b: []byte("Infinity")}, true
		}
		if len(s.b) > 0 && s.b[0] == '-' {
			return scalar{b: s.b[1:]}, true
		}
		if _, ip, fp := splitDecimal(s.b); len(ip) == 0 && len(fp) == 0 {
			return s, true
		}
		return scalar{b: append([]byte{'-'}, s.b...)}, true
	}
	return s, false
}

// arith is integer + - * with Postgres's overflow check for the result
// type k.
func arith(op byte, a, b int64, k tkind) (int64, bool) {
	var r int64
	switch op {
	case '+':
		r = a + b
		if (a^r)&(b^r) < 0 {
			return 0, false
		}
	case '-':
		r = a - b
		if (a^b)&(a^r) < 0 {
			return 0, false
		}
	default:
		r = a * b
		if a != 0 && (r/a != b || a == -1 && b == math.MinInt64 || b == -1 && a == math.MinInt64) {
			return 0, false
		}
	}
	return r, fitsInt(r, k)
}

// asciiCase lowercases (or uppercases) ASCII letters, as lower() and
// upper() do under the C collation.
func asciiCase(b []byte, upper bool) []byte {
	lo, hi := byte('A'), byte('Z')
	if upper {
		lo, hi = 'a', 'z'
	}
	i := 0
	for i < len(b) && (b[i] < lo || b[i] > hi) {
		i++
	}
	if i == len(b) {
		return b
	}
	out := make([]byte, len(b))
	copy(out, b)
	for ; i < len(out); i++ {
		if out[i] >= lo && out[i] <= hi {
			out[i] ^= 0x20
		}
	}
	return out
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func fitsInt(v int64, k tkind) bool {
	switch k {
	case tInt2:
		return v >= math.MinInt16 && v <= math.MaxInt16
	case tInt4:
		return v >= math.MinInt32 && v <= math.MaxInt32
	}
	return true
}

// clipName truncates to NAMEDATALEN-1 bytes at a UTF-8 character boundary.
func clipName(b []byte) []byte {
	if len(b) <= 63 {
		return b
	}
	n := 63
	for n > 0 && b[n]&0xC0 == 0x80 {
		n--
	}
	return b[:n]
}

func numericToFloat(s scalar, f4 bool) (scalar, bool) {
	if s.num {
		if f4 {
			return scalar{f: float64(float32(s.i))}, true
		}
		return scalar{f: float64(s.i)}, true
	}
	switch decClass(s.b) {
	case 3:
		return scalar{f: math.NaN()}, true
	case 2:
		return scalar{f: math.Inf(1)}, true
	case -2:
		return scalar{f: math.Inf(-1)}, true
	}
	bits := 64
	if f4 {
		bits = 32
	}
	v, err := strconv.ParseFloat(bstr(s.b), bits)
	if err != nil {
		return s, false
	}
	if v == 0 {
		_, ip, fp := splitDecimal(s.b)
		if len(ip) != 0 || len(fp) != 0 {
			return s, false // underflow: Postgres raises "out of range"
		}
	}
	return scalar{f: v}, true
}

// numericToInt rounds half away from zero, as numeric_int4/8 do.
func numericToInt(s scalar, k tkind) (scalar, bool) {
	if s.num {
		return s, fitsInt(s.i, k)
	}
	if decClass(s.b) != 0 {
		return s, false
	}
	neg, ip, fp := splitDecimal(s.b)
	if len(ip) > 19 {
		return s, false
	}
	var v uint64
	for _, c := range ip {
		if c < '0' || c > '9' {
			return s, false
		}
		v = v*10 + uint64(c-'0')
	}
	if len(fp) > 0 && fp[0] >= '5' {
		v++
	}
	if !neg && v > math.MaxInt64 || neg && v > 1<<63 {
		return s, false
	}
	r := int64(v)
	if neg {
		r = -r
	}
	return scalar{i: r}, fitsInt(r, k)
}

// ---- LIKE ----

const (
	likeFalse = iota
	likeTrue
	likeAbort
	likeError // pattern ends with the escape character
)

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func utf8Len(c byte) int {
	switch {
	case c < 0x80:
		return 1
	case c&0xE0 == 0xC0:
		return 2
	case c&0xF0 == 0xE0:
		return 3
	case c&0xF8 == 0xF0:
		return 4
	}
	return 1
}

func nextChar(t []byte) []byte {
	n := utf8Len(t[0])
	if n > len(t) {
		n = len(t)
	}
	return t[n:]
}

// matchLike is a port of Postgres's UTF8 MatchText (like_match.c) with
// backslash as the escape character; fold lowercases ASCII letters on both
// sides, which is what ILIKE does under the C collation.
func matchLike(t, p []byte, fold bool) int {
	if len(p) == 1 && p[0] == '%' {
		return likeTrue
	}
	get := func(c byte) byte {
		if fold {
			return lower(c)
		}
		return c
	}
	for len(t) > 0 && len(p) > 0 {
		switch p[0] {
		case '\\':
			p = p[1:]
			if len(p) == 0 {
				return likeError
			}
			if get(p[0]) != get(t[0]) {
				return likeFalse
			}
		case '%':
			p = p[1:]
			for len(p) > 0 {
				if p[0] == '%' {
					p = p[1:]
				} else if p[0] == '_' {
					if len(t) == 0 {
						return likeAbort
					}
					t = nextChar(t)
					p = p[1:]
				} else {
					break
				}
			}
			if len(p) == 0 {
				return likeTrue
			}
			var first byte
			if p[0] == '\\' {
				if len(p) < 2 {
					return likeError
				}
				first = get(p[1])
			} else {
				first = get(p[0])
			}
			for len(t) > 0 {
				if get(t[0]) == first {
					if r := matchLike(t, p, fold); r != likeFalse {
						return r
					}
				}
				t = nextChar(t)
			}
			return likeAbort
		case '_':
			t = nextChar(t)
			p = p[1:]
			continue
		default:
			if get(p[0]) != get(t[0]) {
				return likeFalse
			}
		}
		t = t[1:]
		p = p[1:]
	}
	if len(t) > 0 {
		return likeFalse
	}
	for len(p) > 0 && p[0] == '%' {
		p = p[1:]
	}
	if len(p) == 0 {
		return likeTrue
	}
	return likeAbort
}

// likePatternError reports whether Postgres would reject pattern p when
// matching reaches its end: it ends with an unescaped backslash.
func likePatternError(p []byte) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' {
			if i+1 == len(p) {
				return true
			}
			i++
		}
	}
	return false
}

// ---- jsonb ----

// jsonbEqual compares two jsonb values in Postgres's canonical text output
// (keys sorted, duplicates removed, normalized spacing) for jsonb equality:
// the texts must agree token by token, except that numbers compare by
// numeric value (1.0 = 1).
func jsonbEqual(a, b []byte) bool {
	i, j := 0, 0
	for {
		for i < len(a) && isJSONSpace(a[i]) {
			i++
		}
		for j < len(b) && isJSONSpace(b[j]) {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		ca, cb := a[i], b[j]
		if isJSONNumStart(ca) || isJSONNumStart(cb) {
			if !isJSONNumStart(ca) || !isJSONNumStart(cb) {
				return false
			}
			ei, ej := i, j
			for ei < len(a) && isJSONNumChar(a[ei]) {
				ei++
			}
			for ej < len(b) && isJSONNumChar(b[ej]) {
				ej++
			}
			if !jsonNumEqual(a[i:ei], b[j:ej]) {
				return false
			}
			i, j = ei, ej
			continue
		}
		if ca == '"' {
			if cb != '"' {
				return false
			}
			ei, ok1 := jsonStringEnd(a, i)
			ej, ok2 := jsonStringEnd(b, j)
			if !ok1 || !ok2 || !bytes.Equal(a[i:ei], b[j:ej]) {
				return false
			}
			i, j = ei, ej
			continue
		}
		if ca != cb {
			return false
		}
		i++
		j++
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isJSONNumStart(c byte) bool {
	return c == '-' || c >= '0' && c <= '9'
}
func isJSONNumChar(c byte) bool {
	return c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || c >= '0' && c <= '9'
}

func jsonStringEnd(s []byte, i int) (int, bool) {
	for k := i + 1; k < len(s); k++ {
		switch s[k] {
		case '\\':
			k++
		case '"':
			return k + 1, true
		}
	}
	return 0, false
}

func jsonNumEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if bytes.ContainsAny(a, "eE") || bytes.ContainsAny(b, "eE") {
		// jsonb output never uses exponents; fall back to float comparison.
		x, err1 := strconv.ParseFloat(bstr(a), 64)
		y, err2 := strconv.ParseFloat(bstr(b), 64)
		return err1 == nil && err2 == nil && x == y
	}
	return cmpDecimal(a, b) == 0
}
