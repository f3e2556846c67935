package where

import (
	"errors"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// deparse renders the analysed where clause as SQL. Column references lose
// their qualifiers (the clause is embedded in a query on the one table,
// under whatever alias). The result is parsed again and must give the same
// tree, so that SQL() means exactly what was analysed.
func deparse(tree *pg_query.ParseResult, sel *pg_query.SelectStmt) (string, error) {
	unqualify(sel.WhereClause.ProtoReflect())
	out, err := pg_query.Deparse(tree)
	if err == nil && strings.HasPrefix(out, prefix) {
		sql := strings.TrimPrefix(out, prefix)
		if sameTree(sel.WhereClause, sql) {
			return sql, nil
		}
	}
	// pg_query's deparser drops parentheses that some constructs need,
	// e.g. (a IS DISTINCT FROM b) IS TRUE, (NOT a) IS NULL: print the
	// expression fully parenthesized instead.
	var p printer
	p.node(sel.WhereClause)
	if p.err == nil && sameTree(sel.WhereClause, p.b.String()) {
		return p.b.String(), nil
	}
	return "", &Error{Message: "internal error: cannot render the where clause as SQL"}
}

// sameTree reports whether sql parses into the expression tree want.
func sameTree(want *pg_query.Node, sql string) bool {
	again, err := pg_query.Parse(prefix + "(" + sql + ")")
	if err != nil || len(again.Stmts) != 1 || again.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return false
	}
	a := proto.Clone(want)
	b := proto.Clone(again.Stmts[0].GetStmt().GetSelectStmt().WhereClause)
	clearLocations(a.ProtoReflect())
	clearLocations(b.ProtoReflect())
	return proto.Equal(a, b)
}

// printer renders the supported subset of raw parse trees as SQL, every
// compound expression in parentheses.
type printer struct {
	b   strings.Builder
	err error
}

func (p *printer) s(s string) { p.b.WriteString(s) }

func (p *printer) fail() {
	if p.err == nil {
		p.err = errors.New("unsupported node")
	}
}

func quoteAlways(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string {
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func (p *printer) node(n *pg_query.Node) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		for i, f := range x.ColumnRef.Fields {
			if i > 0 {
				p.s(".")
			}
			p.s(quoteAlways(f.GetString_().GetSval()))
		}
	case *pg_query.Node_ParamRef:
		p.s("$" + strconv.Itoa(int(x.ParamRef.Number)))
	case *pg_query.Node_AConst:
		c := x.AConst
		if c.Isnull {
			p.s("NULL")
			return
		}
		switch v := c.Val.(type) {
		case *pg_query.A_Const_Ival:
			if v.Ival.Ival < 0 {
				p.s("(" + strconv.Itoa(int(v.Ival.Ival)) + ")")
			} else {
				p.s(strconv.Itoa(int(v.Ival.Ival)))
			}
		case *pg_query.A_Const_Fval:
			if strings.HasPrefix(v.Fval.Fval, "-") {
				p.s("(" + v.Fval.Fval + ")")
			} else {
				p.s(v.Fval.Fval)
			}
		case *pg_query.A_Const_Sval:
			p.s(quoteString(v.Sval.Sval))
		case *pg_query.A_Const_Boolval:
			p.s(strconv.FormatBool(v.Boolval.Boolval))
		default:
			p.fail()
		}
	case *pg_query.Node_TypeCast:
		p.s("(")
		p.node(x.TypeCast.Arg)
		p.s(")::")
		p.typeName(x.TypeCast.TypeName)
	case *pg_query.Node_AExpr:
		p.aExpr(x.AExpr)
	case *pg_query.Node_BoolExpr:
		p.s("(")
		for i, arg := range x.BoolExpr.Args {
			switch {
			case x.BoolExpr.Boolop == pg_query.BoolExprType_NOT_EXPR:
				p.s("NOT ")
			case i > 0 && x.BoolExpr.Boolop == pg_query.BoolExprType_AND_EXPR:
				p.s(" AND ")
			case i > 0:
				p.s(" OR ")
			}
			p.node(arg)
		}
		p.s(")")
	case *pg_query.Node_NullTest:
		p.s("(")
		p.node(x.NullTest.Arg)
		if x.NullTest.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL {
			p.s(" IS NOT NULL)")
		} else {
			p.s(" IS NULL)")
		}
	case *pg_query.Node_CoalesceExpr:
		p.s("COALESCE(")
		for i, arg := range x.CoalesceExpr.Args {
			if i > 0 {
				p.s(", ")
			}
			p.node(arg)
		}
		p.s(")")
	case *pg_query.Node_FuncCall:
		f := x.FuncCall
		for i, n := range f.Funcname {
			if i > 0 {
				p.s(".")
			}
			p.s(quoteAlways(n.GetString_().GetSval()))
		}
		p.s("(")
		for i, arg := range f.Args {
			if i > 0 {
				p.s(", ")
			}
			p.node(arg)
		}
		p.s(")")
		if f.Over != nil || f.AggStar || f.AggDistinct || len(f.AggOrder) > 0 || f.AggFilter != nil || f.FuncVariadic {
			p.fail()
		}
	case *pg_query.Node_BooleanTest:
		p.s("(")
		p.node(x.BooleanTest.Arg)
		p.s(" " + booleanTestName(x.BooleanTest.Booltesttype) + ")")
	default:
		p.fail()
	}
}

func (p *printer) typeName(t *pg_query.TypeName) {
	for i, n := range t.Names {
		if i > 0 {
			p.s(".")
		}
		p.s(quoteAlways(n.GetString_().GetSval()))
	}
	if len(t.Typmods) > 0 {
		p.s("(")
		for i, m := range t.Typmods {
			if i > 0 {
				p.s(", ")
			}
			p.node(m)
		}
		p.s(")")
	}
	if len(t.ArrayBounds) > 0 || t.Setof || t.PctType {
		p.fail()
	}
}

func (p *printer) aExpr(x *pg_query.A_Expr) {
	name := ""
	if len(x.Name) == 1 {
		name = x.Name[0].GetString_().GetSval()
	}
	p.s("(")
	defer p.s(")")
	switch x.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if x.Lexpr != nil {
			p.node(x.Lexpr)
			p.s(" ")
		}
		p.s(name + " ")
		p.node(x.Rexpr)
	case pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE:
		p.node(x.Lexpr)
		kw := map[string]string{"~~": " LIKE ", "!~~": " NOT LIKE ", "~~*": " ILIKE ", "!~~*": " NOT ILIKE "}[name]
		if kw == "" {
			p.fail()
		}
		p.s(kw)
		p.node(x.Rexpr)
	case pg_query.A_Expr_Kind_AEXPR_IN:
		p.node(x.Lexpr)
		if name == "<>" {
			p.s(" NOT")
		}
		p.s(" IN (")
		for i, it := range x.Rexpr.GetList().GetItems() {
			if i > 0 {
				p.s(", ")
			}
			p.node(it)
		}
		p.s(")")
	case pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		p.node(x.Lexpr)
		if x.Kind == pg_query.A_Expr_Kind_AEXPR_DISTINCT {
			p.s(" IS DISTINCT FROM ")
		} else {
			p.s(" IS NOT DISTINCT FROM ")
		}
		p.node(x.Rexpr)
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		items := x.Rexpr.GetList().GetItems()
		if len(items) != 2 {
			p.fail()
			return
		}
		p.node(x.Lexpr)
		p.s(" " + name + " ")
		p.node(items[0])
		p.s(" AND ")
		p.node(items[1])
	default:
		p.fail()
	}
}

func unqualify(m protoreflect.Message) {
	if c, ok := m.Interface().(*pg_query.ColumnRef); ok && len(c.Fields) > 1 {
		c.Fields = c.Fields[len(c.Fields)-1:]
		return
	}
	walk(m, unqualify)
}

func clearLocations(m protoreflect.Message) {
	if fd := m.Descriptor().Fields().ByName("location"); fd != nil && fd.Kind() == protoreflect.Int32Kind {
		m.Clear(fd)
	}
	walk(m, clearLocations)
}

func walk(m protoreflect.Message, f func(protoreflect.Message)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				f(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			f(v.Message())
		}
		return true
	})
}
