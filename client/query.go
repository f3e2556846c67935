package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// Rows is the result of a query.
type Rows struct {
	Columns []string
	// Values holds one slice per row, with one value per column: int64,
	// float64, string, []byte or nil (NULL), after SQLite's storage class.
	Values [][]any
}

// Query runs one read-only SQL statement on the local replica. args bind
// to its parameters (?, ?NNN, :name by position): nil, bool (0 or 1), the
// integer types, float32/64, string, []byte and time.Time (RFC 3339 text
// with microseconds) are accepted. Query waits while a service
// transaction is being applied, so it never sees one half-applied.
func (c *Client) Query(ctx context.Context, sql string, args ...any) (*Rows, error) {
	if err := c.lockOpen(ctx); err != nil {
		return nil, fmt.Errorf("run query: %w", err)
	}
	defer c.kickWatcher() // after the unlock: look for other programs' commits
	defer c.unlock()
	old := c.conn.SetInterrupt(ctx)
	defer c.conn.SetInterrupt(old)

	st, err := c.prepareQuery(sql, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := bindArgs(st, args); err != nil {
		return nil, fmt.Errorf("bind query arguments: %w", err)
	}
	rows, err := readRows(st)
	if err != nil {
		return nil, fmt.Errorf("run query: %w", err)
	}
	return rows, nil
}

// prepareQuery prepares one read-only statement; when reads is non-nil it
// receives the (lower-case) names of the tables the statement reads.
// Caller holds db.
func (c *Client) prepareQuery(sql string, reads map[string]struct{}) (*sqlite3.Stmt, error) {
	var flags sqlite3.PrepareFlag
	if reads != nil {
		flags = sqlite3.PREPARE_PERSISTENT // a live query's statement is kept
	}
	if reads != nil {
		c.authHook = func(action sqlite3.AuthorizerActionCode, name3rd, _, _, _ string) sqlite3.AuthorizerReturnCode {
			if action == sqlite3.AUTH_READ {
				reads[strings.ToLower(name3rd)] = struct{}{}
			}
			return sqlite3.AUTH_OK
		}
		defer func() { c.authHook = nil }()
	}
	st, tail, err := c.conn.PrepareFlags(sql, flags)
	if err != nil {
		return nil, fmt.Errorf("prepare query: %w", err)
	}
	if st == nil {
		return nil, errors.New("prepare query: no SQL statement")
	}
	if !onlySpace(tail) {
		st.Close()
		return nil, errors.New("prepare query: more than one statement")
	}
	if !st.ReadOnly() {
		st.Close()
		return nil, errors.New("prepare query: statement writes to the database (use Exec)")
	}
	return st, nil
}

func onlySpace(s string) bool {
	return strings.TrimLeft(s, " \t\r\n;") == ""
}

// readRows steps st to the end and collects the rows.
func readRows(st *sqlite3.Stmt) (*Rows, error) {
	// Step before reading the columns: a statement is re-prepared, and
	// "*" re-expanded, by the first step after a schema change.
	more := st.Step()
	n := st.ColumnCount()
	rows := &Rows{Columns: make([]string, n), Values: [][]any{}}
	for i := range n {
		rows.Columns[i] = st.ColumnName(i)
	}
	for ; more; more = st.Step() {
		vals := make([]any, n)
		for i := range n {
			switch st.ColumnType(i) {
			case sqlite3.INTEGER:
				vals[i] = st.ColumnInt64(i)
			case sqlite3.FLOAT:
				vals[i] = st.ColumnFloat(i)
			case sqlite3.TEXT:
				vals[i] = st.ColumnText(i)
			case sqlite3.BLOB:
				raw := st.ColumnRawBlob(i)
				b := make([]byte, len(raw))
				copy(b, raw)
				vals[i] = b
			}
		}
		rows.Values = append(rows.Values, vals)
	}
	if err := st.Err(); err != nil {
		return nil, err
	}
	return rows, st.Reset()
}

// Exec runs SQL statements on the local replica, all in one transaction
// (they may not control transactions themselves); it is Transaction with
// one tx.Exec. args bind to the parameters as in Query, and require a
// single statement. Live queries reading the written tables are re-run
// after the commit.
//
// Writes to synced tables are captured and stamped as one local
// transaction, queued for the service (see Transaction). Updating a synced
// row's primary key is refused (delete and insert instead). The client's
// own _lattice_* tables cannot be written.
func (c *Client) Exec(ctx context.Context, sql string, args ...any) error {
	return c.Transaction(ctx, func(tx *Tx) error { return tx.Exec(sql, args...) })
}

// ExecResult is Exec, also telling how many rows the statements changed
// and the last inserted rowid.
func (c *Client) ExecResult(ctx context.Context, sql string, args ...any) (Result, error) {
	var res Result
	err := c.Transaction(ctx, func(tx *Tx) error {
		var err error
		res, err = tx.ExecResult(sql, args...)
		return err
	})
	return res, err
}

// isInternal reports whether a table is one of the client's state tables.
func isInternal(table string) bool {
	return len(table) >= 9 && strings.EqualFold(table[:9], "_lattice_")
}

func bindArgs(st *sqlite3.Stmt, args []any) error {
	if n := st.BindCount(); n != len(args) {
		return fmt.Errorf("statement has %d parameters, got %d arguments", n, len(args))
	}
	for i, a := range args {
		if err := bindArg(st, i+1, a); err != nil {
			return fmt.Errorf("argument %d: %w", i+1, err)
		}
	}
	return nil
}

// bindArg binds a Go value to parameter i.
func bindArg(st *sqlite3.Stmt, i int, a any) error {
	switch v := a.(type) {
	case nil:
		return st.BindNull(i)
	case bool:
		return st.BindBool(i, v)
	case int:
		return st.BindInt64(i, int64(v))
	case int8:
		return st.BindInt64(i, int64(v))
	case int16:
		return st.BindInt64(i, int64(v))
	case int32:
		return st.BindInt64(i, int64(v))
	case int64:
		return st.BindInt64(i, v)
	case uint:
		return bindUint(st, i, uint64(v))
	case uint8:
		return st.BindInt64(i, int64(v))
	case uint16:
		return st.BindInt64(i, int64(v))
	case uint32:
		return st.BindInt64(i, int64(v))
	case uint64:
		return bindUint(st, i, v)
	case float32:
		return st.BindFloat(i, float64(v))
	case float64:
		return st.BindFloat(i, v)
	case string:
		return st.BindText(i, v)
	case []byte:
		if v != nil && len(v) == 0 {
			return st.BindZeroBlob(i, 0)
		}
		return st.BindBlob(i, v)
	case time.Time:
		return st.BindText(i, v.Format(timeParamLayout))
	}
	return fmt.Errorf("unsupported type %T", a)
}

func bindUint(st *sqlite3.Stmt, i int, v uint64) error {
	if v > math.MaxInt64 {
		return fmt.Errorf("%d overflows int64", v)
	}
	return st.BindInt64(i, int64(v))
}
