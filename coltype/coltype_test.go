package coltype

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func vI(i int64) Value      { return Value{Kind: Integer, I: i} }
func vR(f float64) Value    { return Value{Kind: Real, F: f} }
func vT(s string) Value     { return Value{Kind: Text, B: []byte(s)} }
func vB(b ...byte) Value    { return Value{Kind: Blob, B: b} }
func typ(b Base) Type       { return Type{Base: b} }
func arr(b Base) Type       { return Type{Base: b, Array: true} }
func strp(s string) *string { return &s }

var negZero = math.Copysign(0, -1)

type convCase struct {
	t    Type
	in   string
	want Value
	back *string // ToPGText result when it differs from in
}

var convCases = []convCase{
	// integers
	{typ(Int2), "0", vI(0), nil},
	{typ(Int2), "-32768", vI(-32768), nil},
	{typ(Int2), "32767", vI(32767), nil},
	{typ(Int4), "-2147483648", vI(-2147483648), nil},
	{typ(Int4), "2147483647", vI(2147483647), nil},
	{typ(Int8), "-9223372036854775808", vI(math.MinInt64), nil},
	{typ(Int8), "9223372036854775807", vI(math.MaxInt64), nil},
	{typ(Int8), "42", vI(42), nil},

	// floats
	{typ(Float4), "1.1", vR(1.1), nil},
	{typ(Float4), "-0", vR(negZero), nil},
	{typ(Float4), "0", vR(0), nil},
	{typ(Float4), "NaN", vT("NaN"), nil},
	{typ(Float4), "Infinity", vR(math.Inf(1)), nil},
	{typ(Float4), "-Infinity", vR(math.Inf(-1)), nil},
	{typ(Float4), "3.4028235e+38", vR(3.4028235e+38), nil},
	{typ(Float4), "1e-45", vR(1e-45), nil},
	{typ(Float4), "1.1754944e-38", vR(1.1754944e-38), nil},
	{typ(Float4), "16777217", vR(16777217), strp("1.6777216e+07")}, // PG prints 1.6777216e+07
	// Rounding "7.038531e-26" to float64 and then to float32 lands on the
	// wrong float32; the exact float32 is stored instead.
	{typ(Float4), "7.038531e-26", vR(float64(float32(7.038531e-26))), nil},
	{typ(Float4), "-7.038531e-26", vR(float64(float32(-7.038531e-26))), nil},
	{typ(Float8), "1.1", vR(1.1), nil},
	{typ(Float8), "-0", vR(negZero), nil},
	{typ(Float8), "NaN", vT("NaN"), nil},
	{typ(Float8), "Infinity", vR(math.Inf(1)), nil},
	{typ(Float8), "-Infinity", vR(math.Inf(-1)), nil},
	{typ(Float8), "1e+100", vR(1e100), nil},
	{typ(Float8), "1.7976931348623157e+308", vR(math.MaxFloat64), nil},
	{typ(Float8), "5e-324", vR(5e-324), nil},
	{typ(Float8), "1.2345678901234568e+17", vR(1.2345678901234568e+17), nil},
	{typ(Float8), "100000", vR(100000), strp("100000")},
	{typ(Float8), "1e+15", vR(1e15), nil},
	{typ(Float8), "0.1", vR(0.1), nil},

	// numeric
	{typ(Numeric), "123456789012345678901234567890.000000000000000001", vT("123456789012345678901234567890.000000000000000001"), nil},
	{typ(Numeric), "1.50", vT("1.50"), nil},
	{typ(Numeric), "0.0000", vT("0.0000"), nil},
	{typ(Numeric), "-0.5", vT("-0.5"), nil},
	{typ(Numeric), "NaN", vT("NaN"), nil},
	{typ(Numeric), "Infinity", vT("Infinity"), nil},
	{typ(Numeric), "-Infinity", vT("-Infinity"), nil},

	// bool
	{typ(Bool), "t", vI(1), nil},
	{typ(Bool), "f", vI(0), nil},

	// text
	{typ(TextType), "", vT(""), nil},
	{typ(TextType), "hello, wörld", vT("hello, wörld"), nil},
	{typ(TextType), "ab   ", vT("ab   "), nil},
	{typ(TextType), "NULL", vT("NULL"), nil},
	{typ(TextType), "a\"b\\c\n\t{}", vT("a\"b\\c\n\t{}"), nil},
	{Type{Base: Enum, Name: "public.mood"}, "happy", vT("happy"), nil},

	// uuid
	{typ(UUID), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", vT("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), nil},
	{typ(UUID), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", vT("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), strp("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},

	// date/time
	{typ(Date), "2024-02-29", vT("2024-02-29"), nil},
	{typ(Date), "0001-12-31 BC", vT("0001-12-31 BC"), nil},
	{typ(Date), "infinity", vT("infinity"), nil},
	{typ(Date), "-infinity", vT("-infinity"), nil},
	{typ(Time), "24:00:00", vT("24:00:00"), nil},
	{typ(Time), "13:14:15.123456", vT("13:14:15.123456"), nil},
	{typ(Timestamp), "2024-01-02 03:04:05", vT("2024-01-02 03:04:05"), nil},
	{typ(Timestamp), "2024-01-02 03:04:05.5", vT("2024-01-02 03:04:05.5"), nil},
	{typ(Timestamp), "4713-11-24 00:00:00 BC", vT("4713-11-24 00:00:00 BC"), nil},
	{typ(Timestamp), "infinity", vT("infinity"), nil},
	{typ(Timestamptz), "2024-01-02 03:04:05.5+00", vT("2024-01-02 03:04:05.5Z"), strp("2024-01-02 03:04:05.5Z")},
	{typ(Timestamptz), "2024-01-02 03:04:05+00", vT("2024-01-02 03:04:05Z"), strp("2024-01-02 03:04:05Z")},
	{typ(Timestamptz), "0001-01-01 00:00:00+00 BC", vT("0001-01-01 00:00:00Z BC"), strp("0001-01-01 00:00:00Z BC")},
	{typ(Timestamptz), "294276-12-31 23:59:59.999999+00", vT("294276-12-31 23:59:59.999999Z"), strp("294276-12-31 23:59:59.999999Z")},
	{typ(Timestamptz), "infinity", vT("infinity"), nil},
	{typ(Timestamptz), "-infinity", vT("-infinity"), nil},
	{typ(Interval), "PT0S", vT("PT0S"), nil},
	{typ(Interval), "P1Y2M3DT4H5M6.5S", vT("P1Y2M3DT4H5M6.5S"), nil},
	{typ(Interval), "P-1Y-2M3DT-4H-5M-6.5S", vT("P-1Y-2M3DT-4H-5M-6.5S"), nil},
	{typ(Interval), "PT-0.5S", vT("PT-0.5S"), nil},

	// json
	{typ(JSON), ` {"a" : "\u00e9\n",  "b":[1, 2.50]} `, vT(` {"a" : "\u00e9\n",  "b":[1, 2.50]} `), nil},
	{typ(JSONB), `{"a": "é\n", "b": [1, 2.50]}`, vT(`{"a": "é\n", "b": [1, 2.50]}`), nil},

	// bytea
	{typ(Bytea), `\x`, vB(), nil},
	{typ(Bytea), `\x00ff10`, vB(0, 0xff, 0x10), nil},
	{typ(Bytea), `\xDEADbeef`, vB(0xde, 0xad, 0xbe, 0xef), strp(`\xdeadbeef`)},

	// arrays
	{arr(Int4), "{}", vT("[]"), nil},
	{arr(Int4), "{1,2,NULL,-3}", vT("[1,2,null,-3]"), strp(`{"1","2",NULL,"-3"}`)},
	{arr(Int8), "{{1,2},{3,4}}", vT("[[1,2],[3,4]]"), strp(`{{"1","2"},{"3","4"}}`)},
	{arr(Int2), "{null,NULL}", vT("[null,null]"), strp(`{NULL,NULL}`)},
	{arr(Float8), "{1.5,NaN,Infinity,-Infinity,-0,1e+100}", vT(`[1.5,"NaN","Infinity","-Infinity",-0,1e+100]`), strp(`{"1.5","NaN","Infinity","-Infinity","-0","1e+100"}`)},
	{arr(Float4), "{1.1,7.038531e-26,3.4028235e+38}", vT(`[1.1,7.038530691851209e-26,3.4028235e+38]`), strp(`{"1.1","7.038531e-26","3.4028235e+38"}`)},
	{arr(Numeric), "{1.50,NaN,-Infinity,NULL}", vT(`["1.50","NaN","-Infinity",null]`), strp(`{"1.50","NaN","-Infinity",NULL}`)},
	{arr(Bool), "{t,f,NULL}", vT(`[true,false,null]`), strp(`{"t","f",NULL}`)},
	{arr(TextType), `{1,NULL,"NULL",""," a","a\"b","a\\b","{}",",",é,"\\u0001"}`,
		vT(`["1",null,"NULL",""," a","a\"b","a\\b","{}",",","é","\\u0001"]`),
		strp(`{"1",NULL,"NULL",""," a","a\"b","a\\b","{}",",","é","\\u0001"}`)},
	{arr(TextType), "{\"a\nb\",\"c\x01\"}", vT(`["a\nb","c\u0001"]`), strp("{\"a\nb\",\"c\x01\"}")},
	{arr(TextType), `{"ab   ","\"\"\\\\"}`, vT(`["ab   ","\"\"\\\\"]`), nil},
	{arr(TextType), `{{a,b},{"c d",NULL}}`, vT(`[["a","b"],["c d",null]]`), strp(`{{"a","b"},{"c d",NULL}}`)},
	{arr(UUID), "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}", vT(`["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",null]`), strp(`{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",NULL}`)},
	{arr(Date), "{2024-01-01,\"0001-12-31 BC\",infinity}", vT(`["2024-01-01","0001-12-31 BC","infinity"]`), strp(`{"2024-01-01","0001-12-31 BC","infinity"}`)},
	{arr(Timestamptz), `{"2024-01-01 00:00:00+00",infinity,"0044-03-15 12:00:00.25+00 BC"}`,
		vT(`["2024-01-01 00:00:00Z","infinity","0044-03-15 12:00:00.25Z BC"]`),
		strp(`{"2024-01-01 00:00:00Z","infinity","0044-03-15 12:00:00.25Z BC"}`)},
	{arr(Interval), "{PT0S,P-1Y2M}", vT(`["PT0S","P-1Y2M"]`), strp(`{"PT0S","P-1Y2M"}`)},
	{arr(JSON), `{"{\"a\": \"\\u00e9\"}","[1, 2]",NULL}`, vT(`["{\"a\": \"\\u00e9\"}","[1, 2]",null]`), nil},
	{arr(JSONB), `{"\"NULL\"",null}`, vT(`["\"NULL\"",null]`), strp(`{"\"NULL\"",NULL}`)},
	{arr(Bytea), `{"\\x","\\x00ff",NULL}`, vT(`["\\x","\\x00ff",null]`), nil},
	{arr(TextType), `{"\\","\"","\\\"\\"}`, vT(`["\\","\"","\\\"\\"]`), nil},
	{Type{Base: Enum, Array: true, Name: "public.mood[]"}, `{happy,sad,NULL}`, vT(`["happy","sad",null]`), strp(`{"happy","sad",NULL}`)},
}

func TestConvert(t *testing.T) {
	for _, c := range convCases {
		in := []byte(c.in)
		got, err := FromPGText(c.t, in)
		if err != nil {
			t.Errorf("FromPGText(%s, %q): %v", c.t, c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("FromPGText(%s, %q) = %s, want %s", c.t, c.in, show(got), show(c.want))
			continue
		}
		if got.Kind == Text || got.Kind == Blob {
			if got.B == nil {
				t.Errorf("FromPGText(%s, %q): nil B", c.t, c.in)
			}
			if len(in) > 0 && len(got.B) > 0 {
				in[0] ^= 0xff // the result must not alias the input
				if !got.Equal(c.want) {
					t.Errorf("FromPGText(%s, %q): result aliases the input", c.t, c.in)
				}
			}
		}
		if c.t.Array && !json.Valid(got.B) {
			t.Errorf("FromPGText(%s, %q) = %s: invalid JSON", c.t, c.in, got.B)
		}
		back, ok, err := ToPGText(c.t, got)
		want := c.in
		if c.back != nil {
			want = *c.back
		}
		if err != nil || !ok || back != want {
			t.Errorf("ToPGText(%s, %s) = %q, %v, %v; want %q", c.t, show(got), back, ok, err, want)
		}
		// Where the literal is also PG output, it converts to the same value.
		if again, err := FromPGText(c.t, []byte(back)); c.back == nil && (err != nil || !again.Equal(c.want)) {
			t.Errorf("FromPGText(%s, %q) = %s, %v; want %s", c.t, back, show(again), err, show(c.want))
		}
	}
}

func show(v Value) string {
	switch v.Kind {
	case Null:
		return "NULL"
	case Integer:
		return "Integer(" + formatInt(v.I) + ")"
	case Real:
		return "Real(" + formatFloat64(v.F) + ")"
	case Text:
		return "Text(" + quoteForError(v.B) + ")"
	case Blob:
		return "Blob(" + string(appendByteaHex(nil, v.B)) + ")"
	}
	return "?"
}

func formatInt(i int64) string { s, _, _ := ToPGText(typ(Int8), vI(i)); return s }

func TestNull(t *testing.T) {
	for b := Int2; b <= Enum; b++ {
		for _, a := range []bool{false, true} {
			ty := Type{Base: b, Array: a}
			v, err := FromPGText(ty, nil)
			if err != nil || v.Kind != Null {
				t.Errorf("FromPGText(%s, nil) = %v, %v", ty, v, err)
			}
			s, ok, err := ToPGText(ty, Value{})
			if s != "" || ok || err != nil {
				t.Errorf("ToPGText(%s, NULL) = %q, %v, %v", ty, s, ok, err)
			}
		}
	}
	// The empty string is not NULL.
	v, err := FromPGText(typ(TextType), []byte{})
	if err != nil || v.Kind != Text || len(v.B) != 0 {
		t.Errorf("FromPGText(text, \"\") = %v, %v", v, err)
	}
	s, ok, err := ToPGText(typ(TextType), v)
	if s != "" || !ok || err != nil {
		t.Errorf("ToPGText(text, '') = %q, %v, %v", s, ok, err)
	}
}

func TestFromPGTextErrors(t *testing.T) {
	cases := []struct {
		t  Type
		in string
	}{
		{typ(Int2), "32768"},
		{typ(Int2), "-32769"},
		{typ(Int4), "2147483648"},
		{typ(Int8), "9223372036854775808"},
		{typ(Int8), "-9223372036854775809"},
		{typ(Int8), "99999999999999999999"},
		{typ(Int4), ""},
		{typ(Int4), "-"},
		{typ(Int4), "1.0"},
		{typ(Int4), "+1"},
		{typ(Int4), " 1"},
		{typ(Float8), ""},
		{typ(Float8), "inf"},
		{typ(Float8), "nan"},
		{typ(Float8), "0x1p3"},
		{typ(Float8), "1_000"},
		{typ(Float8), "abc"},
		{typ(Numeric), ""},
		{typ(Numeric), "1e5"},
		{typ(Numeric), "1."},
		{typ(Numeric), ".5"},
		{typ(Numeric), "nan"},
		{typ(Bool), "yes"},
		{typ(Bool), ""},
		{typ(UUID), "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{typ(UUID), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"},
		{typ(Timestamptz), "2024-01-02 03:04:05+01"},
		{typ(Timestamptz), "2024-01-02 03:04:05+00:00:00"},
		{typ(Timestamptz), "2024-01-02 03:04:05"},
		{typ(Timestamptz), "+00"},
		{typ(Bytea), ""},
		{typ(Bytea), `\x0`},
		{typ(Bytea), `\x0g`},
		{typ(Bytea), `abc`},
		{typ(Unsupported), "x"},
		{arr(Int4), "[0:1]={1,2}"},
		{arr(Int4), "[1:2]={1,2}"},
		{arr(Int4), ""},
		{arr(Int4), "{"},
		{arr(Int4), "{1,}"},
		{arr(Int4), "{,1}"},
		{arr(Int4), "{1}}"},
		{arr(Int4), "{1} "},
		{arr(Int4), "{1 ,2}"},
		{arr(Int4), "{{1},2}"},
		{arr(Int4), "{1,{2}}"},
		{arr(Int4), "{a}"},
		{arr(Int4), `{"1}`},
		{arr(Int4), "{{{{{{{1}}}}}}}"},
		{arr(TextType), `{"a"b}`},
		{arr(TextType), `{a\b}`},
		{arr(TextType), `{"a\`},
		{arr(Bool), "{1}"},
		{arr(Bytea), `{"\\x0"}`},
		{arr(Bytea), `{abc}`},
		{arr(Bytea), `{"abc"}`},
		{arr(Bytea), `{"\\x00}`},
		{arr(Bytea), `{"\\x00"x}`},
		{arr(TextType), `{"a\"}`},
		{arr(JSON), `{"a`},
		{arr(Timestamptz), `{"2024-01-01 00:00:00+02"}`},
		{arr(Numeric), `{1e5}`},
	}
	for _, c := range cases {
		if v, err := FromPGText(c.t, []byte(c.in)); err == nil {
			t.Errorf("FromPGText(%s, %q) = %s, want an error", c.t, c.in, show(v))
		}
	}
	_, err := FromPGText(arr(Int4), []byte("[0:1]={1,2}"))
	if err == nil || !strings.Contains(err.Error(), "lower bounds") {
		t.Errorf("lower bounds error = %v", err)
	}
}

func TestToPGTextLenient(t *testing.T) {
	cases := []struct {
		t    Type
		v    Value
		want string
	}{
		{typ(Int4), vR(3), "3"},
		{typ(Int8), vR(-9.007199254740992e15), "-9007199254740992"},
		{typ(Float8), vI(9007199254740993), "9007199254740993"},
		{typ(Float8), vT("1.5"), "1.5"},
		{typ(Float8), vT("Infinity"), "Infinity"},
		{typ(Float8), vR(math.NaN()), "NaN"},
		{typ(Float4), vR(0.1), "0.1"},
		{typ(Float4), vR(16777217), "1.6777216e+07"},
		{typ(Numeric), vI(-5), "-5"},
		{typ(Numeric), vR(2.5), "2.5"},
		{typ(Numeric), vT("1e5"), "1e5"},
		{typ(TextType), vI(7), "7"},
		{arr(Int4), vT(` [ 1 , null,"2" ] `), `{"1",NULL,"2"}`},
		{arr(Float8), vT(`[1.0e+100,9.0e+999,-9e999,"1.5",0]`), `{"1e+100","Infinity","-Infinity","1.5","0"}`},
		{arr(Float4), vT(`[0.1,7.038531e-26]`), `{"0.1","7.038531e-26"}`},
		{arr(TextType), vT(`["\u00e9\ud83d\ude00\/\b\f\r",12.5]`), "{\"é😀/\b\f\r\",\"12.5\"}"},
		{arr(Numeric), vT(`[1.50,"2"]`), `{"1.50","2"}`},
		{arr(Bool), vT(`[[true],[false]]`), `{{"t"},{"f"}}`},
	}
	for _, c := range cases {
		got, ok, err := ToPGText(c.t, c.v)
		if err != nil || !ok || got != c.want {
			t.Errorf("ToPGText(%s, %s) = %q, %v, %v; want %q", c.t, show(c.v), got, ok, err, c.want)
		}
	}
}

func TestToPGTextErrors(t *testing.T) {
	cases := []struct {
		t Type
		v Value
	}{
		{typ(Int2), vI(32768)},
		{typ(Int4), vI(-2147483649)},
		{typ(Int4), vR(1.5)},
		{typ(Int8), vR(1e19)},
		{typ(Int4), vT("1")},
		{typ(Int4), vB(1)},
		{typ(Bool), vI(2)},
		{typ(Bool), vT("t")},
		{typ(Float4), vR(1e300)},
		{typ(Float4), vR(1e-300)},
		{typ(Float8), vT("abc")},
		{typ(Float8), vB()},
		{typ(Numeric), vB()},
		{typ(TextType), vB('a')},
		{typ(Date), vI(1)},
		{typ(Timestamptz), vR(1)},
		{typ(Bytea), vT(`\x00`)},
		{typ(Unsupported), vT("x")},
		{Type{Base: Base(99)}, vT("x")},
		{arr(Int4), vI(1)},
		{arr(Int4), vT(``)},
		{arr(Int4), vT(`{1,2}`)},
		{arr(Int4), vT(`[1,2`)},
		{arr(Int4), vT(`[1,2]x`)},
		{arr(Int4), vT(`[1,]`)},
		{arr(Int4), vT(`[,1]`)},
		{arr(Int4), vT(`[1.5]`)},
		{arr(Int4), vT(`[2147483648]`)},
		{arr(Int4), vT(`[01]`)},
		{arr(Int4), vT(`[+1]`)},
		{arr(Int4), vT(`[true]`)},
		{arr(Int4), vT(`[[1],2]`)},
		{arr(Int4), vT(`[1,[2]]`)},
		{arr(Int4), vT(`[{"a":1}]`)},
		{arr(Int4), vT(`[nul]`)},
		{arr(Int4), vT(`[[[[[[[1]]]]]]]`)},
		{arr(Int4), vT(`[[],[]]`)},
		{arr(Int4), vT(`[[]]`)},
		{arr(Bool), vT(`[1]`)},
		{arr(Bool), vT(`["t"]`)},
		{arr(Float4), vT(`[1e300]`)},
		{arr(Float8), vT(`["nan"]`)},
		{arr(TextType), vT(`["a`)},
		{arr(TextType), vT(`["\x"]`)},
		{arr(TextType), vT(`["\u00"]`)},
		{arr(TextType), vT(`["\ud83d"]`)},
		{arr(TextType), vT(`["\ude00\ud83d"]`)},
		{arr(TextType), vT(`["\u0000"]`)},
		{arr(TextType), vT("[\"a\nb\"]")},
		{arr(Date), vT(`[1]`)},
		{arr(Bytea), vT(`["abc"]`)},
		{arr(Bytea), vT(`["\\x0"]`)},
	}
	for _, c := range cases {
		if got, ok, err := ToPGText(c.t, c.v); err == nil || ok {
			t.Errorf("ToPGText(%s, %s) = %q, %v, %v; want an error", c.t, show(c.v), got, ok, err)
		}
	}
}

func TestValueEqual(t *testing.T) {
	eq := [][2]Value{
		{{}, {}},
		{{Kind: Null, I: 1}, {}},
		{vI(5), vI(5)},
		{vR(1.5), vR(1.5)},
		{vR(math.Inf(1)), vR(math.Inf(1))},
		{vR(math.NaN()), vR(math.NaN())},
		{vT(""), {Kind: Text}},
		{vB(), {Kind: Blob}},
		{vB(1, 2), vB(1, 2)},
		{Value{Kind: Integer, I: 1, F: 2}, vI(1)},
	}
	ne := [][2]Value{
		{{}, vI(0)},
		{vI(5), vI(6)},
		{vR(0), vR(negZero)},
		{vR(1), vI(1)},
		{vT("a"), vB('a')},
		{vT("a"), vT("b")},
		{vB(1), vB(1, 2)},
	}
	for _, p := range eq {
		if !p[0].Equal(p[1]) || !p[1].Equal(p[0]) {
			t.Errorf("%s and %s should be equal", show(p[0]), show(p[1]))
		}
	}
	for _, p := range ne {
		if p[0].Equal(p[1]) || p[1].Equal(p[0]) {
			t.Errorf("%s and %s should differ", show(p[0]), show(p[1]))
		}
	}
}

func TestNames(t *testing.T) {
	if got := Int4.String(); got != "integer" {
		t.Errorf("Int4.String() = %q", got)
	}
	if got := Base(200).String(); got != "Base(200)" {
		t.Errorf("Base(200).String() = %q", got)
	}
	if got := (Type{Base: Float8, Array: true}).String(); got != "double precision[]" {
		t.Errorf("got %q", got)
	}
	if got := (Type{Base: Enum, Name: "public.mood"}).String(); got != "public.mood" {
		t.Errorf("got %q", got)
	}
	decl := map[Base]string{
		Int2: "INTEGER", Int4: "INTEGER", Int8: "INTEGER", Bool: "INTEGER",
		Float4: "BLOB", Float8: "BLOB", Bytea: "BLOB",
		Numeric: "TEXT", TextType: "TEXT", UUID: "TEXT", Date: "TEXT", Time: "TEXT",
		Timestamp: "TEXT", Timestamptz: "TEXT", Interval: "TEXT", JSON: "TEXT", JSONB: "TEXT", Enum: "TEXT",
	}
	for b, want := range decl {
		if got := typ(b).SQLiteDecl(); got != want {
			t.Errorf("%s.SQLiteDecl() = %q, want %q", b, got, want)
		}
		if got := arr(b).SQLiteDecl(); got != "TEXT" {
			t.Errorf("%s[].SQLiteDecl() = %q", b, got)
		}
	}
	if _, ok := BuiltinByOID(0); ok {
		t.Error("BuiltinByOID(0) ok")
	}
	if ty, ok := BuiltinByOID(1185); !ok || ty != (Type{Base: Timestamptz, Array: true, Name: "timestamp with time zone[]"}) {
		t.Errorf("BuiltinByOID(1185) = %v, %v", ty, ok)
	}
}

// TestFloat4RoundTrip checks float32 values against strconv: the shortest
// float32 text, parsed by FromPGText and formatted by ToPGText, gives the
// same text back. (An exhaustive run over all 2^32 bit patterns found
// exactly two values, ±7.038531e-26, where float64-then-float32 rounding of
// the text differs from direct rounding; parseFloat handles those.)
func TestFloat4RoundTrip(t *testing.T) {
	step := uint32(9973)
	if testing.Short() {
		step = 999983
	}
	for b := uint64(0); b < 1<<32; b += uint64(step) {
		checkFloat4(t, uint32(b))
	}
	checkFloat4(t, 363742205)
	checkFloat4(t, 2511225853)
}

func checkFloat4(t *testing.T, bits uint32) {
	x := math.Float32frombits(bits)
	if x != x {
		return
	}
	s, _ := formatFloat(typ(Float4), float64(x))
	v, err := FromPGText(typ(Float4), []byte(s))
	if err != nil {
		t.Fatalf("FromPGText(real, %q): %v", s, err)
	}
	back, _, err := ToPGText(typ(Float4), v)
	if err != nil || back != s || math.Float32bits(float32(v.F)) != bits {
		t.Fatalf("real %q -> %s -> %q, %v", s, show(v), back, err)
	}
}
