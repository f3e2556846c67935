package protocol

import "encoding/binary"

// Reject tells the client that Postgres refused its transaction TxnID
// after the merge (a CHECK, NOT NULL, UNIQUE or foreign key violation, a
// trigger error) or that it was invalid. Nothing of it was applied. The
// service follows it with a Txn holding the rows the transaction wrote as
// Postgres holds them (or MoveOut), which undoes its local effects, and goes
// on with the client's next transaction.
type Reject struct {
	TxnID   uint64
	Code    string // e.g. "check_violation", "unique_violation", "bad_write"
	Message string
}

// Encode appends the Reject frame to dst.
func (m *Reject) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeReject))
	dst = binary.AppendUvarint(dst, m.TxnID)
	dst = appendString(dst, m.Code)
	return appendString(dst, m.Message)
}

func (d *decoder) reject() *Reject {
	m := new(Reject)
	m.TxnID = d.uvarint()
	m.Code = d.string()
	m.Message = d.string()
	return m
}
