package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
)

// A compiled policy is a tree of cnodes, evaluated with SQL's three-valued
// logic: leaves are per-row predicates (package where) over the table's
// columns, with the row-independent parts (claims, current_user) as
// parameters computed once per session by Postgres; and set tests, for
// EXISTS (SELECT ... FROM t WHERE t.a = outer.b AND <filter>) and
// outer.b IN (SELECT t.a FROM t WHERE <filter>), against the session's copy
// of the keys of t's rows that pass the filter.
type cnode interface{ isNode() }

type andN struct{ kids []cnode }
type orN struct{ kids []cnode }
type notN struct{ kid cnode }
type constN struct{ v where.Tri }

// leafN is a predicate over one table's columns.
type leafN struct {
	sql    string      // where-clause SQL with $1..$n
	expr   *where.Expr // parsed against the table's columns at load
	params []int       // global parameter index of $1..$n
	schema string
	table  string
}

// setN tests the row's outer columns against a set.
type setN struct {
	set   int      // index into tablePolicy.sets
	outer []string // outer columns (empty: EXISTS without correlation)
	in    bool     // IN semantics (NULL-aware), else EXISTS
}

func (andN) isNode()   {}
func (orN) isNode()    {}
func (notN) isNode()   {}
func (constN) isNode() {}
func (*leafN) isNode() {}
func (setN) isNode()   {}

// setRef is a subquery's table, correlation and filter.
type setRef struct {
	innerKey  string
	innerQual string
	innerCols []string // correlated inner columns, pairwise with setN.outer
	filter    cnode    // over the inner table: the subquery's other conditions AND the inner table's own policy
	loadSQL   string   // reads the set's rows (every column of the inner table) under the user's role
	nparams   int
}

type compiler struct {
	ctx       context.Context
	q         Querier
	tables    *catalog.Tables
	role      string
	raw       map[uint32][]rawPolicy
	applies   map[uint32]bool
	canSelect map[uint32]bool
	keys      map[uint32]string
	rels      map[string]*changelog.Rel
}

// cctx is the state of compiling one table's policies.
type cctx struct {
	tp     *tablePolicy
	policy string
	where  string // table whose policy is compiled (schema.table), for messages
}

func (c *cctx) fail(format string, args ...any) error {
	return &PolicyError{Table: c.where, Policy: c.policy, Reason: fmt.Sprintf(format, args...)}
}

func (c *compiler) table(tp *tablePolicy) error {
	tb, err := c.tables.Describe(c.ctx, tp.oid, false)
	if err != nil {
		return fmt.Errorf("describe %s: %w", tp.key, err)
	}
	cx := &cctx{tp: tp, where: tp.key}
	root, err := c.policies(cx, tb, true)
	if err != nil {
		return err
	}
	tp.root = root
	return nil
}

// policies combines the table's SELECT policies as Postgres does: the OR
// of the permissive ones (none: no row) AND every restrictive one.
func (c *compiler) policies(cx *cctx, tb *catalog.Table, allowSets bool) (cnode, error) {
	var perm, restr []cnode
	for _, rp := range c.raw[tb.OID] {
		if rp.qual == nil {
			continue // only WITH CHECK: no effect on reads
		}
		saved := cx.policy
		cx.policy = rp.name
		n, err := c.expr(cx, *rp.qual, tb, allowSets)
		cx.policy = saved
		if err != nil {
			return nil, err
		}
		if rp.permissive {
			perm = append(perm, n)
		} else {
			restr = append(restr, n)
		}
	}
	var root cnode = constN{where.False}
	if len(perm) == 1 {
		root = perm[0]
	} else if len(perm) > 1 {
		root = orN{perm}
	}
	if len(restr) > 0 {
		root = andN{append([]cnode{root}, restr...)}
	}
	return root, nil
}

const selPrefix = "SELECT WHERE "

func (c *compiler) expr(cx *cctx, sql string, tb *catalog.Table, allowSets bool) (cnode, error) {
	tree, err := pg_query.Parse(selPrefix + sql)
	if err != nil || len(tree.Stmts) != 1 || tree.Stmts[0].GetStmt().GetSelectStmt() == nil {
		return nil, cx.fail("cannot parse its USING expression %q", sql)
	}
	return c.node(cx, tree.Stmts[0].GetStmt().GetSelectStmt().WhereClause, tb, allowSets)
}

func (c *compiler) node(cx *cctx, n *pg_query.Node, tb *catalog.Table, allowSets bool) (cnode, error) {
	if !contains(n, isSubLink) {
		return c.leaf(cx, n, tb, "")
	}
	if be := n.GetBoolExpr(); be != nil {
		var kids []cnode
		for _, a := range be.Args {
			k, err := c.node(cx, a, tb, allowSets)
			if err != nil {
				return nil, err
			}
			kids = append(kids, k)
		}
		switch be.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			return andN{kids}, nil
		case pg_query.BoolExprType_OR_EXPR:
			return orN{kids}, nil
		case pg_query.BoolExprType_NOT_EXPR:
			return notN{kids[0]}, nil
		}
	}
	if sl := n.GetSubLink(); sl != nil {
		if !allowSets {
			return nil, cx.fail("a subquery in the policy of a table that another policy's subquery reads is not supported (one level of subqueries)")
		}
		return c.sublink(cx, sl, tb)
	}
	return nil, cx.fail("a subquery is supported only as a whole term: EXISTS (SELECT ... FROM t WHERE t.col = %s.col AND ...) or col IN (SELECT col FROM t WHERE ...), combined with AND, OR, NOT", tb.Rel.Table)
}

// leaf compiles an expression without subqueries into a where predicate
// over tb's columns. inner, when set, is the alias of tb in a subquery:
// column references qualified with it are tb's; others are refused.
func (c *compiler) leaf(cx *cctx, n *pg_query.Node, tb *catalog.Table, inner string) (cnode, error) {
	n = proto.Clone(n).(*pg_query.Node)
	var params []int
	var ferr error
	replace := func(x *pg_query.Node) *pg_query.Node {
		if ferr != nil || contains(x, isColumnRef) || !contains(x, isCall) {
			return nil
		}
		if err := c.checkCalls(cx, x); err != nil {
			ferr = err
			return x
		}
		src, err := deparse(x)
		if err != nil {
			ferr = cx.fail("%v", err)
			return x
		}
		typ, err := c.typeOf(src)
		if err != nil {
			ferr = cx.fail("cannot evaluate %s as role %s: %v", src, c.role, err)
			return x
		}
		cx.tp.params = append(cx.tp.params, src)
		params = append(params, len(cx.tp.params)-1)
		p, err := castParam(len(params), typ)
		if err != nil {
			ferr = cx.fail("%v", err)
			return x
		}
		return p
	}
	root := &pg_query.Node{Node: &pg_query.Node_BoolExpr{BoolExpr: &pg_query.BoolExpr{Boolop: pg_query.BoolExprType_AND_EXPR, Args: []*pg_query.Node{n}}}}
	rewrite(root.ProtoReflect(), replace)
	if ferr != nil {
		return nil, ferr
	}
	n = root.GetBoolExpr().Args[0]
	if inner != "" {
		if err := c.unqualify(cx, n, inner, tb); err != nil {
			return nil, err
		}
	}
	sql, err := deparse(n)
	if err != nil {
		return nil, cx.fail("%v", err)
	}
	expr, err := where.ParseTable(sql, tb.Rel.Schema, tb.Rel.Table, tb.Rel.Columns, len(params))
	if err != nil {
		return nil, cx.fail("%s: %v (the service evaluates policies on the stream and supports the where-clause grammar of shapes, with claims and current_user)", sql, err)
	}
	return &leafN{sql: sql, expr: expr, params: params, schema: tb.Rel.Schema, table: tb.Rel.Table}, nil
}

// unqualify strips the inner alias from column references of a subquery
// condition, refusing references to other tables.
func (c *compiler) unqualify(cx *cctx, n *pg_query.Node, alias string, tb *catalog.Table) error {
	var err error
	walk(n.ProtoReflect(), func(x *pg_query.Node) {
		cr := x.GetColumnRef()
		if cr == nil || err != nil {
			return
		}
		names := fieldNames(cr)
		switch {
		case len(names) == 1:
		case len(names) == 2 && names[0] == alias:
			cr.Fields = cr.Fields[1:]
		default:
			err = cx.fail("in the subquery on %s, %s refers to another table: only equalities %s.col = %s.col may correlate the subquery", tb.Rel.Table, strings.Join(names, "."), alias, cx.tp.key[strings.IndexByte(cx.tp.key, '.')+1:])
		}
	})
	return err
}

// calls allowed in the row-independent parts of a policy: they depend only
// on the session (its claims, its role), never on time or on tables.
var allowedCalls = map[string]bool{
	"current_setting": true, "coalesce": true, "nullif": true, "lower": true, "upper": true,
	"btrim": true, "trim": true, "jsonb_extract_path_text": true, "json_extract_path_text": true,
	"jsonb_extract_path": true, "json_extract_path": true,
	"auth.uid": true, "auth.jwt": true, "auth.role": true, "auth.email": true,
}

func (c *compiler) checkCalls(cx *cctx, n *pg_query.Node) error {
	var err error
	walk(n.ProtoReflect(), func(x *pg_query.Node) {
		if err != nil {
			return
		}
		if fc := x.GetFuncCall(); fc != nil {
			var parts []string
			for _, f := range fc.Funcname {
				parts = append(parts, f.GetString_().GetSval())
			}
			name := strings.Join(parts, ".")
			if strings.HasPrefix(name, "pg_catalog.") {
				name = strings.TrimPrefix(name, "pg_catalog.")
			}
			if !allowedCalls[name] {
				err = cx.fail("function %s() is not supported: the row-independent parts of a policy may call only current_setting, auth.uid/jwt/role/email, coalesce, nullif, lower, upper, btrim and json(b)_extract_path(_text) (a function reading tables or the clock would change access without a row change)", name)
			}
		}
		if sv := x.GetSqlvalueFunction(); sv != nil {
			switch sv.Op {
			case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE,
				pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER, pg_query.SQLValueFunctionOp_SVFOP_USER:
			default:
				err = cx.fail("%s is not supported in a policy: access would change with the clock, not with a row change", strings.ToLower(strings.TrimPrefix(sv.Op.String(), "SVFOP_")))
			}
		}
	})
	return err
}

// typeOf asks Postgres for the type of a row-independent expression, as
// the role (claims unset).
func (c *compiler) typeOf(src string) (string, error) {
	var typ string
	err := c.inRole(func(q Querier) error {
		return q.QueryRow(c.ctx, "SELECT format_type(pg_typeof(("+src+")), NULL)").Scan(&typ)
	})
	return typ, err
}

// inRole runs f in a read-only transaction as the role.
func (c *compiler) inRole(f func(q Querier) error) error {
	tx, err := beginTx(c.ctx, c.q)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if err := As(c.ctx, tx, c.role, nil, ""); err != nil {
		return err
	}
	return f(tx)
}

func beginTx(ctx context.Context, q Querier) (pgx.Tx, error) {
	type beginner interface {
		BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	}
	b, ok := q.(beginner)
	if !ok {
		return nil, errors.New("authz: the querier cannot begin transactions")
	}
	return b.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
}

func castParam(i int, typ string) (*pg_query.Node, error) {
	tree, err := pg_query.Parse(fmt.Sprintf("SELECT $%d::%s", i, typ))
	if err != nil || len(tree.Stmts) != 1 {
		return nil, fmt.Errorf("cannot cast a parameter to %s", typ)
	}
	return tree.Stmts[0].GetStmt().GetSelectStmt().TargetList[0].GetResTarget().Val, nil
}

// sublink compiles EXISTS (...) and x IN (SELECT ...).
func (c *compiler) sublink(cx *cctx, sl *pg_query.SubLink, outer *catalog.Table) (cnode, error) {
	sel := sl.Subselect.GetSelectStmt()
	if sel == nil || len(sel.FromClause) != 1 || sel.FromClause[0].GetRangeVar() == nil ||
		len(sel.GroupClause) > 0 || sel.HavingClause != nil || sel.WithClause != nil || sel.LimitCount != nil ||
		sel.LimitOffset != nil || len(sel.DistinctClause) > 0 || sel.Op != pg_query.SetOperation_SETOP_NONE || len(sel.WindowClause) > 0 {
		return nil, cx.fail("the subquery must read one table, with a WHERE clause only (no joins, GROUP BY, LIMIT, DISTINCT, UNION, WITH)")
	}
	rv := sel.FromClause[0].GetRangeVar()
	name := rv.Relname
	if rv.Schemaname != "" {
		name = catalog.QuoteIdent(rv.Schemaname) + "." + catalog.QuoteIdent(rv.Relname)
	} else {
		name = catalog.QuoteIdent(rv.Relname)
	}
	inner, err := c.tables.Lookup(c.ctx, name)
	if err != nil {
		if errors.Is(err, catalog.ErrNotElectrified) || errors.Is(err, catalog.ErrUnknownTable) {
			return nil, cx.fail("its subquery reads %s, which is not electrified: CALL lattice.electrify('%s') so that its changes reach the service", rv.Relname, rv.Relname)
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	innerKey := inner.Rel.Schema + "." + inner.Rel.Table
	c.rels[innerKey] = inner.Rel
	if !c.canSelect[inner.OID] {
		return nil, cx.fail("its subquery reads %s, which role %s may not SELECT: GRANT SELECT ON %s TO %s", innerKey, c.role, inner.QualifiedSQL, catalog.QuoteIdent(c.role))
	}
	alias := rv.Relname
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		alias = rv.Alias.Aliasname
	}
	outerName := outer.Rel.Table
	ref := &setRef{innerKey: innerKey, innerQual: inner.QualifiedSQL}
	sn := setN{}
	// Conjuncts of the subquery's WHERE: correlations and the filter.
	var conj []*pg_query.Node
	var split func(n *pg_query.Node)
	split = func(n *pg_query.Node) {
		if be := n.GetBoolExpr(); be != nil && be.Boolop == pg_query.BoolExprType_AND_EXPR {
			for _, a := range be.Args {
				split(a)
			}
			return
		}
		conj = append(conj, n)
	}
	if sel.WhereClause != nil {
		split(sel.WhereClause)
	}
	var rest []*pg_query.Node
	for _, n := range conj {
		if ic, oc, ok := correlation(n, alias, outerName); ok {
			ref.innerCols = append(ref.innerCols, ic)
			sn.outer = append(sn.outer, oc)
			continue
		}
		rest = append(rest, n)
	}
	switch sl.SubLinkType {
	case pg_query.SubLinkType_EXISTS_SUBLINK:
	case pg_query.SubLinkType_ANY_SUBLINK:
		if len(sl.OperName) > 0 {
			if len(sl.OperName) != 1 || sl.OperName[0].GetString_().GetSval() != "=" {
				return nil, cx.fail("only = ANY / IN subqueries are supported")
			}
		}
		if len(ref.innerCols) > 0 {
			return nil, cx.fail("an IN subquery must not also be correlated: write EXISTS (SELECT 1 FROM %s WHERE %s.col = %s.col AND ...)", rv.Relname, alias, outerName)
		}
		var outs []*pg_query.Node
		if re := sl.Testexpr.GetRowExpr(); re != nil {
			outs = re.Args
		} else {
			outs = []*pg_query.Node{sl.Testexpr}
		}
		if len(outs) != len(sel.TargetList) {
			return nil, cx.fail("the IN subquery returns %d columns for %d", len(sel.TargetList), len(outs))
		}
		for i, o := range outs {
			on := columnName(o, outerName)
			in := columnName(sel.TargetList[i].GetResTarget().GetVal(), alias)
			if on == "" || in == "" {
				return nil, cx.fail("IN (SELECT ...) is supported between plain columns only")
			}
			sn.outer = append(sn.outer, on)
			ref.innerCols = append(ref.innerCols, in)
		}
		sn.in = true
	default:
		return nil, cx.fail("only EXISTS and IN subqueries are supported")
	}
	for i := range sn.outer {
		oc, ic := findCol(outer, sn.outer[i]), findCol(inner, ref.innerCols[i])
		if oc == nil || ic == nil {
			return nil, cx.fail("the subquery correlates unknown columns %s and %s", sn.outer[i], ref.innerCols[i])
		}
		if !sameKeyType(oc.Type.Name, ic.Type.Name) {
			return nil, cx.fail("the subquery compares %s (%s) with %s.%s (%s): the service matches such keys only between columns of the same type", sn.outer[i], oc.Type.Name, rv.Relname, ref.innerCols[i], ic.Type.Name)
		}
	}
	// The filter: the other conditions, and the inner table's own policy
	// (row-level security applies inside the policy's subquery too).
	var parts []cnode
	var restSQL []string
	for _, n := range rest {
		lf, err := c.leaf(cx, n, inner, alias)
		if err != nil {
			return nil, err
		}
		parts = append(parts, lf)
		src, err := deparse(n)
		if err != nil {
			return nil, cx.fail("%v", err)
		}
		restSQL = append(restSQL, "("+src+")")
	}
	if c.applies[inner.OID] {
		ip, err := c.policies(&cctx{tp: cx.tp, where: innerKey}, inner, false)
		if err != nil {
			var pe *PolicyError
			if errors.As(err, &pe) {
				pe.Reason = fmt.Sprintf("%s (read by policy %q on %s)", pe.Reason, cx.policy, cx.tp.key)
			}
			return nil, err
		}
		parts = append(parts, ip)
	}
	switch len(parts) {
	case 0:
		ref.filter = constN{where.True}
	case 1:
		ref.filter = parts[0]
	default:
		ref.filter = andN{parts}
	}
	cond := "true"
	if len(restSQL) > 0 {
		cond = strings.Join(restSQL, " AND ")
	}
	ref.loadSQL = "SELECT " + columnList(inner, alias) + " FROM " + inner.QualifiedSQL + " " + catalog.QuoteIdent(alias) + " WHERE " + cond
	cx.tp.sets = append(cx.tp.sets, ref)
	sn.set = len(cx.tp.sets) - 1
	return sn, nil
}

func columnList(tb *catalog.Table, alias string) string {
	var b strings.Builder
	for i, c := range tb.Rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(catalog.QuoteIdent(alias) + "." + catalog.QuoteIdent(c.Name))
	}
	return b.String()
}

func findCol(tb *catalog.Table, name string) *protocol.Column {
	for i := range tb.Rel.Columns {
		if tb.Rel.Columns[i].Name == name {
			return &tb.Rel.Columns[i]
		}
	}
	return nil
}

// sameKeyType reports whether values of the two column types compare
// equal exactly when their encodings are equal.
func sameKeyType(a, b string) bool {
	ints := map[string]bool{"smallint": true, "integer": true, "bigint": true}
	texts := map[string]bool{"text": true}
	norm := func(t string) string {
		if strings.HasPrefix(t, "character varying") {
			return "text"
		}
		return t
	}
	a, b = norm(a), norm(b)
	return a == b && !strings.HasPrefix(a, "character(") && a != "real" && a != "double precision" && a != "numeric" ||
		ints[a] && ints[b] || texts[a] && texts[b]
}

// correlation recognises inner.col = outer.col (either order).
func correlation(n *pg_query.Node, alias, outer string) (inner, outerCol string, ok bool) {
	ae := n.GetAExpr()
	if ae == nil || ae.Kind != pg_query.A_Expr_Kind_AEXPR_OP || len(ae.Name) != 1 || ae.Name[0].GetString_().GetSval() != "=" {
		return "", "", false
	}
	l, r := ae.Lexpr.GetColumnRef(), ae.Rexpr.GetColumnRef()
	if l == nil || r == nil {
		return "", "", false
	}
	ln, rn := fieldNames(l), fieldNames(r)
	if len(ln) != 2 || len(rn) != 2 {
		return "", "", false
	}
	if ln[0] == alias && rn[0] == outer && alias != outer {
		return ln[1], rn[1], true
	}
	if rn[0] == alias && ln[0] == outer && alias != outer {
		return rn[1], ln[1], true
	}
	return "", "", false
}

// columnName is the column a plain reference names (qualified by qual or
// not), "" for anything else.
func columnName(n *pg_query.Node, qual string) string {
	cr := n.GetColumnRef()
	if cr == nil {
		return ""
	}
	names := fieldNames(cr)
	switch {
	case len(names) == 1:
		return names[0]
	case len(names) == 2 && names[0] == qual:
		return names[1]
	}
	return ""
}

func fieldNames(cr *pg_query.ColumnRef) []string {
	var out []string
	for _, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return []string{"*"}
		}
		out = append(out, s.Sval)
	}
	return out
}

func isSubLink(n *pg_query.Node) bool   { return n.GetSubLink() != nil }
func isColumnRef(n *pg_query.Node) bool { return n.GetColumnRef() != nil || n.GetSubLink() != nil }
func isCall(n *pg_query.Node) bool {
	return n.GetFuncCall() != nil || n.GetSqlvalueFunction() != nil
}

var nodeName = (&pg_query.Node{}).ProtoReflect().Descriptor().FullName()

// walk calls f on n and every Node below it.
func walk(m protoreflect.Message, f func(*pg_query.Node)) {
	if m.Descriptor().FullName() == nodeName {
		f(m.Interface().(*pg_query.Node))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), f)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			walk(v.Message(), f)
		}
		return true
	})
}

func contains(n *pg_query.Node, pred func(*pg_query.Node) bool) bool {
	found := false
	walk(n.ProtoReflect(), func(x *pg_query.Node) {
		if !found && pred(x) {
			found = true
		}
	})
	return found
}

// rewrite replaces, top-down, every Node below m for which f returns a
// replacement (whose own children are not visited).
func rewrite(m protoreflect.Message, f func(*pg_query.Node) *pg_query.Node) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				cm := l.Get(i).Message()
				if cm.Descriptor().FullName() == nodeName {
					if r := f(cm.Interface().(*pg_query.Node)); r != nil {
						l.Set(i, protoreflect.ValueOfMessage(r.ProtoReflect()))
						continue
					}
				}
				rewrite(cm, f)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			cm := v.Message()
			if cm.Descriptor().FullName() == nodeName {
				if r := f(cm.Interface().(*pg_query.Node)); r != nil {
					m.Set(fd, protoreflect.ValueOfMessage(r.ProtoReflect()))
					return true
				}
			}
			rewrite(cm, f)
		}
		return true
	})
}

// deparse renders an expression as SQL.
func deparse(n *pg_query.Node) (string, error) {
	tree, err := pg_query.Parse(selPrefix + "true")
	if err != nil {
		return "", err
	}
	tree.Stmts[0].GetStmt().GetSelectStmt().WhereClause = n
	out, err := pg_query.Deparse(tree)
	if err != nil || !strings.HasPrefix(out, selPrefix) {
		return "", fmt.Errorf("cannot render an expression as SQL: %v", err)
	}
	return strings.TrimPrefix(out, selPrefix), nil
}
