package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/limits"
)

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	var secret, publicKey, level, format string
	fs.StringVar(&cfg.DatabaseURL, "database-url", envOr("DATABASE_URL", ""), "Postgres connection string (env DATABASE_URL)")
	fs.StringVar(&cfg.Listen, "listen", envOr("LATTICE_LISTEN", ":5133"), "HTTP listen address (env LATTICE_LISTEN)")
	fs.StringVar(&secret, "auth-secret", envOr("LATTICE_AUTH_SECRET", ""), "HMAC secret for client JWTs, HS256/384/512 (env LATTICE_AUTH_SECRET)")
	fs.StringVar(&publicKey, "auth-public-key", envOr("LATTICE_AUTH_PUBLIC_KEY", ""), "PEM `file` of the public key client JWTs are signed for: RSA (RS*/PS*), EC (ES*) or Ed25519 (EdDSA) (env LATTICE_AUTH_PUBLIC_KEY)")
	fs.StringVar(&cfg.Auth.JWKSURL, "jwks-url", envOr("LATTICE_JWKS_URL", ""), "JWKS `URL` of the identity provider that signs client JWTs; refreshed, keys rotate without restart (env LATTICE_JWKS_URL)")
	fs.StringVar(&cfg.Auth.Issuer, "auth-issuer", envOr("LATTICE_AUTH_ISSUER", ""), "when set, a token's iss must equal it (env LATTICE_AUTH_ISSUER)")
	fs.StringVar(&cfg.Auth.Audience, "auth-audience", envOr("LATTICE_AUTH_AUDIENCE", ""), "when set, a token's aud must contain it (env LATTICE_AUTH_AUDIENCE)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "accept clients without tokens (local development only)")
	fs.StringVar(&cfg.AuthRole, "auth-role", envOr("LATTICE_AUTH_ROLE", ""), "Postgres role clients act as: its row-level security policies and privileges decide what each user reads and writes (env LATTICE_AUTH_ROLE)")
	fs.DurationVar(&cfg.PolicyPoll, "policy-poll", time.Second, "how often to look for policy changes (with --auth-role)")
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("LATTICE_DATA_DIR", "lattice-data"), "directory for the retained change log (env LATTICE_DATA_DIR)")
	fs.StringVar(&cfg.Slot, "slot", envOr("LATTICE_SLOT", ""), "replication slot name (default lattice_<log id>) (env LATTICE_SLOT)")
	fs.Int64Var(&cfg.LogMaxBytes, "log-max-bytes", 1<<30, "retain at most this many bytes of change log")
	fs.DurationVar(&cfg.LogMaxAge, "log-max-age", 24*time.Hour, "retain change log for this long")
	fs.StringVar(&cfg.LogURL, "log-url", envOr("LATTICE_LOG_URL", ""), "keep the change log in NATS JetStream instead of --data-dir: nats://HOST:PORT[,nats://HOST:PORT...]; several service replicas can share it (env LATTICE_LOG_URL)")
	fs.IntVar(&cfg.LogReplicas, "log-replicas", 1, "replicas of the JetStream stream when the service creates it (3 on a 3-node NATS cluster), with --log-url")
	fs.StringVar(&cfg.LogStream, "log-stream", envOr("LATTICE_LOG_STREAM", "LATTICE"), "the JetStream stream of the change log, with --log-url (env LATTICE_LOG_STREAM)")
	fs.Int64Var(&cfg.LogSegmentBytes, "log-segment-bytes", 64<<20, "size of one change log segment file (retention removes whole segments)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 30*time.Second, "disconnect a client that accepts no data for this long")
	fs.DurationVar(&cfg.HelloTimeout, "hello-timeout", 10*time.Second, "close a connection that sends no request, then no Hello, within this")
	fs.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", time.Minute, "stamp a client write whose HLC is further ahead of the service's clock at the clock + this (negative: never)")
	fs.IntVar(&cfg.MaxShapesPerConn, "max-shapes", 1000, "shapes per connection")
	fs.IntVar(&cfg.MaxSnapshotRows, "max-shape-rows", 0, "refuse shapes with more initial rows than this (0 = no limit)")
	fs.IntVar(&cfg.MaxIncludes, "max-includes", limits.DefaultIncludes, "refuse shapes with more include nodes than this, all levels together (0 = no limit)")
	fs.IntVar(&cfg.MaxIncludeDepth, "max-include-depth", limits.DefaultDepth, fmt.Sprintf("refuse shapes whose includes nest deeper than this (at most %d, the protocol's bound; 0 = that bound)", protocol.MaxIncludeDepth))
	fs.IntVar(&cfg.MaxWhereBytes, "max-where-bytes", limits.DefaultWhereBytes, "refuse shapes with a where clause longer than this many bytes (0 = no limit)")
	fs.IntVar(&cfg.MaxWhereParams, "max-where-params", limits.DefaultParams, "refuse shapes with more params than this in one where clause (0 = no limit)")
	fs.IntVar(&cfg.SnapshotRowsPerSec, "snapshot-rows-per-sec", limits.DefaultRowsPerSec, "rows per second one connection reads from Postgres for initial data and move-ins while other clients are connected, after a burst of a quarter second's worth (0 = no limit)")
	fs.DurationVar(&cfg.ReadyMaxLag, "ready-max-lag", server.DefaultReadyMaxLag, "/readyz answers 503 while replication is further behind Postgres than this")
	fs.StringVar(&level, "log-level", envOr("LATTICE_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&format, "log-format", envOr("LATTICE_LOG_FORMAT", "text"), "text or json")
	pprofListen := fs.String("pprof-listen", envOr("LATTICE_PPROF_LISTEN", ""), "serve Go's /debug/pprof profiles on this address, e.g. 127.0.0.1:6060; off when empty (env LATTICE_PPROF_LISTEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	// On the command line 0 means no limit; in server.Config, negative.
	for _, p := range []*int{&cfg.MaxIncludes, &cfg.MaxIncludeDepth, &cfg.MaxWhereBytes, &cfg.MaxWhereParams, &cfg.SnapshotRowsPerSec} {
		if *p == 0 {
			*p = -1
		}
	}
	if cfg.MaxIncludeDepth > protocol.MaxIncludeDepth {
		return fmt.Errorf("--max-include-depth %d: the protocol allows at most %d", cfg.MaxIncludeDepth, protocol.MaxIncludeDepth)
	}
	logger, err := newLogger(stderr, level, format)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	cfg.Auth.Secret = []byte(secret)
	if publicKey != "" {
		b, err := os.ReadFile(publicKey)
		if err != nil {
			return fmt.Errorf("--auth-public-key: read the public key: %w", err)
		}
		if !bytes.Contains(b, []byte("-----BEGIN ")) {
			return fmt.Errorf("--auth-public-key: %s is not a PEM file (expected a -----BEGIN PUBLIC KEY----- block)", publicKey)
		}
		cfg.Auth.PublicKeyPEM = b
	}
	cfg.Auth.Logger = logger
	if *pprofListen != "" {
		stop, err := servePprof(ctx, *pprofListen, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	svc, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	return svc.ListenAndServe(ctx)
}
