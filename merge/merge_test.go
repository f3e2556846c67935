package merge

import (
	"slices"
	"testing"

	"github.com/latticesync/lattice/coltype"
)

// The scenarios: a base state every replica shares, then ops made
// concurrently (or in sequence, when an op's Seen names an earlier op's
// tag). Each scenario is checked for every order of applying the ops, with
// each op also applied twice, and as a merge of the per-op replicas' states.
func TestScenarios(t *testing.T) {
	var (
		i1 = st(1, "a") // the insert everyone saw
		a2 = st(2, "a")
		b2 = st(2, "b")
		a3 = st(3, "a")
		b3 = st(3, "b")
		b4 = st(4, "b")
		c5 = st(5, "c")
	)
	base := insert(i1, nil, i64(1), txt("x"), i64(10))
	// After a1 and b1 updates, both tags are live.
	type want struct {
		exists bool
		values []coltype.Value // nil: don't check
		live   []Stamp
	}
	tests := []struct {
		name string
		base []Op // applied first, in order
		ops  []Op // applied in every order
		want want
	}{
		{
			name: "concurrent updates to different columns both survive",
			base: []Op{base},
			ops: []Op{
				update(a2, tags(i1), 1, txt("y")),
				update(b2, tags(i1), 2, i64(20)),
			},
			want: want{true, []coltype.Value{i64(1), txt("y"), i64(20)}, tags(a2, b2)},
		},
		{
			name: "older HLC loses to newer",
			base: []Op{base},
			ops: []Op{
				update(b3, tags(i1), 1, txt("new")),
				update(a2, tags(i1), 1, txt("old")),
			},
			want: want{true, []coltype.Value{i64(1), txt("new"), i64(10)}, tags(a2, b3)},
		},
		{
			name: "newer HLC wins even from a smaller origin",
			base: []Op{base},
			ops: []Op{
				update(a3, tags(i1), 1, txt("new")),
				update(b2, tags(i1), 1, txt("old")),
			},
			want: want{true, []coltype.Value{i64(1), txt("new"), i64(10)}, tags(b2, a3)},
		},
		{
			name: "equal HLC: tie broken by origin",
			base: []Op{base},
			ops: []Op{
				update(a2, tags(i1), 1, txt("from a")),
				update(b2, tags(i1), 1, txt("from b")),
			},
			want: want{true, []coltype.Value{i64(1), txt("from b"), i64(10)}, tags(a2, b2)},
		},
		{
			name: "update that did not see a delete brings the row back with merged values",
			base: []Op{base, update(a2, tags(i1), 2, i64(11))},
			ops: []Op{
				del(a3, tags(a2)),
				update(b4, tags(a2), 1, txt("y")),
			},
			// Columns 0 and 2 were not written after the delete: they keep
			// their pre-delete values.
			want: want{true, []coltype.Value{i64(1), txt("y"), i64(11)}, tags(b4)},
		},
		{
			name: "update older than the concurrent delete still brings the row back",
			base: []Op{base},
			ops: []Op{
				update(a2, tags(i1), 1, txt("y")),
				del(b4, tags(i1)),
			},
			want: want{true, []coltype.Value{i64(1), txt("y"), i64(10)}, tags(a2)},
		},
		{
			name: "delete that saw every version removes the row",
			base: []Op{base, update(a2, tags(i1), 1, txt("y")), update(b2, tags(i1), 2, i64(20))},
			ops:  []Op{del(a3, tags(a2, b2))},
			// The state keeps the values of the deleted row.
			want: want{false, []coltype.Value{i64(1), txt("y"), i64(20)}, nil},
		},
		{
			name: "delete that missed a concurrent version does not remove it",
			base: []Op{base, update(a2, tags(i1), 1, txt("y")), update(b2, tags(i1), 2, i64(20))},
			ops:  []Op{del(a3, tags(a2))},
			want: want{true, []coltype.Value{i64(1), txt("y"), i64(20)}, tags(b2)},
		},
		{
			name: "delete then re-insert",
			base: []Op{base, del(a2, tags(i1))},
			ops:  []Op{insert(a3, nil, i64(2), txt("new"), null)},
			want: want{true, []coltype.Value{i64(2), txt("new"), null}, tags(a3)},
		},
		{
			name: "re-insert concurrent with an update that did not see the delete",
			base: []Op{base, del(a2, tags(i1))},
			ops: []Op{
				insert(a3, nil, i64(2), txt("new"), null),
				update(b2, tags(i1), 2, i64(99)), // b2 < a3: older than the re-insert
			},
			want: want{true, []coltype.Value{i64(2), txt("new"), null}, tags(b2, a3)},
		},
		{
			name: "two concurrent deletes",
			base: []Op{base},
			ops:  []Op{del(a2, tags(i1)), del(b2, tags(i1))},
			want: want{false, []coltype.Value{i64(1), txt("x"), i64(10)}, nil},
		},
		{
			name: "two concurrent deletes and a concurrent update",
			base: []Op{base},
			ops:  []Op{del(a2, tags(i1)), del(b2, tags(i1)), update(c5, tags(i1), 0, i64(5))},
			want: want{true, []coltype.Value{i64(5), txt("x"), i64(10)}, tags(c5)},
		},
		{
			name: "touch keeps a concurrently deleted row alive, values unchanged",
			base: []Op{base, update(a2, tags(i1), 1, txt("y"))},
			ops:  []Op{del(a3, tags(a2)), touch(b3, tags(a2))},
			want: want{true, []coltype.Value{i64(1), txt("y"), i64(10)}, tags(b3)},
		},
		{
			name: "a delete that saw the touch removes the row",
			base: []Op{base, touch(b2, tags(i1))},
			ops:  []Op{del(a3, tags(b2))},
			want: want{false, nil, nil},
		},
		{
			name: "insert with a column beyond the base width (schema grew)",
			base: []Op{base},
			ops:  []Op{update(a2, tags(i1), 4, i64(7)), update(b2, tags(i1), 0, i64(0))},
			want: want{true, []coltype.Value{i64(0), txt("x"), i64(10), null, i64(7)}, tags(a2, b2)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := applyAll(Row{}, tc.base...)
			var first Row
			n := 0
			permutations(tc.ops, func(p []Op) {
				got := applyAll(start, p...)
				twice := applyAll(got, p...)
				if !Equal(got, twice) {
					t.Fatalf("applying twice changed the state:\n%s\n%s", rowString(got), rowString(twice))
				}
				if n == 0 {
					first = got
				} else if !Equal(got, first) {
					t.Fatalf("order %s gives\n%s, first order gave\n%s", opsString(p), rowString(got), rowString(first))
				}
				n++
			})
			// State-based: each op made at its own replica from the base,
			// then the replicas' states merged.
			merged := start
			for _, o := range slices.Backward(tc.ops) {
				merged = Merge(Apply(start, o), merged)
			}
			if !Equal(merged, first) {
				t.Fatalf("merge of replica states gives\n%s, ops gave\n%s", rowString(merged), rowString(first))
			}
			if got := first.Exists(); got != tc.want.exists {
				t.Errorf("Exists = %v, want %v: %s", got, tc.want.exists, rowString(first))
			}
			if tc.want.values != nil && !Equal(Row{Values: first.Values}, Row{Values: tc.want.values}) {
				t.Errorf("values %s, want %s", rowString(Row{Values: first.Values}), rowString(Row{Values: tc.want.values}))
			}
			if live := first.Live(); !setEqual(live, tc.want.live) {
				t.Errorf("Live = %s, want %s", rowString(Row{Adds: live}), rowString(Row{Adds: tc.want.live}))
			}
		})
	}
}

// A child row inserted concurrently with the delete of its parent keeps the
// parent alive through the compensating Touch.
func TestCompensationKeepsParent(t *testing.T) {
	refs := []Ref{{Table: "project", Cols: []int{1}, ParentCols: []int{0}}}
	p1 := st(1, "a")
	parent := applyAll(Row{}, insert(p1, nil, i64(42), txt("Apollo"))) // project(id, name)

	// Replica b inserts issue(id=7, project_id=42); replica a deletes project 42.
	childStamp := st(3, "b")
	child := insert(childStamp, nil, i64(7), i64(42))
	comps, err := Compensations(child, child.Values, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 1 || comps[0].Table != "project" || !slices.Equal(comps[0].Cols, []int{0}) ||
		len(comps[0].Key) != 1 || !comps[0].Key[0].Equal(i64(42)) || comps[0].Stamp != childStamp {
		t.Fatalf("Compensations = %+v", comps)
	}
	touchOp := comps[0].Touch(parent.Live())
	deleteOp := del(st(2, "a"), parent.Live())

	atA := Apply(Apply(parent, deleteOp), touchOp)
	atB := Apply(Apply(parent, touchOp), deleteOp)
	if !Equal(atA, atB) {
		t.Fatalf("replicas differ:\n%s\n%s", rowString(atA), rowString(atB))
	}
	if !atA.Exists() {
		t.Fatalf("parent deleted despite the compensation: %s", rowString(atA))
	}
	if !atA.Values[1].Equal(txt("Apollo")) {
		t.Fatalf("parent values lost: %s", rowString(atA))
	}
	// Without the compensation the delete would have removed the parent.
	if Apply(parent, deleteOp).Exists() {
		t.Fatal("delete did not remove the parent")
	}
	// A later delete that saw the Touch removes the parent for good.
	if Apply(atA, del(st(4, "a"), atA.Live())).Exists() {
		t.Fatal("delete after the touch did not remove the parent")
	}
}

func TestCompensations(t *testing.T) {
	s := st(9, "c")
	refs := []Ref{
		{Table: "org", Cols: []int{1}, ParentCols: []int{0}},
		{Table: "pair", Cols: []int{2, 3}, ParentCols: []int{1, 0}},
		{Table: "org", Cols: []int{4}, ParentCols: []int{0}}, // second FK to the same table
	}
	row := []coltype.Value{i64(1), i64(10), txt("k"), i64(5), i64(10)}
	comps, err := Compensations(Op{Kind: Upsert, Stamp: s, Set: []int{0}, Values: row[:1]}, row, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 2 {
		t.Fatalf("want 2 (org 10 once, pair (k,5)), got %+v", comps)
	}
	if comps[1].Table != "pair" || !slices.Equal(comps[1].Cols, []int{1, 0}) ||
		!comps[1].Key[0].Equal(txt("k")) || !comps[1].Key[1].Equal(i64(5)) {
		t.Fatalf("composite key: %+v", comps[1])
	}
	if o := comps[0].Touch(tags(st(1, "a"))); o.Kind != Touch || o.Stamp != s || len(o.Seen) != 1 || o.Validate() != nil {
		t.Fatalf("Touch = %+v", o)
	}

	// NULL in any key column references nothing (MATCH SIMPLE).
	row2 := []coltype.Value{i64(1), null, txt("k"), null, null}
	comps, err = Compensations(Op{Kind: Touch, Stamp: s}, row2, refs)
	if err != nil || len(comps) != 0 {
		t.Fatalf("NULL keys: %+v, %v", comps, err)
	}
	// A delete re-asserts nothing.
	if comps, err := Compensations(del(s, nil), row, refs); comps != nil || err != nil {
		t.Fatalf("delete: %+v, %v", comps, err)
	}
	// Refs that do not fit the row.
	for _, bad := range [][]Ref{
		{{Table: "x", Cols: []int{5}, ParentCols: []int{0}}},
		{{Table: "x", Cols: []int{-1}, ParentCols: []int{0}}},
		{{Table: "x", Cols: []int{0, 1}, ParentCols: []int{0}}},
		{{Table: "x"}},
	} {
		if _, err := Compensations(insert(s, nil, row...), row, bad); err == nil {
			t.Errorf("no error for %+v", bad)
		}
	}
}

// Compensation is transitive: a grandchild insert touches the child, whose
// Touch touches the grandparent; a concurrent delete of the grandparent and
// the child (cascade) then leaves both alive.
func TestCompensationTransitive(t *testing.T) {
	g1, c1 := st(1, "a"), st(2, "a")
	grand := applyAll(Row{}, insert(g1, nil, i64(1)))          // org(id)
	child := applyAll(Row{}, insert(c1, nil, i64(10), i64(1))) // project(id, org_id)
	projectRefs := []Ref{{Table: "org", Cols: []int{1}, ParentCols: []int{0}}}
	issueRefs := []Ref{{Table: "project", Cols: []int{1}, ParentCols: []int{0}}}

	s := st(5, "b")
	issue := insert(s, nil, i64(100), i64(10))
	comps, _ := Compensations(issue, issue.Values, issueRefs)
	if len(comps) != 1 {
		t.Fatal(comps)
	}
	touchChild := comps[0].Touch(child.Live())
	comps2, _ := Compensations(touchChild, child.Values, projectRefs)
	if len(comps2) != 1 || comps2[0].Table != "org" || comps2[0].Stamp != s {
		t.Fatal(comps2)
	}
	touchGrand := comps2[0].Touch(grand.Live())

	// Replica a deletes org 1 and (cascade) project 10 at HLC 4.
	grandA := Apply(grand, del(st(4, "a"), grand.Live()))
	childA := Apply(child, del(st(4, "a"), child.Live()))
	if grandA.Exists() || childA.Exists() {
		t.Fatal("cascade delete did not delete")
	}
	if !Apply(grandA, touchGrand).Exists() || !Apply(childA, touchChild).Exists() {
		t.Fatal("transitive compensation did not keep the ancestors alive")
	}
}

// A transaction that inserts a parent and a child: the caller should skip
// the compensation for the parent it wrote itself, but if it does not, the
// Touch, written against the state that already holds the transaction's
// tag, must not retire that tag.
func TestTouchNeverRetiresItsOwnTag(t *testing.T) {
	s := st(5, "a")
	parent := Apply(Row{}, insert(s, nil, i64(1)))
	comps, _ := Compensations(insert(s, nil, i64(9), i64(1)), []coltype.Value{i64(9), i64(1)},
		[]Ref{{Table: "p", Cols: []int{1}, ParentCols: []int{0}}})
	o := comps[0].Touch(parent.Live()) // Seen = {s}
	if o.Validate() == nil {
		t.Error("Validate accepted an op that saw its own tag")
	}
	got := Apply(parent, o)
	if !got.Exists() || !Equal(got, parent) {
		t.Fatalf("touch changed the parent: %s -> %s", rowString(parent), rowString(got))
	}
	// A Delete in the same transaction is the net effect: it removes the tag.
	if Apply(parent, del(s, tags(s))).Exists() {
		t.Fatal("delete did not remove the tag")
	}
}

func TestValidate(t *testing.T) {
	s := st(5, "a")
	good := []Op{
		insert(s, tags(st(1, "b"), st(5, "")), i64(1), null),
		del(s, tags(st(4, "z"))),
		touch(s, nil),
		{Kind: Upsert, Stamp: s, Set: []int{MaxColumns - 1}, Values: []coltype.Value{null}},
	}
	for _, o := range good {
		if err := o.Validate(); err != nil {
			t.Errorf("%s: %v", opString(o), err)
		}
	}
	bad := []Op{
		{Kind: 0, Stamp: s},
		{Kind: 9, Stamp: s},
		{Kind: Touch, Stamp: Stamp{HLC: 1}},
		{Kind: Touch, Stamp: Stamp{Origin: "a"}},
		{Kind: Upsert, Stamp: s, Set: []int{0}},
		{Kind: Upsert, Stamp: s, Set: []int{0, 0}, Values: []coltype.Value{null, null}},
		{Kind: Upsert, Stamp: s, Set: []int{-1}, Values: []coltype.Value{null}},
		{Kind: Upsert, Stamp: s, Set: []int{MaxColumns}, Values: []coltype.Value{null}},
		del(s, tags(st(5, "b"))), // saw a tag newer than itself
		del(s, tags(s)),
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: no error", opString(o))
		}
	}
}
