package writes

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/failpoint"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/server/catalog"
)

// PlainSQLOrigin is the origin of stamps made by the trigger for writes
// by plain SQL; clients may not use it.
const PlainSQLOrigin = "pg"

// maxRounds bounds the lock-and-read rounds of one transaction (the depth
// of foreign key chains whose parents were not predicted).
const maxRounds = 64

// rowReq is a row the transaction locks and reads.
type rowReq struct {
	t      *table
	key    [][]byte // primary key as Postgres text, in key order
	id     string
	mode   int // lockNoKey or lockUpdate
	change int // the first change that needs it
}

// rowID identifies a row: table OID, then the key texts, length-prefixed.
// Rows are locked in the order of their ids, in every transaction.
func rowID(oid uint32, key [][]byte) string {
	n := 4
	for _, k := range key {
		n += binary.MaxVarintLen32 + len(k)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, oid)
	for _, k := range key {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return string(b)
}

// rowState is a row as read, under lock, at the start of the transaction.
type rowState struct {
	t       *table
	key     [][]byte // as stored in the shadow row
	id      string
	present bool      // the base row exists
	tomb    bool      // the shadow holds a tomb: the row existed and was deleted
	texts   [][]byte  // per column: the base row's values, or the tomb's, as Postgres text (nil = NULL)
	row     merge.Row // compacted, reconciled with the base row
	// The shadow's column arrays as stored (1-based), to keep entries of
	// attnums the applier does not know (a column added since).
	rawHLC, rawOrigin [][]byte
	changes           int // client changes to this row in the transaction
	// version is the row's version (protocol 2.6) as stored; addVer the
	// version at which each loaded tag was added.
	version int64
	addVer  map[merge.Stamp]int64
	// docs are the merge states of the JSON columns merged per key (by
	// column index), docVer the version at which their tags were added,
	// rawDocs the shadow's docs column as stored (docs.go).
	docs    map[int]merge.Doc
	docVer  map[merge.Stamp]int64
	rawDocs []byte
}

// tagVersion is the version at which tag was added; tags added by the
// transaction being applied are not in addVer and get next.
func (st *rowState) tagVersion(tag merge.Stamp, next int64) int64 {
	if v, ok := st.addVer[tag]; ok {
		return v
	}
	return next
}

// run is one attempt at applying a transaction.
type run struct {
	a    *Applier
	txn  *Txn
	conn *pgx.Conn
	pg   *pgconn.PgConn

	tables    []uint32 // OIDs of the tables involved (for invalidation)
	ops       []merge.Op
	changeReq []string // request id of each change
	applying  string   // lattice.applying as set by the first statement
	reqs      map[string]*rowReq
	rows      map[string]*rowState // by request id and by canonical id
}

func (a *Applier) attempt(ctx context.Context, txn *Txn) (Result, error) {
	r := &run{a: a, txn: txn, reqs: map[string]*rowReq{}, rows: map[string]*rowState{}}
	if err := r.prepare(ctx); err != nil {
		return Result{}, err
	}
	pc, err := a.pool.Acquire(ctx)
	if err != nil {
		return Result{}, err
	}
	defer pc.Release()
	r.conn = pc.Conn()
	r.pg = r.conn.PgConn()
	res, err := r.exec(ctx)
	if err != nil && !r.pg.IsClosed() && r.pg.TxStatus() != 'I' {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, rbErr := r.pg.Exec(rctx, "ROLLBACK").ReadAll(); rbErr != nil {
			r.pg.Close(rctx) // the pool drops it
		}
		cancel()
	}
	return res, err
}

func (r *run) addTable(t *table) {
	if !slices.Contains(r.tables, t.oid) {
		r.tables = append(r.tables, t.oid)
	}
}

func (r *run) addReq(t *table, key [][]byte, mode, change int) *rowReq {
	id := rowID(t.oid, key)
	if q := r.reqs[id]; q != nil {
		q.mode = max(q.mode, mode)
		return q
	}
	q := &rowReq{t: t, key: key, id: id, mode: mode, change: change}
	r.reqs[id] = q
	r.addTable(t)
	return q
}

// keyTexts converts key values to Postgres text for table t.
func keyTexts(t *table, vals []coltype.Value) ([][]byte, error) {
	key := make([][]byte, len(t.pk))
	for k, i := range t.pk {
		txt, ok, err := coltype.ToPGText(t.cols[i].Type, vals[k])
		if err != nil {
			return nil, fmt.Errorf("key column %s: %v", t.cols[i].Name, err)
		}
		if !ok {
			return nil, fmt.Errorf("key column %s is NULL", t.cols[i].Name)
		}
		key[k] = []byte(txt)
	}
	return key, nil
}

// prepare validates the transaction, resolves its tables and lists the
// rows to lock: those it changes and the parents its inserts and updates
// reference (predicted from the values written; the merge may pick other
// values, then a later round reads the missing parents).
func (r *run) prepare(ctx context.Context) error {
	txn := r.txn
	if txn.Origin == "" || txn.Origin == PlainSQLOrigin {
		return badChange(-1, "origin %q is not allowed", txn.Origin)
	}
	if txn.HLC == 0 {
		return badChange(-1, "transaction without HLC")
	}
	stamp := merge.Stamp{HLC: txn.HLC, Origin: txn.Origin}
	r.ops = make([]merge.Op, len(txn.Changes))
	r.changeReq = make([]string, len(txn.Changes))
	for i := range txn.Changes {
		ch := &txn.Changes[i]
		t, err := r.a.tableByName(ctx, ch.Table)
		if err != nil {
			if errors.Is(err, catalog.ErrUnknownTable) || errors.Is(err, catalog.ErrNotElectrified) {
				return badChange(i, "%v", err)
			}
			return classify(err, i, r.tables)
		}
		r.addTable(t)
		if len(ch.Key) != len(t.pk) {
			return badChange(i, "%s has %d primary key columns, the change gives %d", t.name, len(t.pk), len(ch.Key))
		}
		key, err := keyTexts(t, ch.Key)
		if err != nil {
			return badChange(i, "%s: %v", t.name, err)
		}
		op := merge.Op{Stamp: stamp, Seen: ch.Seen}
		mode := lockNoKey
		switch ch.Op {
		case Insert, Update:
			op.Kind = merge.Upsert
			set := ch.Set
			if set == nil && ch.Op == Insert {
				set = make([]int, len(t.cols))
				for c := range set {
					set[c] = c
				}
			}
			if len(set) != len(ch.Values) {
				return badChange(i, "%d columns and %d values", len(set), len(ch.Values))
			}
			written := make([]bool, len(t.cols))
			for k, c := range set {
				if c < 0 || c >= len(t.cols) {
					return badChange(i, "%s has no column %d", t.name, c)
				}
				if written[c] {
					return badChange(i, "column %s written twice", t.cols[c].Name)
				}
				written[c] = true
				if t.isPK[c] {
					p := slices.Index(t.pk, c)
					txt, ok, err := coltype.ToPGText(t.cols[c].Type, ch.Values[k])
					if err != nil || !ok || txt != string(key[p]) {
						return badChange(i, "the change writes key column %s with a value other than the key: a key change is a delete and an insert", t.cols[c].Name)
					}
				}
			}
			for c := range ch.JSON {
				// A json/jsonb column no longer merged per key (json_merge
				// turned off after the client was told) takes the changes
				// applied to its value (apply, plainJSON).
				if c < 0 || c >= len(t.cols) || !written[c] || t.isPK[c] || t.cols[c].Type.Array ||
					(t.cols[c].Type.Base != coltype.JSON && t.cols[c].Type.Base != coltype.JSONB) {
					return badChange(i, "%s: per-path JSON changes for column %d, which the change does not write or which is not a json/jsonb column", t.name, c)
				}
			}
			op.Set, op.Values = set, ch.Values
		case Delete:
			op.Kind = merge.Delete
			mode = lockUpdate
		default:
			return badChange(i, "unknown change kind %d", ch.Op)
		}
		if err := op.Validate(); err != nil {
			return badChange(i, "%v", err)
		}
		r.ops[i] = op
		q := r.addReq(t, key, mode, i)
		r.changeReq[i] = q.id

		if op.Kind != merge.Upsert {
			continue
		}
		fks, refs, err := r.a.foreignKeys(ctx, t)
		if err != nil {
			return classify(err, i, r.tables)
		}
	predict:
		for j, ref := range refs {
			vals := make([]coltype.Value, len(ref.Cols))
			for k, c := range ref.Cols {
				at := slices.Index(op.Set, c)
				if at < 0 || op.Values[at].Kind == coltype.Null {
					continue predict
				}
				vals[k] = op.Values[at]
			}
			p := fks[j].parent
			pv := make([]coltype.Value, len(p.pk))
			for k := range p.pk {
				pv[k] = vals[fks[j].perm[k]]
			}
			pkey, err := keyTexts(p, pv)
			if err != nil {
				continue // no such parent can exist; Postgres will say so
			}
			r.addReq(p, pkey, lockNoKey, i)
		}
	}
	return nil
}

// item is one statement of a pipelined batch.
type item struct {
	s      *stmt
	params [][]byte
	change int // the change it belongs to, -1 for none
	// base is the kind of a base-table write ('i', 'u', 'd'), which runs
	// as the user under row-level security; 0 for others. table names the
	// table, for messages.
	base  byte
	table string
	// user replaces s when the write runs as the user; pk names the
	// primary key constraint of an insert.
	user *stmt
	pk   string
}

type result struct {
	rows [][][]byte
	tag  pgconn.CommandTag
}

// batch prepares (once per connection) and runs items in one round trip.
// On error it returns the index of the failed item.
func (r *run) batch(ctx context.Context, items []item) ([]result, int, error) {
	var b pgconn.Batch
	for i, it := range items {
		sd, err := r.conn.Prepare(ctx, it.s.name, it.s.sql)
		if err != nil {
			return nil, i, err
		}
		b.ExecStatement(sd, it.params, nil, nil)
	}
	mrr := r.pg.ExecBatch(ctx, &b)
	results := make([]result, 0, len(items))
	failedAt := -1
	var failErr error
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		var res result
		for rr.NextRow() {
			res.rows = append(res.rows, copyRow(rr.Values()))
		}
		tag, err := rr.Close()
		if err != nil && failErr == nil {
			failErr, failedAt = err, len(results)
		}
		res.tag = tag
		results = append(results, res)
	}
	if err := mrr.Close(); err != nil && failErr == nil {
		failErr, failedAt = err, len(results)
	}
	if failErr != nil {
		return results, min(failedAt, len(items)-1), failErr
	}
	return results, -1, nil
}

func copyRow(vals [][]byte) [][]byte {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	row := make([][]byte, len(vals))
	for i, v := range vals {
		if v != nil {
			buf = append(buf, v...)
			row[i] = buf[len(buf)-len(v) : len(buf) : len(buf)]
		}
	}
	return row
}

// lockItems lists the statements that lock and read reqs (sorted by id):
// the base row (a row lock; the read sees the latest committed version),
// then an empty shadow row if there is none, then the shadow row locked,
// then the base row again, which load reads.
//
// The second read is the one that counts. Locking a row that does not
// exist locks nothing: a concurrent transaction inserting it (the applier
// for another client, or plain SQL through the stamping trigger) is not
// waited for by the first read, but it holds the shadow row until it
// commits, so the shadow lock waits for it and then sees its write. Read
// once, the base row would look absent while its shadow says it is live
// (the insert lost: a concurrent delete removed it on its author without
// returning it, an upsert failed on the key). The first read stays, so
// that every writer locks the base row before the shadow row (the
// triggers' order; the other order deadlocks against plain SQL).
func lockItems(items []item, reqs []*rowReq) []item {
	for _, q := range reqs {
		items = append(items,
			item{s: q.t.selBase[q.mode], params: q.key, change: q.change},
			item{s: q.t.insShadow, params: q.key, change: q.change},
			item{s: q.t.selShadow, params: q.key, change: q.change},
			item{s: q.t.selBase[q.mode], params: q.key, change: q.change})
	}
	return items
}

// lockItemsPerRow is the number of items lockItems runs per row.
const lockItemsPerRow = 4

func sortedReqs(m map[string]*rowReq, skip func(*rowReq) bool) []*rowReq {
	var out []*rowReq
	for _, q := range m {
		if !skip(q) {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *rowReq) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	return out
}

// exec runs the transaction on r.conn.
func (r *run) exec(ctx context.Context) (Result, error) {
	txn := r.txn
	reqs := sortedReqs(r.reqs, func(*rowReq) bool { return false })
	// Name the client transaction in the replication stream, so the client
	// recognises its own write coming back.
	origin := strconv.AppendUint(nil, txn.ID, 10)
	origin = append(append(origin, ':'), txn.Origin...)
	if len(r.changeReq) > 0 {
		r.applying = r.reqs[r.changeReq[0]].t.applying
	}
	items := []item{
		{s: stmtBegin, change: -1},
		{s: stmtApplied, params: [][]byte{[]byte(txn.Origin), strconv.AppendInt(nil, int64(txn.ID), 10), origin, []byte(r.applying)}, change: -1},
	}
	items = lockItems(items, reqs)
	res, failed, err := r.batch(ctx, items)
	if err != nil {
		return Result{}, r.fail(err, items, failed)
	}
	if res[1].tag.RowsAffected() == 0 {
		// Applied before. The caller's rollback ends the transaction.
		if _, err := r.pg.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			return Result{}, err
		}
		return Result{Applied: false}, nil
	}
	if err := r.load(reqs, res[2:]); err != nil {
		return Result{}, err
	}
	if err := r.oneChangePerRow(); err != nil {
		return Result{}, err
	}

	var sim *simulation
	for round := 0; ; round++ {
		for _, st := range r.rows {
			if _, _, err := r.a.foreignKeys(ctx, st.t); err != nil {
				return Result{}, classify(err, -1, r.tables)
			}
		}
		sim = r.simulate()
		if sim.rej != nil {
			return Result{}, sim.rej
		}
		if len(sim.missing) == 0 {
			break
		}
		if round >= maxRounds {
			return Result{}, fmt.Errorf("foreign keys nested more than %d deep", maxRounds)
		}
		more := sortedReqs(sim.missing, func(q *rowReq) bool { return r.rows[q.id] != nil })
		for _, q := range more {
			r.reqs[q.id] = q
			r.addTable(q.t)
		}
		items = lockItems(nil, more)
		res, failed, err := r.batch(ctx, items)
		if err != nil {
			return Result{}, r.fail(err, items, failed)
		}
		if err := r.load(more, res); err != nil {
			return Result{}, err
		}
	}
	items = sim.writes
	if txn.Role != "" {
		// Under row-level security, a write the policies hide affects no
		// row without an error: check before committing.
		items = items[:len(items)-1]
	}
	if err := failpoint.Hit("server/before-pg-commit"); err != nil {
		return Result{}, fmt.Errorf("apply transaction: %w", err)
	}
	res, failed, err = r.batch(ctx, items)
	if err != nil {
		return Result{}, r.fail(err, items, failed)
	}
	if txn.Role != "" {
		if rej := deniedRows(items, res); rej != nil {
			return Result{}, rej
		}
		if _, _, err := r.batch(ctx, []item{{s: stmtCommit, change: -1}}); err != nil {
			return Result{}, classify(err, -1, r.tables)
		}
	}
	return Result{Applied: true}, nil
}

func (r *run) fail(err error, items []item, failed int) error {
	change := -1
	if failed >= 0 && failed < len(items) {
		change = items[failed].change
		var pgErr *pgconn.PgError
		if it := items[failed]; it.base == 'i' && it.pk != "" && errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == it.pk {
			// The row was inserted concurrently (by plain SQL) after the
			// service found it absent: the next attempt merges with it.
			return &retryable{err: err}
		}
	}
	return classify(err, change, r.tables)
}

// load builds the row states from the results of lockItems.
func (r *run) load(reqs []*rowReq, res []result) error {
	for j, q := range reqs {
		shadow, base := res[lockItemsPerRow*j+2], res[lockItemsPerRow*j+3]
		if len(shadow.rows) != 1 {
			return fmt.Errorf("%s: shadow row of key %q not found after insert", q.t.name, q.key)
		}
		var baseRow [][]byte
		if len(base.rows) > 0 {
			baseRow = base.rows[0]
		}
		st, err := q.t.loadRow(baseRow, shadow.rows[0])
		if err != nil {
			return err
		}
		if prev := r.rows[st.id]; prev != nil {
			st = prev // the same row under another spelling of its key
		} else {
			r.rows[st.id] = st
		}
		r.rows[q.id] = st
	}
	return nil
}

// oneChangePerRow rejects a transaction that changes a row twice (also
// under two spellings of its key).
func (r *run) oneChangePerRow() error {
	for i, id := range r.changeReq {
		st := r.rows[id]
		st.changes++
		if st.changes > 1 {
			return badChange(i, "%s: the transaction changes the row with key (%s) twice (send its net effect)", st.t.name, bytes.Join(st.key, []byte(", ")))
		}
	}
	return nil
}

// loadRow builds a row state from the base row (nil if absent) and the
// shadow row (key texts, col_hlc, col_origin, adds, removes, tomb, version,
// add_ver).
func (t *table) loadRow(base, sh [][]byte) (*rowState, error) {
	n := len(t.pk)
	st := &rowState{t: t, key: sh[:n:n], present: base != nil}
	st.id = rowID(t.oid, st.key)
	bad := func(what string, err error) error {
		return fmt.Errorf("%s: shadow row of key %q: %s: %w", t.name, st.key, what, err)
	}
	var err error
	if st.rawHLC, err = parseArray(sh[n]); err != nil {
		return nil, bad("col_hlc", err)
	}
	if st.rawOrigin, err = parseArray(sh[n+1]); err != nil {
		return nil, bad("col_origin", err)
	}
	adds, err := parseTags(sh[n+2])
	if err != nil {
		return nil, bad("adds", err)
	}
	removes, err := parseTags(sh[n+3])
	if err != nil {
		return nil, bad("removes", err)
	}
	if sh[n+5] != nil {
		if st.version, err = strconv.ParseInt(string(sh[n+5]), 10, 64); err != nil {
			return nil, bad("version", err)
		}
	}
	addVer, err := parseArray(sh[n+6])
	if err != nil {
		return nil, bad("add_ver", err)
	}
	st.addVer = make(map[merge.Stamp]int64, len(adds)+1)
	for i, tag := range adds {
		v := int64(1) // metadata from before row versions
		if i+1 < len(addVer) && addVer[i+1] != nil {
			if v, err = strconv.ParseInt(string(addVer[i+1]), 10, 64); err != nil {
				return nil, bad("add_ver", err)
			}
		}
		st.addVer[tag] = v
	}
	if len(sh) > n+7 {
		if err := t.loadDocs(st, sh[n+7]); err != nil {
			return nil, bad("docs", err)
		}
	}
	st.texts = make([][]byte, len(t.cols))
	switch {
	case base != nil:
		copy(st.texts, base)
	case sh[n+4] != nil:
		st.tomb = true
		tomb, err := parseArray(sh[n+4])
		if err != nil {
			return nil, bad("tomb", err)
		}
		for i, a := range t.attnums {
			if int(a) < len(tomb) {
				st.texts[i] = tomb[a]
			}
		}
	}
	if base == nil {
		for k, i := range t.pk {
			st.texts[i] = st.key[k]
		}
	}
	row := merge.Row{Values: make([]coltype.Value, len(t.cols)), Cols: make([]merge.Stamp, len(t.cols))}
	var maxHLC merge.HLC
	for i, a := range t.attnums {
		v, err := coltype.FromPGText(t.cols[i].Type, st.texts[i])
		if err != nil {
			return nil, fmt.Errorf("%s: column %s: %w", t.name, t.cols[i].Name, err)
		}
		row.Values[i] = v
		if int(a) < len(st.rawHLC) && int(a) < len(st.rawOrigin) && st.rawHLC[a] != nil && st.rawOrigin[a] != nil {
			h, err := strconv.ParseInt(string(st.rawHLC[a]), 10, 64)
			if err != nil {
				return nil, bad("col_hlc", err)
			}
			row.Cols[i] = merge.Stamp{HLC: merge.HLC(uint64(h)), Origin: string(st.rawOrigin[a])}
			maxHLC = max(maxHLC, row.Cols[i].HLC)
		}
	}
	// Tags removed by earlier transactions are dropped (see README,
	// "Compaction"): their removal was committed and published before.
	row.Adds = merge.Row{Adds: adds, Removes: removes}.Live()
	// The base table is the truth about existence. A disagreement comes
	// from writes made with the triggers disabled.
	if st.present && len(row.Adds) == 0 {
		for _, s := range adds {
			maxHLC = max(maxHLC, s.HLC)
		}
		for _, s := range removes {
			maxHLC = max(maxHLC, s.HLC)
		}
		h := max(merge.MakeHLC(time.Now().UnixMilli(), 0), maxHLC+1)
		row.Adds = []merge.Stamp{{HLC: h, Origin: PlainSQLOrigin}}
		// Whoever holds the row's current version has seen it.
		st.addVer[row.Adds[0]] = max(st.version, 1)
	} else if !st.present && len(row.Adds) > 0 {
		row.Removes = row.Adds
	}
	st.row = row
	return st, nil
}

// simRow is a row's state while the transaction is simulated.
type simRow struct {
	st      *rowState
	present bool     // the base row exists, after the writes emitted so far
	texts   [][]byte // current values as text
	own     bool     // texts is a private copy
	dirty   []bool   // columns changed since the last write emitted
	row     merge.Row
	existed bool // the row existed at some point (a deleted row gets a tomb)
	// docs and docVer: as in rowState, private copies once ownDocs;
	// docsDirty once the transaction wrote a document.
	docs      map[int]merge.Doc
	docVer    map[merge.Stamp]int64
	ownDocs   bool
	docsDirty bool
}

// simulation computes, in memory, the merged state of every row the
// transaction touches and the statements that write it.
type simulation struct {
	r        *run
	rows     map[*rowState]*simRow
	order    []*simRow
	writes   []item
	missing  map[string]*rowReq
	applying string
	rej      *Rejected
}

func (s *simulation) get(st *rowState) *simRow {
	if sr := s.rows[st]; sr != nil {
		return sr
	}
	sr := &simRow{st: st, present: st.present, texts: st.texts, row: st.row, dirty: make([]bool, len(st.t.cols)),
		existed: st.present || st.tomb, docs: st.docs, docVer: st.docVer}
	s.rows[st] = sr
	s.order = append(s.order, sr)
	return sr
}

// simulate runs the transaction's ops, with compensations, over the rows
// loaded so far. Rows it needs but are not loaded are listed in missing.
func (r *run) simulate() *simulation {
	s := &simulation{r: r, rows: map[*rowState]*simRow{}, missing: map[string]*rowReq{}, applying: r.applying}
	for i := range r.txn.Changes {
		op := r.ops[i]
		sr := s.get(r.rows[r.changeReq[i]])
		switch ch := &r.txn.Changes[i]; {
		case ch.SeenLive:
			op.Seen = sr.row.Live()
		case ch.BySeenVersion:
			op.Seen = r.seenAt(sr, ch.SeenVersion, op.Stamp)
		}
		if rej := s.apply(sr, op, i); rej != nil {
			s.rej = rej
			return s
		}
		if op.Kind == merge.Upsert && sr.row.Exists() {
			s.compensate(sr, op.Stamp, map[*rowState]bool{sr.st: true}, i)
		}
		s.emit(sr, i, false)
	}
	for _, sr := range s.order {
		s.writes = append(s.writes, item{s: sr.st.t.updShadow, params: sr.shadowParams(), change: -1})
	}
	if r.txn.Role != "" {
		s.writes = r.asUser(s.writes)
	}
	s.writes = append(s.writes, item{s: stmtCommit, change: -1})
	return s
}

// asUser makes the base-table writes run as the transaction's role with
// its claims (row-level security, privileges), and the rest (merge
// metadata) as the service.
func (r *run) asUser(items []item) []item {
	out := make([]item, 0, len(items)+4)
	as := false
	for _, it := range items {
		if it.user != nil {
			it.s = it.user
		}
		if (it.base != 0) != as {
			if as = it.base != 0; as {
				out = append(out, item{s: stmtAsUser, params: [][]byte{[]byte(r.txn.Role), r.txn.Claims, []byte(r.txn.Sub)}, change: it.change})
			} else {
				out = append(out, item{s: stmtAsService, change: -1})
			}
		}
		out = append(out, it)
	}
	if as {
		out = append(out, item{s: stmtAsService, change: -1})
	}
	return out
}

// deniedRows rejects a transaction whose UPDATE or DELETE of a row, run
// as the user, changed nothing: row-level security hid the row from the
// user (the service locked it, so it exists).
func deniedRows(items []item, res []result) *Rejected {
	for i, it := range items {
		if i >= len(res) || (it.base != 'u' && it.base != 'd') || res[i].tag.RowsAffected() > 0 {
			continue
		}
		verb := "update"
		if it.base == 'd' {
			verb = "delete"
		}
		return &Rejected{Code: CodePermission, Change: it.change, SQLState: "42501",
			Reason: fmt.Sprintf("row-level security policy for table %q does not allow this %s: the row is not visible to the user, or the %s policy's USING expression excludes it", it.table, verb, strings.ToUpper(verb))}
	}
	return nil
}

// seenAt is what a client that held the row at version v (protocol 2.6)
// had seen of it: the live tags added at versions 1..v, and those of its
// own origin (its earlier writes), older than the op's stamp.
func (r *run) seenAt(sr *simRow, v uint64, stamp merge.Stamp) []merge.Stamp {
	var seen []merge.Stamp
	next := sr.st.version + 1
	for _, tag := range sr.row.Live() {
		if tag.Compare(stamp) >= 0 {
			continue
		}
		if tag.Origin == r.txn.Origin {
			seen = append(seen, tag)
			continue
		}
		if av := sr.st.tagVersion(tag, next); av >= 1 && uint64(av) <= v {
			seen = append(seen, tag)
		}
	}
	return seen
}

// plainJSON turns the per-path changes of an op for json/jsonb columns
// that are not merged per key path (json_merge turned off while a client
// still held the column as merged) into whole values: the changes applied
// to the column's value as the row holds it (a last-writer-wins write of
// the result, as if the client had sent it whole).
func (s *simulation) plainJSON(sr *simRow, op *merge.Op, change int) *Rejected {
	t := sr.st.t
	ch := &s.r.txn.Changes[change]
	if len(ch.JSON) == 0 || op.Kind != merge.Upsert {
		return nil
	}
	cloned := false
	for k, c := range op.Set {
		changes, ok := ch.JSON[c]
		if !ok || (t.jsonMerge != nil && t.jsonMerge[c]) {
			continue
		}
		doc, err := merge.ApplyJSONChanges(canonicalText(sr.texts[c]), changes)
		if err != nil {
			return badChange(change, "%s column %s: per-path changes on its value: %v", t.name, t.cols[c].Name, err)
		}
		if !cloned {
			op.Values = slices.Clone(op.Values)
			cloned = true
		}
		if doc == nil {
			op.Values[k] = coltype.Value{}
		} else {
			op.Values[k] = coltype.Value{Kind: coltype.Text, B: doc}
		}
	}
	return nil
}

// apply merges a client op into the row and records the columns whose
// value changed.
func (s *simulation) apply(sr *simRow, op merge.Op, change int) *Rejected {
	t := sr.st.t
	if rej := s.plainJSON(sr, &op, change); rej != nil {
		return rej
	}
	nr := merge.Apply(sr.row, op)
	if op.Kind == merge.Upsert {
		for k, c := range op.Set {
			if t.jsonMerge != nil && t.jsonMerge[c] && !t.isPK[c] {
				if rej := s.applyDoc(sr, &nr, op, k, c, change); rej != nil {
					return rej
				}
				continue
			}
			if t.isPK[c] || nr.Cols[c] != op.Stamp {
				continue // key columns never change; lost to a newer write
			}
			txt, ok, err := coltype.ToPGText(t.cols[c].Type, nr.Values[c])
			if err != nil {
				return badChange(change, "%s column %s: %v", t.name, t.cols[c].Name, err)
			}
			var nt []byte
			if ok {
				nt = []byte(txt)
			}
			if (nt == nil) != (sr.texts[c] == nil) || !bytes.Equal(nt, sr.texts[c]) {
				if !sr.own {
					sr.texts = slices.Clone(sr.texts)
					sr.own = true
				}
				sr.texts[c] = nt
				sr.dirty[c] = true
			}
		}
	}
	sr.row = nr
	return nil
}

// compensate re-asserts the parents of row sr (written with stamp): a
// Touch of each parent row its foreign keys reference, transitively; the
// parents' writes are emitted before the child's.
func (s *simulation) compensate(sr *simRow, stamp merge.Stamp, visited map[*rowState]bool, change int) {
	t := sr.st.t
	kind := merge.Upsert
	comps, err := merge.Compensations(merge.Op{Kind: kind, Stamp: stamp}, sr.row.Values, t.refs)
	if err != nil {
		return // refs come from the catalog and fit the row
	}
	for _, c := range comps {
		j, _ := strconv.Atoi(c.Table)
		fk := t.fks[j]
		p := fk.parent
		pv := make([]coltype.Value, len(p.pk))
		for k := range p.pk {
			pv[k] = c.Key[fk.perm[k]]
		}
		key, err := keyTexts(p, pv)
		if err != nil {
			continue
		}
		id := rowID(p.oid, key)
		pst := s.r.rows[id]
		if pst == nil {
			if s.missing[id] == nil {
				s.missing[id] = &rowReq{t: p, key: key, id: id, mode: lockNoKey, change: change}
			}
			continue
		}
		if visited[pst] {
			continue
		}
		visited[pst] = true
		if !pst.present && !pst.tomb && s.rows[pst] == nil {
			// The parent never existed: nothing to re-assert (the
			// foreign key check will say so).
			continue
		}
		ps := s.get(pst)
		var seen []merge.Stamp
		for _, tag := range ps.row.Live() {
			if tag.Compare(stamp) < 0 {
				seen = append(seen, tag)
			}
		}
		ps.row = merge.Apply(ps.row, c.Touch(seen))
		s.compensate(ps, stamp, visited, change)
		s.emit(ps, change, true)
	}
}

// emit appends the base-table write that brings Postgres to the row's
// merged state, if any.
func (s *simulation) emit(sr *simRow, change int, touch bool) {
	t := sr.st.t
	exists := sr.row.Exists()
	sr.existed = sr.existed || exists
	var it item
	switch {
	case exists && sr.present:
		var cols []int
		for c, d := range sr.dirty {
			if d {
				cols = append(cols, c)
			}
		}
		unchanged := len(cols) == 0
		if unchanged {
			// Nothing changed (the write lost every column to newer ones, or
			// only asserted the row): still write the row unchanged, so the
			// row's authoritative values come back through the stream to the
			// author, whose local values must yield to them.
			cols = []int{0}
		}
		st, cols := t.update(cols)
		params := make([][]byte, 0, len(t.pk)+len(cols))
		params = append(params, sr.st.key...)
		for _, c := range cols {
			params = append(params, sr.texts[c])
		}
		it = item{s: st, params: params, change: change, base: 'u', table: t.name}
		if touch && unchanged {
			// A parent re-asserted by a child's write, unchanged: merge
			// bookkeeping, not the user's write (it runs as the service).
			it.base = 0
		}
	case exists && !sr.present:
		it = item{s: t.insBase, params: slices.Clone(sr.texts), change: change, base: 'i', table: t.name, user: t.insUser, pk: t.pkName}
		sr.present = true
	case !exists && sr.present:
		it = item{s: t.delBase, params: sr.st.key, change: change, base: 'd', table: t.name}
		sr.present = false
	default:
		clear(sr.dirty)
		return
	}
	clear(sr.dirty)
	if s.applying != t.applying {
		s.writes = append(s.writes, item{s: stmtApplying, params: [][]byte{[]byte(t.applying)}, change: change})
		s.applying = t.applying
	}
	s.writes = append(s.writes, it)
}

// shadowParams are the parameters of the table's updShadow statement.
func (sr *simRow) shadowParams() [][]byte {
	t, st := sr.st.t, sr.st
	width := max(t.maxAtt, len(st.rawHLC)-1, len(st.rawOrigin)-1)
	col := make([]int, width+1)
	for a := range col {
		col[a] = -1
	}
	for i, a := range t.attnums {
		col[a] = i
	}
	hl := make([]byte, 0, 2+width*20)
	or := make([]byte, 0, 2+width*8)
	hl = append(hl, '{')
	or = append(or, '{')
	for a := 1; a <= width; a++ {
		if a > 1 {
			hl = append(hl, ',')
			or = append(or, ',')
		}
		if i := col[a]; i >= 0 {
			var s merge.Stamp
			if i < len(sr.row.Cols) {
				s = sr.row.Cols[i]
			}
			if s.IsZero() {
				hl = append(hl, "NULL"...)
				or = append(or, "NULL"...)
			} else {
				hl = strconv.AppendInt(hl, int64(s.HLC), 10)
				or = appendTextElem(or, []byte(s.Origin), false)
			}
			continue
		}
		var h, o []byte
		if a < len(st.rawHLC) {
			h = st.rawHLC[a]
		}
		if a < len(st.rawOrigin) {
			o = st.rawOrigin[a]
		}
		if h == nil {
			hl = append(hl, "NULL"...)
		} else {
			hl = append(hl, h...)
		}
		or = appendTextElem(or, o, o == nil)
	}
	hl = append(hl, '}')
	or = append(or, '}')
	var tomb []byte
	if !sr.row.Exists() && sr.existed {
		tomb = append(tomb, '{')
		for a := 1; a <= t.maxAtt; a++ {
			if a > 1 {
				tomb = append(tomb, ',')
			}
			if i := col[a]; i >= 0 {
				tomb = appendTextElem(tomb, sr.texts[i], sr.texts[i] == nil)
			} else {
				tomb = append(tomb, "NULL"...)
			}
		}
		tomb = append(tomb, '}')
	}
	// The row's next version; the tags this transaction added get it.
	next := st.version + 1
	av := make([]byte, 0, 2+len(sr.row.Adds)*4)
	av = append(av, '{')
	for i, tag := range sr.row.Adds {
		if i > 0 {
			av = append(av, ',')
		}
		av = strconv.AppendInt(av, st.tagVersion(tag, next), 10)
	}
	av = append(av, '}')
	params := make([][]byte, 0, len(t.pk)+8)
	params = append(params, st.key...)
	return append(params, hl, or, tagArray(sr.row.Adds), tagArray(sr.row.Removes), tomb,
		strconv.AppendInt(nil, next, 10), av, sr.docsParam())
}
