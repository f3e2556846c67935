package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/server/schema"
)

// schemaCmd prints the schema history of the electrified tables
// (lattice.schema_history, package server/schema).
func schemaCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "Postgres connection string (env DATABASE_URL)")
	table := fs.String("table", "", "only this table (any name it had: items or schema.items)")
	since := fs.Int64("since", 0, "only versions after this one")
	columns := fs.Bool("columns", false, "print each version's columns, primary key and indexes")
	asJSON := fs.Bool("json", false, "print one JSON object per version")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice schema [--database-url URL] [--table T] [--since N] [--columns] [--json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("schema: unexpected argument %q", fs.Arg(0))
	}
	if *dbURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer pool.Close()
	history, err := schema.History(ctx, pool, *since, *table)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return errors.New("this database has no schema history (lattice.schema_history): run lattice serve or lattice electrify against it once")
		}
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, v := range history {
			if err := enc.Encode(v); err != nil {
				return fmt.Errorf("write history: %w", err)
			}
		}
		return nil
	}
	for _, v := range history {
		writeVersion(stdout, &v, *columns)
	}
	if len(history) == 0 {
		fmt.Fprintln(stderr, "no schema versions")
	}
	return nil
}

// writeVersion prints one version: a line, then one indented line per
// change (and the schema, with columns).
func writeVersion(w io.Writer, v *schema.Version, columns bool) {
	fmt.Fprintf(w, "%d\t%s\t%s.%s\t%s\t(%s)\n", v.Version, v.At.UTC().Format(time.RFC3339), v.Schema, v.Table, v.Kind, v.Source)
	for _, c := range v.Changes {
		obj := c.Column + c.Index
		fmt.Fprintf(w, "\t%s", c.Kind)
		if obj != "" {
			fmt.Fprintf(w, " %s", obj)
		}
		if c.Detail != "" && c.Detail != obj {
			fmt.Fprintf(w, ": %s", c.Detail)
		}
		fmt.Fprintln(w)
	}
	if v.Refused != "" {
		fmt.Fprintf(w, "\tnot supported, table not synced: %s\n", v.Refused)
	}
	if v.DDL != "" {
		fmt.Fprintf(w, "\tddl: %s\n", strings.Join(strings.Fields(v.DDL), " "))
	}
	if !columns || v.Kind == schema.KindDropTable {
		return
	}
	byNum := map[int16]string{}
	for _, c := range v.Columns {
		byNum[c.Attnum] = c.Name
		line := fmt.Sprintf("\t  %s %s", c.Name, c.Type)
		if c.NotNull {
			line += " NOT NULL"
		}
		if c.Default != nil {
			line += " DEFAULT " + *c.Default
		}
		fmt.Fprintln(w, line)
	}
	var pk []string
	for _, k := range v.PK {
		pk = append(pk, byNum[k])
	}
	fmt.Fprintf(w, "\t  PRIMARY KEY (%s)\n", strings.Join(pk, ", "))
	for _, ix := range v.Indexes {
		fmt.Fprintf(w, "\t  %s\n", ix.Def)
	}
}
