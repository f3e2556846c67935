package pgrepl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

// ErrUnchangedTOAST is wrapped by the error returned when an UPDATE leaves a
// TOASTed column unchanged (pgoutput then sends no value for it) and the old
// row does not carry the value either. This happens when the table's
// REPLICA IDENTITY is not FULL. The error message names the table and column.
var ErrUnchangedTOAST = errors.New("pgrepl: unchanged TOAST value not available (is the table's REPLICA IDENTITY FULL?)")

// valueOverhead approximates the memory of one coltype.Value besides its bytes.
const valueOverhead = 48

// decoder turns a sequence of pgoutput (protocol version 1) messages into
// committed transactions. It does no I/O apart from calling describe, so it
// can be driven from bytes in tests.
//
// Memory: it never retains the message buffers it is given; every value is
// copied (pglogrepl copies tuple data and FromPGText copies again into a
// Value).
type decoder struct {
	describe func(context.Context, *pglogrepl.RelationMessage) (*changelog.Rel, error)
	// conv converts a text-format column value; coltype.FromPGText unless a
	// test replaces it.
	conv func(coltype.Type, []byte) (coltype.Value, error)
	log  *slog.Logger

	// after is the commit LSN at or below which transactions are skipped: the
	// start position, then the commit LSN of the last transaction returned.
	after uint64
	rels  map[uint32]*relation

	inTxn bool
	skip  bool // current transaction is at or below after: decode nothing
	txn   *changelog.Txn
	size  int // approximate memory of txn
}

// relation is what the decoder knows about a relation OID.
type relation struct {
	rel  *changelog.Rel
	name string // schema.table, for messages
	key  []bool // column is part of the replica identity (pgoutput's flag 1)
}

func newDecoder(describe func(context.Context, *pglogrepl.RelationMessage) (*changelog.Rel, error), after uint64, log *slog.Logger) *decoder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &decoder{
		describe: describe,
		conv:     coltype.FromPGText,
		log:      log,
		after:    after,
		rels:     make(map[uint32]*relation),
	}
}

// parse is pglogrepl.Parse made safe for malformed input (pglogrepl does not
// check lengths inside tuples and relation messages, and panics instead).
func parse(data []byte) (m pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty pgoutput message")
	}
	if err := checkLengths(data); err != nil {
		return nil, fmt.Errorf("malformed pgoutput message %q: %w", data[0], err)
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("malformed pgoutput message %q: %v", data[0], r)
		}
	}()
	m, err = pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("pgoutput message %q: %w", data[0], err)
	}
	return m, nil
}

// checkLengths checks the counts and lengths that pglogrepl allocates
// before comparing them with the message's size: the length of each value
// in the tuples of an Insert, Update or Delete (up to 4 GiB each) and the
// relation count of a Truncate (up to 16 GiB of OIDs). A message that
// fails it is one pglogrepl would fail on too, after the allocation.
func checkLengths(data []byte) error {
	b := data[1:]
	switch data[0] {
	case 'T':
		if len(b) >= 5 && uint64(binary.BigEndian.Uint32(b))*4 > uint64(len(b)-5) {
			return fmt.Errorf("%d relations do not fit in %d bytes", binary.BigEndian.Uint32(b), len(b)-5)
		}
		return nil
	case 'I', 'U', 'D':
	default:
		return nil
	}
	if len(b) < 4 {
		return nil // pglogrepl reports the short message
	}
	b = b[4:] // relation OID
	for len(b) > 0 {
		kind := b[0]
		if kind != 'K' && kind != 'O' && kind != 'N' {
			return nil
		}
		b = b[1:]
		if len(b) < 2 {
			return nil
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		for range n {
			if len(b) == 0 {
				return nil
			}
			c := b[0]
			b = b[1:]
			if c != pglogrepl.TupleDataTypeText && c != pglogrepl.TupleDataTypeBinary {
				continue
			}
			if len(b) < 4 {
				return nil
			}
			l := binary.BigEndian.Uint32(b)
			b = b[4:]
			if uint64(l) > uint64(len(b)) {
				return fmt.Errorf("%d-byte value in a tuple with %d bytes left", l, len(b))
			}
			b = b[l:]
		}
		if kind == 'N' {
			return nil
		}
	}
	return nil
}

// inTransaction reports whether the decoder is between a Begin and its Commit.
func (d *decoder) inTransaction() bool { return d.inTxn }

// decode consumes one pgoutput message (the WAL data of an XLogData
// message). On a Commit it returns the finished transaction and its
// approximate size in bytes; otherwise, and for skipped transactions, it
// returns nil. After an error the decoder must not be used again.
func (d *decoder) decode(ctx context.Context, data []byte) (*changelog.Txn, int, error) {
	m, err := parse(data)
	if err != nil {
		return nil, 0, err
	}
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		if d.inTxn {
			return nil, 0, fmt.Errorf("pgoutput: BEGIN (xid %d) inside transaction %d", m.Xid, d.txn.Xid)
		}
		d.inTxn = true
		d.skip = uint64(m.FinalLSN) <= d.after
		d.txn = &changelog.Txn{LSN: uint64(m.FinalLSN), Xid: m.Xid}
		d.size = 64
		return nil, 0, nil

	case *pglogrepl.CommitMessage:
		if !d.inTxn {
			return nil, 0, fmt.Errorf("pgoutput: COMMIT %s outside a transaction", m.CommitLSN)
		}
		t := d.txn
		if uint64(m.CommitLSN) != t.LSN {
			return nil, 0, fmt.Errorf("pgoutput: COMMIT LSN %s does not match BEGIN's final LSN %s (xid %d)",
				m.CommitLSN, pglogrepl.LSN(t.LSN), t.Xid)
		}
		d.inTxn, d.txn = false, nil
		if d.skip {
			d.skip = false
			return nil, 0, nil
		}
		t.EndLSN = uint64(m.TransactionEndLSN)
		t.CommitTime = m.CommitTime.UnixMicro()
		d.after = t.LSN
		return t, d.size, nil

	case *pglogrepl.RelationMessage:
		return nil, 0, d.relation(ctx, m)

	case *pglogrepl.InsertMessage:
		r, err := d.change("INSERT", m.RelationID)
		if r == nil || err != nil {
			return nil, 0, err
		}
		row, err := d.row(r, m.Tuple, nil, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("INSERT into %s: %w", r.name, err)
		}
		d.add(changelog.Change{Op: protocol.OpInsert, Rel: r.rel, New: row})
		return nil, 0, nil

	case *pglogrepl.UpdateMessage:
		r, err := d.change("UPDATE", m.RelationID)
		if r == nil || err != nil {
			return nil, 0, err
		}
		var old []coltype.Value
		if m.OldTuple != nil {
			if old, err = d.row(r, m.OldTuple, nil, 0); err != nil {
				return nil, 0, fmt.Errorf("UPDATE of %s: old row: %w", r.name, err)
			}
		}
		if m.NewTuple == nil {
			return nil, 0, fmt.Errorf("UPDATE of %s: no new row", r.name)
		}
		row, err := d.row(r, m.NewTuple, old, m.OldTupleType)
		if err != nil {
			return nil, 0, fmt.Errorf("UPDATE of %s: %w", r.name, err)
		}
		d.add(changelog.Change{Op: protocol.OpUpdate, Rel: r.rel, Old: old, New: row})
		return nil, 0, nil

	case *pglogrepl.DeleteMessage:
		r, err := d.change("DELETE", m.RelationID)
		if r == nil || err != nil {
			return nil, 0, err
		}
		if m.OldTuple == nil {
			return nil, 0, fmt.Errorf("DELETE from %s: no old row", r.name)
		}
		old, err := d.row(r, m.OldTuple, nil, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("DELETE from %s: %w", r.name, err)
		}
		d.add(changelog.Change{Op: protocol.OpDelete, Rel: r.rel, Old: old})
		return nil, 0, nil

	case *pglogrepl.TruncateMessage:
		if !d.inTxn {
			return nil, 0, errors.New("pgoutput: TRUNCATE outside a transaction")
		}
		if d.skip {
			return nil, 0, nil
		}
		for _, id := range m.RelationIDs {
			r := d.rels[id]
			if r == nil {
				d.log.Warn("TRUNCATE of a relation Postgres did not describe; not synced",
					"oid", id, "xid", d.txn.Xid, "lsn", pglogrepl.LSN(d.txn.LSN).String())
				continue
			}
			d.add(changelog.Change{Op: changelog.OpTruncate, Rel: r.rel})
		}
		return nil, 0, nil

	case *pglogrepl.TypeMessage:
		// Types are resolved by Describe from the catalog.
		d.log.Debug("pgoutput type message", "oid", m.DataType, "type", m.Namespace+"."+m.Name)
		return nil, 0, nil

	case *pglogrepl.OriginMessage:
		d.log.Debug("pgoutput origin message", "origin", m.Name, "lsn", m.CommitLSN.String())
		return nil, 0, nil

	case *pglogrepl.LogicalDecodingMessage:
		// The write path marks the transactions it applies for a client
		// with a transactional message naming the client transaction.
		if !m.Transactional || m.Prefix != OriginMessagePrefix || !d.inTxn || d.skip {
			return nil, 0, nil
		}
		txid, origin, ok := strings.Cut(string(m.Content), ":")
		id, err := strconv.ParseUint(txid, 10, 64)
		if !ok || err != nil || origin == "" {
			d.log.Warn("malformed lattice origin message", "content", string(m.Content))
			return nil, 0, nil
		}
		d.txn.Origin, d.txn.ClientTxnID = origin, id
		return nil, 0, nil
	}
	return nil, 0, fmt.Errorf("pgoutput: unexpected message %q", data[0])
}

// OriginMessagePrefix is the prefix of the transactional logical decoding
// message (pg_logical_emit_message) with which the service marks a
// transaction that applied a client's write; its content is
// "<client txn id>:<origin>".
const OriginMessagePrefix = "lattice.origin"

// relation handles a Relation message: ask Describe and check its answer.
func (d *decoder) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	name := m.Namespace + "." + m.RelationName
	rel, err := d.describe(ctx, m)
	if err != nil {
		return fmt.Errorf("describe %s: %w", name, err)
	}
	if rel == nil {
		return fmt.Errorf("describe %s: no relation", name)
	}
	if rel.Schema != m.Namespace || rel.Table != m.RelationName {
		return fmt.Errorf("describe %s: returned %s.%s", name, rel.Schema, rel.Table)
	}
	if len(rel.Columns) != len(m.Columns) {
		return fmt.Errorf("describe %s: %d columns, but pgoutput sends %d", name, len(rel.Columns), len(m.Columns))
	}
	key := make([]bool, len(m.Columns))
	for i, c := range m.Columns {
		if rel.Columns[i].Name != c.Name {
			return fmt.Errorf("describe %s: column %d is %q, but pgoutput sends %q", name, i, rel.Columns[i].Name, c.Name)
		}
		key[i] = c.Flags&1 != 0
	}
	d.rels[m.RelationID] = &relation{rel: rel, name: name, key: key}
	return nil
}

// change checks that a row change may be decoded now and finds its relation.
// It returns a nil relation (and no error) inside a skipped transaction.
func (d *decoder) change(what string, relID uint32) (*relation, error) {
	if !d.inTxn {
		return nil, fmt.Errorf("pgoutput: %s outside a transaction", what)
	}
	if d.skip {
		return nil, nil
	}
	r := d.rels[relID]
	if r == nil {
		return nil, fmt.Errorf("pgoutput: %s for relation OID %d without a preceding Relation message", what, relID)
	}
	return r, nil
}

func (d *decoder) add(c changelog.Change) {
	d.txn.Changes = append(d.txn.Changes, c)
	d.size += 64 + rowSize(c.Old) + rowSize(c.New)
}

func rowSize(row []coltype.Value) int {
	n := 0
	for i := range row {
		n += valueOverhead + len(row[i].B)
	}
	return n
}

// row converts a tuple to a full row in Rel column order. old and oldKind
// ('O', 'K' or 0) are the old row of the same change, for unchanged TOAST
// values ('u'); pass nil and 0 when decoding an old row itself.
func (d *decoder) row(r *relation, t *pglogrepl.TupleData, old []coltype.Value, oldKind uint8) ([]coltype.Value, error) {
	cols := r.rel.Columns
	if len(t.Columns) != len(cols) {
		return nil, fmt.Errorf("tuple has %d columns, relation has %d", len(t.Columns), len(cols))
	}
	row := make([]coltype.Value, len(cols))
	for i, c := range t.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			// row[i] is already NULL.
		case pglogrepl.TupleDataTypeText:
			v, err := d.conv(cols[i].Type, c.Data)
			if err != nil {
				return nil, fmt.Errorf("column %s (%s): %w", cols[i].Name, cols[i].Type.Name, err)
			}
			row[i] = v
		case pglogrepl.TupleDataTypeToast:
			// Unchanged TOASTed value: take it from the full old row. A key-only
			// old row ('K') holds it only if the column is part of the key.
			if old == nil || (oldKind == pglogrepl.UpdateMessageTupleTypeKey && !r.key[i]) {
				return nil, fmt.Errorf("table %s column %s: %w", r.name, cols[i].Name, ErrUnchangedTOAST)
			}
			row[i] = old[i] // shares B with the old row; Values are immutable
		case pglogrepl.TupleDataTypeBinary:
			return nil, fmt.Errorf("column %s: unexpected binary-format value", cols[i].Name)
		default:
			return nil, fmt.Errorf("column %s: unknown tuple data kind %q", cols[i].Name, c.DataType)
		}
	}
	return row, nil
}
