package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
)

// devCmd runs the demo: Postgres (a cluster kept under --data-dir, unless
// DATABASE_URL is set), the example app's schema and seed data, the sync
// service in insecure mode, and the example app (examples/react, built when
// stale) served with the sync endpoint on one origin, until interrupted.
func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr("LATTICE_LISTEN", ":5133"), "sync service address (WebSocket /v1/sync, /healthz, /metrics)")
	appListen := fs.String("app-listen", ":5173", "address serving the example app (and /v1/sync on the same origin)")
	dataDir := fs.String("data-dir", ".lattice-dev", "kept between runs: the Postgres cluster (unless DATABASE_URL is set) and the service's change log")
	appDir := fs.String("app-dir", "examples/react", "the example app (a Vite project)")
	seed := fs.Bool("seed", false, "add seed data (default: only when the database has no project yet; --seed=false never)")
	projects := fs.Int("projects", 5, "projects to seed")
	issues := fs.Int("issues", 5000, "issues of the first seeded project (the others get a tenth)")
	comments := fs.Int("comments", 20000, "comments of the first seeded project (the others get a tenth)")
	noBuild := fs.Bool("no-build", false, "serve the app's dist/ as it is (no npm ci / npm run build)")
	noApp := fs.Bool("no-app", false, "do not serve the example app (Postgres and the service only)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev: unexpected arguments %q", fs.Args())
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if *projects < 1 || *issues < 1 || *comments < 0 {
		return errors.New("dev: --projects and --issues must be at least 1, --comments at least 0")
	}
	logger, err := newLogger(stderr, *level, "text")
	if err != nil {
		return err
	}

	if !*noApp {
		if _, err := os.Stat(filepath.Join(*appDir, "package.json")); err != nil {
			appSet := false
			fs.Visit(func(f *flag.Flag) { appSet = appSet || f.Name == "app-dir" })
			if appSet {
				return fmt.Errorf("example app not found in %s: %w", *appDir, err)
			}
			fmt.Fprintf(stderr, "no example app in %s (run from the repository root to serve it): Postgres and the service only\n", *appDir)
			*noApp = true
		}
	}

	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		fmt.Fprintf(stderr, "starting Postgres (wal_level=logical) in %s ...\n", filepath.Join(*dataDir, "pg"))
		pg, err := pgtest.Start(ctx, &pgtest.Options{Dir: filepath.Join(*dataDir, "pg"), Durable: true})
		if err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		defer pg.Stop()
		dbURL = pg.URL("postgres")
	} else {
		fmt.Fprintln(stderr, "using the Postgres of DATABASE_URL")
	}

	svc, err := server.Start(ctx, server.Config{
		DatabaseURL: dbURL, Listen: *listen, Insecure: true,
		DataDir: filepath.Join(*dataDir, "service"), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer svc.Close()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	err = prepareData(ctx, conn, *seed, seedSet, seedOptions{*projects, *issues, *comments}, stderr)
	conn.Close(context.Background())
	if err != nil {
		return err
	}

	var dist string
	if !*noApp {
		if !*noBuild {
			// The app's typed client follows the schema.
			if err := regenerateClient(ctx, dbURL, filepath.Join(*appDir, "src", "generated"), stderr); err != nil {
				return err
			}
		}
		if dist, err = prepareApp(ctx, *appDir, !*noBuild, stderr); err != nil {
			return err
		}
	}

	svcLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another lattice running? use --listen): %w", *listen, err)
	}
	var appLn net.Listener
	if !*noApp {
		appLn, err = net.Listen("tcp", *appListen)
		if err != nil {
			svcLn.Close()
			return fmt.Errorf("listen on %s (use --app-listen): %w", *appListen, err)
		}
	}

	errc := make(chan error, 2)
	go func() { errc <- svc.Serve(ctx, svcLn) }()
	if appLn != nil {
		srv := &http.Server{Handler: appHandler(dist, svc.Handler()), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		go func() {
			if err := srv.Serve(appLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve app: %w", err)
			}
		}()
	}
	printDevBanner(stdout, dbURL, *dataDir, hostPort(svcLn), appLn)

	err = <-errc
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "stopping...")
		return nil
	}
	return err
}

// prepareData applies the schema and seeds when asked (or, by default, when
// the database is empty).
func prepareData(ctx context.Context, conn *pgx.Conn, seed, seedSet bool, opts seedOptions, stderr io.Writer) error {
	if err := applyDemoSchema(ctx, conn); err != nil {
		return err
	}
	empty, err := demoEmpty(ctx, conn)
	if err != nil {
		return err
	}
	if seedSet && !seed || !seedSet && !empty {
		return nil
	}
	t0 := time.Now()
	fmt.Fprintf(stderr, "seeding %d projects (%d issues and %d comments in the first)...\n", opts.Projects, opts.Issues, opts.Comments)
	if err := seedDemo(ctx, conn, opts); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "seeded in %v\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

func hostPort(ln net.Listener) string {
	addr := ln.Addr().(*net.TCPAddr)
	host := "localhost"
	if !addr.IP.IsUnspecified() && !addr.IP.IsLoopback() {
		host = addr.IP.String()
	}
	return fmt.Sprintf("%s:%d", host, addr.Port)
}

func printDevBanner(w io.Writer, dbURL, dataDir, svcAddr string, appLn net.Listener) {
	fmt.Fprintf(w, "\nLattice demo is running. Ctrl-C stops it; the next run reuses the data (%s/).\n\n", dataDir)
	if appLn != nil {
		app := "http://" + hostPort(appLn)
		fmt.Fprintf(w, "  App:          %s/\n", app)
		fmt.Fprintf(w, "  Second user:  %s/?user=alice   (another local database and name; open it in a\n", app)
		fmt.Fprintf(w, "                second window and watch edits appear in both, even after going offline)\n")
	}
	fmt.Fprintf(w, "  Service:      ws://%s   (insecure mode: no token needed, local development only)\n", svcAddr)
	fmt.Fprintf(w, "  Health:       http://%s/healthz   Metrics: http://%s/metrics\n", svcAddr, svcAddr)
	fmt.Fprintf(w, "  Postgres:     %s\n\n", dbURL)
	fmt.Fprintf(w, "Write with plain SQL and watch the app follow:\n")
	fmt.Fprintf(w, "  psql '%s' -c \"UPDATE issue SET status = 'done' WHERE id = (SELECT id FROM issue ORDER BY modified DESC LIMIT 1)\"\n\n", dbURL)
}
