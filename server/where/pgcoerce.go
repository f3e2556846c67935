package where

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/latticesync/lattice/coltype"
)

// Querier is the part of *pgx.Conn, pgx.Tx and *pgxpool.Pool that
// PGCoerce needs.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PGCoerce returns a Coerce that asks Postgres to convert the literals, all
// in one query: SELECT format('%s', $1::text::<type>), ... . format('%s')
// yields the type's output function text, the form pgoutput sends and
// coltype.FromPGText reads (a ::text cast would differ for boolean, 'true'
// rather than 't', and for char(n), whose padding it strips). The connection must
// have the service's session settings (DateStyle ISO, TimeZone UTC,
// IntervalStyle iso_8601, extra_float_digits 3, bytea_output hex), since
// the results are read with coltype.FromPGText. Invalid input (a Postgres
// data exception, SQLSTATE class 22) is reported as *Error naming the
// literal.
func PGCoerce(q Querier) Coerce {
	return func(ctx context.Context, lits []Literal, texts []*string) ([]coltype.Value, error) {
		vals := make([]coltype.Value, len(lits))
		var idx []int
		for i := range lits {
			if texts[i] != nil {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return vals, nil
		}
		out, err := coerceQuery(ctx, q, lits, texts, idx)
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "22") {
				return nil, err
			}
			// Find the literal at fault, for the message.
			for _, i := range idx {
				if _, err1 := coerceQuery(ctx, q, lits, texts, []int{i}); err1 != nil {
					if errors.As(err1, &pe) && strings.HasPrefix(pe.Code, "22") {
						return nil, litError(lits[i], "%s", pe.Message)
					}
					return nil, err1
				}
			}
			return nil, &Error{Message: pe.Message}
		}
		for n, i := range idx {
			if out[n] == nil {
				continue
			}
			v, err := fromPGText(lits[i].Type, []byte(*out[n]))
			if err != nil {
				return nil, litError(lits[i], "cannot read %s value %q: %v", lits[i].Type.Name, *out[n], err)
			}
			vals[i] = v
		}
		return vals, nil
	}
}

func coerceQuery(ctx context.Context, q Querier, lits []Literal, texts []*string, idx []int) ([]*string, error) {
	var sb strings.Builder
	sb.WriteString("SELECT ")
	args := make([]any, len(idx))
	out := make([]*string, len(idx))
	dest := make([]any, len(idx))
	for n, i := range idx {
		if n > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "format('%%s', $%d::text::%s)", n+1, lits[i].Type.Name)
		args[n] = *texts[i]
		dest[n] = &out[n]
	}
	if err := q.QueryRow(ctx, sb.String(), args...).Scan(dest...); err != nil {
		return nil, err
	}
	return out, nil
}

// fromPGText is coltype.FromPGText; tests may replace it.
var fromPGText = coltype.FromPGText
