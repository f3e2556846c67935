// Package jetstream keeps the service's retained change log in a NATS
// JetStream stream, so that several service replicas share one log
// (issue 18): one of them appends what it reads from the replication
// slot, every one of them serves clients from the stream.
//
// Each committed transaction is one message on subject STREAM.txn: its
// data is the local log's record encoding (changelog.Codec), its headers
// carry its commit LSN and the LSN of the transaction before it, and its
// message id is its LSN, so that JetStream drops a republished duplicate.
// Append publishes with the expected last sequence of the stream: a
// second appender (a replica that lost its lease without knowing) fails
// instead of interleaving transactions. Append returns once JetStream has
// stored the messages (its acknowledgement), the point up to which the
// replication slot may be confirmed.
//
// Each Log follows the stream with an ordered consumer into an in-memory
// tail of decoded transactions, which readers at the head read from;
// a reader further behind fetches older messages from the stream by
// sequence. Retention is the stream's (MaxAge, MaxBytes); a position
// older than the first retained message's predecessor is ErrTruncated,
// as with the local log. The log's id (what clients' positions refer to)
// is kept in the stream's metadata: a new stream is a new log.
package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latticesync/lattice/server/changelog"
)

// Headers of each message.
const (
	hdrLSN  = "Lattice-Lsn"
	hdrPrev = "Lattice-Prev-Lsn"
	metaID  = "lattice_log_id"
)

// Options configure a Log.
type Options struct {
	// URL is the NATS server list: nats://HOST:PORT[,nats://HOST:PORT...].
	URL string
	// Stream is the JetStream stream's name; default "LATTICE".
	Stream string
	// Replicas is the stream's replication factor when it is created;
	// default 1 (3 on a 3-node cluster for failover).
	Replicas int
	// MaxBytes and MaxAge are the stream's retention when it is created;
	// 0: the local log's defaults (1 GiB, 24 h); negative: none.
	MaxBytes int64
	MaxAge   time.Duration
	// TailTxns bounds the decoded transactions kept in memory; default
	// 10,000.
	TailTxns int
	// Timeout bounds each request to JetStream; default 10 s.
	Timeout time.Duration
	Logger  *slog.Logger
}

type entry struct {
	seq uint64
	txn *changelog.Txn
}

// Log is a changelog.Store in a JetStream stream.
type Log struct {
	opts    Options
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	st      jetstream.Stream
	subject string
	id      string
	codec   changelog.Codec
	cc      jetstream.ConsumeContext

	appendMu sync.Mutex // serializes Append (it owns codec.Encode and buf)
	buf      []byte

	mu        sync.RWMutex
	tail      []entry // oldest first
	tailPrev  uint64  // LSN before tail[0] (head when tail is empty)
	head      uint64
	endLSN    uint64
	lastSeq   uint64 // stream sequence of the newest txn seen
	notify    chan struct{}
	closed    bool
	followErr error

	truncMu   sync.Mutex
	truncAt   time.Time
	truncThru uint64
}

var _ changelog.Store = (*Log)(nil)

// Open connects to NATS, creates the stream if it does not exist, and
// follows it.
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.URL == "" {
		return nil, errors.New("jetstream log: no NATS URL")
	}
	if opts.Stream == "" {
		opts.Stream = "LATTICE"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	switch {
	case opts.MaxBytes == 0:
		opts.MaxBytes = changelog.DefaultMaxBytes
	case opts.MaxBytes < 0:
		opts.MaxBytes = -1
	}
	switch {
	case opts.MaxAge == 0:
		opts.MaxAge = changelog.DefaultMaxAge
	case opts.MaxAge < 0:
		opts.MaxAge = 0 // JetStream: no limit
	}
	if opts.TailTxns <= 0 {
		opts.TailTxns = 10_000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	l := &Log{opts: opts, log: opts.Logger, subject: opts.Stream + ".txn", notify: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	nc, err := nats.Connect(opts.URL, nats.Name("lattice"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("jetstream log: connect to %s: %w", opts.URL, err)
	}
	l.nc = nc
	if err := l.open(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) open(ctx context.Context) error {
	js, err := jetstream.New(l.nc)
	if err != nil {
		return fmt.Errorf("jetstream log: %w", err)
	}
	l.js = js
	rctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	// A cluster that is electing its leaders answers with errors for a
	// while: retry until the timeout.
	var st jetstream.Stream
	for {
		st, err = l.stream(rctx)
		if err == nil || rctx.Err() != nil {
			break
		}
		l.log.Warn("change log stream not available yet; retrying", "stream", l.opts.Stream, "err", err)
		select {
		case <-rctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("jetstream log: stream %s: %w", l.opts.Stream, err)
	}
	l.st = st
	info, err := st.Info(rctx)
	if err != nil {
		return fmt.Errorf("jetstream log: stream %s info: %w", l.opts.Stream, err)
	}
	l.id = info.Config.Metadata[metaID]
	if l.id == "" {
		return fmt.Errorf("jetstream log: stream %s has no %s in its metadata: it was not created by Lattice", l.opts.Stream, metaID)
	}
	if info.Config.Subjects == nil || info.Config.Subjects[0] != l.subject {
		return fmt.Errorf("jetstream log: stream %s does not hold subject %s", l.opts.Stream, l.subject)
	}
	start := info.State.LastSeq + 1
	if info.State.Msgs > 0 {
		// The newest txn starts the tail: Head, EndLSN and the position
		// before it are known without reading the rest.
		m, err := st.GetMsg(rctx, info.State.LastSeq)
		if err != nil {
			return fmt.Errorf("jetstream log: read the newest message: %w", err)
		}
		txn, prev, err := l.decode(m.Data, m.Header)
		if err != nil {
			return fmt.Errorf("jetstream log: message %d: %w", m.Sequence, err)
		}
		l.tail = []entry{{seq: m.Sequence, txn: txn}}
		l.tailPrev, l.head, l.endLSN, l.lastSeq = prev, txn.LSN, txn.EndLSN, m.Sequence
	}
	cons, err := st.OrderedConsumer(rctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{l.subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	})
	if err != nil {
		return fmt.Errorf("jetstream log: follow the stream: %w", err)
	}
	cc, err := cons.Consume(l.follow)
	if err != nil {
		return fmt.Errorf("jetstream log: follow the stream: %w", err)
	}
	l.cc = cc
	return nil
}

// stream returns the log's stream, creating it when it does not exist
// (another replica creating it at the same time wins: its stream is used).
func (l *Log) stream(ctx context.Context) (jetstream.Stream, error) {
	st, err := l.js.Stream(ctx, l.opts.Stream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	st, err = l.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: l.opts.Stream, Subjects: []string{l.subject},
		Storage: jetstream.FileStorage, Replicas: l.opts.Replicas,
		MaxBytes: l.opts.MaxBytes, MaxAge: l.opts.MaxAge,
		Discard: jetstream.DiscardOld, Duplicates: 2 * time.Minute,
		AllowDirect: true, Metadata: map[string]string{metaID: id},
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return l.js.Stream(ctx, l.opts.Stream)
	}
	if err == nil {
		l.log.Info("created change log stream", "stream", l.opts.Stream, "log_id", id, "replicas", l.opts.Replicas)
	}
	return st, err
}

// decode decodes a message's txn and checks its headers against it.
func (l *Log) decode(data []byte, h nats.Header) (*changelog.Txn, uint64, error) {
	lsn, err := strconv.ParseUint(h.Get(hdrLSN), 16, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("header %s: %w", hdrLSN, err)
	}
	prev, err := strconv.ParseUint(h.Get(hdrPrev), 16, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("header %s: %w", hdrPrev, err)
	}
	txn, err := l.codec.Decode(data)
	if err != nil {
		return nil, 0, err
	}
	if txn.LSN != lsn || prev >= lsn {
		return nil, 0, fmt.Errorf("%w: LSN %X in the record, %X (after %X) in the headers", changelog.ErrCorrupt, txn.LSN, lsn, prev)
	}
	return txn, prev, nil
}

// follow receives the stream's messages in order (the ordered consumer
// recreates itself after a gap or a reconnect).
func (l *Log) follow(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		l.log.Error("change log stream: message without metadata", "err", err)
		return
	}
	txn, prev, err := l.decode(m.Data(), m.Headers())
	if err != nil {
		l.log.Error("change log stream: undecodable message", "seq", md.Sequence.Stream, "err", err)
		l.mu.Lock()
		l.followErr = fmt.Errorf("message %d: %w", md.Sequence.Stream, err)
		l.mu.Unlock()
		return
	}
	l.add(md.Sequence.Stream, txn, prev)
}

// add puts a stored txn into the tail (from Append or from the
// consumer, whichever comes first) and wakes the readers.
func (l *Log) add(seq uint64, txn *changelog.Txn, prev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || txn.LSN <= l.head {
		return
	}
	if prev != l.head && len(l.tail) > 0 {
		// Messages this Log did not see (it was behind by more than the
		// consumer delivered, e.g. across a restart of the stream's
		// leader): readers fetch them from the stream instead.
		l.tail = l.tail[:0]
	}
	if len(l.tail) == 0 {
		l.tailPrev = prev
	}
	l.tail = append(l.tail, entry{seq: seq, txn: txn})
	if n := len(l.tail) - l.opts.TailTxns; n > 0 {
		l.tailPrev = l.tail[n-1].txn.LSN
		l.tail = append(l.tail[:0:0], l.tail[n:]...)
	}
	l.head, l.endLSN, l.lastSeq = txn.LSN, txn.EndLSN, seq
	close(l.notify)
	l.notify = make(chan struct{})
}

// ID is the log's id, kept in the stream's metadata.
func (l *Log) ID() string { return l.id }

// Head is the LSN of the newest txn this Log has seen.
func (l *Log) Head() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.head
}

// EndLSN is the EndLSN of the newest txn: what the slot may be confirmed to.
func (l *Log) EndLSN() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.endLSN
}

// TruncatedThrough is the LSN before the stream's oldest retained
// message (asked of JetStream at most once a second).
func (l *Log) TruncatedThrough() uint64 {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	if time.Since(l.truncAt) < time.Second {
		return l.truncThru
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	defer cancel()
	info, err := l.st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return l.truncThru
	}
	m, err := l.st.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		return l.truncThru
	}
	if prev, err := strconv.ParseUint(m.Header.Get(hdrPrev), 16, 64); err == nil {
		l.truncThru, l.truncAt = max(l.truncThru, prev), time.Now()
	}
	return l.truncThru
}

// Notify returns a channel closed when the next txn is stored.
func (l *Log) Notify() <-chan struct{} {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.notify
}

// Append publishes txns, in order, and returns once JetStream stored
// them. A txn whose LSN is not above the stream's head is already in the
// stream and is skipped: a replica taking over the replication slot is
// sent again what its predecessor stored but had not confirmed to the
// slot, and its view of the stream's head may lag the stream by what its
// consumer has not delivered yet. Messages are published with the
// expected last sequence of the stream: when another appender's message
// is last (a replica that lost its lease without knowing, or this Log's
// stale view), Append reads the stream's newest message and goes on from
// there, skipping what the stream holds; transactions read from one slot
// have the same LSNs and content whoever publishes them.
func (l *Log) Append(txns ...*changelog.Txn) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.RLock()
	head, lastSeq, closed := l.head, l.lastSeq, l.closed
	l.mu.RUnlock()
	if closed {
		return changelog.ErrClosed
	}
	prev := uint64(0)
	for i, t := range txns {
		if t == nil {
			return fmt.Errorf("jetstream log: append: txn %d is nil", i)
		}
		if t.LSN <= prev {
			return fmt.Errorf("%w: txn %X after %X in one batch", changelog.ErrOutOfOrder, t.LSN, prev)
		}
		prev = t.LSN
	}
	for _, t := range txns {
		for resync := 0; ; resync++ {
			if t.LSN <= head {
				break // in the stream already
			}
			seq, dup, err := l.publish(t, head, lastSeq)
			if err == nil && !dup {
				l.add(seq, t, head)
				head, lastSeq = t.LSN, seq
				break
			}
			if err != nil && !wrongLastSeq(err) {
				return fmt.Errorf("jetstream log: publish txn %X: %w", t.LSN, err)
			}
			if resync == maxResyncs {
				return fmt.Errorf("jetstream log: publish txn %X: the stream's head keeps moving (another appender is writing it)", t.LSN)
			}
			// Another appender's message is last, or this LSN is in the
			// stream already (its message id): go on from the stream's head.
			if head, lastSeq, err = l.streamHead(head, lastSeq); err != nil {
				return fmt.Errorf("jetstream log: publish txn %X: %w", t.LSN, err)
			}
		}
	}
	return nil
}

// maxResyncs bounds how often Append rereads the stream's head for one txn.
const maxResyncs = 5

func (l *Log) publish(t *changelog.Txn, head, lastSeq uint64) (seq uint64, dup bool, err error) {
	rec, err := l.codec.Encode(l.buf[:0], t)
	if err != nil {
		return 0, false, err
	}
	l.buf = rec
	msg := &nats.Msg{Subject: l.subject, Data: rec, Header: nats.Header{}}
	msg.Header.Set(hdrLSN, strconv.FormatUint(t.LSN, 16))
	msg.Header.Set(hdrPrev, strconv.FormatUint(head, 16))
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	defer cancel()
	ack, err := l.js.PublishMsg(ctx, msg, jetstream.WithMsgID(strconv.FormatUint(t.LSN, 16)), jetstream.WithExpectLastSequence(lastSeq))
	if err != nil {
		return 0, false, err
	}
	return ack.Sequence, ack.Duplicate, nil
}

// streamHead reads the LSN and sequence of the stream's newest message
// (the consumer delivers it to the tail in its own time).
func (l *Log) streamHead(head, lastSeq uint64) (uint64, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	defer cancel()
	info, err := l.st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read the stream's head: %w", err)
	}
	if info.State.Msgs == 0 || info.State.LastSeq <= lastSeq {
		return head, info.State.LastSeq, nil
	}
	m, err := l.st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0, 0, fmt.Errorf("read the stream's newest message: %w", err)
	}
	lsn, err := strconv.ParseUint(m.Header.Get(hdrLSN), 16, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("message %d: header %s: %w", m.Sequence, hdrLSN, err)
	}
	l.log.Info("change log stream moved on under this appender; continuing from its head", "seq", m.Sequence, "lsn", strconv.FormatUint(lsn, 16))
	return max(head, lsn), m.Sequence, nil
}

func wrongLastSeq(err error) bool {
	var je jetstream.JetStreamError
	if !errors.As(err, &je) || je.APIError() == nil {
		return false
	}
	c := je.APIError().ErrorCode
	return c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// Cursor returns a reader of the txns with LSN > after.
func (l *Log) Cursor(after uint64) changelog.Cursor {
	return &cursor{l: l, pos: after}
}

// Close stops following the stream and closes the connection.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.notify)
	l.mu.Unlock()
	if l.cc != nil {
		l.cc.Stop()
	}
	l.nc.Close()
	return nil
}

type cursor struct {
	l      *Log
	mu     sync.Mutex
	pos    uint64
	seq    uint64 // stream sequence of the txn at pos, when fetching; 0 unknown
	closed bool
}

func (c *cursor) Position() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

func (c *cursor) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *cursor) TryNext() (*changelog.Txn, bool, error) {
	t, _, err := c.next(context.Background())
	return t, t != nil, err
}

func (c *cursor) Next(ctx context.Context) (*changelog.Txn, error) {
	for {
		t, wait, err := c.next(ctx)
		if t != nil || err != nil {
			return t, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// next returns the txn after pos: from the tail when it holds it, else
// fetched from the stream; or (nil, wait) at the head.
func (c *cursor) next(ctx context.Context) (*changelog.Txn, <-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, changelog.ErrClosed
	}
	l := c.l
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, nil, changelog.ErrClosed
	}
	if c.pos >= l.tailPrev {
		i := sort.Search(len(l.tail), func(i int) bool { return l.tail[i].txn.LSN > c.pos })
		if i == len(l.tail) {
			wait := l.notify
			l.mu.RUnlock()
			return nil, wait, nil
		}
		e := l.tail[i]
		l.mu.RUnlock()
		c.pos, c.seq = e.txn.LSN, e.seq
		return e.txn, nil, nil
	}
	l.mu.RUnlock()
	t, seq, err := c.fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.pos, c.seq = t.LSN, seq
	return t, nil, nil
}

// fetch reads the first message after pos from the stream.
func (c *cursor) fetch(ctx context.Context) (*changelog.Txn, uint64, error) {
	l := c.l
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	seq := c.seq + 1
	if c.seq == 0 {
		s, err := c.seek(ctx)
		if err != nil {
			return nil, 0, err
		}
		seq = s
	}
	m, err := l.st.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			if tt := l.TruncatedThrough(); c.pos < tt {
				return nil, 0, fmt.Errorf("%w: position %X, truncated through %X", changelog.ErrTruncated, c.pos, tt)
			}
		}
		return nil, 0, fmt.Errorf("jetstream log: read message %d: %w", seq, err)
	}
	t, prev, err := l.decode(m.Data, m.Header)
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream log: message %d: %w", seq, err)
	}
	switch {
	case t.LSN <= c.pos:
		return nil, 0, fmt.Errorf("jetstream log: message %d (txn %X) is not after position %X", seq, t.LSN, c.pos)
	case prev > c.pos:
		// The txns between pos and this one are gone: retention removed them.
		return nil, 0, fmt.Errorf("%w: position %X, oldest retained txn %X follows %X", changelog.ErrTruncated, c.pos, t.LSN, prev)
	}
	return t, m.Sequence, nil
}

// seek finds the sequence of the first message with LSN > pos by binary
// search over the stream (LSNs increase with sequences).
func (c *cursor) seek(ctx context.Context) (uint64, error) {
	l := c.l
	info, err := l.st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream log: stream info: %w", err)
	}
	lo, hi := info.State.FirstSeq, info.State.LastSeq+1 // answer in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := l.st.GetMsg(ctx, mid)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			lo = mid + 1 // removed meanwhile: older than what remains
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("jetstream log: read message %d: %w", mid, err)
		}
		lsn, err := strconv.ParseUint(m.Header.Get(hdrLSN), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("jetstream log: message %d: header %s: %w", mid, hdrLSN, err)
		}
		if lsn > c.pos {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("jetstream log: log id: %w", err)
	}
	return hex.EncodeToString(b), nil
}
