package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/latticesync/lattice/protocol"
)

// Reconnect backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// notifyDelay bounds how long live-query notifications are held back
// while more frames are queued (catch-up), so that a burst of
// transactions costs one re-run of each affected query.
const notifyDelay = 100 * time.Millisecond

// idleTimeout is how long a connection may stay completely silent (no
// frame, no ping; the service pings every 15 s) before the client
// considers it dead and reconnects. Where pings are invisible (js), no
// timeout applies.
const idleTimeout = 45 * time.Second

// dialTimeout bounds the WebSocket handshake.
const dialTimeout = 30 * time.Second

// stableSession is how long a session must have been online for the next
// reconnect to start again from the shortest backoff.
const stableSession = 5 * time.Second

// errReconnect ends a session on purpose (resync, too_slow, internal).
var errReconnect = errors.New("reconnect requested by the service")

// errGoingAway wraps the end of a session the service closed with status
// 1001 (going away: it shuts down).
var errGoingAway = errors.New("the service is going away")

// Run connects to the service and keeps the replica in sync, reconnecting
// with exponential backoff (100 ms to 10 s, with jitter) after errors,
// until ctx ends or Close is called. It returns ctx.Err(), or ErrClosed
// after Close. Only one Run may be active at a time. A connection the
// service closes with status 1001 (going away: a graceful shutdown) is
// replaced at once, without a delay, the backoff starting again from
// 100 ms.
//
// Tokens: each connection asks Options.TokenFunc for its token (unless
// SetToken gave one since the last connection). When the service refuses
// a token (unauthorized: expired, invalid), the client gets a new one and
// reconnects at once; a token the service refused is never sent again:
// while TokenFunc returns the same one, the client stays offline (Status
// keeps the service's error), asking it again with backoff, and
// reconnects as soon as SetToken gives another. A token with an exp claim
// is replaced before it expires (see refreshAt): the client asks for the
// next one and switches connections without reporting a state change.
//
// Errors that a retry cannot fix end Run early, as the protocol asks:
// unsupported_version, and unauthorized when there is no TokenFunc (nor a
// new token from SetToken) to get a new token from. The returned error
// then wraps the *protocol.Error.
func (c *Client) Run(ctx context.Context) error {
	if c.opts.URL == "" {
		return errors.New("run client: no service URL in Options")
	}
	urls, err := syncURLs(c.opts.URL)
	if err != nil {
		return err
	}
	c.runMu.Lock()
	if c.running || c.closeCtx.Err() != nil {
		c.runMu.Unlock()
		if c.running {
			return errors.New("run client: already running")
		}
		return ErrClosed
	}
	c.running = true
	c.runWG.Add(1)
	c.runMu.Unlock()
	defer func() {
		c.runMu.Lock()
		c.running = false
		c.runMu.Unlock()
		c.runWG.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.closeCtx, cancel)
	defer stop()

	attempt := 0
	next := 0          // index in urls of the next connection's service
	authFails := 0     // unauthorized in a row without a Welcome
	switching := false // the last session ended to switch to a refreshed token
	// version is the protocol version of Hello: this package's, or lower
	// for the rest of the run once a service refused it (an older
	// service; versions 2 and 3 differ only in what the service sends).
	version := uint16(protocol.Version)
	for {
		var online time.Duration
		token, err := c.nextToken(ctx)
		if err != nil {
			err = fmt.Errorf("get token: %w", err)
		} else if c.isRefused(token) {
			// The same token again: wait for another one.
			if c.waitToken(ctx, &attempt) {
				continue
			}
		} else {
			if !switching {
				c.updateStatus(func(s *Status) { s.State = StateConnecting })
			}
			online, err = c.runSession(ctx, urls[next%len(urls)], token, version)
		}
		if !errors.Is(err, errTokenRefresh) {
			// Several services (replicas of one, sharing a log): the
			// next connection tries the next one, so that a replica
			// that is down or going away is failed over at once.
			next++
		}
		switching = false
		if ctx.Err() != nil {
			c.updateStatus(func(s *Status) { s.State = StateOffline })
			if c.closeCtx.Err() != nil {
				return ErrClosed
			}
			return ctx.Err()
		}
		if errors.Is(err, errTokenRefresh) {
			switching = true
			attempt, authFails = 0, 0
			continue
		}
		c.log.Warn("lattice: connection ended", "err", err)
		c.updateStatus(func(s *Status) { s.State = StateOffline; s.LastError = err })
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.ErrVersion {
			if version > minHelloVersion {
				version--
				c.log.Info("lattice: the service speaks an older protocol; saying Hello again with the version below", "version", version)
				continue
			}
			return fmt.Errorf("run client: %w", err)
		}
		if online >= stableSession {
			attempt = 0
		}
		if online > 0 && errors.Is(err, errGoingAway) {
			// The service shuts down gracefully (a restart, a deploy):
			// another instance, or this one restarted, takes connections
			// now or soon. Reconnect at once, then back off from the start.
			attempt, authFails = 0, 0
			continue
		}
		if isUnauthorized(err) {
			c.refuse(token)
			if c.opts.TokenFunc == nil && !c.hasNewToken() {
				return fmt.Errorf("run client: %w", err)
			}
			if online > 0 { // the token expired on an open connection
				authFails = 0
			}
			authFails++
			if authFails == 1 {
				continue // get a new token and reconnect at once
			}
			attempt = max(attempt, authFails-2)
		} else if online > 0 {
			authFails = 0
		}
		d := backoff(attempt)
		attempt++
		select {
		case <-time.After(d):
		case <-c.net.wake: // the network is back: try now
			attempt = 0
		case <-c.tok.wake: // a new token: try now
		case <-ctx.Done():
		}
	}
}

// isUnauthorized reports whether err is the service refusing the token.
func isUnauthorized(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Code == protocol.ErrUnauthorized
}

// waitToken waits, offline, for a token other than the refused one:
// SetToken, the network coming back, or (with a TokenFunc to ask again)
// a backoff delay; without a TokenFunc only SetToken brings one. It
// reports false when ctx ended.
func (c *Client) waitToken(ctx context.Context, attempt *int) bool {
	c.updateStatus(func(s *Status) { s.State = StateOffline })
	var again <-chan time.Time
	if c.opts.TokenFunc != nil {
		t := time.NewTimer(backoff(*attempt))
		defer t.Stop()
		again = t.C
		*attempt++
	}
	select {
	case <-again:
	case <-c.net.wake:
		*attempt = 0
	case <-c.tok.wake:
		*attempt = 0
	case <-ctx.Done():
		return false
	}
	return true
}

// backoff returns the delay before reconnect attempt n (0-based): a random
// duration in [d/2, d] with d = 100 ms * 2^n, at most 10 s.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 20 {
		d = min(minBackoff<<n, maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// syncURL maps a service URL to the WebSocket URL of the sync endpoint.
// syncURLs parses Options.URL: one service URL, or several separated by
// commas (replicas sharing one change log, tried in turn).
func syncURLs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := syncURL(part)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse service URL %q: no URL", s)
	}
	return out, nil
}

func syncURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parse service URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("parse service URL %q: scheme must be ws, wss, http or https", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = protocol.Path
	}
	return u.String(), nil
}

// session is one connection to the service. Fields other than the channels
// are used by the Run goroutine, or under the client's db lock (those
// touched by Subscribe: ready, nextReq, pending).
type session struct {
	// dropAcked: the service re-syncs this client (Welcome.Resync); the
	// reset snapshot drops the local transactions acknowledged by then.
	dropAcked bool

	c      *Client
	ws     *websocket.Conn // nil when driven without a socket (benchmarks, tests)
	ctx    context.Context
	cancel context.CancelFunc

	frames chan item // decoded frames, from the reader

	welcomed bool
	online   time.Time // when Welcome arrived
	ready    bool      // Welcome handled: new subscriptions are sent at once
	logID    string    // from Welcome
	rels     map[uint32]*relation
	nextReq  uint32
	pending  map[uint32]request // requests awaiting an answer, by ReqID

	// welcomeReq is the last request sent on Welcome: local writes wait
	// for the answers up to it, which describe the tables as they are now
	// (their columns may have changed while the client was away).
	welcomeReq uint32

	// goingAway: the service closed the connection with status 1001.
	goingAway atomic.Bool

	// Liveness: the reader is waiting for the network, and the time
	// (unix ns) of the last sign of life (frame, ping, or start of wait).
	reading atomic.Bool
	active  atomic.Int64

	errMu sync.Mutex
	err   error // why the session was aborted by a helper goroutine

	// Outgoing frames, drained by the writer goroutine.
	outMu   sync.Mutex
	out     [][]byte
	outWake chan struct{}

	// Local transactions: the last txid sent on this session and those
	// sent and not yet acknowledged (under db); pushWake wakes the pusher.
	sentTxn  uint64
	inFlight map[uint64]struct{}
	pushWake chan struct{}

	// post holds status updates made under the db lock, for OnStatus to
	// be called after it is released.
	post []func(*Status)

	// Committed changes not yet reported to live queries.
	notifyTables map[string]struct{}
	notifySchema bool
	notifyLSN    bool
	notifySince  time.Time
}

// request is a Subscribe or Unsubscribe awaiting its answer.
type request struct {
	ids    []string
	resume bool
	unsub  bool
}

type item struct {
	m   protocol.Down
	err error
}

func newSession(c *Client, ctx context.Context, ws *websocket.Conn) *session {
	s := &session{
		c:            c,
		ws:           ws,
		frames:       make(chan item, 16),
		rels:         make(map[uint32]*relation),
		pending:      make(map[uint32]request),
		outWake:      make(chan struct{}, 1),
		inFlight:     make(map[uint64]struct{}),
		pushWake:     make(chan struct{}, 1),
		notifyTables: make(map[string]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.touch()
	return s
}

// touch records a sign of life from the service.
// errNetworkDown ends a session when the platform says the network is gone.
var errNetworkDown = errors.New("the network is down")

// NetworkChanged tells the client what the platform knows of the network
// (a browser's online and offline events): offline ends the current
// connection at once (a dead network can otherwise keep a WebSocket open
// until TCP gives up; browsers do not report pings), online ends the wait
// before the next connection attempt.
func (c *Client) NetworkChanged(online bool) {
	if online {
		select {
		case c.net.wake <- struct{}{}:
		default:
		}
		return
	}
	c.net.mu.Lock()
	s := c.net.sess
	c.net.mu.Unlock()
	if s != nil {
		s.abort(errNetworkDown)
	}
}

// moreQueued reports whether frames are waiting to be applied.
func (s *session) moreQueued() bool { return len(s.frames) > 0 }

func (s *session) touch() { s.active.Store(time.Now().UnixNano()) }

// abort ends the session with err (the first one wins).
func (s *session) abort(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.cancel()
}

// watchdog aborts the session when the reader has waited for the network
// longer than timeout without any frame or ping.
func (s *session) watchdog(timeout time.Duration) {
	t := time.NewTicker(timeout / 8)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.reading.Load() && time.Since(time.Unix(0, s.active.Load())) > timeout {
			s.abort(fmt.Errorf("connection silent for %v", timeout))
			return
		}
	}
}

// send queues an up message for the writer.
func (s *session) send(m protocol.Up) {
	if s.ws == nil {
		return
	}
	frame := m.Encode(nil)
	s.outMu.Lock()
	s.out = append(s.out, frame)
	s.outMu.Unlock()
	select {
	case s.outWake <- struct{}{}:
	default:
	}
}

// subscribe sends a Subscribe for shapes and records it as pending.
// Caller holds db.
func (s *session) subscribe(resume bool, shapes []*subState) {
	if len(shapes) == 0 {
		return
	}
	s.nextReq++
	m := &protocol.Subscribe{ReqID: s.nextReq, Resume: resume}
	ids := make([]string, len(shapes))
	for i, st := range shapes {
		m.Shapes = append(m.Shapes, st.wire())
		ids[i] = st.id
		st.sess, st.reqID = s, s.nextReq
	}
	s.pending[m.ReqID] = request{ids: ids, resume: resume}
	s.send(m)
}

// unsubscribe sends an Unsubscribe for shapes already removed from the
// client's shapes. Caller holds db.
func (s *session) unsubscribe(shapes []*subState) {
	if len(shapes) == 0 {
		return
	}
	s.nextReq++
	ids := make([]string, len(shapes))
	for i, st := range shapes {
		ids[i] = st.id
	}
	s.pending[s.nextReq] = request{ids: ids, unsub: true}
	s.send(&protocol.Unsubscribe{ReqID: s.nextReq, ShapeIDs: ids})
}

// writer sends queued frames until the session ends.
func (s *session) writer() error {
	for {
		select {
		case <-s.outWake:
		case <-s.ctx.Done():
			return nil
		}
		s.outMu.Lock()
		out := s.out
		s.out = nil
		s.outMu.Unlock()
		for _, f := range out {
			if err := s.ws.Write(s.ctx, websocket.MessageBinary, f); err != nil {
				return fmt.Errorf("send frame: %w", err)
			}
		}
	}
}

// reader reads and decodes frames until the connection fails. Decoding
// here lets it overlap with the apply in the Run goroutine.
func (s *session) reader() {
	var buf []byte
	for {
		var err error
		s.touch()
		s.reading.Store(true)
		buf, err = readFrame(s.ctx, s.ws, buf[:0], s.touch)
		s.reading.Store(false)
		if err != nil && websocket.CloseStatus(err) == websocket.StatusGoingAway {
			s.goingAway.Store(true)
		}
		var it item
		if err != nil {
			it.err = fmt.Errorf("read frame: %w", err)
		} else if it.m, err = protocol.DecodeDown(buf); err != nil {
			it.err = fmt.Errorf("decode frame: %w", err)
		}
		select {
		case s.frames <- it:
		case <-s.ctx.Done():
			return
		}
		if it.err != nil {
			return
		}
		if cap(buf) > 1<<20 && len(buf) < 64<<10 {
			buf = nil // do not keep a huge buffer for small frames
		}
	}
}

// readFrame reads one message into buf (reused across frames; the decoder
// never aliases it), calling progress as data arrives.
func readFrame(ctx context.Context, ws *websocket.Conn, buf []byte, progress func()) ([]byte, error) {
	typ, r, err := ws.Reader(ctx)
	if err != nil {
		return buf, err
	}
	if typ != websocket.MessageBinary {
		return buf, errors.New("text message from the service")
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		progress()
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// runSession makes one connection and serves it until it fails. online
// is how long it was online (from Welcome to its end).
// minHelloVersion is the oldest protocol version the client falls back
// to when a service refuses its own: version 2, whose Relation ColumnIDs
// the client needs to follow renames (version 3 only adds the JSONMerge
// trailer: without it, columns merged per key are written whole).
const minHelloVersion = 2

func (c *Client) runSession(ctx context.Context, wsURL, token string, version uint16) (online time.Duration, err error) {
	got := time.Now()
	s := newSession(c, ctx, nil)
	defer s.cancel()
	c.net.mu.Lock()
	c.net.sess = s
	c.net.mu.Unlock()
	defer func() {
		c.net.mu.Lock()
		c.net.sess = nil
		c.net.mu.Unlock()
	}()
	dctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	ws, _, err := websocket.Dial(dctx, wsURL, dialOptions(s.touch))
	cancel()
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(protocol.MaxDownFrame)
	s.ws = ws
	c.log.Info("lattice: connected", "url", wsURL)

	// Hello carries the persisted position; the lock orders it after any
	// transaction still being torn down.
	if err := c.lock(ctx); err != nil {
		return 0, err
	}
	hello := &protocol.Hello{Version: version, Token: token, ClientID: c.clientID, LogID: c.logID, LSN: c.lsn}
	c.sess = s
	c.unlock()
	if err := ws.Write(ctx, websocket.MessageBinary, hello.Encode(nil)); err != nil {
		c.endSession(s)
		return 0, fmt.Errorf("send hello: %w", err)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.reader() }()
	go func() {
		defer wg.Done()
		if err := s.writer(); err != nil {
			s.abort(err)
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); s.pusher() }()
	if at, ok := refreshAt(token, got); ok {
		wg.Add(1)
		go func() { defer wg.Done(); s.refresher(token, at) }()
	}
	if pingsVisible && c.idleTimeout > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.watchdog(c.idleTimeout) }()
	}

	err = c.serve(s)
	c.endSession(s)
	s.cancel()
	ws.CloseNow()
	wg.Wait()
	s.errMu.Lock()
	if s.err != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = s.err
	}
	s.errMu.Unlock()
	var pe *protocol.Error
	if q := s.queuedFatal(); q != nil && !errors.As(err, &pe) && !errors.Is(err, errTokenRefresh) && ctx.Err() == nil {
		err = q
	}
	if s.welcomed {
		online = time.Since(s.online)
	}
	if s.goingAway.Load() && !errors.Is(err, errGoingAway) {
		// Whichever goroutine noticed the closed connection first.
		err = fmt.Errorf("%w: %w", errGoingAway, err)
	}
	return online, err
}

// queuedFatal returns a fatal Error from the service that was received but
// not handled when the session ended (the reader has stopped). The
// service closes the connection right after such an Error; a write
// failing on that closed connection can end the session first, and the
// service's reason (unauthorized "token expired", say) must win over the
// transport error it caused.
func (s *session) queuedFatal() *protocol.Error {
	for {
		select {
		case it := <-s.frames:
			if e, ok := it.m.(*protocol.Error); ok && e.Fatal {
				return e
			}
		default:
			return nil
		}
	}
}

// serve applies frames in order until the session fails.
func (c *Client) serve(s *session) error {
	for {
		var it item
		select {
		case it = <-s.frames:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
		if it.err != nil {
			return it.err
		}
		if err := c.handle(s, it.m); err != nil {
			return err
		}
		if c.refetch && !c.tx.open && !c.tx.held {
			c.refetch = false
			return fmt.Errorf("%w: fetch the rows of a table again after a schema change (migrate.go)", errReconnect)
		}
	}
}

// endSession detaches s from the client: a partial transaction is rolled
// back, the relations' statements are closed, pending notifications are
// delivered.
func (c *Client) endSession(s *session) {
	if !c.tx.open && !c.tx.held { // with a transaction open the lock is already held
		c.lock(context.Background())
	}
	c.abortTxn()
	for _, r := range s.rels {
		r.close()
	}
	clear(s.rels)
	if c.sess == s {
		c.sess = nil
	}
	for _, st := range c.subList {
		if st.sess == s {
			st.sess = nil
		}
	}
	c.unlock()
	s.flushNotify()
}

// handle processes one message from the service. It is the whole apply
// path and needs no socket: benchmarks and tests call it directly with a
// session from newSession(c, ctx, nil).
func (c *Client) handle(s *session, m protocol.Down) (err error) {
	if !c.tx.open && !c.tx.held {
		if err := c.lock(s.ctx); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			c.abortTxn()
		}
		if !c.tx.open && !c.tx.held {
			c.unlock()
			for _, f := range s.post {
				c.updateStatus(f)
			}
			s.post = s.post[:0]
			s.maybeFlushNotify()
		}
	}()
	if _, ok := m.(*protocol.Txn); !ok && c.tx.held && !c.tx.open {
		// Group commit spans consecutive transactions only (a message
		// between two chunks of a transaction is handled inside it, as
		// without a group).
		if err := c.commitHeld(); err != nil {
			return err
		}
	}
	if !s.welcomed {
		if _, ok := m.(*protocol.Welcome); !ok {
			if e, ok := m.(*protocol.Error); ok {
				return e
			}
			return fmt.Errorf("handle %T: expected Welcome first", m)
		}
	}
	switch m := m.(type) {
	case *protocol.Welcome:
		return c.handleWelcome(s, m)
	case *protocol.Relation:
		return c.handleRelation(s, m)
	case *protocol.Txn:
		return c.handleTxn(s, m)
	case *protocol.Subscribed:
		return c.handleSubscribed(s, m)
	case *protocol.Error:
		return c.handleError(s, m)
	case *protocol.Ack:
		return c.handleAck(s, m)
	case *protocol.Reject:
		return c.handleReject(s, m)
	}
	return fmt.Errorf("handle %T: unexpected message", m)
}

// applyFrame decodes and handles one frame.
func (c *Client) applyFrame(s *session, frame []byte) error {
	m, err := protocol.DecodeDown(frame)
	if err != nil {
		return fmt.Errorf("decode frame: %w", err)
	}
	return c.handle(s, m)
}

func (c *Client) handleWelcome(s *session, m *protocol.Welcome) error {
	if s.welcomed {
		return errors.New("handle Welcome: second Welcome")
	}
	s.welcomed = true
	s.online = time.Now()
	s.logID = m.LogID
	c.log.Info("lattice: welcome", "log_id", m.LogID, "resync", m.Resync, "head_lsn", m.HeadLSN, "lsn", c.lsn)
	// Shapes unsubscribed since the service last confirmed it are
	// subscribed again on this connection, then unsubscribed, so that the
	// service moves out their rows.
	if m.Resync {
		// One Subscribe for everything: its snapshot carries FlagReset and
		// replaces the rows of the listed tables in one transaction.
		// Our acknowledged transactions are in it; their own changes may
		// lie before it and never come back (see commitTxn).
		s.dropAcked = true
		s.subscribe(false, append(c.subList[:len(c.subList):len(c.subList)], c.unsubs...))
	} else {
		var resume, fresh []*subState
		for _, st := range c.subList {
			if st.synced {
				resume = append(resume, st)
			} else {
				fresh = append(fresh, st)
			}
		}
		s.subscribe(true, append(resume, c.unsubs...))
		s.subscribe(false, fresh)
	}
	s.unsubscribe(c.unsubs)
	s.welcomeReq = s.nextReq
	s.ready = true
	s.wakePusher()
	s.post = append(s.post, func(st *Status) { st.State = StateOnline })
	return nil
}

// handleSubscribed marks the shapes synced, in a transaction of their own.
func (c *Client) handleSubscribed(s *session, m *protocol.Subscribed) error {
	ids := m.ShapeIDs
	req := s.pending[m.ReqID]
	if len(ids) == 0 {
		ids = req.ids
	}
	delete(s.pending, m.ReqID)
	s.wakePusher()
	if req.unsub {
		// The service confirmed an Unsubscribe: its move-outs are applied.
		for _, id := range req.ids {
			if c.subs[id] == nil {
				if err := c.dropUnsub(id); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var todo []*subState
	for _, id := range ids {
		if st := c.subs[id]; st != nil {
			if st.sess == s && st.reqID == m.ReqID {
				st.sess = nil
			}
			if !st.synced {
				todo = append(todo, st)
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	if err := c.stmts.begin.Exec(); err != nil {
		return fmt.Errorf("begin marking shapes synced: %w", err)
	}
	for _, st := range todo {
		c.stmts.setSynced.BindText(1, st.id)
		if err := c.stmts.setSynced.Exec(); err != nil {
			c.stmts.rollback.Exec()
			return fmt.Errorf("mark shape %s synced: %w", st.id, err)
		}
	}
	if err := c.stmts.commit.Exec(); err != nil {
		c.stmts.rollback.Exec()
		return fmt.Errorf("commit shapes synced: %w", err)
	}
	for _, st := range todo {
		st.markSynced()
		c.log.Info("lattice: shape synced", "shape", st.id)
	}
	return nil
}

// handleError handles an Error from the service. Fatal ones, and the
// codes asking for a reconnect, end the session. A non-fatal one answering
// a Subscribe fails its shape; when the request held several shapes
// (after a reconnect or a resync), they are requested again one by one,
// so that only the offending shape fails.
func (c *Client) handleError(s *session, m *protocol.Error) error {
	c.log.Warn("lattice: error from service", "req", m.ReqID, "code", m.Code, "message", m.Message, "fatal", m.Fatal)
	switch {
	case m.Code == protocol.ErrResync || m.Code == protocol.ErrTooSlow || m.Code == protocol.ErrInternal:
		return fmt.Errorf("%w: %w", errReconnect, m)
	case m.Fatal:
		return m
	}
	if req, ok := s.pending[m.ReqID]; ok && m.ReqID != 0 {
		delete(s.pending, m.ReqID)
		s.wakePusher()
		switch {
		case req.unsub:
			// An older service refuses Unsubscribe: the rows stay.
			for _, id := range req.ids {
				if c.subs[id] == nil {
					if err := c.dropUnsub(id); err != nil {
						return err
					}
				}
			}
		case len(req.ids) > 1:
			for _, id := range req.ids {
				if st := c.subs[id]; st != nil {
					s.subscribe(req.resume, []*subState{st})
				}
			}
		default:
			c.failShapes(req.ids, m)
		}
		return nil
	}
	s.post = append(s.post, func(st *Status) { st.LastError = m })
	return nil
}

// committed records the tables changed by a committed transaction (and
// whether it changed the schema) for the next notification.
func (s *session) committed(tables []string, schema bool) {
	if len(s.notifyTables) == 0 && !s.notifySchema && !s.notifyLSN {
		s.notifySince = time.Now()
	}
	for _, t := range tables {
		s.notifyTables[t] = struct{}{}
	}
	s.notifySchema = s.notifySchema || schema
	s.notifyLSN = true
}

// maybeFlushNotify reports committed changes to live queries and OnStatus
// unless more frames are already queued and the oldest unreported commit
// is recent: catching up on a backlog then re-runs queries once.
//
// A table created by a Relation outside a transaction is reported with the
// next commit (a Relation precedes the Txn that uses it), so that live
// queries waiting for the table first see it with that transaction's rows.
func (s *session) maybeFlushNotify() {
	if !s.notifyLSN {
		return
	}
	if len(s.frames) > 0 && time.Since(s.notifySince) < notifyDelay {
		return
	}
	s.flushNotify()
}

func (s *session) flushNotify() {
	if len(s.notifyTables) == 0 && !s.notifySchema && !s.notifyLSN {
		return
	}
	c := s.c
	if s.notifyLSN {
		lsn, logID := c.lsn, c.logID // written by this goroutine only
		c.stMu.Lock()
		c.posLogID = logID
		c.stMu.Unlock()
		c.updateStatus(func(st *Status) { st.LSN = lsn })
	}
	c.live.notify(s.notifyTables, s.notifySchema, false)
	clear(s.notifyTables)
	s.notifySchema = false
	s.notifyLSN = false
}
