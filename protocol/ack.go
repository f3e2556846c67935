package protocol

import "encoding/binary"

// Ack tells the client that its transaction TxnID is durable in Postgres.
// Acks come in the client's commit order. The transaction's effects also
// come back through the stream as a Txn with the client's Origin and
// ClientTxnID.
type Ack struct {
	TxnID uint64
}

// Encode appends the Ack frame to dst.
func (m *Ack) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeAck))
	return binary.AppendUvarint(dst, m.TxnID)
}

func (d *decoder) ack() *Ack { return &Ack{TxnID: d.uvarint()} }
