package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
)

// The role clients act as in these tests. Roles are cluster-wide: it is
// created once, idempotently.
const rlsRole = "lattice_test_user"

const claimSub = `(current_setting('request.jwt.claims', true)::jsonb ->> 'sub')`

// rlsSQL: projects visible to their members, issues to the members of
// their project or to their owner, a membership table whose rows each
// user sees of their own.
var rlsSQL = `
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + rlsRole + `') THEN CREATE ROLE ` + rlsRole + ` NOLOGIN; END IF;
END $$;
CREATE TABLE project (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE member (project_id text NOT NULL REFERENCES project(id), user_id text NOT NULL, PRIMARY KEY (project_id, user_id));
CREATE TABLE issue (id text PRIMARY KEY, project_id text NOT NULL REFERENCES project(id), owner text, title text NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON project, member, issue TO ` + rlsRole + `;
ALTER TABLE project ENABLE ROW LEVEL SECURITY;
ALTER TABLE member ENABLE ROW LEVEL SECURITY;
ALTER TABLE issue ENABLE ROW LEVEL SECURITY;
CREATE POLICY member_own ON member FOR SELECT USING (user_id = ` + claimSub + `);
CREATE POLICY project_members ON project FOR SELECT USING (EXISTS (SELECT 1 FROM member m WHERE m.project_id = project.id AND m.user_id = ` + claimSub + `));
CREATE POLICY issue_read ON issue FOR SELECT USING (project_id IN (SELECT project_id FROM member WHERE user_id = ` + claimSub + `) OR owner = ` + claimSub + `);
CREATE POLICY issue_hidden ON issue AS RESTRICTIVE FOR SELECT USING (title <> 'hidden');
CREATE POLICY issue_insert ON issue FOR INSERT WITH CHECK (project_id IN (SELECT project_id FROM member WHERE user_id = ` + claimSub + `));
CREATE POLICY issue_update ON issue FOR UPDATE USING (project_id IN (SELECT project_id FROM member WHERE user_id = ` + claimSub + `));
CREATE POLICY issue_delete ON issue FOR DELETE USING (owner = ` + claimSub + `);
INSERT INTO project VALUES ('p1', 'One'), ('p2', 'Two'), ('p3', 'Three');
INSERT INTO member VALUES ('p1', 'alice'), ('p2', 'bob'), ('p3', 'bob');
INSERT INTO issue VALUES ('i1', 'p1', 'bob', 'one'), ('i2', 'p2', 'bob', 'two'), ('i3', 'p2', 'alice', 'three'),
  ('i4', 'p3', NULL, 'four'), ('i5', 'p1', NULL, 'hidden');
`

// newRLSEnv is newEnv with --auth-role.
func newRLSEnv(t testing.TB, setup string, tables ...string) *env {
	t.Helper()
	e := &env{t: t, dbURL: pgtest.DB(t)}
	pgtest.Exec(t, e.dbURL, setup)
	e.cfg = server.Config{
		DatabaseURL: e.dbURL,
		Auth:        auth.Config{Secret: testSecret},
		DataDir:     filepath.Join(t.TempDir(), "data"),
		Logger:      testLogger(t),
		AuthRole:    rlsRole,
		PolicyPoll:  50 * time.Millisecond,
	}
	e.start()
	for _, tb := range tables {
		e.exec("CALL lattice.electrify('" + tb + "')")
	}
	// Restarted, it reads the policies of the electrified tables at once.
	e.restart()
	return e
}

// clientAs opens a client for user sub.
func (e *env) clientAs(sub string) *client.Client {
	e.t.Helper()
	c, _ := e.clientAsAt(sub, ":memory:")
	return c
}

// clientAsAt opens a client for user sub on path; stop ends it.
func (e *env) clientAsAt(sub, path string) (c *client.Client, stop func()) {
	e.t.Helper()
	return e.clientFor(sub, path, testLogger(e.t))
}

// pgRowsAs runs a query in Postgres as the auth role with sub's claims:
// what the user may read.
func (e *env) pgRowsAs(sub, sql string) []string {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`,
		rlsRole, fmt.Sprintf(`{"sub":%q}`, sub)); err != nil {
		e.t.Fatal(err)
	}
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			e.t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmtValue(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

// waitAsPG waits until the client holds exactly what sub may read.
func waitAsPG(t *testing.T, e *env, c *client.Client, sub, sql string) {
	t.Helper()
	eventually(t, 20*time.Second, sub+": "+sql, func() (bool, string) {
		want := e.pgRowsAs(sub, sql)
		got := localRows(t, c, sql)
		return equalStrings(got, want), fmt.Sprintf("client %v, postgres as %s %v", got, sub, want)
	})
}

// TestRLSReads: each user holds exactly the rows the policies let them
// read, through snapshots and the live stream; membership changes move
// rows in and out live.
func TestRLSReads(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	alice, bob := e.clientAs("alice"), e.clientAs("bob")
	for _, c := range []*client.Client{alice, bob} {
		e.subscribe(c, client.Shape{Table: "issue"})
		e.subscribe(c, client.Shape{Table: "project"})
	}
	const qi, qp = "SELECT id, project_id, owner, title FROM issue ORDER BY id", "SELECT id FROM project ORDER BY id"
	check := func(want map[string][]string) {
		t.Helper()
		for sub, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
			waitAsPG(t, e, c, sub, qi)
			waitAsPG(t, e, c, sub, qp)
			if w, ok := want[sub]; ok {
				waitLocal(t, c, "SELECT id FROM issue ORDER BY id", w...)
			}
		}
	}
	check(map[string][]string{"alice": {"i1", "i3"}, "bob": {"i1", "i2", "i3", "i4"}})

	// A membership row inserted: p2's issues and p2 itself move in.
	e.exec("INSERT INTO member VALUES ('p2', 'alice')")
	check(map[string][]string{"alice": {"i1", "i2", "i3"}})
	waitLocal(t, alice, qp, "p1", "p2")
	// Deleted: they move out, except i3 that alice owns.
	e.exec("DELETE FROM member WHERE project_id = 'p2' AND user_id = 'alice'")
	check(map[string][]string{"alice": {"i1", "i3"}})
	waitLocal(t, alice, qp, "p1")
	// A row that changes out of access (and back), a restrictive policy.
	e.exec("UPDATE issue SET project_id = 'p3' WHERE id = 'i1'")
	check(map[string][]string{"alice": {"i3"}, "bob": {"i1", "i2", "i3", "i4"}})
	e.exec("UPDATE issue SET title = 'hidden' WHERE id = 'i3'")
	check(map[string][]string{"alice": {}})
	e.exec("UPDATE issue SET title = 'visible', project_id = 'p1' WHERE id IN ('i1', 'i3')")
	check(map[string][]string{"alice": {"i1", "i3"}})
	// Membership and rows change in one transaction.
	e.exec("BEGIN; INSERT INTO member VALUES ('p3', 'alice'); INSERT INTO issue VALUES ('i6', 'p3', NULL, 'six'); COMMIT")
	check(map[string][]string{"alice": {"i1", "i3", "i4", "i6"}})
	// The membership table itself: each user holds their own rows only.
	e.subscribe(alice, client.Shape{Table: "member"})
	waitAsPG(t, e, alice, "alice", "SELECT project_id, user_id FROM member ORDER BY 1, 2")
	// Policy change without a restart: issues only for their owners.
	e.exec("DROP POLICY issue_read ON issue; CREATE POLICY issue_read ON issue FOR SELECT USING (owner = " + claimSub + ")")
	check(map[string][]string{"alice": {"i3"}, "bob": {"i1", "i2"}})
}

// TestRLSWrites: writes run as the user; denied transactions are
// rejected whole with permission_denied, undone locally, and the restore
// does not reveal rows the user may not read.
func TestRLSWrites(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	alice := e.clientAs("alice")
	e.subscribe(alice, client.Shape{Table: "issue"})
	const qi = "SELECT id, project_id, owner, title FROM issue ORDER BY id"
	waitAsPG(t, e, alice, "alice", qi)
	ctx := context.Background()
	rejected := func(what string) {
		t.Helper()
		eventually(t, 20*time.Second, what+" rejected", func() (bool, string) {
			var rej *client.RejectedError
			err := alice.Status().LastError
			return errors.As(err, &rej) && rej.Code == "permission_denied", fmt.Sprint(err)
		})
		eventually(t, 20*time.Second, "nothing pending", func() (bool, string) {
			return alice.PendingCount() == 0, fmt.Sprint(alice.PendingCount())
		})
		waitAsPG(t, e, alice, "alice", qi)
	}
	// Allowed: an insert into her project.
	if err := alice.Exec(ctx, "INSERT INTO issue (id, project_id, owner, title) VALUES ('a1', 'p1', 'alice', 'mine')"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a1 in postgres", func() (bool, string) {
		rows := e.pgRows("SELECT title FROM issue WHERE id = 'a1'")
		return len(rows) == 1, fmt.Sprint(rows)
	})
	// WITH CHECK: an insert into a project she is not a member of, in a
	// transaction with an allowed one: nothing of it reaches Postgres.
	if err := alice.Exec(ctx, "INSERT INTO issue (id, project_id, owner, title) VALUES ('a2', 'p1', 'alice', 'ok'), ('a3', 'p2', 'alice', 'not mine')"); err != nil {
		t.Fatal(err)
	}
	rejected("insert into p2")
	if rows := e.pgRows("SELECT id FROM issue WHERE id IN ('a2', 'a3')"); len(rows) != 0 {
		t.Fatalf("a denied transaction reached postgres: %v", rows)
	}
	// A write to a row she may not read (i2, in p2): an insert with its key
	// would merge into it; it is denied, and the restore does not show i2.
	if err := alice.Exec(ctx, "INSERT INTO issue (id, project_id, owner, title) VALUES ('i2', 'p1', 'alice', 'taken over')"); err != nil {
		t.Fatal(err)
	}
	rejected("write to an unreadable row")
	if rows := e.pgRows("SELECT project_id, title FROM issue WHERE id = 'i2'"); rows[0] != "p2|two" {
		t.Fatalf("i2 changed: %v", rows)
	}
	if rows := localRows(t, alice, "SELECT id FROM issue WHERE id = 'i2'"); len(rows) != 0 {
		t.Fatalf("the restore revealed i2: %v", rows)
	}
	// UPDATE policy: i3 is hers (owner) but in p2: readable, not updatable.
	if err := alice.Exec(ctx, "UPDATE issue SET title = 'renamed' WHERE id = 'i3'"); err != nil {
		t.Fatal(err)
	}
	rejected("update without the UPDATE policy")
	if rows := e.pgRows("SELECT title FROM issue WHERE id = 'i3'"); rows[0] != "three" {
		t.Fatalf("i3 changed: %v", rows)
	}
	// DELETE policy: only owners delete; i1 is bob's.
	if err := alice.Exec(ctx, "DELETE FROM issue WHERE id = 'i1'"); err != nil {
		t.Fatal(err)
	}
	rejected("delete of another's issue")
	if rows := e.pgRows("SELECT count(*) FROM issue WHERE id = 'i1'"); rows[0] != "1" {
		t.Fatalf("i1 deleted: %v", rows)
	}
	// A write-only insert: the INSERT policy allows it, the SELECT
	// policies do not let her read it back: it is applied, and moves out.
	if err := alice.Exec(ctx, "INSERT INTO issue (id, project_id, owner, title) VALUES ('a4', 'p1', 'alice', 'hidden')"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a4 in postgres", func() (bool, string) {
		rows := e.pgRows("SELECT title FROM issue WHERE id = 'a4'")
		return len(rows) == 1, fmt.Sprint(rows)
	})
	waitAsPG(t, e, alice, "alice", qi)
	// Allowed update and delete go on.
	if err := alice.Exec(ctx, "UPDATE issue SET title = 'edited' WHERE id = 'a1'"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Exec(ctx, "DELETE FROM issue WHERE id = 'a1'"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a1 deleted", func() (bool, string) {
		rows := e.pgRows("SELECT count(*) FROM issue WHERE id = 'a1'")
		return rows[0] == "0", fmt.Sprint(rows)
	})
	waitAsPG(t, e, alice, "alice", qi)
}

// TestRLSIncludesAndParents: a relational shape holds only readable rows
// at every level; a referenced parent the user may not read is not sent.
func TestRLSIncludesAndParents(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	alice := e.clientAs("alice")
	e.subscribe(alice, mustParseShape(t, `{"table":"project","include":{"issue":{}}}`))
	waitLocal(t, alice, "SELECT id FROM project ORDER BY id", "p1")
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1")
	// i3 (hers, in p2) comes with a flat shape, but its project does not.
	e.subscribe(alice, client.Shape{Table: "issue", Where: "owner = 'alice'"})
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	waitLocal(t, alice, "SELECT id FROM project ORDER BY id", "p1")
	// Membership in p2: the include brings p2 and its readable issues.
	e.exec("INSERT INTO member VALUES ('p2', 'alice')")
	waitLocal(t, alice, "SELECT id FROM project ORDER BY id", "p1", "p2")
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1", "i2", "i3")
	e.exec("DELETE FROM member WHERE project_id = 'p2' AND user_id = 'alice'")
	waitLocal(t, alice, "SELECT id FROM project ORDER BY id", "p1")
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1", "i3")
}

// TestRLSToastUnchanged: a policy on a large (TOASTed) column is judged
// on its value when an update leaves it unchanged (pgoutput sends it as
// "unchanged").
func TestRLSToastUnchanged(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	big := strings.Repeat("x", 9000) + fmt.Sprint(time.Now().UnixNano())
	e.exec("INSERT INTO issue VALUES ('big', 'p2', NULL, $1)", big)
	e.exec("ALTER TABLE issue ALTER COLUMN title SET STORAGE EXTERNAL")
	e.exec("UPDATE issue SET title = title || 'y' WHERE id = 'big'")
	alice := e.clientAs("alice")
	e.subscribe(alice, client.Shape{Table: "issue"})
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	// The update that moves it into her access leaves title unchanged.
	e.exec("UPDATE issue SET project_id = 'p1' WHERE id = 'big'")
	waitLocal(t, alice, "SELECT id, length(title) FROM issue WHERE id = 'big'", "big|"+fmt.Sprint(len(big)+1))
	e.exec("UPDATE issue SET owner = 'carol' WHERE id = 'big'")
	e.exec("UPDATE issue SET title = 'hidden' WHERE id = 'big'")
	waitLocal(t, alice, "SELECT id FROM issue ORDER BY id", "i1", "i3")
}

// TestRLSOfflineResync: a client that was away while it lost access holds
// none of the rows when it comes back (it re-syncs as the user).
func TestRLSOfflineResync(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	path := filepath.Join(t.TempDir(), "alice.db")
	c, stop := e.clientAsAt("alice", path)
	e.subscribe(c, client.Shape{Table: "issue"})
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	stop()
	e.exec("DELETE FROM member WHERE user_id = 'alice'")
	e.exec("INSERT INTO member VALUES ('p3', 'alice')")
	c, _ = e.clientAsAt("alice", path)
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i3", "i4")
}

// TestRLSUnsupportedPolicy: a policy the service cannot enforce on the
// stream stops it at start, naming the policy; created while it runs, it
// closes the table to clients and /readyz says why.
func TestRLSUnsupportedPolicy(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	alice := e.clientAs("alice")
	e.subscribe(alice, client.Shape{Table: "issue"})
	e.exec("CREATE POLICY issue_clock ON issue AS RESTRICTIVE FOR SELECT USING (now() > '2000-01-01')")
	eventually(t, 20*time.Second, "readyz names the policy", func() (bool, string) {
		code, body := e.health()
		return code == 503 && strings.Contains(body, `"issue_clock"`), fmt.Sprint(code, body)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := alice.Subscribe(ctx, client.Shape{Table: "issue", Where: "owner = 'x'"})
	if err == nil {
		err = sub.Synced(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "issue_clock") {
		t.Fatalf("subscribe to a closed table: %v", err)
	}
	e.stop()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	_, err = server.Start(ctx2, e.cfg)
	if err == nil || !strings.Contains(err.Error(), `"issue_clock"`) || !strings.Contains(err.Error(), "now") {
		t.Fatalf("start with an unsupported policy: %v", err)
	}
}

func (e *env) health() (int, string) {
	resp, err := http.Get(e.http.URL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRLSIntegerKeys: membership sets over integer columns (read from
// Postgres in text form, matched against the stream's values), and a
// membership change moving 100 rows in and out.
func TestRLSIntegerKeys(t *testing.T) {
	e := newRLSEnv(t, rlsBenchSQL, "rb_member", "rb_item")
	c := e.clientAs("u1")
	e.subscribe(c, client.Shape{Table: "rb_item"})
	const q = "SELECT count(*), min(id), max(id) FROM rb_item"
	waitAsPG(t, e, c, "u1", q)
	e.exec("INSERT INTO rb_member VALUES (11, 'u1')")
	waitLocal(t, c, q, "200|1|100100")
	e.exec("DELETE FROM rb_member WHERE project_id = 11")
	waitAsPG(t, e, c, "u1", q)
	waitLocal(t, c, "SELECT count(*) FROM rb_item WHERE project_id = 11", "0")
}

// TestRLSResyncAfterRetention: a client whose position fell out of the
// retained log re-syncs as its user: what it lost access to meanwhile is
// gone, what it gained is there.
func TestRLSResyncAfterRetention(t *testing.T) {
	e := newRLSEnv(t, rlsSQL, "project", "member", "issue")
	e.stop()
	e.cfg.LogSegmentBytes = 4 << 10
	e.cfg.LogMaxBytes = 16 << 10
	e.start()
	path := filepath.Join(t.TempDir(), "alice.db")
	c, stop := e.clientAsAt("alice", path)
	e.subscribe(c, client.Shape{Table: "issue"})
	waitLocal(t, c, "SELECT id FROM issue ORDER BY id", "i1", "i3")
	stop()
	e.exec("DELETE FROM member WHERE user_id = 'alice'")
	e.exec("INSERT INTO member VALUES ('p3', 'alice')")
	for i := 0; i < 60; i++ {
		e.exec("UPDATE issue SET title = repeat('x', 300) || $1 WHERE id = 'i2'", fmt.Sprint(i))
	}
	_, lsn := c.Position()
	eventually(t, 20*time.Second, "retention to pass the client's position", func() (bool, string) {
		tt := e.svc.TruncatedThrough()
		return tt > lsn, fmt.Sprintf("truncated through %d, client at %d", tt, lsn)
	})
	c2, _ := e.clientAsAt("alice", path)
	waitLocal(t, c2, "SELECT id FROM issue ORDER BY id", "i3", "i4")
	waitAsPG(t, e, c2, "alice", "SELECT id, project_id, owner, title FROM issue ORDER BY id")
}

// TestRLSCustomClaims: policies see the token's whole claims object, and
// Supabase-style helpers (auth.uid(), auth.jwt()) work where they exist.
func TestRLSCustomClaims(t *testing.T) {
	e := newRLSEnv(t, `
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+rlsRole+`') THEN CREATE ROLE `+rlsRole+` NOLOGIN; END IF;
END $$;
CREATE SCHEMA auth;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;
CREATE FUNCTION auth.uid() RETURNS text LANGUAGE sql STABLE AS $$ SELECT auth.jwt() ->> 'sub' $$;
GRANT USAGE ON SCHEMA auth TO `+rlsRole+`;
CREATE TABLE doc (id int PRIMARY KEY, org int NOT NULL, owner text, secret boolean NOT NULL DEFAULT false);
GRANT SELECT ON doc TO `+rlsRole+`;
ALTER TABLE doc ENABLE ROW LEVEL SECURITY;
CREATE POLICY doc_org ON doc FOR SELECT USING (org = (auth.jwt() ->> 'org')::int AND (NOT secret OR (auth.jwt() ->> 'role') = 'admin'));
CREATE POLICY doc_own ON doc FOR SELECT USING (owner = auth.uid());
INSERT INTO doc VALUES (1, 7, NULL, false), (2, 7, NULL, true), (3, 8, NULL, false), (4, 8, 'ann', true);
`, "doc")
	sign := func(sub string, extra map[string]any) string {
		tok, err := auth.SignHMAC(testSecret, sub, time.Hour, extra)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	open := func(tok string) *client.Client {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := client.Open(ctx, ":memory:", &client.Options{URL: e.url, Token: tok, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		go c.Run(ctx)
		t.Cleanup(func() { cancel(); c.Close() })
		e.subscribe(c, client.Shape{Table: "doc"})
		return c
	}
	ann := open(sign("ann", map[string]any{"org": 7}))
	boss := open(sign("boss", map[string]any{"org": 7, "role": "admin"}))
	waitLocal(t, ann, "SELECT id FROM doc ORDER BY id", "1", "4")
	waitLocal(t, boss, "SELECT id FROM doc ORDER BY id", "1", "2")
	e.exec("UPDATE doc SET org = 7 WHERE id = 3")
	waitLocal(t, ann, "SELECT id FROM doc ORDER BY id", "1", "3", "4")
	waitLocal(t, boss, "SELECT id FROM doc ORDER BY id", "1", "2", "3")
}
