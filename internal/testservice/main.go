// Command testservice runs a throwaway Postgres (wal_level=logical) and a
// Lattice service for the browser tests, controlled over stdin:
//
//	go run ./internal/testservice [-setup file.sql] [-electrify t1,t2] [-auth-secret s]
//
// The service is insecure (no tokens checked) unless -auth-secret is given:
// it then verifies HS256 tokens signed with that secret, which the token
// command makes.
//
// It prints one JSON line, {"ws": "ws://127.0.0.1:port", "pg": "postgres://..."},
// once the service listens, then reads commands, one per line, answering
// each with a line "ok" or "error: ...":
//
//	sql <statement>   run a statement in Postgres
//	query <select>    print the rows as one JSON line (arrays of text), then ok
//	token <sub> <ttl> print {"token": "..."}: an HS256 token for user sub
//	                  signed with -auth-secret, expiring after ttl (a Go
//	                  duration; 0 for no exp), then ok
//	stop              stop the service (clients go offline)
//	start             start it again on the same port and data dir
//
// It exits, removing everything, when stdin closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testservice:", err)
		os.Exit(1)
	}
}

type svc struct {
	cfg  server.Config
	addr string
	s    *server.Service
	hs   *http.Server
}

func (v *svc) start(ctx context.Context) error {
	s, err := server.Start(ctx, v.cfg)
	if err != nil {
		return err
	}
	var ln net.Listener
	for i := 0; ; i++ {
		if ln, err = net.Listen("tcp", v.addr); err == nil || i == 100 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		s.Close()
		return err
	}
	v.addr = ln.Addr().String()
	v.s = s
	v.hs = &http.Server{Handler: s.Handler()}
	go v.hs.Serve(ln)
	return nil
}

func (v *svc) stop(graceful bool) {
	if v.hs == nil {
		return
	}
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v.hs.Shutdown(ctx)
		cancel()
	}
	v.hs.Close()
	v.s.Close()
	v.hs, v.s = nil, nil
}

func run() error {
	setup := flag.String("setup", "", "SQL file to run before the service starts")
	electrify := flag.String("electrify", "", "comma-separated tables to electrify")
	secret := flag.String("auth-secret", "", "verify client tokens with this HMAC secret instead of running insecure")
	flag.Parse()
	ctx := context.Background()

	pg, err := pgtest.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer pg.Stop()
	_, dbURL, err := pg.CreateDB(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if *setup != "" {
		sql, err := os.ReadFile(*setup)
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	data, err := os.MkdirTemp("", "lattice-testservice-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	v := &svc{addr: "127.0.0.1:0", cfg: server.Config{
		DatabaseURL: dbURL, Insecure: *secret == "", DataDir: filepath.Join(data, "data"),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}}
	if *secret != "" {
		v.cfg.Auth = auth.Config{Secret: []byte(*secret)}
	}
	if err := v.start(ctx); err != nil {
		return err
	}
	defer v.stop(false)
	for _, t := range strings.Split(*electrify, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if _, err := conn.Exec(ctx, "CALL lattice.electrify($1)", t); err != nil {
				return fmt.Errorf("electrify %s: %w", t, err)
			}
		}
	}
	hello, _ := json.Marshal(map[string]string{"ws": "ws://" + v.addr, "pg": dbURL})
	fmt.Println(string(hello))

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		var err error
		switch cmd {
		case "sql":
			_, err = conn.Exec(ctx, arg)
		case "query":
			err = query(ctx, conn, arg, os.Stdout)
		case "token":
			err = token([]byte(*secret), arg, os.Stdout)
		case "stop":
			v.stop(true)
		case "start":
			err = v.start(ctx)
		default:
			err = fmt.Errorf("unknown command %q", cmd)
		}
		if err != nil {
			fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Println("ok")
		}
	}
	return in.Err()
}

func query(ctx context.Context, conn *pgx.Conn, sql string, w io.Writer) error {
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := [][]any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			if v == nil {
				row[i] = nil
			} else {
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	data, _ := json.Marshal(out)
	fmt.Fprintln(w, string(data))
	return nil
}

// token prints {"token": ...} for "<sub> <ttl>".
func token(secret []byte, arg string, w io.Writer) error {
	if len(secret) == 0 {
		return errors.New("token: the service runs without -auth-secret")
	}
	sub, ttlText, _ := strings.Cut(strings.TrimSpace(arg), " ")
	ttl, err := time.ParseDuration(strings.TrimSpace(ttlText))
	if sub == "" || err != nil {
		return fmt.Errorf("token: want <sub> <ttl>, e.g. token u1 3s (%v)", err)
	}
	tok, err := server.SignToken(secret, sub, ttl)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]string{"token": tok})
	fmt.Fprintln(w, string(data))
	return nil
}
