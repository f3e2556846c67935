package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
)

func TestMain(m *testing.M) {
	if os.Getenv("LATTICE_TEST_SERVICE_DB") != "" {
		os.Exit(serviceMain())
	}
	pgtest.Main(m)
}

// serviceMain runs the service as a separate process of the test binary
// (see env.startProc), so that a test can SIGKILL it: configuration from
// LATTICE_TEST_SERVICE_{DB,DATA,ADDR}; prints "ready" when listening.
func serviceMain() int {
	ctx := context.Background()
	cfg := server.Config{
		DatabaseURL: os.Getenv("LATTICE_TEST_SERVICE_DB"),
		Auth:        auth.Config{Secret: testSecret},
		DataDir:     os.Getenv("LATTICE_TEST_SERVICE_DATA"),
		Logger:      serviceLogger(),
	}
	if v := os.Getenv("LATTICE_TEST_SERVICE_HELLO_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "LATTICE_TEST_SERVICE_HELLO_TIMEOUT:", err)
			return 1
		}
		cfg.HelloTimeout = d
	}
	svc, err := server.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start service:", err)
		return 1
	}
	var ln net.Listener
	for i := 0; ; i++ { // the killed process's port may linger briefly
		if ln, err = net.Listen("tcp", os.Getenv("LATTICE_TEST_SERVICE_ADDR")); err == nil || i == 100 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 1
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	if os.Getenv("LATTICE_TEST_SERVICE_SERVE") != "" {
		// The service's own server (its timeouts for silent connections).
		sctx, stop := context.WithCancel(ctx)
		go func() {
			<-sig
			stop()
		}()
		svc.Serve(sctx, ln)
		svc.Close()
		return 0
	}
	hs := &http.Server{Handler: svc.Handler()}
	go func() {
		<-sig
		hs.Close()
	}()
	hs.Serve(ln)
	svc.Close()
	return 0
}

// serviceLogger logs warnings to stderr, or, with
// LATTICE_TEST_SERVICE_LOG=<file>, everything (Debug up) to that file
// (appended: one file across restarts).
func serviceLogger() *slog.Logger {
	if p := os.Getenv("LATTICE_TEST_SERVICE_LOG"); p != "" {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var testSecret = []byte("test-secret-please-change")

type env struct {
	t    testing.TB
	proc *exec.Cmd // the service, when it runs as a process (startProc)
	data string    // its data dir
	// serviceLog: the process logs everything to this file, if set.
	serviceLog string
	dbURL      string
	svc        *server.Service
	http       *httptest.Server
	url        string // ws://...
	addr       string // host:port the service listens on (kept across restarts)
	cfg        server.Config
	// procEnv is added to the environment of the service process.
	procEnv []string
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LATTICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEnv creates a fresh database, runs setup SQL, electrifies tables and
// starts a service on it.
func newEnv(t testing.TB, setup string, tables ...string) *env {
	t.Helper()
	e := &env{t: t, dbURL: pgtest.DB(t)}
	if setup != "" {
		pgtest.Exec(t, e.dbURL, setup)
	}
	e.cfg = server.Config{
		DatabaseURL: e.dbURL,
		Auth:        auth.Config{Secret: testSecret},
		DataDir:     filepath.Join(t.TempDir(), "data"),
		Logger:      testLogger(t),
	}
	e.start()
	for _, tb := range tables {
		e.exec("CALL lattice.electrify('" + tb + "')")
	}
	return e
}

func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := server.Start(ctx, e.cfg)
	if err != nil {
		e.t.Fatalf("start service: %v", err)
	}
	e.svc = svc
	// A restarted service listens on the same address, so clients reconnect.
	e.http = httptest.NewUnstartedServer(svc.Handler())
	if e.addr != "" {
		var ln net.Listener
		for i := 0; ; i++ {
			if ln, err = net.Listen("tcp", e.addr); err == nil || i == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			e.t.Fatalf("listen again on %s: %v", e.addr, err)
		}
		e.http.Listener.Close()
		e.http.Listener = ln
	}
	e.http.Start()
	e.addr = e.http.Listener.Addr().String()
	e.url = "ws" + strings.TrimPrefix(e.http.URL, "http")
	e.t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.http != nil {
		e.http.CloseClientConnections()
		e.http.Close()
		e.http = nil
	}
	if e.svc != nil {
		e.svc.Close()
		e.svc = nil
	}
}

// newProcEnv is newEnv with the service in a process of its own, so
// that kill can SIGKILL it.
func newProcEnv(t testing.TB, setup string, tables ...string) *env {
	t.Helper()
	return newProcEnvLogged(t, "", setup, tables...)
}

// newProcEnvLogged is newProcEnv with the service logging to serviceLog
// (if not empty).
func newProcEnvLogged(t testing.TB, serviceLog, setup string, tables ...string) *env {
	t.Helper()
	e := &env{t: t, dbURL: pgtest.DB(t), data: filepath.Join(t.TempDir(), "data"), serviceLog: serviceLog}
	if setup != "" {
		pgtest.Exec(t, e.dbURL, setup)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ln.Close()
	e.url = "ws://" + e.addr
	e.startProc()
	for _, tb := range tables {
		e.exec("CALL lattice.electrify('" + tb + "')")
	}
	return e
}

// startProc starts the service process and waits until it listens.
func (e *env) startProc() {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"LATTICE_TEST_SERVICE_DB="+e.dbURL,
		"LATTICE_TEST_SERVICE_DATA="+e.data,
		"LATTICE_TEST_SERVICE_ADDR="+e.addr)
	if e.serviceLog != "" {
		cmd.Env = append(cmd.Env, "LATTICE_TEST_SERVICE_LOG="+e.serviceLog)
	}
	cmd.Env = append(cmd.Env, e.procEnv...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start service process: %v", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		e.t.Fatalf("service process did not start (printed %q)", line)
	}
	e.proc = cmd
	e.t.Cleanup(e.kill)
}

// kill ends the service process with SIGKILL: no goodbye, no flush.
func (e *env) kill() {
	if e.proc != nil {
		e.proc.Process.Kill()
		e.proc.Wait()
		e.proc = nil
	}
}

// terminate ends the service process gracefully (SIGTERM).
func (e *env) terminate() {
	if e.proc != nil {
		e.proc.Process.Signal(syscall.SIGTERM)
		e.proc.Wait()
		e.proc = nil
	}
}

// baseURL is the service's http:// address.
func (e *env) baseURL() string {
	if e.http != nil {
		return e.http.URL
	}
	return "http://" + e.addr
}

func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (e *env) token(sub string) string {
	e.t.Helper()
	tok, err := server.SignToken(testSecret, sub, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// clientAt opens a client on path (":memory:" or a file) and runs it until
// the test ends or the returned stop func is called.
func (e *env) clientAt(path string) (*client.Client, func()) {
	e.t.Helper()
	return e.clientLogged(path, testLogger(e.t))
}

// clientLogged is clientAt with the client's logger.
func (e *env) clientLogged(path string, log *slog.Logger) (*client.Client, func()) {
	e.t.Helper()
	return e.clientFor("alice", path, log)
}

// clientFor opens a client of user sub on path and runs it until the test
// ends or the returned stop func is called.
func (e *env) clientFor(sub, path string, log *slog.Logger) (*client.Client, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.Open(ctx, path, &client.Options{URL: e.url, Token: e.token(sub), Logger: log})
	if err != nil {
		e.t.Fatalf("open client: %v", err)
	}
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		c.Close()
	}
	e.t.Cleanup(stop)
	return c, stop
}

func (e *env) subscribe(c *client.Client, sh client.Shape) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, sh)
	if err != nil {
		e.t.Fatalf("subscribe: %v", err)
	}
	if err := sub.Synced(ctx); err != nil {
		e.t.Fatalf("synced %+v: %v", sh, err)
	}
}

// pgRows returns the rows of a query in Postgres as text (NULL as "<nil>").
func (e *env) pgRows(sql string) []string {
	e.t.Helper()
	return pgtest.Rows(e.t, e.dbURL, sql)
}

// localRows returns the rows of a query on the client as text.
func localRows(t testing.TB, c *client.Client, sql string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("local query %q: %v", sql, err)
	}
	var out []string
	for _, r := range rows.Values {
		parts := make([]string, len(r))
		for i, v := range r {
			parts[i] = fmtValue(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

func fmtValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "<nil>"
	case []byte:
		return "\\x" + hexString(v)
	default:
		return strings.TrimSpace(strings.ReplaceAll(fmtAny(v), "\n", " "))
	}
}

// eventually polls cond until it is true or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
