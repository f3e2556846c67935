package writes

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzShadowArrays feeds arbitrary text to the parsers of the shadow
// metadata columns (col_hlc, col_origin, tomb, add_ver: parseArray; adds,
// removes: parseTags), which the write path reads back from Postgres. It
// checks that they never panic; that parseArray's result is indexed from
// its lower bound (out[0] unused) and does not alias the input; that
// writing the elements back as a literal (appendTextElem, as the write path
// does) and parsing that gives the same elements, NULLs included; that
// every tag parseTags accepts is written back by appendTag as the same
// text (up to the case of the hex digits); and that tagArray of the parsed
// tags parses back to the same tags.
//
//	go test ./server/writes -run=^$ -fuzz=FuzzShadowArrays -fuzztime=60s
func FuzzShadowArrays(f *testing.F) {
	for _, s := range []string{`{}`, `{1,NULL,-3}`, `{"a b",NULL,"NULL","x\"y\\z",abc,""}`, `[3:4]={7,8}`, `[65536:1]={1}`, `[0:1]={1}`,
		``, `{`, `{"a}`, `[x:1]={1}`, `{"a"b}`, `{,}`, `{"a\`, `{a"b,{c}}`,
		`{"0000000000000001/c-1","00000000000000FF/","ffffffffffffffff/x/y",NULL}`, `{0000000000000001/c}`, `{"+000000000000001/c"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		buf := bytes.Clone(s)
		out, err := parseArray(buf)
		if err == nil {
			if len(out) == 0 || out[0] != nil {
				t.Fatalf("parseArray(%q) = %q: out[0] is not the unused NULL", s, out)
			}
			want := cloneElems(out)
			for i := range buf {
				buf[i] ^= 0xff
			}
			if !equalElems(out, want) {
				t.Fatalf("parseArray(%q) aliases its input", s)
			}
			// Write it back with the lower bound the input gave.
			first := 1
			if s[0] == '[' {
				first, _ = strconv.Atoi(string(s[1:bytes.IndexByte(s, ':')]))
			}
			var lit []byte
			if first != 1 {
				lit = append(lit, "["+strconv.Itoa(first)+":"+strconv.Itoa(len(out)-1)+"]="...)
			}
			lit = append(lit, '{')
			for i, e := range out[first:] {
				if i > 0 {
					lit = append(lit, ',')
				}
				lit = appendTextElem(lit, e, e == nil)
			}
			lit = append(lit, '}')
			again, err := parseArray(lit)
			if err != nil || !equalElems(again, want) {
				t.Fatalf("parseArray(%q) = %q, written as %s, parses as %q (%v)", s, want, lit, again, err)
			}
		}

		tags, err := parseTags(s)
		if err != nil {
			return
		}
		elems, _ := parseArray(s)
		k := 0
		for _, e := range elems[1:] {
			if e == nil {
				continue
			}
			w := appendTag(nil, tags[k])
			if !strings.EqualFold(string(w[:16]), string(e[:16])) || !bytes.Equal(w[16:], e[16:]) {
				t.Fatalf("tag %q parsed as %+v, written as %q", e, tags[k], w)
			}
			k++
		}
		if k != len(tags) {
			t.Fatalf("parseTags(%q): %d tags from %d elements", s, len(tags), k)
		}
		again, err := parseTags(tagArray(tags))
		if err != nil || !slices.Equal(again, tags) {
			t.Fatalf("parseTags(%q) = %+v, written as %s, parses as %+v (%v)", s, tags, tagArray(tags), again, err)
		}
	})
}

func cloneElems(es [][]byte) [][]byte {
	out := make([][]byte, len(es))
	for i, e := range es {
		if e != nil {
			out[i] = append([]byte{}, e...)
		}
	}
	return out
}

func equalElems(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
