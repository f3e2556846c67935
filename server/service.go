// Package server is `lattice serve`: it bootstraps Postgres, reads logical
// replication into the retained change log, and streams shapes to clients
// over WebSocket (protocol v1).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/auth"
	"github.com/latticesync/lattice/server/authz"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/changelog/jetstream"
	"github.com/latticesync/lattice/server/limits"
	"github.com/latticesync/lattice/server/pgrepl"
	"github.com/latticesync/lattice/server/writes"
)

// Config configures the service. The zero value of every field but
// DatabaseURL has a documented default.
type Config struct {
	// DatabaseURL is the Postgres connection string (env DATABASE_URL).
	DatabaseURL string
	// Listen is the HTTP address (env LATTICE_LISTEN); default ":5133".
	Listen string
	// Auth says how client JWTs are verified: an HMAC secret (env
	// LATTICE_AUTH_SECRET), a PEM public key (--auth-public-key) or a JWKS
	// URL (--jwks-url), and the issuer and audience to require (see
	// server/auth).
	Auth auth.Config
	// Insecure accepts clients without checking tokens. Local development only.
	Insecure bool
	// DataDir holds the retained change log; default "lattice-data".
	DataDir string
	// Slot overrides the replication slot name; default "lattice_<log id>".
	Slot string
	// LogMaxBytes and LogMaxAge bound the retained change log; defaults
	// 1 GiB and 24h. Clients away longer re-sync their shapes.
	LogMaxBytes int64
	LogMaxAge   time.Duration
	// LogSegmentBytes is the size of one log segment file; default 64 MiB.
	// Retention removes whole segments.
	LogSegmentBytes int64
	// LogURL, when set, keeps the retained change log in a NATS
	// JetStream stream (server/changelog/jetstream) instead of DataDir:
	// nats://HOST:PORT[,nats://HOST:PORT...]. LogStream names the stream
	// (default LATTICE); LogMaxBytes and LogMaxAge are its retention when
	// the service creates it.
	LogURL      string
	LogStream   string
	LogReplicas int // the stream's replicas when the service creates it; default 1
	// WriteTimeout disconnects a client that does not accept a frame within
	// it; default 30s.
	WriteTimeout time.Duration
	// HelloTimeout bounds how long a connection may stay silent before it
	// has identified itself: the HTTP request (WebSocket upgrade) must
	// arrive within it, and then the client's Hello; default 10s. A
	// connection that misses it is closed.
	HelloTimeout time.Duration
	// MaxClockSkew is how far ahead of the service's wall clock a client
	// write's HLC may be: a write stamped later is stamped at the service's
	// wall clock + MaxClockSkew instead (see merge.CapSkew), counted in
	// lattice_clock_skew_clamped_total and logged; default 1m.
	MaxClockSkew time.Duration
	// MaxShapesPerConn limits shapes per connection; default 1000.
	MaxShapesPerConn int
	// MaxSnapshotRows limits the rows of one subscription's initial data
	// (0 = no limit).
	MaxSnapshotRows int
	// Shape limits, checked before any work for the shape (server/limits):
	// a shape over one is refused with a non-fatal bad_shape. A negative
	// value is no limit.
	//
	// MaxIncludes bounds the include nodes of one shape, all levels
	// together; default 64.
	MaxIncludes int
	// MaxIncludeDepth bounds how deep a shape's includes nest; default 8.
	// It may not exceed protocol.MaxIncludeDepth (16), which the frame
	// decoder enforces whatever this is.
	MaxIncludeDepth int
	// MaxWhereBytes bounds the length of one where clause (a shape's or
	// an include's); default 4096.
	MaxWhereBytes int
	// MaxWhereParams bounds the parameters of one where clause; default 64.
	MaxWhereParams int
	// SnapshotRowsPerSec paces the rows one connection reads from
	// Postgres: the initial data of its shapes and the rows that move
	// into its relational shapes (a token bucket holding a quarter
	// second's worth) while other clients are connected (a client alone
	// is not paced); default 50,000, negative: no limit.
	SnapshotRowsPerSec int
	// AuthRole is the Postgres role clients act as (env
	// LATTICE_AUTH_ROLE): its row-level security policies and privileges
	// decide what each user reads and writes, with the token's claims in
	// request.jwt.claims. Empty: every user reads and writes every row.
	AuthRole string
	// PolicyPoll is how often the service looks for policy changes
	// (CREATE/ALTER/DROP POLICY, RLS switched, privileges); default 1s.
	PolicyPoll time.Duration
	// ReadyMaxLag is how far behind Postgres replication may be for
	// /readyz to answer 200 (see ready.go); default 30s.
	ReadyMaxLag time.Duration
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":5133"
	}
	if c.DataDir == "" {
		c.DataDir = "lattice-data"
	}
	if c.LogMaxBytes == 0 {
		c.LogMaxBytes = 1 << 30
	}
	if c.LogMaxAge == 0 {
		c.LogMaxAge = 24 * time.Hour
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.LogURL != "" && c.LogStream == "" {
		c.LogStream = "LATTICE"
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = merge.DefaultMaxSkew
	}
	if c.MaxShapesPerConn == 0 {
		c.MaxShapesPerConn = 1000
	}
	if c.MaxIncludes == 0 {
		c.MaxIncludes = limits.DefaultIncludes
	}
	if c.MaxIncludeDepth == 0 {
		c.MaxIncludeDepth = limits.DefaultDepth
	}
	if c.MaxWhereBytes == 0 {
		c.MaxWhereBytes = limits.DefaultWhereBytes
	}
	if c.MaxWhereParams == 0 {
		c.MaxWhereParams = limits.DefaultParams
	}
	if c.SnapshotRowsPerSec == 0 {
		c.SnapshotRowsPerSec = limits.DefaultRowsPerSec
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PolicyPoll == 0 {
		c.PolicyPoll = time.Second
	}
	if c.ReadyMaxLag == 0 {
		c.ReadyMaxLag = DefaultReadyMaxLag
	}
}

// Service is a running sync service.
type Service struct {
	cfg  Config
	log  *slog.Logger
	pool *pgxpool.Pool
	// cur is the change log and its slot; replaced (by the replication
	// goroutine only) when the slot is lost (relog.go).
	cur     atomic.Pointer[logState]
	tables  *catalog.Tables
	applier *writes.Applier
	metrics *metrics
	// verifier checks client tokens (nil when Insecure).
	verifier *auth.Verifier
	// recent: logged transactions not yet seen visible (visible.go).
	recent recentXids

	replErr atomic.Pointer[error]
	// logErr is the change log's last append failure (a full disk), nil
	// once an append succeeds again: new work is refused meanwhile.
	logErr    atomic.Pointer[error]
	replUp    atomic.Bool
	lastRecv  atomic.Int64 // unix nanos of the last txn appended
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	closeOnce sync.Once

	// idleLSN: replication found nothing pending at this WAL position;
	// walLag dates Postgres' WAL for /readyz; closed: Close was called
	// (ready.go).
	idleLSN atomic.Uint64
	// following: another replica streams the slot and appends to the
	// shared JetStream log; slotFlushed is the slot's confirmed position,
	// up to which that replica has stored everything in the stream.
	following   atomic.Bool
	slotFlushed atomic.Uint64
	walLag      walLag
	closed      atomic.Bool

	connMu sync.Mutex
	conns  map[*session]struct{}
	nconns atomic.Int64 // len(conns), read without connMu
	// drainCtx is cancelled by Shutdown (under connMu): sessions finish
	// the request at hand and close with going-away; sessWG counts them.
	drainCtx context.Context
	drain    context.CancelFunc
	sessWG   sync.WaitGroup

	router  *router
	shadows shadowRels // shadow tables in the replication stream (row versions)

	// policies are the auth role's compiled row-level security policies
	// (nil without AuthRole); policyCh is closed when they are replaced.
	policies atomic.Pointer[authz.Policies]
	policyMu sync.Mutex
	policyCh chan struct{}

	// schema: tables stopped by unsupported schema changes (schemastate.go).
	schema schemaState
}

// ErrConfig wraps problems with the database setup that an operator must fix.
var ErrConfig = errors.New("database configuration")

// Start connects to Postgres, bootstraps the lattice schema, publication and
// slot, opens the change log and starts reading replication. Serve the
// returned service's Handler (or call ListenAndServe); Close stops it.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if cfg.DatabaseURL == "" {
		return nil, errors.New("no database: set DATABASE_URL or --database-url")
	}
	if cfg.MaxIncludeDepth > protocol.MaxIncludeDepth {
		return nil, fmt.Errorf("max include depth %d: the protocol allows at most %d levels", cfg.MaxIncludeDepth, protocol.MaxIncludeDepth)
	}
	if !cfg.Insecure && len(cfg.Auth.Secret) == 0 && len(cfg.Auth.PublicKeyPEM) == 0 && cfg.Auth.JWKSURL == "" {
		return nil, errors.New("no auth key: set LATTICE_AUTH_SECRET, --auth-public-key or --jwks-url, or pass --insecure for local development")
	}
	s := &Service{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), conns: map[*session]struct{}{}, router: newRouter()}
	s.drainCtx, s.drain = context.WithCancel(context.Background())
	if cfg.Insecure {
		s.log.Warn("INSECURE MODE: clients are not authenticated; any client can read every electrified table. Never use --insecure in production.")
	} else {
		if cfg.Auth.Logger == nil {
			cfg.Auth.Logger = s.log
		}
		v, err := auth.New(context.WithoutCancel(ctx), cfg.Auth) // refreshes JWKS until Close, not until Start's ctx ends
		if err != nil {
			return nil, err
		}
		s.verifier = v
		s.log.Info("client tokens verified", "methods", strings.Join(v.Methods(), ","),
			"issuer", cfg.Auth.Issuer, "audience", cfg.Auth.Audience)
	}
	started := false
	defer func() {
		if !started {
			s.verifier.Close()
		}
	}()
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	for k, v := range coltype.SessionParams {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	pcfg.MaxConns = 16
	var warned atomic.Bool
	pcfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		return durableCommits(ctx, conn, s.log, &warned)
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := catalog.Bootstrap(ctx, s.pool); err != nil {
		s.pool.Close()
		var ce *catalog.ConfigError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %s", ErrConfig, ce.Error())
		}
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	s.metrics.reg.MustRegister(newQueueCollector(s))
	s.tables = catalog.NewTables(s.pool)
	if err := s.loadSchemaState(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	s.applier = writes.NewApplier(s.pool, s.tables)
	s.policyCh = make(chan struct{})
	if cfg.AuthRole == "" {
		s.log.Warn("NO --auth-role: every user can read and write every row of every electrified table. Set --auth-role (LATTICE_AUTH_ROLE) to enforce Postgres row-level security per user.")
	} else {
		if err := authz.CheckRole(ctx, s.pool, cfg.AuthRole); err != nil {
			s.pool.Close()
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		p, err := authz.Load(ctx, s.pool, s.tables, cfg.AuthRole)
		if err != nil {
			s.pool.Close()
			return nil, err
		}
		if errs := p.Errors(); len(errs) > 0 {
			s.pool.Close()
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Error()
			}
			return nil, fmt.Errorf("%w: row-level security policies the service cannot enforce on the stream (see server/authz/README.md for the supported forms): %s", ErrConfig, strings.Join(msgs, "; "))
		}
		s.policies.Store(p)
		s.log.Info("row-level security enforced", "auth_role", cfg.AuthRole, "membership_tables", strings.Join(p.SetTables(), ","))
	}
	if err := s.openLog(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.replicate(rctx)
	go s.pollLag(rctx)
	if cfg.AuthRole != "" {
		s.wg.Add(1)
		go s.pollPolicies(rctx)
	}
	started = true
	return s, nil
}

// durableCommits makes a connection of the pool commit durably: an Ack
// tells the client that its write is in Postgres for good, and the client
// forgets it. With synchronous_commit = off, a commit returns before its
// WAL is flushed, and a crash of Postgres loses the last ones (acknowledged
// writes, gone on both sides). Such a connection uses local instead
// (flushed on this server; no wait for standbys, which off did not wait
// for either); other settings (on, remote_apply...) are kept.
func durableCommits(ctx context.Context, conn *pgx.Conn, log *slog.Logger, warned *atomic.Bool) error {
	var set bool
	err := conn.QueryRow(ctx, `SELECT CASE WHEN current_setting('synchronous_commit') = 'off'
		THEN set_config('synchronous_commit', 'local', false) = 'local' ELSE false END`).Scan(&set)
	if err != nil {
		return fmt.Errorf("set synchronous_commit: %w", err)
	}
	if set && warned.CompareAndSwap(false, true) {
		log.Info("synchronous_commit is off in Postgres: the service commits client writes with synchronous_commit = local, so that an acknowledged write survives a crash of Postgres")
	}
	return nil
}

// pollPolicies reloads the policies when the catalog says they changed.
// Sessions see the new policies (policyChanged) and re-check every row
// they hold. Policies that cannot be enforced close the tables they guard
// to clients (never ignored), with the reason in the log and /readyz.
func (s *Service) pollPolicies(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PolicyPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := s.policies.Load()
		fp, err := authz.Fingerprint(ctx, s.pool, s.cfg.AuthRole)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("read policy fingerprint", "err", err)
			}
			continue
		}
		if cur != nil && fp == cur.Fingerprint {
			continue
		}
		if err := s.reloadPolicies(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reload row-level security policies", "err", err)
		}
	}
}

// reloadPolicies reads the policies again and tells the sessions.
func (s *Service) reloadPolicies(ctx context.Context) error {
	p, err := authz.Load(ctx, s.pool, s.tables, s.cfg.AuthRole)
	if err != nil {
		return err
	}
	for _, e := range p.Errors() {
		s.log.Error("row-level security policy cannot be enforced on the stream: its table is closed to clients until it is fixed", "err", e.Error())
	}
	s.log.Info("row-level security policies changed; sessions re-check their rows", "membership_tables", strings.Join(p.SetTables(), ","))
	s.policyMu.Lock()
	s.policies.Store(p)
	close(s.policyCh)
	s.policyCh = make(chan struct{})
	s.policyMu.Unlock()
	return nil
}

// policyChanged returns a channel closed when the policies are replaced.
func (s *Service) policyChanged() <-chan struct{} {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	return s.policyCh
}

// openLog opens the change log and makes sure its slot exists. A log that
// holds data but whose slot is gone is not continuous any more: it is moved
// aside and a new log (with a new id, so every client re-syncs) is started.
func (s *Service) openLog(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, "log")
	opts := &changelog.Options{MaxBytes: s.cfg.LogMaxBytes, MaxAge: s.cfg.LogMaxAge, SegmentBytes: s.cfg.LogSegmentBytes, Logger: s.log}
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	for attempt := 0; ; attempt++ {
		var l changelog.Store
		var err error
		if s.cfg.LogURL != "" {
			l, err = jetstream.Open(ctx, jetstream.Options{URL: s.cfg.LogURL, Stream: s.cfg.LogStream, Replicas: s.cfg.LogReplicas,
				MaxBytes: s.cfg.LogMaxBytes, MaxAge: s.cfg.LogMaxAge, Logger: s.log})
		} else {
			l, err = changelog.Open(dir, opts)
		}
		if err != nil {
			return fmt.Errorf("open change log: %w", err)
		}
		slot := s.cfg.Slot
		if slot == "" {
			slot = "lattice_" + l.ID()
		}
		created, err := catalog.EnsureSlot(ctx, s.pool, slot)
		if err != nil {
			l.Close()
			if isPermission(err) {
				return fmt.Errorf("%w: %v: the role needs the REPLICATION attribute (ALTER ROLE ... WITH REPLICATION)", ErrConfig, err)
			}
			return err
		}
		if created && l.Head() > 0 && s.cfg.LogURL != "" {
			l.Close()
			return fmt.Errorf("%w: replication slot %s was missing (dropped by an operator, or invalidated) while the JetStream log %s holds changes up to %s: the changes since are not in the stream; delete the stream (nats stream rm %s) and start the service replicas again, every client then re-syncs",
				ErrConfig, slot, s.cfg.LogStream, pglogrepl.LSN(l.EndLSN()), s.cfg.LogStream)
		}
		if created && l.Head() > 0 && attempt == 0 {
			aside := dir + ".orphaned-" + time.Now().UTC().Format("20060102T150405")
			s.metrics.slotLost.Inc()
			s.log.Error("replication slot was missing (dropped by an operator, or invalidated): the changes since the change log's end are lost from the stream; the log is moved aside and a new one started, every client re-syncs its shapes",
				"slot", slot, "log_end_lsn", pglogrepl.LSN(l.EndLSN()).String(), "moved_to", aside)
			l.Close()
			if _, err := s.pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
				return fmt.Errorf("drop slot %s: %w", slot, err)
			}
			if err := os.Rename(dir, aside); err != nil {
				return fmt.Errorf("move change log aside: %w", err)
			}
			continue
		}
		s.cur.Store(&logState{log: l, slot: slot})
		break
	}
	cur := s.cur.Load()
	others, err := catalog.OtherSlots(ctx, s.pool, cur.slot)
	if err != nil {
		return err
	}
	for _, o := range others {
		s.log.Warn("another lattice replication slot exists in this database; if its service is gone, drop it to free WAL",
			"slot", o.Name, "active", o.Active, "retained_wal_bytes", o.RetainedWAL,
			"drop_with", fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", o.Name))
	}
	s.log.Info("change log open", "dir", dir, "log_id", cur.log.ID(), "slot", cur.slot, "head_lsn", pglogrepl.LSN(cur.log.Head()).String())
	return nil
}

func isPermission(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "permission denied") || strings.Contains(msg, "must be superuser or replication role") || strings.Contains(msg, "42501")
}

// unreachable reports whether err says that Postgres could not be reached
// or is going away or starting up (not a verdict on the query).
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		// 08: connection exception; 57P01-57P03: admin or crash shutdown,
		// cannot connect now (starting up).
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// replicate runs the replication reader, restarting it after errors.
// When the slot is gone, it starts a new change log on a new slot
// (restartLog): clients re-sync.
func (s *Service) replicate(ctx context.Context) {
	defer s.wg.Done()
	const minBackoff, maxBackoff = 200 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		cur := s.cur.Load()
		streamed := false
		cfg := pgrepl.Config{
			ConnString:  s.cfg.DatabaseURL,
			Slot:        cur.slot,
			Publication: catalog.Publication,
			Describe:    s.describeRelation,
			Sink: func(ctx context.Context, txns []*changelog.Txn) error {
				return s.sink(ctx, cur.log, txns)
			},
			Flushed: cur.log.EndLSN,
			// Confirm Postgres' position while idle, so WAL of busy unsynced
			// tables is not retained for us.
			AdvanceWhenIdle: true,
			Idle:            func(lsn uint64) { s.idleLSN.Store(lsn) },
			Started: func() {
				// Replicating again (after Postgres came back, say):
				// healthy even before the next transaction arrives.
				streamed = true
				s.following.Store(false)
				s.replErr.Store(nil)
			},
			Logger: s.log,
		}
		s.replUp.Store(true)
		err := pgrepl.Run(ctx, cfg, cur.log.Head())
		s.replUp.Store(false)
		if ctx.Err() != nil {
			return
		}
		if streamed {
			backoff = minBackoff // a new failure, not the same one again
		}
		s.replErr.Store(&err)
		if errors.Is(err, pgrepl.ErrSlotMissing) {
			rerr := s.restartLog(ctx, cur, err)
			if rerr == nil {
				backoff = minBackoff
				continue
			}
			err = rerr
			s.replErr.Store(&err)
		}
		if errors.Is(err, pgrepl.ErrSlotInUse) && s.cfg.LogURL != "" {
			// Replicas sharing a JetStream log take turns on the slot:
			// the one streaming it appends, the others serve from the
			// stream and take over when it stops (the slot is the lease;
			// the stream fences a stale appender).
			s.replErr.Store(nil)
			s.following.Store(true)
			s.log.Debug("another replica reads the replication slot; serving from the stream", "slot", cur.slot, "err", err)
			backoff = minBackoff
		} else if errors.Is(err, pgrepl.ErrSlotInUse) {
			// Right after a restart Postgres may still be closing the previous
			// walsender; a slot busy for long is held by another process.
			s.log.Warn("replication slot is busy; retrying (if this persists, another process holds the slot)", "slot", cur.slot, "err", err, "in", backoff)
		} else {
			s.log.Error("replication stopped; restarting", "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (s *Service) sink(ctx context.Context, l changelog.Store, txns []*changelog.Txn) error {
	for _, t := range txns {
		s.pairVersions(t)
	}
	s.recent.add(txns)
	if err := l.Append(txns...); err != nil {
		// Not confirmed to the slot: replication restarts from the last
		// durable position and retries, until space returns.
		s.logErr.Store(&err)
		return err
	}
	s.logErr.Store(nil)
	now := time.Now()
	s.lastRecv.Store(now.UnixNano())
	changes := 0
	for _, t := range txns {
		changes += len(t.Changes)
	}
	s.metrics.txns.Add(float64(len(txns)))
	s.metrics.changes.Add(float64(changes))
	if last := txns[len(txns)-1]; last.CommitTime > 0 {
		lag := now.Sub(time.UnixMicro(last.CommitTime)).Seconds()
		s.metrics.lagSeconds.Set(max(lag, 0))
	}
	s.replErr.Store(nil)
	return nil
}

// describeRelation builds our Rel for a pgoutput Relation message: columns
// and types from the message (the table as of that point in the WAL),
// primary key and NOT NULL from the catalog.
func (s *Service) describeRelation(ctx context.Context, msg *pglogrepl.RelationMessage) (*changelog.Rel, error) {
	if isShadow(msg.Namespace, msg.RelationName) {
		return s.describeShadow(ctx, msg)
	}
	tb, err := s.tables.Describe(ctx, msg.RelationID, true)
	if errors.Is(err, pgx.ErrNoRows) {
		// Dropped since this part of the WAL was written: describe it from
		// the message alone, so that replication goes on past it.
		s.log.Warn("a table in the replication stream no longer exists; its changes are read by the stream's description",
			"table", msg.Namespace+"."+msg.RelationName, "oid", msg.RelationID)
		return relFromMessage(msg), nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.observeSchema(ctx, msg.RelationID, relKey(msg.Namespace, msg.RelationName)); err != nil {
		return nil, err
	}
	cat := tb.Rel
	byName := make(map[string]int, len(cat.Columns))
	for i, c := range cat.Columns {
		byName[c.Name] = i
	}
	rel := &changelog.Rel{Schema: msg.Namespace, Table: msg.RelationName}
	for _, mc := range msg.Columns {
		col := protocol.Column{Name: mc.Name}
		i, ok := byName[mc.Name]
		var attnum int16
		if ok {
			col.NotNull = cat.Columns[i].NotNull
			col.Default = cat.Columns[i].Default
			attnum = cat.Attnums[i]
		}
		rel.Attnums = append(rel.Attnums, attnum)
		if typ, ok := coltype.BuiltinByOID(mc.DataType); ok {
			col.Type = typ
			if i, ok := byName[mc.Name]; ok {
				col.Type.Name = cat.Columns[i].Type.Name
			}
		} else if i, ok := byName[mc.Name]; ok {
			col.Type = cat.Columns[i].Type
		} else {
			return nil, fmt.Errorf("describe %s.%s: column %s has unknown type oid %d", msg.Namespace, msg.RelationName, mc.Name, mc.DataType)
		}
		rel.Columns = append(rel.Columns, col)
	}
	for _, k := range cat.PK {
		name := cat.Columns[k].Name
		found := false
		for j, c := range rel.Columns {
			if c.Name == name {
				rel.PK = append(rel.PK, j)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("describe %s.%s: primary key column %s missing from the replication stream", msg.Namespace, msg.RelationName, name)
		}
	}
	if catalog.SameRel(rel, cat) {
		return cat, nil
	}
	return rel, nil
}

// relFromMessage describes a relation from its pgoutput Relation message
// alone: built-in types by OID, others as text; the key is the columns
// flagged as the replica identity (all of them for REPLICA IDENTITY FULL),
// or the first column.
func relFromMessage(msg *pglogrepl.RelationMessage) *changelog.Rel {
	text, _ := coltype.BuiltinByOID(25)
	rel := &changelog.Rel{Schema: msg.Namespace, Table: msg.RelationName}
	for i, mc := range msg.Columns {
		typ, ok := coltype.BuiltinByOID(mc.DataType)
		if !ok {
			typ = text
		}
		rel.Columns = append(rel.Columns, protocol.Column{Name: mc.Name, Type: typ})
		if mc.Flags&1 != 0 {
			rel.PK = append(rel.PK, i)
		}
	}
	if len(rel.PK) == 0 && len(rel.Columns) > 0 {
		rel.PK = []int{0}
	}
	return rel
}

// pollLag samples replication lag in bytes and the log size.
func (s *Service) pollLag(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	s.sampleWAL(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sampleWAL(ctx)
		var cur string
		if err := s.pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err == nil {
			if lsn, err := pglogrepl.ParseLSN(cur); err == nil {
				end := s.changeLog().EndLSN()
				lag := float64(0)
				if uint64(lsn) > end {
					lag = float64(uint64(lsn) - end)
				}
				s.metrics.lagBytes.Set(lag)
			}
		}
		if last := s.lastRecv.Load(); last > 0 && time.Since(time.Unix(0, last)) > 2*time.Second {
			s.metrics.lagSeconds.Set(0)
		}
		// Retention of a JetStream log is the stream's own.
		if l, ok := s.changeLog().(*changelog.Log); ok {
			if err := l.Enforce(time.Now()); err != nil && !errors.Is(err, changelog.ErrClosed) {
				s.log.Error("change log retention", "err", err)
			}
			st := l.Stats()
			s.metrics.logBytes.Set(float64(st.Bytes))
		}
	}
}

// Handler serves the protocol endpoint, /healthz (liveness), /readyz
// (readiness, ready.go) and /metrics.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(protocol.Path, s.serveSync)
	mux.HandleFunc("/healthz", s.serveHealth)
	mux.HandleFunc("/readyz", s.serveReady)
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// refuseNewWork returns the error that ends a session asking for new work
// (a write, a subscribe) while the change log cannot be written: the
// client retries after reconnecting, and nothing is lost meanwhile (its
// writes wait in its queue).
func (s *Service) refuseNewWork() error {
	p := s.logErr.Load()
	if p == nil || *p == nil {
		return nil
	}
	return &clientError{protocol.ErrInternal, "service unavailable: its change log cannot be written (" + (*p).Error() + "); retry later", true}
}

// LogID is the id of the service's change log.
func (s *Service) LogID() string { return s.changeLog().ID() }

// Slot is the replication slot the service reads.
func (s *Service) Slot() string { return s.cur.Load().slot }

// TruncatedThrough is the newest commit LSN that retention removed from the
// change log: clients behind it re-sync.
func (s *Service) TruncatedThrough() uint64 { return s.changeLog().TruncatedThrough() }

// shared reports whether more than one client is connected: snapshot
// pacing (SnapshotRowsPerSec) protects the others, and a client alone
// reads at full speed.
func (s *Service) shared() bool { return s.nconns.Load() > 1 }

// HeadLSN is the newest commit LSN in the change log.
func (s *Service) HeadLSN() uint64 { return s.changeLog().Head() }

// changeLog is the current change log.
func (s *Service) changeLog() changelog.Store { return s.cur.Load().log }

// ListenAndServe serves Handler on cfg.Listen until ctx ends.
func (s *Service) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// drainTimeout bounds how long Serve waits, when its ctx ends, for the
// sessions to finish the request at hand and close.
const drainTimeout = 10 * time.Second

// Serve serves Handler on ln until ctx ends, then shuts down gracefully:
// no new connections, then Shutdown (within drainTimeout).
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	ln = failpoint.Listener(ln, "server/conn-write")
	// A connection that never sends its request is closed after
	// HelloTimeout, as one that never sends Hello (and an idle keep-alive
	// connection: IdleTimeout defaults to ReadHeaderTimeout).
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.cfg.HelloTimeout}
	s.log.Info("listening", "addr", ln.Addr().String(), "path", protocol.Path)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	s.log.Info("shutting down: no new connections; sessions finish their request and close (going away)")
	srv.Shutdown(sctx) // closes the listener; WebSockets are left to Shutdown
	if err := s.Shutdown(sctx); err != nil {
		s.log.Warn("sessions did not close in time; disconnected", "err", err)
	}
	return nil
}

// shapeLimits are the limits that Subscribe checks each shape against.
func (s *Service) shapeLimits() limits.Limits {
	return limits.Limits{Includes: s.cfg.MaxIncludes, Depth: s.cfg.MaxIncludeDepth,
		WhereBytes: s.cfg.MaxWhereBytes, Params: s.cfg.MaxWhereParams}
}

// Shutdown ends every session gracefully: a session finishes the request
// it is handling (a client write being applied gets its Ack), then closes
// its WebSocket with status 1001 (going away), which clients answer by
// reconnecting at once. New sessions are refused, and /readyz reports
// "shutting down". When ctx ends first, the remaining sessions are
// disconnected and Shutdown returns ctx's error. Replication runs on
// until Close.
func (s *Service) Shutdown(ctx context.Context) error {
	s.connMu.Lock()
	s.drain()
	s.connMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.sessWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeSessions()
		return fmt.Errorf("shut down sessions: %w", ctx.Err())
	}
}

func (s *Service) isDraining() bool { return s.drainCtx.Err() != nil }

func (s *Service) closeSessions() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for sess := range s.conns {
		sess.cancel()
	}
}

// Close stops replication, disconnects clients and closes the log.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeSessions()
		s.cancel()
		s.wg.Wait()
		err = s.changeLog().Close()
		s.pool.Close()
		s.verifier.Close()
		s.drain()
	})
	return err
}
