package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/latticesync/lattice/internal/pgtest"
)

// doctor runs lattice doctor on url and returns its output and exit status.
func runDoctor(t *testing.T, url string, args ...string) (string, int) {
	t.Helper()
	out, err := runCLI(t, []string{"DATABASE_URL=" + url, "LATTICE_AUTH_ROLE="}, append([]string{"doctor"}, args...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	default:
		t.Fatalf("run doctor: %v", err)
		return "", 0
	}
}

// fixes are the fix lines of doctor's output, each a statement to run.
func fixes(out string) []string {
	var sql []string
	for _, line := range strings.Split(out, "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "fix: "); ok {
			sql = append(sql, f)
		}
	}
	return sql
}

// healthyDB is a database as lattice serve leaves it: bootstrapped, one
// table electrified.
func healthyDB(t *testing.T) string {
	t.Helper()
	url := pgtest.DB(t)
	pgExec(t, url, `CREATE TABLE items (id int PRIMARY KEY, title text, done boolean)`)
	if out, err := runCLI(t, []string{"DATABASE_URL=" + url}, "electrify", "items"); err != nil {
		t.Fatalf("electrify: %v\n%s", err, out)
	}
	return url
}

func TestDoctorHealthy(t *testing.T) {
	url := healthyDB(t)
	out, code := runDoctor(t, url)
	if code != 0 || !strings.Contains(out, "all ") || !strings.Contains(out, "table items: primary key") {
		t.Fatalf("healthy database: exit %d\n%s", code, out)
	}
	// A fresh database is healthy too: lattice serve creates what is missing.
	fresh := pgtest.DB(t)
	if out, code := runDoctor(t, fresh); code != 0 || !strings.Contains(out, "not created yet") {
		t.Fatalf("fresh database: exit %d\n%s", code, out)
	}
}

func TestDoctorCannotConnect(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	out, code := runDoctor(t, "postgres://nobody@"+addr+"/x?sslmode=disable&connect_timeout=5")
	if code != 2 || !strings.Contains(out, "connect to postgres") {
		t.Fatalf("unreachable database: exit %d\n%s", code, out)
	}
	if out, code := runDoctor(t, "", "stray"); code != 2 {
		t.Fatalf("usage error: exit %d\n%s", code, out)
	}
}

func TestDoctorWalLevelReplica(t *testing.T) {
	pg, err := pgtest.Start(context.Background(), &pgtest.Options{WalLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	out, code := runDoctor(t, pg.URL("postgres"))
	if code != 1 || !strings.Contains(out, "error  wal_level: wal_level = replica") ||
		!strings.Contains(out, "fix: ALTER SYSTEM SET wal_level = logical;") {
		t.Fatalf("wal_level=replica: exit %d\n%s", code, out)
	}
}

func TestDoctorRoleWithoutReplication(t *testing.T) {
	url := healthyDB(t)
	dbName := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	pgExec(t, url, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'doctor_norepl') THEN CREATE ROLE doctor_norepl LOGIN; END IF;
		END $$`)
	pgExec(t, url, fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO doctor_norepl`, dbName))
	srv := pgtest.Shared(t)
	asRole := fmt.Sprintf("postgres://doctor_norepl@127.0.0.1:%d/%s?sslmode=disable", srv.Port, dbName)
	out, code := runDoctor(t, asRole)
	if code != 1 || !strings.Contains(out, "error  role doctor_norepl: no REPLICATION attribute") ||
		!strings.Contains(out, `fix: ALTER ROLE "doctor_norepl" WITH REPLICATION;`) ||
		!strings.Contains(out, `error  schema lattice: belongs to role`) {
		t.Fatalf("role without REPLICATION: exit %d\n%s", code, out)
	}
}

// TestDoctorTableProblems breaks an electrified table in the ways doctor
// reports, and applies the printed fixes where they are exact SQL.
func TestDoctorTableProblems(t *testing.T) {
	cases := []struct {
		name     string
		breakSQL string
		want     []string
		// applyFix: the printed fix lines are run, and doctor must pass after.
		applyFix bool
	}{
		{"missing trigger", `DROP TRIGGER lattice_stamp ON items`,
			[]string{"error  table items: trigger lattice_stamp is missing", "fix: CALL lattice.electrify('items');"}, true},
		{"disabled trigger", `ALTER TABLE items DISABLE TRIGGER lattice_stamp_insert`,
			[]string{"trigger lattice_stamp_insert is disabled", "fix: ALTER TABLE items ENABLE TRIGGER lattice_stamp_insert;"}, true},
		{"missing publication member", `ALTER PUBLICATION lattice DROP TABLE items`,
			[]string{"error  table items: not in publication lattice", "fix: ALTER PUBLICATION lattice ADD TABLE items;"}, true},
		{"replica identity", `ALTER TABLE items REPLICA IDENTITY DEFAULT`,
			[]string{"replica identity is DEFAULT", "fix: ALTER TABLE items REPLICA IDENTITY FULL;"}, true},
		{"publication actions", `ALTER PUBLICATION lattice SET (publish = 'insert, update')`,
			[]string{"error  publication lattice: does not publish every change", "fix: ALTER PUBLICATION lattice SET (publish = 'insert, update, delete, truncate');"}, true},
		// The schema event trigger refuses this DDL; a Postgres where the
		// service could not create event triggers (or one disabled by hand)
		// lets it through, and doctor is what reports it.
		{"no primary key", `ALTER EVENT TRIGGER lattice_ddl_end DISABLE; ALTER EVENT TRIGGER lattice_sql_drop DISABLE; ALTER TABLE items DROP CONSTRAINT items_pkey`,
			[]string{"error  table items: no primary key", "fix: ALTER TABLE items ADD PRIMARY KEY (id);"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := healthyDB(t)
			pgExec(t, url, c.breakSQL)
			out, code := runDoctor(t, url)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output does not say %q:\n%s", w, out)
				}
			}
			if !c.applyFix {
				return
			}
			for _, sql := range fixes(out) {
				pgExec(t, url, sql)
			}
			if out, code := runDoctor(t, url); code != 0 {
				t.Fatalf("after the fixes: exit %d\n%s", code, out)
			}
		})
	}
}

func TestDoctorInactiveSlotRetainingWAL(t *testing.T) {
	url := healthyDB(t)
	pgExec(t, url, `SELECT pg_create_logical_replication_slot('lattice_gone', 'pgoutput')`)
	pgExec(t, url, `INSERT INTO items SELECT g, 'row ' || g, false FROM generate_series(1, 2000) g`)
	// Under the bound, an inactive slot is reported but passes.
	if out, code := runDoctor(t, url); code != 0 || !strings.Contains(out, "ok     slot lattice_gone: inactive, retains") {
		t.Fatalf("inactive slot under the bound: exit %d\n%s", code, out)
	}
	out, code := runDoctor(t, url, "--max-retained-wal", "1024")
	if code != 1 || !strings.Contains(out, "warn   slot lattice_gone: inactive, retains") ||
		!strings.Contains(out, "fix: SELECT pg_drop_replication_slot('lattice_gone');") {
		t.Fatalf("inactive slot retaining WAL: exit %d\n%s", code, out)
	}
	pgExec(t, url, `SELECT pg_drop_replication_slot('lattice_gone')`)
	if out, code := runDoctor(t, url, "--max-retained-wal", "1024"); code != 0 {
		t.Fatalf("after dropping the slot: exit %d\n%s", code, out)
	}
}

func TestDoctorUnsupportedPolicy(t *testing.T) {
	url := healthyDB(t)
	pgExec(t, url, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'doctor_app') THEN CREATE ROLE doctor_app NOLOGIN; END IF;
		END $$`)
	pgExec(t, url, `GRANT SELECT ON items TO doctor_app`)
	pgExec(t, url, `ALTER TABLE items ENABLE ROW LEVEL SECURITY`)
	pgExec(t, url, `CREATE POLICY supported ON items FOR SELECT TO doctor_app USING (title = current_setting('request.jwt.claims', true)::jsonb ->> 'sub')`)
	if out, code := runDoctor(t, url, "--auth-role", "doctor_app"); code != 0 || !strings.Contains(out, "can be enforced") {
		t.Fatalf("supported policy: exit %d\n%s", code, out)
	}
	pgExec(t, url, `CREATE POLICY unsupported ON items FOR SELECT TO doctor_app USING (length(title) > random() * 10)`)
	out, code := runDoctor(t, url, "--auth-role", "doctor_app")
	if code != 1 || !strings.Contains(out, `error  row-level security: policy "unsupported" on table public.items`) ||
		!strings.Contains(out, "fix: rewrite the policy") {
		t.Fatalf("unsupported policy: exit %d\n%s", code, out)
	}
	if out, code := runDoctor(t, url, "--auth-role", "nosuchrole"); code != 1 || !strings.Contains(out, "CREATE ROLE") {
		t.Fatalf("missing auth role: exit %d\n%s", code, out)
	}
}
