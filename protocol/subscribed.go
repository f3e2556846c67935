package protocol

import "encoding/binary"

// Subscribed tells the client that shapes are live and their initial data
// was in the preceding Txn (or, with Resume, that streaming continues).
type Subscribed struct {
	ReqID    uint32
	ShapeIDs []string
}

// Encode appends the Subscribed frame to dst.
func (m *Subscribed) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeSubscribed))
	dst = binary.AppendUvarint(dst, uint64(m.ReqID))
	return appendStrings(dst, m.ShapeIDs)
}

func (d *decoder) subscribed() *Subscribed {
	m := new(Subscribed)
	m.ReqID = d.u32()
	m.ShapeIDs = d.strings()
	return m
}
