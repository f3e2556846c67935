package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/server/catalog"
)

func electrifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("electrify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "Postgres connection string (env DATABASE_URL)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice electrify [--database-url URL] TABLE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("electrify: name at least one table")
	}
	if *dbURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer pool.Close()
	if err := catalog.Bootstrap(ctx, pool); err != nil {
		return err
	}
	for _, t := range fs.Args() {
		if err := catalog.Electrify(ctx, pool, t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "electrified %s\n", t)
	}
	return nil
}
