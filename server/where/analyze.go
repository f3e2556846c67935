package where

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/latticesync/lattice/protocol"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ir is the analysed, typed expression, Postgres's transformExpr output in
// miniature. Casts are explicit nodes.
type ir struct {
	op    irOp
	typ   ptype
	col   int    // irCol
	lit   int    // irLit: index into analyzer.lits
	args  []*ir  // operands
	cmp   cmpOp  // irCmp
	dom   domain // irCmp, irIn, irDistinct
	neg   bool   // irIn: NOT IN; irNullTest: IS NOT NULL; irDistinct: IS NOT DISTINCT; irLike: NOT LIKE
	fold  bool   // irLike: ILIKE
	btest pg_query.BoolTestType
	arith byte  // irArith: '+', '-' or '*'
	from  ptype // irCast: source type (args[0].typ)
	pos   int   // byte offset in the expression, for messages
}

type irOp uint8

const (
	irCol irOp = iota
	irLit
	irCast
	irCmp
	irIn
	irAnd
	irOr
	irNot
	irNullTest
	irBoolTest
	irDistinct
	irLike
	irNeg   // unary minus on a number
	irArith // args[0] <arith> args[1] on integers
	irLower
	irUpper
	irCoalesce
)

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

var cmpOps = map[string]cmpOp{"=": opEq, "<>": opNe, "!=": opNe, "<": opLt, "<=": opLe, ">": opGt, ">=": opGe}

func (o cmpOp) test(c int) bool {
	switch o {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	}
	return c >= 0
}

func (o cmpOp) String() string {
	return [...]string{"=", "<>", "<", "<=", ">", ">="}[o]
}

// litKind is where a literal came from.
type litKind uint8

const (
	litString litKind = iota // 'text' or NULL: type unknown until coerced
	litNumber                // integer or numeric constant
	litBool                  // TRUE / FALSE
	litParam
)

type litSlot struct {
	kind  litKind
	param int
	text  *string
	typ   ptype
	mod   string // explicit cast type with typmod, e.g. numeric(10,2)
	pos   int    // 1-based character position
	loc   int32  // location in the parsed string
}

type analyzer struct {
	src           string
	schema, table string
	cols          []protocol.Column
	colTypes      []ptype
	nparams       int
	paramTypes    []ptype
	lits          []litSlot
	depth         int
}

type failure struct{ err *Error }

func (a *analyzer) fail(loc int32, format string, args ...any) {
	off := int(loc) - len(prefix)
	if loc < 0 || off < 0 {
		off = -1
	}
	panic(failure{errAt(a.src, off, format, args...)})
}

func (a *analyzer) run(n *pg_query.Node) (root *ir, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failure)
			if !ok {
				panic(r)
			}
			root, err = nil, f.err
		}
	}()
	root = a.expr(n)
	a.coerceToBool(root, "WHERE")
	a.compactLits(root)
	for i := range a.lits {
		l := &a.lits[i]
		if l.typ.k == tUnknown {
			if l.kind == litParam {
				a.fail(l.loc, "could not determine the type of parameter $%d; add a cast, e.g. $%d::text", l.param, l.param)
			}
			l.typ = ptype{k: tText}
		}
	}
	used := make([]bool, a.nparams)
	for _, l := range a.lits {
		if l.kind == litParam {
			used[l.param-1] = true
		}
	}
	for i, u := range used {
		if !u {
			// Postgres would fail the snapshot query: it cannot type the
			// parameter, or gets more values than the query has.
			a.fail(-1, "parameter $%d is not used in the where clause", i+1)
		}
	}
	return root, nil
}

// compactLits drops the literal slots that the final expression does not
// use (the left operand of an IN list that was expanded into comparisons
// with copies of it) and renumbers the rest in the order they appear in the
// expression.
func (a *analyzer) compactLits(root *ir) {
	var lits []litSlot
	var walk func(x *ir)
	walk = func(x *ir) {
		if x.op == irLit {
			lits = append(lits, a.lits[x.lit])
			x.lit = len(lits) - 1
		}
		for _, y := range x.args {
			walk(y)
		}
	}
	walk(root)
	a.lits = lits
}

func (a *analyzer) pos(loc int32) int {
	off := int(loc) - len(prefix)
	if off < 0 || off > len(a.src) {
		return 0
	}
	return utf8.RuneCountInString(a.src[:off]) + 1
}

func (a *analyzer) expr(n *pg_query.Node) *ir {
	a.depth++
	defer func() { a.depth-- }()
	if a.depth > maxDepth {
		a.fail(-1, "the where clause is nested too deeply")
	}
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		return a.columnRef(x.ColumnRef)
	case *pg_query.Node_AConst:
		return a.constant(x.AConst)
	case *pg_query.Node_ParamRef:
		return a.paramRef(x.ParamRef)
	case *pg_query.Node_TypeCast:
		return a.typeCast(x.TypeCast)
	case *pg_query.Node_AExpr:
		return a.aExpr(x.AExpr)
	case *pg_query.Node_BoolExpr:
		return a.boolExpr(x.BoolExpr)
	case *pg_query.Node_NullTest:
		arg := a.expr(x.NullTest.Arg)
		return &ir{op: irNullTest, typ: ptype{k: tBool}, args: []*ir{arg}, neg: x.NullTest.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL, pos: int(x.NullTest.Location)}
	case *pg_query.Node_BooleanTest:
		arg := a.expr(x.BooleanTest.Arg)
		a.coerceToBool(arg, booleanTestName(x.BooleanTest.Booltesttype))
		return &ir{op: irBoolTest, typ: ptype{k: tBool}, args: []*ir{arg}, btest: x.BooleanTest.Booltesttype, pos: int(x.BooleanTest.Location)}
	case *pg_query.Node_FuncCall:
		return a.funcCall(x.FuncCall)
	case *pg_query.Node_SqlvalueFunction:
		a.fail(x.SqlvalueFunction.Location, "%s is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing", sqlValueFunctionName(x.SqlvalueFunction.Op))
	case *pg_query.Node_SubLink:
		a.fail(x.SubLink.Location, "subqueries are not supported in a where clause")
	case *pg_query.Node_CollateClause:
		a.fail(x.CollateClause.Location, "COLLATE is not supported; text comparisons always use the C collation (byte order)")
	case *pg_query.Node_AArrayExpr:
		a.fail(x.AArrayExpr.Location, "array constructors are not supported")
	case *pg_query.Node_RowExpr:
		a.fail(x.RowExpr.Location, "row constructors are not supported")
	case *pg_query.Node_CaseExpr:
		a.fail(x.CaseExpr.Location, "CASE is not supported")
	case *pg_query.Node_CoalesceExpr:
		return a.coalesce(x.CoalesceExpr)
	case *pg_query.Node_MinMaxExpr:
		a.fail(x.MinMaxExpr.Location, "GREATEST and LEAST are not supported")
	case *pg_query.Node_AIndirection:
		a.fail(-1, "subscripts and field selection are not supported")
	case *pg_query.Node_GroupingFunc:
		a.fail(x.GroupingFunc.Location, "GROUPING is not supported")
	case *pg_query.Node_NullIfExpr:
		a.fail(x.NullIfExpr.Location, "NULLIF is not supported")
	case *pg_query.Node_XmlExpr:
		a.fail(x.XmlExpr.Location, "XML functions are not supported")
	case *pg_query.Node_SetToDefault:
		a.fail(x.SetToDefault.Location, "DEFAULT is not allowed here")
	}
	a.fail(nodeLocation(n), "%s is not supported in a where clause", nodeDescription(n))
	return nil
}

// ---- leaves ----

func (a *analyzer) columnRef(c *pg_query.ColumnRef) *ir {
	var parts []string
	for _, f := range c.Fields {
		switch v := f.GetNode().(type) {
		case *pg_query.Node_String_:
			parts = append(parts, v.String_.Sval)
		case *pg_query.Node_AStar:
			a.fail(c.Location, "* is not supported in a where clause; name a column")
		default:
			a.fail(c.Location, "unsupported column reference")
		}
	}
	name := parts[len(parts)-1]
	if len(parts) > 1 {
		qual := parts[:len(parts)-1]
		ok := a.table != "" && qual[len(qual)-1] == a.table
		if ok && len(qual) == 2 {
			ok = qual[0] == a.schema
		}
		if len(qual) > 2 {
			ok = false
		}
		if !ok {
			if a.table == "" {
				a.fail(c.Location, "column reference %q is qualified; a shape filters a single table, write just %q", strings.Join(parts, "."), name)
			}
			a.fail(c.Location, "column reference %q refers to another table; a shape can only use columns of %q", strings.Join(parts, "."), a.table)
		}
	}
	for i, col := range a.cols {
		if col.Name == name {
			t := a.colTypes[i]
			if t.k == tUnsupported {
				a.fail(c.Location, "column %q has type %s, which shape filters do not support", name, col.Type.Name)
			}
			return &ir{op: irCol, typ: t, col: i, pos: int(c.Location) - len(prefix)}
		}
	}
	msg := fmt.Sprintf("column %q does not exist", name)
	for _, col := range a.cols {
		if strings.EqualFold(col.Name, name) {
			msg += fmt.Sprintf("; did you mean %q? (quote names that have capital letters)", col.Name)
			break
		}
	}
	if len(a.cols) <= 20 {
		names := make([]string, len(a.cols))
		for i, col := range a.cols {
			names[i] = col.Name
		}
		msg += " (columns: " + strings.Join(names, ", ") + ")"
	}
	a.fail(c.Location, "%s", msg)
	return nil
}

func (a *analyzer) newLit(l litSlot, loc int32) *ir {
	l.pos = a.pos(loc)
	l.loc = loc
	a.lits = append(a.lits, l)
	return &ir{op: irLit, typ: l.typ, lit: len(a.lits) - 1, pos: int(loc) - len(prefix)}
}

func (a *analyzer) constant(c *pg_query.A_Const) *ir {
	if c.Isnull {
		return a.newLit(litSlot{kind: litString}, c.Location)
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		s := strconv.FormatInt(int64(v.Ival.Ival), 10)
		return a.newLit(litSlot{kind: litNumber, text: &s, typ: ptype{k: tInt4}}, c.Location)
	case *pg_query.A_Const_Fval:
		s, k, ok := normalizeNumber(v.Fval.Fval)
		if !ok {
			a.fail(c.Location, "invalid numeric constant %s", v.Fval.Fval)
		}
		v.Fval.Fval = s // deparse the normalized spelling
		return a.newLit(litSlot{kind: litNumber, text: &s, typ: ptype{k: k}}, c.Location)
	case *pg_query.A_Const_Sval:
		s := v.Sval.Sval
		return a.newLit(litSlot{kind: litString, text: &s}, c.Location)
	case *pg_query.A_Const_Boolval:
		s := strconv.FormatBool(v.Boolval.Boolval)
		return a.newLit(litSlot{kind: litBool, text: &s, typ: ptype{k: tBool}}, c.Location)
	case *pg_query.A_Const_Bsval:
		a.fail(c.Location, "bit-string constants are not supported")
	}
	a.fail(c.Location, "unsupported constant")
	return nil
}

// normalizeNumber turns a numeric constant as written (1.5, 1e5,
// 3000000000, 1_000.5, 0x1FFFFFFFF) into plain decimal text and its type:
// bigint if it is an integer that fits, else numeric (as Postgres's
// make_const does).
func normalizeNumber(s string) (string, tkind, bool) {
	s = strings.ReplaceAll(s, "_", "")
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	if len(body) > 2 && body[0] == '0' && strings.ContainsRune("xXoObB", rune(body[1])) {
		n, ok := new(big.Int).SetString(body, 0)
		if !ok {
			return "", 0, false
		}
		if neg {
			n.Neg(n)
		}
		s = n.String()
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v == int64(int32(v)) {
			return s, tInt4, true // -2147483648 is written as -(2147483648)
		}
		return s, tInt8, true
	}
	for i, c := range strings.TrimPrefix(s, "-") {
		if !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || (c == '+' || c == '-') && i > 0) {
			return "", 0, false
		}
	}
	return s, tNumeric, true
}

func (a *analyzer) paramRef(p *pg_query.ParamRef) *ir {
	n := int(p.Number)
	if n < 1 || n > a.nparams {
		if a.nparams == 0 {
			a.fail(p.Location, "there is no parameter $%d: the shape has no parameters", n)
		}
		a.fail(p.Location, "there is no parameter $%d: the shape has %d parameter%s ($1..$%d)", n, a.nparams, plural(a.nparams), a.nparams)
	}
	return a.newLit(litSlot{kind: litParam, param: n, typ: a.paramTypes[n-1]}, p.Location)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ---- coercion ----

// isUnknownLit reports whether x is a literal whose type is still open: an
// untyped string or NULL constant, or a parameter whose type was not yet
// deduced when it was analysed.
func (a *analyzer) isUnknownLit(x *ir) bool {
	return x.op == irLit && x.typ.k == tUnknown
}

// setLitType gives an unknown literal its type (Postgres: coerce_type of an
// unknown Const or Param).
func (a *analyzer) setLitType(x *ir, t ptype, mod string) {
	l := &a.lits[x.lit]
	if l.kind == litParam {
		pt := &a.paramTypes[l.param-1]
		if pt.k == tUnknown {
			*pt = t
		} else if !pt.same(t) {
			a.fail(int32(x.pos+len(prefix)), "inconsistent types deduced for parameter $%d: %s and %s", l.param, *pt, t)
		}
	}
	l.typ = t
	l.mod = mod
	x.typ = t
}

// coerce converts x to type t with an implicit cast (Postgres's
// coerce_type in an implicit context).
func (a *analyzer) coerce(x *ir, t ptype) *ir {
	if x.typ.same(t) {
		return x
	}
	if a.isUnknownLit(x) {
		a.setLitType(x, t, "")
		return x
	}
	if !implicitCast(x.typ, t) {
		a.fail(int32(x.pos+len(prefix)), "cannot convert %s to %s implicitly", x.typ, t)
	}
	// A number constant converted to a numeric type reads as if written in
	// that type (int -> numeric/float and numeric -> float conversions are
	// exact or correctly rounded, like the type's input function); not once
	// it is a float (1.1::real widened to double precision is not 1.1).
	if x.op == irLit && a.lits[x.lit].kind == litNumber && !isFloat(x.typ.k) && (t.k == tNumeric || isFloat(t.k) || t.k == tInt8) {
		a.lits[x.lit].typ = t
		x.typ = t
		return x
	}
	return &ir{op: irCast, typ: t, from: x.typ, args: []*ir{x}, pos: x.pos}
}

func (a *analyzer) coerceToBool(x *ir, ctx string) {
	if x.typ.k == tBool {
		return
	}
	if a.isUnknownLit(x) {
		a.setLitType(x, ptype{k: tBool}, "")
		return
	}
	a.fail(int32(x.pos+len(prefix)), "argument of %s must be type boolean, not type %s", ctx, x.typ)
}

// ---- casts ----

func (a *analyzer) typeCast(c *pg_query.TypeCast) *ir {
	arg := a.expr(c.Arg)
	t, mod := a.typeName(c.TypeName)
	if a.isUnknownLit(arg) {
		a.setLitType(arg, t, mod)
		return arg
	}
	if mod != "" {
		if arg.op == irLit && a.lits[arg.lit].kind == litParam && arg.typ.same(t) && a.lits[arg.lit].mod == "" {
			// A parameter whose type was deduced earlier, cast to the same
			// type with a modifier: converting its text straight to the
			// modified type gives the same value.
			a.lits[arg.lit].mod = mod
			return arg
		}
		if arg.op == irLit && a.lits[arg.lit].kind == litNumber && t.k == tNumeric && !isFloat(arg.typ.k) {
			// 1.5::numeric(10,2) is '1.5'::numeric(10,2).
			a.lits[arg.lit].typ = t
			a.lits[arg.lit].mod = mod
			arg.typ = t
			return arg
		}
		a.fail(c.TypeName.Location, "type modifiers in casts are only supported on constants and parameters")
	}
	if arg.typ.same(t) {
		return arg
	}
	if !explicitCastSupported(arg.typ, t) {
		if arg.op == irLit && a.lits[arg.lit].kind == litParam {
			a.fail(c.Location, "cannot cast parameter $%d from %s (its type, deduced from an earlier use) to %s", a.lits[arg.lit].param, arg.typ, t)
		}
		a.fail(c.Location, "casting %s to %s is not supported", arg.typ, t)
	}
	if arg.op == irLit && a.lits[arg.lit].kind == litNumber && isNumber(t.k) && implicitCast(arg.typ, t) {
		return a.coerce(arg, t)
	}
	return &ir{op: irCast, typ: t, from: arg.typ, args: []*ir{arg}, pos: int(c.Location) - len(prefix)}
}

// explicitCastSupported lists the casts this package implements in Go (see
// convert). Casts of constants and parameters to any supported type are
// done by Postgres instead.
func explicitCastSupported(f, t ptype) bool {
	if implicitCast(f, t) {
		return true
	}
	fk, tk := f.k, t.k
	switch {
	case isInt(fk):
		return isInt(tk) || tk == tBool && fk == tInt4 || isString(tk)
	case fk == tNumeric:
		return isInt(tk) || isString(tk)
	case isFloat(fk):
		return isFloat(tk) || isInt(tk)
	case fk == tBool:
		return tk == tInt4 || isString(tk)
	case isString(fk):
		return isString(tk)
	case fk == tUUID || fk == tEnum || fk == tJSON || fk == tJSONB:
		return isString(tk) || (fk == tJSON && tk == tJSONB) || (fk == tJSONB && tk == tJSON)
	case fk == tDate:
		return isString(tk)
	case fk == tTimestamp || fk == tTimestamptz:
		return isDateTime(tk) || tk == tTime || isString(tk)
	case fk == tTime:
		return isString(tk)
	}
	return false
}

var typeAliases = map[string]tkind{
	"int2": tInt2, "smallint": tInt2,
	"int4": tInt4, "int": tInt4, "integer": tInt4,
	"int8": tInt8, "bigint": tInt8,
	"numeric": tNumeric, "decimal": tNumeric,
	"float4": tFloat4, "real": tFloat4,
	"float8": tFloat8,
	"bool":   tBool, "boolean": tBool,
	"text":    tText,
	"varchar": tVarchar,
	"bpchar":  tBpchar,
	"name":    tName,
	"uuid":    tUUID,
	"date":    tDate,
	"time":    tTime, "timestamp": tTimestamp, "timestamptz": tTimestamptz,
	"interval": tInterval,
	"json":     tJSON, "jsonb": tJSONB,
	"bytea": tBytea,
}

// typeName resolves a cast's target type. mod is the full type spelling
// when the cast has a type modifier (only allowed on literals).
func (a *analyzer) typeName(tn *pg_query.TypeName) (ptype, string) {
	var names []string
	for _, n := range tn.Names {
		names = append(names, n.GetString_().GetSval())
	}
	if len(tn.ArrayBounds) > 0 {
		a.fail(tn.Location, "array types are not supported")
	}
	if tn.Setof || tn.PctType {
		a.fail(tn.Location, "unsupported type name")
	}
	plain := names
	if len(plain) == 2 && plain[0] == "pg_catalog" {
		plain = plain[1:]
	}
	if len(plain) == 1 {
		if k, ok := typeAliases[plain[0]]; ok {
			return ptype{k: k}, a.typmod(k, tn)
		}
	}
	// An enum type of one of the columns.
	var spelled []string
	for _, n := range names {
		spelled = append(spelled, quoteIdent(n))
	}
	want := strings.Join(spelled, ".")
	var enums []string
	for i, t := range a.colTypes {
		if t.k == tEnum {
			if t.name == want {
				if len(tn.Typmods) > 0 {
					a.fail(tn.Location, "type %s does not take a type modifier", want)
				}
				return a.colTypes[i], ""
			}
			enums = append(enums, t.name)
		}
	}
	msg := fmt.Sprintf("type %s is not supported in a where clause", want)
	if len(enums) > 0 {
		sort.Strings(enums)
		msg += " (enum types of this table: " + strings.Join(enums, ", ") + ")"
	}
	a.fail(tn.Location, "%s", msg)
	return ptype{}, ""
}

func (a *analyzer) typmod(k tkind, tn *pg_query.TypeName) string {
	if len(tn.Typmods) == 0 {
		return ""
	}
	var mods []int
	for _, m := range tn.Typmods {
		c := m.GetAConst()
		iv, ok := c.GetVal().(*pg_query.A_Const_Ival)
		if c == nil || !ok || iv.Ival.Ival < 0 || iv.Ival.Ival > 10000 {
			a.fail(tn.Location, "invalid type modifier")
		}
		mods = append(mods, int(iv.Ival.Ival))
	}
	list := func() string {
		s := make([]string, len(mods))
		for i, m := range mods {
			s[i] = strconv.Itoa(m)
		}
		return "(" + strings.Join(s, ",") + ")"
	}
	switch {
	case k == tNumeric && len(mods) <= 2:
		return "numeric" + list()
	case k == tVarchar && len(mods) == 1:
		return "character varying" + list()
	case k == tBpchar && len(mods) == 1:
		return "character" + list()
	case k == tTimestamp && len(mods) == 1:
		return "timestamp" + list() + " without time zone"
	case k == tTimestamptz && len(mods) == 1:
		return "timestamp" + list() + " with time zone"
	case k == tTime && len(mods) == 1:
		return "time" + list() + " without time zone"
	case k == tInterval:
		a.fail(tn.Location, "interval field restrictions and precision are not supported")
	}
	a.fail(tn.Location, "type %s does not take this type modifier", ptype{k: k})
	return ""
}

func quoteIdent(s string) string {
	ok := s != ""
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '$')) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// ---- operators ----

func (a *analyzer) aExpr(x *pg_query.A_Expr) *ir {
	opName := ""
	if len(x.Name) == 1 {
		opName = x.Name[0].GetString_().GetSval()
	} else if len(x.Name) > 1 {
		a.fail(x.Location, "schema-qualified operators are not supported")
	}
	switch x.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if x.Lexpr == nil && x.Rexpr != nil && (opName == "-" || opName == "+") {
			arg := a.expr(x.Rexpr)
			if !isNumber(arg.typ.k) {
				a.fail(x.Location, "prefix operator %s is only supported on numbers, not on %s", opName, arg.typ)
			}
			if opName == "+" {
				return arg
			}
			return &ir{op: irNeg, typ: arg.typ, args: []*ir{arg}, pos: int(x.Location) - len(prefix)}
		}
		if x.Lexpr == nil || x.Rexpr == nil {
			a.fail(x.Location, "prefix operator %s is not supported", opName)
		}
		if op, ok := cmpOps[opName]; ok {
			l := a.expr(x.Lexpr)
			r := a.expr(x.Rexpr)
			return a.makeCmp(op, l, r, x.Location)
		}
		switch opName {
		case "~~", "!~~", "~~*", "!~~*":
			return a.like(x, opName)
		case "+", "-", "*":
			return a.arith(x, opName)
		case "/", "%", "^", "||":
			a.fail(x.Location, "operator %s is not supported: only +, - and * on integers are", opName)
		}
		a.fail(x.Location, "operator %s is not supported", opName)
	case pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE:
		return a.like(x, opName)
	case pg_query.A_Expr_Kind_AEXPR_IN:
		return a.in(x, opName)
	case pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		l := a.expr(x.Lexpr)
		r := a.expr(x.Rexpr)
		c := a.makeCmp(opEq, l, r, x.Location)
		c.op = irDistinct
		c.neg = x.Kind == pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT
		return c
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return a.between(x)
	case pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
		a.fail(x.Location, "ANY/ALL with arrays is not supported; use IN (...)")
	case pg_query.A_Expr_Kind_AEXPR_NULLIF:
		a.fail(x.Location, "NULLIF is not supported")
	case pg_query.A_Expr_Kind_AEXPR_SIMILAR:
		a.fail(x.Location, "SIMILAR TO is not supported; use LIKE")
	}
	a.fail(x.Location, "unsupported operator")
	return nil
}

// makeCmp is Postgres's make_op for a comparison operator.
func (a *analyzer) makeCmp(op cmpOp, l, r *ir, loc int32) *ir {
	il, irr, ok := cmpOperands(l.typ, r.typ)
	if !ok {
		a.cmpError(op.String(), l.typ, r.typ, loc)
	}
	l = a.coerce(l, il)
	r = a.coerce(r, irr)
	d, dt := domainOf(il, irr)
	switch d {
	case dJSONB, dEnum:
		if op != opEq && op != opNe {
			what := "jsonb values"
			if d == dEnum {
				what = "enum values (" + il.String() + ")"
			}
			a.fail(loc, "operator %s is not supported on %s: only =, <>, IN and IS [NOT] DISTINCT FROM are", op, what)
		}
	}
	l = a.toDomain(l, dt)
	r = a.toDomain(r, dt)
	return &ir{op: irCmp, typ: ptype{k: tBool}, cmp: op, dom: d, args: []*ir{l, r}, pos: int(loc) - len(prefix)}
}

func (a *analyzer) cmpError(op string, l, r ptype, loc int32) {
	for _, t := range []ptype{l, r} {
		switch t.k {
		case tJSON:
			a.fail(loc, "operator %s is not supported on json; cast the column to jsonb or text", op)
		case tArray:
			a.fail(loc, "operator %s is not supported on arrays (%s): only IS NULL and IS NOT NULL are", op, t)
		}
	}
	a.fail(loc, "operator does not exist: %s %s %s", l, op, r)
}

// toDomain converts x to the comparison representation dt when the
// representations differ (date to timestamp); the other conversions in
// domainOf (int2 to int8, name to text, ...) keep the representation.
func (a *analyzer) toDomain(x *ir, dt ptype) *ir {
	if x.typ.k == tDate && dt.k == tTimestamp {
		return &ir{op: irCast, typ: dt, from: x.typ, args: []*ir{x}, pos: x.pos}
	}
	return x
}

func (a *analyzer) like(x *pg_query.A_Expr, opName string) *ir {
	neg := strings.HasPrefix(opName, "!")
	fold := strings.HasSuffix(opName, "*")
	if fc := x.Rexpr.GetFuncCall(); fc != nil && len(fc.Funcname) == 2 && fc.Funcname[1].GetString_().GetSval() == "like_escape" {
		a.fail(x.Location, "LIKE ... ESCAPE is not supported; the escape character is always backslash")
	}
	l := a.expr(x.Lexpr)
	p := a.expr(x.Rexpr)
	name := "LIKE"
	if fold {
		name = "ILIKE"
	}
	// Operators: text ~~ text, bpchar ~~ text, name ~~ text (and ~~*).
	lt := l.typ
	switch {
	case lt.k == tUnknown:
		lt = ptype{k: tText}
	case lt.k == tVarchar:
		lt = ptype{k: tText}
	case lt.k == tText || lt.k == tBpchar || lt.k == tName:
	default:
		a.fail(x.Location, "%s is not supported on type %s; it needs a text column (cast with ::text)", name, lt)
	}
	if !(p.typ.k == tUnknown || isString(p.typ.k)) {
		a.fail(x.Location, "%s pattern must be text, not %s", name, p.typ)
	}
	if containsCol(p) {
		// Postgres raises an error, for the whole query, when matching
		// reaches a pattern that ends with a backslash; a row change
		// cannot fail like that.
		a.fail(x.Location, "%s pattern must be a constant or a parameter, not a column", name)
	}
	l = a.coerce(l, lt)
	p = a.coerce(p, ptype{k: tText})
	return &ir{op: irLike, typ: ptype{k: tBool}, args: []*ir{l, p}, neg: neg, fold: fold, pos: int(x.Location) - len(prefix)}
}

// between expands BETWEEN like Postgres's transformAExprBetween.
func (a *analyzer) between(x *pg_query.A_Expr) *ir {
	items := x.Rexpr.GetList().GetItems()
	if len(items) != 2 {
		a.fail(x.Location, "invalid BETWEEN")
	}
	v, lo, hi := x.Lexpr, items[0], items[1]
	cmp := func(op cmpOp, l, r *pg_query.Node) *ir {
		return a.makeCmp(op, a.expr(l), a.expr(r), x.Location)
	}
	bool2 := func(op irOp, l func() *ir, r func() *ir) *ir {
		lx := l()
		rx := r()
		return &ir{op: op, typ: ptype{k: tBool}, args: []*ir{lx, rx}, pos: int(x.Location) - len(prefix)}
	}
	switch x.Kind {
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN:
		return bool2(irAnd, func() *ir { return cmp(opGe, v, lo) }, func() *ir { return cmp(opLe, v, hi) })
	case pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN:
		return bool2(irOr, func() *ir { return cmp(opLt, v, lo) }, func() *ir { return cmp(opGt, v, hi) })
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM:
		return bool2(irOr,
			func() *ir {
				return bool2(irAnd, func() *ir { return cmp(opGe, v, lo) }, func() *ir { return cmp(opLe, v, hi) })
			},
			func() *ir {
				return bool2(irAnd, func() *ir { return cmp(opGe, v, hi) }, func() *ir { return cmp(opLe, v, lo) })
			})
	default:
		return bool2(irAnd,
			func() *ir {
				return bool2(irOr, func() *ir { return cmp(opLt, v, lo) }, func() *ir { return cmp(opGt, v, hi) })
			},
			func() *ir {
				return bool2(irOr, func() *ir { return cmp(opLt, v, hi) }, func() *ir { return cmp(opGt, v, lo) })
			})
	}
}

// containsCol reports whether x references a column (Postgres:
// contain_vars_of_level).
func containsCol(x *ir) bool {
	if x.op == irCol {
		return true
	}
	for _, c := range x.args {
		if containsCol(c) {
			return true
		}
	}
	return false
}

// clone copies an analysed expression; literals get their own slots, as
// Postgres's copyObject gives each copy its own Const to coerce.
func (a *analyzer) clone(x *ir) *ir {
	c := *x
	if x.op == irLit {
		a.lits = append(a.lits, a.lits[x.lit])
		c.lit = len(a.lits) - 1
	}
	c.args = make([]*ir, len(x.args))
	for i, y := range x.args {
		c.args[i] = a.clone(y)
	}
	return &c
}

// in is Postgres's transformAExprIn.
func (a *analyzer) in(x *pg_query.A_Expr, opName string) *ir {
	neg := opName == "<>"
	items := x.Rexpr.GetList().GetItems()
	if len(items) == 0 {
		if x.Rexpr.GetSubLink() != nil {
			a.fail(x.Location, "subqueries are not supported in a where clause")
		}
		a.fail(x.Location, "IN needs a list of values")
	}
	lexpr := a.expr(x.Lexpr)
	var rexprs, rvars, rnonvars []*ir
	for _, it := range items {
		r := a.expr(it)
		rexprs = append(rexprs, r)
		if containsCol(r) {
			rvars = append(rvars, r)
		} else {
			rnonvars = append(rnonvars, r)
		}
	}
	var result *ir
	combine := irOr
	cop := opEq
	if neg {
		combine, cop = irAnd, opNe
	}
	if len(rnonvars) > 1 {
		types := []ptype{lexpr.typ}
		for _, r := range rnonvars {
			types = append(types, r.typ)
		}
		common, ok := selectCommonType(types)
		if ok {
			for _, t := range types {
				if !implicitCast(t, common) {
					ok = false
				}
			}
		}
		if ok && common.k != tArray && common.k != tUnsupported {
			for i, r := range rnonvars {
				rnonvars[i] = a.coerce(r, common)
			}
			il, irr, ok := cmpOperands(lexpr.typ, common)
			if !ok {
				a.cmpError(cop.String(), lexpr.typ, common, x.Location)
			}
			d, dt := domainOf(il, irr)
			// Coercing an unknown constant makes a new Const in Postgres,
			// so the comparisons with the column items below still see an
			// unknown lexpr; coercing a parameter types it for good.
			sl := lexpr
			if a.isUnknownLit(lexpr) && a.lits[lexpr.lit].kind != litParam {
				sl = a.clone(lexpr)
			}
			l := a.toDomain(a.coerce(sl, il), dt)
			args := []*ir{l}
			for _, r := range rnonvars {
				args = append(args, a.toDomain(a.coerce(r, irr), dt))
			}
			result = &ir{op: irIn, typ: ptype{k: tBool}, args: args, dom: d, neg: neg, pos: int(x.Location) - len(prefix)}
			rexprs = rvars
		}
	}
	for _, r := range rexprs {
		c := a.makeCmp(cop, a.clone(lexpr), r, x.Location)
		if result == nil {
			result = c
		} else {
			result = &ir{op: combine, typ: ptype{k: tBool}, args: []*ir{result, c}, pos: int(x.Location) - len(prefix)}
		}
	}
	return result
}

// ---- boolean structure ----

func (a *analyzer) boolExpr(b *pg_query.BoolExpr) *ir {
	var op irOp
	var name string
	switch b.Boolop {
	case pg_query.BoolExprType_AND_EXPR:
		op, name = irAnd, "AND"
	case pg_query.BoolExprType_OR_EXPR:
		op, name = irOr, "OR"
	case pg_query.BoolExprType_NOT_EXPR:
		op, name = irNot, "NOT"
	default:
		a.fail(b.Location, "unsupported boolean operator")
	}
	x := &ir{op: op, typ: ptype{k: tBool}, pos: int(b.Location) - len(prefix)}
	for _, n := range b.Args {
		arg := a.expr(n)
		a.coerceToBool(arg, name)
		x.args = append(x.args, arg)
	}
	if len(x.args) == 0 || op == irNot && len(x.args) != 1 {
		a.fail(b.Location, "invalid %s", name)
	}
	return x
}

func booleanTestName(t pg_query.BoolTestType) string {
	switch t {
	case pg_query.BoolTestType_IS_TRUE:
		return "IS TRUE"
	case pg_query.BoolTestType_IS_NOT_TRUE:
		return "IS NOT TRUE"
	case pg_query.BoolTestType_IS_FALSE:
		return "IS FALSE"
	case pg_query.BoolTestType_IS_NOT_FALSE:
		return "IS NOT FALSE"
	case pg_query.BoolTestType_IS_UNKNOWN:
		return "IS UNKNOWN"
	}
	return "IS NOT UNKNOWN"
}

// ---- functions ----

var nondeterministic = map[string]bool{
	"now": true, "random": true, "random_normal": true, "setseed": true, "clock_timestamp": true,
	"statement_timestamp": true, "transaction_timestamp": true, "timeofday": true,
	"current_timestamp": true, "current_date": true, "current_time": true, "localtime": true, "localtimestamp": true,
	"nextval": true, "currval": true, "lastval": true, "setval": true,
	"gen_random_uuid": true, "uuid_generate_v1": true, "uuid_generate_v1mc": true, "uuid_generate_v4": true, "uuidv4": true, "uuidv7": true,
	"current_user": true, "session_user": true, "user": true, "current_role": true, "current_setting": true,
	"current_database": true, "current_schema": true, "current_schemas": true, "current_catalog": true,
	"pg_backend_pid": true, "txid_current": true, "pg_current_xact_id": true, "inet_client_addr": true,
	"inet_client_port": true, "inet_server_addr": true, "inet_server_port": true, "version": true,
	"age": true, "pg_sleep": true, "txid_current_snapshot": true, "pg_current_snapshot": true,
}

var aggregates = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true, "array_agg": true, "string_agg": true,
	"bool_and": true, "bool_or": true, "every": true, "json_agg": true, "jsonb_agg": true,
	"json_object_agg": true, "jsonb_object_agg": true, "bit_and": true, "bit_or": true, "bit_xor": true,
	"stddev": true, "stddev_pop": true, "stddev_samp": true, "variance": true, "var_pop": true, "var_samp": true,
	"percentile_cont": true, "percentile_disc": true, "mode": true, "xmlagg": true, "any_value": true,
}

func (a *analyzer) funcCall(f *pg_query.FuncCall) *ir {
	var parts []string
	for _, n := range f.Funcname {
		parts = append(parts, n.GetString_().GetSval())
	}
	name := strings.Join(parts, ".")
	base := parts[len(parts)-1]
	switch {
	case f.Over != nil:
		a.fail(f.Location, "window functions are not allowed in a where clause")
	case f.AggStar || f.AggDistinct || len(f.AggOrder) > 0 || f.AggFilter != nil || f.AggWithinGroup || aggregates[base]:
		a.fail(f.Location, "aggregate functions are not allowed in a where clause")
	case nondeterministic[base]:
		a.fail(f.Location, "%s() is a non-deterministic function and cannot be used in a shape: rows would enter and leave the shape without changing", name)
	}
	builtin := len(parts) == 1 || len(parts) == 2 && parts[0] == "pg_catalog"
	if builtin && (base == "lower" || base == "upper") && !f.FuncVariadic {
		if len(f.Args) != 1 {
			a.fail(f.Location, "%s() takes one argument", base)
		}
		arg := a.expr(f.Args[0])
		if arg.typ.k != tUnknown && !isString(arg.typ.k) {
			a.fail(f.Location, "%s() is only supported on text, not on %s", base, arg.typ)
		}
		op := irLower
		if base == "upper" {
			op = irUpper
		}
		return &ir{op: op, typ: ptype{k: tText}, args: []*ir{a.coerce(arg, ptype{k: tText})}, pos: int(f.Location) - len(prefix)}
	}
	a.fail(f.Location, "function %s() is not supported in a where clause (supported: lower, upper, coalesce)", name)
	return nil
}

// coalesce is Postgres's transformCoalesceExpr.
func (a *analyzer) coalesce(c *pg_query.CoalesceExpr) *ir {
	var args []*ir
	var types []ptype
	for _, n := range c.Args {
		x := a.expr(n)
		args = append(args, x)
		types = append(types, x.typ)
	}
	t, ok := selectCommonType(types)
	if ok {
		for _, u := range types {
			if !implicitCast(u, t) {
				ok = false
			}
		}
	}
	if !ok || t.k == tUnsupported {
		a.fail(c.Location, "COALESCE arguments have no common type")
	}
	for i, x := range args {
		args[i] = a.coerce(x, t)
	}
	return &ir{op: irCoalesce, typ: t, args: args, pos: int(c.Location) - len(prefix)}
}

// arith resolves + - * on integers (int2pl, int24pl, ... int8mul): the
// result has the wider operand type.
func (a *analyzer) arith(x *pg_query.A_Expr, op string) *ir {
	l := a.expr(x.Lexpr)
	r := a.expr(x.Rexpr)
	if l.typ.k == tUnknown && r.typ.k == tUnknown {
		a.fail(x.Location, "operator is not unique: unknown %s unknown; add a cast", op)
	}
	if l.typ.k == tUnknown {
		l = a.coerce(l, r.typ)
	}
	if r.typ.k == tUnknown {
		r = a.coerce(r, l.typ)
	}
	if !isInt(l.typ.k) || !isInt(r.typ.k) {
		a.fail(x.Location, "operator %s is only supported on integer types, not on %s and %s", op, l.typ, r.typ)
	}
	t := l.typ
	if r.typ.k > t.k {
		t = r.typ
	}
	return &ir{op: irArith, typ: t, arith: op[0], args: []*ir{l, r}, pos: int(x.Location) - len(prefix)}
}

func sqlValueFunctionName(op pg_query.SQLValueFunctionOp) string {
	s := strings.TrimPrefix(op.String(), "SVFOP_")
	s = strings.TrimSuffix(s, "_N")
	return strings.ToLower(s)
}

func nodeDescription(n *pg_query.Node) string {
	if n == nil || n.GetNode() == nil {
		return "an empty expression"
	}
	s := fmt.Sprintf("%T", n.GetNode())
	s = strings.TrimPrefix(s, "*pg_query.Node_")
	return s
}

// nodeLocation finds a location field in n, or -1.
func nodeLocation(n *pg_query.Node) int32 {
	type located interface{ GetLocation() int32 }
	if n == nil {
		return -1
	}
	m := n.ProtoReflect()
	var loc int32 = -1
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() != nil {
			if l, ok := v.Message().Interface().(located); ok {
				loc = l.GetLocation()
			}
		}
		return false
	})
	return loc
}
