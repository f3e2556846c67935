package protocol

import (
	"encoding/binary"
	"fmt"
)

// Shape is one shape request: a table and an optional where clause with
// $1..$n parameters. A nil entry in Params is SQL NULL; other params are text
// that Postgres (and the service) coerce to the compared column's type.
type Shape struct {
	ID     string // client-chosen, unique per client
	Table  string // "items" or "schema.items"
	Where  string
	Params []*string
	// Include lists related tables to sync with the shape's rows.
	Include []Include
}

// Include is one relation of a shape: the rows of Table related to the
// rows of the enclosing level by a foreign key (in either direction),
// filtered by an optional Where with its own Params, with further levels
// in Include. Via names the foreign key column when more than one foreign
// key relates the two tables.
type Include struct {
	Table   string
	Via     string
	Where   string
	Params  []*string
	Include []Include
}

// MaxIncludeDepth bounds the nesting of includes in a Subscribe frame.
const MaxIncludeDepth = 16

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
		dst = appendParams(dst, s.Params)
	}
	// Includes travel in a trailer, one list per shape, present only when
	// some shape has includes: frames without includes keep the encoding
	// of the first release.
	has := false
	for i := range m.Shapes {
		has = has || len(m.Shapes[i].Include) > 0
	}
	if has {
		for i := range m.Shapes {
			dst = appendIncludes(dst, m.Shapes[i].Include)
		}
	}
	return dst
}

func appendParams(dst []byte, params []*string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(params)))
	for _, p := range params {
		if p == nil {
			dst = append(dst, 0)
		} else {
			dst = append(dst, 1)
			dst = appendString(dst, *p)
		}
	}
	return dst
}

func appendIncludes(dst []byte, incs []Include) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(incs)))
	for i := range incs {
		in := &incs[i]
		dst = appendString(dst, in.Table)
		dst = appendString(dst, in.Via)
		dst = appendString(dst, in.Where)
		dst = appendParams(dst, in.Params)
		dst = appendIncludes(dst, in.Include)
	}
	return dst
}

// Smallest encodings, for count checks.
const (
	minShape   = 4 // ID, Table, Where lengths and a param count
	minParam   = 1 // a NULL
	minInclude = 5 // Table, Via, Where lengths, a param count, an include count
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
		s.Params = d.params()
	}
	if d.err == nil && d.remaining() > 0 {
		pos := d.off
		has := false
		for i := range m.Shapes {
			m.Shapes[i].Include = d.includes(1)
			has = has || len(m.Shapes[i].Include) > 0
		}
		if !has {
			d.failAt(pos, "include trailer without includes")
		}
	}
	return m
}

func (d *decoder) params() []*string {
	var ps []*string
	if n := d.count(minParam); n > 0 {
		ps = make([]*string, n)
	}
	for j := range ps {
		if d.bool() {
			p := d.string()
			ps[j] = &p
		}
	}
	return ps
}

func (d *decoder) includes(depth int) []Include {
	pos := d.off
	n := d.count(minInclude)
	if n == 0 {
		return nil
	}
	if depth > MaxIncludeDepth {
		d.failAt(pos, fmt.Sprintf("includes nested deeper than %d", MaxIncludeDepth))
		return nil
	}
	incs := make([]Include, n)
	for i := range incs {
		in := &incs[i]
		in.Table = d.string()
		in.Via = d.string()
		in.Where = d.string()
		in.Params = d.params()
		in.Include = d.includes(depth + 1)
	}
	return incs
}
