package protocol

import (
	"encoding/binary"

	"github.com/latticesync/lattice/coltype"
)

// Write carries one local transaction of the client to the service. A
// client sends its transactions in its commit order; the service applies
// each in one Postgres transaction, merging it with concurrent writes, and
// answers Ack or Reject. A Write the service already applied (same client
// and TxnID) is acknowledged again, not applied twice.
type Write struct {
	TxnID   uint64 // increasing per client (Hello.ClientID)
	HLC     uint64 // the transaction's hybrid logical clock timestamp
	Changes []WriteChange
}

// WriteChange is one row written by a Write: the transaction's net effect
// on that row.
type WriteChange struct {
	Table string // "schema.table", as in Relation
	Op    Op     // OpInsert, OpUpdate or OpDelete
	// Version is the row version the client held when it wrote (from
	// Change.Version): the write has seen exactly the row's versions up to
	// it, and the client's own earlier writes. 0: the client held no
	// version of the row from the service (a new row, or one only its own
	// writes made). VersionCurrent: the client held the row at a version it
	// does not know (the service sent 0); the write is taken to have seen
	// the row as the service holds it when applying the write.
	Version uint64
	Key     []coltype.Value // primary key values, in PK order
	Columns []uint32        // indexes of the columns written (OpInsert: all)
	Values  []coltype.Value // one per entry of Columns
}

// ColumnJSONChanges, set in an entry of WriteChange.Columns, says that the
// column (the index without this bit) is merged per key path and that the
// matching value is not the column's new value but the write's per-path
// changes: Text, the JSON form of merge.AppendJSONChanges
// (`[["set",["k"],1],["del",["j"]]]`). Only for columns the Relation marks
// as merged per key (PROTOCOL.md, 3.4); a service that predates it refuses
// the write (no such column).
const ColumnJSONChanges uint32 = 1 << 31

// VersionCurrent is the WriteChange.Version of a write made on a row held
// at an unknown version.
const VersionCurrent = ^uint64(0)

// Encode appends the Write frame to dst.
func (m *Write) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeWrite))
	dst = binary.AppendUvarint(dst, m.TxnID)
	dst = binary.AppendUvarint(dst, m.HLC)
	dst = binary.AppendUvarint(dst, uint64(len(m.Changes)))
	for i := range m.Changes {
		c := &m.Changes[i]
		dst = appendString(dst, c.Table)
		dst = append(dst, byte(c.Op))
		dst = binary.AppendUvarint(dst, c.Version)
		dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
		for _, v := range c.Key {
			dst = AppendValue(dst, v)
		}
		dst = binary.AppendUvarint(dst, uint64(len(c.Columns)))
		for _, col := range c.Columns {
			dst = binary.AppendUvarint(dst, uint64(col))
		}
		dst = binary.AppendUvarint(dst, uint64(len(c.Values)))
		for _, v := range c.Values {
			dst = AppendValue(dst, v)
		}
	}
	return dst
}

// minWriteChange is the smallest encoded WriteChange: table length, Op,
// Version and three counts.
const minWriteChange = 6

func (d *decoder) write() *Write {
	m := new(Write)
	m.TxnID = d.uvarint()
	m.HLC = d.uvarint()
	n := d.count(minWriteChange)
	if n > 0 {
		m.Changes = make([]WriteChange, n)
	}
	for i := range m.Changes {
		c := &m.Changes[i]
		c.Table = d.string()
		op := d.byte1()
		if d.err == nil && (op < byte(OpInsert) || op > byte(OpDelete)) {
			d.failAt(d.off-1, "unknown write op")
		}
		c.Op = Op(op)
		c.Version = d.uvarint()
		c.Key = d.values()
		if k := d.count(1); k > 0 {
			c.Columns = make([]uint32, k)
			for j := range c.Columns {
				c.Columns[j] = d.u32()
			}
		}
		c.Values = d.values()
		if d.err == nil && len(c.Values) != len(c.Columns) {
			d.fail("values do not match columns")
		}
		if d.err != nil {
			return m
		}
	}
	return m
}

// values reads a count and that many values; nil when empty. Text and
// Blob bytes are copied out of the frame.
func (d *decoder) values() []coltype.Value {
	k := d.count(1)
	if k == 0 {
		return nil
	}
	vs := make([]coltype.Value, k)
	for i := range vs {
		vs[i] = d.value()
		if len(vs[i].B) > 0 {
			vs[i].B = append([]byte(nil), vs[i].B...)
		}
	}
	return vs
}
