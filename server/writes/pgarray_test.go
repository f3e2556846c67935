package writes

import (
	"slices"
	"testing"

	"github.com/latticesync/lattice/merge"
)

func TestParseArray(t *testing.T) {
	cases := []struct {
		in   string
		want []string // "<nil>" for NULL; index 0 unused
	}{
		{`{}`, []string{"<nil>"}},
		{`{1,NULL,-3}`, []string{"<nil>", "1", "<nil>", "-3"}},
		{`{"a b",NULL,"NULL","x\"y\\z",abc,""}`, []string{"<nil>", "a b", "<nil>", "NULL", `x"y\z`, "abc", ""}},
		{`[3:4]={7,8}`, []string{"<nil>", "<nil>", "<nil>", "7", "8"}},
	}
	for _, c := range cases {
		got, err := parseArray([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		strs := make([]string, len(got))
		for i, g := range got {
			if g == nil {
				strs[i] = "<nil>"
			} else {
				strs[i] = string(g)
			}
		}
		if !slices.Equal(strs, c.want) {
			t.Errorf("%s: got %q, want %q", c.in, strs, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a}`, `[x:1]={1}`, `{"a"b}`} {
		if _, err := parseArray([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestTags(t *testing.T) {
	set := []merge.Stamp{
		{HLC: 1, Origin: "b"},
		{HLC: 1, Origin: "b/c"},
		{HLC: merge.MakeHLC(1_700_000_000_000, 3), Origin: `q"u\o,te {}`},
		{HLC: ^merge.HLC(0), Origin: ""},
	}
	got, err := parseTags(tagArray(set))
	if err != nil || !slices.Equal(got, set) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	// Text order is stamp order.
	for i := 1; i < len(set); i++ {
		a, b := string(appendTag(nil, set[i-1])), string(appendTag(nil, set[i]))
		if a >= b {
			t.Errorf("%q >= %q", a, b)
		}
	}
	if s := string(appendTag(nil, merge.Stamp{HLC: 0x1a2b, Origin: "pg"})); s != "0000000000001a2b/pg" {
		t.Errorf("tag = %q", s)
	}
}
