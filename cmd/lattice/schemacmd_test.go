package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/latticesync/lattice/internal/pgtest"
)

func TestSchemaCommand(t *testing.T) {
	url := pgtest.DB(t)
	msg, err := exec.Command(latticeBin, "schema", "--database-url", url).CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "has no schema history") {
		t.Fatalf("schema before bootstrap: err %v, output %s", err, msg)
	}
	pgtest.Exec(t, url, `CREATE TABLE note (id bigint PRIMARY KEY, title text NOT NULL)`)
	if msg, err := exec.Command(latticeBin, "electrify", "--database-url", url, "note").CombinedOutput(); err != nil {
		t.Fatalf("electrify: %v\n%s", err, msg)
	}
	pgtest.Exec(t, url, `ALTER TABLE note RENAME COLUMN title TO subject`,
		`ALTER TABLE note ADD COLUMN done boolean NOT NULL DEFAULT false`)
	out, err := exec.Command(latticeBin, "schema", "--database-url", url, "--columns").CombinedOutput()
	if err != nil {
		t.Fatalf("schema: %v\n%s", err, out)
	}
	for _, want := range []string{
		"\tpublic.note\telectrify\t(electrify)\n",
		"\tpublic.note\talter\t(event_trigger)\n\trename_column subject: title -> subject\n\tddl: ALTER TABLE note RENAME COLUMN title TO subject\n",
		"\tadd_column done: boolean NOT NULL DEFAULT false\n",
		"\t  id bigint NOT NULL\n\t  subject text NOT NULL\n\t  done boolean NOT NULL DEFAULT false\n\t  PRIMARY KEY (id)\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(latticeBin, "schema", "--database-url", url, "--json", "--since", "1", "--table", "public.note").CombinedOutput()
	if err != nil {
		t.Fatalf("schema --json: %v\n%s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"kind":"rename_column"`) {
		t.Fatalf("schema --json --since 1: %s", out)
	}
	// Bad arguments get a clear error.
	msg, err = exec.Command(latticeBin, "schema", "--database-url", url, "extra").CombinedOutput()
	if err == nil || !strings.Contains(string(msg), `unexpected argument "extra"`) {
		t.Fatalf("extra argument: err %v, output %s", err, msg)
	}
}
