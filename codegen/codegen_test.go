package codegen_test

import (
	"bytes"
	"context"
	_ "embed"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/codegen"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server/catalog"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) { pgtest.Main(m) }

//go:embed testdata/schema.sql
var schemaSQL string

// electrified are the tables of testdata/schema.sql, parents first.
var electrified = []string{"project", "issue", "label", "issue_label", "app.user_role"}

// fixtureDB creates a database with testdata/schema.sql, electrified.
func fixtureDB(t *testing.T) string {
	t.Helper()
	url := pgtest.DB(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := catalog.Bootstrap(ctx, pool); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	pgtest.Exec(t, url, schemaSQL)
	for _, tb := range electrified {
		if err := catalog.Electrify(ctx, pool, tb); err != nil {
			t.Fatalf("electrify %s: %v", tb, err)
		}
	}
	return url
}

// load reads the schema like lattice generate does.
func load(t *testing.T, url string) *codegen.Schema {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range coltype.SessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	s, err := codegen.Load(ctx, conn)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return s
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./codegen -run Golden -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated output; if the change is intended, run go test ./codegen -run Golden -update\n--- got:\n%s", path, got)
	}
}

// TestGolden pins the generated code for the fixture schema. The default
// output is also the code the TypeScript fixture project (testdata/tscheck)
// type-checks and runs.
func TestGolden(t *testing.T) {
	s := load(t, fixtureDB(t))
	for _, tc := range []struct {
		dir  string
		opts *codegen.Options
	}{
		{"testdata/tscheck/lattice", nil},
		{"testdata/golden/int8number", &codegen.Options{Int8: codegen.Int8Number}},
	} {
		files, err := codegen.Generate(s, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if name == "runtime.ts" && tc.opts != nil {
				continue // the same for every option: pinned once
			}
			golden(t, filepath.Join(tc.dir, name), b)
		}
	}
}

func TestLoad(t *testing.T) {
	s := load(t, fixtureDB(t))
	var order []string
	for _, tb := range s.Tables {
		order = append(order, tb.Schema+"."+tb.Name)
	}
	// Sorted by schema and name, referenced tables first.
	want := []string{"app.user_role", "public.project", "public.issue", "public.label", "public.issue_label"}
	if len(order) != len(want) {
		t.Fatalf("tables %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("tables %v, want %v", order, want)
		}
	}
	il := s.Tables[4]
	if len(il.FKs) != 2 || il.FKs[1].RefTable != "label" || len(il.FKs[1].Columns) != 2 ||
		il.FKs[1].Columns[0] != "project_id" || il.FKs[1].RefColumns[1] != "name" {
		t.Errorf("issue_label foreign keys: %+v", il.FKs)
	}
	if len(il.PK) != 3 || il.PK[0] != "issue_id" || il.PK[2] != "label_name" {
		t.Errorf("issue_label primary key: %v", il.PK)
	}
	issue := s.Tables[2]
	cols := map[string]codegen.Column{}
	for _, c := range issue.Columns {
		cols[c.Name] = c
	}
	if c := cols["id"]; c.Default != "" || !c.PGDefault || !c.NotNull {
		t.Errorf("issue.id (bigserial): %+v", c)
	}
	if c := cols["status"]; c.Enum != "status" || c.Default != "'open'" {
		t.Errorf("issue.status: %+v", c)
	}
	if c := cols["moods"]; c.Enum != "mood" || !c.Type.Array {
		t.Errorf("issue.moods: %+v", c)
	}
	if len(s.Enums) != 3 || s.Enums[0].Name != "app.role" || s.Enums[2].Name != "status" ||
		len(s.Enums[1].Labels) != 2 || s.Enums[1].Labels[1] != `it's "fine"` {
		t.Errorf("enums: %+v", s.Enums)
	}
}
