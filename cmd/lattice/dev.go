package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/catalog"
)

const demoSchema = `
CREATE TABLE IF NOT EXISTS project (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS issue (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  text NOT NULL REFERENCES project(id),
    title       text NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    priority    integer NOT NULL DEFAULT 0,
    estimate    numeric(6,2),
    tags        text[],
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO project (id, name) VALUES ('p1', 'Lattice'), ('p2', 'Website') ON CONFLICT DO NOTHING;
INSERT INTO issue (project_id, title, status, priority, estimate, tags)
SELECT CASE WHEN i % 3 = 0 THEN 'p2' ELSE 'p1' END, 'Issue ' || i,
       (ARRAY['open','in_progress','done'])[1 + i % 3], i % 4, (i % 7) * 0.5, ARRAY['demo']
FROM generate_series(1, 20) i
WHERE NOT EXISTS (SELECT 1 FROM issue);
`

// devCmd runs the demo: a throwaway Postgres (wal_level=logical) with a
// small schema, and the sync service in insecure mode, until interrupted.
func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr("LATTICE_LISTEN", ":5133"), "HTTP listen address")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "starting a throwaway Postgres (wal_level=logical)...")
	pg, err := pgtest.Start(ctx, nil)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	defer pg.Stop()
	dbURL := pg.URL("postgres")
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	_, err = conn.Exec(ctx, demoSchema)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("create demo schema: %w", err)
	}
	dataDir, err := os.MkdirTemp("", "lattice-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	svc, err := server.Start(ctx, server.Config{
		DatabaseURL: dbURL, Listen: *listen, Insecure: true,
		DataDir: filepath.Join(dataDir, "data"), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	conn, err = pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	for _, t := range []string{"project", "issue"} {
		if err := catalog.Electrify(ctx, conn, t); err != nil {
			conn.Close(ctx)
			return err
		}
	}
	conn.Close(ctx)
	host := *listen
	if host != "" && host[0] == ':' {
		host = "localhost" + host
	}
	fmt.Fprintf(stdout, `
Lattice demo is running (Ctrl-C stops it and removes everything).

  Postgres:  %s
  Service:   ws://%s  (insecure mode: no token needed)
  Health:    http://%s/healthz   Metrics: http://%s/metrics

Replicate project p1's issues into a SQLite file, live:
  ./bin/lattice replicate --url ws://%s --db demo.db --shape issue --where "project_id = \$1" --param p1

Then write to Postgres and watch demo.db follow:
  psql '%s' -c "INSERT INTO issue (project_id, title) VALUES ('p1', 'hello from psql')"
  sqlite3 demo.db 'SELECT title, status FROM issue'

And write to demo.db with any SQLite program: it syncs to Postgres.
  sqlite3 demo.db "UPDATE issue SET status = 'done' WHERE title = 'Issue 1'"
  sqlite3 demo.db "INSERT INTO issue (project_id, title) VALUES ('p1', 'from sqlite3')"
  psql '%s' -c "SELECT title, status FROM issue WHERE title IN ('Issue 1', 'from sqlite3')"

`, dbURL, host, host, host, host, dbURL, dbURL)
	return svc.ListenAndServe(ctx)
}
