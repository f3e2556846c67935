package writes

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/merge"
)

// Insert, update and delete through Apply; the base table and the shadow
// row are as expected after each.
func TestRoundTrip(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")

	e.apply(txn("c1", 10, ins("items", I(1), I(1), T("first"), I(5), Null)))
	wantRow(t, e, "items", "id = 1", "1|first|5|NULL")
	s := e.shadowOf("items", "1")
	for i, c := range s.Cols {
		if c != st(10, "c1") {
			t.Errorf("after insert: column %d stamped %v", i, c)
		}
	}
	wantStamps(t, "adds", s.Adds, st(10, "c1"))
	wantStamps(t, "removes", s.Removes)
	if s.Tomb != nil {
		t.Errorf("tomb of an existing row: %v", s.Tomb)
	}

	e.apply(txn("c2", 20, upd("items", I(1), stamps(st(10, "c1")), 1, T("second"))))
	wantRow(t, e, "items", "id = 1", "1|second|5|NULL")
	s = e.shadowOf("items", "1")
	if s.Cols[1] != st(20, "c2") || s.Cols[0] != st(10, "c1") || s.Cols[2] != st(10, "c1") {
		t.Errorf("after update: column stamps %s", fmtStamps(s.Cols))
	}
	wantStamps(t, "live", s.live(), st(20, "c2"))
	wantStamps(t, "removes", s.Removes, st(10, "c1"))

	e.apply(txn("c1", 30, del("items", I(1), st(20, "c2"))))
	wantRow(t, e, "items", "id = 1", "<none>")
	s = e.shadowOf("items", "1")
	wantStamps(t, "live", s.live())
	if got := strings.Join(deref(s.Tomb), "|"); got != "1|second|5|NULL" {
		t.Errorf("tomb = %q", got)
	}
	// Compaction: the tags retired by the update are gone, those retired
	// by the delete are still there.
	wantStamps(t, "adds", s.Adds, st(20, "c2"))
	wantStamps(t, "removes", s.Removes, st(20, "c2"))
	if n := e.count("SELECT count(*) FROM lattice.applied"); n != 3 {
		t.Errorf("lattice.applied has %d rows, want 3", n)
	}
}

func deref(p []*string) []string {
	out := make([]string, len(p))
	for i, v := range p {
		if v == nil {
			out[i] = "NULL"
		} else {
			out[i] = *v
		}
	}
	return out
}

func (e *env) count(sql string, args ...any) int {
	e.tb.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.tb.Fatal(err)
	}
	return n
}

// Two concurrent updates of different columns by two origins both
// survive, in either order, with the same resulting state.
func TestConcurrentUpdatesMergePerColumn(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.apply(txn("c0", 10, ins("items", I(1), I(1), T("t0"), I(0), T("n0")),
		ins("items", I(2), I(2), T("t0"), I(0), T("n0"))))
	seen := stamps(st(10, "c0"))
	a := func(key int64) *Txn { return txn("a", 20, upd("items", I(key), seen, 1, T("from a"))) }
	b := func(key int64) *Txn { return txn("b", 21, upd("items", I(key), seen, 2, I(7), 3, T("from b"))) }
	e.apply(a(1))
	e.apply(b(1))
	e.apply(b(2))
	e.apply(a(2))
	wantRow(t, e, "items", "id = 1", "1|from a|7|from b")
	wantRow(t, e, "items", "id = 2", "2|from a|7|from b")
	s1, s2 := e.shadowOf("items", "1"), e.shadowOf("items", "2")
	for _, s := range []*shadow{s1, s2} {
		wantStamps(t, "live", s.live(), st(20, "a"), st(21, "b"))
		if s.Cols[1] != st(20, "a") || s.Cols[2] != st(21, "b") || s.Cols[3] != st(21, "b") || s.Cols[0] != st(10, "c0") {
			t.Errorf("column stamps %s", fmtStamps(s.Cols))
		}
	}
	wantStamps(t, "removes (order a,b vs b,a)", s1.Removes, s2.Removes...)
}

// An update with an older HLC loses, per column, to a newer one applied
// before it; equal HLCs are ordered by origin.
func TestOlderWriteLoses(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.apply(txn("c0", 10, ins("items", I(1), I(1), T("t0"), I(0), T("n0")),
		ins("items", I(2), I(2), T("t0"), I(0), T("n0")),
		ins("items", I(3), I(3), T("t0"), I(0), T("n0"))))
	seen := stamps(st(10, "c0"))

	// Newer first, then an older write to the same column and another.
	e.apply(txn("new", 50, upd("items", I(1), seen, 1, T("newer"))))
	e.apply(txn("old", 40, upd("items", I(1), seen, 1, T("older"), 2, I(4))))
	wantRow(t, e, "items", "id = 1", "1|newer|4|n0") // n: only the older one wrote it

	// Same HLC, origins "a" < "b": "b" wins whatever the order.
	e.apply(txn("b", 60, upd("items", I(2), seen, 1, T("by b"))))
	e.apply(txn("a", 60, upd("items", I(2), seen, 1, T("by a"))))
	e.apply(txn("a", 60, upd("items", I(3), seen, 1, T("by a"))))
	e.apply(txn("b", 60, upd("items", I(3), seen, 1, T("by b"))))
	wantRow(t, e, "items", "id = 2", "2|by b|0|n0")
	wantRow(t, e, "items", "id = 3", "3|by b|0|n0")
	if c := e.shadowOf("items", "2").Cols[1]; c != st(60, "b") {
		t.Errorf("title stamp %v", c)
	}
}

// A plain SQL UPDATE (another backend, psql) is stamped with the wall
// clock: it beats client writes older than it and loses to newer ones.
func TestPlainSQLWriteMerges(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	old := nowHLC(-time.Hour)
	e.apply(&Txn{Origin: "c1", ID: 1, HLC: old, Changes: []Change{ins("items", I(1), I(1), T("client"), I(1), T("n"))}})

	e.exec("UPDATE items SET title = 'psql' WHERE id = 1")
	s := e.shadowOf("items", "1")
	sqlStamp := s.Cols[1]
	if sqlStamp.Origin != PlainSQLOrigin || sqlStamp.HLC <= old || s.Cols[2].Origin != "c1" {
		t.Fatalf("after plain UPDATE: stamps %s", fmtStamps(s.Cols))
	}
	if live := s.live(); len(live) != 1 || live[0].Origin != PlainSQLOrigin {
		t.Fatalf("after plain UPDATE: live %s", fmtStamps(live))
	}

	// A client write made before the SQL write (older HLC), that saw only
	// the client's insert, loses on title but wins on n.
	seen := stamps(merge.Stamp{HLC: old, Origin: "c1"})
	e.apply(&Txn{Origin: "c2", ID: 1, HLC: old + 1, Changes: []Change{upd("items", I(1), seen, 1, T("stale client"), 2, I(2))}})
	wantRow(t, e, "items", "id = 1", "1|psql|2|n")

	// A client write after it wins.
	e.apply(&Txn{Origin: "c2", ID: 2, HLC: sqlStamp.HLC + 1, Changes: []Change{upd("items", I(1), e.shadowOf("items", "1").live(), 1, T("later client"))}})
	wantRow(t, e, "items", "id = 1", "1|later client|2|n")
}

// An update that did not see a concurrent delete brings the row back: the
// columns it wrote have its values, the others come from the tomb.
func TestUpdateResurrectsDeletedRow(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.apply(txn("c0", 10, ins("items", I(1), I(1), T("title"), I(1), T("note")),
		ins("items", I(2), I(2), T("title"), I(1), T("note"))))
	seen := stamps(st(10, "c0"))

	// Delete first, then the update that did not see it.
	e.apply(txn("x", 20, del("items", I(1), seen...)))
	wantRow(t, e, "items", "id = 1", "<none>")
	e.apply(txn("y", 15, upd("items", I(1), seen, 2, I(9))))
	wantRow(t, e, "items", "id = 1", "1|title|9|note")
	s := e.shadowOf("items", "1")
	wantStamps(t, "live", s.live(), st(15, "y"))
	if s.Tomb != nil {
		t.Errorf("tomb kept on a live row")
	}

	// The other order gives the same row.
	e.apply(txn("y", 15, upd("items", I(2), seen, 2, I(9))))
	e.apply(txn("x", 20, del("items", I(2), seen...)))
	wantRow(t, e, "items", "id = 2", "2|title|9|note")
	wantStamps(t, "live", e.shadowOf("items", "2").live(), st(15, "y"))
}

// A delete that saw every version of the row removes it.
func TestDeleteThatSawEverything(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.apply(txn("c0", 10, ins("items", I(1), I(1), T("t"), I(1), Null)))
	e.apply(txn("c1", 20, upd("items", I(1), stamps(st(10, "c0")), 1, T("u1"))))
	e.apply(txn("c2", 21, upd("items", I(1), stamps(st(10, "c0")), 2, I(2)))) // concurrent with c1
	// c3 saw both updates.
	e.apply(txn("c3", 30, del("items", I(1), st(20, "c1"), st(21, "c2"))))
	wantRow(t, e, "items", "id = 1", "<none>")
	s := e.shadowOf("items", "1")
	wantStamps(t, "live", s.live())
	if got := strings.Join(deref(s.Tomb), "|"); got != "1|u1|2|NULL" {
		t.Errorf("tomb = %q", got)
	}
}

// A delete that did not see a concurrent insert or update leaves the row.
func TestDeleteDidNotSeeConcurrentWrite(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	e.apply(txn("c0", 10, ins("items", I(1), I(1), T("t"), I(1), Null)))

	// Concurrent update applied first; the delete saw only the insert.
	e.apply(txn("u", 20, upd("items", I(1), stamps(st(10, "c0")), 1, T("updated"))))
	e.apply(txn("d", 25, del("items", I(1), st(10, "c0"))))
	wantRow(t, e, "items", "id = 1", "1|updated|1|NULL")
	wantStamps(t, "live", e.shadowOf("items", "1").live(), st(20, "u"))

	// A row deleted, then inserted again by one client while another,
	// which saw the old row, deletes it: the new insert stays.
	e.apply(txn("c0", 30, ins("items", I(2), I(2), T("v1"), I(1), Null)))
	e.apply(txn("c0", 31, del("items", I(2), st(30, "c0"))))
	e.apply(txn("i", 40, ins("items", I(2), I(2), T("v2"), I(2), Null)))
	e.apply(txn("d", 41, del("items", I(2), st(30, "c0"))))
	wantRow(t, e, "items", "id = 2", "2|v2|2|NULL")
}

// A child written by a client while its parent is deleted elsewhere keeps
// the parent: re-inserted from its tomb, or never deleted.
func TestChildKeepsDeletedParent(t *testing.T) {
	e := newEnv(t, projectsSQL, "projects", "issues")
	e.apply(txn("c0", 10, ins("projects", T("p1"), T("p1"), T("Project 1")),
		ins("projects", T("p2"), T("p2"), T("Project 2"))))
	seen := stamps(st(10, "c0"))

	// The delete is applied first: the child's insert re-inserts p1.
	e.apply(txn("a", 20, del("projects", T("p1"), seen...)))
	wantRow(t, e, "projects", "id = 'p1'", "<none>")
	e.apply(txn("b", 21, ins("issues", T("i1"), T("i1"), T("p1"), T("Issue 1"))))
	wantRow(t, e, "projects", "id = 'p1'", "p1|Project 1")
	wantRow(t, e, "issues", "id = 'i1'", "i1|p1|Issue 1")
	wantStamps(t, "p1 live", e.shadowOf("projects", "p1").live(), st(21, "b"))

	// The child first: the delete did not see the child's touch.
	e.apply(txn("b", 22, ins("issues", T("i2"), T("i2"), T("p2"), T("Issue 2"))))
	e.apply(txn("a", 23, del("projects", T("p2"), seen...)))
	wantRow(t, e, "projects", "id = 'p2'", "p2|Project 2")
	wantStamps(t, "p2 live", e.shadowOf("projects", "p2").live(), st(22, "b"))

	// A delete that saw the touch removes the parent (no child left).
	e.apply(txn("b", 24, del("issues", T("i2"), st(22, "b"))))
	e.apply(txn("a", 25, del("projects", T("p2"), st(22, "b"))))
	wantRow(t, e, "projects", "id = 'p2'", "<none>")

	// An update of a child that does not write project_id: the parent is
	// not predicted, a second round locks and touches it.
	e.apply(txn("c", 30, upd("issues", T("i1"), stamps(st(21, "b")), 2, T("Issue 1 renamed"))))
	wantStamps(t, "p1 live after child update", e.shadowOf("projects", "p1").live(), st(30, "c"))
	wantRow(t, e, "issues", "id = 'i1'", "i1|p1|Issue 1 renamed")

	// A child of a parent that never existed is refused; no parent is made.
	_, err := e.a.Apply(e.ctx, txn("b", 31, ins("issues", T("i9"), T("i9"), T("nope"), T("Orphan"))))
	var rej *Rejected
	if !errors.As(err, &rej) || rej.Code != CodeForeignKey || rej.Change != 0 {
		t.Errorf("child of a missing parent: %v", err)
	}
	wantRow(t, e, "projects", "id = 'nope'", "<none>")
	// Nor after a delete of it (which leaves metadata, but no tomb).
	e.apply(txn("a", 32, del("projects", T("nope"))))
	if s := e.shadowOf("projects", "nope"); s == nil || s.Tomb != nil {
		t.Errorf("delete of a row that never existed: shadow %+v", s)
	}
	if _, err := e.a.Apply(e.ctx, txn("b", 33, ins("issues", T("i9"), T("i9"), T("nope"), T("Orphan")))); !errors.As(err, &rej) || rej.Code != CodeForeignKey {
		t.Errorf("child of a parent deleted before it existed: %v", err)
	}

	// Deleting a parent that still has a child is refused by the foreign
	// key, even when the delete saw every tag.
	_, err = e.a.Apply(e.ctx, txn("a", 40, del("projects", T("p1"), st(30, "c"))))
	if !errors.As(err, &rej) || rej.Code != CodeForeignKey {
		t.Errorf("delete of a referenced parent: %v", err)
	}
}

// A CHECK violation rejects the transaction with Postgres' reason, and
// nothing of it stays.
func TestCheckViolationRejected(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	tx := txn("c1", 10,
		ins("items", I(1), I(1), T("good"), I(1), Null),
		ins("items", I(2), I(2), T("bad"), I(-1), Null))
	_, err := e.a.Apply(e.ctx, tx)
	var rej *Rejected
	if !errors.As(err, &rej) {
		t.Fatalf("Apply: %v, want *Rejected", err)
	}
	if rej.Code != CodeCheck || rej.Change != 1 || !strings.Contains(rej.Reason, "n_not_negative") {
		t.Errorf("rejected: %+v", rej)
	}
	wantRow(t, e, "items", "id = 1", "<none>")
	if n := e.count("SELECT count(*) FROM lattice.shadow_" + e.oid("items")); n != 0 {
		t.Errorf("%d shadow rows stayed", n)
	}
	if n := e.count("SELECT count(*) FROM lattice.applied"); n != 0 {
		t.Errorf("the rejected transaction was recorded as applied")
	}
	// Other rejections carry their codes.
	cases := []struct {
		txn  *Txn
		code string
	}{
		{txn("c1", 11, ins("items", I(3), I(3), Null, I(1), Null)), CodeNotNull},
		{txn("c1", 12, upd("items", I(3), nil, 2, T("x"))), CodeBadChange},
		{txn("c1", 13, ins("nope", I(3), I(3))), CodeBadChange},
	}
	for _, c := range cases {
		_, err := e.a.Apply(e.ctx, c.txn)
		if !errors.As(err, &rej) || rej.Code != c.code {
			t.Errorf("%+v: got %v, want %s", c.txn.Changes[0], err, c.code)
		}
	}
	// A trigger's exception.
	e.exec(`CREATE FUNCTION no_evil() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.title = 'evil' THEN RAISE EXCEPTION 'no evil titles'; END IF; RETURN NEW; END $$`)
	e.exec(`CREATE TRIGGER no_evil BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION no_evil()`)
	_, err = e.a.Apply(e.ctx, txn("c1", 14, ins("items", I(4), I(4), T("evil"), I(1), Null)))
	if !errors.As(err, &rej) || rej.Code != CodeTrigger || rej.Reason != "no evil titles" || rej.Change != 0 {
		t.Errorf("trigger exception: got %v", err)
	}
}

func (e *env) oid(table string) string {
	e.tb.Helper()
	var oid uint32
	if err := e.pool.QueryRow(e.ctx, "SELECT $1::text::regclass::oid", table).Scan(&oid); err != nil {
		e.tb.Fatal(err)
	}
	return strconv.FormatUint(uint64(oid), 10)
}

// Applying the same (origin, id) twice applies it once.
func TestIdempotent(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	tx := &Txn{Origin: "c1", ID: 7, HLC: h(10), Changes: []Change{ins("items", I(1), I(1), T("once"), I(1), Null)}}
	if res := e.apply(tx); !res.Applied {
		t.Fatal("first Apply: not applied")
	}
	e.exec("UPDATE items SET title = 'changed since'")
	again := &Txn{Origin: "c1", ID: 7, HLC: h(11), Changes: []Change{upd("items", I(1), nil, 1, T("twice"))}}
	if res := e.apply(again); res.Applied {
		t.Fatal("second Apply of the same id: applied")
	}
	wantRow(t, e, "items", "id = 1", "1|changed since|1|NULL")
	// Another origin with the same id is another transaction.
	if res := e.apply(&Txn{Origin: "c2", ID: 7, HLC: h(12), Changes: []Change{upd("items", I(1), nil, 2, I(2))}}); !res.Applied {
		t.Fatal("c2/7 not applied")
	}
}

// Row versions (protocol 2.6): every write bumps the row's version and
// records the version at which it added its tag; a change that gives the
// version its author held has seen exactly the tags added up to it, and
// its own origin's.
func TestSeenVersion(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	wantVersion := func(key string, v int64) *shadow {
		t.Helper()
		s := e.shadowOf("items", key)
		if s.Version != v {
			t.Fatalf("row %s: version %d, want %d", key, s.Version, v)
		}
		return s
	}
	e.apply(txn("a", 10, seenV(ins("items", I(1), I(1), T("t"), I(1), Null), 0)))
	wantVersion("1", 1)
	// b held version 1 and updates: version 2, its tag added at 2, a's
	// retired.
	e.apply(txn("b", 20, seenV(upd("items", I(1), nil, 1, T("by b")), 1)))
	s := wantVersion("1", 2)
	wantStamps(t, "live", s.live(), st(20, "b"))
	if s.AddVer[st(20, "b")] != 2 {
		t.Errorf("add versions %v", s.AddVer)
	}
	// a deletes having held version 1 only: b's update survives it, and
	// the row is written unchanged (so it returns to a).
	e.apply(txn("a", 30, seenV(del("items", I(1)), 1)))
	wantRow(t, e, "items", "id = 1", "1|by b|1|NULL")
	wantVersion("1", 3)
	// A plain SQL update bumps the version too.
	e.exec("UPDATE items SET n = 5 WHERE id = 1")
	s = wantVersion("1", 4)
	if live := s.live(); len(live) != 1 || live[0].Origin != PlainSQLOrigin || s.AddVer[live[0]] != 4 {
		t.Fatalf("after plain SQL: live %v, add versions %v", live, s.AddVer)
	}
	// A delete that held version 3 did not see the plain SQL update (its
	// stamp is the wall clock: later writes must be too).
	later := func(c Change, d time.Duration) *Txn {
		x := txn("c", 0, c)
		x.HLC = nowHLC(d)
		return x
	}
	e.apply(later(seenV(del("items", I(1)), 3), time.Hour))
	wantRow(t, e, "items", "id = 1", "1|by b|5|NULL")
	// One that held version 5 (after the previous write) saw everything.
	e.apply(later(seenV(del("items", I(1)), 5), 2*time.Hour))
	wantRow(t, e, "items", "id = 1", "<none>")
	wantVersion("1", 6)

	// A client's own earlier writes count as seen, whatever version it
	// sends: insert then delete with version 0.
	e.apply(txn("d", 70, seenV(ins("items", I(2), I(2), T("mine"), I(1), Null), 0)))
	e.apply(txn("d", 71, seenV(del("items", I(2)), 0)))
	wantRow(t, e, "items", "id = 2", "<none>")
	// A concurrent insert of the same key that d never saw survives d's
	// delete.
	e.apply(txn("d", 80, seenV(ins("items", I(3), I(3), T("d's"), I(1), Null), 0)))
	e.apply(txn("x", 81, seenV(ins("items", I(3), I(3), T("x's"), I(1), Null), 0)))
	e.apply(txn("d", 82, seenV(del("items", I(3)), 0)))
	wantRow(t, e, "items", "id = 3", "3|x's|1|NULL")

	// Plain SQL inserts start at version 1; bulk too.
	e.exec("INSERT INTO items (id, title, n) SELECT g, 'bulk', 1 FROM generate_series(10, 12) g")
	wantVersion("11", 1)
}

// A transaction without changes is applied (recorded, once) and changes
// nothing.
func TestEmptyTransaction(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	if res := e.apply(txn("e", 10)); !res.Applied {
		t.Fatalf("first delivery: %+v", res)
	}
	x := txn("e", 10)
	x.ID = 1
	if res := e.apply(x); res.Applied {
		t.Fatalf("second delivery applied again")
	}
}

// TestWriteDuringConcurrentInsert runs client writes of a key while a plain
// SQL transaction that inserts the same key is still open: the applier
// waits for it (on the row's shadow) and must then see the row it
// inserted. An insert merges into it (not a key conflict); a delete that
// never saw it keeps it, and writes it unchanged so that it returns to the
// deleter (whose local delete must yield).
func TestWriteDuringConcurrentInsert(t *testing.T) {
	e := newEnv(t, itemsSQL, "items")
	// Key 1 existed and was deleted (its shadow is a tombstone); key 2
	// never existed (no shadow row).
	e.apply(txn("a", 10, seenV(ins("items", I(1), I(1), T("old"), I(1), Null), 0)))
	e.apply(txn("a", 11, seenV(del("items", I(1)), 1)))
	for _, tc := range []struct {
		name string
		key  int64
		c    Change
		want string // the row after both
		ver  int64  // its version
	}{
		{"insert over a tombstone", 1, seenV(ins("items", I(1), I(1), T("client"), I(2), Null), 0), "1|client|2|NULL", 4},
		{"insert of a new key", 2, seenV(ins("items", I(2), I(2), T("client"), I(2), Null), 0), "2|client|2|NULL", 2},
		{"delete that saw the tombstone", 1, seenV(del("items", I(1)), 2), "1|sql|7|NULL", 7},
		{"delete of a key it never held", 2, seenV(del("items", I(2)), 0), "2|sql|7|NULL", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := e.pool.Acquire(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			tx, err := conn.Begin(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(e.ctx)
			if _, err := tx.Exec(e.ctx, "DELETE FROM items WHERE id = $1", tc.key); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(e.ctx, "INSERT INTO items VALUES ($1, 'sql', 7, NULL)", tc.key); err != nil {
				t.Fatal(err)
			}
			var sqlXid string
			if err := tx.QueryRow(e.ctx, "SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text").Scan(&sqlXid); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			x := txn("b", 0, tc.c)
			x.HLC = nowHLC(time.Hour) // after the plain SQL write
			go func() {
				_, err := e.a.Apply(e.ctx, x)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("the client write did not wait for the open insert (err %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := tx.Commit(e.ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("apply: %v", err)
			}
			wantRow(t, e, "items", fmt.Sprintf("id = %d", tc.key), tc.want)
			if s := e.shadowOf("items", fmt.Sprint(tc.key)); s.Version != tc.ver {
				t.Errorf("version %d, want %d", s.Version, tc.ver)
			}
			// The client's transaction wrote the base row (the change that
			// goes back to the client), not only its shadow.
			var xmin string
			if err := e.pool.QueryRow(e.ctx, "SELECT xmin::text FROM items WHERE id = $1", tc.key).Scan(&xmin); err != nil {
				t.Fatal(err)
			}
			if xmin == sqlXid {
				t.Errorf("the base row is still the plain SQL transaction's: the client's write did not write it")
			}
		})
	}
}
