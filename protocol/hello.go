package protocol

import (
	"encoding/binary"
	"math"
)

// Hello is the first message of every connection.
type Hello struct {
	Version  uint16 // protocol version, = Version
	Token    string // JWT (HS256); empty when the service runs --insecure
	ClientID string // stable id of the client replica (random, persisted)
	LogID    string // id of the service log the client's position refers to; "" when new
	LSN      uint64 // last commit LSN the client has applied durably; 0 when new
}

// Encode appends the Hello frame to dst.
func (m *Hello) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeHello))
	dst = binary.AppendUvarint(dst, uint64(m.Version))
	dst = appendString(dst, m.Token)
	dst = appendString(dst, m.ClientID)
	dst = appendString(dst, m.LogID)
	return binary.AppendUvarint(dst, m.LSN)
}

func (d *decoder) hello() *Hello {
	m := new(Hello)
	v := d.uvarint()
	if v > math.MaxUint16 {
		d.failAt(1, "version exceeds 16 bits")
	}
	m.Version = uint16(v)
	m.Token = d.string()
	m.ClientID = d.string()
	m.LogID = d.string()
	m.LSN = d.uvarint()
	return m
}
