package protocol

import "encoding/binary"

// Error codes.
const (
	ErrBadFrame      = "bad_frame"       // malformed frame; fatal
	ErrFrameTooLarge = "frame_too_large" // fatal
	ErrUnauthorized  = "unauthorized"    // bad, missing or expired token; fatal
	ErrVersion       = "unsupported_version"
	ErrBadShape      = "bad_shape"     // invalid where clause, unknown column, ...
	ErrUnknownTable  = "unknown_table" // not electrified
	ErrResync        = "resync"        // position fell out of the retained window; reconnect
	ErrInternal      = "internal"
	ErrTooSlow       = "too_slow"          // the client fell too far behind; reconnect
	ErrPermission    = "permission_denied" // the user's role may not read a table of the shape
)

// Error reports a failure. ReqID is 0 when it answers no request. Fatal
// errors are followed by the service closing the connection.
type Error struct {
	ReqID   uint32
	Code    string
	Message string
	Fatal   bool
}

// Encode appends the Error frame to dst.
func (m *Error) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeError))
	dst = binary.AppendUvarint(dst, uint64(m.ReqID))
	dst = appendString(dst, m.Code)
	dst = appendString(dst, m.Message)
	return appendBool(dst, m.Fatal)
}

func (d *decoder) errorMsg() *Error {
	m := new(Error)
	m.ReqID = d.u32()
	m.Code = d.string()
	m.Message = d.string()
	m.Fatal = d.bool()
	return m
}

// Error implements the error interface, so that a client can return a
// received Error as is: "lattice: code: message".
func (m *Error) Error() string {
	if m.Message == "" {
		return "lattice: " + m.Code
	}
	return "lattice: " + m.Code + ": " + m.Message
}
