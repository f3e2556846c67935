// Package protocol defines the Lattice wire protocol, version 1: the messages
// exchanged between a client and `lattice serve` over WebSocket, and their
// binary codec. The format is specified in PROTOCOL.md.
//
// Each message is one binary WebSocket frame: a one-byte message type
// followed by the message body. Encoders append to a caller's buffer;
// decoders never panic and refuse frames over the limits below.
//
// The package is pure Go with no I/O; it builds for GOOS=js.
package protocol

import "errors"

// Version is the protocol version spoken by this package. It appears in the
// WebSocket URL path (/v1/sync) and in Hello.
//
// Bump it whenever the wire format changes; the golden test in this package
// (testdata/golden) fails on any change to the encoding.
const Version = 3

// MinVersion is the oldest version a service of this package serves.
// Version 2 differs from 1 only by the Relation's ColumnIDs trailer, which
// a service sends to clients that said Hello.Version >= 2; version 3 from
// 2 only by the Relation's JSONMerge trailer (Column.JSONMerge), sent to
// clients that said Hello.Version >= 3.
const MinVersion = 1

// Path is the HTTP path of the protocol's WebSocket endpoint.
const Path = "/v1/sync"

// Frame size limits. A peer that receives a larger frame closes the
// connection with a "frame_too_large" error.
const (
	MaxUpFrame   = 1 << 20 // client -> service
	MaxDownFrame = 4 << 20 // service -> client
	// TargetDownFrame is the size at which the service starts a new Txn chunk.
	TargetDownFrame = 256 << 10
)

// Decoding errors. Every error returned by DecodeUp, DecodeDown and
// DecodeValue wraps exactly one of these; test with errors.Is.
var (
	// ErrMalformed reports a frame that does not follow the wire format:
	// truncated, trailing bytes, unknown message type, bad varint, unknown
	// enumeration value, and so on. A service answers it with ErrBadFrame.
	ErrMalformed = errors.New("protocol: malformed frame")
	// ErrTooLarge reports a frame over MaxUpFrame or MaxDownFrame. A service
	// answers it with ErrFrameTooLarge.
	ErrTooLarge = errors.New("protocol: frame too large")
)

// Type is the one-byte message type at the start of every frame.
type Type uint8

// Up messages (client -> service).
const (
	TypeHello       Type = 0x01
	TypeSubscribe   Type = 0x02
	TypeUnsubscribe Type = 0x03
	TypeWrite       Type = 0x04
)

// Down messages (service -> client).
const (
	TypeWelcome    Type = 0x81
	TypeRelation   Type = 0x82
	TypeTxn        Type = 0x83
	TypeSubscribed Type = 0x84
	TypeError      Type = 0x85
	TypeAck        Type = 0x86
	TypeReject     Type = 0x87
)

// String returns the message name, e.g. "Hello", or "Type(0x42)".
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "Hello"
	case TypeSubscribe:
		return "Subscribe"
	case TypeUnsubscribe:
		return "Unsubscribe"
	case TypeWelcome:
		return "Welcome"
	case TypeRelation:
		return "Relation"
	case TypeTxn:
		return "Txn"
	case TypeSubscribed:
		return "Subscribed"
	case TypeError:
		return "Error"
	case TypeWrite:
		return "Write"
	case TypeAck:
		return "Ack"
	case TypeReject:
		return "Reject"
	}
	const hex = "0123456789abcdef"
	return "Type(0x" + string([]byte{hex[t>>4], hex[t&15]}) + ")"
}

// Up is a message sent by a client.
type Up interface {
	upMessage()
	// Encode appends the message's frame (type byte and body) to dst.
	Encode(dst []byte) []byte
}

// Down is a message sent by the service.
type Down interface {
	downMessage()
	// Encode appends the message's frame (type byte and body) to dst.
	Encode(dst []byte) []byte
}

func (*Hello) upMessage()       {}
func (*Subscribe) upMessage()   {}
func (*Unsubscribe) upMessage() {}
func (*Write) upMessage()       {}

func (*Welcome) downMessage()    {}
func (*Relation) downMessage()   {}
func (*Txn) downMessage()        {}
func (*Subscribed) downMessage() {}
func (*Error) downMessage()      {}
func (*Ack) downMessage()        {}
func (*Reject) downMessage()     {}
