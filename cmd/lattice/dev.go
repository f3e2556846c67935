package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pglocal"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
	"github.com/latticesync/lattice/server/catalog"
)

// devCmd runs the demo: Postgres (a cluster kept under --data-dir, unless
// DATABASE_URL is set), the example app's schema, access policies and seed
// data, the sync service enforcing the policies (auth role
// lattice_demo_user, tokens signed with a secret kept in --data-dir), and
// the example app (examples/react, built when stale) served with the sync
// endpoint and /dev-token (a token for any user: development only) on one
// origin, until interrupted.
func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", envOr("LATTICE_LISTEN", ":5133"), "sync service address (WebSocket /v1/sync, /healthz, /readyz, /metrics)")
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
		pg, err := pglocal.Start(ctx, &pglocal.Options{Dir: filepath.Join(*dataDir, "pg"), Durable: true})
		if err != nil {
			return fmt.Errorf("start postgres: %w", err)
		}
		defer pg.Stop()
		dbURL = pg.URL("postgres")
	} else {
		fmt.Fprintln(stderr, "using the Postgres of DATABASE_URL")
	}

	// The schema, its policies and the seed come first: the service checks
	// the auth role and reads the policies when it starts.
	if err := bootstrap(ctx, dbURL); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	err = prepareData(ctx, conn, *seed, seedSet, seedOptions{*projects, *issues, *comments}, stderr)
	conn.Close(context.Background())
	if err != nil {
		return err
	}

	secret, err := devSecret(*dataDir)
	if err != nil {
		return err
	}
	svc, err := server.Start(ctx, server.Config{
		DatabaseURL: dbURL, Listen: *listen, Auth: auth.Config{Secret: secret}, AuthRole: demoRole,
		DataDir: filepath.Join(*dataDir, "service"), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	tokens := devTokenHandler(secret)

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
	serve := func(what string, ln net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", what, err)
			}
		}()
	}
	// The service's address answers /dev-token too (for Vite's dev server,
	// which proxies to it); the service's sessions end with svc.Close.
	serve("service", svcLn, devServiceHandler(svc.Handler(), tokens))
	logger.Info("listening", "addr", svcLn.Addr().String(), "path", protocol.Path)
	if appLn != nil {
		serve("app", appLn, appHandler(dist, svc.Handler(), tokens))
	}
	printDevBanner(stdout, dbURL, *dataDir, hostPort(svcLn), appLn)

	select {
	case err = <-errc:
		return err
	case <-ctx.Done():
		fmt.Fprintln(stderr, "stopping...")
		return nil
	}
}

// bootstrap creates schema lattice (what the service does when it starts),
// so that the demo's tables can be electrified before it starts.
func bootstrap(ctx context.Context, dbURL string) error {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	for k, v := range coltype.SessionParams {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer pool.Close()
	if err := catalog.Bootstrap(ctx, pool); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// devSecret is the demo's token secret: made once per data dir (a random
// hex string in <dir>/auth-secret), then kept, so tokens stay valid across
// runs. It is the secret as lattice token takes it (LATTICE_AUTH_SECRET).
func devSecret(dir string) ([]byte, error) {
	p := filepath.Join(dir, "auth-secret")
	if b, err := os.ReadFile(p); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return []byte(s), nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read the demo's token secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write the demo's token secret: %w", err)
	}
	return []byte(s), nil
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
		fmt.Fprintf(w, "  App:          %s/   (user demo: a member of every seeded project)\n", app)
		fmt.Fprintf(w, "  Other users:  %s/?user=alice  and  %s/?user=bob   (each a local database of its\n", app, app)
		fmt.Fprintf(w, "                own; alice and bob are in different projects: in alice's window add bob to\n")
		fmt.Fprintf(w, "                a project (Members) and watch it appear in bob's; edits are live, even offline)\n")
	}
	fmt.Fprintf(w, "  Access:       Postgres row-level security of role %s (cmd/lattice/devschema.go):\n", demoRole)
	fmt.Fprintf(w, "                each user reads and writes the projects they are a member of\n")
	fmt.Fprintf(w, "  Service:      ws://%s   tokens: http://%s/dev-token?user=NAME (development only:\n", svcAddr, svcAddr)
	fmt.Fprintf(w, "                anyone can be anyone), or LATTICE_AUTH_SECRET=$(cat %s) lattice token --sub NAME\n", filepath.Join(dataDir, "auth-secret"))
	fmt.Fprintf(w, "  Health:       http://%s/healthz   Ready: http://%s/readyz   Metrics: http://%s/metrics\n", svcAddr, svcAddr, svcAddr)
	fmt.Fprintf(w, "  Postgres:     %s\n\n", dbURL)
	fmt.Fprintf(w, "Write with plain SQL and watch the app follow:\n")
	fmt.Fprintf(w, "  psql '%s' -c \"UPDATE issue SET status = 'done' WHERE id = (SELECT id FROM issue ORDER BY modified DESC LIMIT 1)\"\n", dbURL)
	fmt.Fprintf(w, "  psql '%s' -c \"INSERT INTO project_member SELECT id, 'bob' FROM project WHERE name = 'Atlas'\"\n\n", dbURL)
}
