package where

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/latticesync/lattice/coltype"
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Pred is a where clause with its parameters bound, ready to evaluate. It
// is immutable and safe for concurrent use.
type Pred struct {
	root boolNode
}

// Eval evaluates the predicate on a row whose values are in the column
// order given to Parse. A row that is too short reads as NULL in the
// missing columns; a value not in the representation coltype.FromPGText
// produces for its column type reads as NULL. Eval never panics.
func (p *Pred) Eval(row []coltype.Value) Tri {
	return p.root.tri(row)
}

// Match reports whether the row is in the shape: Eval(row) == True.
func (p *Pred) Match(row []coltype.Value) bool {
	return p.root.tri(row) == True
}

// Bind fixes the parameter values (nil is NULL) and converts every literal
// with coerce. Errors in the values are *Error; errors from coerce are
// returned as they are.
func (e *Expr) Bind(ctx context.Context, params []*string, coerce Coerce) (*Pred, error) {
	if len(params) != e.nparams {
		return nil, &Error{Message: fmt.Sprintf("the shape takes %d parameter%s, got %d", e.nparams, plural(e.nparams), len(params))}
	}
	texts := make([]*string, len(e.lits))
	for i, l := range e.lits {
		if l.Param > 0 {
			texts[i] = params[l.Param-1]
		} else {
			texts[i] = l.Text
		}
		if texts[i] != nil {
			if err := checkSpecialValue(l, *texts[i]); err != nil {
				return nil, err
			}
		}
	}
	var vals []coltype.Value
	if len(e.lits) > 0 {
		if coerce == nil {
			return nil, &Error{Message: "internal error: no coerce function"}
		}
		var err error
		vals, err = coerce(ctx, e.lits, texts)
		if err != nil {
			return nil, err
		}
		if len(vals) != len(e.lits) {
			return nil, fmt.Errorf("where: coerce returned %d values for %d literals", len(vals), len(e.lits))
		}
	}
	b := &binder{e: e, vals: make([]scalar, len(vals))}
	for i := range vals {
		k := typeOfColumn(e.lits[i].Type).k
		if e.lits[i].Type.Base == coltype.TextType {
			k = tText // bpchar/name/varchar literals: same representation
		}
		s := fromValue(&vals[i], k)
		if s.null && texts[i] != nil {
			return nil, litError(e.lits[i], "cannot use value %q as %s", *texts[i], e.lits[i].Type.Name)
		}
		b.vals[i] = s
	}
	root, err := b.boolNode(e.root)
	if err != nil {
		return nil, err
	}
	return &Pred{root: root}, nil
}

func litError(l Literal, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if l.Param > 0 {
		return &Error{Message: fmt.Sprintf("parameter $%d: %s", l.Param, msg)}
	}
	return &Error{Message: fmt.Sprintf("%s at position %d", msg, l.Pos), Pos: l.Pos}
}

// checkSpecialValue rejects the date/time input values that depend on the
// clock ('now', 'today', ...): Postgres would fix them when planning the
// snapshot query, Bind at a different moment.
func checkSpecialValue(l Literal, text string) error {
	switch l.Type.Base {
	case coltype.Date, coltype.Time, coltype.Timestamp, coltype.Timestamptz:
		words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
			return !(r >= 'a' && r <= 'z')
		})
		for _, w := range words {
			switch w {
			case "now", "today", "tomorrow", "yesterday":
				return litError(l, "%q is a non-deterministic value and cannot be used in a shape", text)
			}
		}
	}
	return nil
}

type binder struct {
	e    *Expr
	vals []scalar
}

func (b *binder) errAt(x *ir, format string, args ...any) error {
	return errAt(b.e.src, x.pos, format, args...)
}

// boolNode builds the evaluator of a boolean-typed expression.
func (b *binder) boolNode(x *ir) (boolNode, error) {
	switch x.op {
	case irAnd, irOr:
		args := make([]boolNode, len(x.args))
		for i, y := range x.args {
			n, err := b.boolNode(y)
			if err != nil {
				return nil, err
			}
			args[i] = n
		}
		if x.op == irAnd {
			return &andNode{args}, nil
		}
		return &orNode{args}, nil
	case irNot:
		n, err := b.boolNode(x.args[0])
		if err != nil {
			return nil, err
		}
		return &notNode{n}, nil
	case irCmp:
		return b.cmp(x)
	case irDistinct:
		l, err := b.valNode(x.args[0])
		if err != nil {
			return nil, err
		}
		r, err := b.valNode(x.args[1])
		if err != nil {
			return nil, err
		}
		return &distinctNode{l: l, r: r, dom: x.dom, not: x.neg}, nil
	case irIn:
		return b.in(x)
	case irNullTest:
		arg, err := b.valNode(x.args[0])
		if err != nil {
			return nil, err
		}
		return &nullTestNode{arg: arg, not: x.neg}, nil
	case irBoolTest:
		arg, err := b.boolNode(x.args[0])
		if err != nil {
			return nil, err
		}
		return &boolTestNode{arg: arg, kind: x.btest}, nil
	case irLike:
		return b.like(x)
	}
	v, err := b.valNode(x)
	if err != nil {
		return nil, err
	}
	if c, ok := v.(*constVal); ok {
		return constBool(c.s), nil
	}
	return &valBool{v}, nil
}

func constBool(s scalar) boolNode {
	if s.null {
		return triConst(Unknown)
	}
	if s.i != 0 {
		return triConst(True)
	}
	return triConst(False)
}

// valNode builds the evaluator of a value; casts of constants are done now.
func (b *binder) valNode(x *ir) (valNode, error) {
	switch x.op {
	case irCol:
		return &colVal{idx: x.col, k: x.typ.k}, nil
	case irLit:
		return &constVal{b.vals[x.lit]}, nil
	case irCast:
		arg, err := b.valNode(x.args[0])
		if err != nil {
			return nil, err
		}
		if c, ok := arg.(*constVal); ok {
			if c.s.null {
				return c, nil
			}
			r, ok := convert(c.s, x.from, x.typ)
			if !ok {
				return nil, b.errAt(x, "cannot convert the %s value to %s (out of range or invalid)", x.from, x.typ)
			}
			return &constVal{r}, nil
		}
		return &castVal{arg: arg, from: x.from, to: x.typ}, nil
	case irNeg:
		arg, err := b.valNode(x.args[0])
		if err != nil {
			return nil, err
		}
		if c, ok := arg.(*constVal); ok {
			if c.s.null {
				return c, nil
			}
			r, ok := negate(c.s, x.typ.k)
			if !ok {
				return nil, b.errAt(x, "%s out of range", x.typ)
			}
			return &constVal{r}, nil
		}
		return &negVal{arg: arg, k: x.typ.k}, nil
	case irArith, irLower, irUpper, irCoalesce:
		args := make([]valNode, len(x.args))
		allConst := true
		for i, y := range x.args {
			v, err := b.valNode(y)
			if err != nil {
				return nil, err
			}
			args[i] = v
			if _, ok := v.(*constVal); !ok {
				allConst = false
			}
		}
		var n valNode
		switch x.op {
		case irArith:
			n = &arithVal{l: args[0], r: args[1], op: x.arith, k: x.typ.k}
		case irCoalesce:
			n = &coalesceVal{args: args}
		default:
			n = &caseVal{arg: args[0], upper: x.op == irUpper}
		}
		if allConst {
			s := n.val(nil)
			if s.null && x.op == irArith {
				for _, v := range args {
					if v.(*constVal).s.null {
						return &constVal{s}, nil
					}
				}
				return nil, b.errAt(x, "%s out of range", x.typ)
			}
			return &constVal{s}, nil
		}
		return n, nil
	}
	n, err := b.boolNode(x)
	if err != nil {
		return nil, err
	}
	if t, ok := n.(triConst); ok {
		return &constVal{triScalar(Tri(t))}, nil
	}
	return &boolVal{n}, nil
}

func triScalar(t Tri) scalar {
	switch t {
	case True:
		return scalar{i: 1}
	case False:
		return scalar{}
	}
	return scalar{null: true}
}

func (b *binder) cmp(x *ir) (boolNode, error) {
	l, err := b.valNode(x.args[0])
	if err != nil {
		return nil, err
	}
	r, err := b.valNode(x.args[1])
	if err != nil {
		return nil, err
	}
	lc, lconst := l.(*constVal)
	rc, rconst := r.(*constVal)
	op := x.cmp
	if lconst && !rconst {
		// Put the constant on the right: a < c is c > a.
		l, r, lc, rc, lconst, rconst = r, l, rc, lc, rconst, lconst
		op = op.commute()
	}
	if rconst {
		if col, ok := l.(*colVal); ok && !rc.s.null {
			switch {
			case x.dom == dInt && intRep(col.k):
				return &cmpColInt{idx: col.idx, k: col.k, c: rc.s.i, op: op}, nil
			case x.dom == dBytes && bytesRep(col.k), x.dom == dEnum:
				return &cmpColBytes{idx: col.idx, c: rc.s.b, op: op}, nil
			}
		}
		if lconst {
			return triConst(cmpTri(x.dom, op, lc.s, rc.s)), nil
		}
		return &cmpConst{l: l, c: rc.s, dom: x.dom, op: op}, nil
	}
	return &cmpNode{l: l, r: r, dom: x.dom, op: op}, nil
}

func (o cmpOp) commute() cmpOp {
	switch o {
	case opLt:
		return opGt
	case opLe:
		return opGe
	case opGt:
		return opLt
	case opGe:
		return opLe
	}
	return o
}

// intRep: column types whose Value is an Integer compared as is.
func intRep(k tkind) bool { return isInt(k) || k == tBool }

// bytesRep: column types whose Value bytes are compared as is.
func bytesRep(k tkind) bool {
	return k == tText || k == tVarchar || k == tName || k == tUUID || k == tBytea
}

func (b *binder) in(x *ir) (boolNode, error) {
	l, err := b.valNode(x.args[0])
	if err != nil {
		return nil, err
	}
	n := &inNode{l: l, dom: x.dom, neg: x.neg}
	allConst := true
	for _, y := range x.args[1:] {
		v, err := b.valNode(y)
		if err != nil {
			return nil, err
		}
		if c, ok := v.(*constVal); ok {
			if c.s.null {
				n.hasNull = true
			} else {
				n.consts = append(n.consts, c.s)
			}
			continue
		}
		allConst = false
		n.vars = append(n.vars, v)
	}
	if col, ok := l.(*colVal); ok && allConst && !n.hasNull {
		switch {
		case x.dom == dInt && intRep(col.k):
			m := &inColInt{idx: col.idx, k: col.k, neg: x.neg}
			for _, c := range n.consts {
				m.set = append(m.set, c.i)
			}
			return m, nil
		case x.dom == dBytes && bytesRep(col.k), x.dom == dEnum:
			m := &inColBytes{idx: col.idx, neg: x.neg}
			for _, c := range n.consts {
				m.set = append(m.set, string(c.b))
			}
			if len(m.set) > 8 {
				m.m = make(map[string]struct{}, len(m.set))
				for _, s := range m.set {
					m.m[s] = struct{}{}
				}
			}
			return m, nil
		}
	}
	return n, nil
}

func (b *binder) like(x *ir) (boolNode, error) {
	l, err := b.valNode(x.args[0])
	if err != nil {
		return nil, err
	}
	p, err := b.valNode(x.args[1])
	if err != nil {
		return nil, err
	}
	if c, ok := p.(*constVal); ok && !c.s.null && likePatternError(c.s.b) {
		return nil, b.errAt(x, "LIKE pattern must not end with escape character")
	}
	return &likeNode{l: l, p: p, fold: x.fold, neg: x.neg}, nil
}

// ---- evaluators ----

type boolNode interface {
	tri(row []coltype.Value) Tri
}

type valNode interface {
	val(row []coltype.Value) scalar
}

type triConst Tri

func (t triConst) tri([]coltype.Value) Tri { return Tri(t) }

type colVal struct {
	idx int
	k   tkind
}

func (c *colVal) val(row []coltype.Value) scalar {
	if c.idx >= len(row) {
		return scalar{null: true}
	}
	return fromValue(&row[c.idx], c.k)
}

type constVal struct{ s scalar }

func (c *constVal) val([]coltype.Value) scalar { return c.s }

type castVal struct {
	arg      valNode
	from, to ptype
}

func (c *castVal) val(row []coltype.Value) scalar {
	s := c.arg.val(row)
	if s.null {
		return s
	}
	r, ok := convert(s, c.from, c.to)
	if !ok {
		// Postgres would fail the query; a row change cannot, so the
		// value is treated as NULL.
		return scalar{null: true}
	}
	return r
}

type boolVal struct{ n boolNode }

func (b *boolVal) val(row []coltype.Value) scalar { return triScalar(b.n.tri(row)) }

type valBool struct{ v valNode }

func (b *valBool) tri(row []coltype.Value) Tri {
	s := b.v.val(row)
	if s.null {
		return Unknown
	}
	if s.i != 0 {
		return True
	}
	return False
}

type andNode struct{ args []boolNode }

func (n *andNode) tri(row []coltype.Value) Tri {
	r := True
	for _, a := range n.args {
		switch a.tri(row) {
		case False:
			return False
		case Unknown:
			r = Unknown
		}
	}
	return r
}

type orNode struct{ args []boolNode }

func (n *orNode) tri(row []coltype.Value) Tri {
	r := False
	for _, a := range n.args {
		switch a.tri(row) {
		case True:
			return True
		case Unknown:
			r = Unknown
		}
	}
	return r
}

type notNode struct{ arg boolNode }

func (n *notNode) tri(row []coltype.Value) Tri {
	switch n.arg.tri(row) {
	case True:
		return False
	case False:
		return True
	}
	return Unknown
}

func boolTri(b bool) Tri {
	if b {
		return True
	}
	return False
}

func cmpTri(d domain, op cmpOp, a, b scalar) Tri {
	if a.null || b.null {
		return Unknown
	}
	return boolTri(op.test(compare(d, &a, &b)))
}

type cmpNode struct {
	l, r valNode
	dom  domain
	op   cmpOp
}

func (n *cmpNode) tri(row []coltype.Value) Tri {
	a := n.l.val(row)
	if a.null {
		return Unknown
	}
	b := n.r.val(row)
	if b.null {
		return Unknown
	}
	return boolTri(n.op.test(compare(n.dom, &a, &b)))
}

type cmpConst struct {
	l   valNode
	c   scalar
	dom domain
	op  cmpOp
}

func (n *cmpConst) tri(row []coltype.Value) Tri {
	a := n.l.val(row)
	if a.null || n.c.null {
		return Unknown
	}
	return boolTri(n.op.test(compare(n.dom, &a, &n.c)))
}

// cmpColInt compares an integer or bool column with a constant.
type cmpColInt struct {
	idx int
	k   tkind
	c   int64
	op  cmpOp
}

func (n *cmpColInt) tri(row []coltype.Value) Tri {
	if n.idx >= len(row) || row[n.idx].Kind != coltype.Integer {
		return Unknown
	}
	return boolTri(n.op.test(cmpInt(row[n.idx].I, n.c)))
}

// cmpColBytes compares a text, uuid, bytea or enum column with a constant.
type cmpColBytes struct {
	idx int
	c   []byte
	op  cmpOp
}

func (n *cmpColBytes) tri(row []coltype.Value) Tri {
	if n.idx >= len(row) {
		return Unknown
	}
	v := &row[n.idx]
	if v.Kind != coltype.Text && v.Kind != coltype.Blob {
		return Unknown
	}
	if n.op == opEq {
		return boolTri(bytes.Equal(v.B, n.c))
	}
	return boolTri(n.op.test(bytes.Compare(v.B, n.c)))
}

type distinctNode struct {
	l, r valNode
	dom  domain
	not  bool
}

func (n *distinctNode) tri(row []coltype.Value) Tri {
	a := n.l.val(row)
	b := n.r.val(row)
	var distinct bool
	switch {
	case a.null && b.null:
		distinct = false
	case a.null || b.null:
		distinct = true
	default:
		distinct = compare(n.dom, &a, &b) != 0
	}
	return boolTri(distinct != n.not)
}

// inNode is x IN (...) (x = ANY, three-valued) or x NOT IN (...)
// (x <> ALL).
type inNode struct {
	l       valNode
	consts  []scalar
	vars    []valNode
	hasNull bool
	dom     domain
	neg     bool
}

func (n *inNode) tri(row []coltype.Value) Tri {
	a := n.l.val(row)
	if a.null {
		return Unknown
	}
	found := false
	sawNull := n.hasNull
	for i := range n.consts {
		if compare(n.dom, &a, &n.consts[i]) == 0 {
			found = true
			break
		}
	}
	if !found {
		for _, v := range n.vars {
			b := v.val(row)
			if b.null {
				sawNull = true
				continue
			}
			if compare(n.dom, &a, &b) == 0 {
				found = true
				break
			}
		}
	}
	switch {
	case found:
		return boolTri(!n.neg)
	case sawNull:
		return Unknown
	}
	return boolTri(n.neg)
}

type inColInt struct {
	idx int
	k   tkind
	set []int64
	neg bool
}

func (n *inColInt) tri(row []coltype.Value) Tri {
	if n.idx >= len(row) || row[n.idx].Kind != coltype.Integer {
		return Unknown
	}
	v := row[n.idx].I
	for _, c := range n.set {
		if c == v {
			return boolTri(!n.neg)
		}
	}
	return boolTri(n.neg)
}

type inColBytes struct {
	idx int
	set []string
	m   map[string]struct{}
	neg bool
}

func (n *inColBytes) tri(row []coltype.Value) Tri {
	if n.idx >= len(row) {
		return Unknown
	}
	v := &row[n.idx]
	if v.Kind != coltype.Text && v.Kind != coltype.Blob {
		return Unknown
	}
	if n.m != nil {
		_, ok := n.m[string(v.B)]
		return boolTri(ok != n.neg)
	}
	for _, c := range n.set {
		if string(v.B) == c {
			return boolTri(!n.neg)
		}
	}
	return boolTri(n.neg)
}

type nullTestNode struct {
	arg valNode
	not bool
}

func (n *nullTestNode) tri(row []coltype.Value) Tri {
	return boolTri(n.arg.val(row).null != n.not)
}

type boolTestNode struct {
	arg  boolNode
	kind pg_query.BoolTestType
}

func (n *boolTestNode) tri(row []coltype.Value) Tri {
	t := n.arg.tri(row)
	switch n.kind {
	case pg_query.BoolTestType_IS_TRUE:
		return boolTri(t == True)
	case pg_query.BoolTestType_IS_NOT_TRUE:
		return boolTri(t != True)
	case pg_query.BoolTestType_IS_FALSE:
		return boolTri(t == False)
	case pg_query.BoolTestType_IS_NOT_FALSE:
		return boolTri(t != False)
	case pg_query.BoolTestType_IS_UNKNOWN:
		return boolTri(t == Unknown)
	}
	return boolTri(t != Unknown)
}

type likeNode struct {
	l, p      valNode
	fold, neg bool
}

func (n *likeNode) tri(row []coltype.Value) Tri {
	s := n.l.val(row)
	if s.null {
		return Unknown
	}
	p := n.p.val(row)
	if p.null {
		return Unknown
	}
	switch matchLike(s.b, p.b, n.fold) {
	case likeTrue:
		return boolTri(!n.neg)
	case likeError:
		return Unknown // Postgres raises an error
	}
	return boolTri(n.neg)
}

type negVal struct {
	arg valNode
	k   tkind
}

func (n *negVal) val(row []coltype.Value) scalar {
	s := n.arg.val(row)
	if s.null {
		return s
	}
	r, ok := negate(s, n.k)
	if !ok {
		return scalar{null: true} // Postgres: integer out of range
	}
	return r
}

type arithVal struct {
	l, r valNode
	op   byte
	k    tkind
}

func (n *arithVal) val(row []coltype.Value) scalar {
	a := n.l.val(row)
	if a.null {
		return a
	}
	b := n.r.val(row)
	if b.null {
		return b
	}
	r, ok := arith(n.op, a.i, b.i, n.k)
	if !ok {
		return scalar{null: true} // Postgres: integer out of range
	}
	return scalar{i: r}
}

type coalesceVal struct{ args []valNode }

func (n *coalesceVal) val(row []coltype.Value) scalar {
	for _, a := range n.args {
		if s := a.val(row); !s.null {
			return s
		}
	}
	return scalar{null: true}
}

// caseVal is lower() or upper() under the C collation: ASCII letters only.
type caseVal struct {
	arg   valNode
	upper bool
}

func (n *caseVal) val(row []coltype.Value) scalar {
	s := n.arg.val(row)
	if s.null {
		return s
	}
	return scalar{b: asciiCase(s.b, n.upper)}
}
