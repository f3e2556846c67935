package where

import (
	"strings"

	"github.com/latticesync/lattice/coltype"
)

// tkind is the Postgres type of an expression, as far as shape filters care.
type tkind uint8

const (
	tUnknown tkind = iota // an untyped string literal, NULL, or an untyped parameter
	tInt2
	tInt4
	tInt8
	tNumeric
	tFloat4
	tFloat8
	tBool
	tText
	tVarchar
	tBpchar
	tName
	tUUID
	tDate
	tTime
	tTimestamp
	tTimestamptz
	tInterval
	tJSON
	tJSONB
	tBytea
	tEnum
	tArray
	tUnsupported
)

// ptype is a resolved type. For enums and arrays, name is the column type's
// Postgres spelling (format_type), which identifies the type.
type ptype struct {
	k    tkind
	name string
}

func (t ptype) same(u ptype) bool {
	if t.k != u.k {
		return false
	}
	if t.k == tEnum || t.k == tArray || t.k == tUnsupported {
		return t.name == u.name
	}
	return true
}

var kindNames = [...]string{
	tUnknown:     "unknown",
	tInt2:        "smallint",
	tInt4:        "integer",
	tInt8:        "bigint",
	tNumeric:     "numeric",
	tFloat4:      "real",
	tFloat8:      "double precision",
	tBool:        "boolean",
	tText:        "text",
	tVarchar:     "character varying",
	tBpchar:      "bpchar",
	tName:        "name",
	tUUID:        "uuid",
	tDate:        "date",
	tTime:        "time without time zone",
	tTimestamp:   "timestamp without time zone",
	tTimestamptz: "timestamp with time zone",
	tInterval:    "interval",
	tJSON:        "json",
	tJSONB:       "jsonb",
	tBytea:       "bytea",
}

// String is the type's name in messages.
func (t ptype) String() string {
	switch t.k {
	case tEnum, tArray, tUnsupported:
		return t.name
	case tBpchar:
		return "character"
	}
	return kindNames[t.k]
}

// castName is the type's spelling in a cast (SELECT $1::text::<castName>):
// no typmod, and bpchar rather than "character", which means char(1).
func (t ptype) castName() string {
	switch t.k {
	case tEnum, tArray, tUnsupported:
		return t.name
	}
	return kindNames[t.k]
}

var kindBase = [...]coltype.Base{
	tInt2: coltype.Int2, tInt4: coltype.Int4, tInt8: coltype.Int8, tNumeric: coltype.Numeric,
	tFloat4: coltype.Float4, tFloat8: coltype.Float8, tBool: coltype.Bool, tText: coltype.TextType,
	tVarchar: coltype.TextType, tBpchar: coltype.TextType, tName: coltype.TextType, tUUID: coltype.UUID,
	tDate: coltype.Date, tTime: coltype.Time, tTimestamp: coltype.Timestamp, tTimestamptz: coltype.Timestamptz,
	tInterval: coltype.Interval, tJSON: coltype.JSON, tJSONB: coltype.JSONB, tBytea: coltype.Bytea,
	tEnum: coltype.Enum, tArray: coltype.Unsupported, tUnsupported: coltype.Unsupported,
}

// coltype returns the coltype.Type of a literal of type t; mod, if not
// empty, is the full spelling including a type modifier.
func (t ptype) coltype(mod string) coltype.Type {
	name := t.castName()
	if mod != "" {
		name = mod
	}
	return coltype.Type{Base: kindBase[t.k], Name: name}
}

// typeOfColumn maps a column's coltype.Type to a ptype.
func typeOfColumn(t coltype.Type) ptype {
	if t.Array {
		return ptype{k: tArray, name: t.Name}
	}
	switch t.Base {
	case coltype.Int2:
		return ptype{k: tInt2}
	case coltype.Int4:
		return ptype{k: tInt4}
	case coltype.Int8:
		return ptype{k: tInt8}
	case coltype.Float4:
		return ptype{k: tFloat4}
	case coltype.Float8:
		return ptype{k: tFloat8}
	case coltype.Numeric:
		return ptype{k: tNumeric}
	case coltype.Bool:
		return ptype{k: tBool}
	case coltype.TextType:
		n := strings.ToLower(t.Name)
		switch {
		case n == "text":
			return ptype{k: tText}
		case n == "name":
			return ptype{k: tName}
		case n == "character varying" || n == "varchar" || strings.HasPrefix(n, "character varying(") || strings.HasPrefix(n, "varchar("):
			return ptype{k: tVarchar}
		case n == "character" || n == "bpchar" || n == "char" || strings.HasPrefix(n, "character(") || strings.HasPrefix(n, "char(") || strings.HasPrefix(n, "bpchar("):
			return ptype{k: tBpchar}
		}
	case coltype.UUID:
		return ptype{k: tUUID}
	case coltype.Date:
		return ptype{k: tDate}
	case coltype.Time:
		if !strings.Contains(t.Name, "with time zone") {
			return ptype{k: tTime}
		}
	case coltype.Timestamp:
		return ptype{k: tTimestamp}
	case coltype.Timestamptz:
		return ptype{k: tTimestamptz}
	case coltype.Interval:
		return ptype{k: tInterval}
	case coltype.JSON:
		return ptype{k: tJSON}
	case coltype.JSONB:
		return ptype{k: tJSONB}
	case coltype.Bytea:
		return ptype{k: tBytea}
	case coltype.Enum:
		return ptype{k: tEnum, name: t.Name}
	}
	return ptype{k: tUnsupported, name: t.Name}
}

func isInt(k tkind) bool    { return k == tInt2 || k == tInt4 || k == tInt8 }
func isFloat(k tkind) bool  { return k == tFloat4 || k == tFloat8 }
func isNumber(k tkind) bool { return isInt(k) || isFloat(k) || k == tNumeric }
func isString(k tkind) bool { return k == tText || k == tVarchar || k == tBpchar || k == tName }
func isDateTime(k tkind) bool {
	return k == tDate || k == tTimestamp || k == tTimestamptz
}

// category and preferred mirror pg_type.typcategory and typispreferred.
func category(t ptype) byte {
	switch {
	case isNumber(t.k):
		return 'N'
	case isString(t.k):
		return 'S'
	case t.k == tBool:
		return 'B'
	case isDateTime(t.k) || t.k == tTime:
		return 'D'
	case t.k == tInterval:
		return 'T'
	case t.k == tEnum:
		return 'E'
	case t.k == tArray:
		return 'A'
	case t.k == tUnknown:
		return 'X'
	}
	return 'U'
}

func preferred(t ptype) bool {
	switch t.k {
	case tFloat8, tText, tBool, tTimestamptz, tInterval:
		return true
	}
	return false
}

// implicitCast reports whether Postgres has an implicit cast (pg_cast
// castcontext 'i', or binary coercibility) from a to b.
func implicitCast(a, b ptype) bool {
	if a.same(b) || a.k == tUnknown {
		return true
	}
	switch a.k {
	case tInt2:
		return b.k == tInt4 || b.k == tInt8 || b.k == tNumeric || isFloat(b.k)
	case tInt4:
		return b.k == tInt8 || b.k == tNumeric || isFloat(b.k)
	case tInt8:
		return b.k == tNumeric || isFloat(b.k)
	case tNumeric:
		return isFloat(b.k)
	case tFloat4:
		return b.k == tFloat8
	case tText:
		return b.k == tVarchar || b.k == tBpchar || b.k == tName
	case tVarchar:
		return b.k == tText || b.k == tBpchar || b.k == tName
	case tBpchar:
		return b.k == tText || b.k == tVarchar || b.k == tName
	case tName:
		return b.k == tText
	case tDate:
		return b.k == tTimestamp || b.k == tTimestamptz
	case tTimestamp:
		return b.k == tTimestamptz
	case tTime:
		return b.k == tInterval
	}
	return false
}

// selectCommonType is Postgres's select_common_type with a NULL context: ok
// is false when there is no common type.
func selectCommonType(types []ptype) (ptype, bool) {
	allSame := true
	for _, t := range types[1:] {
		if !t.same(types[0]) {
			allSame = false
			break
		}
	}
	if allSame {
		if types[0].k == tUnknown {
			return ptype{k: tText}, true
		}
		return types[0], true
	}
	p := types[0]
	for _, n := range types[1:] {
		if n.k == tUnknown || n.same(p) {
			continue
		}
		if p.k == tUnknown {
			p = n
			continue
		}
		if category(n) != category(p) {
			return ptype{}, false
		}
		if !preferred(p) && implicitCast(p, n) && !implicitCast(n, p) {
			p = n
		}
	}
	if p.k == tUnknown {
		p = ptype{k: tText}
	}
	return p, true
}

// cmpOperands resolves a comparison operator (= <> < <= > >=) on operand
// types l and r the way Postgres's operator resolution does for the types
// supported here: it returns the operator's input types. ok is false when
// Postgres has no such operator.
func cmpOperands(l, r ptype) (il, ir ptype, ok bool) {
	if l.k == tUnknown && r.k == tUnknown {
		return ptype{k: tText}, ptype{k: tText}, true
	}
	if l.k == tUnknown {
		l = unknownPeer(r)
		if l.k == tJSON || l.k == tArray || l.k == tUnsupported {
			return l, r, false
		}
		if r.k == tVarchar {
			r = l
		}
		return l, r, true
	}
	if r.k == tUnknown {
		r = unknownPeer(l)
		if r.k == tJSON || r.k == tArray || r.k == tUnsupported {
			return l, r, false
		}
		if l.k == tVarchar {
			l = r
		}
		return l, r, true
	}
	switch {
	case isInt(l.k) && isInt(r.k):
		return l, r, true
	case isNumber(l.k) && isNumber(r.k):
		if isFloat(l.k) || isFloat(r.k) {
			if !isFloat(l.k) {
				l = ptype{k: tFloat8}
			}
			if !isFloat(r.k) {
				r = ptype{k: tFloat8}
			}
			return l, r, true
		}
		return ptype{k: tNumeric}, ptype{k: tNumeric}, true
	case isString(l.k) && isString(r.k):
		if l.k == tBpchar && (r.k == tBpchar || r.k == tVarchar) || r.k == tBpchar && l.k == tVarchar {
			return ptype{k: tBpchar}, ptype{k: tBpchar}, true
		}
		return textish(l), textish(r), true
	case isDateTime(l.k) && isDateTime(r.k):
		return l, r, true
	case l.k == tTime && r.k == tInterval || l.k == tInterval && r.k == tTime:
		return ptype{k: tInterval}, ptype{k: tInterval}, true
	case l.same(r):
		switch l.k {
		case tJSON, tArray, tUnsupported:
			return l, r, false
		}
		return l, r, true
	}
	return l, r, false
}

// unknownPeer is the type an unknown literal takes when compared with t.
func unknownPeer(t ptype) ptype {
	if t.k == tVarchar {
		return ptype{k: tText}
	}
	return t
}

// textish maps the string types other than bpchar to the type their
// comparison operators take: text, or name (name has its own operators and
// name-vs-text ones, all byte-wise under the C collation).
func textish(t ptype) ptype {
	if t.k == tName {
		return t
	}
	return ptype{k: tText}
}

// domain is the representation in which a resolved comparison compares its
// two sides.
type domain uint8

const (
	dInt      domain = iota // i (integers, bool, date, timestamp, time)
	dNumeric                // exact decimal: i when k==repInt, else decimal text b
	dFloat                  // f, Postgres float ordering (NaN largest, NaN = NaN)
	dBytes                  // b, memcmp then length
	dBpchar                 // b without trailing spaces
	dInterval               // (i, j) normalized span
	dJSONB                  // b, jsonb equality only
	dEnum                   // b (label), equality only
)

// domainOf returns the comparison domain of an operator taking il and ir,
// and the type both sides are converted to before comparing.
func domainOf(il, ir ptype) (domain, ptype) {
	switch {
	case isInt(il.k) && isInt(ir.k):
		return dInt, ptype{k: tInt8}
	case il.k == tNumeric:
		return dNumeric, il
	case isFloat(il.k):
		if il.k == tFloat4 && ir.k == tFloat4 {
			return dFloat, il
		}
		return dFloat, ptype{k: tFloat8}
	case il.k == tBpchar && ir.k == tBpchar:
		return dBpchar, il
	case isString(il.k):
		return dBytes, ptype{k: tText}
	case isDateTime(il.k):
		if il.k == tDate && ir.k == tDate {
			return dInt, il
		}
		return dInt, ptype{k: tTimestamp}
	case il.k == tBool || il.k == tTime:
		return dInt, il
	case il.k == tInterval:
		return dInterval, il
	case il.k == tJSONB:
		return dJSONB, il
	case il.k == tEnum:
		return dEnum, il
	}
	return dBytes, il // uuid, bytea
}
