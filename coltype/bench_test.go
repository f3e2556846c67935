package coltype

import (
	"testing"
)

var benchMix = []struct {
	t  Type
	in []byte
}{
	{typ(Int4), []byte("123456")},
	{typ(Int8), []byte("-9223372036854775808")},
	{typ(Int2), []byte("42")},
	{typ(TextType), []byte("hello, world")},
	{typ(TextType), []byte("a somewhat longer text value, about sixty bytes in all ....")},
	{typ(Float8), []byte("1.2345678901234568e+17")},
	{typ(Float4), []byte("3.1415927")},
	{typ(Numeric), []byte("12345.6789")},
	{typ(Bool), []byte("t")},
	{typ(UUID), []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},
	{typ(Timestamptz), []byte("2024-01-02 03:04:05.123456+00")},
	{typ(Date), []byte("2024-01-02")},
	{typ(Bytea), []byte(`\xdeadbeef00112233`)},
	{typ(JSONB), []byte(`{"a": 1, "b": [true, null]}`)},
	{arr(Int4), []byte("{1,2,3,NULL,5}")},
	{arr(TextType), []byte(`{a,"b c",NULL,"d\"e"}`)},
}

// BenchmarkFromPGText converts a mix of typical values; one op is one value.
func BenchmarkFromPGText(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for _, m := range benchMix {
		n += len(m.in)
	}
	b.SetBytes(int64(n / len(benchMix)))
	for i := 0; b.Loop(); i++ {
		m := &benchMix[i%len(benchMix)]
		if _, err := FromPGText(m.t, m.in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFromPGTextType reports each type of the mix separately.
func BenchmarkFromPGTextType(b *testing.B) {
	for _, m := range benchMix {
		b.Run(m.t.String()+"/"+string(m.in[:min(len(m.in), 12)]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FromPGText(m.t, m.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkToPGText(b *testing.B) {
	vals := make([]Value, len(benchMix))
	for i, m := range benchMix {
		v, err := FromPGText(m.t, m.in)
		if err != nil {
			b.Fatal(err)
		}
		vals[i] = v
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		j := i % len(benchMix)
		if _, _, err := ToPGText(benchMix[j].t, vals[j]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFromPGTextAllocs pins the allocation budget: no allocation for
// integers, floats and booleans, exactly one (the copy) for text.
func TestFromPGTextAllocs(t *testing.T) {
	cases := []struct {
		t    Type
		in   string
		want float64
	}{
		{typ(Int4), "123456", 0},
		{typ(Int8), "-9223372036854775808", 0},
		{typ(Float8), "1.2345678901234568e+17", 0},
		{typ(Float4), "3.1415927", 0},
		{typ(Bool), "t", 0},
		{typ(TextType), "hello, world", 1},
		{typ(TextType), "a somewhat longer text value, about sixty bytes in all ....", 1},
		{typ(Numeric), "12345.6789", 1},
		{typ(UUID), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 1},
		{typ(Timestamptz), "2024-01-02 03:04:05.123456+00", 1},
		{typ(Bytea), `\xdeadbeef`, 1},
		{arr(Int4), "{1,2,3,NULL,5}", 1},
		{arr(TextType), `{a,"b c",NULL}`, 1},
	}
	for _, c := range cases {
		in := []byte(c.in)
		got := testing.AllocsPerRun(100, func() {
			if _, err := FromPGText(c.t, in); err != nil {
				t.Fatal(err)
			}
		})
		if got > c.want {
			t.Errorf("FromPGText(%s, %q): %v allocations, want %v", c.t, c.in, got, c.want)
		}
	}
}
