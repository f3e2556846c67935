// Package writes is the service's write path: it applies client
// transactions to Postgres, merging them with concurrent writes by the
// rules of package merge, and keeps each row's merge metadata in a shadow
// table (lattice.shadow_<oid>). Plain SQL writes made by others are stamped
// by a trigger (lattice.stamp, server/catalog/schema.sql) so they merge
// like any other. See README.md for the formats and the algorithm.
package writes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/server/catalog"
)

// OpKind is what a change does to a row.
type OpKind uint8

// Change kinds.
const (
	Insert OpKind = 1 // writes every column (Set nil means all, in column order)
	Update OpKind = 2 // writes the columns in Set
	Delete OpKind = 3 // removes the tags in Seen
)

func (k OpKind) String() string {
	switch k {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Change is one row change of a client transaction: the net effect of the
// transaction on that row (a transaction may change a row once).
type Change struct {
	Table string // "schema.table" or "table" (Postgres name rules, search_path)
	Op    OpKind
	Key   []coltype.Value // primary key values, in key order
	// Set holds the indexes (catalog column order) of the columns written,
	// pairwise with Values. Insert: nil means every column, in order.
	// Primary key columns may appear only with the values in Key.
	Set    []int
	Values []coltype.Value
	// Seen is the set of the row's live tags the client had observed when
	// it wrote (empty for a row it never saw).
	Seen []merge.Stamp
	// SeenVersion, instead of Seen, gives what the client saw as the row
	// version it held (protocol.WriteChange.Version): the change has seen
	// the row's live tags added at versions 1..SeenVersion, and every tag
	// of its own origin (the client's earlier writes). 0: only its own.
	SeenVersion uint64
	// BySeenVersion selects SeenVersion instead of Seen.
	BySeenVersion bool
	// SeenLive, instead of Seen, says the client saw the row's current
	// state: every tag live when the change is applied (a client that held
	// the row at an unknown version).
	SeenLive bool
	// JSON gives, for columns in Set merged per key path (lattice.electrify
	// option json_merge), the per-path changes written, by column index;
	// the column's entry in Values is then ignored. A column merged per key
	// without an entry here is written whole: a set of the whole document
	// (keys the change did not see survive).
	JSON map[int][]merge.JSONChange
}

// Txn is a client transaction.
type Txn struct {
	Origin  string    // the client's origin id; "pg" is reserved for plain SQL
	ID      uint64    // the client's transaction id, increasing per origin
	HLC     merge.HLC // the transaction's timestamp: every op carries (HLC, Origin)
	Changes []Change
	// Role, when set, is the Postgres role the transaction's writes run
	// as, with Claims (JSON) as request.jwt.claims and Sub as
	// request.jwt.claim.sub: row-level security policies and privileges
	// decide; a write they hide or refuse rejects the transaction
	// (CodePermission). The merge metadata is written as the service.
	Role   string
	Claims []byte
	Sub    string
}

// Result says what Apply did.
type Result struct {
	// Applied is false when (Origin, ID) had been applied before: nothing
	// was done this time.
	Applied bool
}

// Rejection codes.
const (
	CodeCheck      = "check_violation"
	CodeNotNull    = "not_null_violation"
	CodeUnique     = "unique_violation" // also exclusion constraints
	CodeForeignKey = "foreign_key_violation"
	CodeTrigger    = "trigger_error"     // an exception raised by a trigger or a function it called
	CodePermission = "permission_denied" // privileges, row-level security
	CodeBadChange  = "bad_change"        // malformed change or value, unknown table, invalid input for a type
)

// Rejected is returned when Postgres refuses a transaction for what it
// contains (a constraint, a trigger, an invalid value), or the transaction
// is malformed. Nothing of the transaction was applied; applying it again
// gives the same answer (unless the data changed meanwhile).
type Rejected struct {
	Reason string // Postgres' message, or what is wrong with the change
	Detail string // Postgres' detail, if any
	Code   string // one of the Code constants
	Change int    // index of the change in Txn.Changes, or -1 (the transaction as a whole, e.g. at commit)
	// SQLState is the Postgres error code, empty for changes refused
	// before reaching Postgres.
	SQLState string
}

func (r *Rejected) Error() string {
	var b strings.Builder
	b.WriteString("transaction rejected")
	if r.Change >= 0 {
		fmt.Fprintf(&b, " at change %d", r.Change)
	}
	fmt.Fprintf(&b, " (%s): %s", r.Code, r.Reason)
	if r.Detail != "" {
		b.WriteString(" (" + r.Detail + ")")
	}
	return b.String()
}

func badChange(change int, format string, args ...any) *Rejected {
	return &Rejected{Reason: fmt.Sprintf(format, args...), Code: CodeBadChange, Change: change}
}

// errStaleSchema marks errors caused by a table that changed since the
// applier described it: the applier re-reads the catalog and retries.
var errStaleSchema = errors.New("table definition changed")

// retryable is an attempt that failed for a reason that another attempt
// may not hit: a deadlock, a serialization failure, a schema change.
type retryable struct {
	err    error
	stale  bool     // re-describe the tables
	tables []uint32 // the tables of the transaction
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// classify turns a Postgres error at change (or -1) into a *Rejected, a
// *retryable, or returns it unchanged (connection and server problems: the
// caller may retry later).
func classify(err error, change int, tables []uint32) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if errors.Is(err, errStaleSchema) {
			return &retryable{err: err, stale: true, tables: tables}
		}
		return err
	}
	rej := func(code string) error {
		return &Rejected{Reason: pgErr.Message, Detail: pgErr.Detail, Code: code, Change: change, SQLState: pgErr.Code}
	}
	code := pgErr.Code
	switch code {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return &retryable{err: err}
	case "0A000", "42P01", "42703", "42804", "26000", "42P07":
		// feature_not_supported ("cached plan must not change result
		// type"), undefined_table/column, datatype_mismatch, unknown
		// prepared statement: the table changed under the cached SQL.
		return &retryable{err: err, stale: true, tables: tables}
	case "23514":
		return rej(CodeCheck)
	case "23502":
		return rej(CodeNotNull)
	case "23505", "23P01":
		return rej(CodeUnique)
	case "23503", "23001":
		return rej(CodeForeignKey)
	case "42501":
		return rej(CodePermission)
	}
	inFunction := strings.Contains(pgErr.Where, "PL/pgSQL function") || strings.Contains(pgErr.Where, "SQL function")
	switch {
	case strings.HasPrefix(code, "P0"), strings.HasPrefix(code, "09"), strings.HasPrefix(code, "27"),
		strings.HasPrefix(code, "38"), strings.HasPrefix(code, "39"), strings.HasPrefix(code, "2F"):
		return rej(CodeTrigger)
	case inFunction && (strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23") || strings.HasPrefix(code, "44")):
		return rej(CodeTrigger)
	case strings.HasPrefix(code, "22"), strings.HasPrefix(code, "23"), strings.HasPrefix(code, "44"):
		// data exceptions (invalid input for a type, value too long, out
		// of range), other integrity violations, WITH CHECK OPTION
		return rej(CodeBadChange)
	}
	return err
}

// Applier applies client transactions. It caches table descriptions and
// their SQL (prepared once per pooled connection). Safe for concurrent use.
type Applier struct {
	pool *pgxpool.Pool
	cat  *catalog.Tables

	// MaxAttempts bounds the attempts per transaction when Postgres
	// reports a deadlock or serialization failure, or a table changed
	// (default 8).
	MaxAttempts int

	retries atomic.Uint64

	mu     sync.Mutex
	byName map[string]uint32
	byOID  map[uint32]*table
	stale  map[uint32]bool
}

// NewApplier returns an Applier writing through pool, whose connections
// must use coltype.SessionParams, and describing tables with cat.
func NewApplier(pool *pgxpool.Pool, cat *catalog.Tables) *Applier {
	return &Applier{pool: pool, cat: cat, MaxAttempts: 8,
		byName: map[string]uint32{}, byOID: map[uint32]*table{}, stale: map[uint32]bool{}}
}

// Retries returns how many attempts were repeated so far (deadlocks,
// serialization failures, schema changes), for metrics.
func (a *Applier) Retries() uint64 { return a.retries.Load() }

// Invalidate forgets what the applier knows about table oid (0: every
// table), e.g. after a schema change; the next transaction re-reads it.
func (a *Applier) Invalidate(oid uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if oid == 0 {
		for o := range a.byOID {
			a.stale[o] = true
		}
		a.byOID = map[uint32]*table{}
		a.byName = map[string]uint32{}
		return
	}
	delete(a.byOID, oid)
	a.stale[oid] = true
	for n, o := range a.byName {
		if o == oid {
			delete(a.byName, n)
		}
	}
}

// tableByName resolves a client's table name to an electrified table.
func (a *Applier) tableByName(ctx context.Context, name string) (*table, error) {
	a.mu.Lock()
	oid, ok := a.byName[name]
	a.mu.Unlock()
	if !ok {
		var found, electrified bool
		err := a.pool.QueryRow(ctx, `SELECT c.oid, true, EXISTS (SELECT 1 FROM lattice.electrified e WHERE e.relid = c.oid)
			FROM pg_class c WHERE c.oid = to_regclass($1)`, name).Scan(&oid, &found, &electrified)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			var pgErr *pgconn.PgError
			if catalog.BadName(err) && errors.As(err, &pgErr) {
				return nil, fmt.Errorf("%w %q: %s", catalog.ErrUnknownTable, name, pgErr.Message)
			}
			return nil, fmt.Errorf("look up table %q: %w", name, err)
		}
		if !found {
			return nil, fmt.Errorf("%w %q", catalog.ErrUnknownTable, name)
		}
		if !electrified {
			return nil, fmt.Errorf("%w: %s", catalog.ErrNotElectrified, name)
		}
		a.mu.Lock()
		a.byName[name] = oid
		a.mu.Unlock()
	}
	return a.tableByOID(ctx, oid)
}

func (a *Applier) tableByOID(ctx context.Context, oid uint32) (*table, error) {
	a.mu.Lock()
	t := a.byOID[oid]
	refresh := a.stale[oid]
	a.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := loadTable(ctx, a.pool, a.cat, oid, refresh)
	if errors.Is(err, errStaleSchema) && !refresh {
		t, err = loadTable(ctx, a.pool, a.cat, oid, true)
	}
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.byOID[oid]; old != nil {
		return old, nil
	}
	a.byOID[oid] = t
	delete(a.stale, oid)
	return t, nil
}

// Apply applies one client transaction in one Postgres transaction, or
// not at all. It returns Applied=false for a transaction applied before,
// a *Rejected when Postgres refuses it or it is malformed, and other
// errors (connection, server) when it may be retried later.
func (a *Applier) Apply(ctx context.Context, txn *Txn) (Result, error) {
	attempts := max(a.MaxAttempts, 1)
	var last error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			// Deadlock victims back off a little, randomly, so that the
			// transactions they collided with finish first.
			d := time.Duration(1+rand.IntN(4*attempt)) * time.Millisecond
			select {
			case <-ctx.Done():
				return Result{}, ctx.Err()
			case <-time.After(d):
			}
		}
		res, err := a.attempt(ctx, txn)
		var re *retryable
		if !errors.As(err, &re) {
			return res, err
		}
		last = re.err
		a.retries.Add(1)
		if re.stale {
			for _, oid := range re.tables {
				a.Invalidate(oid)
			}
		}
	}
	return Result{}, fmt.Errorf("apply transaction %d of %s: %d attempts failed, the last with: %w", txn.ID, txn.Origin, attempts, last)
}
