package merge

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
)

var (
	flagSeed  = flag.Uint64("merge.seed", 0, "base seed of the property tests (0: from the time)")
	flagCases = flag.Int("merge.cases", 0, "cases per property test (0: default)")
)

// testSeed returns the base seed of a property test and logs it on failure.
func testSeed(t testing.TB) uint64 {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("base seed %d: rerun with -merge.seed=%d", seed, seed)
		}
	})
	return seed
}

func numCases(def int) int {
	if *flagCases > 0 {
		return *flagCases
	}
	if testing.Short() {
		return def / 10
	}
	return def
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// ---- small constructors for the scenario tests ----

func st(ms int64, origin string) Stamp { return Stamp{HLC: MakeHLC(ms, 0), Origin: origin} }

func i64(v int64) coltype.Value  { return coltype.Value{Kind: coltype.Integer, I: v} }
func txt(s string) coltype.Value { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }

var null = coltype.Value{}

// insert is an Upsert of every column.
func insert(s Stamp, seen []Stamp, vals ...coltype.Value) Op {
	set := make([]int, len(vals))
	for i := range set {
		set[i] = i
	}
	return Op{Kind: Upsert, Stamp: s, Set: set, Values: vals, Seen: seen}
}

// update writes column col.
func update(s Stamp, seen []Stamp, col int, v coltype.Value) Op {
	return Op{Kind: Upsert, Stamp: s, Set: []int{col}, Values: []coltype.Value{v}, Seen: seen}
}

func del(s Stamp, seen []Stamp) Op   { return Op{Kind: Delete, Stamp: s, Seen: seen} }
func touch(s Stamp, seen []Stamp) Op { return Op{Kind: Touch, Stamp: s, Seen: seen} }
func tags(s ...Stamp) []Stamp        { return s }

func applyAll(r Row, ops ...Op) Row {
	for _, o := range ops {
		r = Apply(r, o)
	}
	return r
}

// permutations calls f with every permutation of ops (n! of them).
func permutations(ops []Op, f func([]Op)) {
	p := slices.Clone(ops)
	var rec func(k int)
	rec = func(k int) {
		if k == len(p) {
			f(p)
			return
		}
		for i := k; i < len(p); i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
}

func valueString(v coltype.Value) string {
	switch v.Kind {
	case coltype.Null:
		return "NULL"
	case coltype.Integer:
		return fmt.Sprint(v.I)
	case coltype.Real:
		return fmt.Sprintf("%g(%#x)", v.F, math.Float64bits(v.F))
	case coltype.Text:
		return fmt.Sprintf("%q", v.B)
	case coltype.Blob:
		return fmt.Sprintf("x'%x'", v.B)
	}
	return fmt.Sprintf("kind%d", v.Kind)
}

func rowString(r Row) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range r.Width() {
		v, s := r.col(i)
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s@%s", valueString(v), stampShort(s))
	}
	b.WriteString(" adds[")
	for i, s := range r.Adds {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(stampShort(s))
	}
	b.WriteString("] removes[")
	for i, s := range r.Removes {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(stampShort(s))
	}
	b.WriteString("]}")
	return b.String()
}

func stampShort(s Stamp) string {
	if s.IsZero() {
		return "0"
	}
	if s.HLC.Logical() == 0 {
		return fmt.Sprintf("%d%s", s.HLC.Millis(), s.Origin)
	}
	return fmt.Sprintf("%d.%d%s", s.HLC.Millis(), s.HLC.Logical(), s.Origin)
}

func opString(o Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %s", o.Kind, stampShort(o.Stamp))
	if o.Kind == Upsert {
		b.WriteString(" set{")
		for k, i := range o.Set {
			if k > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%d=%s", i, valueString(o.value(k)))
		}
		b.WriteString("}")
	}
	b.WriteString(" seen[")
	for i, s := range o.Seen {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(stampShort(s))
	}
	b.WriteString("]")
	return b.String()
}

func opsString(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString("\n\t")
		b.WriteString(opString(o))
	}
	return b.String()
}

// ---- random generation ----

type gen struct {
	r       *rand.Rand
	origins []string
}

func newGen(seed uint64) *gen {
	return &gen{r: newRand(seed), origins: []string{"a", "b", "c", "pg:1", ""}}
}

// value draws from a small domain, so equal values are common, with the
// cases Equal must get right: -0 vs 0, NaN bits, nil vs empty bytes.
func (g *gen) value() coltype.Value {
	switch g.r.IntN(6) {
	case 0:
		return coltype.Value{}
	case 1:
		return coltype.Value{Kind: coltype.Integer, I: int64(g.r.IntN(4)) - 1}
	case 2:
		fs := []float64{0, math.Copysign(0, -1), 1.5, math.NaN(), math.Inf(1)}
		return coltype.Value{Kind: coltype.Real, F: fs[g.r.IntN(len(fs))]}
	case 3:
		ss := [][]byte{nil, {}, []byte("a"), []byte("b")}
		return coltype.Value{Kind: coltype.Text, B: ss[g.r.IntN(len(ss))]}
	case 4:
		ss := [][]byte{nil, {}, {0}, {0xff, 1}}
		return coltype.Value{Kind: coltype.Blob, B: ss[g.r.IntN(len(ss))]}
	default:
		// Garbage in the fields that do not belong to the Kind.
		return coltype.Value{Kind: coltype.Null, I: int64(g.r.IntN(3)), B: []byte("x")}
	}
}

// stamp draws from a small range, so equal HLCs (ties broken by origin)
// and equal stamps are common.
func (g *gen) stamp() Stamp {
	if g.r.IntN(20) == 0 {
		return Stamp{}
	}
	return Stamp{HLC: MakeHLC(int64(g.r.IntN(6)), uint16(g.r.IntN(2))), Origin: g.origins[g.r.IntN(len(g.origins))]}
}

// set returns a random set of stamps (sorted, unique) from pool and fresh
// draws; unsorted with duplicates if messy.
func (g *gen) set(pool []Stamp, max int, messy bool) []Stamp {
	n := g.r.IntN(max + 1)
	var s []Stamp
	for range n {
		if len(pool) > 0 && g.r.IntN(4) != 0 {
			s = append(s, pool[g.r.IntN(len(pool))])
		} else {
			s = append(s, g.stamp())
		}
	}
	if messy {
		return s
	}
	return asSet(s)
}

// row returns an arbitrary state (not necessarily reachable by ops).
func (g *gen) row(width int) Row {
	var r Row
	if width > 0 || g.r.IntN(2) == 0 {
		r.Values = make([]coltype.Value, width)
		r.Cols = make([]Stamp, width)
	}
	for i := range width {
		r.Values[i] = g.value()
		r.Cols[i] = g.stamp()
	}
	if g.r.IntN(8) == 0 && width > 0 {
		r.Values = r.Values[:g.r.IntN(width)] // ragged: Values shorter than Cols
	}
	r.Adds = g.set(nil, 5, false)
	r.Removes = g.set(r.Adds, 5, false)
	return r
}

// ops returns n ops with unique stamps over the given width (an Upsert may
// set columns up to width+1: the schema grew). Seen sets are drawn from the
// tags of the other ops (and the occasional foreign tag), in any order.
// With unique=false stamps may repeat (ties with different values).
func (g *gen) ops(n, width int, unique bool) []Op {
	var stamps []Stamp
	used := map[Stamp]bool{}
	for len(stamps) < n {
		s := g.stamp()
		if s.IsZero() && unique {
			continue
		}
		if unique && used[s] {
			continue
		}
		used[s] = true
		stamps = append(stamps, s)
	}
	ops := make([]Op, n)
	for k := range ops {
		o := Op{Stamp: stamps[k]}
		switch g.r.IntN(5) {
		case 0, 1, 2:
			o.Kind = Upsert
			cols := g.r.Perm(width + 1)[:g.r.IntN(width+1)+1]
			if g.r.IntN(3) == 0 {
				cols = cols[:1]
			}
			for _, c := range cols {
				if c == width && g.r.IntN(2) == 0 {
					continue
				}
				o.Set = append(o.Set, c)
				o.Values = append(o.Values, g.value())
			}
		case 3:
			o.Kind = Delete
		default:
			o.Kind = Touch
		}
		o.Seen = g.set(stamps, 3, g.r.IntN(6) == 0)
		ops[k] = o
	}
	return ops
}
