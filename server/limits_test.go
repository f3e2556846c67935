package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
)

// answer reads until the answer to Subscribe reqID: nil for Subscribed,
// else the Error; rows counts the changes of the Txn frames before it.
func (r *rawConn) answer(reqID uint32) (er *protocol.Error, rows int) {
	r.t.Helper()
	for {
		m, err := r.next()
		if err != nil {
			r.t.Fatalf("waiting for the answer to %d: connection ended: %v", reqID, err)
		}
		switch m := m.(type) {
		case *protocol.Txn:
			rows += len(m.Changes)
		case *protocol.Subscribed:
			if m.ReqID == reqID {
				return nil, rows
			}
		case *protocol.Error:
			if m.ReqID == reqID || m.Fatal {
				return m, rows
			}
		}
	}
}

func repeatInclude(n int, in protocol.Include) []protocol.Include {
	out := make([]protocol.Include, n)
	for i := range out {
		out[i] = in
	}
	return out
}

// distinctIssues is n includes of the project's issues, each with its own
// where clause (none a duplicate of another).
func distinctIssues(n int) []protocol.Include {
	out := make([]protocol.Include, n)
	for i := range out {
		out[i] = protocol.Include{Table: "issue", Where: fmt.Sprintf("id <> 'x%d'", i)}
	}
	return out
}

// alternating nests depth includes under a project: issue -> project ->
// issue -> ...
func alternating(depth int) []protocol.Include {
	var incs []protocol.Include
	for level := depth; level >= 1; level-- {
		t := "issue"
		if level%2 == 0 {
			t = "project"
		}
		incs = []protocol.Include{{Table: t, Include: incs}}
	}
	return incs
}

// TestShapeLimits: shapes over the service's limits, and duplicate
// includes (issue 15), are refused quickly with a non-fatal bad_shape
// naming the limit; the connection, its live shapes and other clients
// keep working.
func TestShapeLimits(t *testing.T) {
	e := newEnv(t, linearSQL, "users", "project", "issue", "comment")
	e.stop()
	e.cfg.MaxShapesPerConn = 4
	e.start()
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, mustParseShape(t, `{"table":"project","where":"id = 'p1'","include":{"issue":{}}}`))
	step := 0
	stillServing := func() {
		t.Helper()
		step++
		e.exec("UPDATE issue SET title = $1 WHERE id = 'i1'", fmt.Sprintf("step %d", step))
		waitLocal(t, good, "SELECT title FROM issue WHERE id = 'i1'", fmt.Sprintf("step %d", step))
	}

	r := e.dialRaw(t)
	r.hello(e.token("bob"))
	// A live shape on the connection, which the refusals leave alone.
	r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "live", Table: "project", Where: "id = 'p2'", Include: []protocol.Include{{Table: "issue"}}}}})
	if er, rows := r.answer(1); er != nil || rows != 3 { // p2, i3 and its assignee u2
		t.Fatalf("live shape: %v, %d rows", er, rows)
	}

	p := func(s string) *string { return &s }
	cases := []struct {
		name   string
		shapes []protocol.Shape
		msg    string
	}{
		// The shapes of the issue: 10,000 and 40,000 times the same
		// include (a 400 kB frame).
		{"10,000 duplicate includes", []protocol.Shape{{ID: "a", Table: "project", Include: repeatInclude(10000, protocol.Include{Table: "issue"})}},
			`shape "a": include project -> issue (number 2 of its level) repeats include number 1`},
		{"40,000 duplicate includes", []protocol.Shape{{ID: "a", Table: "project", Include: repeatInclude(40000, protocol.Include{Table: "issue"})}},
			`repeats include number 1`},
		// The same relation spelled otherwise: found once resolved.
		{"duplicate by schema", []protocol.Shape{{ID: "a", Table: "project", Include: []protocol.Include{{Table: "issue"}, {Table: "public.issue"}}}},
			`include project -> public.issue (number 2 of its level) repeats include number 1: the same table, foreign key (project_id) and where clause`},
		{"duplicate by via", []protocol.Shape{{ID: "a", Table: "issue", Include: []protocol.Include{{Table: "users", Via: "assignee_id", Include: []protocol.Include{{Table: "issue", Where: "status = 'open'"}, {Table: "issue", Where: "(status = 'open')", Via: "assignee_id"}}}}}},
			`include users -> issue (number 2 of its level) repeats include number 1`},
		{"duplicate deep down", []protocol.Shape{{ID: "a", Table: "project", Include: []protocol.Include{{Table: "issue", Include: []protocol.Include{{Table: "comment"}, {Table: "comment"}}}}}},
			`include project -> issue -> comment (number 2 of its level)`},
		{"65 includes", []protocol.Shape{{ID: "a", Table: "project", Include: distinctIssues(65)}},
			`more than 64 includes, the service's limit (--max-includes)`},
		{"40,000 distinct includes", []protocol.Shape{{ID: "a", Table: "project", Include: distinctIssues(40000)}},
			`more than 64 includes`},
		{"9 levels", []protocol.Shape{{ID: "a", Table: "project", Include: alternating(9)}},
			`includes nested more than 8 levels deep (project -> issue -> project`},
		{"5,000-byte where", []protocol.Shape{{ID: "a", Table: "issue", Where: "title <> '" + strings.Repeat("x", 4989) + "'"}},
			`shape "a": issue: where clause of 5000 bytes, more than the service's limit of 4096 (--max-where-bytes)`},
		{"5,000-byte include where", []protocol.Shape{{ID: "a", Table: "project", Include: []protocol.Include{{Table: "issue", Where: "title <> '" + strings.Repeat("x", 4989) + "'"}}}},
			`include project -> issue: where clause of 5000 bytes`},
		{"65 params", []protocol.Shape{{ID: "a", Table: "issue", Where: "id = $1", Params: repeatParam(65, p("i1"))}},
			`issue: 65 params, more than the service's limit of 64 (--max-where-params)`},
		{"too many shapes", []protocol.Shape{{ID: "s1", Table: "users"}, {ID: "s2", Table: "users"}, {ID: "s3", Table: "users"}, {ID: "s4", Table: "users"}},
			`too many shapes on one connection: 1 live and 4 more asked for, more than the service's limit of 4 (--max-shapes)`},
		// One bad shape refuses the request: none of it is subscribed.
		{"a bad shape among good ones", []protocol.Shape{{ID: "g", Table: "users"}, {ID: "a", Table: "project", Include: alternating(9)}},
			`levels deep`},
	}
	for i, c := range cases {
		id := uint32(10 + i)
		start := time.Now()
		r.send(&protocol.Subscribe{ReqID: id, Shapes: c.shapes})
		er, rows := r.answer(id)
		d := time.Since(start)
		if er == nil {
			t.Errorf("%s: subscribed (%d rows)", c.name, rows)
			continue
		}
		if er.Code != protocol.ErrBadShape || er.Fatal || !strings.Contains(er.Message, c.msg) {
			t.Errorf("%s: error %+v, want a non-fatal bad_shape mentioning %q", c.name, er, c.msg)
		}
		if rows != 0 {
			t.Errorf("%s: %d rows sent before the refusal", c.name, rows)
		}
		if d > time.Second {
			t.Errorf("%s: refused after %v, want < 1s", c.name, d)
		}
		t.Logf("%s: refused in %v: %s", c.name, d.Round(time.Microsecond), clipMsg(er.Message))
	}
	stillServing()

	// At the limits, shapes are served: 64 includes, 8 levels, a where
	// clause of 4096 bytes with 64 params, and a fourth shape. A shape
	// that is already live does not count again.
	wide := distinctIssues(64)
	var in []string
	params := []*string{p("i3")}
	for i := 1; i <= 64; i++ {
		in = append(in, fmt.Sprintf("$%d", i))
		if i > 1 {
			params = append(params, p(fmt.Sprintf("none%d", i)))
		}
	}
	long := "id IN (" + strings.Join(in, ", ") + ") AND title <> '"
	long += strings.Repeat("x", 4096-len(long)-1) + "'"
	at := []protocol.Shape{
		{ID: "wide", Table: "project", Where: "id = 'p1'", Include: wide},
		{ID: "deep", Table: "project", Where: "id = 'p1'", Include: alternating(8)},
		{ID: "long", Table: "issue", Where: long, Params: params},
	}
	if len(long) != 4096 {
		t.Fatalf("where of %d bytes", len(long))
	}
	r.send(&protocol.Subscribe{ReqID: 100, Shapes: at})
	if er, rows := r.answer(100); er != nil {
		t.Fatalf("shapes at the limits: %+v", er)
	} else if rows != 5 {
		// p1, its issues i1 and i2, i1's assignee u1, and i3 again (read
		// anew for "long"): each once, however many of the 64 includes
		// hold it.
		t.Errorf("shapes at the limits: %d rows, want 5", rows)
	}
	r.send(&protocol.Subscribe{ReqID: 101, Shapes: []protocol.Shape{at[0], {ID: "live", Table: "project", Where: "id = 'p2'", Include: []protocol.Include{{Table: "issue"}}}}})
	if er, _ := r.answer(101); er != nil {
		t.Fatalf("live shapes again: %+v", er)
	}
	r.send(&protocol.Subscribe{ReqID: 102, Shapes: []protocol.Shape{{ID: "fifth", Table: "users"}}})
	if er, _ := r.answer(102); er == nil || !strings.Contains(er.Message, "4 live and 1 more asked for") {
		t.Fatalf("a fifth shape: %+v", er)
	}
	// The refused shapes left the live ones working: a change reaches
	// this connection too.
	e.exec("UPDATE issue SET title = 'seen' WHERE id = 'i3'")
	for {
		m, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if tx, ok := m.(*protocol.Txn); ok && len(tx.Changes) > 0 {
			break
		}
	}
	stillServing()
}

func repeatParam(n int, p *string) []*string {
	out := make([]*string, n)
	for i := range out {
		out[i] = p
	}
	return out
}

func clipMsg(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// TestSnapshotRateLimit: a connection's initial data is read at most at
// SnapshotRowsPerSec (after a quarter second's burst), for single-table
// and relational shapes, while another client's live stream goes on.
func TestSnapshotRateLimit(t *testing.T) {
	const n, rate = 4000, 2000
	e := newEnv(t, fmt.Sprintf(`%s
INSERT INTO project VALUES ('big', 'Big');
INSERT INTO issue SELECT 'b' || g, 'big', NULL, 'issue ' || g, 'open' FROM generate_series(1, %[2]d) g;
CREATE TABLE bulk (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO bulk SELECT g, 'row ' || g FROM generate_series(1, %[2]d) g;`, linearSQL, n), "users", "project", "issue", "comment", "bulk")
	e.stop()
	e.cfg.SnapshotRowsPerSec = rate
	e.start()
	good, _ := e.clientAt(":memory:")
	e.subscribe(good, client.Shape{Table: "users"})
	want := float64(n) / rate
	for _, c := range []struct {
		name string
		sh   protocol.Shape
		rows int
	}{
		{"single table", protocol.Shape{ID: "a", Table: "bulk"}, n},
		{"relational", protocol.Shape{ID: "a", Table: "project", Where: "id = 'big'", Include: []protocol.Include{{Table: "issue"}}}, n + 1},
	} {
		r := e.dialRaw(t)
		r.hello(e.token("heavy"))
		start := time.Now()
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{c.sh}})
		// Meanwhile the other client is served as usual.
		time.Sleep(200 * time.Millisecond)
		e.exec("UPDATE users SET name = $1 WHERE id = 'u1'", c.name)
		t0 := time.Now()
		waitLocal(t, good, "SELECT name FROM users WHERE id = 'u1'", c.name)
		live := time.Since(t0)
		er, rows := r.answer(1)
		d := time.Since(start)
		if er != nil || rows != c.rows {
			t.Fatalf("%s: %v, %d rows, want %d", c.name, er, rows, c.rows)
		}
		t.Logf("%s: %d rows at %d rows/s in %v (%.2f s without the burst); another client's commit arrived in %v meanwhile", c.name, rows, rate, d.Round(time.Millisecond), float64(n)/rate*(1-0.25*rate/float64(n)), live.Round(time.Millisecond))
		if d.Seconds() < 0.7*want {
			t.Errorf("%s: %d rows in %v, faster than %d rows/s allows (about %.1f s)", c.name, rows, d, rate, want)
		}
		if d.Seconds() > 4*want+5 {
			t.Errorf("%s: %d rows took %v", c.name, rows, d)
		}
		if live > 2*time.Second {
			t.Errorf("%s: another client's commit took %v to arrive during the snapshot", c.name, live)
		}
	}
}

// replica is a minimal client over a rawConn: the rows it holds, as the
// first column's text, by table.
type replica struct {
	rels map[uint32]*protocol.Relation
	rows map[string]map[string]bool
}

func newReplica() *replica {
	return &replica{rels: map[uint32]*protocol.Relation{}, rows: map[string]map[string]bool{}}
}

// apply applies one frame; it reports whether the frame ends a
// transaction.
func (rp *replica) apply(t *testing.T, m protocol.Down) bool {
	t.Helper()
	switch m := m.(type) {
	case *protocol.Relation:
		rp.rels[m.RelID] = m
		if rp.rows[m.Table] == nil {
			rp.rows[m.Table] = map[string]bool{}
		}
	case *protocol.Txn:
		if m.Flags&protocol.FlagReset != 0 {
			for _, id := range m.Reset {
				clear(rp.rows[rp.rels[id].Table])
			}
		}
		for _, ch := range m.Changes {
			rel := rp.rels[ch.RelID]
			if len(rel.PK) != 1 || rel.PK[0] != 0 {
				t.Fatalf("table %s: the replica wants the key in the first column", rel.Table)
			}
			k := string(ch.Values[0].B)
			switch ch.Op {
			case protocol.OpInsert, protocol.OpUpdate:
				rp.rows[rel.Table][k] = true
			case protocol.OpDelete, protocol.OpMoveOut:
				delete(rp.rows[rel.Table], k)
			}
		}
		return m.Flags&protocol.FlagLast != 0
	case *protocol.Error:
		t.Fatalf("error: %+v", m)
	}
	return false
}

func (rp *replica) ids(table string) string {
	var out []string
	for k := range rp.rows[table] {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// sync reads frames into the replica until it holds want (table ->
// comma-separated sorted ids), or fails after 20 s.
func (rp *replica) sync(t *testing.T, r *rawConn, what string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for tb, w := range want {
			ok = ok && rp.ids(tb) == w
		}
		if ok {
			return
		}
		left := time.Until(deadline)
		var m protocol.Down
		var err error
		if left > 0 {
			m, err = r.nextWithin(left)
		}
		if left <= 0 || (err != nil && time.Until(deadline) <= 0) {
			for tb, w := range want {
				if got := rp.ids(tb); got != w {
					t.Errorf("%s: %s: the replica holds %q, want %q", what, tb, got, w)
				}
			}
			t.FailNow()
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		rp.apply(t, m)
	}
}

// subscribeReplica subscribes sh on a new raw connection, checks that
// the snapshot sends no row twice, and returns the replica.
func (e *env) subscribeReplica(t *testing.T, sh protocol.Shape) (*rawConn, *replica) {
	t.Helper()
	r := e.dialRaw(t)
	r.hello(e.token("bob"))
	rp := newReplica()
	r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{sh}})
	counts := map[string]int{}
	for {
		m, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if tx, ok := m.(*protocol.Txn); ok {
			for _, ch := range tx.Changes {
				counts[fmt.Sprint(ch.RelID, string(ch.Values[0].B))]++
			}
		}
		rp.apply(t, m)
		if s, ok := m.(*protocol.Subscribed); ok && s.ReqID == 1 {
			break
		}
	}
	for k, n := range counts {
		if n > 1 {
			t.Errorf("row %s sent %d times in the snapshot", k, n)
		}
	}
	return r, rp
}

// closureWant is what a replica of linearSQL holds for the issues that
// issuesSQL selects and the comments commentsSQL selects (the shape
// holds no other projects and users than their closure, plus p1).
func closureWant(e *env, issuesSQL, commentsSQL string) map[string]string {
	join := func(q string) string { return strings.Join(e.pgRows(q), ",") }
	return map[string]string{
		"issue":   join("SELECT id FROM issue WHERE id IN (" + issuesSQL + ") ORDER BY id"),
		"comment": join("SELECT id FROM comment WHERE id IN (" + commentsSQL + ") ORDER BY id"),
		"project": join("SELECT project_id FROM issue WHERE id IN (" + issuesSQL + ") UNION SELECT 'p1' ORDER BY 1"),
		"users":   join("SELECT DISTINCT assignee_id FROM issue WHERE id IN (" + issuesSQL + ") AND assignee_id IS NOT NULL ORDER BY 1"),
	}
}

// TestOverlappingIncludes: includes of one level over the same table with
// other where clauses hold the union of their rows, each row sent once
// per snapshot, and follow changes at every level. (The session
// evaluates a row that it reads again from the same snapshot at the
// reading node only: the second shape has a node that takes rows read
// earlier by others, and must keep them when those others let go.)
func TestOverlappingIncludes(t *testing.T) {
	e := newEnv(t, linearSQL+`
INSERT INTO issue VALUES ('i4', 'p1', 'u2', 'fourth', 'open'), ('i5', 'p1', NULL, 'fifth', 'wontfix');
INSERT INTO comment VALUES ('c5', 'i4', 'b'), ('c6', 'i5', 'b'), ('c7', 'i2', 'b');`, "users", "project", "issue", "comment")

	t.Run("siblings", func(t *testing.T) {
		// Open issues with all their comments; done issues with the
		// comments 'b'; every issue with the comments 'a'; issues not
		// 'wontfix' with their comments, and their comments' issues.
		sh := protocol.Shape{ID: "o", Table: "project", Where: "id = 'p1'", Include: []protocol.Include{
			{Table: "issue", Where: "status = 'open'", Include: []protocol.Include{{Table: "comment"}}},
			{Table: "issue", Where: "status = 'done'", Include: []protocol.Include{{Table: "comment", Where: "body = 'b'"}}},
			{Table: "issue", Include: []protocol.Include{{Table: "comment", Where: "body = 'a'"}}},
			{Table: "issue", Where: "status <> 'wontfix'", Include: []protocol.Include{{Table: "comment", Include: []protocol.Include{{Table: "issue"}}}}},
		}}
		r, rp := e.subscribeReplica(t, sh)
		want := func() map[string]string {
			return closureWant(e, "SELECT id FROM issue WHERE project_id = 'p1'",
				`SELECT c.id FROM comment c JOIN issue i ON i.id = c.issue_id WHERE i.project_id = 'p1' AND
				(i.status = 'open' OR (i.status = 'done' AND c.body = 'b') OR c.body = 'a' OR i.status <> 'wontfix')`)
		}
		rp.sync(t, r, "snapshot", want())
		for _, q := range []string{
			"UPDATE issue SET status = 'done' WHERE id = 'i1'",
			"UPDATE issue SET status = 'wontfix' WHERE id = 'i1'",             // only body 'a' holds c1
			"UPDATE issue SET project_id = 'p1' WHERE id = 'i3'",              // a move-in with c4
			"UPDATE issue SET status = 'wontfix' WHERE id IN ('i3', 'i4')",    // c4 and c5 leave
			"INSERT INTO comment VALUES ('c8', 'i5', 'a'), ('c9', 'i5', 'z')", // c8 in, c9 out
			"UPDATE issue SET project_id = 'p2' WHERE id IN ('i2', 'i5')",     // a move-out with comments
			"UPDATE issue SET status = 'open', project_id = 'p1'",             // everything in
			"DELETE FROM comment WHERE body = 'a'",
		} {
			e.exec(q)
			rp.sync(t, r, q, want())
		}
		e.exec("UPDATE issue SET project_id = CASE WHEN id = 'i3' THEN 'p2' ELSE 'p1' END, status = 'open'")
	})

	t.Run("deeper node over rows read before", func(t *testing.T) {
		e.exec(`DELETE FROM comment; DELETE FROM issue;
INSERT INTO issue VALUES ('i1', 'p1', 'u1', 'first', 'open'), ('i2', 'p1', NULL, 'second', 'done'),
	('i6', 'p2', 'u1', 'sixth', 'done'), ('i7', 'p1', 'u2', 'seventh', 'done'), ('i8', 'p2', 'u2', 'eighth', 'open')`)
		// X (depth 3): the issues of the assignees of open issues: i1,
		// i6. Y (depth 5): the issues of the projects of the issues of
		// the assignees of done issues: i7, i8 -> p1, p2 -> every issue;
		// it reads i6 after X did, and keeps it when X lets go.
		sh := protocol.Shape{ID: "d", Table: "project", Where: "id = 'p1'", Include: []protocol.Include{
			{Table: "issue", Where: "status = 'open'", Include: []protocol.Include{{Table: "users", Include: []protocol.Include{{Table: "issue"}}}}},
			{Table: "issue", Where: "status = 'done'", Include: []protocol.Include{{Table: "users", Include: []protocol.Include{{Table: "issue",
				Include: []protocol.Include{{Table: "project", Include: []protocol.Include{{Table: "issue", Where: "title <> 'zzz'"}}}}}}}}},
		}}
		r, rp := e.subscribeReplica(t, sh)
		want := func() map[string]string {
			return closureWant(e, `WITH b AS (SELECT * FROM issue WHERE project_id = 'p1' AND status = 'open'),
	x AS (SELECT * FROM issue WHERE assignee_id IN (SELECT assignee_id FROM b)),
	c AS (SELECT * FROM issue WHERE project_id = 'p1' AND status = 'done'),
	i AS (SELECT * FROM issue WHERE assignee_id IN (SELECT assignee_id FROM c)),
	y AS (SELECT * FROM issue WHERE project_id IN (SELECT project_id FROM i) AND title <> 'zzz')
SELECT id FROM b UNION SELECT id FROM x UNION SELECT id FROM c UNION SELECT id FROM i UNION SELECT id FROM y`, "SELECT NULL")
		}
		rp.sync(t, r, "snapshot", want())
		for _, q := range []string{
			"UPDATE issue SET status = 'wontfix' WHERE id = 'i1'", // X lets go of i6, Y keeps it
			"UPDATE issue SET title = 'zzz' WHERE id = 'i6'",      // and now Y too
			"UPDATE issue SET status = 'open', title = 'six' WHERE id IN ('i1', 'i6')",
			"UPDATE issue SET assignee_id = 'u1' WHERE id = 'i7'", // i8 leaves I: p2 leaves P3
			"UPDATE issue SET status = 'done', title = 'x'",
		} {
			e.exec(q)
			rp.sync(t, r, q, want())
		}
	})
}

// TestAbandonedSubscribe: a client that disconnects during a long
// snapshot stops the service's work for it at once (the session does
// not read on for a client that is gone, holding a Postgres connection
// and snapshot).
func TestAbandonedSubscribe(t *testing.T) {
	const n, rate = 4000, 1000 // 4 s of snapshot
	e := newEnv(t, fmt.Sprintf(`%s
INSERT INTO project VALUES ('big', 'Big');
INSERT INTO issue SELECT 'b' || g, 'big', NULL, 'issue ' || g, 'open' FROM generate_series(1, %[2]d) g;
CREATE TABLE bulk (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO bulk SELECT g, 'row ' || g FROM generate_series(1, %[2]d) g;`, linearSQL, n), "users", "project", "issue", "comment", "bulk")
	e.stop()
	e.cfg.SnapshotRowsPerSec = rate
	e.start()
	conns := func() float64 {
		m, err := scrapeMetrics(e.http.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return m["lattice_connections"]
	}
	// Pacing applies while the service is shared: another client stays
	// connected throughout.
	other := e.dialRaw(t)
	other.hello(e.token("other"))
	for _, sh := range []protocol.Shape{
		{ID: "a", Table: "bulk"},
		{ID: "a", Table: "project", Where: "id = 'big'", Include: []protocol.Include{{Table: "issue"}, {Table: "issue", Where: "status = 'open'"}}},
	} {
		r := e.dialRaw(t)
		r.hello(e.token("gone"))
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{sh}})
		time.Sleep(500 * time.Millisecond)
		if c := conns(); c != 2 {
			t.Fatalf("%d connections during the snapshot, want 2", int(c))
		}
		r.conn.CloseNow()
		t0 := time.Now()
		eventually(t, 10*time.Second, "the session to end", func() (bool, string) {
			c := conns()
			return c == 1, fmt.Sprintf("%v connections", c)
		})
		d := time.Since(t0)
		t.Logf("%s: the session ended %v after the client left", sh.Table, d.Round(time.Millisecond))
		if d > time.Second {
			t.Errorf("%s: the session went on for %v after its client left, in a snapshot of %.0f s", sh.Table, d, float64(n)/rate)
		}
	}
}

// TestSnapshotAloneUnpaced: a client alone on the service reads its
// initial data at full speed (pacing protects other clients; there are
// none), and is paced once another connects.
func TestSnapshotAloneUnpaced(t *testing.T) {
	const n, rate = 4000, 1000 // 4 s of snapshot when paced
	e := newEnv(t, fmt.Sprintf(`CREATE TABLE bulk (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO bulk SELECT g, 'row ' || g FROM generate_series(1, %d) g;`, n), "bulk")
	e.stop()
	e.cfg.SnapshotRowsPerSec = rate
	e.start()
	timed := func(who string) time.Duration {
		r := e.dialRaw(t)
		defer r.conn.CloseNow()
		r.hello(e.token(who))
		start := time.Now()
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "a", Table: "bulk"}}})
		if er, rows := r.answer(1); er != nil || rows != n {
			t.Fatalf("%s: %v, %d rows, want %d", who, er, rows, n)
		}
		return time.Since(start)
	}
	alone := timed("alone")
	other := e.dialRaw(t)
	other.hello(e.token("other"))
	shared := timed("shared")
	t.Logf("%d rows at --snapshot-rows-per-sec %d: alone %v, with another client connected %v", n, rate, alone.Round(time.Millisecond), shared.Round(time.Millisecond))
	if alone > 2*time.Second {
		t.Errorf("alone on the service: %d rows took %v (paced)", n, alone)
	}
	if shared < 2*time.Second {
		t.Errorf("with another client connected: %d rows in %v, faster than %d rows/s allows", n, shared, rate)
	}
}

// TestChunkedInterests: sessions that register (and drop) the router
// interests of thousands of rows at once, at subscribe and when rows move
// in and out, do so in chunks, while other sessions route the
// transactions being committed; no change is lost on either. (A smoke
// test: a chunk routed wrongly would lose a change only if a commit fell
// into the millisecond between two chunks.)
func TestChunkedInterests(t *testing.T) {
	const n = 5000
	e := newEnv(t, fmt.Sprintf(`%s
INSERT INTO project VALUES ('big', 'Big');
INSERT INTO issue SELECT 'b' || g, 'big', NULL, 'issue ' || g, 'open' FROM generate_series(1, %d) g;`, linearSQL, n), "users", "project", "issue", "comment")
	shape := `{"table":"project","where":"id = 'big'","include":{"issue":{"where":"status = 'open'"}}}`
	first, _ := e.clientAt(":memory:")
	e.subscribe(first, mustParseShape(t, shape))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, e.dbURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Titles change; some issues leave the shape and come back.
			q := "UPDATE issue SET title = $1, status = CASE WHEN status = 'open' AND $2 THEN 'done' ELSE 'open' END WHERE id = $3"
			if _, err := conn.Exec(ctx, q, fmt.Sprintf("t%d", i), i%3 == 0, fmt.Sprintf("b%d", 1+(i*7919)%n)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 3 {
		c, stopC := e.clientAt(":memory:")
		e.subscribe(c, mustParseShape(t, shape))
		stopC() // its session drops the interests again
	}
	second, _ := e.clientAt(":memory:")
	e.subscribe(second, mustParseShape(t, shape))
	// All issues out and in again, in single transactions: thousands of
	// interests dropped and registered in the stream's processing.
	e.exec("UPDATE issue SET status = 'moved' WHERE project_id = 'big' AND status = 'open'")
	e.exec("UPDATE issue SET status = 'open' WHERE project_id = 'big' AND status = 'moved'")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	pg := "SELECT id, title FROM issue WHERE project_id = 'big' AND status = 'open' ORDER BY id"
	local := "SELECT id, title FROM issue ORDER BY id"
	waitEqual(t, e, first, pg, local)
	waitEqual(t, e, second, pg, local)
}
