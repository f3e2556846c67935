package where

import (
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
	if err != nil || !strings.HasPrefix(out, prefix) {
		return "", &Error{Message: "internal error: cannot deparse the where clause"}
	}
	sql := strings.TrimPrefix(out, prefix)
	again, err := pg_query.Parse(prefix + "(" + sql + ")")
	if err != nil || len(again.Stmts) != 1 || again.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return "", &Error{Message: "internal error: the deparsed where clause does not parse"}
	}
	w := again.Stmts[0].GetStmt().GetSelectStmt().WhereClause
	a := proto.Clone(sel.WhereClause)
	b := proto.Clone(w)
	clearLocations(a.ProtoReflect())
	clearLocations(b.ProtoReflect())
	if !proto.Equal(a, b) {
		return "", &Error{Message: "internal error: the deparsed where clause differs from the original"}
	}
	return sql, nil
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
