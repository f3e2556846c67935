package server

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

// router lets relational sessions skip, cheaply, the transactions that
// cannot change what they hold. Every session registers interests: hashes
// of (table, columns, values) for the rows it holds (by primary key), the
// rows its "children" nodes would take (by foreign key value), the rows
// its parents and closure nodes reference, and the values of root
// predicates of the form column = $1; or a whole table when a root
// predicate has another form. For each transaction, the router computes
// once (the first session to reach it does) which sessions have an
// interest in one of its changes; the others skip it without looking at
// its changes.
//
// Sessions add interests while they process transactions, possibly behind
// others. A session whose interests grew after a transaction's route was
// computed (seq) evaluates that transaction in full; so a route is never
// missing a session that the transaction concerns.
type router struct {
	seed maphash.Seed

	mu      sync.RWMutex
	seq     uint64
	keys    map[uint64][]*session
	wild    map[string]map[*session]int // whole-table interests
	tables  map[string]map[*session]int // sessions with nodes on a table (TRUNCATE)
	colsets map[string][]*colset        // per table

	cacheMu   sync.RWMutex
	cache     map[uint64]*route // by LSN
	order     []uint64
	cacheCost int // sum of the cached routes' cost
}

type colset struct {
	id   string   // column names joined with ","
	cols []string // in key order
	// idx caches the column indexes in a layout of the table.
	mu     sync.Mutex
	idxRel *changelog.Rel
	idx    []int
}

type route struct {
	seq uint64
	// sessions maps each concerned session to the indexes of the changes
	// that concern it, in order.
	sessions map[*session][]int32
	// byHash maps every interest hash of the transaction's changes to the
	// changes, for sessions whose interests grew since seq.
	byHash map[uint64][]int32
	// charged is what the route cache counted for it.
	charged int
}

func (rt *route) add(s *session, i int) {
	list := rt.sessions[s]
	if n := len(list); n > 0 && list[n-1] == int32(i) {
		return
	}
	rt.sessions[s] = append(list, int32(i))
}

// The route cache keeps the routes of the newest transactions, at most
// routeCache of them and at most routeCacheCost entries (sessions and
// hashes) in all: with 1,000 sessions on one shape, 4,096 routes of 1,000
// sessions each held 400 MB. A route evicted is computed again by a
// session that still needs it.
const (
	routeCache     = 4096
	routeCacheCost = 1 << 19
)

func (rt *route) cost() int { return 1 + len(rt.sessions) + len(rt.byHash) }

func newRouter() *router {
	return &router{seed: maphash.MakeSeed(), keys: map[uint64][]*session{},
		wild: map[string]map[*session]int{}, tables: map[string]map[*session]int{},
		colsets: map[string][]*colset{}, cache: map[uint64]*route{}}
}

func (r *router) hash(table, colsetID, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(table)
	h.WriteByte(0)
	h.WriteString(colsetID)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64()
}

// interests is a session's registrations, applied to the router in
// batches (flush) so that processing a transaction takes the lock once.
type interests struct {
	count   map[uint64]int32
	adds    []uint64
	dels    []uint64
	wild    map[string]int
	tables  map[string]int
	colsets map[[2]string]int // (table, colset id) -> registrations
	csDefs  map[[2]string][]string
	pending bool
	// lastGrow is the router seq after the session's last added interest.
	lastGrow uint64
	// recent logs the hashes added by recent flushes with their seq, so
	// that a route computed before them can be completed; trimmed is the
	// highest seq dropped from it. structGrow is the seq of the last
	// growth that hashes do not describe (whole tables, column sets).
	recent     []addRec
	trimmed    uint64
	structGrow uint64
}

type addRec struct{ seq, h uint64 }

const recentAdds = 8192

func newInterests() *interests {
	return &interests{count: map[uint64]int32{}, wild: map[string]int{}, tables: map[string]int{},
		colsets: map[[2]string]int{}, csDefs: map[[2]string][]string{}}
}

func colsetID(cols []string) string {
	id := ""
	for i, c := range cols {
		if i > 0 {
			id += ","
		}
		id += c
	}
	return id
}

func (g *graph) interest(table, csID, key string, add bool) {
	r := g.s.svc.router
	h := r.hash(table, csID, key)
	in := g.in
	if add {
		in.count[h]++
		if in.count[h] == 1 {
			in.adds = append(in.adds, h)
			in.pending = true
		}
		return
	}
	in.count[h]--
	if in.count[h] <= 0 {
		delete(in.count, h)
		in.dels = append(in.dels, h)
		in.pending = true
	}
}

// useColset registers that the session hashes keys of table over cols.
func (g *graph) useColset(table string, cols []string, add bool) {
	in := g.in
	k := [2]string{table, colsetID(cols)}
	if add {
		in.colsets[k]++
		in.csDefs[k] = cols
	} else {
		in.colsets[k]--
	}
	in.pending = true
}

func (g *graph) useTable(table string, wild bool, add bool) {
	in := g.in
	m := in.tables
	if wild {
		m = in.wild
	}
	if add {
		m[table]++
	} else {
		m[table]--
	}
	in.pending = true
}

// flushChunk bounds the hashes one acquisition of the router's lock
// registers or drops: a session that gains or loses many rows at once
// (the end of a large snapshot, an Unsubscribe) holds the lock for about
// a millisecond at a time, and the other sessions route in between.
const flushChunk = 1024

// flush applies the session's pending interest changes to the router,
// in chunks of flushChunk hashes; each chunk is a growth of its own (a
// seq), so a route computed between two chunks is completed with the
// later ones' hashes (changesFor), as after separate flushes.
func (g *graph) flush() {
	in := g.in
	if !in.pending {
		return
	}
	adds, dels := in.adds, in.dels
	for len(adds) > flushChunk || len(dels) > flushChunk {
		a, d := adds[:min(len(adds), flushChunk)], dels[:min(len(dels), flushChunk)]
		g.flushPart(a, d, false)
		adds, dels = adds[len(a):], dels[len(d):]
	}
	g.flushPart(adds, dels, true)
	in.adds = in.adds[:0]
	in.dels = in.dels[:0]
	in.pending = false
}

// flushPart registers adds and drops dels under the lock; with all, also
// the whole-table interests and column sets.
func (g *graph) flushPart(adds, dels []uint64, all bool) {
	in := g.in
	s := g.s
	r := s.svc.router
	r.mu.Lock()
	defer r.mu.Unlock()
	grew := len(adds) > 0
	structGrowth := false
	for _, h := range adds {
		if in.count[h] > 0 && !containsSess(r.keys[h], s) {
			r.keys[h] = append(r.keys[h], s)
		}
	}
	for _, h := range dels {
		if in.count[h] > 0 {
			continue
		}
		list := r.keys[h]
		for i, x := range list {
			if x == s {
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(r.keys, h)
		} else {
			r.keys[h] = list
		}
	}
	if all {
		for _, pair := range []struct {
			mine map[string]int
			all  map[string]map[*session]int
		}{{in.wild, r.wild}, {in.tables, r.tables}} {
			for t, n := range pair.mine {
				set := pair.all[t]
				if n > 0 {
					if set == nil {
						set = map[*session]int{}
						pair.all[t] = set
					}
					if set[s] == 0 {
						grew, structGrowth = true, true
					}
					set[s] = n
				} else {
					delete(pair.mine, t)
					if set != nil {
						delete(set, s)
						if len(set) == 0 {
							delete(pair.all, t)
						}
					}
				}
			}
		}
		for k, n := range in.colsets {
			list := r.colsets[k[0]]
			var cs *colset
			for _, c := range list {
				if c.id == k[1] {
					cs = c
				}
			}
			// Column sets stay registered once used (a few per table: the
			// primary key, foreign keys, columns of root predicates).
			if n > 0 {
				if cs == nil {
					cs = &colset{id: k[1], cols: in.csDefs[k]}
					r.colsets[k[0]] = append(list, cs)
					grew, structGrowth = true, true
				}
			} else {
				delete(in.colsets, k)
				delete(in.csDefs, k)
			}
		}
	}
	structural := grew && len(adds) == 0
	if grew {
		r.seq++
		in.lastGrow = r.seq
		for _, h := range adds {
			in.recent = append(in.recent, addRec{r.seq, h})
		}
		if n := len(in.recent) - recentAdds; n > 0 {
			in.trimmed = in.recent[n-1].seq
			in.recent = append(in.recent[:0], in.recent[n:]...)
		}
	}
	if structural || (grew && structGrowth) {
		in.structGrow = r.seq
	}
}

// drop removes all of a session's interests (the session ended).
func (g *graph) drop() {
	in := g.in
	for h := range in.count {
		in.dels = append(in.dels, h)
	}
	clear(in.count)
	for t := range in.wild {
		in.wild[t] = 0
	}
	for t := range in.tables {
		in.tables[t] = 0
	}
	in.adds = in.adds[:0]
	in.pending = true
	g.flush()
}

func containsSess(xs []*session, s *session) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// changesFor returns the indexes of a transaction's changes that concern
// a session, in order, from its route; full is true when the route cannot
// tell (the session's interests grew since in a way hashes do not
// describe) and every change must be evaluated.
func (rt *route) changesFor(s *session, in *interests) (idx []int32, full bool) {
	idx = rt.sessions[s]
	if in.lastGrow <= rt.seq {
		return idx, false
	}
	if in.structGrow > rt.seq || in.trimmed > rt.seq {
		return nil, true
	}
	var extra []int32
	for i := len(in.recent) - 1; i >= 0 && in.recent[i].seq > rt.seq; i-- {
		extra = append(extra, rt.byHash[in.recent[i].h]...)
	}
	if len(extra) == 0 {
		return idx, false
	}
	out := append(append([]int32(nil), idx...), extra...)
	slices.Sort(out)
	return slices.Compact(out), false
}

// route returns the sessions a transaction concerns, computing it once.
func (r *router) route(txn *changelog.Txn) *route {
	r.cacheMu.RLock()
	rt := r.cache[txn.LSN]
	r.cacheMu.RUnlock()
	if rt != nil {
		return rt
	}
	rt = &route{sessions: map[*session][]int32{}, byHash: map[uint64][]int32{}}
	var buf []byte
	r.mu.RLock()
	rt.seq = r.seq
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		table := relKey(ch.Rel.Schema, ch.Rel.Table)
		if ch.Op == changelog.OpTruncate {
			for s := range r.tables[table] {
				rt.add(s, i)
			}
			continue
		}
		for s := range r.wild[table] {
			rt.add(s, i)
		}
		for _, cs := range r.colsets[table] {
			idx := cs.indexes(ch.Rel)
			for _, row := range [][]coltype.Value{ch.Old, ch.New} {
				if row == nil {
					continue
				}
				buf = buf[:0]
				ok := true
				for _, j := range idx {
					if j < 0 || j >= len(row) || row[j].Kind == coltype.Null {
						ok = false
						break
					}
					buf = protocol.AppendValue(buf, row[j])
				}
				if !ok {
					continue
				}
				h := r.hash(table, cs.id, string(buf))
				if l := rt.byHash[h]; len(l) == 0 || l[len(l)-1] != int32(i) {
					rt.byHash[h] = append(l, int32(i))
				}
				for _, s := range r.keys[h] {
					rt.add(s, i)
				}
			}
		}
	}
	r.mu.RUnlock()
	r.cacheMu.Lock()
	if old := r.cache[txn.LSN]; old != nil {
		rt = old
	} else {
		r.cache[txn.LSN] = rt
		r.order = append(r.order, txn.LSN)
		rt.charged = rt.cost()
		r.cacheCost += rt.charged
		for len(r.order) > 1 && (len(r.order) > routeCache || r.cacheCost > routeCacheCost) {
			if old := r.cache[r.order[0]]; old != nil {
				r.cacheCost -= old.charged
				delete(r.cache, r.order[0])
			}
			r.order = r.order[1:]
		}
	}
	r.cacheMu.Unlock()
	return rt
}

func (c *colset) indexes(rel *changelog.Rel) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idxRel == rel {
		return c.idx
	}
	idx := make([]int, len(c.cols))
	for i, name := range c.cols {
		idx[i] = -1
		for k := range rel.Columns {
			if rel.Columns[k].Name == name {
				idx[i] = k
				break
			}
		}
	}
	c.idx, c.idxRel = idx, rel
	return idx
}
