package protocol

import "encoding/binary"

// Unsubscribe drops shapes from the session. (Reserved; removal of rows is
// specified with relational shapes.)
type Unsubscribe struct {
	ReqID    uint32
	ShapeIDs []string
}

// Encode appends the Unsubscribe frame to dst.
func (m *Unsubscribe) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeUnsubscribe))
	dst = binary.AppendUvarint(dst, uint64(m.ReqID))
	return appendStrings(dst, m.ShapeIDs)
}

func (d *decoder) unsubscribe() *Unsubscribe {
	m := new(Unsubscribe)
	m.ReqID = d.u32()
	m.ShapeIDs = d.strings()
	return m
}
