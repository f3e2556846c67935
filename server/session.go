package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
	"github.com/latticesync/lattice/server/writes"
)

const (
	helloTimeout    = 10 * time.Second
	pingInterval    = 15 * time.Second
	positionEvery   = time.Second // tell an idle client how far it has got
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
	log    *slog.Logger
	user   Identity
	// clientID is Hello.ClientID: the origin of the client's writes.
	clientID string

	reqs    chan protocol.Up
	readErr chan error

	reader   *changelog.Reader
	cursor   uint64 // LSN of the last transaction processed
	sentLSN  uint64 // last LSN the client was sent
	lastPos  time.Time
	helloLSN uint64
	resync   bool

	shapes  map[string]*shape   // by id
	byTable map[string][]*shape // by "schema.table"
	relIDs  map[*changelog.Rel]uint32
	nextRel uint32

	buf     []byte
	changes []protocol.Change

	writeCtx    context.Context
	writeCancel context.CancelFunc
	watchdog    *time.Timer
	tooSlow     atomic.Bool
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
}

// clientError is an error to report to the client.
type clientError struct {
	code, msg string
	fatal     bool
}

func (e *clientError) Error() string { return e.code + ": " + e.msg }

func (s *Service) serveSync(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Tokens travel in Hello, never in cookies, so any origin may connect.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return
	}
	conn.SetReadLimit(protocol.MaxUpFrame)
	ctx, cancel := context.WithCancel(context.Background())
	sess := &session{
		svc: s, conn: conn, ctx: ctx, cancel: cancel, log: s.log,
		reqs: make(chan protocol.Up, 8), readErr: make(chan error, 1),
		shapes: map[string]*shape{}, byTable: map[string][]*shape{},
		relIDs: map[*changelog.Rel]uint32{},
	}
	s.connMu.Lock()
	s.conns[sess] = struct{}{}
	s.connMu.Unlock()
	s.metrics.connections.Inc()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, sess)
		s.connMu.Unlock()
		s.metrics.connections.Dec()
		s.metrics.shapes.Sub(float64(len(sess.shapes)))
		cancel()
	}()
	err = sess.run()
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
		sess.send(&protocol.Error{Code: ce.code, Message: ce.msg, Fatal: true})
		conn.Close(websocket.StatusPolicyViolation, truncate(ce.code+": "+ce.msg, 120))
	case err == nil || errors.Is(err, context.Canceled):
		conn.Close(websocket.StatusGoingAway, "service shutting down")
	default:
		if websocket.CloseStatus(err) == -1 {
			sess.log.Debug("session ended", "err", err)
		}
		conn.CloseNow()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *session) run() error {
	if err := s.hello(); err != nil {
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
		default:
		}
		var notify <-chan struct{}
		if s.reader != nil && len(s.shapes) > 0 {
			notify = s.svc.clog.Notify()
			n, err := s.pump(maxTxnsPerBatch)
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
		case <-ping.C:
			go s.ping()
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

func (s *session) ping() {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		s.cancel()
	}
}

func (s *session) hello() error {
	ctx, cancel := context.WithTimeout(s.ctx, helloTimeout)
	defer cancel()
	typ, data, err := s.conn.Read(ctx)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if typ != websocket.MessageBinary {
		return &clientError{protocol.ErrBadFrame, "frames must be binary", true}
	}
	m, err := protocol.DecodeUp(data)
	if err != nil {
		return &clientError{protocol.ErrBadFrame, err.Error(), true}
	}
	h, ok := m.(*protocol.Hello)
	if !ok {
		return &clientError{protocol.ErrBadFrame, "the first message must be Hello", true}
	}
	if h.Version != protocol.Version {
		return &clientError{protocol.ErrVersion, fmt.Sprintf("protocol version %d is not supported; this service speaks %d", h.Version, protocol.Version), true}
	}
	if s.svc.cfg.Insecure {
		s.user = Identity{UserID: "anonymous"}
	} else {
		id, err := authenticate(h.Token, s.svc.cfg.AuthSecret, time.Now())
		if err != nil {
			return &clientError{protocol.ErrUnauthorized, err.Error(), true}
		}
		s.user = id
	}
	s.log = s.svc.log.With("user", s.user.UserID, "client", h.ClientID)
	s.clientID = h.ClientID
	l := s.svc.clog
	head := l.Head()
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
		typ, data, err := s.conn.Read(s.ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
				err = &clientError{protocol.ErrFrameTooLarge, fmt.Sprintf("frame larger than %d bytes", protocol.MaxUpFrame), true}
			}
			s.readErr <- err
			return
		}
		if typ != websocket.MessageBinary {
			s.readErr <- &clientError{protocol.ErrBadFrame, "frames must be binary", true}
			return
		}
		m, err := protocol.DecodeUp(data)
		if err != nil {
			code := protocol.ErrBadFrame
			if errors.Is(err, protocol.ErrTooLarge) {
				code = protocol.ErrFrameTooLarge
			}
			s.readErr <- &clientError{code, err.Error(), true}
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
	switch m := m.(type) {
	case *protocol.Hello:
		return &clientError{protocol.ErrBadFrame, "Hello sent twice", true}
	case *protocol.Subscribe:
		return s.subscribe(m)
	case *protocol.Write:
		return s.write(m)
	case *protocol.Unsubscribe:
		return s.sendErr(m.ReqID, protocol.ErrBadShape, "unsubscribe is not supported yet: reconnect without the shape", false)
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
		if s.tooSlow.Load() && s.ctx.Err() == nil {
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

func relKey(schema, table string) string { return schema + "." + table }

// process filters one transaction through the session's shapes and sends
// what the client must apply.
func (s *session) process(txn *changelog.Txn) error {
	s.cursor = txn.LSN
	if len(s.byTable) == 0 {
		return nil
	}
	for _, shs := range s.byTable {
		for _, sh := range shs {
			if sh.snap != nil && txn.LSN > sh.snap.until {
				sh.snap = nil
			}
		}
	}
	w := txnWriter{s: s, lsn: txn.LSN, commitTime: txn.CommitTime, changes: s.changes[:0],
		origin: txn.Origin, clientTxnID: txn.ClientTxnID}
	defer func() { s.changes = w.changes[:0] }()
	truncatedAt, err := s.truncates(txn, &w)
	if err != nil {
		return err
	}
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		key := relKey(ch.Rel.Schema, ch.Rel.Table)
		shs := s.byTable[key]
		if len(shs) == 0 || ch.Op == changelog.OpTruncate {
			continue
		}
		if at, ok := truncatedAt[key]; ok && i < at {
			continue // wiped by a later TRUNCATE in the same transaction
		}
		// Shapes whose initial snapshot already contains this transaction
		// must not apply it again: the client holds the snapshot's (newer)
		// version of their rows.
		ignoring, active := false, false
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				ignoring = true
			} else {
				active = true
			}
		}
		if ignoring {
			if !active || s.inSnapshot(shs, txn.Xid, ch) {
				continue
			}
		}
		var oldIn, newIn bool
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				continue
			}
			if err := s.follow(sh, ch.Rel); err != nil {
				return err
			}
			if !oldIn && ch.Old != nil && sh.match(ch.Old) {
				oldIn = true
			}
			if !newIn && ch.New != nil && sh.match(ch.New) {
				newIn = true
			}
		}
		rel := ch.Rel
		switch ch.Op {
		case protocol.OpInsert:
			if newIn {
				if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
					return err
				}
			}
		case protocol.OpDelete:
			if oldIn && ch.Old != nil {
				if err := w.add(protocol.OpDelete, rel, pkOf(rel, ch.Old)); err != nil {
					return err
				}
			}
		case protocol.OpUpdate:
			if ch.Old == nil {
				// No old row: upsert or move out by the new key; both are safe.
				op, vals := protocol.OpUpdate, ch.New
				if !newIn {
					op, vals = protocol.OpMoveOut, pkOf(rel, ch.New)
				}
				if err := w.addVersion(op, rel, vals, ch.Version); err != nil {
					return err
				}
				continue
			}
			keyChanged := !samePK(rel, ch.Old, ch.New)
			switch {
			case keyChanged:
				if oldIn {
					if err := w.add(protocol.OpDelete, rel, pkOf(rel, ch.Old)); err != nil {
						return err
					}
				}
				if newIn {
					if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
						return err
					}
				}
			case newIn && oldIn:
				if err := w.addVersion(protocol.OpUpdate, rel, ch.New, ch.Version); err != nil {
					return err
				}
			case newIn:
				if err := w.addVersion(protocol.OpInsert, rel, ch.New, ch.Version); err != nil {
					return err
				}
			case oldIn:
				if err := w.add(protocol.OpMoveOut, rel, pkOf(rel, ch.Old)); err != nil {
					return err
				}
			}
		}
	}
	own := txn.ClientTxnID != 0 && txn.Origin == s.clientID
	if !w.started && len(w.changes) == 0 && len(w.reset) == 0 && !own {
		return nil // nothing for this client (its own writes always come back)
	}
	if err := w.finish(0); err != nil {
		return err
	}
	s.sentLSN = txn.LSN
	s.lastPos = time.Now()
	return nil
}

// truncates finds TRUNCATEs of tables the session holds. A TRUNCATE wipes
// the table at its point in the transaction, so the client clears the table
// at the start of the transaction (FlagReset) and changes to the table
// before the last TRUNCATE are skipped; truncatedAt maps the table to the
// index of that TRUNCATE. A TRUNCATE that a shape's snapshot already saw is
// left to the snapshot.
func (s *session) truncates(txn *changelog.Txn, w *txnWriter) (truncatedAt map[string]int, err error) {
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		if ch.Op != changelog.OpTruncate {
			continue
		}
		key := relKey(ch.Rel.Schema, ch.Rel.Table)
		shs := s.byTable[key]
		if len(shs) == 0 {
			continue
		}
		seen := false
		for _, sh := range shs {
			if sh.snap != nil && sh.snap.visible(txn.Xid) {
				seen = true
			}
		}
		if seen {
			continue
		}
		if truncatedAt == nil {
			truncatedAt = map[string]int{}
		}
		truncatedAt[key] = i
		id, err := s.relID(ch.Rel)
		if err != nil {
			return nil, err
		}
		if !containsU32(w.reset, id) {
			w.reset = append(w.reset, id)
		}
	}
	return truncatedAt, nil
}

// inSnapshot reports whether the row a change touches was sent in the
// snapshot of a shape that already saw the change.
func (s *session) inSnapshot(shs []*shape, xid uint32, ch *changelog.Change) bool {
	for _, sh := range shs {
		if sh.snap == nil || !sh.snap.visible(xid) {
			continue
		}
		if sh.snapKeys == nil {
			return true // not tracked: the snapshot's version wins
		}
		for _, row := range [][]coltype.Value{ch.Old, ch.New} {
			if row != nil {
				if _, ok := sh.snapKeys[pkKey(ch.Rel, row)]; ok {
					return true
				}
			}
		}
	}
	return false
}

func pkKey(rel *changelog.Rel, row []coltype.Value) string {
	var b []byte
	for _, k := range rel.PK {
		b = protocol.AppendValue(b, row[k])
	}
	return string(b)
}

// follow makes the shape's predicate evaluate rows of rel: after a schema
// change (ALTER TABLE) the stream's rows have another layout, and the where
// clause is bound again to the new columns.
func (s *session) follow(sh *shape, rel *changelog.Rel) error {
	if rel == sh.rel {
		return nil
	}
	if catalog.SameRel(rel, sh.rel) {
		sh.rel = rel
		return nil
	}
	if sh.pred != nil {
		expr, err := where.ParseTable(sh.def.Where, rel.Schema, rel.Table, rel.Columns, len(sh.def.Params))
		if err == nil {
			sh.pred, err = expr.Bind(s.ctx, sh.def.Params, where.PGCoerce(s.svc.pool))
		}
		if err != nil {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q no longer fits table %s after a schema change: %v", sh.id, sh.key, err), true}
		}
	}
	s.log.Info("shape follows a schema change", "shape", sh.id, "table", sh.key)
	sh.rel = rel
	return nil
}

func (sh *shape) match(row []coltype.Value) bool {
	return sh.pred == nil || sh.pred.Match(row)
}

func pkOf(rel *changelog.Rel, row []coltype.Value) []coltype.Value {
	out := make([]coltype.Value, len(rel.PK))
	for i, k := range rel.PK {
		out[i] = row[k]
	}
	return out
}

func samePK(rel *changelog.Rel, a, b []coltype.Value) bool {
	for _, k := range rel.PK {
		if !a[k].Equal(b[k]) {
			return false
		}
	}
	return true
}

// relID returns the connection's id for rel, sending a Relation first when
// the client has not seen it.
func (s *session) relID(rel *changelog.Rel) (uint32, error) {
	if id, ok := s.relIDs[rel]; ok {
		return id, nil
	}
	for known, id := range s.relIDs {
		if catalog.SameRel(known, rel) {
			s.relIDs[rel] = id // the same layout under another pointer
			return id, nil
		}
	}
	s.nextRel++
	id := s.nextRel
	s.relIDs[rel] = id
	err := s.send(&protocol.Relation{RelID: id, Schema: rel.Schema, Table: rel.Table, Columns: rel.Columns, PK: rel.PK})
	return id, err
}

// txnWriter splits one transaction into Txn chunks near TargetDownFrame.
type txnWriter struct {
	s          *session
	lsn        uint64
	flags      uint8 // extra flags on every chunk (FlagSnapshot)
	commitTime int64
	reset      []uint32
	changes    []protocol.Change
	// origin and clientTxnID name the client write this transaction applied.
	origin      string
	clientTxnID uint64
	size        int
	started     bool
}

func (w *txnWriter) add(op protocol.Op, rel *changelog.Rel, vals []coltype.Value) error {
	return w.addVersion(op, rel, vals, 0)
}

// addVersion adds a change carrying the row's version (Insert, Update).
func (w *txnWriter) addVersion(op protocol.Op, rel *changelog.Rel, vals []coltype.Value, version uint64) error {
	id, err := w.s.relID(rel)
	if err != nil {
		return err
	}
	w.changes = append(w.changes, protocol.Change{Op: op, RelID: id, Version: version, Values: vals})
	w.size += 4
	for i := range vals {
		w.size += 2 + len(vals[i].B)
		if vals[i].Kind == coltype.Integer || vals[i].Kind == coltype.Real {
			w.size += 8
		}
	}
	if w.size >= protocol.TargetDownFrame {
		return w.flush(0)
	}
	return nil
}

func (w *txnWriter) flush(last uint8) error {
	flags := w.flags | last
	m := &protocol.Txn{LSN: w.lsn, CommitTime: w.commitTime, Changes: w.changes,
		Origin: w.origin, ClientTxnID: w.clientTxnID}
	if !w.started {
		flags |= protocol.FlagFirst
		m.Reset = w.reset
		if len(w.reset) > 0 {
			flags |= protocol.FlagReset
		}
	}
	m.Flags = flags
	err := w.s.send(m)
	w.started = true
	clear(w.changes)
	w.changes = w.changes[:0]
	w.size = 0
	return err
}

func (w *txnWriter) finish(_ int) error { return w.flush(protocol.FlagLast) }

// xidSnapshot is a Postgres snapshot (pg_current_snapshot) used to drop
// streamed transactions that a shape's initial data already contains.
type xidSnapshot struct {
	xmin, xmax uint32
	xip        map[uint32]bool
	until      uint64 // transactions committed after this WAL position are never in it
}

// visible reports whether transaction xid had committed when the snapshot
// was taken (32-bit xids compared modulo 2^32, as Postgres does).
func (x *xidSnapshot) visible(xid uint32) bool {
	if int32(xid-x.xmin) < 0 {
		return true
	}
	if int32(xid-x.xmax) >= 0 {
		return false
	}
	return !x.xip[xid]
}

func parseSnapshot(s string) (*xidSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("parse snapshot %q", s)
	}
	xmin, err1 := strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("parse snapshot %q", s)
	}
	x := &xidSnapshot{xmin: uint32(xmin), xmax: uint32(xmax), xip: map[uint32]bool{}}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(p, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse snapshot %q", s)
			}
			x.xip[uint32(v)] = true
		}
	}
	return x, nil
}

// prepare validates shape requests: electrified tables, valid where clauses
// bound to their parameters.
func (s *session) prepare(reqs []protocol.Shape) ([]*shape, error) {
	if len(reqs) == 0 {
		return nil, &clientError{protocol.ErrBadShape, "no shapes in Subscribe", false}
	}
	if len(s.shapes)+len(reqs) > s.svc.cfg.MaxShapesPerConn {
		return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("too many shapes on one connection (limit %d)", s.svc.cfg.MaxShapesPerConn), false}
	}
	out := make([]*shape, 0, len(reqs))
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.ID == "" {
			return nil, &clientError{protocol.ErrBadShape, "shape without an id", false}
		}
		if seen[r.ID] {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q appears twice", r.ID), false}
		}
		seen[r.ID] = true
		tb, err := s.svc.tables.Lookup(s.ctx, r.Table)
		if err != nil {
			if errors.Is(err, catalog.ErrUnknownTable) || errors.Is(err, catalog.ErrNotElectrified) {
				return nil, &clientError{protocol.ErrUnknownTable, fmt.Sprintf("shape %q: %v", r.ID, err), false}
			}
			return nil, fmt.Errorf("look up %s: %w", r.Table, err)
		}
		sh := &shape{id: r.ID, table: tb, key: relKey(tb.Rel.Schema, tb.Rel.Table), def: r, rel: tb.Rel}
		if strings.TrimSpace(r.Where) != "" {
			expr, err := where.ParseTable(r.Where, tb.Rel.Schema, tb.Rel.Table, tb.Rel.Columns, len(r.Params))
			if err != nil {
				return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: where: %v", r.ID, err), false}
			}
			pred, err := expr.Bind(s.ctx, r.Params, where.PGCoerce(s.svc.pool))
			if err != nil {
				var we *where.Error
				if errors.As(err, &we) {
					return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: where: %v", r.ID, err), false}
				}
				return nil, fmt.Errorf("bind shape %q: %w", r.ID, err)
			}
			sh.pred = pred
			sh.def.Where = expr.SQL()
		} else if len(r.Params) > 0 {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q has params but no where clause", r.ID), false}
		}
		if old, ok := s.shapes[r.ID]; ok && !sameShape(old.def, sh.def) {
			return nil, &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q is already subscribed with another definition", r.ID), false}
		}
		out = append(out, sh)
	}
	return out, nil
}

func sameShape(a, b protocol.Shape) bool {
	if a.Table != b.Table || a.Where != b.Where || len(a.Params) != len(b.Params) {
		return false
	}
	for i := range a.Params {
		if (a.Params[i] == nil) != (b.Params[i] == nil) || (a.Params[i] != nil && *a.Params[i] != *b.Params[i]) {
			return false
		}
	}
	return true
}

func (s *session) addShape(sh *shape) {
	if _, ok := s.shapes[sh.id]; ok {
		return
	}
	s.shapes[sh.id] = sh
	s.byTable[sh.key] = append(s.byTable[sh.key], sh)
	s.svc.metrics.shapes.Inc()
}

func (s *session) subscribe(m *protocol.Subscribe) error {
	shapes, err := s.prepare(m.Shapes)
	if err != nil {
		var ce *clientError
		if errors.As(err, &ce) {
			return s.sendErr(m.ReqID, ce.code, ce.msg, false)
		}
		s.log.Error("subscribe failed", "err", err)
		return s.sendErr(m.ReqID, protocol.ErrInternal, err.Error(), false)
	}
	ids := make([]string, len(shapes))
	for i, sh := range shapes {
		ids[i] = sh.id
	}
	// Shapes already live on this connection need nothing more.
	var fresh []*shape
	for _, sh := range shapes {
		if _, ok := s.shapes[sh.id]; !ok {
			fresh = append(fresh, sh)
		}
	}
	if m.Resume && !s.resync {
		if s.reader == nil {
			s.reader = s.svc.clog.Reader(s.cursor)
		}
		for _, sh := range fresh {
			s.addShape(sh)
		}
		return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
	}
	reset := s.resync
	s.resync = false
	// Every non-resume Subscribe gets exactly one snapshot transaction (empty
	// when its shapes are already live), so clients can tie it to the request.
	if err := s.snapshot(fresh, reset); err != nil {
		var ce *clientError
		if errors.As(err, &ce) && !ce.fatal {
			return s.sendErr(m.ReqID, ce.code, ce.msg, false)
		}
		return err
	}
	return s.send(&protocol.Subscribed{ReqID: m.ReqID, ShapeIDs: ids})
}

// snapshot sends the initial data of shapes from one consistent Postgres
// snapshot, at a point of the session's stream where nothing is lost or
// applied twice: the session first streams its existing shapes up to the
// log head H read before the snapshot; the snapshot's rows are then sent as
// a transaction at H; later transactions that the snapshot already saw
// (by xid) are not applied again for these shapes.
func (s *session) snapshot(shapes []*shape, reset bool) error {
	l := s.svc.clog
	h := l.Head()
	if s.reader == nil || len(s.shapes) == 0 {
		if s.reader != nil {
			s.reader.Close()
		}
		s.reader = l.Reader(h)
		s.cursor = h
	} else if err := s.catchUp(h); err != nil {
		return err
	}
	tx, err := s.svc.pool.BeginTx(s.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	defer tx.Rollback(context.Background())
	var snapText, insertLSN string
	if err := tx.QueryRow(s.ctx, "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text").Scan(&snapText, &insertLSN); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	snap, err := parseSnapshot(snapText)
	if err != nil {
		return err
	}
	if lsn, err := parseLSN(insertLSN); err == nil {
		snap.until = lsn
	}
	w := txnWriter{s: s, lsn: s.cursor, flags: protocol.FlagSnapshot}
	if reset {
		// The client lost its position: it deletes the rows of every table it
		// holds before applying this snapshot of all its shapes.
		for _, sh := range shapes {
			id, err := s.relID(sh.table.Rel)
			if err != nil {
				return err
			}
			if !containsU32(w.reset, id) {
				w.reset = append(w.reset, id)
			}
		}
	}
	for _, sh := range shapes {
		if len(s.byTable[sh.key]) > 0 {
			sh.snapKeys = map[string]struct{}{}
		}
		// The client creates the table even when the shape has no rows yet.
		if _, err := s.relID(sh.table.Rel); err != nil {
			return err
		}
		if err := s.snapshotShape(tx, &w, sh); err != nil {
			return err
		}
	}
	if err := w.finish(0); err != nil {
		return err
	}
	if err := tx.Commit(s.ctx); err != nil {
		return fmt.Errorf("end snapshot: %w", err)
	}
	s.sentLSN = s.cursor
	s.lastPos = time.Now()
	for _, sh := range shapes {
		sh.snap = snap
		s.addShape(sh)
	}
	return nil
}

func containsU32(xs []uint32, x uint32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *session) snapshotShape(tx pgx.Tx, w *txnWriter, sh *shape) error {
	rel := sh.table.Rel
	q := "SELECT " + catalog.ColumnList(rel) + " FROM " + sh.table.QualifiedSQL
	args := []any{pgx.QueryExecModeSimpleProtocol}
	if sh.pred != nil {
		q += " WHERE (" + sh.def.Where + ")"
		for _, p := range sh.def.Params {
			if p == nil {
				args = append(args, nil)
			} else {
				args = append(args, *p)
			}
		}
	}
	rows, err := tx.Query(s.ctx, q, args...)
	if err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		raw := rows.RawValues()
		vals := make([]coltype.Value, len(raw))
		for i, b := range raw {
			if b == nil {
				continue
			}
			v, err := coltype.FromPGText(rel.Columns[i].Type, b)
			if err != nil {
				return fmt.Errorf("snapshot %s column %s: %w", sh.key, rel.Columns[i].Name, err)
			}
			vals[i] = v
		}
		if err := w.add(protocol.OpInsert, rel, vals); err != nil {
			return err
		}
		if sh.snapKeys != nil {
			sh.snapKeys[pkKey(rel, vals)] = struct{}{}
		}
		n++
		if max := s.svc.cfg.MaxSnapshotRows; max > 0 && n > max {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q has more than %d rows (the service's limit)", sh.id, max), w.started}
		}
	}
	if err := rows.Err(); err != nil {
		return s.snapshotErr(sh, err, w.started)
	}
	return nil
}

// snapshotErr reports a failed snapshot query. Once part of the snapshot
// was sent the error is fatal: the client rolls the partial transaction back.
func (s *session) snapshotErr(sh *shape, err error, sent bool) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: %s", sh.id, pgErr.Message), sent}
	}
	return fmt.Errorf("snapshot %s: %w", sh.key, err)
}

func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse lsn %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse lsn %q", s)
	}
	return h<<32 | l, nil
}

// write applies a client transaction in Postgres (package writes) and
// answers Ack, or Reject when Postgres refuses it. Transactions of one
// client are applied in the order it sends them. A failure that is not the
// transaction's fault ends the session: the client reconnects and sends it
// again, and the service applies it at most once.
func (s *session) write(m *protocol.Write) error {
	if s.clientID == "" {
		return s.send(&protocol.Reject{TxnID: m.TxnID, Code: writes.CodeBadChange, Message: "writes need a client id in Hello"})
	}
	txn := &writes.Txn{Origin: s.clientID, ID: m.TxnID, HLC: merge.HLC(m.HLC), Changes: make([]writes.Change, len(m.Changes))}
	for i, c := range m.Changes {
		wc := writes.Change{Table: c.Table, Key: c.Key, Values: c.Values, SeenLive: true}
		switch c.Op {
		case protocol.OpInsert:
			wc.Op = writes.Insert
		case protocol.OpUpdate:
			wc.Op = writes.Update
		case protocol.OpDelete:
			wc.Op = writes.Delete
		}
		if len(c.Columns) > 0 {
			wc.Set = make([]int, len(c.Columns))
			for j, col := range c.Columns {
				wc.Set[j] = int(col)
			}
		}
		txn.Changes[i] = wc
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	_, err := s.svc.applier.Apply(ctx, txn)
	var rej *writes.Rejected
	switch {
	case err == nil:
		s.svc.metrics.writes.WithLabelValues("applied").Inc()
		return s.send(&protocol.Ack{TxnID: m.TxnID})
	case errors.As(err, &rej):
		s.svc.metrics.writes.WithLabelValues("rejected").Inc()
		s.log.Info("client transaction rejected", "txid", m.TxnID, "code", rej.Code, "reason", rej.Reason)
		if err := s.send(&protocol.Reject{TxnID: m.TxnID, Code: rej.Code, Message: rej.Error()}); err != nil {
			return err
		}
		return s.restoreRows(m)
	default:
		s.log.Error("apply client transaction", "txid", m.TxnID, "err", err)
		return &clientError{protocol.ErrInternal, "could not apply transaction: " + err.Error(), true}
	}
}

// restoreRows follows a Reject with the rows the rejected transaction wrote,
// as Postgres holds them now, in one transaction at the session's position:
// the client replaces its local (rejected) versions with them, so the
// rejected effects are undone visibly. A row Postgres does not hold, or
// that none of the client's shapes holds, moves out.
func (s *session) restoreRows(m *protocol.Write) error {
	w := txnWriter{s: s, lsn: s.cursor, changes: s.changes[:0]}
	defer func() { s.changes = w.changes[:0] }()
	for _, c := range m.Changes {
		tb, err := s.svc.tables.Lookup(s.ctx, c.Table)
		if err != nil || len(c.Key) != len(tb.Rel.PK) {
			continue // nothing of it can be local
		}
		rel := tb.Rel
		conds := make([]string, len(rel.PK))
		args := []any{pgx.QueryExecModeSimpleProtocol}
		ok := true
		for i, k := range rel.PK {
			txt, notNull, err := coltype.ToPGText(rel.Columns[k].Type, c.Key[i])
			if err != nil || !notNull {
				ok = false
				break
			}
			conds[i] = fmt.Sprintf("%s = $%d", catalog.QuoteIdent(rel.Columns[k].Name), i+1)
			args = append(args, txt)
		}
		if !ok {
			continue
		}
		var vals []coltype.Value
		rows, err := s.svc.pool.Query(s.ctx, "SELECT "+catalog.ColumnList(rel)+" FROM "+tb.QualifiedSQL+
			" WHERE "+strings.Join(conds, " AND "), args...)
		if err != nil {
			return fmt.Errorf("read rows of a rejected transaction: %w", err)
		}
		for rows.Next() {
			raw := rows.RawValues()
			vals = make([]coltype.Value, len(raw))
			for i, b := range raw {
				if b != nil {
					if vals[i], err = coltype.FromPGText(rel.Columns[i].Type, b); err != nil {
						rows.Close()
						return fmt.Errorf("read rows of a rejected transaction: %w", err)
					}
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read rows of a rejected transaction: %w", err)
		}
		held := false
		if vals != nil {
			for _, sh := range s.byTable[relKey(rel.Schema, rel.Table)] {
				if err := s.follow(sh, rel); err == nil && sh.match(vals) {
					held = true
					break
				}
			}
		}
		if held {
			err = w.add(protocol.OpUpdate, rel, vals)
		} else {
			err = w.add(protocol.OpMoveOut, rel, c.Key)
		}
		if err != nil {
			return err
		}
	}
	if len(w.changes) == 0 && !w.started {
		return nil
	}
	return w.finish(0)
}
