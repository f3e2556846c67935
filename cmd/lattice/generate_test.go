package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latticesync/lattice/internal/pgtest"
)

func TestGenerateCommand(t *testing.T) {
	url := pgtest.DB(t)
	out := filepath.Join(t.TempDir(), "gen")

	// Before anything is electrified the command says what to do.
	msg, err := exec.Command(latticeBin, "generate", "--database-url", url, "--out", out).CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "electrify tables first") {
		t.Fatalf("generate without the lattice schema: err %v, output %s", err, msg)
	}

	pgtest.Exec(t, url, `CREATE TABLE todo_item (id bigint PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false)`)
	if msg, err := exec.Command(latticeBin, "electrify", "--database-url", url, "todo_item").CombinedOutput(); err != nil {
		t.Fatalf("electrify: %v\n%s", err, msg)
	}
	msg, err = exec.Command(latticeBin, "generate", "--database-url", url, "--out", out, "--int8", "number").CombinedOutput()
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, msg)
	}
	if !strings.Contains(string(msg), "1 electrified tables") {
		t.Errorf("output: %s", msg)
	}
	index, err := os.ReadFile(filepath.Join(out, "index.ts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export type TodoItem = {\n  /** bigint NOT NULL, primary key */\n  id: number | bigint;\n",
		"  done?: boolean | 0 | 1;\n",
		"  todoItem: rt.TableHelpers<TodoItem, TodoItemInsert, TodoItemUpdate, TodoItemValues, TodoItemKey>;\n",
		`{"name":"done","type":"boolean","array":false,"enum":null,"notNull":true,"default":"0"}`,
	} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index.ts lacks %q:\n%s", want, index)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "runtime.ts")); err != nil {
		t.Error(err)
	}

	msg, err = exec.Command(latticeBin, "generate", "--database-url", url, "--out", out, "--int8", "float").CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "use string or number") {
		t.Errorf("bad --int8: err %v, output %s", err, msg)
	}
}
