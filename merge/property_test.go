package merge

import (
	"slices"
	"testing"

	"github.com/latticesync/lattice/coltype"
)

// Each property test runs thousands of seeded cases; a failure names the
// case's seed (rerun with -merge.seed=<base seed>; the case seed is base+i).

// forCases runs f for n cases with per-case seeds derived from the base
// seed, reporting the seed of the first failing case.
func forCases(t *testing.T, n int, f func(t *testing.T, g *gen) bool) {
	base := testSeed(t)
	for i := range numCases(n) {
		seed := base + uint64(i)
		if !f(t, newGen(seed)) {
			t.Fatalf("case seed %d (base %d, case %d) failed", seed, base, i)
		}
	}
}

// (a) Applying the ops in any order, any op any number of times, gives
// equal rows; so does merging their deltas in any grouping.
func TestPropertyOrderIndependent(t *testing.T) {
	forCases(t, 5000, func(t *testing.T, g *gen) bool {
		width := g.r.IntN(5)
		ops := g.ops(1+g.r.IntN(8), width, g.r.IntN(2) == 0)
		var start Row
		if g.r.IntN(3) == 0 {
			start = g.row(g.r.IntN(5))
		}
		want := applyAll(start, ops...)
		for range 4 {
			p := slices.Clone(ops)
			g.r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			for range g.r.IntN(3) { // re-deliveries
				p = slices.Insert(p, g.r.IntN(len(p)+1), ops[g.r.IntN(len(ops))])
			}
			if got := applyAll(start, p...); !Equal(got, want) {
				t.Errorf("ops %s\nfrom %s\nin order %s\ngive %s\nwant %s",
					opsString(ops), rowString(start), opsString(p), rowString(got), rowString(want))
				return false
			}
		}
		// Deltas merged as a random tree.
		states := []Row{start}
		for _, o := range ops {
			states = append(states, o.Delta(g.r.IntN(6)))
		}
		for len(states) > 1 {
			i := g.r.IntN(len(states) - 1)
			states[i] = Merge(states[i+1], states[i])
			states = slices.Delete(states, i+1, i+2)
		}
		if !Equal(states[0], want) {
			t.Errorf("ops %s\nmerged deltas %s\napplied ops %s", opsString(ops), rowString(states[0]), rowString(want))
			return false
		}
		return true
	})
}

// (b) Merge is commutative, associative and idempotent on arbitrary states
// (ragged widths, ties with different values, arbitrary tag sets).
func TestPropertyMergeLattice(t *testing.T) {
	forCases(t, 10000, func(t *testing.T, g *gen) bool {
		x, y, z := g.state(), g.state(), g.state()
		fail := func(what string, got, want Row) bool {
			t.Errorf("%s\nx=%s\ny=%s\nz=%s\ngot  %s\nwant %s", what, rowString(x), rowString(y), rowString(z), rowString(got), rowString(want))
			return false
		}
		xy := Merge(x, y)
		if yx := Merge(y, x); !Equal(xy, yx) {
			return fail("not commutative", xy, yx)
		}
		if l, r := Merge(xy, z), Merge(x, Merge(y, z)); !Equal(l, r) {
			return fail("not associative", l, r)
		}
		if xx := Merge(x, x); !Equal(xx, x) {
			return fail("not idempotent", xx, x)
		}
		if a := Merge(x, xy); !Equal(a, xy) {
			return fail("x ∨ (x ∨ y) != x ∨ y", a, xy)
		}
		if !isSet(xy.Adds) || !isSet(xy.Removes) || len(xy.Values) != len(xy.Cols) {
			return fail("result not canonical", xy, xy)
		}
		return true
	})
}

// state returns an arbitrary state or one reached by ops.
func (g *gen) state() Row {
	if g.r.IntN(2) == 0 {
		return g.row(g.r.IntN(5))
	}
	return applyAll(Row{}, g.ops(g.r.IntN(5), g.r.IntN(4), false)...)
}

// (c) Applying an op twice equals applying it once; Apply is Merge with the
// op's delta, for any op, valid or not.
func TestPropertyApply(t *testing.T) {
	forCases(t, 10000, func(t *testing.T, g *gen) bool {
		r := g.state()
		o := g.ops(1, g.r.IntN(5), false)[0]
		switch g.r.IntN(8) { // invalid ops too
		case 0:
			o.Kind = OpKind(g.r.IntN(6))
		case 1:
			o.Set = append(o.Set, []int{-1, MaxColumns, 1 << 40}[g.r.IntN(3)])
		case 2:
			if len(o.Set) > 0 {
				o.Set = append(o.Set, o.Set[0]) // duplicate column, missing value
			}
		}
		once := Apply(r, o)
		if twice := Apply(once, o); !Equal(once, twice) {
			t.Errorf("op %s on %s: once %s, twice %s", opString(o), rowString(r), rowString(once), rowString(twice))
			return false
		}
		if m := Merge(r, o.Delta(r.Width())); !Equal(once, m) {
			t.Errorf("op %s on %s: Apply %s, Merge with Delta %s", opString(o), rowString(r), rowString(once), rowString(m))
			return false
		}
		return true
	})
}

// (d) Exists and Live agree with a reference model of the OR-set: an
// Upsert's or Touch's tag is live iff no op of the set has it in Seen (a
// Delete removing it, or another Upsert/Touch retiring it). (e) Each column holds the value
// of the op with the greatest stamp that wrote it (NULL and the zero stamp
// if none did).
func TestPropertyModel(t *testing.T) {
	forCases(t, 10000, func(t *testing.T, g *gen) bool {
		width := g.r.IntN(5)
		ops := g.ops(1+g.r.IntN(10), width, true)
		p := slices.Clone(ops)
		g.r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
		got := applyAll(Row{}, p...)

		var live []Stamp
		for _, o := range ops {
			if o.Kind == Delete {
				continue
			}
			removed := slices.ContainsFunc(ops, func(q Op) bool {
				return slices.Contains(q.Seen, o.Stamp) && (q.Kind == Delete || q.Stamp != o.Stamp)
			})
			if !removed {
				live = append(live, o.Stamp)
			}
		}
		live = asSet(live)
		if got.Exists() != (len(live) > 0) || !setEqual(got.Live(), live) {
			t.Errorf("ops %s\nrow %s\nExists %v, Live %s; model live %s",
				opsString(ops), rowString(got), got.Exists(), rowString(Row{Adds: got.Live()}), rowString(Row{Adds: live}))
			return false
		}

		for c := range got.Width() {
			var wantV coltype.Value
			var wantS Stamp
			for _, o := range ops {
				if o.Kind != Upsert {
					continue
				}
				for k, i := range o.Set {
					if i == c && o.Stamp.Compare(wantS) > 0 {
						wantV, wantS = o.Values[k], o.Stamp
					}
				}
			}
			v, s := got.col(c)
			if s != wantS || !v.Equal(wantV) {
				t.Errorf("ops %s\nrow %s\ncolumn %d: %s@%s, want %s@%s", opsString(ops), rowString(got),
					c, valueString(v), stampShort(s), valueString(wantV), stampShort(wantS))
				return false
			}
		}
		return true
	})
}

// A simulation of replicas that write against their local state (Seen =
// Live, stamps from their own Clock, which observes what they receive), with
// skewed and jumping wall clocks, receiving each other's ops in random
// order with re-deliveries, and merging each other's full states. Once every
// replica has every op, all states are Equal and agree with the models; all
// generated ops are valid. Compacting everywhere at the newest HLC keeps
// them Equal and keeps Exists.
func TestPropertySimulation(t *testing.T) {
	forCases(t, 2000, func(t *testing.T, g *gen) bool {
		type replica struct {
			id    string
			wall  fakeWall
			clock Clock
			width int
			row   Row
			got   []bool // which ops of the log it applied
		}
		n := 2 + g.r.IntN(3)
		reps := make([]*replica, n)
		for i := range reps {
			r := &replica{id: string(rune('a' + i)), width: 1 + g.r.IntN(4)}
			r.wall.ms = 1000 + int64(g.r.IntN(50))
			r.clock = Clock{Now: r.wall.now, MaxDrift: -1}
			reps[i] = r
		}
		var log []Op
		receive := func(r *replica, k int) {
			r.clock.Observe(log[k].Stamp.HLC)
			r.row = Apply(r.row, log[k])
			r.got[k] = true
		}
		steps := 5 + g.r.IntN(40)
		for range steps {
			r := reps[g.r.IntN(n)]
			r.wall.ms += int64(g.r.IntN(7)) - 2 // jitters, sometimes backwards
			switch a := g.r.IntN(10); {
			case a < 4: // write
				o := Op{Stamp: Stamp{HLC: r.clock.Next(), Origin: r.id}, Seen: r.row.Live()}
				switch {
				case !r.row.Exists() && g.r.IntN(4) != 0: // insert
					o.Kind = Upsert
					for c := range r.width {
						o.Set = append(o.Set, c)
						o.Values = append(o.Values, g.value())
					}
				case r.row.Exists() && g.r.IntN(3) == 0:
					o.Kind = Delete
				case g.r.IntN(5) == 0:
					o.Kind = Touch
				default:
					o.Kind = Upsert
					for _, c := range g.r.Perm(r.width)[:1+g.r.IntN(r.width)] {
						o.Set = append(o.Set, c)
						o.Values = append(o.Values, g.value())
					}
				}
				if err := o.Validate(); err != nil {
					t.Errorf("generated op %s invalid: %v", opString(o), err)
					return false
				}
				log = append(log, o)
				for _, q := range reps {
					q.got = append(q.got, false)
				}
				receive(r, len(log)-1)
			case a < 8: // receive an op (maybe again)
				if len(log) > 0 {
					receive(r, g.r.IntN(len(log)))
				}
			default: // merge another replica's full state
				q := reps[g.r.IntN(n)]
				r.row = Merge(r.row, q.row)
				for k, ok := range q.got {
					if ok {
						r.clock.Observe(log[k].Stamp.HLC)
						r.got[k] = true
					}
				}
			}
		}
		// Deliver everything, in random order.
		for _, r := range reps {
			for _, k := range g.r.Perm(len(log)) {
				if !r.got[k] || g.r.IntN(4) == 0 {
					receive(r, k)
				}
			}
		}
		want := applyAll(Row{}, log...)
		for _, r := range reps {
			if !Equal(r.row, want) {
				t.Errorf("replica %s: %s\nwant %s\nlog %s", r.id, rowString(r.row), rowString(want), opsString(log))
				return false
			}
		}
		// Compaction once everything is everywhere.
		if len(log) > 0 {
			var stable Stamp
			for _, o := range log {
				if o.Stamp.Compare(stable) > 0 {
					stable = o.Stamp
				}
			}
			for _, r := range reps {
				r.row.Compact(stable)
				if !Equal(r.row, reps[0].row) || r.row.Exists() != want.Exists() || !setEqual(r.row.Live(), want.Live()) || len(r.row.Removes) != 0 {
					t.Errorf("after Compact(%s): %s\nbefore %s", stampShort(stable), rowString(r.row), rowString(want))
					return false
				}
			}
			// New writes after compaction still merge correctly.
			o := del(Stamp{HLC: reps[0].clock.Next(), Origin: reps[0].id}, reps[0].row.Live())
			a, b := Apply(reps[0].row, o), Apply(want, o)
			if a.Exists() || b.Exists() {
				t.Errorf("delete after compaction left the row: %s", rowString(a))
				return false
			}
		}
		return true
	})
}

// Compact keeps meaning on arbitrary states, and is a no-op below every tag.
func TestCompact(t *testing.T) {
	forCases(t, 5000, func(t *testing.T, g *gen) bool {
		r := applyAll(Row{}, g.ops(1+g.r.IntN(8), 3, true)...)
		c := r.Clone()
		stable := g.stamp()
		c.Compact(stable)
		if c.Exists() != r.Exists() || !setEqual(c.Live(), r.Live()) || !Equal(Row{Values: c.Values, Cols: c.Cols}, Row{Values: r.Values, Cols: r.Cols}) {
			t.Errorf("Compact(%s) changed meaning: %s -> %s", stampShort(stable), rowString(r), rowString(c))
			return false
		}
		for _, x := range c.Removes {
			if x.HLC <= stable.HLC {
				t.Errorf("Compact(%s) kept %s", stampShort(stable), stampShort(x))
				return false
			}
		}
		z := r.Clone()
		z.Compact(Stamp{})
		if r.Removes != nil && r.Removes[0].HLC > 0 && !Equal(z, r) {
			t.Errorf("Compact(0) changed %s to %s", rowString(r), rowString(z))
			return false
		}
		return true
	})
}
