// Package pgrepl reads committed transactions from a Postgres logical
// replication slot (plugin pgoutput, protocol version 1) and hands them, in
// commit order and in batches, to a sink that makes them durable.
//
// The replication connection is opened with the session parameters in
// sessionParams, so that pgoutput's text output is in the format that
// coltype.FromPGText expects.
//
// Limitations:
//   - TRUNCATE is not synced: it is logged as a warning ("TRUNCATE of
//     electrified table X is not synced") and nothing is added to the Txn.
//   - Tables should have REPLICA IDENTITY FULL. Otherwise an UPDATE that
//     leaves a TOASTed column unchanged cannot be decoded (pgoutput does not
//     send the value) and Run fails with ErrUnchangedTOAST; UPDATEs carry no
//     old row (Change.Old is nil), or, when the key changed, an old row with
//     only the replica identity columns set (the others are NULL); DELETEs
//     carry such a key-only old row.
//   - A transaction is held in memory until its commit arrives, however large.
//   - Values are converted with coltype.FromPGText; binary-format values and
//     pgoutput protocol versions other than 1 (streamed, two-phase
//     transactions) are not supported.
package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/server/changelog"
)

// ErrSlotMissing is wrapped by the error Run returns when the replication
// slot does not exist (SQLSTATE 42704): dropped, or never created.
var ErrSlotMissing = errors.New("pgrepl: replication slot does not exist")

// ErrSlotInUse is wrapped by the error Run returns when the replication slot
// is already being streamed by another process (SQLSTATE 55006).
var ErrSlotInUse = errors.New("pgrepl: replication slot is in use by another process")

// Batch limits for one Sink call.
const (
	maxBatchTxns  = 1000
	maxBatchBytes = 8 << 20
)

// DefaultStatusInterval is the interval between standby status updates when
// Config.StatusInterval is zero.
const DefaultStatusInterval = 5 * time.Second

// sessionParams are applied to the replication connection so that pgoutput
// writes values in the text format that coltype.FromPGText parses. They must
// match the settings coltype documents.
var sessionParams = map[string]string{
	"client_encoding":    "UTF8",
	"DateStyle":          "ISO",
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// Config configures Run.
type Config struct {
	// ConnString is a normal Postgres connection string (URL or key=value).
	// Run adds replication=database and the session parameters.
	ConnString string
	// Slot is an existing logical replication slot using pgoutput.
	Slot string
	// Publication is the publication to stream.
	Publication string
	// Describe maps a pgoutput Relation message to a Rel whose Columns are in
	// pgoutput's order (Run checks the names and fails otherwise). It is
	// called on every Relation message: Postgres sends one before the first
	// change of a table in each session and after schema changes. It must
	// not keep msg's Columns slice past the call if it needs it to stay
	// unchanged (Run does not modify it).
	Describe func(ctx context.Context, msg *pglogrepl.RelationMessage) (*changelog.Rel, error)
	// Sink receives committed transactions in commit order, in batches: all
	// transactions decoded while the previous call ran, at most about 1000
	// transactions or 8 MiB. It must make them durable before returning.
	// Calls never overlap. A Txn may have no Changes (a transaction that only
	// truncated tables). The Txns are not used by Run after the call, and
	// Values in Old and New rows may share byte slices (treat them as
	// immutable).
	Sink func(ctx context.Context, txns []*changelog.Txn) error
	// Flushed reports the LSN up to which everything is durable (the
	// changelog's EndLSN). It is sent as the write, flush and apply positions
	// of standby status updates, so Postgres may recycle WAL before it. It
	// may be called while Sink runs.
	Flushed func() uint64
	// StatusInterval is the interval between standby status updates
	// (default DefaultStatusInterval). Updates are also sent after each Sink
	// call and immediately when the server asks for a reply.
	StatusInterval time.Duration
	// AdvanceWhenIdle, when set, lets status updates report a position past
	// Flushed when nothing is pending: the WAL end of a keepalive received
	// while no transaction was being decoded, queued or sunk (everything
	// committed before it has been made durable). Without it, the slot only
	// advances with synced transactions, and Postgres retains WAL written by
	// other tables and databases until one comes. After a restart, start may
	// then be below the slot's confirmed position; Postgres starts at the
	// latter, which is safe since nothing was skipped.
	AdvanceWhenIdle bool
	// Idle, when set with AdvanceWhenIdle, is called with that position
	// each time it advances: everything committed before it is durable
	// (the service's readiness measures replication lag with it).
	Idle func(lsn uint64)
	// Started, when set, is called once the slot streams (START_REPLICATION
	// succeeded): the service is replicating again.
	Started func()
	// Logger receives warnings (TRUNCATE) and debug messages; nil discards.
	Logger *slog.Logger

	// conv replaces coltype.FromPGText (tests only).
	conv func(coltype.Type, []byte) (coltype.Value, error)
}

var slotName = regexp.MustCompile(`^[a-z0-9_]+$`)

func (c *Config) check() error {
	switch {
	case !slotName.MatchString(c.Slot):
		return fmt.Errorf("pgrepl: invalid slot name %q", c.Slot)
	case c.Publication == "":
		return errors.New("pgrepl: no publication")
	case c.Describe == nil, c.Sink == nil, c.Flushed == nil:
		return errors.New("pgrepl: Describe, Sink and Flushed are required")
	}
	return nil
}

// Run streams from the slot starting after start (an LSN; 0 means the slot's
// confirmed position) until ctx ends or an error occurs. Transactions whose
// commit LSN is at most start are skipped (Postgres may resend from the
// slot's confirmed position). When ctx ends, Run waits for a running Sink
// call, sends a last status update and returns ctx.Err().
func Run(ctx context.Context, cfg Config, start uint64) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := cfg.StatusInterval
	if interval <= 0 {
		interval = DefaultStatusInterval
	}

	pcfg, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		return fmt.Errorf("pgrepl: parse connection string: %w", err)
	}
	if pcfg.RuntimeParams == nil {
		pcfg.RuntimeParams = make(map[string]string)
	}
	pcfg.RuntimeParams["replication"] = "database"
	for k, v := range sessionParams {
		pcfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("pgrepl: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Close(cctx)
		cancel()
	}()

	opts := pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(quoteIdent(cfg.Publication)),
			"messages 'true'",
		},
	}
	if err := pglogrepl.StartReplication(ctx, conn, quoteIdent(cfg.Slot), pglogrepl.LSN(start), opts); err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "55006" {
			return fmt.Errorf("pgrepl: start replication on slot %s: %w: %w", cfg.Slot, ErrSlotInUse, err)
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42704" {
			return fmt.Errorf("pgrepl: start replication on slot %s: %w: %w", cfg.Slot, ErrSlotMissing, err)
		}
		return fmt.Errorf("pgrepl: start replication on slot %s: %w", cfg.Slot, err)
	}
	log.Info("logical replication started", "slot", cfg.Slot, "publication", cfg.Publication,
		"start", pglogrepl.LSN(start).String())
	if cfg.Started != nil {
		cfg.Started()
	}

	s := &stream{
		conn:     conn,
		raw:      conn.Conn(),
		cfg:      &cfg,
		log:      log,
		interval: interval,
		dec:      newDecoder(cfg.Describe, start, log),
		sinkDone: make(chan error, 1),
	}
	if cfg.conv != nil {
		s.dec.conv = cfg.conv
	}
	return s.run(ctx)
}

func quoteIdent(s string) string   { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// stream is the network loop of Run. One goroutine owns the connection: it
// receives, decodes and sends status updates; Sink runs in a second
// goroutine so that decoding continues while a batch is made durable. Waits
// are bounded by read deadlines on the socket (pgconn keeps partially read
// messages across timeouts); the sink goroutine and ctx interrupt a wait by
// moving the deadline into the past.
type stream struct {
	conn     *pgconn.PgConn
	raw      net.Conn
	cfg      *Config
	log      *slog.Logger
	interval time.Duration
	dec      *decoder

	pending      []*changelog.Txn // committed, not yet given to Sink
	pendingBytes int
	sinkBusy     bool
	sinkDone     chan error // result of the running Sink call
	nextStatus   time.Time
	idleLSN      uint64 // AdvanceWhenIdle: position known to be fully durable
}

// past is a read deadline that makes a read return at once unless a whole
// message is already buffered.
var past = time.Unix(1, 0)

func (s *stream) wake() { s.raw.SetReadDeadline(past) }

func (s *stream) run(ctx context.Context) (err error) {
	stop := context.AfterFunc(ctx, s.wake)
	defer stop()
	defer func() {
		if s.sinkBusy {
			if serr := <-s.sinkDone; serr != nil && err == nil {
				err = fmt.Errorf("pgrepl: sink: %w", serr)
			}
			s.sinkBusy = false
		}
		// Best effort: report what is durable now before disconnecting.
		if !s.conn.IsClosed() {
			s.sendStatus()
		}
	}()

	s.nextStatus = time.Now().Add(s.interval)
	var deadline time.Time // read deadline currently set; zero: unknown
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case serr := <-s.sinkDone:
			if err := s.sinkReturned(ctx, serr); err != nil {
				return err
			}
		default:
		}
		if !time.Now().Before(s.nextStatus) {
			if err := s.sendStatus(); err != nil {
				return err
			}
		}
		if len(s.pending) >= maxBatchTxns || s.pendingBytes >= maxBatchBytes {
			if !s.sinkBusy {
				s.dispatch(ctx)
				continue
			}
			// Backpressure: stop reading until the sink catches up.
			if err := s.waitSink(ctx); err != nil {
				return err
			}
			continue
		}

		// With committed transactions waiting and the sink idle, only read
		// what is already buffered; hand the batch over once a read would
		// block.
		poll := len(s.pending) > 0 && !s.sinkBusy
		want := s.nextStatus
		if poll {
			want = past
		}
		if !want.Equal(deadline) {
			if err := s.raw.SetReadDeadline(want); err != nil {
				return fmt.Errorf("pgrepl: set read deadline: %w", err)
			}
			deadline = want
		}
		// A wake-up that came before the deadline was set is lost; its
		// cause is not.
		if len(s.sinkDone) > 0 || ctx.Err() != nil {
			deadline = time.Time{}
			continue
		}
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				deadline = time.Time{}
				if poll {
					s.dispatch(ctx)
				}
				continue
			}
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			return fmt.Errorf("pgrepl: receive: %w", err)
		}
		if err := s.handle(ctx, msg); err != nil {
			return err
		}
	}
}

// handle processes one message of the replication stream.
func (s *stream) handle(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return errors.New("pgrepl: empty CopyData message")
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return fmt.Errorf("pgrepl: %w", err)
			}
			if s.cfg.AdvanceWhenIdle && !s.dec.inTransaction() && len(s.pending) == 0 && !s.sinkBusy {
				if end := uint64(pkm.ServerWALEnd); end > s.idleLSN {
					s.idleLSN = end
					if s.cfg.Idle != nil {
						s.cfg.Idle(end)
					}
				}
			}
			if pkm.ReplyRequested {
				return s.sendStatus()
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return fmt.Errorf("pgrepl: %w", err)
			}
			txn, size, err := s.dec.decode(ctx, xld.WALData)
			if err != nil {
				if xld.WALStart != 0 {
					return fmt.Errorf("pgrepl: decode at %s: %w", xld.WALStart, err)
				}
				return fmt.Errorf("pgrepl: decode: %w", err)
			}
			if txn != nil {
				s.pending = append(s.pending, txn)
				s.pendingBytes += size
			}
		default:
			return fmt.Errorf("pgrepl: unexpected replication message %q", m.Data[0])
		}
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("pgrepl: replication stream: %w", pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyDone:
		return errors.New("pgrepl: server ended the replication stream")
	default:
		s.log.Debug("ignoring replication connection message", "type", fmt.Sprintf("%T", msg))
	}
	return nil
}

// dispatch hands the pending transactions to Sink in a new goroutine.
func (s *stream) dispatch(ctx context.Context) {
	if s.sinkBusy || len(s.pending) == 0 {
		return
	}
	batch := s.pending
	s.pending, s.pendingBytes = nil, 0
	s.sinkBusy = true
	go func() {
		err := s.cfg.Sink(ctx, batch)
		s.sinkDone <- err
		s.wake()
	}()
}

// sinkReturned handles the end of a Sink call: report progress and start
// the next batch.
func (s *stream) sinkReturned(ctx context.Context, err error) error {
	s.sinkBusy = false
	if err != nil {
		return fmt.Errorf("pgrepl: sink: %w", err)
	}
	if err := s.sendStatus(); err != nil {
		return err
	}
	s.dispatch(ctx)
	return nil
}

// waitSink waits, without reading, for the sink to return, the next status
// update to be due or ctx to end.
func (s *stream) waitSink(ctx context.Context) error {
	t := time.NewTimer(time.Until(s.nextStatus))
	defer t.Stop()
	select {
	case err := <-s.sinkDone:
		return s.sinkReturned(ctx, err)
	case <-t.C:
		return s.sendStatus()
	case <-ctx.Done():
		return nil
	}
}

// sendStatus sends a standby status update with the durable position.
func (s *stream) sendStatus() error {
	pos := pglogrepl.LSN(max(s.cfg.Flushed(), s.idleLSN))
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos,
		WALFlushPosition: pos,
		WALApplyPosition: pos,
	})
	if err != nil {
		return fmt.Errorf("pgrepl: send standby status: %w", err)
	}
	s.nextStatus = time.Now().Add(s.interval)
	return nil
}
