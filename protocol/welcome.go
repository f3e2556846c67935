package protocol

import "encoding/binary"

// Welcome answers Hello.
type Welcome struct {
	LogID string // id of the service's change log
	// Resync is set when the client's position cannot be resumed (unknown log,
	// or older than the retained window): the client must subscribe its
	// shapes afresh, and the first snapshot will carry FlagReset.
	Resync  bool
	HeadLSN uint64 // the newest commit LSN in the log
}

// Encode appends the Welcome frame to dst.
func (m *Welcome) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeWelcome))
	dst = appendString(dst, m.LogID)
	dst = appendBool(dst, m.Resync)
	return binary.AppendUvarint(dst, m.HeadLSN)
}

func (d *decoder) welcome() *Welcome {
	m := new(Welcome)
	m.LogID = d.string()
	m.Resync = d.bool()
	m.HeadLSN = d.uvarint()
	return m
}
