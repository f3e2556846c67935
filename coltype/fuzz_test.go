package coltype

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets of the conversions of outside text.
//
// FuzzFromPGText: Postgres text output (from pgoutput and snapshot
// queries) for every base type, scalar and array. It checks that
// FromPGText never panics, that errors are coltype's ("coltype: ..."),
// that the Value never aliases the text, and that its storage class fits
// the type (integers in range, booleans 0/1, bytea Blob, UUIDs canonical,
// arrays valid JSON). For UTF-8 text without NUL (all that Postgres can
// send with client_encoding UTF8) it also checks that ToPGText accepts the
// Value, and, where Postgres input and output forms coincide (all but
// timestamptz arrays; a timestamptz's "Z" is read back as "+00"), that
// reading ToPGText's text gives the same Value again (for real: the same
// float32) and the same text once more. Exception: a real outside float32
// range, which Postgres never prints, is refused by ToPGText.
//
// FuzzToPGText: client values (from Write frames) for every type. It
// checks that ToPGText never panics, that errors are coltype's, that ok is
// false only for NULL, that a JSON array it accepts is valid JSON, and
// that when FromPGText reads its output back, writing and reading again
// gives the same value (for real: float32) and the same text: after one
// round the written form is a fixed point.
//
//	go test ./coltype -run=^$ -fuzz=FuzzFromPGText -fuzztime=60s
//	go test ./coltype -run=^$ -fuzz=FuzzToPGText -fuzztime=60s

const numBases = int(Enum) + 2 // every Base and one unknown

func FuzzFromPGText(f *testing.F) {
	seeds := map[Base][]string{
		Int2:        {"-32768", "32767", "32768", "-0", "0x1"},
		Int4:        {"2147483647", "-2147483649"},
		Int8:        {"-9223372036854775808", "9223372036854775807", "99999999999999999999"},
		Float4:      {"1.1", "7.038531e-26", "-0", "NaN", "Infinity", "-Infinity", "1e39", "1e-50", "3.4028235e+38", "1.4e-45"},
		Float8:      {"1e+100", "1e400", "-1.5e-320", "5e-324", ".5", "+1."},
		Numeric:     {"1.50", "-0.000", "NaN", "-Infinity", "1.", "1e5"},
		Bool:        {"t", "f", "true", "false", "yes"},
		TextType:    {"", "hello", "héllo", "\xff", "a\x00b"},
		UUID:        {"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"},
		Date:        {"2024-02-29", "0001-12-31 BC", "infinity"},
		Time:        {"24:00:00"},
		Timestamp:   {"2024-01-02 03:04:05.5", "4713-11-24 00:00:00 BC"},
		Timestamptz: {"2024-01-02 03:04:05.5+00", "0001-01-01 00:00:00+00 BC", "-infinity", "2024-01-02 03:04:05+01", "+00"},
		Interval:    {"P1Y2M-3DT4H5M6.5S"},
		JSON:        {` {"a" : 1} `},
		JSONB:       {`{"a": 1, "b": [true, null]}`},
		Bytea:       {`\x`, `\x00ff`, `\x0`, `\xAbCd`, `\xzz`},
		Enum:        {"happy"},
	}
	arrays := []string{"{}", "{1,NULL,-3}", "{{1,2},{3,4}}", "{{1},2}", `{"a b","NULL",NULL,"\\\"x"}`, `{"\\x00ff",NULL}`,
		"{1.5,NaN,-0,Infinity}", "{t,f}", `{"2024-01-01 00:00:00+00"}`, "[0:1]={1,2}", "{{{{{{{1}}}}}}}", "{a,}", "{,}", `{"a\`, "{\"\x01\"}", `{"1\"0+00"}`}
	for b, ss := range seeds {
		for _, s := range ss {
			f.Add(uint8(b), false, []byte(s))
			f.Add(uint8(b), true, []byte("{"+s+"}"))
		}
	}
	for b := range numBases {
		for _, s := range arrays {
			f.Add(uint8(b), true, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, base uint8, array bool, text []byte) {
		typ := Type{Base: Base(int(base) % numBases), Array: array}
		buf := bytes.Clone(text)
		v, err := FromPGText(typ, buf)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "coltype: ") {
				t.Fatalf("error %q is not coltype's", err)
			}
			return
		}
		if text == nil {
			if v.Kind != Null {
				t.Fatalf("nil text gave %s", show(v))
			}
			return
		}
		want := Value{Kind: v.Kind, I: v.I, F: v.F, B: bytes.Clone(v.B)}
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !v.Equal(want) {
			t.Fatalf("the value aliases its text")
		}
		checkKind(t, typ, text, v)

		if !utf8.Valid(text) || bytes.IndexByte(text, 0) >= 0 {
			return // Postgres sends neither
		}
		s, ok, err := ToPGText(typ, v)
		if err != nil || !ok {
			if typ.Base == Float4 && err != nil && strings.Contains(err.Error(), "out of range for real") {
				return
			}
			t.Fatalf("%s %q read as %s, which ToPGText refuses: %v %v", typ, text, show(v), ok, err)
		}
		back := s
		if typ.Base == Timestamptz {
			if typ.Array {
				return
			}
			back = pgTimestamptzOutput(s)
		}
		w, err := FromPGText(typ, []byte(back))
		if err != nil {
			t.Fatalf("%s %q read as %s, written as %q, which does not read back: %v", typ, text, show(v), s, err)
		}
		same := w.Equal(v)
		if typ.Base == Float4 && !typ.Array && v.Kind == Real && w.Kind == Real {
			same = math.Float32bits(float32(v.F)) == math.Float32bits(float32(w.F))
		}
		if typ.Base == Float4 && typ.Array {
			same = true // the JSON numbers may differ in float64 digits; the text below may not
		}
		if !same {
			t.Fatalf("%s %q read as %s, written as %q, reads back as %s", typ, text, show(v), s, show(w))
		}
		s2, ok, err := ToPGText(typ, w)
		if err != nil || !ok || s2 != s {
			t.Fatalf("%s %q: written as %q, then as %q (%v %v)", typ, text, s, s2, ok, err)
		}
	})
}

// pgTimestamptzOutput turns ToPGText's timestamptz ("...Z[ BC]") into what
// Postgres prints for it in UTC ("...+00[ BC]").
func pgTimestamptzOutput(s string) string {
	if rest, ok := strings.CutSuffix(s, "Z BC"); ok {
		return rest + "+00 BC"
	}
	if rest, ok := strings.CutSuffix(s, "Z"); ok {
		return rest + "+00"
	}
	return s
}

func checkKind(t *testing.T, typ Type, text []byte, v Value) {
	t.Helper()
	bad := func(why string) { t.Fatalf("%s %q read as %s: %s", typ, text, show(v), why) }
	if typ.Array {
		if v.Kind != Text {
			bad("an array must be Text")
		}
		if utf8.Valid(text) && !json.Valid(v.B) {
			bad("not valid JSON")
		}
		var a []any
		if utf8.Valid(text) && json.Unmarshal(v.B, &a) != nil {
			bad("not a JSON array")
		}
		return
	}
	switch typ.Base {
	case Int2, Int4, Int8:
		if v.Kind != Integer || !intInRange(v.I, intBits(typ.Base)) {
			bad("not an integer in range")
		}
	case Float4, Float8:
		if !(v.Kind == Real || v.Kind == Text && string(v.B) == "NaN") {
			bad("not a float")
		}
	case Bool:
		if v.Kind != Integer || v.I != 0 && v.I != 1 {
			bad("not 0 or 1")
		}
	case Bytea:
		if v.Kind != Blob {
			bad("not a Blob")
		}
	case UUID:
		if v.Kind != Text || len(v.B) != 36 || strings.ToLower(string(v.B)) != string(v.B) {
			bad("not a canonical UUID")
		}
	case Numeric, TextType, Enum, Date, Time, Timestamp, Timestamptz, Interval, JSON, JSONB:
		if v.Kind != Text {
			bad("not Text")
		}
	default:
		bad("an unsupported type was read")
	}
}

func FuzzToPGText(f *testing.F) {
	for b := range numBases {
		for _, js := range []string{"[]", "[1,null,-3]", "[[1,2],[3,4]]", `["a \"b\"","\u00e9\ud83d\ude00"]`, `["\\x00ff"]`,
			`[1.5,"NaN",-0,"Infinity"]`, "[true,false]", `["2024-01-01 00:00:00Z"]`, "[[]]", " [ 1 , 2 ] ", `["\u0000"]`, "[1e400]", "[01]", `["\ud800"]`} {
			f.Add(uint8(b), true, uint8(Text), int64(0), 0.0, []byte(js))
		}
		f.Add(uint8(b), false, uint8(Integer), int64(math.MinInt64), 0.0, []byte(nil))
		f.Add(uint8(b), false, uint8(Integer), int64(1), 0.0, []byte(nil))
		f.Add(uint8(b), false, uint8(Real), int64(0), math.Copysign(0, -1), []byte(nil))
		f.Add(uint8(b), false, uint8(Real), int64(0), 1e300, []byte(nil))
		f.Add(uint8(b), false, uint8(Real), int64(0), math.Inf(-1), []byte(nil))
		f.Add(uint8(b), false, uint8(Text), int64(0), 0.0, []byte("1.50"))
		f.Add(uint8(b), false, uint8(Text), int64(0), 0.0, []byte("NaN"))
		f.Add(uint8(b), false, uint8(Blob), int64(0), 0.0, []byte{0, 0xff})
		f.Add(uint8(b), false, uint8(Null), int64(0), 0.0, []byte(nil))
		f.Add(uint8(b), false, uint8(7), int64(0), 0.0, []byte(nil))
	}
	f.Fuzz(func(t *testing.T, base uint8, array bool, kind uint8, i int64, fl float64, b []byte) {
		typ := Type{Base: Base(int(base) % numBases), Array: array}
		v := Value{Kind: Kind(kind % 6), I: i, F: fl, B: b}
		s, ok, err := ToPGText(typ, v)
		if err != nil {
			if ok || !strings.HasPrefix(err.Error(), "coltype: ") {
				t.Fatalf("ToPGText(%s, %s) = %v, %v", typ, show(v), ok, err)
			}
			return
		}
		if ok != (v.Kind != Null) {
			t.Fatalf("ToPGText(%s, %s): ok = %v", typ, show(v), ok)
		}
		if !ok {
			return
		}
		if typ.Array && !json.Valid(v.B) {
			t.Fatalf("ToPGText(%s) accepted %q, which is not JSON", typ, v.B)
		}
		w, err := FromPGText(typ, []byte(s))
		if err != nil {
			return // not in the form Postgres prints (a timestamptz's Z, text Postgres validates on input)
		}
		// Lenient inputs (an Integer for a float column...) are written in
		// another form than FromPGText's values; from there on the text
		// and the value are fixed.
		s2, ok, err := ToPGText(typ, w)
		if err != nil || !ok {
			t.Fatalf("%s %s written as %q, read back as %s, which ToPGText refuses: %v %v", typ, show(v), s, show(w), ok, err)
		}
		w2, err := FromPGText(typ, []byte(s2))
		if err != nil || !sameValue(typ, w, w2) {
			t.Fatalf("%s: %q read as %s, written as %q, read as %s (%v)", typ, s, show(w), s2, show(w2), err)
		}
		if s3, _, _ := ToPGText(typ, w2); s3 != s2 {
			t.Fatalf("%s: %q written as %q, then as %q", typ, s, s2, s3)
		}
	})
}

// sameValue: equal Values, or for a real the same float32.
func sameValue(typ Type, v, w Value) bool {
	if typ.Base == Float4 && !typ.Array && v.Kind == Real && w.Kind == Real {
		return math.Float32bits(float32(v.F)) == math.Float32bits(float32(w.F))
	}
	return v.Equal(w)
}
