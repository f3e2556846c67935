// Package coltype maps Postgres column types to their SQLite representation
// and converts values between the two, exactly.
//
// Values travel from the service to clients already in their SQLite form
// (see Value), so every client stores the same bytes. The mapping for each
// supported type is documented in README.md next to this file.
//
// The package is pure Go with no I/O; it builds for GOOS=js.
package coltype

// Kind is the SQLite storage class of a Value.
type Kind uint8

// Storage classes, numbered as on the wire (protocol v1).
const (
	Null    Kind = 0
	Integer Kind = 1
	Real    Kind = 2
	Text    Kind = 3
	Blob    Kind = 4
)

// Value is one column value in its SQLite representation.
// For Integer, I holds the value; for Real, F; for Text and Blob, B
// (Text is UTF-8). A Value never aliases a buffer it was decoded from.
type Value struct {
	Kind Kind
	I    int64
	F    float64
	B    []byte
}

// Base is the element type of a column, independent of arrays and typmods.
type Base uint8

// Supported base types, numbered as on the wire (protocol v1). Never renumber.
const (
	Unsupported Base = 0
	Int2        Base = 1
	Int4        Base = 2
	Int8        Base = 3
	Float4      Base = 4
	Float8      Base = 5
	Numeric     Base = 6
	Bool        Base = 7
	TextType    Base = 8 // text, varchar(n), char(n), name
	UUID        Base = 9
	Date        Base = 10
	Time        Base = 11
	Timestamp   Base = 12
	Timestamptz Base = 13
	Interval    Base = 14
	JSON        Base = 15
	JSONB       Base = 16
	Bytea       Base = 17
	Enum        Base = 18
)

// Type describes a Postgres column type.
type Type struct {
	Base  Base
	Array bool   // a one-dimensional array of Base
	Name  string // Postgres spelling from format_type(), e.g. "numeric(10,2)", "text[]", "public.mood"
}
