// Package pglocal runs a Postgres cluster on this machine from its Postgres
// server binaries: initdb into a directory, wal_level=logical, a free port
// on 127.0.0.1 and a unix socket in the same directory. lattice dev keeps
// one in its data directory (Options.Dir: initialised on first use,
// reused by later starts, kept by Stop); tests start throwaway ones
// through internal/pgtest. When run as root, the server runs as the
// "postgres" user, because Postgres refuses to run as root. The server
// process is started with a parent-death signal, so it does not outlive
// the process that started it.
//
// A cluster is stopped and started again with Shutdown in a pg_ctl mode
// (Immediate is a crash of the server), Launch, or Restart for both.
package pglocal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running cluster.
type Server struct {
	Dir  string // data directory parent (removed by Stop unless Options.Dir was given)
	Port int
	User string // superuser name
	// Reused is true when Start found an existing cluster in Options.Dir.
	Reused bool

	keep    bool
	bin     string
	data    string // the cluster's data directory
	cred    *syscall.Credential
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd     // the running (or last) postgres process
	stopped chan struct{} // closed when cmd has exited
}

// Options tune a cluster. The zero value is a logical-replication cluster.
type Options struct {
	// WalLevel overrides wal_level (default "logical").
	WalLevel string
	// Conf holds extra postgresql.conf lines (written when the cluster is
	// initialised).
	Conf []string
	// Dir, when set, holds a persistent cluster: initialised on first use,
	// reused by later calls, kept by Stop. It is created if missing.
	Dir string
	// Port is the TCP port; 0 picks a free one (with Dir: the port of the
	// previous run when it is still free).
	Port int
	// Durable keeps fsync and full_page_writes on (for data that must
	// survive a machine crash). Off by default: tests do not need it.
	Durable bool
}

// BinDir finds the Postgres server binaries: $PG_BINDIR, then
// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", errors.New("postgres server binaries not found: install postgresql (initdb) or set PG_BINDIR")
}

// Start initialises and starts a new cluster, or with Options.Dir starts the
// cluster kept there (initialising it the first time).
func Start(ctx context.Context, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	var dir string
	if opts.Dir != "" {
		dir, err = filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		// Parents readable by the server's user; the cluster itself private.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("make data dir: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
			return nil, fmt.Errorf("make data dir: %w", err)
		}
	} else if dir, err = os.MkdirTemp("", "lattice-pg-"); err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	s := &Server{Dir: dir, bin: bin, User: "postgres", keep: opts.Dir != ""}
	fail := func(err error) (*Server, error) {
		if !s.keep {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root needs a 'postgres' user to run the server as: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(fmt.Errorf("chown %s: %w", dir, err))
		}
		if err := reachable(dir, uint32(uid)); err != nil {
			return fail(err)
		}
	} else if cur, err := user.Current(); err == nil {
		s.User = cur.Username
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil && s.keep {
		s.Reused = true
	} else {
		if err := s.initdb(ctx, data, opts); err != nil {
			return fail(err)
		}
	}
	portFile := filepath.Join(dir, "port")
	s.Port = opts.Port
	if s.Port == 0 && s.keep {
		if b, err := os.ReadFile(portFile); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && portFree(p) {
				s.Port = p
			}
		}
	}
	if s.Port == 0 {
		if s.Port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	if s.keep {
		os.WriteFile(portFile, []byte(strconv.Itoa(s.Port)+"\n"), 0o644)
	}
	s.logPath = filepath.Join(dir, "postgres.log")
	s.data = data
	if err := s.launch(ctx, true); err != nil {
		if s.stopped != nil {
			s.Stop()
			return nil, err
		}
		return fail(err)
	}
	return s, nil
}

// launch starts the postgres process on the cluster (its log truncated
// when fresh, appended to otherwise) and waits until it accepts
// connections.
func (s *Server) launch(ctx context.Context, fresh bool) error {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if fresh {
		flags |= os.O_TRUNC
	}
	logf, err := os.OpenFile(s.logPath, flags, 0o644)
	if err != nil {
		return fmt.Errorf("open postgres log: %w", err)
	}
	if s.cred != nil {
		os.Chown(s.logPath, int(s.cred.Uid), int(s.cred.Gid))
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data,
		"-c", fmt.Sprintf("port=%d", s.Port), "-c", "unix_socket_directories="+s.Dir)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	stopped := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(stopped)
	}()
	s.mu.Lock()
	s.cmd, s.stopped = cmd, stopped
	s.mu.Unlock()
	return s.waitReady(ctx, stopped)
}

// initdb creates the cluster in data and writes its configuration.
func (s *Server) initdb(ctx context.Context, data string, opts *Options) error {
	initdb := exec.CommandContext(ctx, filepath.Join(s.bin, "initdb"), "-D", data, "-U", s.User,
		"--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	walLevel := opts.WalLevel
	if walLevel == "" {
		walLevel = "logical"
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"wal_level = " + walLevel,
		"max_replication_slots = 64",
		"max_wal_senders = 64",
		"max_connections = 300",
		"synchronous_commit = off",
		// Logical decoding only sees WAL the WAL writer has flushed: keep
		// that delay short so tests do not wait up to 200 ms per change.
		"wal_writer_delay = 10ms",
		"shared_buffers = 128MB",
		"log_min_messages = warning",
		"logging_collector = off",
	}
	if !opts.Durable {
		conf = append(conf, "fsync = off", "full_page_writes = off")
	}
	conf = append(conf, opts.Conf...)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString("\n" + strings.Join(conf, "\n") + "\n")
	f.Close()
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, stopped <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-stopped:
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("postgres exited during start-up: %s", log)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after 30s: %w", err)
		}
	}
}

// URL is a connection string for database db as the superuser.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", s.User, s.Port, db)
}

// Stop shuts the server down (fast mode, then SIGKILL) and removes its files
// unless they live in Options.Dir.
func (s *Server) Stop() {
	s.Shutdown(Fast)
	if !s.keep {
		os.RemoveAll(s.Dir)
	}
}

// ShutdownMode is how Shutdown stops the server, as pg_ctl stop -m.
type ShutdownMode int

const (
	// Fast rolls back open transactions, disconnects clients and writes a
	// shutdown checkpoint (SIGINT).
	Fast ShutdownMode = iota
	// Immediate stops every process at once, without a checkpoint: the
	// next start runs crash recovery (SIGQUIT), as after a crash of the
	// server (not of the machine: what was written to the WAL stays).
	Immediate
	// Smart waits for clients to disconnect (SIGTERM).
	Smart
)

// Shutdown stops the server in mode, keeping its files: Launch starts it
// again. A server that has not stopped after 10 s is killed (SIGKILL). It
// is a no-op when the server is not running.
func (s *Server) Shutdown(mode ShutdownMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.stopped:
		return
	default:
	}
	sig := syscall.SIGINT
	switch mode {
	case Immediate:
		sig = syscall.SIGQUIT
	case Smart:
		sig = syscall.SIGTERM
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.stopped:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.stopped
	}
}

// Launch starts a server stopped by Shutdown again, on the same port and
// data directory, and waits until it accepts connections. It is a no-op
// when the server runs.
func (s *Server) Launch(ctx context.Context) error {
	s.mu.Lock()
	running := false
	if s.stopped != nil {
		select {
		case <-s.stopped:
		default:
			running = true
		}
	}
	s.mu.Unlock()
	if running {
		return nil
	}
	return s.launch(ctx, false)
}

// Restart stops the server in mode and starts it again on the same port
// and data directory (pg_ctl restart -m mode).
func (s *Server) Restart(ctx context.Context, mode ShutdownMode) error {
	s.Shutdown(mode)
	return s.Launch(ctx)
}

// CreateDB creates a fresh database and returns its URL.
func (s *Server) CreateDB(ctx context.Context) (name, url string, err error) {
	var b [6]byte
	rand.Read(b[:])
	name = "t_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	return name, s.URL(name), nil
}

// DropDB drops a database, its replication slots and connections.
func (s *Server) DropDB(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	for i := 0; i < 50; i++ {
		conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
		conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("drop database %s: %w", name, err)
}

// reachable checks that user uid can traverse every parent of dir (the
// server runs as "postgres" when we are root, e.g. with a directory under
// /root, which only root may enter).
func reachable(dir string, uid uint32) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && st.Uid != uid && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the server runs as user postgres (we are root), which cannot enter %s: "+
				"use a data directory elsewhere or allow it with chmod o+x %s", p, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
