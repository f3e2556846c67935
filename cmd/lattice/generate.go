package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/codegen"
	"github.com/latticesync/lattice/coltype"
)

func generateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "Postgres connection string (env DATABASE_URL)")
	out := fs.String("out", "", "directory to write index.ts and runtime.ts into (created if missing)")
	int8 := fs.String("int8", string(codegen.Int8String), "bigint columns in rows: string (exact decimal text) or number (number | bigint)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lattice generate [--database-url URL] --out DIR [--int8 string|number]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("generate: unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		fs.Usage()
		return errors.New("generate: --out is required")
	}
	if *dbURL == "" {
		return errors.New("no database: set DATABASE_URL or --database-url")
	}
	files, n, err := generate(ctx, *dbURL, codegen.Int8(*int8))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(*out, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	fmt.Fprintf(stdout, "%d electrified tables\n", n)
	return nil
}

// generate reads the electrified tables of the database at dbURL and
// renders their TypeScript client.
func generate(ctx context.Context, dbURL string, int8 codegen.Int8) (map[string][]byte, int, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, 0, fmt.Errorf("parse database url: %w", err)
	}
	for k, v := range coltype.SessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s, err := codegen.Load(ctx, conn)
	if err != nil {
		return nil, 0, err
	}
	files, err := codegen.Generate(s, &codegen.Options{Int8: int8})
	if err != nil {
		return nil, 0, err
	}
	return files, len(s.Tables), nil
}
