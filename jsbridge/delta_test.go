package jsbridge

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/latticesync/lattice/client"
)

// applyDelta is the page's side of a live delta (web/src/lattice.ts).
func applyDelta(t *testing.T, prev []json.RawMessage, rows json.RawMessage) []json.RawMessage {
	t.Helper()
	var els []json.RawMessage
	if err := json.Unmarshal(rows, &els); err != nil {
		t.Fatalf("delta %s: %v", rows, err)
	}
	var out []json.RawMessage
	last := -1
	for _, e := range els {
		if e[0] == '[' {
			out = append(out, e)
			continue
		}
		var n int
		if err := json.Unmarshal(e, &n); err != nil {
			t.Fatalf("delta element %s: %v", e, err)
		}
		if n >= 0 {
			out = append(out, prev[n])
			last = n
			continue
		}
		for k := 1; k <= -n; k++ {
			out = append(out, prev[last+k])
		}
		last += -n
	}
	return out
}

func rowsOf(vals ...[]any) *client.Rows {
	return &client.Rows{Columns: []string{"id", "v"}, Values: vals}
}

func TestEncodeLive(t *testing.T) {
	r, delta, skip, m := encodeLive(nil, rowsOf([]any{int64(1), "a"}, []any{int64(2), "b"}, []any{int64(3), "c"}))
	if delta || skip || string(r.Rows) != `[[1,"a"],[2,"b"],[3,"c"]]` {
		t.Fatalf("first: delta %v skip %v %s", delta, skip, r.Rows)
	}
	// One row changed: the others are referred to by index, runs compressed.
	r, delta, _, m = encodeLive(m, rowsOf([]any{int64(1), "a"}, []any{int64(2), "B"}, []any{int64(3), "c"}))
	if !delta || string(r.Rows) != `[0,[2,"B"],2]` {
		t.Fatalf("one changed: delta %v %s", delta, r.Rows)
	}
	r, delta, _, m = encodeLive(m, rowsOf([]any{int64(0), "z"}, []any{int64(1), "a"}, []any{int64(2), "B"}, []any{int64(3), "c"}))
	if !delta || string(r.Rows) != `[[0,"z"],0,-2]` {
		t.Fatalf("insert at front: %s", r.Rows)
	}
	// Same JSON (1 became 1.0): nothing to send.
	_, _, skip, m = encodeLive(m, rowsOf([]any{int64(0), "z"}, []any{1.0, "a"}, []any{int64(2), "B"}, []any{int64(3), "c"}))
	if !skip {
		t.Fatal("identical encoding not skipped")
	}
	// Other columns: in full.
	r, delta, _, _ = encodeLive(m, &client.Rows{Columns: []string{"id"}, Values: [][]any{{int64(1)}}})
	if delta || string(r.Rows) != `[[1]]` {
		t.Fatalf("new columns: %s", r.Rows)
	}
	// A new row with a BLOB marks the delta special; kept ones do not.
	_, _, _, m = encodeLive(nil, rowsOf([]any{int64(1), []byte{1}}, []any{int64(2), "b"}))
	r, delta, _, _ = encodeLive(m, rowsOf([]any{int64(1), []byte{1}}, []any{int64(2), "c"}))
	if !delta || r.Special || string(r.Rows) != `[0,[2,"c"]]` {
		t.Fatalf("special: %v %s", r.Special, r.Rows)
	}
	r, _, _, _ = encodeLive(m, rowsOf([]any{int64(1), []byte{2}}, []any{int64(2), "b"}))
	if !r.Special {
		t.Fatalf("new BLOB row not special: %s", r.Rows)
	}
}

// Random edits of a result: the page rebuilds exactly the new rows.
func TestEncodeLiveRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cur [][]any
	var memo *liveMemo
	var page []json.RawMessage
	for step := range 2000 {
		next := slices.Clone(cur)
		for range rng.IntN(4) {
			switch op := rng.IntN(4); {
			case op == 0 || len(next) == 0:
				i := rng.IntN(len(next) + 1)
				next = slices.Insert(next, i, []any{int64(rng.IntN(20)), "x"})
			case op == 1:
				i := rng.IntN(len(next))
				next = slices.Delete(next, i, i+1)
			case op == 2:
				i := rng.IntN(len(next))
				next[i] = []any{next[i][0], string(rune('a' + rng.IntN(3)))}
			default:
				rng.Shuffle(len(next), func(i, j int) { next[i], next[j] = next[j], next[i] })
			}
		}
		r, delta, skip, m := encodeLive(memo, rowsOf(next...))
		memo = m
		switch {
		case skip:
		case delta:
			page = applyDelta(t, page, r.Rows)
		default:
			page = nil
			if err := json.Unmarshal(r.Rows, &page); err != nil {
				t.Fatal(err)
			}
		}
		want := EncodeRows(rowsOf(next...))
		got, _ := json.Marshal(page)
		if page == nil {
			got = []byte("[]")
		}
		if string(got) != string(want.Rows) {
			t.Fatalf("step %d: page has %s, want %s (last event %s)", step, got, want.Rows, r.Rows)
		}
		cur = next
	}
}
