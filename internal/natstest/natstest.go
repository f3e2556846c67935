// Package natstest runs a real NATS server with JetStream in the test
// process (the nats-server module), on a free loopback port with its store
// in a temporary directory, as internal/pgtest does for Postgres.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a running NATS server with JetStream.
type Server struct {
	ns   *server.Server
	opts *server.Options
}

// Start starts a server; it is shut down when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true}
	s := &Server{opts: opts}
	s.start(tb)
	tb.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start(tb testing.TB) {
	tb.Helper()
	ns, err := server.NewServer(s.opts)
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		tb.Fatal("nats server: not ready within 20s")
	}
	s.ns = ns
	// A restart keeps the port, so that clients reconnect to it.
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
}

// URL is the client URL (nats://127.0.0.1:PORT).
func (s *Server) URL() string { return s.ns.ClientURL() }

// Shutdown stops the server (its store stays for Restart).
func (s *Server) Shutdown() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and store.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Shutdown()
	s.start(tb)
}
