package merge

import (
	"slices"
	"strings"
)

// Stamp identifies a write: the HLC of the writing transaction and its
// origin (a client id, or "pg:<something>" for plain SQL writes made in
// Postgres). Every op of one transaction carries the same Stamp; no two
// transactions may share one (an origin's Clock never repeats an HLC).
type Stamp struct {
	HLC    HLC
	Origin string
}

// Compare orders stamps by HLC, then by Origin bytewise. It returns -1, 0
// or +1. The order is total; the zero Stamp is the least.
func (a Stamp) Compare(b Stamp) int {
	if a.HLC != b.HLC {
		if a.HLC < b.HLC {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Origin, b.Origin)
}

// IsZero reports whether a is the zero Stamp (a column never written).
func (a Stamp) IsZero() bool { return a.HLC == 0 && a.Origin == "" }

// String formats a as "<HLC>@<origin>", e.g. "2024-01-02T13:04:05.123Z/0@c1".
func (a Stamp) String() string {
	if a.IsZero() {
		return "0"
	}
	return a.HLC.String() + "@" + a.Origin
}

// Sets of stamps (Row.Adds, Row.Removes, Op.Seen) are slices sorted by
// Compare without duplicates. The helpers below accept unsorted input where
// it can come from outside (hand-built rows, ops from the wire) and always
// return sorted, unique sets.

// isSet reports whether s is sorted by Compare without duplicates.
func isSet(s []Stamp) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1].Compare(s[i]) >= 0 {
			return false
		}
	}
	return true
}

// asSet returns s if it is a set, otherwise a sorted, deduplicated copy.
func asSet(s []Stamp) []Stamp {
	if isSet(s) {
		return s
	}
	c := slices.Clone(s)
	slices.SortFunc(c, Stamp.Compare)
	return slices.CompactFunc(c, func(a, b Stamp) bool { return a == b })
}

// unionLen returns the size of the union of sets a and b.
func unionLen(a, b []Stamp) int {
	n := 0
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := a[i].Compare(b[j]); {
		case c < 0:
			i++
		case c > 0:
			j++
		default:
			i++
			j++
		}
		n++
	}
	return n + len(a) - i + len(b) - j
}

// appendUnion appends the union of sets a and b to dst.
func appendUnion(dst, a, b []Stamp) []Stamp {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := a[i].Compare(b[j]); {
		case c < 0:
			dst = append(dst, a[i])
			i++
		case c > 0:
			dst = append(dst, b[j])
			j++
		default:
			dst = append(dst, a[i])
			i++
			j++
		}
	}
	dst = append(dst, a[i:]...)
	return append(dst, b[j:]...)
}

// unions returns the unions of the add sets and of the remove sets, in one
// allocation (nil when both are empty). The two results have their
// capacities capped, so appending to one never overwrites the other.
func unions(addA, addB, remA, remB []Stamp) (adds, removes []Stamp) {
	na, nr := unionLen(addA, addB), unionLen(remA, remB)
	if na+nr == 0 {
		return nil, nil
	}
	buf := make([]Stamp, 0, na+nr)
	buf = appendUnion(buf, addA, addB)
	buf = appendUnion(buf, remA, remB)
	if na > 0 {
		adds = buf[:na:na]
	}
	if nr > 0 {
		removes = buf[na : na+nr : na+nr]
	}
	return adds, removes
}

// contains reports whether set s holds x.
func contains(s []Stamp, x Stamp) bool {
	_, ok := slices.BinarySearchFunc(s, x, Stamp.Compare)
	return ok
}
