package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/server/doctor"
)

// doctorCmd checks a database for what lattice serve needs. Exit status:
// 0 when every check passes, 1 when a check warns or fails, 2 when the
// database cannot be checked (usage, connection).
func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "Postgres connection string, as for lattice serve (env DATABASE_URL)")
	var opts doctor.Options
	fs.StringVar(&opts.AuthRole, "auth-role", envOr("LATTICE_AUTH_ROLE", ""), "the role clients act as, as for lattice serve: its row-level security policies are checked (env LATTICE_AUTH_ROLE)")
	fs.Int64Var(&opts.MaxRetainedWAL, "max-retained-wal", doctor.DefaultMaxRetainedWAL, "warn about a lattice replication slot retaining more WAL than this many `bytes`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice doctor [--database-url URL] [--auth-role ROLE] [--max-retained-wal BYTES]")
		fmt.Fprintln(stderr, "Checks a Postgres database for everything lattice serve needs and prints what to fix.")
		fmt.Fprintln(stderr, "Exit status: 0 all good, 1 problems found, 2 cannot check (usage, connection).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("doctor takes no arguments, got %q", fs.Args())}
	}
	if *dbURL == "" {
		return &exitError{code: 2, err: fmt.Errorf("no database: set DATABASE_URL or --database-url")}
	}
	cfg, err := pgx.ParseConfig(*dbURL)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("parse database url: %w", err)}
	}
	for k, v := range coltype.SessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("connect to postgres: %w", err)}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	findings, err := doctor.Run(ctx, conn, opts)
	if err != nil {
		doctor.Print(stdout, findings)
		return &exitError{code: 2, err: fmt.Errorf("doctor: %w", err)}
	}
	if err := doctor.Print(stdout, findings); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("print findings: %w", err)}
	}
	if doctor.Worst(findings) > doctor.OK {
		return &exitError{code: 1}
	}
	return nil
}
