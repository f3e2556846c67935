package codegen_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/codegen"
)

// schemaJSON extracts the schema object from generated index.ts: it is
// written as JSON.
func schemaJSON(t *testing.T, index []byte) []byte {
	t.Helper()
	s := string(index)
	const start, end = "export const schema = ", "\n} as const;"
	i := strings.Index(s, start)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("no schema object in index.ts")
	}
	return []byte(s[i+len(start) : j+2])
}

// TestSchemaObject checks that the Go client parses the generated schema
// object into the relations the service describes (columns, types, NOT
// NULL, local defaults, primary keys).
func TestSchemaObject(t *testing.T) {
	s := load(t, fixtureDB(t))
	files, err := codegen.Generate(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := client.ParseSchema(schemaJSON(t, files["index.ts"]))
	if err != nil {
		t.Fatalf("client.ParseSchema: %v", err)
	}
	if len(rels) != len(s.Tables) {
		t.Fatalf("%d relations, want %d", len(rels), len(s.Tables))
	}
	for i, tb := range s.Tables {
		r := rels[i]
		if r.Schema != tb.Schema || r.Table != tb.Name || len(r.Columns) != len(tb.Columns) || len(r.PK) != len(tb.PK) {
			t.Fatalf("relation %d: %+v, want table %+v", i, r, tb)
		}
		for j, c := range tb.Columns {
			got := r.Columns[j]
			if got.Name != c.Name || got.Type.Base != c.Type.Base || got.Type.Array != c.Type.Array ||
				got.NotNull != c.NotNull || got.Default != c.Default || got.Type.SQLiteDecl() != c.Type.SQLiteDecl() {
				t.Errorf("%s.%s: parsed %+v, described %+v", tb.Schema, tb.Name, got, c)
			}
		}
		for j, k := range tb.PK {
			if r.Columns[r.PK[j]].Name != k {
				t.Errorf("%s.%s: primary key %v, want %v", tb.Schema, tb.Name, r.PK, tb.PK)
			}
		}
	}
}

// tableSQL returns the CREATE TABLE statements of the local tables of
// schema.sql in the SQLite file at path.
func tableSQL(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.BusyTimeout(10 * time.Second)
	stmt, _, err := db.Prepare(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?`)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	out := map[string]string{}
	for _, name := range []string{"project", "issue", "label", "issue_label", "app.user_role"} {
		stmt.BindText(1, name)
		if !stmt.Step() {
			t.Fatalf("%s: no table %s (%v)", path, name, stmt.Err())
		}
		out[name] = stmt.ColumnText(0)
		stmt.Reset()
	}
	return out
}

// offlineTables opens a client with only the generated schema object (no
// service) and returns its tables' CREATE TABLE statements.
func offlineTables(t *testing.T, index []byte) map[string]string {
	t.Helper()
	rels, err := client.ParseSchema(schemaJSON(t, index))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "offline.db")
	c, err := client.Open(context.Background(), path, &client.Options{URL: "ws://127.0.0.1:1", Schema: rels})
	if err != nil {
		t.Fatalf("open client with the schema object: %v", err)
	}
	c.Close()
	return tableSQL(t, path)
}
