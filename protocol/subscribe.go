package protocol

import "encoding/binary"

// Shape is one shape request: a table and an optional where clause with
// $1..$n parameters. A nil entry in Params is SQL NULL; other params are text
// that Postgres (and the service) coerce to the compared column's type.
type Shape struct {
	ID     string // client-chosen, unique per client
	Table  string // "items" or "schema.items"
	Where  string
	Params []*string
}

// Subscribe asks for shapes. With Resume set the client already holds the
// shapes' rows as of the LSN in its Hello, and no snapshot is sent.
type Subscribe struct {
	ReqID  uint32
	Resume bool
	Shapes []Shape
}

// Encode appends the Subscribe frame to dst.
func (m *Subscribe) Encode(dst []byte) []byte {
	dst = append(dst, byte(TypeSubscribe))
	dst = binary.AppendUvarint(dst, uint64(m.ReqID))
	dst = appendBool(dst, m.Resume)
	dst = binary.AppendUvarint(dst, uint64(len(m.Shapes)))
	for i := range m.Shapes {
		s := &m.Shapes[i]
		dst = appendString(dst, s.ID)
		dst = appendString(dst, s.Table)
		dst = appendString(dst, s.Where)
		dst = binary.AppendUvarint(dst, uint64(len(s.Params)))
		for _, p := range s.Params {
			if p == nil {
				dst = append(dst, 0)
			} else {
				dst = append(dst, 1)
				dst = appendString(dst, *p)
			}
		}
	}
	return dst
}

// Smallest encodings, for count checks.
const (
	minShape = 4 // ID, Table, Where lengths and a param count
	minParam = 1 // a NULL
)

func (d *decoder) subscribe() *Subscribe {
	m := new(Subscribe)
	m.ReqID = d.u32()
	m.Resume = d.bool()
	if n := d.count(minShape); n > 0 {
		m.Shapes = make([]Shape, n)
	}
	for i := range m.Shapes {
		s := &m.Shapes[i]
		s.ID = d.string()
		s.Table = d.string()
		s.Where = d.string()
		if n := d.count(minParam); n > 0 {
			s.Params = make([]*string, n)
		}
		for j := range s.Params {
			if d.bool() {
				p := d.string()
				s.Params[j] = &p
			}
		}
	}
	return m
}
