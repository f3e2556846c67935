package catalog

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestBadName: only errors saying the name is malformed make an unknown
// table; those of a Postgres restarting or unreachable are transient (a
// client takes unknown_table as final and drops its shape).
func TestBadName(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "42601", Message: "improper relation name (too many dotted names)"}, true},
		{&pgconn.PgError{Code: "42602", Message: "invalid name syntax"}, true},
		{&pgconn.PgError{Code: "0A000", Message: "cross-database references are not implemented"}, true},
		{&pgconn.PgError{Code: "22021", Message: "invalid byte sequence"}, true},
		{fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "42602"}), true},
		{&pgconn.PgError{Code: "57P03", Severity: "FATAL", Message: "the database system is starting up"}, false},
		{&pgconn.PgError{Code: "57P03", Severity: "FATAL", Message: "the database system is not yet accepting connections"}, false},
		{&pgconn.PgError{Code: "57P01", Severity: "FATAL", Message: "terminating connection due to administrator command"}, false},
		{&pgconn.PgError{Code: "53300", Message: "too many connections"}, false},
		{&pgconn.PgError{Code: "42501", Message: "permission denied for table electrified"}, false},
		{errors.New("unexpected EOF"), false},
	} {
		if got := BadName(c.err); got != c.want {
			t.Errorf("BadName(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
