package client

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

const testSchema = `{"version": 1, "tables": [{"schema": "public", "name": "issue",
  "columns": [
    {"name": "id", "type": "uuid", "array": false, "enum": null, "notNull": true, "default": null},
    {"name": "title", "type": "text", "array": false, "enum": null, "notNull": true, "default": "''"},
    {"name": "n", "type": "bigint", "array": false, "enum": null, "notNull": false, "default": null},
    {"name": "tags", "type": "text", "array": true, "enum": null, "notNull": false, "default": null},
    {"name": "st", "type": "enum", "array": false, "enum": "public.status", "notNull": false, "default": null}
  ], "primaryKey": ["id"]}]}`

func TestSchemaCreatesCapturedTables(t *testing.T) {
	rels, err := ParseSchema([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	c, err := Open(ctx, path, &Options{Schema: rels})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, `INSERT INTO issue(id, n, tags) VALUES ('a', 1, '["x"]')`); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, `SELECT title, st FROM issue`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows.Values) != 1 || rows.Values[0][0] != "" || rows.Values[0][1] != nil {
		t.Fatalf("rows = %v", rows.Values)
	}
	if n := c.PendingCount(); n != 1 {
		t.Fatalf("pending = %d, want the insert captured", n)
	}
	if err := c.Exec(ctx, `UPDATE issue SET id = 'b'`); err == nil || !strings.Contains(err.Error(), "primary key") {
		t.Fatalf("primary key update: %v", err)
	}
	c.Close()
	// Reopening with the schema leaves the table as it is.
	c, err = Open(ctx, path, &Options{Schema: rels})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rows, err = c.Query(ctx, `SELECT count(*) FROM issue`); err != nil || rows.Values[0][0] != int64(1) {
		t.Fatalf("after reopen: %v %v", rows, err)
	}
}

func TestParseSchemaErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"version": 2, "tables": []}`, "unsupported version"},
		{`{"version": 1, "tables": [{"name": "t", "columns": [{"name": "a", "type": "money"}], "primaryKey": ["a"]}]}`, "unknown type"},
		{`{"version": 1, "tables": [{"name": "t", "columns": [{"name": "a", "type": "text"}], "primaryKey": []}]}`, "no primary key"},
		{`{"version": 1, "tables": [{"name": "t", "columns": [{"name": "a", "type": "text"}], "primaryKey": ["b"]}]}`, "not a column"},
		{`{"version": 1, "tables": [{"name": "t", "columns": [{"name": "a", "type": "enum"}], "primaryKey": ["a"]}]}`, "enum without a name"},
		{`{"version": 1, "tables": [], "extra": 1}`, "unknown field"},
	} {
		if _, err := ParseSchema([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.doc, err, c.want)
		}
	}
}
