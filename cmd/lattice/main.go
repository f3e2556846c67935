// Command lattice is the Lattice sync service and its tools.
//
//	lattice serve                      run the sync service
//	lattice electrify TABLE...         opt tables in to sync
//	lattice replicate --db FILE ...    keep a SQLite file in sync with shapes
//	lattice token --sub USER           mint a development JWT
//	lattice generate --out DIR         write the typed TypeScript client
//	lattice schema                     print the schema history of electrified tables
//	lattice doctor                     check Postgres for what serve needs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `lattice: local-first sync for Postgres

Usage:
  lattice serve [flags]               run the sync service
  lattice electrify [flags] TABLE...  opt tables in to sync (CALL lattice.electrify)
  lattice replicate [flags]           keep a SQLite file in sync with shapes
  lattice token [flags]               print a JWT for development
  lattice dev [flags]                 the demo: throwaway Postgres + service
  lattice generate --out DIR          write the typed TypeScript client of the electrified tables
  lattice schema [flags]              print the schema history of the electrified tables
  lattice doctor [flags]              check a Postgres for what serve needs; print the fixes

Run 'lattice COMMAND -h' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := startCPUProfile(os.Getenv("LATTICE_CPUPROFILE"))
	if err == nil {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stopProfile()
	}
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code, err = ee.code, ee.err
		}
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lattice:", err)
		}
		os.Exit(code)
	}
}

// exitError ends the command with an exit status other than 1; err (nil
// when the command printed its own report) is printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stderr)
	case "electrify":
		return electrifyCmd(ctx, args[1:], stdout, stderr)
	case "replicate":
		return replicateCmd(ctx, args[1:], stderr)
	case "dev":
		return devCmd(ctx, args[1:], stdout, stderr)
	case "token":
		return tokenCmd(args[1:], stdout, stderr)
	case "generate":
		return generateCmd(ctx, args[1:], stdout, stderr)
	case "schema":
		return schemaCmd(ctx, args[1:], stdout, stderr)
	case "doctor":
		return doctorCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// envOr returns the environment variable name, or def when unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("bad --log-format %q: use text or json", format)
	}
}
