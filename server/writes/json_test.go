package writes

import (
	"errors"
	"testing"
	"time"

	"github.com/latticesync/lattice/merge"
)

const docsSQL = `CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb, note text)`

// patch is an update of docs.body (column 1) by per-path changes.
func patch(key int64, ch ...merge.JSONChange) Change {
	c := upd("docs", I(key), nil, 1, T("ignored"))
	c.JSON = map[int][]merge.JSONChange{1: ch}
	return c
}

func jset(v string, path ...string) merge.JSONChange {
	return merge.JSONChange{Path: path, Value: []byte(v)}
}
func jdel(path ...string) merge.JSONChange { return merge.JSONChange{Path: path, Delete: true} }

// Two clients set different keys of one document concurrently (one sends
// per-path changes, one a whole document as older clients do) and plain
// SQL sets a third with jsonb_set: all three survive. A key deleted by one
// client and set concurrently by another that had not seen the delete
// stays; a delete that saw the set removes it.
func TestJSONMergePerKey(t *testing.T) {
	e := newEnv(t, docsSQL)
	e.exec("CALL lattice.electrify('docs', json_merge => ARRAY['body'])")
	e.apply(txn("c0", 10, seenV(ins("docs", I(1), I(1), T(`{"title": "t", "n": 1}`), T("note")), 0)))
	wantRow(t, e, "docs", "id = 1", `1|{"n": 1, "title": "t"}|note`)

	// a (offline, per-path) and b (whole document) both held version 1.
	a := txn("a", 20, seenV(patch(1, jset(`1`, "x")), 1))
	b := txn("b", 21, seenV(upd("docs", I(1), nil, 1, T(`{"title": "t", "n": 1, "y": [1, 2]}`)), 1))
	e.apply(b)
	e.exec(`UPDATE docs SET body = jsonb_set(body, '{meta}', '{"z": "z"}') WHERE id = 1`)
	e.apply(a)
	wantRow(t, e, "docs", "id = 1", `1|{"n": 1, "x": 1, "y": [1, 2], "meta": {"z": "z"}, "title": "t"}|note`)

	// Plain SQL || and - merge too (later client writes keep them).
	e.exec(`UPDATE docs SET body = (body || '{"w": 2}') - 'title' WHERE id = 1`)
	e.apply(txn("a", 30, seenV(patch(1, jset(`"deep"`, "meta", "q")), 1)))
	wantRow(t, e, "docs", "id = 1", `1|{"n": 1, "w": 2, "x": 1, "y": [1, 2], "meta": {"q": "deep", "z": "z"}}|note`)

	// Delete vs update: c deletes n having seen everything; d, holding
	// version 1 only, sets n with an older stamp, after: n stays (update
	// wins over an unseen delete).
	v := uint64(e.shadowOf("docs", "1").Version)
	later := func(origin string, d time.Duration, c Change) *Txn {
		x := txn(origin, 0, c)
		x.HLC = nowHLC(d)
		return x
	}
	e.apply(later("c", 2*time.Hour, seenV(patch(1, jdel("n")), v)))
	wantRow(t, e, "docs", "id = 1", `1|{"w": 2, "x": 1, "y": [1, 2], "meta": {"q": "deep", "z": "z"}}|note`)
	e.apply(later("d", time.Hour, seenV(patch(1, jset(`5`, "n")), 1)))
	wantRow(t, e, "docs", "id = 1", `1|{"n": 5, "w": 2, "x": 1, "y": [1, 2], "meta": {"q": "deep", "z": "z"}}|note`)
	// A delete that saw d's write removes it; the object meta goes whole.
	v = uint64(e.shadowOf("docs", "1").Version)
	e.apply(later("c", 3*time.Hour, seenV(patch(1, jdel("n"), jdel("meta")), v)))
	wantRow(t, e, "docs", "id = 1", `1|{"w": 2, "x": 1, "y": [1, 2]}|note`)

	// The other columns still merge as registers; the per-key column is not
	// reset by writes to them.
	e.apply(later("a", 4*time.Hour, seenV(upd("docs", I(1), nil, 2, T("n2")), 0)))
	wantRow(t, e, "docs", "id = 1", `1|{"w": 2, "x": 1, "y": [1, 2]}|n2`)

	// Per-path changes for a column that is not json are refused.
	bad := txn("a", 0, seenV(upd("docs", I(1), nil, 2, T("x")), 0))
	bad.HLC = nowHLC(5 * time.Hour)
	bad.Changes[0].JSON = map[int][]merge.JSONChange{2: {jset(`1`, "k")}}
	_, err := e.a.Apply(e.ctx, bad)
	var rej *Rejected
	if !errors.As(err, &rej) {
		t.Fatalf("JSON changes for a plain column: %v", err)
	}

	// electrify refuses a column that is not json.
	if _, err := e.pool.Exec(e.ctx, "CALL lattice.electrify('docs', json_merge => ARRAY['note'])"); err == nil {
		t.Error("electrify with a text column merged per key: no error")
	}
	// electrify(t) alone keeps the setting.
	e.exec("CALL lattice.electrify('docs')")
	var jm []string
	if err := e.pool.QueryRow(e.ctx, "SELECT json_merge FROM lattice.electrified WHERE relid = 'docs'::regclass").Scan(&jm); err != nil || len(jm) != 1 || jm[0] != "body" {
		t.Errorf("json_merge after electrify(t): %v %v", jm, err)
	}
}

// A client that still holds a column as merged per key path after
// json_merge was turned off sends per-path changes: they apply to the
// column's value, written whole (last writer wins), not refused.
func TestJSONChangesAfterMergeOff(t *testing.T) {
	e := newEnv(t, docsSQL)
	e.exec("CALL lattice.electrify('docs')")
	e.apply(txn("c0", 10, seenV(ins("docs", I(1), I(1), T(`{"a": 1, "b": {"c": 1}}`), T("note")), 0)))
	later := txn("a", 0, seenV(patch(1, jset(`2`, "b", "d"), jdel("a")), 1))
	later.HLC = nowHLC(time.Hour)
	e.apply(later)
	wantRow(t, e, "docs", "id = 1", `1|{"b": {"c": 1, "d": 2}}|note`)
	// A delete of the root: NULL.
	root := txn("a", 0, seenV(patch(1, jdel()), 2))
	root.HLC = nowHLC(2 * time.Hour)
	e.apply(root)
	wantRow(t, e, "docs", "id = 1", `1|NULL|note`)
}
