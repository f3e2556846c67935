package merge

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// ---- helpers ----

func mustCanon(t testing.TB, s string) string {
	t.Helper()
	if s == "" {
		return ""
	}
	c, err := CanonicalJSON([]byte(s))
	if err != nil {
		t.Fatalf("canonical %s: %v", s, err)
	}
	return string(c)
}

// jwrite is a replica writing doc new over its state: the per-path changes
// (DiffJSON of what it sees and what it wants), turned into a delta against
// its own state (it saw every live tag).
func jwrite(t testing.TB, d Doc, s Stamp, new string) Doc {
	t.Helper()
	var nb []byte
	if new != "" {
		nb = []byte(new)
	}
	ch, err := DiffJSON(d.Render(), nb)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := DocDelta(d, s, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	return delta
}

func jchanges(t testing.TB, d Doc, s Stamp, ch ...JSONChange) Doc {
	t.Helper()
	delta, err := DocDelta(d, s, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	return delta
}

func setc(v string, path ...string) JSONChange { return JSONChange{Path: path, Value: []byte(v)} }
func delc(path ...string) JSONChange           { return JSONChange{Path: path, Delete: true} }

func render(d Doc) string { return string(d.Render()) }

// ---- scenarios ----

func TestDocConcurrentKeys(t *testing.T) {
	base := jwrite(t, Doc{}, st(1, "a"), `{"title":"t","n":1}`)
	// A (offline) sets x, B sets y, plain SQL sets z, all against base.
	a := jchanges(t, base, st(3, "a"), setc(`1`, "x"))
	b := jwrite(t, base, st(2, "b"), `{"title":"t","n":1,"y":[1,2]}`)
	pg := jchanges(t, base, st(4, "pg:1"), setc(`"z"`, "meta", "z"))
	want := mustCanon(t, `{"title":"t","n":1,"x":1,"y":[1,2],"meta":{"z":"z"}}`)
	for _, order := range [][]Doc{{base, a, b, pg}, {pg, b, a, base}, {b, base, pg, a, a}} {
		var d Doc
		for _, x := range order {
			d = MergeDocs(d, x)
		}
		if got := render(d); got != want {
			t.Errorf("got %s want %s", got, want)
		}
	}
}

func TestDocDeleteVsUpdate(t *testing.T) {
	base := jwrite(t, Doc{}, st(1, "a"), `{"k":{"v":1,"w":2},"o":0}`)
	// A deletes k; B concurrently sets k.v = 5, with an older HLC than the
	// delete. B did not see the delete: k survives, with B's write only
	// (A's delete removed the versions it saw, k.w among them).
	del := jwrite(t, base, st(5, "a"), `{"o":0}`)
	upd := jwrite(t, base, st(3, "b"), `{"k":{"v":5,"w":2},"o":0}`)
	d := MergeDocs(MergeDocs(base, del), upd)
	if got, want := render(d), mustCanon(t, `{"k":{"v":5},"o":0}`); got != want {
		t.Errorf("update vs unseen delete: got %s want %s", got, want)
	}
	if !DocEqual(d, MergeDocs(upd, MergeDocs(del, base))) {
		t.Error("not order independent")
	}
	// A delete that has seen B's update removes the key.
	del2 := jwrite(t, d, st(6, "a"), `{"o":0}`)
	if got, want := render(MergeDocs(d, del2)), mustCanon(t, `{"o":0}`); got != want {
		t.Errorf("delete after seeing update: got %s want %s", got, want)
	}
	// A leaf: delete of a scalar key vs concurrent set of it.
	dk := jchanges(t, base, st(7, "a"), delc("o"))
	sk := jchanges(t, base, st(6, "b"), setc(`9`, "o"))
	if got, want := render(MergeDocs(MergeDocs(base, dk), sk)), mustCanon(t, `{"k":{"v":1,"w":2},"o":9}`); got != want {
		t.Errorf("scalar: got %s want %s", got, want)
	}
}

func TestDocLWWAndArrays(t *testing.T) {
	base := jwrite(t, Doc{}, st(1, "a"), `{"tags":["a"],"n":1}`)
	a := jwrite(t, base, st(2, "a"), `{"tags":["a","b"],"n":2}`)
	b := jwrite(t, base, st(3, "b"), `{"tags":["c"],"n":1}`)
	// Arrays are whole values: the later write wins; n only changed by A.
	if got, want := render(MergeDocs(MergeDocs(base, a), b)), mustCanon(t, `{"tags":["c"],"n":2}`); got != want {
		t.Errorf("got %s want %s", got, want)
	}
	// Type conflict: A makes n an object, B (later) a string: B wins whole.
	oa := jchanges(t, base, st(4, "a"), setc(`1`, "n", "x"))
	ob := jchanges(t, base, st(5, "b"), setc(`"s"`, "n"))
	if got, want := render(MergeDocs(oa, MergeDocs(base, ob))), mustCanon(t, `{"tags":["a"],"n":"s"}`); got != want {
		t.Errorf("got %s want %s", got, want)
	}
	// NULL column vs concurrent key write: the key write keeps the document.
	null := jwrite(t, base, st(6, "a"), "")
	k := jchanges(t, base, st(5, "c"), setc(`true`, "k"))
	if got, want := render(MergeDocs(MergeDocs(base, null), k)), mustCanon(t, `{"k":true}`); got != want {
		t.Errorf("got %s want %s", got, want)
	}
	if got := render(MergeDocs(base, null)); got != "" {
		t.Errorf("NULL: got %s", got)
	}
}

func TestDocEncode(t *testing.T) {
	forCases(t, 2000, func(t *testing.T, g *gen) bool {
		d := g.doc()
		b := AppendDoc(nil, d)
		got, err := DecodeDoc(b)
		if err != nil || !DocEqual(got, d) {
			t.Errorf("round trip of %s: %v %s", docString(d), err, docString(got))
			return false
		}
		for i := range len(b) {
			_, _ = DecodeDoc(b[:i]) // no panic
		}
		return true
	})
}

func FuzzDecodeDoc(f *testing.F) {
	f.Add(AppendDoc(nil, Doc{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDoc(b)
		if err == nil && !DocEqual(d, mustDecode(t, AppendDoc(nil, d))) {
			t.Fatal("re-encoding differs")
		}
	})
}

func mustDecode(t *testing.T, b []byte) Doc {
	d, err := DecodeDoc(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ---- generators ----

var docKeys = []string{"a", "b", "c", "long key"}

func (g *gen) jsonValue(depth int) string {
	switch g.r.IntN(7) {
	case 0:
		return "null"
	case 1:
		return fmt.Sprint(g.r.IntN(5))
	case 2:
		return fmt.Sprintf("%q", docKeys[g.r.IntN(len(docKeys))])
	case 3:
		return fmt.Sprintf("[%d,%d]", g.r.IntN(3), g.r.IntN(3))
	default:
		if depth >= 3 {
			return "true"
		}
		var parts []string
		for _, k := range docKeys {
			if g.r.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf("%q:%s", k, g.jsonValue(depth+1)))
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

func (g *gen) path() []string {
	p := []string{}
	for range g.r.IntN(4) {
		p = append(p, docKeys[g.r.IntN(len(docKeys))])
	}
	return p
}

func (g *gen) changes() []JSONChange {
	var ch []JSONChange
	for range 1 + g.r.IntN(3) {
		p := g.path()
		if g.r.IntN(3) == 0 {
			ch = append(ch, JSONChange{Path: p, Delete: true})
		} else {
			ch = append(ch, JSONChange{Path: p, Value: []byte(g.jsonValue(len(p)))})
		}
	}
	return ch
}

// doc returns an arbitrary state: random entries on a small pool of paths,
// registers and tag sets (ties with different values included).
func (g *gen) doc() Doc {
	var d Doc
	pool := []Stamp{st(1, "a"), st(1, "b"), st(2, "a"), st(3, "c"), st(4, "a")}
	for range g.r.IntN(6) {
		e := DocEntry{Path: EncodePath(g.path()...)}
		if g.r.IntN(4) > 0 {
			e.Stamp = pool[g.r.IntN(len(pool))]
			if g.r.IntN(2) == 0 {
				e.Value = []byte(g.jsonValue(3))
			}
		}
		e.Adds = g.set(pool, 3, false)
		e.Removes = g.set(pool, 3, false)
		d.Entries = append(d.Entries, e)
	}
	return d
}

func docString(d Doc) string {
	var b strings.Builder
	for _, e := range d.sorted() {
		fmt.Fprintf(&b, "[%q %s=%s +%v -%v] ", DecodePath(e.Path), e.Stamp, e.Value, e.Adds, e.Removes)
	}
	return b.String()
}

// ---- properties ----

// MergeDocs is a join on arbitrary states.
func TestPropertyDocLattice(t *testing.T) {
	forCases(t, 10000, func(t *testing.T, g *gen) bool {
		x, y, z := g.doc(), g.doc(), g.doc()
		fail := func(what string) bool {
			t.Errorf("%s\nx=%s\ny=%s\nz=%s", what, docString(x), docString(y), docString(z))
			return false
		}
		xy := MergeDocs(x, y)
		if !DocEqual(xy, MergeDocs(y, x)) {
			return fail("not commutative")
		}
		if !DocEqual(MergeDocs(xy, z), MergeDocs(x, MergeDocs(y, z))) {
			return fail("not associative")
		}
		if !DocEqual(MergeDocs(x, x), x) {
			return fail("not idempotent")
		}
		if !DocEqual(MergeDocs(x, xy), xy) {
			return fail("not absorbing")
		}
		if render(MergeDocs(xy, z)) != render(MergeDocs(MergeDocs(z, y), x)) {
			return fail("renders differ")
		}
		return true
	})
}

// A writer sees exactly its own write: merging its delta into the state it
// wrote against renders what applying the changes to the rendered document
// gives (the SQLite/Postgres JSON functions' meaning), and DiffJSON's
// changes rebuild the new document.
func TestPropertyDocIntent(t *testing.T) {
	forCases(t, 5000, func(t *testing.T, g *gen) bool {
		d := g.simDoc(4)
		ch := g.changes()
		before := d.Render()
		want, err := ApplyJSONChanges(before, ch)
		if err != nil {
			t.Fatal(err)
		}
		delta, err := DocDelta(d, st(100, "w"), ch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := MergeDocs(d, delta).Render(); string(got) != string(want) {
			t.Errorf("state %s\nrendered %s\nchanges %v\ngot  %s\nwant %s", docString(d), before, ch, got, want)
			return false
		}
		diff, err := DiffJSON(before, want)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := ApplyJSONChanges(before, diff); string(got) != string(want) {
			t.Errorf("DiffJSON(%s, %s) = %v rebuilds %s", before, want, diff, got)
			return false
		}
		delta2, _ := DocDelta(d, st(100, "w"), diff, nil)
		if got := MergeDocs(d, delta2).Render(); string(got) != string(want) {
			t.Errorf("diff changes: state %s changes %v got %s want %s", docString(d), diff, got, want)
			return false
		}
		return true
	})
}

// simDoc returns a state reached by n writes of random changes.
func (g *gen) simDoc(n int) Doc {
	var d Doc
	for i := range g.r.IntN(n + 1) {
		delta, _ := DocDelta(d, st(int64(i+1), "s"), g.changes(), nil)
		d = MergeDocs(d, delta)
	}
	return d
}

// jop is one write in the simulation: its stamp, its changes and the
// stamps of the writes its author had merged (its causal past).
type jop struct {
	s     Stamp
	ch    []JSONChange
	seen  map[Stamp]bool
	delta Doc
}

// Replicas with skewed clocks write random changes against their own state
// and exchange deltas and whole states in random orders, repeated: all
// converge, to the document a reference model computes from the writes and
// their causal pasts alone (no tags): a key path exists iff some write at
// or below it (or of a value containing it) is not in the causal past of a
// later set or delete covering it; each path holds the greatest-stamped
// write to it.
func TestPropertyDocModel(t *testing.T) {
	forCases(t, 3000, func(t *testing.T, g *gen) bool {
		n := 2 + g.r.IntN(3)
		type replica struct {
			d     Doc
			clock Clock
			past  map[Stamp]bool
		}
		reps := make([]*replica, n)
		for i := range reps {
			skew := int64(g.r.IntN(50))
			ms := int64(1000)
			reps[i] = &replica{past: map[Stamp]bool{}}
			reps[i].clock.Now = func() time.Time { ms++; return time.UnixMilli(ms + skew) }
		}
		var ops []jop
		for range 2 + g.r.IntN(10) {
			r := reps[g.r.IntN(n)]
			switch g.r.IntN(3) {
			case 0: // write
				s := Stamp{HLC: r.clock.Next(), Origin: fmt.Sprint("r", slices.Index(reps, r))}
				// As capture does: the net per-path changes between the
				// document the replica holds and the one it writes.
				before := r.d.Render()
				after, err := ApplyJSONChanges(before, g.changes())
				if err != nil {
					t.Fatal(err)
				}
				ch, err := DiffJSON(before, after)
				if err != nil {
					t.Fatal(err)
				}
				o := jop{s: s, ch: ch, seen: maps.Clone(r.past)}
				if o.delta, err = DocDelta(r.d, s, o.ch, nil); err != nil {
					t.Fatal(err)
				}
				r.d = MergeDocs(r.d, o.delta)
				r.past[s] = true
				ops = append(ops, o)
			case 1: // receive one delta
				if len(ops) > 0 {
					o := ops[g.r.IntN(len(ops))]
					r.d = MergeDocs(r.d, o.delta)
					r.past[o.s] = true
					r.clock.Observe(o.s.HLC)
				}
			default: // receive a whole state
				q := reps[g.r.IntN(n)]
				r.d = MergeDocs(r.d, q.d)
				for s := range q.past {
					r.past[s] = true
					r.clock.Observe(s.HLC)
				}
			}
		}
		var want Doc
		for _, o := range ops {
			want = MergeDocs(want, o.delta)
		}
		for _, r := range reps {
			for _, o := range ops {
				r.d = MergeDocs(r.d, o.delta)
			}
			if !DocEqual(r.d, want) {
				t.Errorf("replica did not converge:\n%s\nwant\n%s", docString(r.d), docString(want))
				return false
			}
		}
		if got, model := render(want), modelRender(ops); got != model {
			var b strings.Builder
			for _, o := range ops {
				fmt.Fprintf(&b, "%s %v past %v\n", o.s, o.ch, slices.Collect(maps.Keys(o.seen)))
			}
			t.Errorf("ops:\n%sgot   %s\nmodel %s", b.String(), got, model)
			return false
		}
		return true
	})
}

// modelRender computes the document from the writes alone.
func modelRender(ops []jop) string { return render(modelDoc(ops)) }

// modelDoc computes, from the writes and their causal pasts, each path's
// register (the greatest-stamped write to it) and whether it exists, as a
// Doc with a placeholder tag on the existing paths.
func modelDoc(ops []jop) Doc {
	type reg struct {
		s   Stamp
		v   []byte
		set bool
	}
	regs := map[string]reg{}
	adds := map[string][]Stamp{} // path -> writes asserting it
	write := func(p string, s Stamp, v []byte) {
		if r := regs[p]; !r.set || compareRegister(s, v, r.s, r.v) > 0 {
			regs[p] = reg{s, v, true}
		}
		adds[p] = append(adds[p], s)
	}
	var expand func(path []string, x any, s Stamp)
	expand = func(path []string, x any, s Stamp) {
		if m, ok := x.(map[string]any); ok && len(path) < MaxJSONDepth {
			write(EncodePath(path...), s, nil)
			for k, v := range m {
				expand(append(slices.Clip(path), k), v, s)
			}
			return
		}
		write(EncodePath(path...), s, marshalJSON(x))
	}
	for _, o := range ops {
		for _, c := range o.ch {
			if c.Delete {
				continue
			}
			for i := range c.Path {
				write(EncodePath(c.Path[:i]...), o.s, nil)
			}
			x, _ := parseJSON(c.Value)
			expand(c.Path, x, o.s)
		}
	}
	// The objects each writer saw: the model of its causal past.
	views := make([]map[string]bool, len(ops))
	view := func(i int) map[string]bool {
		if views[i] == nil {
			var past []jop
			for _, o := range ops {
				if ops[i].seen[o.s] {
					past = append(past, o)
				}
			}
			views[i] = visibleObjects(modelDoc(past).sorted())
		}
		return views[i]
	}
	// w's assertion of p is removed by a write x that saw w and
	//   - set or deleted p or an ancestor of p (replacing the subtree), or
	//   - set a path below p (retiring x's view of p; x's own tag asserts p),
	//   - set a path below an ancestor a of p that x did not see as an
	//     object (a becomes a new object: what x did not see there goes).
	removed := func(p string, w Stamp) bool {
		for i, x := range ops {
			if !x.seen[w] {
				continue
			}
			for _, c := range x.ch {
				q := EncodePath(c.Path...)
				if under(p, q) {
					return true
				}
				if c.Delete {
					continue
				}
				if under(q, p) {
					return true
				}
				for k := range c.Path {
					a := EncodePath(c.Path[:k]...)
					if under(p, a) && !view(i)[a] {
						return true
					}
				}
			}
		}
		return false
	}
	live := func(p string) bool {
		for _, w := range adds[p] {
			if !removed(p, w) {
				return true
			}
		}
		return false
	}
	var d Doc
	for p, r := range regs {
		e := DocEntry{Path: p, Stamp: r.s, Value: r.v}
		if live(p) {
			e.Adds = []Stamp{{HLC: 1, Origin: "live"}}
		}
		d.Entries = append(d.Entries, e)
	}
	return d
}

func TestJSONChangesWire(t *testing.T) {
	forCases(t, 2000, func(t *testing.T, g *gen) bool {
		ch := g.changes()
		for i := range ch {
			if !ch[i].Delete {
				ch[i].Value, _ = CanonicalJSON(ch[i].Value)
			}
		}
		got, err := DecodeJSONChanges(AppendJSONChanges(nil, ch))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(ch) {
			t.Errorf("%v: got %v, %v", ch, got, err)
			return false
		}
		return true
	})
	for _, bad := range []string{`{}`, `[["set",["a"]]]`, `[["del",null]]`, `[["put",["a"],1]]`, `[["set",["a"],{]]`} {
		if _, err := DecodeJSONChanges([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// Compact at a point every replica has passed keeps the document and is
// invisible to later writes: writing on the compacted and on the full
// state gives the same document. Tombstones (deleted keys) are dropped.
func TestPropertyDocCompact(t *testing.T) {
	forCases(t, 3000, func(t *testing.T, g *gen) bool {
		d := g.simDoc(6)
		full := d
		var c Doc
		c.Entries = slices.Clone(d.Entries)
		c.Compact(st(1000, ""))
		if render(c) != render(full) {
			t.Errorf("compact changed %s to %s", render(full), render(c))
			return false
		}
		for _, e := range c.Entries {
			if !e.exists() && len(e.Removes) == 0 && e.Stamp.HLC <= st(1000, "").HLC {
				t.Errorf("tombstone kept: %s", docString(c))
				return false
			}
			if len(e.Removes) > 0 {
				t.Errorf("removed tags kept: %s", docString(c))
				return false
			}
		}
		for i := range 3 {
			ch := g.changes()
			s := st(int64(2000+i), "later")
			df, _ := DocDelta(full, s, ch, nil)
			dc, _ := DocDelta(c, s, ch, nil)
			full, c = MergeDocs(full, df), MergeDocs(c, dc)
			if render(c) != render(full) {
				t.Errorf("after %v: compacted %s, full %s", ch, render(c), render(full))
				return false
			}
		}
		return true
	})
}

// DiffJSON, as the client uses it on a local update of a column merged per
// key (the old and new values of the row): leaf paths that changed are
// set, removed keys deleted, arrays and type changes set whole; equal
// documents (whatever their formatting) give nothing.
func TestDiffJSONScenarios(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		{`{"a": {"b": 1, "c": 2}}`, `{"a":{"b":1,"c":3}}`, `[["set",["a","c"],3]]`},
		{`{"a": {"b": 1}, "t": "x"}`, `{"a": {"b": 1}}`, `[["del",["t"]]]`},
		{`{"a": [1, 2]}`, `{"a": [1, 3]}`, `[["set",["a"],[1,3]]]`},
		{`{"a": {"b": 1}}`, `{"a": 5}`, `[["set",["a"],5]]`},
		{`{"a": 5}`, `{"a": {"b": 1}}`, `[["set",["a"],{"b":1}]]`},
		{`{"b": 1, "a": 1}`, `{ "a":1,"b":1 }`, `[]`},
		{`[1]`, `[1, 2]`, `[["set",[],[1,2]]]`},
		{`null`, `{"a": 1}`, `[["set",[],{"a":1}]]`},
		{`{"a": 1}`, `{}`, `[["del",["a"]]]`},
		{`{}`, `{"k": {"x": {"y": true}}}`, `[["set",["k"],{"x":{"y":true}}]]`},
		{`{"a\"b": 1}`, `{"a\"b": 2}`, `[["set",["a\"b"],2]]`},
		{"", `{"a": 1}`, `[["set",[],{"a":1}]]`}, // SQL NULL to a document
		{`{"a": 1}`, "", `[["del",[]]]`},         // and back
	} {
		var o, n []byte
		if c.old != "" {
			o = []byte(c.old)
		}
		if c.new != "" {
			n = []byte(c.new)
		}
		ch, err := DiffJSON(o, n)
		if err != nil {
			t.Fatalf("DiffJSON(%s, %s): %v", c.old, c.new, err)
		}
		if got := string(AppendJSONChanges(nil, ch)); got != c.want {
			t.Errorf("DiffJSON(%s, %s) = %s, want %s", c.old, c.new, got, c.want)
		}
	}
	if _, err := DiffJSON([]byte(`{"a":`), []byte(`{}`)); err == nil {
		t.Error("DiffJSON of a malformed old document: no error")
	}
}

// DiffJSON of any two documents (unrelated, unlike in
// TestPropertyDocIntent): applying the diff to old yields new (also
// through the wire form), the diff touches no path whose value is the
// same in both, and, applied over a third document (a concurrent writer's,
// as the client's rebase does), it leaves that document's keys the diff
// does not touch as they are.
func TestPropertyDiffJSON(t *testing.T) {
	forCases(t, 5000, func(t *testing.T, g *gen) bool {
		doc := func() []byte {
			if g.r.IntN(8) == 0 {
				return nil
			}
			return []byte(g.jsonValue(0))
		}
		old, new := doc(), doc()
		diff, err := DiffJSON(old, new)
		if err != nil {
			t.Fatal(err)
		}
		wire, err := DecodeJSONChanges(AppendJSONChanges(nil, diff))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ApplyJSONChanges(new, nil) // canonical
		for _, ch := range [][]JSONChange{diff, wire} {
			if got, err := ApplyJSONChanges(old, ch); err != nil || string(got) != string(want) {
				t.Errorf("DiffJSON(%s, %s) = %v: rebuilds %s (%v), want %s", old, new, diff, got, err, want)
				return false
			}
		}
		for _, c := range diff {
			if at(old, c.Path) == at(new, c.Path) {
				t.Errorf("DiffJSON(%s, %s) = %v: changes %v, equal in both", old, new, diff, c.Path)
				return false
			}
		}
		other := doc()
		rebased, err := ApplyJSONChanges(other, diff)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range docKeys {
			touched := false
			for _, c := range diff {
				if len(c.Path) == 0 || c.Path[0] == k {
					touched = true
				}
			}
			if !touched && isObject(other) && at(rebased, []string{k}) != at(other, []string{k}) {
				t.Errorf("diff %v over %s = %s: key %q changed", diff, other, rebased, k)
				return false
			}
		}
		return true
	})
}

// at returns the canonical JSON at path in doc, "<none>" if absent.
func at(doc []byte, path []string) string {
	if doc == nil {
		return "<none>"
	}
	x, err := parseJSON(doc)
	if err != nil {
		return "<bad>"
	}
	for _, k := range path {
		m, ok := x.(map[string]any)
		if !ok {
			return "<none>"
		}
		if x, ok = m[k]; !ok {
			return "<none>"
		}
	}
	return string(marshalJSON(x))
}

func isObject(doc []byte) bool { return len(doc) > 0 && doc[0] == '{' }
