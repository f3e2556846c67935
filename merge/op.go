package merge

import (
	"errors"
	"slices"
	"strconv"

	"github.com/latticesync/lattice/coltype"
)

// MaxColumns is the largest number of columns a row can have (Postgres'
// limit per table). Op column indexes must be below it.
const MaxColumns = 1600

// OpKind is what an op does to a row.
type OpKind uint8

// Op kinds.
const (
	// Upsert is an insert or an update: it writes the columns in Set and
	// asserts the row's existence. An insert sets every column.
	Upsert OpKind = 1
	// Delete removes the tags in Seen.
	Delete OpKind = 2
	// Touch is a compensation: it asserts the row's existence and writes
	// nothing.
	Touch OpKind = 3
)

func (k OpKind) String() string {
	switch k {
	case Upsert:
		return "upsert"
	case Delete:
		return "delete"
	case Touch:
		return "touch"
	}
	return "OpKind(" + strconv.Itoa(int(k)) + ")"
}

// Op is what one transaction does to one row. A transaction contributes at
// most one op per row: its net effect (a row deleted and inserted again in
// one transaction is one Upsert setting every column; a row inserted and
// deleted again is nothing, or a Delete of the tags seen before the
// transaction).
type Op struct {
	Kind  OpKind
	Stamp Stamp // the transaction's stamp; it is also the tag an Upsert or Touch adds

	// Set and Values are the columns an Upsert writes (indexes, unique, each
	// below MaxColumns) and their new values, pairwise. Ignored by Delete
	// and Touch.
	Set    []int
	Values []coltype.Value

	// Seen is the set of tags the author observed (Row.Live at the author
	// when it wrote). A Delete removes exactly these. An Upsert or Touch
	// retires them (they are superseded by its own tag; it never retires its
	// own tag, should Seen hold it): this keeps the live set small, and a
	// concurrent Delete that did not see the new tag cannot remove it.
	Seen []Stamp
}

// Validate reports what is wrong with an op from an untrusted source (the
// wire). Delta and Apply never fail or panic; on an invalid op they do
// something deterministic (every replica computes the same state) but
// probably unintended: entries of Set outside [0, MaxColumns) are ignored, a
// missing value is NULL, equal indexes keep the greater value, an op of an
// unknown kind contributes nothing.
func (o Op) Validate() error {
	switch o.Kind {
	case Upsert, Delete, Touch:
	default:
		return errors.New("merge: op of unknown kind " + o.Kind.String())
	}
	if o.Stamp.HLC == 0 || o.Stamp.Origin == "" {
		return errors.New("merge: op without HLC or origin")
	}
	if o.Kind == Upsert {
		if len(o.Set) != len(o.Values) {
			return errors.New("merge: upsert with " + strconv.Itoa(len(o.Set)) + " columns and " + strconv.Itoa(len(o.Values)) + " values")
		}
		var seen [MaxColumns / 8]byte
		for _, i := range o.Set {
			if i < 0 || i >= MaxColumns {
				return errors.New("merge: upsert of column " + strconv.Itoa(i))
			}
			if seen[i/8]&(1<<(i%8)) != 0 {
				return errors.New("merge: upsert sets column " + strconv.Itoa(i) + " twice")
			}
			seen[i/8] |= 1 << (i % 8)
		}
	}
	for _, s := range o.Seen {
		if s.Compare(o.Stamp) >= 0 {
			return errors.New("merge: op " + o.Stamp.String() + " saw tag " + s.String() + ", which is not older")
		}
	}
	return nil
}

// setIndex reports whether i is a column index an op may write.
func setIndex(i int) bool { return i >= 0 && i < MaxColumns }

// value returns the k-th value of an Upsert, NULL if missing.
func (o *Op) value(k int) coltype.Value {
	if k < len(o.Values) {
		return o.Values[k]
	}
	return coltype.Value{}
}

// deltaWidth returns the width of the delta of o against a row of width w.
func (o *Op) deltaWidth(w int) int {
	if o.Kind == Upsert {
		for _, i := range o.Set {
			if setIndex(i) && i >= w {
				w = i + 1
			}
		}
	}
	return w
}

// Delta returns the state the op contributes, width columns wide (wider if
// an Upsert sets a column beyond width):
//
//   - Upsert: the columns in Set carry the op's values and Stamp, the others
//     are NULL with the zero stamp; Adds = {Stamp}; Removes = Seen - {Stamp}.
//   - Touch: no column written; Adds = {Stamp}; Removes = Seen - {Stamp}.
//   - Delete: no column written; Adds empty; Removes = Seen.
func (o Op) Delta(width int) Row {
	var d Row
	if w := o.deltaWidth(max(width, 0)); w > 0 {
		d.Values = make([]coltype.Value, w)
		d.Cols = make([]Stamp, w)
	}
	tag, ok := o.write(d.Values, d.Cols)
	if !ok {
		return d
	}
	d.Adds, d.Removes = unions(tag, nil, o.removed(), nil)
	return d
}

// write merges the columns an Upsert sets into values and cols (by LWW) and
// returns the tag the op adds. ok is false for an unknown Kind, which
// contributes nothing.
func (o *Op) write(values []coltype.Value, cols []Stamp) (tag []Stamp, ok bool) {
	switch o.Kind {
	case Upsert:
		for k, i := range o.Set {
			if setIndex(i) {
				values[i], cols[i] = pick(values[i], cols[i], o.value(k), o.Stamp)
			}
		}
		return []Stamp{o.Stamp}, true
	case Touch:
		return []Stamp{o.Stamp}, true
	case Delete:
		return nil, true
	}
	return nil, false
}

// removed returns the tags o removes: Seen, as a set, without the op's own
// Stamp for an Upsert or Touch (a write never retires its own tag, so a
// compensating Touch written against a state that already holds the
// transaction's tag is harmless).
func (o *Op) removed() []Stamp {
	seen := asSet(o.Seen)
	if o.Kind == Delete {
		return seen
	}
	i, found := slices.BinarySearchFunc(seen, o.Stamp, Stamp.Compare)
	if !found {
		return seen
	}
	return slices.Concat(seen[:i], seen[i+1:])
}

// Apply returns the state r after op o: Merge(r, o.Delta(r.Width())),
// computed without building the delta. r is not modified.
func Apply(r Row, o Op) Row {
	var out Row
	if w := o.deltaWidth(r.Width()); w > 0 {
		out.Values = make([]coltype.Value, w)
		out.Cols = make([]Stamp, w)
		copy(out.Values, r.Values)
		copy(out.Cols, r.Cols)
	}
	tag, ok := o.write(out.Values, out.Cols)
	if !ok {
		out.Adds, out.Removes = unions(asSet(r.Adds), nil, asSet(r.Removes), nil)
		return out
	}
	out.Adds, out.Removes = unions(asSet(r.Adds), tag, asSet(r.Removes), o.removed())
	return out
}
