package merge

import (
	"errors"
	"slices"
	"strconv"

	"github.com/latticesync/lattice/coltype"
)

// Ref is a foreign key of a child table: child columns Cols reference the
// parent table's columns ParentCols, pairwise (column positions).
type Ref struct {
	Table      string // the parent table
	Cols       []int  // child columns
	ParentCols []int  // parent columns, same length as Cols
}

// Compensation names a parent row that must be re-asserted: the caller finds
// the row of Table whose columns Cols hold Key and applies c.Touch with that
// row's Live tags as Seen.
type Compensation struct {
	Table string
	Cols  []int           // parent columns (the Ref's ParentCols)
	Key   []coltype.Value // their values: the child's values of the Ref's Cols
	Stamp Stamp           // the child op's stamp, which the Touch carries
}

// Touch returns the compensating op: a Touch of the parent row with the
// child's Stamp. seen is the parent's Live tags at the author, so the Touch
// also retires them (any set is correct; Live keeps the tag set small).
func (c Compensation) Touch(seen []Stamp) Op {
	return Op{Kind: Touch, Stamp: c.Stamp, Seen: seen}
}

// Compensations returns the parent rows that a write to a child row must
// re-assert, so that a concurrent delete of a parent cannot orphan the
// child: for an Upsert or a Touch, one Compensation per foreign key in refs
// whose child columns are all non-NULL (Postgres' MATCH SIMPLE: a key with a
// NULL column references nothing). row is the full child row after the write
// (every column, not just those the op set). Duplicate parent keys are
// returned once. A Delete re-asserts nothing (nil).
//
// Compensation is transitive: a parent kept alive must keep its own parents
// alive, so the caller also computes the Compensations of each Touch (with
// the parent's full row and foreign keys), skipping parent rows it already
// touched for this op (cycles, self-references; touching the row being
// written is harmless but useless).
//
// An error reports a Ref that does not fit row (unequal lengths, no columns,
// a column outside row).
func Compensations(child Op, row []coltype.Value, refs []Ref) ([]Compensation, error) {
	if child.Kind != Upsert && child.Kind != Touch {
		return nil, nil
	}
	var out []Compensation
	for n, ref := range refs {
		if len(ref.Cols) == 0 || len(ref.Cols) != len(ref.ParentCols) {
			return nil, errors.New("merge: foreign key " + strconv.Itoa(n) + " to " + ref.Table + ": column lists of unequal or zero length")
		}
		null := false
		for _, i := range ref.Cols {
			if i < 0 || i >= len(row) {
				return nil, errors.New("merge: foreign key " + strconv.Itoa(n) + " to " + ref.Table + ": column " + strconv.Itoa(i) + " outside the row")
			}
			if row[i].Kind == coltype.Null {
				null = true
			}
		}
		if null {
			continue
		}
		key := make([]coltype.Value, len(ref.Cols))
		for k, i := range ref.Cols {
			key[k] = row[i]
		}
		dup := slices.ContainsFunc(out, func(c Compensation) bool {
			return c.Table == ref.Table && slices.Equal(c.Cols, ref.ParentCols) &&
				slices.EqualFunc(c.Key, key, coltype.Value.Equal)
		})
		if !dup {
			out = append(out, Compensation{Table: ref.Table, Cols: ref.ParentCols, Key: key, Stamp: child.Stamp})
		}
	}
	return out, nil
}
