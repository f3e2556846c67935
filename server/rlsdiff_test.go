package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/client"
)

// rlsDiffSQL is rlsSQL plus an audit of every write to issue: who wrote
// it, as which role. A client's write (request.jwt.claim.sub set) must run
// as the auth role, or a policy could have been bypassed.
var rlsDiffSQL = rlsSQL + `
CREATE TABLE audit (n bigserial PRIMARY KEY, usr text, sub text, op text, id text);
GRANT INSERT ON audit TO ` + rlsRole + `;
GRANT USAGE ON SEQUENCE audit_n_seq TO ` + rlsRole + `;
CREATE FUNCTION audit_issue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit (usr, sub, op, id) VALUES (current_user, coalesce(current_setting('request.jwt.claim.sub', true), ''), TG_OP,
    coalesce(NEW.id, OLD.id));
  RETURN NULL;
END $$;
CREATE TRIGGER audit_issue AFTER INSERT OR UPDATE OR DELETE ON issue FOR EACH ROW EXECUTE FUNCTION audit_issue();
`

// The two issue read policies a run switches between.
var rlsReadPolicies = []string{
	`CREATE POLICY issue_read ON issue FOR SELECT USING (project_id IN (SELECT project_id FROM member WHERE user_id = ` + claimSub + `) OR owner = ` + claimSub + `)`,
	`CREATE POLICY issue_read ON issue FOR SELECT USING (EXISTS (SELECT 1 FROM member m WHERE m.project_id = issue.project_id AND m.user_id = ` + claimSub + `) AND owner IS DISTINCT FROM 'carol')`,
}

// TestRLSDifferential: random plain-SQL and client writes, membership
// changes, policy changes and service restarts; at quiescence every
// client holds exactly the rows Postgres lets its user read (SET ROLE with
// the user's claims), and every client write ran as the auth role.
// LATTICE_RLS_SEEDS=N runs N seeds (default 2), LATTICE_RLS_OPS ops per
// seed (default 80), LATTICE_RLS_SEED the first seed (alone, just it).
func TestRLSDifferential(t *testing.T) {
	seeds, ops := 2, 80
	if v, err := strconv.Atoi(os.Getenv("LATTICE_RLS_SEEDS")); err == nil && v > 0 {
		seeds = v
	}
	if v, err := strconv.Atoi(os.Getenv("LATTICE_RLS_OPS")); err == nil && v > 0 {
		ops = v
	}
	first := uint64(1)
	if v, err := strconv.ParseUint(os.Getenv("LATTICE_RLS_SEED"), 10, 64); err == nil {
		first = v
		if os.Getenv("LATTICE_RLS_SEEDS") == "" {
			seeds = 1
		}
	}
	for seed := first; seed < first+uint64(seeds); seed++ {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) { rlsDiffRun(t, seed, ops) })
	}
}

func rlsDiffRun(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	e := newRLSEnv(t, rlsDiffSQL, "project", "member", "issue")
	users := []string{"alice", "bob", "carol", "dave"}
	projects := []string{"p1", "p2", "p3"}
	clients := map[string]*client.Client{}
	for i, u := range users {
		c := e.clientAs(u)
		clients[u] = c
		if i%2 == 0 {
			e.subscribe(c, client.Shape{Table: "issue"})
			e.subscribe(c, client.Shape{Table: "project"})
		} else {
			// A relational shape: projects with their issues.
			e.subscribe(c, mustParseShape(t, `{"table":"project","include":{"issue":{}}}`))
		}
	}
	ctx := context.Background()
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	owner := func() string {
		if rng.IntN(4) == 0 {
			return "NULL"
		}
		return "'" + pick(users) + "'"
	}
	title := func() string {
		if rng.IntN(8) == 0 {
			return "hidden"
		}
		return fmt.Sprint("t", rng.IntN(1000))
	}
	// Plain SQL can deadlock with the service's writes (as any two
	// writers can): such a statement is run again, as an app would.
	sql := func(q string) {
		t.Helper()
		ctx := context.Background()
		for attempt := 0; ; attempt++ {
			conn, err := pgx.Connect(ctx, e.dbURL)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			_, err = conn.Exec(ctx, q)
			conn.Close(ctx)
			var pe *pgconn.PgError
			if err == nil {
				return
			}
			if errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") && attempt < 10 {
				continue
			}
			t.Fatalf("exec %q: %v", q, err)
		}
	}
	policy := 0
	next := 0
	for op := 0; op < ops; op++ {
		switch r := rng.IntN(100); {
		case r < 25: // plain SQL write of an issue
			id := fmt.Sprint("i", rng.IntN(12))
			switch rng.IntN(3) {
			case 0:
				sql(fmt.Sprintf("INSERT INTO issue VALUES ('%s', '%s', %s, '%s') ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, owner = excluded.owner, title = excluded.title",
					id, pick(projects), owner(), title()))
			case 1:
				sql(fmt.Sprintf("UPDATE issue SET project_id = '%s' WHERE id = '%s'", pick(projects), id))
			default:
				sql(fmt.Sprintf("DELETE FROM issue WHERE id = '%s'", id))
			}
		case r < 45: // membership
			if rng.IntN(2) == 0 {
				sql(fmt.Sprintf("INSERT INTO member VALUES ('%s', '%s') ON CONFLICT DO NOTHING", pick(projects), pick(users)))
			} else {
				sql(fmt.Sprintf("DELETE FROM member WHERE project_id = '%s' AND user_id = '%s'", pick(projects), pick(users)))
			}
		case r < 85: // a client writes (some are denied)
			u := pick(users)
			c := clients[u]
			switch rng.IntN(4) {
			case 0, 1:
				next++
				id := fmt.Sprint("w", next)
				if rng.IntN(3) == 0 {
					id = fmt.Sprint("i", rng.IntN(12)) // may be a row the user cannot read
				}
				c.Exec(ctx, fmt.Sprintf("INSERT INTO issue (id, project_id, owner, title) VALUES ('%s', '%s', '%s', '%s')", id, pick(projects), u, title()))
			case 2:
				c.Exec(ctx, fmt.Sprintf("UPDATE issue SET title = '%s' WHERE id IN (SELECT id FROM issue ORDER BY id LIMIT 1 OFFSET %d)", title(), rng.IntN(4)))
			default:
				c.Exec(ctx, fmt.Sprintf("DELETE FROM issue WHERE id IN (SELECT id FROM issue ORDER BY id LIMIT 1 OFFSET %d)", rng.IntN(4)))
			}
		case r < 93: // let the stream catch up now and then
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		case r < 97: // a policy change
			policy = 1 - policy
			sql("BEGIN; DROP POLICY issue_read ON issue; " + rlsReadPolicies[policy] + "; COMMIT")
		default:
			e.restart()
		}
	}
	for _, u := range users {
		c := clients[u]
		eventually(t, 60*time.Second, u+" has nothing pending", func() (bool, string) {
			return c.PendingCount() == 0, fmt.Sprint(c.PendingCount())
		})
	}
	for i, u := range users {
		c := clients[u]
		waitAsPG(t, e, c, u, "SELECT id, name FROM project ORDER BY id")
		if i%2 == 0 {
			waitAsPG(t, e, c, u, "SELECT id, project_id, owner, title FROM issue ORDER BY id")
			continue
		}
		// The relational client: the readable issues of readable projects.
		const local = "SELECT id, project_id, owner, title FROM issue ORDER BY id"
		const pg = "SELECT id, project_id, owner, title FROM issue WHERE project_id IN (SELECT id FROM project) ORDER BY id"
		eventually(t, 20*time.Second, u+": issues of readable projects", func() (bool, string) {
			want, got := e.pgRowsAs(u, pg), localRows(t, c, local)
			return equalStrings(got, want), fmt.Sprintf("client %v, postgres as %s %v", got, u, want)
		})
	}
	if rows := e.pgRows("SELECT count(*) FROM audit WHERE sub <> '' AND usr <> '" + rlsRole + "'"); rows[0] != "0" {
		t.Fatalf("client writes that did not run as %s: %v %v", rlsRole, rows, e.pgRows("SELECT usr, sub, op, id FROM audit WHERE sub <> '' AND usr <> '"+rlsRole+"'"))
	}
	if rows := e.pgRows("SELECT count(*) FROM audit WHERE sub <> ''"); rows[0] == "0" {
		t.Fatalf("no client write reached postgres: the run tests nothing")
	}
}
