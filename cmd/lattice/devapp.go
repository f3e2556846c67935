package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/latticesync/lattice/codegen"
	"github.com/latticesync/lattice/server"
)

// prepareApp returns the example app's dist directory, building it first
// (npm ci when node_modules is missing or older than package-lock.json, npm
// run build when a source is newer than dist/index.html) if build is set.
func prepareApp(ctx context.Context, dir string, build bool, stderr io.Writer) (string, error) {
	dist := filepath.Join(dir, "dist")
	if build {
		if _, err := exec.LookPath("npm"); err != nil {
			return "", errors.New("npm not found: install Node.js 20 or newer (with npm), or pass --no-app")
		}
		lock := filepath.Join(dir, "package-lock.json")
		if newer(lock, filepath.Join(dir, "node_modules", ".package-lock.json")) {
			if err := npm(ctx, dir, stderr, "ci", "--no-audit", "--no-fund"); err != nil {
				return "", err
			}
		}
		stale, err := staleBuild(dir)
		if err != nil {
			return "", err
		}
		if stale {
			if err := npm(ctx, dir, stderr, "run", "build"); err != nil {
				return "", err
			}
		} else {
			fmt.Fprintf(stderr, "%s is up to date\n", dist)
		}
	}
	if _, err := os.Stat(filepath.Join(dist, "index.html")); err != nil {
		return "", fmt.Errorf("the app is not built (%s/index.html missing): run without --no-build", dist)
	}
	return dist, nil
}

// regenerateClient writes the typed client of the database's electrified
// tables (what lattice generate writes) into dir when it differs from the
// files there (the example app commits them; a schema change updates them).
func regenerateClient(ctx context.Context, dbURL, dir string, stderr io.Writer) error {
	files, _, err := generate(ctx, dbURL, codegen.Int8String)
	if err != nil {
		return fmt.Errorf("generate the app's client: %w", err)
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Fprintf(stderr, "regenerated %s (the schema changed)\n", p)
	}
	return nil
}

func npm(ctx context.Context, dir string, stderr io.Writer, args ...string) error {
	fmt.Fprintf(stderr, "npm %s (in %s)\n", strings.Join(args, " "), dir)
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return nil
}

// newer reports whether file a is newer than b, or b is missing.
func newer(a, b string) bool {
	sb, err := os.Stat(b)
	if err != nil {
		return true
	}
	sa, err := os.Stat(a)
	return err == nil && sa.ModTime().After(sb.ModTime())
}

// appInputs are the files and directories (relative to the app) whose
// changes make a new build necessary. The package the app depends on is
// followed through node_modules (a link into the repository).
var appInputs = []string{"index.html", "package.json", "package-lock.json", "vite.config.ts",
	"tsconfig.json", "src", "public", "node_modules/@latticesync/web"}

// staleBuild reports whether some input is newer than dist/index.html.
func staleBuild(dir string) (bool, error) {
	out, err := os.Stat(filepath.Join(dir, "dist", "index.html"))
	if err != nil {
		return true, nil
	}
	built := out.ModTime()
	stale := errors.New("stale")
	for _, in := range appInputs {
		root := filepath.Join(dir, in)
		if real, err := filepath.EvalSymlinks(root); err == nil {
			root = real
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() && p != root && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if info, err := d.Info(); err == nil && !d.IsDir() && info.ModTime().After(built) {
				return stale
			}
			return nil
		})
		if errors.Is(err, stale) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("check %s: %w", root, err)
		}
	}
	return false, nil
}

// appHandler serves the built app from dist, and sync (the service's
// handler: /v1/sync, /healthz, /readyz, /metrics) and /dev-token on the same origin. Files under
// assets/ have content hashes in their names and are cached for good; the
// rest (index.html, the service worker) is revalidated. Unknown paths
// without an extension get index.html (client-side routes).
func appHandler(dist string, sync, tokens http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", sync)
	mux.Handle("/healthz", sync)
	mux.Handle("/readyz", sync)
	mux.Handle("/metrics", sync)
	mux.Handle("/dev-token", tokens)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		file := filepath.Join(dist, filepath.FromSlash(p))
		st, err := os.Stat(file)
		if err != nil || st.IsDir() {
			if path.Ext(p) != "" && p != "/" {
				http.NotFound(w, r)
				return
			}
			file, p = filepath.Join(dist, "index.html"), "/index.html"
		}
		switch {
		case strings.HasPrefix(p, "/assets/"):
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		default:
			w.Header().Set("Cache-Control", "no-cache")
		}
		if strings.HasSuffix(p, ".wasm") {
			w.Header().Set("Content-Type", "application/wasm")
		}
		f, err := os.Open(file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, r, p, info.ModTime().Truncate(time.Second), f)
	})
	return mux
}

// devTokenTTL is the lifetime of the tokens /dev-token hands out; the app
// fetches a new one before it ends.
const devTokenTTL = 24 * time.Hour

// devUserName is what the app accepts as ?user= (and /dev-token as user).
var devUserName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// devTokenHandler answers GET /dev-token?user=NAME with a token for user
// NAME signed with the demo's secret: {"token", "user", "expires"}.
//
// DEVELOPMENT ONLY: whoever reaches it can act as any user. It is how the
// demo app (examples/react) gets an identity without a login; a real app
// gets its tokens from its own authentication (lattice token, or any
// HS256 JWT with the user id in sub).
func devTokenHandler(secret []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		user := strings.ToLower(r.URL.Query().Get("user"))
		if !devUserName.MatchString(user) {
			http.Error(w, "user: 1 to 32 of a-z, 0-9, _ and -", http.StatusBadRequest)
			return
		}
		tok, err := server.SignToken(secret, user, devTokenTTL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]string{
			"token":   tok,
			"user":    user,
			"expires": time.Now().Add(devTokenTTL).UTC().Format(time.RFC3339),
		})
	})
}

// devServiceHandler is what lattice dev serves on the service's address:
// the service, and /dev-token (for an app on Vite's dev server, which
// proxies /v1 and /dev-token there).
func devServiceHandler(sync, tokens http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/dev-token", tokens)
	mux.Handle("/", sync)
	return mux
}
