package writes

import (
	"errors"
	"strconv"
	"strings"

	"github.com/latticesync/lattice/merge"
)

// Shadow metadata travels as Postgres array literals in text format. These
// helpers parse what Postgres prints for one-dimensional arrays (with an
// optional "[lb:ub]=" prefix) and write literals Postgres reads back.

// parseArray splits a one-dimensional array literal into its elements,
// indexed from 1 (out[0] is unused and nil); a nil element is NULL. With
// a lower bound other than 1 the elements are placed at their subscripts.
func parseArray(s []byte) ([][]byte, error) {
	lb := 1
	if len(s) > 0 && s[0] == '[' {
		colon := strings.IndexByte(string(s), ':')
		eq := strings.IndexByte(string(s), '=')
		if colon < 0 || eq < colon {
			return nil, errors.New("bad array bounds")
		}
		n, err := strconv.Atoi(string(s[1:colon]))
		if err != nil || n < 1 || n > 1<<16 {
			return nil, errors.New("bad array lower bound")
		}
		lb = n
		s = s[eq+1:]
	}
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errors.New("not an array literal")
	}
	out := make([][]byte, lb)
	body := s[1 : len(s)-1]
	if len(body) == 0 {
		return out, nil
	}
	for i := 0; ; {
		var elem []byte
		if i < len(body) && body[i] == '"' {
			i++
			elem = []byte{}
			for {
				if i >= len(body) {
					return nil, errors.New("unterminated quoted array element")
				}
				c := body[i]
				if c == '\\' && i+1 < len(body) {
					elem = append(elem, body[i+1])
					i += 2
					continue
				}
				if c == '"' {
					i++
					break
				}
				elem = append(elem, c)
				i++
			}
		} else {
			j := i
			for j < len(body) && body[j] != ',' {
				j++
			}
			raw := body[i:j]
			if string(raw) == "NULL" {
				elem = nil
			} else {
				elem = append([]byte{}, raw...)
			}
			i = j
		}
		out = append(out, elem)
		if i >= len(body) {
			break
		}
		if body[i] != ',' {
			return nil, errors.New("bad array element separator")
		}
		i++
	}
	return out, nil
}

// appendTextElem appends a quoted array element (or NULL).
func appendTextElem(b []byte, v []byte, null bool) []byte {
	if null {
		return append(b, "NULL"...)
	}
	b = append(b, '"')
	for _, c := range v {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

// appendTag appends the text form of a stamp: 16 lower-case hex digits of
// the HLC, '/', the origin. Bytewise order of tags is Stamp order.
func appendTag(b []byte, s merge.Stamp) []byte {
	const hex = "0123456789abcdef"
	h := uint64(s.HLC)
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hex[(h>>uint(shift))&0xf])
	}
	b = append(b, '/')
	return append(b, s.Origin...)
}

// parseTag parses what appendTag wrote.
func parseTag(t []byte) (merge.Stamp, error) {
	if len(t) < 17 || t[16] != '/' {
		return merge.Stamp{}, errors.New("bad tag " + strconv.Quote(string(t)))
	}
	h, err := strconv.ParseUint(string(t[:16]), 16, 64)
	if err != nil {
		return merge.Stamp{}, errors.New("bad tag " + strconv.Quote(string(t)))
	}
	return merge.Stamp{HLC: merge.HLC(h), Origin: string(t[17:])}, nil
}

// parseTags parses a text[] of tags.
func parseTags(s []byte) ([]merge.Stamp, error) {
	if s == nil {
		return nil, nil
	}
	elems, err := parseArray(s)
	if err != nil {
		return nil, err
	}
	var out []merge.Stamp
	for _, e := range elems[1:] {
		if e == nil {
			continue
		}
		st, err := parseTag(e)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// tagArray formats a set of stamps as a text[] literal.
func tagArray(set []merge.Stamp) []byte {
	b := make([]byte, 0, 2+len(set)*32)
	b = append(b, '{')
	var tmp []byte
	for i, s := range set {
		if i > 0 {
			b = append(b, ',')
		}
		tmp = appendTag(tmp[:0], s)
		b = appendTextElem(b, tmp, false)
	}
	return append(b, '}')
}
