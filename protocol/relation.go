package protocol

import (
	"encoding/binary"

	"github.com/latticesync/lattice/coltype"
)

// Column describes one column of a Relation.
type Column struct {
	Name    string
	Type    coltype.Type
	NotNull bool
	// Default is the column's default as a SQLite expression, for local
	// inserts that leave the column out ("" when Postgres' default has no
	// local equivalent, e.g. a sequence, or there is none).
	Default string
	// JSONMerge (protocol version 3) says the column, json or jsonb, is
	// merged per key path (lattice.electrify option json_merge): a client
	// may write it as per-path changes (ColumnJSONChanges). Sent in the
	// Relation's JSONMerge trailer, never to a session below version 3.
	JSONMerge bool
}

// Relation describes a table before the first Txn that references it.
// RelID is assigned by the service per connection.
type Relation struct {
	RelID   uint32
	Schema  string
	Table   string
	Columns []Column
	PK      []int // indexes into Columns, in key order
	// ColumnIDs (protocol version 2) are the columns' stable ids, one per
	// column: the Postgres attnum, which a RENAME COLUMN or ALTER TYPE
	// keeps and a new column never reuses; 0 when unknown. nil: not sent
	// (version 1, or no columns).
	ColumnIDs []uint32
}

// Encode appends the Relation frame to dst. A PK index outside Columns
// yields a frame that decoders reject.
func (m *Relation) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeRelation))
	dst = binary.AppendUvarint(dst, uint64(m.RelID))
	dst = appendString(dst, m.Schema)
	dst = appendString(dst, m.Table)
	dst = binary.AppendUvarint(dst, uint64(len(m.Columns)))
	for i := range m.Columns {
		c := &m.Columns[i]
		dst = appendString(dst, c.Name)
		dst = AppendType(dst, c.Type)
		dst = appendBool(dst, c.NotNull)
		dst = appendString(dst, c.Default)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.PK)))
	for _, k := range m.PK {
		dst = binary.AppendUvarint(dst, uint64(k))
	}
	var merged []int
	for i := range m.Columns {
		if m.Columns[i].JSONMerge {
			merged = append(merged, i)
		}
	}
	ids := m.ColumnIDs
	if len(ids) == 0 && len(merged) > 0 {
		// The JSONMerge trailer follows the ColumnIDs trailer: without
		// ids, they are sent as unknown (0).
		ids = make([]uint32, len(m.Columns))
	}
	if len(ids) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(ids)))
		for _, id := range ids {
			dst = binary.AppendUvarint(dst, uint64(id))
		}
	}
	if len(merged) > 0 {
		// The version 3 trailer: the indexes of the columns merged per
		// key path, ascending.
		dst = binary.AppendUvarint(dst, uint64(len(merged)))
		for _, i := range merged {
			dst = binary.AppendUvarint(dst, uint64(i))
		}
	}
	return dst
}

// AppendType appends the wire encoding of a column type to dst: the Base
// byte, the Array flag as a bool byte, and Name as a string.
func AppendType(dst []byte, t coltype.Type) []byte {
	dst = append(dst, byte(t.Base))
	dst = appendBool(dst, t.Array)
	return appendString(dst, t.Name)
}

// maxBase is the highest coltype.Base that protocol v1 knows.
const maxBase = coltype.Enum

const minColumn = 6 // Name length, Base, Array, type Name length, NotNull, Default length

func (d *decoder) relation() *Relation {
	m := new(Relation)
	m.RelID = d.u32()
	m.Schema = d.string()
	m.Table = d.string()
	if n := d.count(minColumn); n > 0 {
		m.Columns = make([]Column, n)
	}
	for i := range m.Columns {
		c := &m.Columns[i]
		c.Name = d.string()
		c.Type = d.colType()
		c.NotNull = d.bool()
		c.Default = d.string()
	}
	if n := d.count(1); n > 0 {
		m.PK = make([]int, n)
	}
	for i := range m.PK {
		pos := d.off
		k := d.uvarint()
		if k >= uint64(len(m.Columns)) && d.err == nil {
			d.failAt(pos, "primary key index out of range")
		}
		m.PK[i] = int(k)
	}
	if d.err == nil && d.remaining() > 0 {
		// The version 2 trailer: one id per column.
		pos := d.off
		n := d.count(1)
		if (n == 0 || n != len(m.Columns)) && d.err == nil {
			d.failAt(pos, "column id count differs from the column count")
		}
		m.ColumnIDs = make([]uint32, n)
		for i := range m.ColumnIDs {
			m.ColumnIDs[i] = d.u32()
		}
	}
	if d.err == nil && d.remaining() > 0 {
		// The version 3 trailer: the columns merged per key path, as
		// strictly ascending indexes.
		pos := d.off
		n := d.count(1)
		if n == 0 && d.err == nil {
			d.failAt(pos, "empty JSONMerge trailer")
		}
		prev := -1
		for range n {
			pos := d.off
			k := d.uvarint()
			if d.err != nil {
				break
			}
			if k >= uint64(len(m.Columns)) || int(k) <= prev {
				d.failAt(pos, "JSONMerge column index out of range or not ascending")
				break
			}
			prev = int(k)
			m.Columns[k].JSONMerge = true
		}
	}
	return m
}

func (d *decoder) colType() coltype.Type {
	var t coltype.Type
	b := coltype.Base(d.byte1())
	if b > maxBase && d.err == nil {
		d.failAt(d.off-1, "unknown column base type")
	}
	t.Base = b
	t.Array = d.bool()
	t.Name = d.string()
	return t
}
