package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/auth"
	"github.com/latticesync/lattice/server/authz"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/limits"
	"github.com/latticesync/lattice/server/where"
)

const (
	pingInterval    = 15 * time.Second
	pongTimeout     = 10 * time.Second // a client that answers no ping within it is cut off
	positionEvery   = time.Second      // tell an idle client how far it has got
	maxTxnsPerBatch = 256
)

// session is one client connection. Its loop pulls transactions from the
// change log at the pace the client accepts them: a slow client lags (and
// is cut off after WriteTimeout) without holding memory for anyone else.
type session struct {
	svc    *Service
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	// cut ends the session for a reason (a *clientError sent to the
	// client and counted), as cancel does for a shutdown.
	cut  context.CancelCauseFunc
	log  *slog.Logger
	user auth.Identity
	// clientID is Hello.ClientID: the origin of the client's writes.
	clientID string
	// lastHLC is the HLC of the client's previous transaction as applied
	// (admitHLC); skewWarned when a skewed clock was last logged.
	lastHLC    merge.HLC
	skewWarned time.Time

	reqs    chan protocol.Up
	readErr chan error

	// clog is the change log the session reads (the service's when the
	// session started); stale is closed when the service has started a
	// new one (the slot was lost): the session ends, the client re-syncs.
	clog      changelog.Store
	stale     chan struct{}
	staleOnce sync.Once

	reader   changelog.Cursor
	cursor   uint64 // LSN of the last transaction processed
	sentLSN  uint64 // last LSN the client was sent
	lastPos  time.Time
	helloLSN uint64
	resync   bool

	shapes  map[string]*shape   // by id
	byTable map[string][]*shape // by "schema.table"
	relIDs  map[*changelog.Rel]uint32
	nextRel uint32
	// graph is the state of relational shapes; nil while every shape is
	// a single table without foreign keys (those need no state).
	graph *graph
	// pending holds the foreign keys read while preparing shapes of a
	// session without graph.
	pending *graph

	buf     []byte
	changes []protocol.Change
	// rows paces the rows read from Postgres for the client (nil: no
	// limit).
	rows *limits.Bucket

	writeCtx    context.Context
	writeCancel context.CancelFunc
	watchdog    *time.Timer
	tooSlow     atomic.Bool
	// gone: the connection failed under the read loop, which cancelled
	// ctx (the service did not).
	gone atomic.Bool

	// pos mirrors cursor and streaming says the session streams shapes,
	// for the backlog metric (queues.go), read by scrapes.
	pos       atomic.Uint64
	streaming atomic.Bool
	// subscribing: a Subscribe is being served (its snapshot sent).
	subscribing bool

	// acc is the user's view of the row-level security policies (nil
	// without --auth-role); policyCh is closed when they change.
	acc      *authz.Access
	policyCh <-chan struct{}

	// toldRefused: tables not synced (schemastate.go) the client was told of.
	toldRefused map[string]bool
	// version is the client's protocol version (Hello).
	version uint16
	// sentRel is the layout of each table ("schema.table") last described
	// to the client: its writes index columns by it (schemastate.go).
	sentRel map[string]*changelog.Rel
}

type shape struct {
	id    string
	table *catalog.Table
	key   string
	pred  *where.Pred // nil: every row
	def   protocol.Shape
	snap  *xidSnapshot
	// snapKeys holds the primary keys sent in the shape's snapshot while
	// snap is set, when other shapes of the connection share its table.
	snapKeys map[string]struct{}
	// rel is the table layout pred is bound to.
	rel *changelog.Rel
	// root is the shape's tree of nodes (relational sessions), flat that
	// the shape is one table without includes or foreign keys.
	root *node
	flat bool
}

// clientError is an error to report to the client.
type clientError struct {
	code, msg string
	fatal     bool
}

func (e *clientError) Error() string { return e.code + ": " + e.msg }

func (s *Service) serveSync(w http.ResponseWriter, r *http.Request) {
	// Counted before Shutdown waits (both under connMu), or refused.
	s.connMu.Lock()
	if s.isDraining() {
		s.connMu.Unlock()
		http.Error(w, "service shutting down", http.StatusServiceUnavailable)
		return
	}
	s.sessWG.Add(1)
	s.connMu.Unlock()
	defer s.sessWG.Done()
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Tokens travel in Hello, never in cookies, so any origin may connect.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return
	}
	// Frames are read through readFrame, which enforces MaxUpFrame
	// itself: the library's limit would close the connection before the
	// client is told why.
	conn.SetReadLimit(-1)
	ctx, cut := context.WithCancelCause(context.Background())
	cancel := func() { cut(nil) }
	sess := &session{
		svc: s, conn: conn, ctx: ctx, cancel: cancel, cut: cut, log: s.log,
		reqs: make(chan protocol.Up, 8), readErr: make(chan error, 1), stale: make(chan struct{}),
		shapes: map[string]*shape{}, byTable: map[string][]*shape{},
		relIDs: map[*changelog.Rel]uint32{},
		rows:   limits.NewBucket(s.cfg.SnapshotRowsPerSec, s.shared),
	}
	s.connMu.Lock()
	s.conns[sess] = struct{}{}
	s.connMu.Unlock()
	s.nconns.Add(1)
	s.metrics.connections.Inc()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, sess)
		s.connMu.Unlock()
		s.nconns.Add(-1)
		s.metrics.connections.Dec()
		s.metrics.shapes.Sub(float64(len(sess.shapes)))
		if sess.graph != nil {
			sess.graph.drop()
		}
		cancel()
	}()
	err = sess.run()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // cut off (ping): the reason, rather than the write it interrupted
	}
	defer func() {
		if sess.watchdog != nil {
			sess.watchdog.Stop()
			sess.writeCancel()
		}
	}()
	if sess.reader != nil {
		defer sess.reader.Close()
	}
	var ce *clientError
	switch {
	case errors.As(err, &ce):
		s.metrics.rejected.WithLabelValues(ce.code).Inc()
		if ce.code == protocol.ErrTooSlow {
			sess.log.Info("client cut off", "reason", ce.msg)
		}
		sess.send(&protocol.Error{Code: ce.code, Message: ce.msg, Fatal: true})
		status := websocket.StatusPolicyViolation
		if ce.code == protocol.ErrFrameTooLarge {
			status = websocket.StatusMessageTooBig
		}
		conn.Close(status, clip(ce.code+": "+ce.msg, 120))
	case err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errDraining):
		conn.Close(websocket.StatusGoingAway, "service shutting down")
	default:
		if websocket.CloseStatus(err) == -1 {
			sess.log.Debug("session ended", "err", err)
		}
		conn.CloseNow()
	}
}

// clip shortens s to at most n bytes (a WebSocket close reason is limited).
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errDraining ends a session when the service shuts down (Shutdown).
var errDraining = errors.New("service shutting down")

func (s *session) run() error {
	if err := s.hello(); err != nil {
		if s.svc.isDraining() {
			return errDraining
		}
		return err
	}
	if err := s.bindAccess(); err != nil {
		return err
	}
	go s.readLoop()
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	posTimer := time.NewTimer(time.Hour)
	defer posTimer.Stop()
	var expire <-chan time.Time
	if !s.user.Expires.IsZero() {
		t := time.NewTimer(time.Until(s.user.Expires))
		defer t.Stop()
		expire = t.C
	}
	for {
		// Shutting down: the request handled last (a write applied) has
		// been answered; close before taking another.
		if s.svc.isDraining() {
			return errDraining
		}
		// Requests first, without blocking.
		select {
		case m := <-s.reqs:
			if err := s.handle(m); err != nil {
				return err
			}
			continue
		case err := <-s.readErr:
			return err
		case <-expire:
			return &clientError{protocol.ErrUnauthorized, "token expired", true}
		case <-s.stale:
			return errStale()
		default:
		}
		var notify <-chan struct{}
		s.publishPos()
		if s.reader != nil && len(s.shapes) > 0 {
			notify = s.clog.Notify()
			n, err := s.pump(maxTxnsPerBatch)
			s.publishPos()
			if err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			if s.cursor > s.sentLSN {
				if d := time.Since(s.lastPos); d >= positionEvery {
					if err := s.sendPosition(); err != nil {
						return err
					}
				} else {
					posTimer.Reset(positionEvery - d)
				}
			}
		}
		select {
		case m := <-s.reqs:
			if err := s.handle(m); err != nil {
				return err
			}
		case err := <-s.readErr:
			return err
		case <-notify:
		case <-posTimer.C:
		case <-expire:
			return &clientError{protocol.ErrUnauthorized, "token expired", true}
		case <-s.policyCh:
			if err := s.rebindAccess(); err != nil {
				return err
			}
		case <-ping.C:
			go s.ping()
		case <-s.stale:
			return errStale()
		case <-s.svc.drainCtx.Done():
			return errDraining
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

// ping cuts off a client that answers no ping within pongTimeout: one
// that stopped reading (suspended, hung) answers none, even while the
// kernel's socket buffers still accept what the service sends it.
func (s *session) ping() {
	ctx, cancel := context.WithTimeout(s.ctx, pongTimeout)
	defer cancel()
	err := s.conn.Ping(ctx)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		s.cut(&clientError{protocol.ErrTooSlow, fmt.Sprintf("the client answered no ping within %s", pongTimeout), true})
	default:
		s.cancel()
	}
}

// readFrame reads one client frame, holding at most MaxUpFrame+1 bytes
// of it: a larger frame is refused (frame_too_large) and the rest of it
// is discarded while the connection closes.
func (s *session) readFrame(ctx context.Context) ([]byte, error) {
	typ, r, err := s.conn.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, &clientError{protocol.ErrBadFrame, "frames must be binary", true}
	}
	data, err := io.ReadAll(io.LimitReader(r, protocol.MaxUpFrame+1))
	if err != nil {
		return nil, err
	}
	if len(data) > protocol.MaxUpFrame {
		return nil, &clientError{protocol.ErrFrameTooLarge, fmt.Sprintf("frame larger than the %d-byte limit of client frames", protocol.MaxUpFrame), true}
	}
	return data, nil
}

// decodeErr is the client error for a frame that does not decode.
func decodeErr(err error) error {
	code := protocol.ErrBadFrame
	if errors.Is(err, protocol.ErrTooLarge) {
		code = protocol.ErrFrameTooLarge
	}
	return &clientError{code, err.Error(), true}
}

// awaitHead waits, briefly, for a shared log to reach lsn: a client that
// moves from another replica may have received transactions this
// replica's copy of the stream has not yet, which is no reason to re-sync.
func (s *session) awaitHead(l changelog.Store, lsn uint64) uint64 {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		wait := l.Notify()
		head := l.Head()
		if head >= lsn {
			return head
		}
		select {
		case <-wait:
		case <-t.C:
			return l.Head()
		case <-s.ctx.Done():
			return head
		}
	}
}

func (s *session) hello() error {
	// A connection silent for HelloTimeout is closed with the reason (a
	// read deadline would close it without one).
	timeout := s.svc.cfg.HelloTimeout
	t := time.AfterFunc(timeout, func() {
		s.conn.Close(websocket.StatusPolicyViolation, fmt.Sprintf("%s: no Hello within %s", protocol.ErrTooSlow, timeout))
	})
	// Shutting down: stop waiting for Hello (run closes with going-away).
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stop := context.AfterFunc(s.svc.drainCtx, cancel)
	defer stop()
	data, err := s.readFrame(ctx)
	if !t.Stop() {
		return &clientError{protocol.ErrTooSlow, fmt.Sprintf("no Hello within %s", timeout), true}
	}
	if err != nil {
		var ce *clientError
		if errors.As(err, &ce) {
			return err
		}
		return fmt.Errorf("read hello: %w", err)
	}
	m, err := protocol.DecodeUp(data)
	if err != nil {
		return decodeErr(err)
	}
	h, ok := m.(*protocol.Hello)
	if !ok {
		return &clientError{protocol.ErrBadFrame, "the first message must be Hello", true}
	}
	if h.Version < protocol.MinVersion || h.Version > protocol.Version {
		return &clientError{protocol.ErrVersion, fmt.Sprintf("protocol version %d is not supported; this service speaks %d to %d", h.Version, protocol.MinVersion, protocol.Version), true}
	}
	s.version = h.Version
	if s.svc.cfg.Insecure {
		s.user = auth.Identity{UserID: "anonymous", Claims: json.RawMessage(`{"sub":"anonymous"}`)}
	} else {
		id, err := s.svc.verifier.Verify(h.Token, time.Now())
		if err != nil {
			return &clientError{protocol.ErrUnauthorized, err.Error(), true}
		}
		s.user = id
	}
	s.log = s.svc.log.With("user", s.user.UserID, "client", h.ClientID)
	s.clientID = h.ClientID
	// The session reads this log to its end; when the service starts
	// another (relog.go), it is told to re-sync (stale).
	s.clog = s.svc.changeLog()
	l := s.clog
	head := l.Head()
	if h.LogID == l.ID() && h.LSN > head && s.svc.cfg.LogURL != "" {
		head = s.awaitHead(l, h.LSN)
	}
	w := &protocol.Welcome{LogID: l.ID(), HeadLSN: head}
	if h.LogID != "" {
		if h.LogID != l.ID() || h.LSN < l.TruncatedThrough() || h.LSN > head {
			w.Resync = true
			s.resync = true
			s.log.Info("client position cannot be resumed; it re-syncs", "client_log", h.LogID, "client_lsn", h.LSN,
				"log", l.ID(), "truncated_through", l.TruncatedThrough())
		} else {
			s.helloLSN = h.LSN
		}
	}
	s.cursor = s.helloLSN
	s.sentLSN = s.helloLSN
	s.lastPos = time.Now()
	return s.send(w)
}

func (s *session) readLoop() {
	for {
		data, err := s.readFrame(s.ctx)
		if err != nil {
			s.readErr <- err
			var ce *clientError
			if !errors.As(err, &ce) {
				// The connection is gone: end the work under way for it
				// (a snapshot may read for a long while before it sends).
				s.gone.Store(true)
				s.cancel()
			}
			return
		}
		m, err := protocol.DecodeUp(data)
		if err != nil {
			s.readErr <- decodeErr(err)
			return
		}
		select {
		case s.reqs <- m:
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *session) handle(m protocol.Up) error {
	if s.acc != nil && s.acc.Policies() != s.svc.policies.Load() {
		// Requests are judged by the policies in force.
		if err := s.rebindAccess(); err != nil {
			return err
		}
	}
	switch m := m.(type) {
	case *protocol.Hello:
		return &clientError{protocol.ErrBadFrame, "Hello sent twice", true}
	case *protocol.Subscribe:
		if err := s.svc.refuseNewWork(); err != nil {
			return err
		}
		s.subscribing = true
		defer func() { s.subscribing = false }()
		return s.subscribe(m)
	case *protocol.Write:
		if err := s.svc.refuseNewWork(); err != nil {
			return err
		}
		return s.write(m)
	case *protocol.Unsubscribe:
		return s.unsubscribe(m)
	default:
		return &clientError{protocol.ErrBadFrame, fmt.Sprintf("unexpected message %T", m), true}
	}
}

func (s *session) sendErr(reqID uint32, code, msg string, fatal bool) error {
	s.svc.metrics.rejected.WithLabelValues(code).Inc()
	return s.send(&protocol.Error{ReqID: reqID, Code: code, Message: msg, Fatal: fatal})
}

// send encodes and writes one frame. A watchdog timer (cheaper than a
// context per frame) cuts off a client that does not accept it within
// WriteTimeout: cancelling the write context closes the connection.
func (s *session) send(m interface{ Encode([]byte) []byte }) error {
	s.publishPos()
	s.buf = m.Encode(s.buf[:0])
	if s.watchdog == nil {
		s.writeCtx, s.writeCancel = context.WithCancel(s.ctx)
		s.watchdog = time.AfterFunc(s.svc.cfg.WriteTimeout, func() {
			s.tooSlow.Store(true)
			s.writeCancel()
		})
	} else {
		s.watchdog.Reset(s.svc.cfg.WriteTimeout)
	}
	err := s.conn.Write(s.writeCtx, websocket.MessageBinary, s.buf)
	s.watchdog.Stop()
	if err != nil {
		if s.tooSlow.Load() && (s.ctx.Err() == nil || s.gone.Load()) {
			return &clientError{protocol.ErrTooSlow, "client did not accept data in time", true}
		}
		return fmt.Errorf("write frame: %w", err)
	}
	s.svc.metrics.bytesSent.Add(float64(len(s.buf)))
	s.svc.metrics.framesSent.Inc()
	if cap(s.buf) > 1<<20 {
		s.buf = nil // don't pin a snapshot-sized buffer on an idle session
	}
	return nil
}

// publishPos publishes the session's position for the backlog metric
// (before each frame: a send blocked on a slow client shows its backlog).
func (s *session) publishPos() {
	s.streaming.Store(s.reader != nil && (len(s.shapes) > 0 || s.subscribing))
	s.pos.Store(s.cursor)
}

// sendPosition tells the client it is up to date as of the cursor, with an
// empty transaction, so it resumes from there after a reconnect.
func (s *session) sendPosition() error {
	if err := s.send(&protocol.Txn{LSN: s.cursor, Flags: protocol.FlagFirst | protocol.FlagLast}); err != nil {
		return err
	}
	s.sentLSN = s.cursor
	s.lastPos = time.Now()
	return nil
}

// pump processes up to max available transactions without blocking.
func (s *session) pump(max int) (int, error) {
	n := 0
	for n < max {
		txn, ok, err := s.reader.TryNext()
		if err != nil {
			return n, s.readerErr(err)
		}
		if !ok {
			break
		}
		if err := s.process(txn); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *session) readerErr(err error) error {
	if errors.Is(err, changelog.ErrTruncated) {
		return &clientError{protocol.ErrResync, "the client fell behind the retained change log; reconnect to re-sync", true}
	}
	select {
	case <-s.stale:
		return errStale() // the log was closed because it was replaced
	default:
	}
	return fmt.Errorf("read change log: %w", err)
}

// catchUp processes transactions until the cursor reaches lsn.
func (s *session) catchUp(lsn uint64) error {
	for s.cursor < lsn {
		txn, err := s.reader.Next(s.ctx)
		if err != nil {
			return s.readerErr(err)
		}
		if err := s.process(txn); err != nil {
			return err
		}
	}
	return nil
}

// bindAccess binds the row-level security policies to the session's user.
func (s *session) bindAccess() error {
	if s.svc.cfg.AuthRole == "" {
		return nil
	}
	s.policyCh = s.svc.policyChanged()
	p := s.svc.policies.Load()
	acc, err := p.NewAccess(s.ctx, s.svc.pool, s.claims(), s.user.UserID)
	if err != nil {
		return fmt.Errorf("bind policies: %w", err)
	}
	s.acc = acc
	return nil
}

// rebindAccess follows a policy change: the session's rows are read
// again under the new policies, in one transaction that replaces them
// (rows now unreadable move out, newly readable ones move in).
func (s *session) rebindAccess() error {
	if err := s.bindAccess(); err != nil {
		return err
	}
	if s.graph == nil || len(s.shapes) == 0 {
		return nil
	}
	for _, sh := range s.shapes {
		if err := s.readableTree(sh); err != nil {
			var ce *clientError
			if errors.As(err, &ce) {
				ce.fatal = true
			}
			return err
		}
	}
	s.log.Info("policies changed: the session's rows are read again")
	todo, err := s.attachGraph(nil, true)
	if err == nil {
		err = s.snapshotGraph(todo, true, nil)
	}
	return err
}

// readableTree refuses a shape whose tables the user's role may not read
// (no SELECT privilege, or a policy the service cannot enforce).
func (s *session) readableTree(sh *shape) error {
	if s.acc == nil {
		return nil
	}
	p := s.acc.Policies()
	var walk func(n *node) error
	walk = func(n *node) error {
		if pe := p.TableError(n.key); pe != nil {
			return &clientError{protocol.ErrPermission, fmt.Sprintf("shape %q: table %s is closed to clients: %v", sh.id, n.key, pe), false}
		}
		if !p.CanSelect(n.key) {
			return &clientError{protocol.ErrPermission, fmt.Sprintf("shape %q: permission denied for table %s (role %s has no SELECT privilege)", sh.id, n.key, p.Role), false}
		}
		for _, k := range n.kids {
			if err := walk(k); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(sh.root)
}

// claims is the JSON the policies see as request.jwt.claims: the token's
// claims object, verbatim.
func (s *session) claims() []byte {
	if len(s.user.Claims) > 0 {
		return s.user.Claims
	}
	b, _ := json.Marshal(map[string]string{"sub": s.user.UserID})
	return b
}
