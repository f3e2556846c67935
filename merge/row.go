// Package merge is the one implementation of Lattice's merge rules, compiled
// into the service and into every client (including GOOS=js GOARCH=wasm).
//
// A row's state (Row) is a state-based CRDT:
//
//   - each column is a last-writer-wins register ordered by the Stamp (HLC,
//     then origin) of the transaction that wrote it;
//   - the row's existence is an observed-remove set of tags: every
//     insert/update (Upsert) and compensation (Touch) adds its Stamp as a
//     tag; a Delete removes exactly the tags its author had seen, so a
//     concurrent write keeps the row alive ("update wins over delete").
//
// Merge is the join of two states (commutative, associative, idempotent), so
// replicas that merged the same changes, in any order and any number of
// times, hold equal state. Ops (Op) are turned into state deltas (Op.Delta)
// and merged (Apply). See README.md for the rules in full.
//
// The package is pure Go: no I/O, no global state, no goroutines.
package merge

import (
	"bytes"
	"cmp"
	"math"

	"github.com/latticesync/lattice/coltype"
)

// Row is the mergeable state of one row.
//
// Values and Cols are indexed by column position; a row narrower than the
// table (the schema grew) reads as if padded with NULL values and zero
// stamps. Adds and Removes are sets: sorted by Stamp.Compare, without
// duplicates (Merge, Apply and DecodeMeta maintain this; other functions
// accept unsorted input too).
//
// A Row's slices are never modified by this package once returned, except
// by Compact (which replaces them). The []byte of Text and Blob values is
// shared, never copied: treat it as immutable.
type Row struct {
	Values  []coltype.Value // current value of each column
	Cols    []Stamp         // LWW stamp of each column; zero = never written
	Adds    []Stamp         // OR-set: tags added (each Upsert/Touch adds its Stamp)
	Removes []Stamp         // tags removed (by Deletes, and retired by Upserts/Touches)
}

// Width returns the number of columns r holds: the longer of Values and
// Cols.
func (r Row) Width() int { return max(len(r.Values), len(r.Cols)) }

// col returns column i, padded with NULL and the zero Stamp.
func (r Row) col(i int) (coltype.Value, Stamp) {
	var v coltype.Value
	var s Stamp
	if i < len(r.Values) {
		v = r.Values[i]
	}
	if i < len(r.Cols) {
		s = r.Cols[i]
	}
	return v, s
}

// Exists reports whether the row exists: some tag in Adds is not in
// Removes.
func (r Row) Exists() bool {
	adds, removes := asSet(r.Adds), asSet(r.Removes)
	j := 0
	for _, a := range adds {
		for j < len(removes) && removes[j].Compare(a) < 0 {
			j++
		}
		if j == len(removes) || removes[j] != a {
			return true
		}
	}
	return false
}

// Live returns the live tags, Adds minus Removes, sorted (nil if none).
// This is what a writer observes: an Op written against this state carries
// Live() as its Seen, and a Delete written here removes exactly these tags.
func (r Row) Live() []Stamp {
	adds, removes := asSet(r.Adds), asSet(r.Removes)
	var live []Stamp
	j := 0
	for _, a := range adds {
		for j < len(removes) && removes[j].Compare(a) < 0 {
			j++
		}
		if j == len(removes) || removes[j] != a {
			live = append(live, a)
		}
	}
	return live
}

// pick returns the winner of two writes to one column: the greater stamp;
// for equal stamps (which should carry equal values) the greater value by
// compareValue, so that the choice is deterministic.
func pick(va coltype.Value, sa Stamp, vb coltype.Value, sb Stamp) (coltype.Value, Stamp) {
	c := sa.Compare(sb)
	if c == 0 {
		c = compareValue(va, vb)
	}
	if c >= 0 {
		return va, sa
	}
	return vb, sb
}

// compareValue is a total order on values, consistent with
// coltype.Value.Equal: by Kind, then by the integer, the float bits or the
// bytes.
func compareValue(a, b coltype.Value) int {
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	switch a.Kind {
	case coltype.Integer:
		return cmp.Compare(a.I, b.I)
	case coltype.Real:
		return cmp.Compare(math.Float64bits(a.F), math.Float64bits(b.F))
	case coltype.Text, coltype.Blob:
		return bytes.Compare(a.B, b.B)
	}
	return 0
}

// Merge returns the join of two row states:
//
//   - per column, the value with the greater stamp (equal stamps must carry
//     equal values; if they do not, the greater value in a fixed total order
//     on values is kept, so the result is still deterministic);
//   - Adds is the union of the Adds, Removes the union of the Removes.
//
// A row narrower than the other is padded with NULL values and zero stamps
// (the schema grew). Merge is commutative, associative and idempotent (up to
// Equal). The result shares no slice with a or b (value bytes aside).
func Merge(a, b Row) Row {
	var out Row
	if w := max(a.Width(), b.Width()); w > 0 {
		out.Values = make([]coltype.Value, w)
		out.Cols = make([]Stamp, w)
		for i := range w {
			va, sa := a.col(i)
			vb, sb := b.col(i)
			out.Values[i], out.Cols[i] = pick(va, sa, vb, sb)
		}
	}
	out.Adds, out.Removes = unions(asSet(a.Adds), asSet(b.Adds), asSet(a.Removes), asSet(b.Removes))
	return out
}

// Equal reports whether a and b are the same state: equal values
// (coltype.Value.Equal: floats by bits, nil and empty bytes alike) and stamps
// in every column, a narrower row read as padded with NULL values and zero
// stamps, and equal Adds and Removes sets (nil and empty alike).
func Equal(a, b Row) bool {
	for i := range max(a.Width(), b.Width()) {
		va, sa := a.col(i)
		vb, sb := b.col(i)
		if sa != sb || !va.Equal(vb) {
			return false
		}
	}
	return setEqual(asSet(a.Adds), asSet(b.Adds)) && setEqual(asSet(a.Removes), asSet(b.Removes))
}

func setEqual(a, b []Stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of r that shares no slice with it (value bytes
// aside).
func (r Row) Clone() Row {
	return Row{
		Values:  cloneOrNil(r.Values),
		Cols:    cloneOrNil(r.Cols),
		Adds:    cloneOrNil(r.Adds),
		Removes: cloneOrNil(r.Removes),
	}
}

func cloneOrNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

// Compact drops every tag with HLC <= stable.HLC from Removes, together with
// the same tag in Adds. Values, Cols and all other tags are kept, so
// Exists and Live are unchanged. Compact replaces r.Adds and r.Removes with
// new slices.
//
// Compact forgets that those tags were removed. That is safe only when
// every replica already agrees they are removed and no replica will ever
// merge them in again as added. The caller must ensure, before calling
// Compact(stable):
//
//  1. every op with an HLC <= stable.HLC has been applied at every replica;
//  2. every op that removed (deleted or retired) one of the dropped tags has
//     been applied at every replica too. Condition 1 alone does not imply
//     this: a delete can remove an old tag long after the tag was written;
//  3. from then on, no op with an HLC <= stable.HLC is applied to this state
//     again (a re-delivered old op would bring its tag back), and this state
//     is not merged with a state that still holds one of the dropped tags in
//     Adds but not in Removes.
//
// Replicas that compact at different times still converge in meaning
// (Exists, Live, values), but are structurally Equal only once all have
// compacted at the same point.
func (r *Row) Compact(stable Stamp) {
	adds, removes := asSet(r.Adds), asSet(r.Removes)
	var keptAdds, keptRemoves []Stamp
	j := 0
	for _, a := range adds {
		for j < len(removes) && removes[j].Compare(a) < 0 {
			j++
		}
		if a.HLC <= stable.HLC && j < len(removes) && removes[j] == a {
			continue
		}
		keptAdds = append(keptAdds, a)
	}
	for _, x := range removes {
		if x.HLC > stable.HLC {
			keptRemoves = append(keptRemoves, x)
		}
	}
	r.Adds, r.Removes = keptAdds, keptRemoves
}
