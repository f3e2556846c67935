package coltype

import (
	"bytes"
	"math"
	"strconv"
)

// SessionParams are the Postgres session settings under which FromPGText
// reads text output. The service applies them to every connection (as
// startup runtime parameters); values printed under other settings are not
// understood (FromPGText reports an error where it can tell, e.g. a
// timestamptz offset other than +00).
var SessionParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"TimeZone":           "UTC",
	"IntervalStyle":      "iso_8601",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
	"client_encoding":    "UTF8",
}

var baseNames = [...]string{
	Unsupported: "unsupported",
	Int2:        "smallint",
	Int4:        "integer",
	Int8:        "bigint",
	Float4:      "real",
	Float8:      "double precision",
	Numeric:     "numeric",
	Bool:        "boolean",
	TextType:    "text",
	UUID:        "uuid",
	Date:        "date",
	Time:        "time without time zone",
	Timestamp:   "timestamp without time zone",
	Timestamptz: "timestamp with time zone",
	Interval:    "interval",
	JSON:        "json",
	JSONB:       "jsonb",
	Bytea:       "bytea",
	Enum:        "enum",
}

// String returns the Postgres name of the base type (as format_type prints
// it), "enum" for Enum and "unsupported" for Unsupported.
func (b Base) String() string {
	if int(b) < len(baseNames) {
		return baseNames[b]
	}
	return "Base(" + strconv.Itoa(int(b)) + ")"
}

// String returns t.Name, or when it is empty the name of the base type
// followed by "[]" for arrays.
func (t Type) String() string {
	if t.Name != "" {
		return t.Name
	}
	if t.Array {
		return t.Base.String() + "[]"
	}
	return t.Base.String()
}

// SQLiteDecl returns the declared type to use for a column of type t in
// CREATE TABLE. It is chosen so that SQLite's type affinity never changes a
// stored Value:
//
//   - smallint, integer, bigint, boolean: "INTEGER"
//   - real, double precision: "BLOB" (no affinity). REAL affinity would
//     store -0.0 as the integer 0 and read it back as +0.0.
//   - bytea: "BLOB"
//   - everything else, arrays included: "TEXT" (NUMERIC or REAL affinity
//     would turn numeric strings such as "1.50" into numbers).
//
// Unsupported types get "BLOB", which stores any value unchanged.
func (t Type) SQLiteDecl() string {
	if t.Array {
		return "TEXT"
	}
	switch t.Base {
	case Int2, Int4, Int8, Bool:
		return "INTEGER"
	case Float4, Float8, Bytea, Unsupported:
		return "BLOB"
	case Numeric, TextType, UUID, Date, Time, Timestamp, Timestamptz, Interval, JSON, JSONB, Enum:
		return "TEXT"
	}
	return "BLOB"
}

// Equal reports whether v and w are the same value: same Kind and, for that
// Kind, the same integer, the same float bits (so -0 differs from 0) or the
// same bytes (nil and empty are equal). Fields that do not belong to the
// Kind are ignored.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind {
		return false
	}
	switch v.Kind {
	case Integer:
		return v.I == w.I
	case Real:
		return math.Float64bits(v.F) == math.Float64bits(w.F)
	case Text, Blob:
		return bytes.Equal(v.B, w.B)
	}
	return true
}

// BaseByName returns the Base whose String is name.
func BaseByName(name string) (Base, bool) {
	for b, n := range baseNames {
		if n == name {
			return Base(b), true
		}
	}
	return Unsupported, false
}

// BuiltinByOID returns the Type of a built-in Postgres type OID, for the
// supported scalar types and their array types. Name is the type's plain
// Postgres name as format_type(oid, NULL) prints it, e.g. "integer",
// "character varying", "text[]". Enums are not built in: the service looks
// them up in the catalog and uses Type{Base: Enum, Name: qualified name}.
func BuiltinByOID(oid uint32) (Type, bool) {
	switch oid {
	case 21:
		return Type{Base: Int2, Name: "smallint"}, true
	case 23:
		return Type{Base: Int4, Name: "integer"}, true
	case 20:
		return Type{Base: Int8, Name: "bigint"}, true
	case 700:
		return Type{Base: Float4, Name: "real"}, true
	case 701:
		return Type{Base: Float8, Name: "double precision"}, true
	case 1700:
		return Type{Base: Numeric, Name: "numeric"}, true
	case 16:
		return Type{Base: Bool, Name: "boolean"}, true
	case 25:
		return Type{Base: TextType, Name: "text"}, true
	case 1043:
		return Type{Base: TextType, Name: "character varying"}, true
	case 1042:
		return Type{Base: TextType, Name: "character"}, true
	case 19:
		return Type{Base: TextType, Name: "name"}, true
	case 2950:
		return Type{Base: UUID, Name: "uuid"}, true
	case 1082:
		return Type{Base: Date, Name: "date"}, true
	case 1083:
		return Type{Base: Time, Name: "time without time zone"}, true
	case 1114:
		return Type{Base: Timestamp, Name: "timestamp without time zone"}, true
	case 1184:
		return Type{Base: Timestamptz, Name: "timestamp with time zone"}, true
	case 1186:
		return Type{Base: Interval, Name: "interval"}, true
	case 114:
		return Type{Base: JSON, Name: "json"}, true
	case 3802:
		return Type{Base: JSONB, Name: "jsonb"}, true
	case 17:
		return Type{Base: Bytea, Name: "bytea"}, true

	case 1005:
		return Type{Base: Int2, Array: true, Name: "smallint[]"}, true
	case 1007:
		return Type{Base: Int4, Array: true, Name: "integer[]"}, true
	case 1016:
		return Type{Base: Int8, Array: true, Name: "bigint[]"}, true
	case 1021:
		return Type{Base: Float4, Array: true, Name: "real[]"}, true
	case 1022:
		return Type{Base: Float8, Array: true, Name: "double precision[]"}, true
	case 1231:
		return Type{Base: Numeric, Array: true, Name: "numeric[]"}, true
	case 1000:
		return Type{Base: Bool, Array: true, Name: "boolean[]"}, true
	case 1009:
		return Type{Base: TextType, Array: true, Name: "text[]"}, true
	case 1015:
		return Type{Base: TextType, Array: true, Name: "character varying[]"}, true
	case 1014:
		return Type{Base: TextType, Array: true, Name: "character[]"}, true
	case 1003:
		return Type{Base: TextType, Array: true, Name: "name[]"}, true
	case 2951:
		return Type{Base: UUID, Array: true, Name: "uuid[]"}, true
	case 1182:
		return Type{Base: Date, Array: true, Name: "date[]"}, true
	case 1183:
		return Type{Base: Time, Array: true, Name: "time without time zone[]"}, true
	case 1115:
		return Type{Base: Timestamp, Array: true, Name: "timestamp without time zone[]"}, true
	case 1185:
		return Type{Base: Timestamptz, Array: true, Name: "timestamp with time zone[]"}, true
	case 1187:
		return Type{Base: Interval, Array: true, Name: "interval[]"}, true
	case 199:
		return Type{Base: JSON, Array: true, Name: "json[]"}, true
	case 3807:
		return Type{Base: JSONB, Array: true, Name: "jsonb[]"}, true
	case 1001:
		return Type{Base: Bytea, Array: true, Name: "bytea[]"}, true
	}
	return Type{}, false
}
