// Package where parses, validates and evaluates the where clause of a shape:
// a SQL boolean expression over the columns of one table, with parameters
// $1..$n.
//
// Postgres runs the clause for a shape's initial snapshot
// (SELECT ... WHERE (<Expr.SQL()>)); this package evaluates the same clause in
// Go on every replicated row change. The two must agree exactly, so the
// package reproduces Postgres's semantics for the supported subset of SQL:
// three-valued logic, operator and common-type resolution, implicit casts and
// the comparison rules of each type. README.md lists the grammar, the
// per-type semantics and what is rejected.
//
// Use: Parse (or ParseTable) once per shape definition, Bind once per
// subscription (it converts constants and parameters to their types by
// asking Postgres, see PGCoerce), then Pred.Eval or Pred.Match per row.
package where

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// Tri is a three-valued truth value.
type Tri uint8

// Truth values. Unknown is SQL NULL.
const (
	False Tri = iota
	True
	Unknown
)

func (t Tri) String() string {
	switch t {
	case False:
		return "false"
	case True:
		return "true"
	}
	return "unknown"
}

// Error is a user-facing error in a where clause or its parameters.
type Error struct {
	// Message describes the problem; it ends with "at position N" when the
	// problem has a position.
	Message string
	// Pos is the 1-based character position of the problem in the
	// expression, or 0.
	Pos int
}

func (e *Error) Error() string { return e.Message }

// MaxLen is the longest expression Parse accepts, in bytes.
const MaxLen = 16 << 10

// maxDepth bounds the nesting of the expression.
const maxDepth = 100

// Expr is a parsed and type-checked where clause. It is immutable and safe
// for concurrent use.
type Expr struct {
	src     string
	sql     string
	nparams int
	lits    []Literal
	root    *ir
}

// Literal is a constant or a parameter occurrence that is converted to a
// type before evaluation, by Postgres (see Coerce).
type Literal struct {
	// Param is the 1-based parameter number, or 0 for a constant.
	Param int
	// Text is the constant's text; nil for NULL or for a parameter.
	Text *string
	// Type is the type Postgres converts the literal to: the operator's
	// input type (e.g. the compared column's type without its typmod), or
	// the type of an explicit cast (with its typmod, e.g. numeric(10,2)).
	// Name is a valid SQL type name for a cast.
	Type coltype.Type
	// Pos is the 1-based character position of the literal in the
	// expression.
	Pos int
}

// Parse validates expr, a boolean SQL expression over cols (in the order the
// rows passed to Pred.Eval will have) with parameters $1..$nparams. Column
// references must not be qualified; use ParseTable to accept references
// qualified with the table name. Errors are *Error.
func Parse(expr string, cols []protocol.Column, nparams int) (*Expr, error) {
	return parse(expr, "", "", cols, nparams)
}

// ParseTable is Parse for a where clause on table schema.table: column
// references may be qualified as table.col or schema.table.col. Expr.SQL
// never qualifies columns.
func ParseTable(expr, schema, table string, cols []protocol.Column, nparams int) (*Expr, error) {
	return parse(expr, schema, table, cols, nparams)
}

const prefix = "SELECT WHERE "

func parse(expr, schema, table string, cols []protocol.Column, nparams int) (e *Expr, err error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &Error{Message: "the where clause is empty"}
	}
	if len(expr) > MaxLen {
		return nil, &Error{Message: fmt.Sprintf("the where clause is too long (%d bytes, at most %d)", len(expr), MaxLen)}
	}
	if !utf8.ValidString(expr) {
		return nil, &Error{Message: "the where clause is not valid UTF-8"}
	}
	if i := strings.IndexByte(expr, 0); i >= 0 {
		return nil, errAt(expr, i, "the where clause contains a NUL character")
	}
	if nparams < 0 {
		nparams = 0
	}
	src := prefix + expr
	tree, perr := pg_query.Parse(src)
	if perr != nil {
		return nil, syntaxError(expr, perr)
	}
	if err := checkTokens(expr); err != nil {
		return nil, err
	}
	if len(tree.Stmts) != 1 {
		return nil, &Error{Message: "the where clause must be a single expression; multiple statements are not allowed"}
	}
	sel := tree.Stmts[0].GetStmt().GetSelectStmt()
	if sel == nil || sel.WhereClause == nil || !onlyWhere(sel) {
		return nil, &Error{Message: "the where clause must be a single boolean expression, without FROM, GROUP BY, ORDER BY, LIMIT, UNION or other clauses"}
	}
	a := &analyzer{
		src: expr, schema: schema, table: table, cols: cols,
		nparams: nparams, paramTypes: make([]ptype, nparams),
	}
	a.colTypes = make([]ptype, len(cols))
	for i, c := range cols {
		a.colTypes[i] = typeOfColumn(c.Type)
	}
	root, err := a.run(sel.WhereClause)
	if err != nil {
		return nil, err
	}
	sql, err := deparse(tree, sel)
	if err != nil {
		return nil, err
	}
	e = &Expr{src: expr, sql: sql, nparams: nparams, root: root}
	e.lits = make([]Literal, len(a.lits))
	for i, l := range a.lits {
		e.lits[i] = Literal{Param: l.param, Text: l.text, Type: l.typ.coltype(l.mod), Pos: l.pos}
	}
	return e, nil
}

// SQL returns the expression as canonical SQL, deparsed from the parse tree,
// to embed as WHERE (<SQL>) in a query on the table. Parameters stay $n;
// column references are unqualified.
func (e *Expr) SQL() string { return e.sql }

// String returns SQL().
func (e *Expr) String() string { return e.sql }

// NumParams returns the number of parameters the expression was parsed for.
func (e *Expr) NumParams() int { return e.nparams }

// Literals lists every constant and parameter occurrence, in the order
// Postgres's parser analyses them (source order, except that the left
// operand of BETWEEN occurs once per comparison it expands to). The slice
// must not be modified.
func (e *Expr) Literals() []Literal { return e.lits }

// Coerce converts each literal's text (texts[i] is the constant text of
// lits[i], or the value of its parameter) to lits[i].Type exactly as Postgres
// would, returning one value per literal in coltype's representation; a nil
// text yields a NULL value. Invalid input should be reported as *Error.
type Coerce func(ctx context.Context, lits []Literal, texts []*string) ([]coltype.Value, error)

func errAt(src string, byteOff int, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if byteOff < 0 || byteOff > len(src) {
		return &Error{Message: msg}
	}
	pos := utf8.RuneCountInString(src[:byteOff]) + 1
	return &Error{Message: fmt.Sprintf("%s at position %d", msg, pos), Pos: pos}
}

func syntaxError(expr string, err error) *Error {
	pe, ok := err.(*parser.Error)
	if !ok {
		return &Error{Message: "syntax error: " + err.Error()}
	}
	msg := pe.Message
	if pe.Cursorpos > len(prefix) {
		// Cursorpos is a 1-based character position in prefix+expr.
		pos := pe.Cursorpos - len(prefix)
		return &Error{Message: fmt.Sprintf("%s at position %d", msg, pos), Pos: pos}
	}
	return &Error{Message: msg}
}

// checkTokens rejects comments and semicolons: the clause is embedded in
// other SQL, and neither has a use in a single expression.
func checkTokens(expr string) error {
	res, err := pg_query.Scan(expr)
	if err != nil {
		return syntaxError(expr, err)
	}
	for _, t := range res.Tokens {
		switch t.Token {
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			return errAt(expr, int(t.Start), "comments are not allowed in a where clause")
		case pg_query.Token_ASCII_59:
			return errAt(expr, int(t.Start), "the where clause must be a single expression; ';' is not allowed")
		}
	}
	return nil
}

func onlyWhere(s *pg_query.SelectStmt) bool {
	return len(s.DistinctClause) == 0 && s.IntoClause == nil && len(s.TargetList) == 0 &&
		len(s.FromClause) == 0 && len(s.GroupClause) == 0 && !s.GroupDistinct &&
		s.HavingClause == nil && len(s.WindowClause) == 0 && len(s.ValuesLists) == 0 &&
		len(s.SortClause) == 0 && s.LimitOffset == nil && s.LimitCount == nil &&
		s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_DEFAULT && len(s.LockingClause) == 0 &&
		s.WithClause == nil && s.Op == pg_query.SetOperation_SETOP_NONE && s.Larg == nil && s.Rarg == nil
}
