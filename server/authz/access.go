package authz

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/where"
)

// Access is one session's view of the policies: the values of the
// policies' row-independent parts for its user, and its copy of the sets
// that policies' subqueries read. Not safe for concurrent use.
type Access struct {
	pol    *Policies
	role   string
	claims []byte
	sub    string
	tables map[string]*tableAccess
	// inner lists the sets by the table they read.
	inner  map[string][]*setState
	loaded bool
	seen   func(xid uint32, lsn uint64) bool
	coerce where.Coerce
}

type tableAccess struct {
	tp     *tablePolicy
	vals   []*string
	leaves map[*leafN]*boundLeaf
	sets   []*setState
	err    error // the parameters could not be evaluated
}

type boundLeaf struct {
	rel  *changelog.Rel
	pred *where.Pred
}

type setState struct {
	ta      *tableAccess
	ref     *setRef
	outer   []string
	members map[string]string // inner primary key -> correlated key ("" when a value is NULL)
	counts  map[string]int
	nulls   int // members with a NULL correlated value
	// per transaction: counts before the first change, for transitions
	before      map[string]int
	beforeTotal int
	touched     bool
}

// Transition says that the rows of Table whose Cols hold Key (encoded
// with protocol.AppendValue, in Cols order) may have become readable
// (Added) or unreadable. Cols nil: every row of the table.
type Transition struct {
	Table string
	Set   int // the set of the table's policy (see RouteSets)
	Cols  []string
	Key   string
	Added bool
}

// NewAccess binds the policies to a user: role, the token's claims (JSON)
// and its sub. It asks Postgres (q, any connection with the service's
// session settings) for the values of the policies' row-independent parts.
func (p *Policies) NewAccess(ctx context.Context, q Querier, claims []byte, sub string) (*Access, error) {
	a := &Access{pol: p, role: p.Role, claims: claims, sub: sub, tables: map[string]*tableAccess{}, inner: map[string][]*setState{},
		coerce: where.PGCoerce(q)}
	for key, tp := range p.byKey {
		ta := &tableAccess{tp: tp, leaves: map[*leafN]*boundLeaf{}}
		a.tables[key] = ta
		if !tp.rls || tp.err != nil {
			continue
		}
		if len(tp.params) > 0 {
			vals, err := a.evalParams(ctx, q, tp.params)
			if err != nil {
				ta.err = err
				continue
			}
			ta.vals = vals
		}
		for _, ref := range tp.sets {
			ss := &setState{ta: ta, ref: ref, members: map[string]string{}, counts: map[string]int{}}
			ta.sets = append(ta.sets, ss)
			a.inner[ref.innerKey] = append(a.inner[ref.innerKey], ss)
		}
	}
	// Set outer columns are recorded on the setN nodes; copy them to the
	// states for transitions.
	for _, ta := range a.tables {
		if ta.tp.root != nil {
			visitSets(ta.tp.root, func(sn setN) {
				if sn.set < len(ta.sets) {
					ta.sets[sn.set].outer = sn.outer
				}
			})
		}
	}
	return a, nil
}

func visitSets(n cnode, f func(setN)) {
	switch x := n.(type) {
	case andN:
		for _, k := range x.kids {
			visitSets(k, f)
		}
	case orN:
		for _, k := range x.kids {
			visitSets(k, f)
		}
	case notN:
		visitSets(x.kid, f)
	case setN:
		f(x)
	}
}

// Policies returns the policies the access was bound from.
func (a *Access) Policies() *Policies { return a.pol }

// Role returns the role and Claims the token's claims, for As.
func (a *Access) Role() string   { return a.role }
func (a *Access) Claims() []byte { return a.claims }
func (a *Access) Sub() string    { return a.sub }
func (a *Access) HasSets() bool  { return len(a.inner) > 0 }
func (a *Access) Loaded() bool   { return a.loaded }
func (a *Access) SetTables() []string {
	out := make([]string, 0, len(a.inner))
	for k := range a.inner {
		out = append(out, k)
	}
	return out
}

func (a *Access) evalParams(ctx context.Context, q Querier, params []string) ([]*string, error) {
	tx, err := beginTx(ctx, q)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	if err := As(ctx, tx, a.role, a.claims, a.sub); err != nil {
		return nil, err
	}
	sql := "SELECT "
	for i, p := range params {
		if i > 0 {
			sql += ", "
		}
		sql += "((" + p + "))::text"
	}
	vals := make([]*string, len(params))
	dst := make([]any, len(params))
	for i := range vals {
		dst[i] = &vals[i]
	}
	if err := tx.QueryRow(ctx, sql).Scan(dst...); err != nil {
		return nil, fmt.Errorf("evaluate policy parameters for user %q: %w", a.sub, err)
	}
	return vals, nil
}

// Load reads the sets, in transaction tx (a REPEATABLE READ snapshot);
// seen reports whether that snapshot already holds a streamed transaction,
// whose changes Observe then skips. Load acts as the user in tx and
// restores the service's role before it returns.
func (a *Access) Load(ctx context.Context, tx Querier, seen func(xid uint32, lsn uint64) bool) error {
	if len(a.inner) == 0 {
		a.loaded = true
		return nil
	}
	if err := As(ctx, tx, a.role, a.claims, a.sub); err != nil {
		return err
	}
	defer Unset(ctx, tx)
	for _, list := range a.inner {
		for _, ss := range list {
			if err := a.loadSet(ctx, tx, ss); err != nil {
				return err
			}
		}
	}
	a.seen = seen
	a.loaded = true
	return nil
}

func (a *Access) loadSet(ctx context.Context, tx Querier, ss *setState) error {
	rows, err := tx.Query(ctx, ss.ref.loadSQL, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return fmt.Errorf("read %s for a policy: %w", ss.ref.innerKey, err)
	}
	defer rows.Close()
	rel := a.pol.rels[ss.ref.innerKey]
	for rows.Next() {
		raw := rows.RawValues()
		row := make([]coltype.Value, len(raw))
		for i, b := range raw {
			if b == nil || i >= len(rel.Columns) {
				continue
			}
			v, err := coltype.FromPGText(rel.Columns[i].Type, b)
			if err != nil {
				return fmt.Errorf("read %s for a policy: column %s: %w", ss.ref.innerKey, rel.Columns[i].Name, err)
			}
			row[i] = v
		}
		ss.add(encodeCols(rel, pkNames(rel), row), encodeCols(rel, ss.ref.innerCols, row))
	}
	return rows.Err()
}

func (ss *setState) add(pk, key string) {
	if prev, ok := ss.members[pk]; ok {
		ss.dec(prev)
	}
	ss.members[pk] = key
	if key == "" {
		ss.nulls++
	} else {
		ss.counts[key]++
	}
}

func (ss *setState) remove(pk string) {
	if prev, ok := ss.members[pk]; ok {
		ss.dec(prev)
		delete(ss.members, pk)
	}
}

func (ss *setState) dec(key string) {
	if key == "" {
		ss.nulls--
		return
	}
	if ss.counts[key]--; ss.counts[key] <= 0 {
		delete(ss.counts, key)
	}
}

func (ss *setState) touch(key string) {
	if !ss.touched {
		ss.touched = true
		ss.before = map[string]int{}
		ss.beforeTotal = len(ss.members)
	}
	if _, ok := ss.before[key]; !ok {
		ss.before[key] = ss.counts[key]
	}
}

// encodeCols encodes the named columns of row (protocol.AppendValue), ""
// when one is NULL or missing.
func encodeCols(rel *changelog.Rel, cols []string, row []coltype.Value) string {
	var b []byte
	for _, c := range cols {
		j := colIndex(rel, c)
		if j < 0 || j >= len(row) || row[j].Kind == coltype.Null {
			return ""
		}
		b = protocol.AppendValue(b, row[j])
	}
	if b == nil {
		return "\x00" // no columns: a non-NULL empty key
	}
	return string(b)
}

func colIndex(rel *changelog.Rel, name string) int {
	for i := range rel.Columns {
		if rel.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// Observe applies a change of a table that policies' subqueries read, and
// reports whether it did (the table is such a table). Transitions are
// collected until EndTxn.
func (a *Access) Observe(xid uint32, lsn uint64, ch *changelog.Change) bool {
	list := a.inner[keyOf(ch.Rel)]
	if len(list) == 0 {
		return false
	}
	if !a.loaded || (a.seen != nil && a.seen(xid, lsn)) {
		return true
	}
	rel := ch.Rel
	pks := pkNames(rel)
	for _, ss := range list {
		if ch.Op == changelog.OpTruncate {
			for pk, key := range ss.members {
				ss.touch(key)
				ss.remove(pk)
			}
			continue
		}
		if ch.Old != nil {
			pk := encodeCols(rel, pks, ch.Old)
			if key, ok := ss.members[pk]; ok {
				ss.touch(key)
				ss.remove(pk)
			}
		}
		if ch.New != nil {
			pk := encodeCols(rel, pks, ch.New)
			if key, ok := ss.members[pk]; ok { // no old row sent
				ss.touch(key)
				ss.remove(pk)
			}
			if a.eval(ss.ta, ss.ref.filter, rel, ch.New) == where.True {
				key := encodeCols(rel, ss.ref.innerCols, ch.New)
				ss.touch(key)
				ss.add(pk, key)
			}
		}
	}
	return true
}

// EndTxn returns the transitions of the changes observed since the last
// call: the keys that entered or left a set.
func (a *Access) EndTxn() []Transition {
	var out []Transition
	for _, list := range a.inner {
		for _, ss := range list {
			if !ss.touched {
				continue
			}
			ss.touched = false
			table := ss.ta.tp.key
			set := slices.Index(ss.ta.sets, ss)
			if len(ss.outer) == 0 {
				before, after := ss.beforeTotal > 0, len(ss.members) > 0
				if before != after {
					out = append(out, Transition{Table: table, Set: set, Added: after})
				}
				continue
			}
			for key, n := range ss.before {
				if key == "" {
					continue
				}
				now := ss.counts[key]
				switch {
				case n == 0 && now > 0:
					out = append(out, Transition{Table: table, Set: set, Cols: ss.outer, Key: key, Added: true})
				case n > 0 && now == 0:
					out = append(out, Transition{Table: table, Set: set, Cols: ss.outer, Key: key})
				}
			}
			ss.before = nil
		}
	}
	return out
}

// SetCols returns, per set of the table's policy, the outer columns its
// rows are matched on (nil for a set without correlation): the columns
// whose values a session indexes the rows it holds by.
func (a *Access) SetCols(table string) [][]string {
	ta := a.tables[table]
	if ta == nil || !ta.tp.rls {
		return nil
	}
	var out [][]string
	for _, ss := range ta.sets {
		out = append(out, ss.outer)
	}
	return out
}

// Admit reports whether the user may read row (in rel's layout) of its
// table. Before Load, rows that depend on sets are not admitted.
func (a *Access) Admit(rel *changelog.Rel, row []coltype.Value) bool {
	ta := a.tables[keyOf(rel)]
	if ta == nil || !ta.tp.canSelect || ta.tp.err != nil || ta.err != nil {
		return false
	}
	if !ta.tp.rls {
		return true
	}
	return a.eval(ta, ta.tp.root, rel, row) == where.True
}

// Readable reports whether the role may read the table at all.
func (a *Access) Readable(table string) bool {
	ta := a.tables[table]
	return ta != nil && ta.tp.canSelect && ta.tp.err == nil && ta.err == nil
}

func (a *Access) eval(ta *tableAccess, n cnode, rel *changelog.Rel, row []coltype.Value) where.Tri {
	switch x := n.(type) {
	case constN:
		return x.v
	case andN:
		out := where.True
		for _, k := range x.kids {
			switch a.eval(ta, k, rel, row) {
			case where.False:
				return where.False
			case where.Unknown:
				out = where.Unknown
			}
		}
		return out
	case orN:
		out := where.False
		for _, k := range x.kids {
			switch a.eval(ta, k, rel, row) {
			case where.True:
				return where.True
			case where.Unknown:
				out = where.Unknown
			}
		}
		return out
	case notN:
		switch a.eval(ta, x.kid, rel, row) {
		case where.True:
			return where.False
		case where.False:
			return where.True
		}
		return where.Unknown
	case *leafN:
		p := a.bind(ta, x, rel)
		if p == nil {
			return where.Unknown
		}
		return p.Eval(row)
	case setN:
		if !a.loaded || x.set >= len(ta.sets) {
			return where.Unknown
		}
		ss := ta.sets[x.set]
		if len(x.outer) == 0 {
			if len(ss.members) > 0 {
				return where.True
			}
			return where.False
		}
		key := encodeCols(rel, x.outer, row)
		if key != "" && ss.counts[key] > 0 {
			return where.True
		}
		if x.in && (key == "" || ss.nulls > 0) && len(ss.members) > 0 {
			return where.Unknown
		}
		return where.False
	}
	return where.Unknown
}

// bind returns the leaf's predicate bound to the session's values, for
// rows of rel (bound again after a schema change).
func (a *Access) bind(ta *tableAccess, lf *leafN, rel *changelog.Rel) *where.Pred {
	b := ta.leaves[lf]
	if b != nil && (b.rel == rel || catalog.SameRel(b.rel, rel)) {
		b.rel = rel
		return b.pred
	}
	expr, err := where.ParseTable(lf.sql, rel.Schema, rel.Table, rel.Columns, len(lf.params))
	if err != nil {
		return nil
	}
	vals := make([]*string, len(lf.params))
	for i, g := range lf.params {
		if g < len(ta.vals) {
			vals[i] = ta.vals[g]
		}
	}
	pred, err := expr.Bind(context.Background(), vals, a.coerce)
	if err != nil {
		return nil
	}
	ta.leaves[lf] = &boundLeaf{rel: rel, pred: pred}
	return pred
}

func pkNames(rel *changelog.Rel) []string {
	out := make([]string, len(rel.PK))
	for i, k := range rel.PK {
		out[i] = rel.Columns[k].Name
	}
	return out
}

// RouteSets reports whether every row the table's policy admits has the
// key of one of the listed sets in its outer columns (SetCols): then a
// session need only look at the changes of rows with those keys (and of
// rows it holds). ok with no sets: the policy admits no row.
func (a *Access) RouteSets(table string) (sets []int, ok bool) {
	ta := a.tables[table]
	if ta == nil || !ta.tp.canSelect || ta.tp.err != nil || ta.err != nil {
		return nil, true
	}
	if !ta.tp.rls {
		return nil, false
	}
	return routes(ta.tp.root)
}

func routes(n cnode) ([]int, bool) {
	switch x := n.(type) {
	case setN:
		return []int{x.set}, len(x.outer) > 0
	case constN:
		return nil, x.v != where.True
	case andN:
		for _, k := range x.kids {
			if r, ok := routes(k); ok {
				return r, true
			}
		}
	case orN:
		var out []int
		for _, k := range x.kids {
			r, ok := routes(k)
			if !ok {
				return nil, false
			}
			out = append(out, r...)
		}
		return out, true
	}
	return nil, false
}

// SetKeys returns the keys set i of the table's policy holds now.
func (a *Access) SetKeys(table string, i int) []string {
	ta := a.tables[table]
	if ta == nil || i >= len(ta.sets) {
		return nil
	}
	out := make([]string, 0, len(ta.sets[i].counts))
	for k := range ta.sets[i].counts {
		out = append(out, k)
	}
	return out
}
