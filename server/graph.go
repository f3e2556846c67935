package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/authz"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
)

// Relational shapes.
//
// A shape with includes is a tree of nodes, one per level: the root node
// holds the rows of its table matching its where clause; an include node
// holds the rows of its table that match its own where clause and are
// related, by a foreign key, to a row its parent node holds. The relation
// goes either way: "children" nodes hold rows that reference a row of the
// parent node (a project's issues), "parents" nodes hold rows that a row of
// the parent node references (an issue's assignee).
//
// Besides the shapes' nodes, a session has one "closure" node per table
// that a held row may reference: a row held for any reason makes the rows
// it references held too (referential closure), transitively.
//
// The session keeps, per node, which rows it holds (by primary key), and
// per table, how many nodes hold each row (hrow.n) and the foreign key
// values of the row (hrow.fks). The client holds exactly the rows with
// n > 0: a row moves in when n becomes positive and moves out when it drops
// to zero. Live changes are evaluated against this state; a row that
// starts to be held brings the rows below it, which the service reads from
// Postgres (fetch), in one REPEATABLE READ snapshot per transaction. Rows
// read that way are newer than the stream position: later streamed changes
// to them that the snapshot already saw are skipped (snapFilter).
//
// Memory: per session, one map entry per held row (key bytes plus about
// 100 bytes, plus 16 bytes a foreign key) and one per row per node that
// holds it (key bytes plus about 80 bytes). It is bounded by the rows the
// client holds; --max-shape-rows bounds the initial data of a shape.

type nodeKind uint8

const (
	kindRoot     nodeKind = iota
	kindChildren          // rows referencing a row of the up node
	kindParents           // rows a row of the up node references
	kindClosure           // rows referenced by any held row
)

// fkey is a foreign key between electrified tables, referencing the
// parent's primary key. Cols are the child's columns in the order of the
// parent's primary key.
type fkey struct {
	name   string
	child  string // relKey
	parent string // relKey
	cols   []string
	i      int // index in graph.out[child]
	// idx caches the column indexes of cols in a layout of the child.
	idxRel *changelog.Rel
	idx    []int
}

func (f *fkey) colIdx(rel *changelog.Rel) []int {
	if f.idxRel == rel {
		return f.idx
	}
	f.idx = f.idx[:0]
	for _, c := range f.cols {
		j := -1
		for k := range rel.Columns {
			if rel.Columns[k].Name == c {
				j = k
				break
			}
		}
		f.idx = append(f.idx, j)
	}
	f.idxRel = rel
	return f.idx
}

// keyOf encodes the referenced key of row ("" when a column is NULL).
func (f *fkey) keyOf(rel *changelog.Rel, row []coltype.Value) string {
	var b []byte
	for _, j := range f.colIdx(rel) {
		if j < 0 || row[j].Kind == coltype.Null {
			return ""
		}
		b = protocol.AppendValue(b, row[j])
	}
	return string(b)
}

type node struct {
	sh    *shape // nil for closure nodes
	kind  nodeKind
	table *catalog.Table
	key   string
	pred  *where.Pred
	where string
	param []*string
	rel   *changelog.Rel // layout pred is bound to
	up    *node
	fk    *fkey // the edge to up (children, parents)
	kids  []*node

	// eqCol and eqKey: a root predicate "eqCol = $1" and the key of $1.
	eqCol, eqKey string

	members map[string]*member
	byUp    map[string]map[string]struct{} // children: up key -> member keys
	refs    map[string]int                 // parents, closure: key -> referencing rows
}

type member struct{ up string }

func (n *node) match(row []coltype.Value) bool { return n.pred == nil || n.pred.Match(row) }

type hrow struct {
	n   int
	fks []string // per graph.out[table]
	// acc holds, under row-level security, the row's values of the
	// columns each set of its table's policy matches (authz.SetCols).
	acc []string
}

// graph is the relational state of a session.
type graph struct {
	s       *session
	byTable map[string][]*node
	closure map[string]*node
	out     map[string][]*fkey // foreign keys by child table
	tables  map[string]*catalog.Table
	held    map[string]map[string]*hrow
	pkIDs   map[string]string // table -> colset id of its primary key
	in      *interests

	// per transaction
	w       *txnWriter
	own     bool // it is the session's client's own transaction (change)
	fetches []fetchReq
	cur     string // table + "\x00" + key of the row a change is being applied to
	snaps   []*snapFilter
	tx      pgx.Tx
	txSnap  *snapFilter
	// vers holds the versions of the rows fetched in the open snapshot, by
	// table and key, until it ends.
	vers map[string]uint64
	// sent holds the rows (table + "\x00" + key) sent to the client as
	// read in the open snapshot: reading one again (another node over
	// the same rows) sends nothing.
	sent    map[string]struct{}
	rows    int // rows read by fetches of the current snapshot
	limit   int // 0: none
	limitID string

	// Row-level security (s.acc set): accBy indexes held rows by their
	// acc values (table -> set -> value -> keys); probes and rechecks are
	// the reads that access changes need.
	accBy    map[string][]map[string]map[string]struct{}
	probes   []probeReq
	rechecks map[string]map[string]struct{}
	setsOn   bool // the tables policies' subqueries read are routed to the session
	// routed counts, per table, the root nodes whose rows the router
	// finds by the keys of the table's policy sets (authz.RouteSets).
	routed map[string]int
}

// probeReq reads the rows of table whose cols hold one of keys (every row
// when cols is nil): rows that access changes may have made readable.
type probeReq struct {
	table string
	cols  []string
	keys  []string
}

type fetchReq struct {
	n    *node
	keys []string // nil: every row (a root)
}

// snapFilter names rows read from a Postgres snapshot: streamed changes
// to them in transactions the snapshot saw are skipped.
type snapFilter struct {
	snap *xidSnapshot
	keys map[string]map[string]struct{}
}

func newGraph(s *session) *graph {
	return &graph{s: s, byTable: map[string][]*node{}, closure: map[string]*node{},
		out: map[string][]*fkey{}, tables: map[string]*catalog.Table{}, held: map[string]map[string]*hrow{},
		pkIDs: map[string]string{}, in: newInterests()}
}

// ---- shape definition -----------------------------------------------------

// foreignKeys reads the foreign keys from or to table oid between
// electrified tables that reference a primary key.
func (s *session) foreignKeys(ctx context.Context, oid uint32) ([]fkDesc, error) {
	rows, err := s.svc.pool.Query(ctx, `
SELECT con.conname, con.conrelid::oid::int8, con.confrelid::oid::int8,
  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
  ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint con
WHERE con.contype = 'f' AND (con.conrelid = $1 OR con.confrelid = $1)
  AND EXISTS (SELECT 1 FROM lattice.electrified e WHERE e.relid = con.conrelid)
  AND EXISTS (SELECT 1 FROM lattice.electrified e WHERE e.relid = con.confrelid)
ORDER BY con.conname`, int64(oid))
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	defer rows.Close()
	var out []fkDesc
	for rows.Next() {
		var d fkDesc
		var c, p int64
		if err := rows.Scan(&d.name, &c, &p, &d.cols, &d.refCols); err != nil {
			return nil, fmt.Errorf("read foreign keys: %w", err)
		}
		d.child, d.parent = uint32(c), uint32(p)
		out = append(out, d)
	}
	return out, rows.Err()
}

type fkDesc struct {
	name          string
	child, parent uint32
	cols, refCols []string
}

// fkFor returns the canonical fkey of a foreign key description, nil when
// it does not reference the parent's primary key.
func (g *graph) fkFor(d fkDesc, child, parent *catalog.Table) *fkey {
	ck := relKey(child.Rel.Schema, child.Rel.Table)
	for _, f := range g.out[ck] {
		if f.name == d.name {
			return f
		}
	}
	prel := parent.Rel
	if len(d.refCols) != len(prel.PK) {
		return nil
	}
	cols := make([]string, len(prel.PK))
	for i, k := range prel.PK {
		found := false
		for j, rc := range d.refCols {
			if rc == prel.Columns[k].Name {
				cols[i] = d.cols[j]
				found = true
			}
		}
		if !found {
			return nil
		}
	}
	f := &fkey{name: d.name, child: ck, parent: relKey(prel.Schema, prel.Table), cols: cols, i: len(g.out[ck])}
	g.out[ck] = append(g.out[ck], f)
	return f
}

// buildTree makes the nodes of a shape; sh.table, pred and def are set.
func (s *session) buildTree(g *graph, sh *shape) error {
	root := &node{sh: sh, kind: kindRoot, table: sh.table, key: sh.key, pred: sh.pred, where: sh.def.Where, param: sh.def.Params, rel: sh.table.Rel}
	if err := s.eqIndex(root); err != nil {
		return err
	}
	if err := s.buildIncludes(g, sh, root, sh.def.Include, 1); err != nil {
		return err
	}
	sh.root = root
	return nil
}

func (s *session) buildIncludes(g *graph, sh *shape, up *node, incs []protocol.Include, depth int) error {
	if len(incs) > 0 && depth > protocol.MaxIncludeDepth {
		return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: includes nested deeper than %d (a cycle of includes needs a bound)", sh.id, protocol.MaxIncludeDepth), false}
	}
	if len(incs) == 0 {
		return nil
	}
	fks, err := s.foreignKeys(s.ctx, up.table.OID)
	if err != nil {
		return err
	}
	for i := range incs {
		in := &incs[i]
		path := up.table.Rel.Table + " -> " + in.Table
		tb, err := s.svc.tables.Lookup(s.ctx, in.Table)
		if err != nil {
			if errors.Is(err, catalog.ErrUnknownTable) || errors.Is(err, catalog.ErrNotElectrified) {
				return &clientError{protocol.ErrUnknownTable, fmt.Sprintf("shape %q: include %s: %v", sh.id, path, err), false}
			}
			return fmt.Errorf("look up %s: %w", in.Table, err)
		}
		// Candidate relations: up's table references tb (parents), or tb
		// references up's table (children).
		type cand struct {
			d    fkDesc
			kind nodeKind
		}
		var cands []cand
		for _, d := range fks {
			if d.child == tb.OID && d.parent == up.table.OID {
				cands = append(cands, cand{d, kindChildren})
			} else if d.child == up.table.OID && d.parent == tb.OID {
				cands = append(cands, cand{d, kindParents})
			}
		}
		if in.Via != "" {
			var keep []cand
			for _, c := range cands {
				if containsStr(c.d.cols, in.Via) {
					keep = append(keep, c)
				}
			}
			if len(keep) == 0 {
				return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: no foreign key between them uses column %q", sh.id, path, in.Via), false}
			}
			cands = keep
		}
		// A self-referencing key means the rows that reference this one
		// (children); the referenced rows come with the closure anyway.
		if len(cands) == 2 && cands[0].d.name == cands[1].d.name {
			if cands[0].kind != kindChildren {
				cands[0] = cands[1]
			}
			cands = cands[:1]
		}
		switch {
		case len(cands) == 0:
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: unknown relation: no foreign key relates %s and %s", sh.id, path, up.table.Rel.Table, tb.Rel.Table), false}
		case len(cands) > 1:
			var names []string
			for _, c := range cands {
				names = append(names, strings.Join(c.d.cols, ","))
			}
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: several foreign keys relate them (columns %s): set \"via\"", sh.id, path, strings.Join(names, "; ")), false}
		}
		c := cands[0]
		child, parent := tb, up.table
		if c.kind == kindParents {
			child, parent = up.table, tb
		}
		f := g.fkFor(c.d, child, parent)
		if f == nil {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: foreign key %s does not reference a primary key", sh.id, path, c.d.name), false}
		}
		n := &node{sh: sh, kind: c.kind, table: tb, key: relKey(tb.Rel.Schema, tb.Rel.Table), up: up, fk: f, rel: tb.Rel, param: in.Params}
		if strings.TrimSpace(in.Where) != "" {
			expr, err := where.ParseTable(in.Where, tb.Rel.Schema, tb.Rel.Table, tb.Rel.Columns, len(in.Params))
			if err != nil {
				return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: where: %v", sh.id, path, err), false}
			}
			pred, err := expr.Bind(s.ctx, in.Params, where.PGCoerce(s.svc.pool))
			if err != nil {
				var we *where.Error
				if errors.As(err, &we) {
					return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s: where: %v", sh.id, path, err), false}
				}
				return fmt.Errorf("bind shape %q: %w", sh.id, err)
			}
			n.pred, n.where = pred, expr.SQL()
		} else if len(in.Params) > 0 {
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s has params but no where clause", sh.id, path), false}
		}
		// limits.Check refused includes that repeat another word for
		// word; this finds those that name the same relation otherwise
		// (a schema, a via, the where clause's spelling).
		for j, k := range up.kids {
			if k.table.OID == tb.OID && k.kind == n.kind && k.fk == n.fk && k.where == n.where && sameParams(k.param, n.param) {
				return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q: include %s (number %d of its level) repeats include number %d: the same table, foreign key (%s) and where clause; merge the two into one", sh.id, path, i+1, j+1, strings.Join(f.cols, ",")), false}
			}
		}
		up.kids = append(up.kids, n)
		if err := s.buildIncludes(g, sh, n, in.Include, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// addTable registers a table and, transitively, the tables its rows
// reference (closure nodes).
func (s *session) addTable(g *graph, tb *catalog.Table) error {
	k := relKey(tb.Rel.Schema, tb.Rel.Table)
	if _, ok := g.tables[k]; ok {
		return nil
	}
	g.tables[k] = tb
	if _, ok := g.held[k]; !ok {
		g.held[k] = map[string]*hrow{}
	}
	var pk []string
	for _, i := range tb.Rel.PK {
		pk = append(pk, tb.Rel.Columns[i].Name)
	}
	g.pkIDs[k] = colsetID(pk)
	g.useColset(k, pk, true)
	g.useTable(k, false, true)
	c := &node{kind: kindClosure, table: tb, key: k, rel: tb.Rel, members: map[string]*member{}, refs: map[string]int{}}
	g.closure[k] = c
	g.byTable[k] = append(g.byTable[k], c)
	fks, err := s.foreignKeys(s.ctx, tb.OID)
	if err != nil {
		return err
	}
	for _, d := range fks {
		if d.child != tb.OID {
			continue
		}
		ptb, err := s.svc.tables.Describe(s.ctx, d.parent, false)
		if err != nil {
			return fmt.Errorf("describe referenced table: %w", err)
		}
		if g.fkFor(d, tb, ptb) == nil {
			continue // references a unique key, not the primary key: not followed
		}
		if err := s.addTable(g, ptb); err != nil {
			return err
		}
	}
	return nil
}

// attach registers a shape's nodes with the graph (empty: no rows yet).
func (g *graph) attach(sh *shape) error {
	if acc := g.s.acc; acc != nil && !g.setsOn {
		// Every change of a table that policies' subqueries read can
		// change what the session may read.
		g.setsOn = true
		for _, t := range acc.SetTables() {
			g.useTable(t, true, true)
		}
	}
	var walk func(n *node) error
	walk = func(n *node) error {
		if err := g.s.addTable(g, n.table); err != nil {
			return err
		}
		n.members = map[string]*member{}
		switch n.kind {
		case kindRoot:
			g.rootInterest(n, true)
		case kindChildren:
			n.byUp = map[string]map[string]struct{}{}
			g.useColset(n.key, n.fk.cols, true)
		case kindParents:
			n.refs = map[string]int{}
		}
		g.byTable[n.key] = append(g.byTable[n.key], n)
		for _, k := range n.kids {
			if err := walk(k); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(sh.root)
}

// ---- membership -------------------------------------------------------------

func (g *graph) rowFKs(table string, rel *changelog.Rel, row []coltype.Value) []string {
	fks := g.out[table]
	if len(fks) == 0 {
		return nil
	}
	out := make([]string, len(fks))
	for i, f := range fks {
		out[i] = f.keyOf(rel, row)
	}
	return out
}

// hold counts one more node holding the row; rel and row may be nil when
// the row is already held.
func (g *graph) hold(table, key string, rel *changelog.Rel, row []coltype.Value) error {
	h := g.held[table][key]
	if h != nil {
		h.n++
		return nil
	}
	h = &hrow{n: 1, fks: g.rowFKs(table, rel, row)}
	g.held[table][key] = h
	if acc := g.s.acc; acc != nil && rel != nil {
		g.indexAcc(table, key, h, g.accKeys(table, rel, row))
	}
	g.interest(table, g.pkIDs[table], key, true)
	for i, k := range h.fks {
		if k != "" {
			if err := g.cref(g.out[table][i].parent, k); err != nil {
				return err
			}
		}
	}
	if g.cur != table+"\x00"+key {
		return g.w.addVersion(protocol.OpInsert, rel, row, g.vers[table+"\x00"+key])
	}
	return nil
}

// release counts one node less holding the row; at zero it moves out.
func (g *graph) release(table, key string) error {
	h := g.held[table][key]
	if h == nil {
		return nil
	}
	h.n--
	if h.n > 0 {
		return nil
	}
	delete(g.held[table], key)
	g.indexAcc(table, key, h, nil)
	g.interest(table, g.pkIDs[table], key, false)
	if g.cur != table+"\x00"+key {
		if err := g.moveOut(table, key); err != nil {
			return err
		}
	}
	for i, k := range h.fks {
		if k != "" {
			if err := g.cunref(g.out[table][i].parent, k); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *graph) moveOut(table, key string) error {
	rel := g.tables[table].Rel
	vals, err := decodeKey(key, len(rel.PK))
	if err != nil {
		return err
	}
	return g.w.add(protocol.OpMoveOut, rel, vals)
}

func decodeKey(key string, n int) ([]coltype.Value, error) {
	b := []byte(key)
	vals := make([]coltype.Value, 0, n)
	for len(b) > 0 {
		v, m, err := protocol.DecodeValue(b)
		if err != nil {
			return nil, fmt.Errorf("decode row key: %w", err)
		}
		vals = append(vals, v)
		b = b[m:]
	}
	if len(vals) != n {
		return nil, fmt.Errorf("decode row key: %d values for %d columns", len(vals), n)
	}
	return vals, nil
}

// cref and cunref count references to a row from held rows (closure).
func (g *graph) cref(table, key string) error {
	c := g.closure[table]
	c.refs[key]++
	if c.refs[key] > 1 {
		return nil
	}
	g.interest(table, g.pkIDs[table], key, true)
	if g.held[table][key] != nil {
		c.members[key] = &member{}
		return g.hold(table, key, nil, nil)
	}
	g.fetch(c, key)
	return nil
}

func (g *graph) cunref(table, key string) error {
	c := g.closure[table]
	c.refs[key]--
	if c.refs[key] > 0 {
		return nil
	}
	delete(c.refs, key)
	g.interest(table, g.pkIDs[table], key, false)
	if c.members[key] != nil {
		delete(c.members, key)
		return g.release(table, key)
	}
	return nil
}

// ref and unref count references to a row of a parents node.
func (g *graph) ref(n *node, key string) error {
	n.refs[key]++
	if n.refs[key] > 1 {
		return nil
	}
	g.interest(n.key, g.pkIDs[n.key], key, true)
	if n.pred == nil && g.held[n.key][key] != nil {
		n.members[key] = &member{}
		if err := g.hold(n.key, key, nil, nil); err != nil {
			return err
		}
		return g.enter(n, key, false)
	}
	g.fetch(n, key)
	return nil
}

func (g *graph) unref(n *node, key string) error {
	n.refs[key]--
	if n.refs[key] > 0 {
		return nil
	}
	delete(n.refs, key)
	g.interest(n.key, g.pkIDs[n.key], key, false)
	if m := n.members[key]; m != nil {
		return g.leave(n, key, m)
	}
	return nil
}

func (g *graph) fetch(n *node, key string) {
	if k := len(g.fetches); k > 0 && g.fetches[k-1].n == n {
		g.fetches[k-1].keys = append(g.fetches[k-1].keys, key)
		return
	}
	g.fetches = append(g.fetches, fetchReq{n: n, keys: []string{key}})
}

// enter makes the node's kids follow a row that joined it. A row inserted
// by the transaction being applied has no children yet.
func (g *graph) enter(n *node, key string, inserted bool) error {
	for _, k := range n.kids {
		switch k.kind {
		case kindChildren:
			g.interest(k.key, colsetID(k.fk.cols), key, true)
			if !inserted {
				g.fetch(k, key)
			}
		case kindParents:
			if fk := g.held[n.key][key].fks[k.fk.i]; fk != "" {
				if err := g.ref(k, fk); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// leave removes a row from a node, with what only it held below.
func (g *graph) leave(n *node, key string, m *member) error {
	delete(n.members, key)
	if n.kind == kindChildren {
		if set := n.byUp[m.up]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(n.byUp, m.up)
			}
		}
	}
	h := g.held[n.key][key]
	for _, k := range n.kids {
		switch k.kind {
		case kindChildren:
			g.interest(k.key, colsetID(k.fk.cols), key, false)
			set := k.byUp[key]
			keys := make([]string, 0, len(set))
			for ck := range set {
				keys = append(keys, ck)
			}
			sort.Strings(keys)
			for _, ck := range keys {
				if cm := k.members[ck]; cm != nil {
					if err := g.leave(k, ck, cm); err != nil {
						return err
					}
				}
			}
		case kindParents:
			if h != nil && h.fks[k.fk.i] != "" {
				if err := g.unref(k, h.fks[k.fk.i]); err != nil {
					return err
				}
			}
		}
	}
	return g.release(n.key, key)
}

// nodeRel makes the node's predicate evaluate rows of rel (after ALTER
// TABLE the stream's rows have another layout).
func (g *graph) nodeRel(n *node, rel *changelog.Rel) error {
	if rel == n.rel {
		return nil
	}
	if catalog.SameRel(rel, n.rel) {
		n.rel = rel
		return nil
	}
	if n.pred != nil {
		expr, err := where.ParseTable(n.where, rel.Schema, rel.Table, rel.Columns, len(n.param))
		if err == nil {
			n.pred, err = expr.Bind(g.s.ctx, n.param, where.PGCoerce(g.s.svc.pool))
		}
		if err != nil {
			id := ""
			if n.sh != nil {
				id = n.sh.id
			}
			return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q no longer fits table %s after a schema change: %v", id, n.key, err), true}
		}
	}
	n.rel = rel
	return nil
}

// apply evaluates a row's new version (nil: it is gone) at every node of
// its table and updates what it holds. It does not emit the row itself.
func (g *graph) apply(table, key string, rel *changelog.Rel, row []coltype.Value, inserted bool) error {
	return g.applyAt(g.byTable[table], table, key, rel, row, inserted)
}

// applyAt is apply at the given nodes of the table only.
func (g *graph) applyAt(nodes []*node, table, key string, rel *changelog.Rel, row []coltype.Value, inserted bool) error {
	g.cur = table + "\x00" + key
	defer func() { g.cur = "" }()
	before := g.held[table][key]
	readable := row != nil && (g.s.acc == nil || g.s.acc.Admit(rel, row))
	for _, n := range nodes {
		if err := g.nodeRel(n, rel); err != nil {
			return err
		}
		m := n.members[key]
		now := readable
		up := ""
		if now {
			switch n.kind {
			case kindRoot:
				now = n.match(row)
			case kindChildren:
				up = n.fk.keyOf(rel, row)
				now = up != "" && n.up.members[up] != nil && n.match(row)
			case kindParents:
				now = n.refs[key] > 0 && n.match(row)
			case kindClosure:
				now = n.refs[key] > 0
			}
		}
		switch {
		case m == nil && now:
			m = &member{up: up}
			n.members[key] = m
			if n.kind == kindChildren {
				set := n.byUp[up]
				if set == nil {
					set = map[string]struct{}{}
					n.byUp[up] = set
				}
				set[key] = struct{}{}
			}
			if err := g.hold(table, key, rel, row); err != nil {
				return err
			}
			if err := g.enter(n, key, inserted); err != nil {
				return err
			}
		case m != nil && !now:
			if err := g.leave(n, key, m); err != nil {
				return err
			}
		case m != nil && n.kind == kindChildren && m.up != up:
			if set := n.byUp[m.up]; set != nil {
				delete(set, key)
				if len(set) == 0 {
					delete(n.byUp, m.up)
				}
			}
			m.up = up
			set := n.byUp[up]
			if set == nil {
				set = map[string]struct{}{}
				n.byUp[up] = set
			}
			set[key] = struct{}{}
		}
	}
	if h := g.held[table][key]; h != nil && h == before && row != nil && g.s.acc != nil {
		g.indexAcc(table, key, h, g.accKeys(table, rel, row))
	}
	// A row still held follows its new foreign key values.
	if h := g.held[table][key]; h != nil && h == before && row != nil {
		nfks := g.rowFKs(table, rel, row)
		for i := range nfks {
			if nfks[i] == h.fks[i] {
				continue
			}
			old := h.fks[i]
			h.fks[i] = nfks[i]
			f := g.out[table][i]
			if nfks[i] != "" {
				if err := g.cref(f.parent, nfks[i]); err != nil {
					return err
				}
			}
			for _, n := range g.byTable[table] {
				if n.members[key] == nil {
					continue
				}
				for _, k := range n.kids {
					if k.kind != kindParents || k.fk != f {
						continue
					}
					if nfks[i] != "" {
						if err := g.ref(k, nfks[i]); err != nil {
							return err
						}
					}
					if old != "" {
						if err := g.unref(k, old); err != nil {
							return err
						}
					}
				}
			}
			if old != "" {
				if err := g.cunref(f.parent, old); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// refresh applies a row read from Postgres for node by (nil: for no node
// in particular) and emits what changed.
//
// A row sent already from the open snapshot has been evaluated at every
// node in this very version: it is evaluated again at by only. (Any other
// node whose standing towards it changed since, a new row above it or a
// new reference to it, fetches it itself.) Without this, a shape of k
// includes over the same rows cost k x k evaluations per row.
func (g *graph) refresh(by *node, table string, rel *changelog.Rel, row []coltype.Value) error {
	key := pkKey(rel, row)
	k := table + "\x00" + key
	before := g.held[table][key] != nil
	_, sent := g.sent[k]
	var err error
	if sent && by != nil {
		err = g.applyAt([]*node{by}, table, key, rel, row, false)
	} else {
		err = g.apply(table, key, rel, row, false)
	}
	if err != nil {
		return err
	}
	after := g.held[table][key] != nil
	switch {
	case after:
		op := protocol.OpUpdate
		if !before {
			op = protocol.OpInsert
		} else if sent {
			return nil // the client holds this very version
		}
		if g.sent == nil {
			g.sent = map[string]struct{}{}
		}
		g.sent[k] = struct{}{}
		return g.w.addVersion(op, rel, row, g.vers[k])
	case before:
		return g.moveOut(table, key)
	}
	return nil
}

// ---- fetching from Postgres -------------------------------------------------

// begin opens the snapshot that fetches read, when not open yet.
func (g *graph) begin() error {
	if g.tx != nil {
		return nil
	}
	s := g.s
	// The rows fetched must hold every transaction streamed so far.
	tx, snap, err := s.svc.snapshotAt(s.ctx, s.cursor)
	if err != nil {
		return err
	}
	g.tx = tx
	g.txSnap = &snapFilter{snap: snap, keys: map[string]map[string]struct{}{}}
	g.rows = 0
	if acc := s.acc; acc != nil && !acc.Loaded() {
		// The sets that policies' subqueries read, as of this snapshot;
		// streamed transactions it holds are not applied to them again.
		seen := func(xid uint32, lsn uint64) bool { return lsn <= snap.until && snap.visible(xid) }
		if err := acc.Load(s.ctx, tx, seen); err != nil {
			return err
		}
		for t, n := range g.routed {
			if n > 0 {
				g.routeKeys(t, true)
			}
		}
	}
	return nil
}

// end closes the fetch snapshot and keeps its filter.
func (g *graph) end() {
	if g.tx == nil {
		return
	}
	g.tx.Rollback(context.Background())
	g.tx = nil
	clear(g.vers)
	clear(g.sent)
	if len(g.txSnap.keys) > 0 {
		g.snaps = append(g.snaps, g.txSnap)
	}
	g.txSnap = nil
}

// drain runs the pending fetches, breadth first, until none is left.
func (g *graph) drain() error {
	for len(g.fetches) > 0 || len(g.probes) > 0 || len(g.rechecks) > 0 {
		if err := g.begin(); err != nil {
			return err
		}
		if err := g.drainAccess(); err != nil {
			return err
		}
		batch := g.fetches
		g.fetches = nil
		// One query per node.
		order := []*node{}
		keys := map[*node][]string{}
		all := map[*node]bool{}
		for _, f := range batch {
			if _, ok := keys[f.n]; !ok && !all[f.n] {
				order = append(order, f.n)
			}
			if f.keys == nil {
				all[f.n] = true
			}
			keys[f.n] = append(keys[f.n], f.keys...)
		}
		for _, n := range order {
			if err := g.query(n, keys[n], all[n]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *graph) query(n *node, keys []string, all bool) error {
	if n.members == nil {
		return nil // detached meanwhile
	}
	tb := g.tables[n.key]
	rel := tb.Rel
	b := selectAll(tb)
	b.WriteString(" WHERE ")
	args := []any{pgx.QueryExecModeSimpleProtocol}
	for _, p := range n.param {
		if p == nil {
			args = append(args, nil)
		} else {
			args = append(args, *p)
		}
	}
	if !all {
		// The key columns: the foreign key for children, else the primary key.
		var cols []string
		var types []string
		var prel *changelog.Rel
		if n.kind == kindChildren {
			cols = n.fk.cols
			prel = g.tables[n.fk.parent].Rel
		} else {
			prel = rel
			for _, k := range rel.PK {
				cols = append(cols, rel.Columns[k].Name)
			}
		}
		for _, k := range prel.PK {
			types = append(types, prel.Columns[k].Type.Name)
		}
		js, err := keysJSON(prel, keys)
		if err != nil {
			return err
		}
		args = append(args, js)
		writeInKeys(b, cols, types, len(n.param)+1)
	} else {
		b.WriteString("true")
	}
	if n.pred != nil {
		b.WriteString(" AND (")
		b.WriteString(n.where)
		b.WriteString(")")
	}
	got, err := g.read(tb, b.String(), args)
	if err != nil {
		return err
	}
	g.rows += len(got)
	if g.limit > 0 && g.rows > g.limit {
		return &clientError{protocol.ErrBadShape, fmt.Sprintf("shape %q is too large: more than %d rows (the service's --max-shape-rows)", g.limitID, g.limit), g.w.started}
	}
	set := g.txSnap.keys[n.key]
	if set == nil {
		set = map[string]struct{}{}
		g.txSnap.keys[n.key] = set
	}
	for _, row := range got {
		set[pkKey(rel, row)] = struct{}{}
		if err := g.refresh(n, n.key, rel, row); err != nil {
			return err
		}
	}
	return nil
}

// keysJSON renders encoded keys as a JSON array of arrays of Postgres text.
func keysJSON(prel *changelog.Rel, keys []string) (string, error) {
	js, err := valuesJSON(pkTypes(prel), keys)
	if err != nil {
		return "", fmt.Errorf("key of %s: %w", prel.Table, err)
	}
	return js, nil
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// ---- the stream -------------------------------------------------------------

// skipped reports whether a fetch snapshot already holds the change's row
// in a newer version.
func (g *graph) skipped(xid uint32, table string, rel *changelog.Rel, ch *changelog.Change) bool {
	for _, f := range g.snaps {
		if !f.snap.visible(xid) {
			continue
		}
		set := f.keys[table]
		if set == nil {
			continue
		}
		for _, row := range [][]coltype.Value{ch.Old, ch.New} {
			if row != nil {
				if _, ok := set[pkKey(rel, row)]; ok {
					return true
				}
			}
		}
	}
	return false
}

// processGraph is process for a session with relational shapes.
func (s *session) processGraph(txn *changelog.Txn) error {
	g := s.graph
	s.cursor = txn.LSN
	own := txn.ClientTxnID != 0 && txn.Origin == s.clientID
	// only lists the changes that concern the session, when the route
	// knows (nil: evaluate every change).
	var only []int32
	var rt *route
	if !own {
		rt = s.svc.router.route(txn)
		list, full := rt.changesFor(s, g.in)
		if !full {
			if len(list) == 0 {
				return nil // nothing of this transaction is the session's
			}
			only = list
		}
	}
	defer g.flush()
	// Under row-level security, changes of the tables that policies'
	// subqueries read (memberships) update the session's sets first, so
	// that the transaction's rows are judged by the access it leaves.
	observed := false
	if acc := s.acc; acc != nil && acc.HasSets() {
		for i := range txn.Changes {
			if acc.Observe(txn.Xid, txn.LSN, &txn.Changes[i]) {
				observed = true
			}
		}
	}
	// Forget filters of snapshots that this transaction is past.
	k := 0
	for _, f := range g.snaps {
		if txn.LSN <= f.snap.until {
			g.snaps[k] = f
			k++
		}
	}
	clear(g.snaps[k:])
	g.snaps = g.snaps[:k]

	w := txnWriter{s: s, lsn: txn.LSN, commitTime: txn.CommitTime, changes: s.changes[:0],
		origin: txn.Origin, clientTxnID: txn.ClientTxnID}
	defer func() { s.changes = w.changes[:0] }()
	g.w = &w
	g.own = own
	defer func() { g.own = false }()
	defer g.end()
	for i := range txn.Changes {
		if only != nil {
			if len(only) > 0 && int(only[0]) == i {
				only = only[1:]
			} else if len(g.in.adds) == 0 || !hitsAdds(rt, g.in.adds, i) {
				// Not in the route, and not concerned by the interests
				// the session gained since the route was computed.
				continue
			}
		}
		ch := &txn.Changes[i]
		table := relKey(ch.Rel.Schema, ch.Rel.Table)
		if len(g.byTable[table]) == 0 {
			continue
		}
		if ch.Op == changelog.OpTruncate {
			if err := g.truncate(table); err != nil {
				return err
			}
			continue
		}
		if len(g.snaps) > 0 && g.skipped(txn.Xid, table, ch.Rel, ch) {
			continue
		}
		if err := g.change(table, ch); err != nil {
			return err
		}
	}
	if observed {
		g.accessChanged(s.acc.EndTxn())
	}
	if err := g.drain(); err != nil {
		return err
	}
	if !w.started && len(w.changes) == 0 && !own {
		return nil
	}
	if err := w.finish(); err != nil {
		return err
	}
	s.sentLSN = txn.LSN
	s.lastPos = time.Now()
	return nil
}

// hitsAdds reports whether change i concerns an interest added since
// the last flush.
func hitsAdds(rt *route, adds []uint64, i int) bool {
	for _, h := range adds {
		for _, j := range rt.byHash[h] {
			if int(j) == i {
				return true
			}
		}
	}
	return false
}

func (g *graph) change(table string, ch *changelog.Change) error {
	rel := ch.Rel
	if ch.Old != nil && ch.New != nil && !samePK(rel, ch.Old, ch.New) {
		// A new primary key: the old row is gone, a new one appears.
		if err := g.change(table, &changelog.Change{Op: protocol.OpDelete, Rel: rel, Old: ch.Old}); err != nil {
			return err
		}
		return g.change(table, &changelog.Change{Op: protocol.OpInsert, Rel: rel, New: ch.New, Version: ch.Version})
	}
	row := ch.New
	src := ch.New
	if src == nil {
		src = ch.Old
	}
	if src == nil {
		return nil
	}
	key := pkKey(rel, src)
	before := g.held[table][key] != nil
	if err := g.apply(table, key, rel, row, ch.Op == protocol.OpInsert); err != nil {
		return err
	}
	after := g.held[table][key] != nil
	switch {
	case row == nil && before:
		return g.w.add(protocol.OpDelete, rel, pkOf(rel, src))
	case row != nil && after:
		op := protocol.OpUpdate
		if !before {
			op = protocol.OpInsert
		}
		return g.w.addVersion(op, rel, row, ch.Version)
	case before:
		return g.w.add(protocol.OpMoveOut, rel, pkOf(rel, src))
	case g.own:
		// A row the client wrote and its shapes do not hold: it moves
		// out, or the client would keep its local version for good.
		return g.w.add(protocol.OpMoveOut, rel, pkOf(rel, src))
	}
	return nil
}

// truncate deletes every held row of a table.
func (g *graph) truncate(table string) error {
	keys := make([]string, 0, len(g.held[table]))
	for k := range g.held[table] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rel := g.tables[table].Rel
	for _, k := range keys {
		if g.held[table][k] == nil {
			continue
		}
		vals, err := decodeKey(k, len(rel.PK))
		if err != nil {
			return err
		}
		if err := g.apply(table, k, rel, nil, false); err != nil {
			return err
		}
		if err := g.w.add(protocol.OpDelete, rel, vals); err != nil {
			return err
		}
	}
	return nil
}

// ---- subscribe and unsubscribe ----------------------------------------------

// snapshotGraph sends the initial data of shapes (attached to the graph by
// the caller) from one snapshot, at the stream position of the log head.
// With reset the client first deletes the rows of every table the graph
// covers.
func (s *session) snapshotGraph(shapes []*shape, reset bool, extraReset []*catalog.Table) error {
	g := s.graph
	l := s.clog
	h := l.Head()
	if s.reader == nil {
		s.reader = l.Cursor(h)
		s.cursor = h
	} else if err := s.catchUp(h); err != nil {
		return err
	}
	w := txnWriter{s: s, lsn: s.cursor, flags: protocol.FlagSnapshot}
	g.w = &w
	defer g.end()
	defer g.flush()
	if reset {
		keys := make([]string, 0, len(g.tables))
		for k := range g.tables {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var tbs []*catalog.Table
		for _, k := range keys {
			tbs = append(tbs, g.tables[k])
		}
		tbs = append(tbs, extraReset...)
		for _, tb := range tbs {
			id, err := s.relID(tb.Rel)
			if err != nil {
				return err
			}
			if !containsU32(w.reset, id) {
				w.reset = append(w.reset, id)
			}
		}
	}
	for _, sh := range shapes {
		var walk func(n *node) error
		walk = func(n *node) error {
			if _, err := s.relID(n.table.Rel); err != nil {
				return err
			}
			for _, k := range n.kids {
				if err := walk(k); err != nil {
					return err
				}
			}
			return nil
		}
		if err := walk(sh.root); err != nil {
			return err
		}
	}
	if err := g.begin(); err != nil {
		return err
	}
	for _, sh := range shapes {
		g.limit, g.limitID = s.svc.cfg.MaxSnapshotRows, sh.id
		g.fetches = append(g.fetches, fetchReq{n: sh.root})
		if err := g.drain(); err != nil {
			g.limit = 0
			return err
		}
		g.rows = 0
	}
	g.limit = 0
	if err := w.finish(); err != nil {
		return err
	}
	s.sentLSN = s.cursor
	s.lastPos = time.Now()
	return nil
}

// detach removes a shape's nodes; the rows only it held move out.
func (g *graph) detach(sh *shape) error {
	for _, m := range sortedKeys(sh.root.members) {
		if mm := sh.root.members[m]; mm != nil {
			if err := g.leave(sh.root, m, mm); err != nil {
				return err
			}
		}
	}
	g.rootInterest(sh.root, false)
	var walk func(n *node)
	walk = func(n *node) {
		list := g.byTable[n.key]
		for i, x := range list {
			if x == n {
				g.byTable[n.key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		n.members = nil
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(sh.root)
	return nil
}

// rootInterest registers what rows may join a root node: the value of
// its column for a predicate "column = $1" (eqKey set), else the table.
func (g *graph) rootInterest(n *node, add bool) {
	if n.eqCol != "" {
		g.useColset(n.key, []string{n.eqCol}, true)
		g.interest(n.key, n.eqCol, n.eqKey, add)
		return
	}
	if acc := g.s.acc; acc != nil {
		if _, ok := acc.RouteSets(n.key); ok {
			g.useRouted(n.key, add)
			return
		}
	}
	g.useTable(n.key, true, add)
}

// useRouted counts a root node of table that the router finds by the
// keys of the table's policy sets; the first registers the keys.
func (g *graph) useRouted(table string, add bool) {
	if g.routed == nil {
		g.routed = map[string]int{}
	}
	before := g.routed[table]
	if add {
		g.routed[table]++
	} else {
		g.routed[table]--
	}
	if (before == 0) != (g.routed[table] == 0) && g.s.acc.Loaded() {
		g.routeKeys(table, add)
	}
}

// routeKeys registers (or drops) the current keys of the table's sets.
func (g *graph) routeKeys(table string, add bool) {
	acc := g.s.acc
	sets, _ := acc.RouteSets(table)
	cols := acc.SetCols(table)
	for _, i := range sets {
		g.useColset(table, cols[i], true)
		id := colsetID(cols[i])
		for _, k := range acc.SetKeys(table, i) {
			g.interest(table, id, k, add)
		}
	}
}

// routeTransition follows a key that entered or left a set.
func (g *graph) routeTransition(tr authz.Transition) {
	if g.routed[tr.Table] == 0 || tr.Cols == nil {
		return
	}
	sets, _ := g.s.acc.RouteSets(tr.Table)
	if slices.Contains(sets, tr.Set) {
		g.interest(tr.Table, colsetID(tr.Cols), tr.Key, tr.Added)
	}
}

var eqParam = regexp.MustCompile(`^\(?"?([a-z_][a-z0-9_$]*)"?\s*=\s*\$1\)?$`)

// eqIndex finds out whether the root's predicate is "column = $1" on a
// column whose values have one representation (integers, text, uuid,
// boolean), and then the key of the parameter's value.
func (s *session) eqIndex(n *node) error {
	if n.pred == nil || len(n.param) != 1 || n.param[0] == nil {
		return nil
	}
	m := eqParam.FindStringSubmatch(n.where)
	if m == nil {
		return nil
	}
	rel := n.table.Rel
	var col *protocol.Column
	for i := range rel.Columns {
		if rel.Columns[i].Name == m[1] {
			col = &rel.Columns[i]
		}
	}
	if col == nil || col.Type.Array {
		return nil
	}
	switch col.Type.Base {
	case coltype.Int2, coltype.Int4, coltype.Int8, coltype.TextType, coltype.UUID, coltype.Bool:
	default:
		return nil
	}
	if col.Type.Base == coltype.TextType && !strings.HasPrefix(col.Type.Name, "text") && !strings.HasPrefix(col.Type.Name, "character varying") {
		return nil // char(n) pads
	}
	expr, err := where.ParseTable(n.where, rel.Schema, rel.Table, rel.Columns, 1)
	if err != nil || len(expr.Literals()) != 1 {
		return nil
	}
	vals, err := where.PGCoerce(s.svc.pool)(s.ctx, expr.Literals(), n.param)
	if err != nil || len(vals) != 1 || vals[0].Kind == coltype.Null {
		return nil
	}
	n.eqCol, n.eqKey = m[1], string(protocol.AppendValue(nil, vals[0]))
	return nil
}

func sortedKeys(m map[string]*member) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- row-level security -----------------------------------------------------

// read runs a fetch query (inner selects the table's columns, alias t) in
// the fetch snapshot and returns the rows with their versions in g.vers.
// Under row-level security the query runs as the user, so Postgres applies
// the policies; the versions (merge metadata the user may not read) are
// then read as the service, for the rows returned only.
func (g *graph) read(tb *catalog.Table, inner string, args []any) ([][]coltype.Value, error) {
	key := relKey(tb.Rel.Schema, tb.Rel.Table)
	rel := tb.Rel
	if g.vers == nil {
		g.vers = map[string]uint64{}
	}
	acc := g.s.acc
	if acc == nil {
		return g.readVersioned(tb, versioned(tb, inner), args)
	}
	if !acc.Readable(key) {
		return nil, nil
	}
	if !acc.Policies().Filtered(key) {
		// Readable, and no policy filters it: the same rows as the service.
		return g.readVersioned(tb, versioned(tb, inner), args)
	}
	ctx := g.s.ctx
	if err := authz.As(ctx, g.tx, acc.Role(), acc.Claims(), acc.Sub()); err != nil {
		return nil, err
	}
	rows, err := g.tx.Query(ctx, inner, args...)
	if err != nil {
		authz.Unset(context.Background(), g.tx)
		return nil, fmt.Errorf("fetch %s: %w", key, err)
	}
	var keys []string
	for rows.Next() {
		vals, err := rowValues(rel, rows.RawValues())
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("fetch %s: %w", key, err)
		}
		keys = append(keys, pkKey(rel, vals))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", key, err)
	}
	if err := authz.Unset(ctx, g.tx); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	q, qargs, err := byKeysSQL(tb, keys)
	if err != nil {
		return nil, err
	}
	return g.readVersioned(tb, versioned(tb, q), qargs)
}

func (g *graph) readVersioned(tb *catalog.Table, q string, args []any) ([][]coltype.Value, error) {
	key := relKey(tb.Rel.Schema, tb.Rel.Table)
	rows, err := g.tx.Query(g.s.ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", key, err)
	}
	defer rows.Close()
	var got [][]coltype.Value
	for rows.Next() {
		vals, ver, err := versionedRow(tb.Rel, rows.RawValues())
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", key, err)
		}
		got = append(got, vals)
		g.vers[key+"\x00"+pkKey(tb.Rel, vals)] = ver
		if err := g.s.rows.Take(g.s.ctx, 1); err != nil {
			return nil, fmt.Errorf("fetch %s: %w", key, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", key, err)
	}
	return got, nil
}

// byKeysSQL selects the rows of tb with the given encoded primary keys.
func byKeysSQL(tb *catalog.Table, keys []string) (string, []any, error) {
	rel := tb.Rel
	var pk []string
	for _, k := range rel.PK {
		pk = append(pk, rel.Columns[k].Name)
	}
	return byColsSQL(tb, pk, pkTypes(rel), keys)
}

func pkTypes(rel *changelog.Rel) []coltype.Type {
	var out []coltype.Type
	for _, k := range rel.PK {
		out = append(out, rel.Columns[k].Type)
	}
	return out
}

// byColsSQL selects the rows of tb whose cols (of the given types) hold one
// of keys (encoded values); cols nil selects every row.
func byColsSQL(tb *catalog.Table, cols []string, types []coltype.Type, keys []string) (string, []any, error) {
	rel := tb.Rel
	b := selectAll(tb)
	args := []any{pgx.QueryExecModeSimpleProtocol}
	if cols == nil {
		return b.String(), args, nil
	}
	js, err := valuesJSON(types, keys)
	if err != nil {
		return "", nil, fmt.Errorf("keys of %s: %w", rel.Table, err)
	}
	args = append(args, js)
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Name
	}
	b.WriteString(" WHERE ")
	writeInKeys(b, cols, names, 1)
	return b.String(), args, nil
}

// valuesJSON renders encoded tuples of values of the given types as a
// JSON array of arrays of Postgres text.
func valuesJSON(types []coltype.Type, keys []string) (string, error) {
	b := []byte{'['}
	for i, k := range keys {
		vals, err := decodeKey(k, len(types))
		if err != nil {
			return "", err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, v := range vals {
			t, ok, err := coltype.ToPGText(types[j], v)
			if err != nil || !ok {
				return "", fmt.Errorf("value %d: %v", j, err)
			}
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, t)
		}
		b = append(b, ']')
	}
	return string(append(b, ']')), nil
}

// accKeys computes the row's values of the columns its table's policy
// sets match on.
func (g *graph) accKeys(table string, rel *changelog.Rel, row []coltype.Value) []string {
	sets := g.s.acc.SetCols(table)
	if len(sets) == 0 {
		return nil
	}
	out := make([]string, len(sets))
	for i, cols := range sets {
		if cols == nil {
			continue
		}
		var b []byte
		for _, c := range cols {
			j := -1
			for k := range rel.Columns {
				if rel.Columns[k].Name == c {
					j = k
				}
			}
			if j < 0 || row[j].Kind == coltype.Null {
				b = nil
				break
			}
			b = protocol.AppendValue(b, row[j])
		}
		out[i] = string(b)
	}
	return out
}

// indexAcc replaces the held row's acc values with keys (nil: it leaves).
func (g *graph) indexAcc(table, key string, h *hrow, keys []string) {
	if g.s.acc == nil || (len(h.acc) == 0 && len(keys) == 0) {
		return
	}
	if g.accBy == nil {
		g.accBy = map[string][]map[string]map[string]struct{}{}
	}
	idx := g.accBy[table]
	for i, old := range h.acc {
		if old != "" && (i >= len(keys) || keys[i] != old) && i < len(idx) {
			if set := idx[i][old]; set != nil {
				delete(set, key)
				if len(set) == 0 {
					delete(idx[i], old)
				}
			}
		}
	}
	for len(idx) < len(keys) {
		idx = append(idx, map[string]map[string]struct{}{})
	}
	for i, k := range keys {
		if k == "" {
			continue
		}
		set := idx[i][k]
		if set == nil {
			set = map[string]struct{}{}
			idx[i][k] = set
		}
		set[key] = struct{}{}
	}
	g.accBy[table] = idx
	h.acc = keys
}

// accessChanged turns the transitions of the session's sets into reads:
// rows that may have become readable are probed, held rows that may have
// become unreadable are checked again, both as the user in the fetch
// snapshot, within the transaction that caused the change.
func (g *graph) accessChanged(trs []authz.Transition) {
	for _, tr := range trs {
		g.routeTransition(tr)
		if len(g.byTable[tr.Table]) == 0 {
			continue
		}
		if tr.Added {
			if tr.Cols == nil {
				g.probes = append(g.probes, probeReq{table: tr.Table})
				continue
			}
			if n := len(g.probes); n > 0 && g.probes[n-1].table == tr.Table && slices.Equal(g.probes[n-1].cols, tr.Cols) {
				g.probes[n-1].keys = append(g.probes[n-1].keys, tr.Key)
				continue
			}
			g.probes = append(g.probes, probeReq{table: tr.Table, cols: tr.Cols, keys: []string{tr.Key}})
			continue
		}
		var keys []string
		if tr.Cols == nil {
			for k := range g.held[tr.Table] {
				keys = append(keys, k)
			}
		} else {
			sets := g.s.acc.SetCols(tr.Table)
			for i, cols := range sets {
				if i < len(g.accBy[tr.Table]) && slices.Equal(cols, tr.Cols) {
					for k := range g.accBy[tr.Table][i][tr.Key] {
						keys = append(keys, k)
					}
				}
			}
		}
		if len(keys) == 0 {
			continue
		}
		if g.rechecks == nil {
			g.rechecks = map[string]map[string]struct{}{}
		}
		set := g.rechecks[tr.Table]
		if set == nil {
			set = map[string]struct{}{}
			g.rechecks[tr.Table] = set
		}
		for _, k := range keys {
			set[k] = struct{}{}
		}
	}
}

// writeInKeys writes "(t.c1, ...) IN (SELECT (k->>0)::type1, ... FROM
// json_array_elements($param::json) k)": the rows whose cols hold one of
// the keys passed as a JSON array of arrays of text (keysJSON, valuesJSON).
func writeInKeys(b *strings.Builder, cols, types []string, param int) {
	b.WriteString("(")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("t.")
		b.WriteString(catalog.QuoteIdent(c))
	}
	b.WriteString(") IN (SELECT ")
	for i := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "(k->>%d)::%s", i, types[i])
	}
	fmt.Fprintf(b, " FROM json_array_elements($%d::json) k)", param)
}

// selectAll starts a query of every column of tb, under alias t.
func selectAll(tb *catalog.Table) *strings.Builder {
	b := &strings.Builder{}
	b.WriteString("SELECT ")
	for i, c := range tb.Rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("t.")
		b.WriteString(catalog.QuoteIdent(c.Name))
	}
	b.WriteString(" FROM ")
	b.WriteString(tb.QualifiedSQL)
	b.WriteString(" t")
	return b
}

// drainAccess runs the pending probes and rechecks (the snapshot is open).
func (g *graph) drainAccess() error {
	probes := g.probes
	g.probes = nil
	for _, p := range probes {
		tb := g.tables[p.table]
		if tb == nil {
			continue
		}
		var types []coltype.Type
		for _, c := range p.cols {
			for _, col := range tb.Rel.Columns {
				if col.Name == c {
					types = append(types, col.Type)
				}
			}
		}
		if len(types) != len(p.cols) {
			continue // the table changed; a policy reload follows
		}
		q, args, err := byColsSQL(tb, p.cols, types, p.keys)
		if err != nil {
			return err
		}
		got, err := g.read(tb, q, args)
		if err != nil {
			return err
		}
		if err := g.refreshAll(p.table, tb.Rel, got, nil); err != nil {
			return err
		}
	}
	rechecks := g.rechecks
	g.rechecks = nil
	tables := make([]string, 0, len(rechecks))
	for t := range rechecks {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		tb := g.tables[t]
		if tb == nil {
			continue
		}
		keys := make([]string, 0, len(rechecks[t]))
		for k := range rechecks[t] {
			if g.held[t][k] != nil {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if len(keys) == 0 {
			continue
		}
		q, args, err := byKeysSQL(tb, keys)
		if err != nil {
			return err
		}
		got, err := g.read(tb, q, args)
		if err != nil {
			return err
		}
		if err := g.refreshAll(t, tb.Rel, got, keys); err != nil {
			return err
		}
	}
	return nil
}

// refreshAll applies rows read from the fetch snapshot; of asked (the
// keys read by primary key), those not returned are unreadable now and
// leave.
func (g *graph) refreshAll(table string, rel *changelog.Rel, got [][]coltype.Value, asked []string) error {
	set := g.txSnap.keys[table]
	if set == nil {
		set = map[string]struct{}{}
		g.txSnap.keys[table] = set
	}
	back := map[string]bool{}
	for _, row := range got {
		k := pkKey(rel, row)
		back[k] = true
		set[k] = struct{}{}
		if err := g.refresh(nil, table, rel, row); err != nil {
			return err
		}
	}
	for _, k := range asked {
		if back[k] {
			continue
		}
		set[k] = struct{}{}
		if g.held[table][k] == nil {
			continue
		}
		if err := g.apply(table, k, rel, nil, false); err != nil {
			return err
		}
		if g.held[table][k] == nil {
			if err := g.moveOut(table, k); err != nil {
				return err
			}
		}
	}
	return nil
}
