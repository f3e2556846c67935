// Package authz is the service's authorization: Postgres row-level security
// (RLS) policies, read from the catalog for the role clients act as
// (lattice serve --auth-role), compiled into predicates the service
// evaluates in Go on the replication stream, per user, with the user's JWT
// claims where policies read them (current_setting('request.jwt.claims',
// true), auth.uid(), auth.jwt(), current_user).
//
// Postgres itself stays the judge wherever the service reads or writes
// rows: snapshots and fetches run under SET ROLE with the claims set (As),
// and client writes are applied the same way (package writes). Go
// evaluation is needed only for changes on the stream; it covers the
// policy forms listed in README.md and refuses the others, naming the
// policy, so a policy is never silently ignored.
//
// Use: Load the Policies once (and again when Fingerprint changes), then
// per session NewAccess with the user's claims, Access.Load in a snapshot
// transaction, Access.Admit per row change, Access.Observe per change of a
// table that a policy's subquery reads (membership tables), which returns
// the keys whose access changed.
package authz

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
)

// Querier is what the package needs of a connection or transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrPolicy marks a policy the service cannot enforce on the stream.
var ErrPolicy = errors.New("unsupported row-level security policy")

// PolicyError names a policy that the service refuses, and why.
type PolicyError struct {
	Table  string // schema.table
	Policy string // "" for a problem of the table (privileges)
	Reason string
}

func (e *PolicyError) Error() string {
	if e.Policy == "" {
		return fmt.Sprintf("table %s: %s", e.Table, e.Reason)
	}
	return fmt.Sprintf("policy %q on table %s: %s", e.Policy, e.Table, e.Reason)
}

func (e *PolicyError) Unwrap() error { return ErrPolicy }

// Policies are the compiled SELECT policies of every electrified table for
// one role. Immutable; safe for concurrent use.
type Policies struct {
	Role string
	// Fingerprint identifies the catalog state the policies were read
	// from (see Fingerprint).
	Fingerprint string
	byKey       map[string]*tablePolicy   // by "schema.table"
	rels        map[string]*changelog.Rel // tables read by subqueries
	// errs lists the tables whose policies are refused.
	errs []*PolicyError
}

// Errors returns the refused policies (nil when every policy is supported).
func (p *Policies) Errors() []*PolicyError { return p.errs }

// TableError returns why the table's policies are refused, or nil.
func (p *Policies) TableError(key string) *PolicyError {
	if tp := p.byKey[key]; tp != nil {
		return tp.err
	}
	return nil
}

// CanSelect reports whether the role may read the table at all (its
// SELECT privilege).
func (p *Policies) CanSelect(key string) bool {
	tp := p.byKey[key]
	return tp != nil && tp.canSelect
}

// Filtered reports whether row-level security filters the table's rows
// for the role.
func (p *Policies) Filtered(key string) bool {
	tp := p.byKey[key]
	return tp != nil && tp.rls
}

// SetTables lists the tables (schema.table) that subqueries of policies
// read: their changes can move rows of other tables in or out.
func (p *Policies) SetTables() []string {
	seen := map[string]bool{}
	var out []string
	for _, tp := range p.byKey {
		for _, s := range tp.sets {
			if !seen[s.innerKey] {
				seen[s.innerKey] = true
				out = append(out, s.innerKey)
			}
		}
	}
	sort.Strings(out)
	return out
}

type tablePolicy struct {
	key       string
	oid       uint32
	canSelect bool
	rls       bool  // policies filter the rows (else every row, given canSelect)
	root      cnode // nil: no permissive policy (no row), when rls
	params    []string
	sets      []*setRef
	err       *PolicyError
}

// roleInfo is what the catalog says of the role.
type roleInfo struct {
	super, bypass bool
}

// CheckRole verifies that role exists and that the service's own login
// role may act as it (SET ROLE); the error says what to run otherwise.
func CheckRole(ctx context.Context, q Querier, role string) error {
	var exists, member bool
	var me string
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
		current_user::text,
		EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND pg_has_role(current_user, oid, 'MEMBER'))`, role).Scan(&exists, &me, &member)
	if err != nil {
		return fmt.Errorf("check auth role: %w", err)
	}
	if !exists {
		return fmt.Errorf("auth role %q does not exist: CREATE ROLE %s NOLOGIN; GRANT %s TO %s; then grant it what clients may do (GRANT SELECT, INSERT, UPDATE, DELETE ON <tables> TO %s)",
			role, catalog.QuoteIdent(role), catalog.QuoteIdent(role), catalog.QuoteIdent(me), catalog.QuoteIdent(role))
	}
	if !member {
		return fmt.Errorf("the service's role %s cannot act as auth role %q: GRANT %s TO %s", me, role, catalog.QuoteIdent(role), catalog.QuoteIdent(me))
	}
	return nil
}

// fingerprintSQL digests everything the compiled policies depend on:
// policies, RLS switches, owners and privileges of electrified tables,
// the role's attributes, and the electrified tables' columns.
const fingerprintSQL = `SELECT md5(coalesce((
  SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s', c.oid, c.relname, n.nspname, c.relrowsecurity, c.relforcerowsecurity,
           has_table_privilege($1, c.oid, 'SELECT'), pg_has_role($1, c.relowner, 'USAGE')), ';' ORDER BY c.oid)
  FROM lattice.electrified e JOIN pg_class c ON c.oid = e.relid JOIN pg_namespace n ON n.oid = c.relnamespace), '') || '#' || coalesce((
  SELECT string_agg(format('%s|%s|%s|%s|%s|%s', p.polrelid, p.polname, p.polpermissive, p.polcmd, p.polroles::text,
           coalesce(pg_get_expr(p.polqual, p.polrelid), '-')), ';' ORDER BY p.polrelid, p.polname)
  FROM pg_policy p WHERE p.polrelid IN (SELECT relid FROM lattice.electrified)), '') || '#' || coalesce((
  SELECT format('%s|%s', rolsuper, rolbypassrls) FROM pg_roles WHERE rolname = $1), '') || '#' || coalesce((
  SELECT string_agg(format('%s|%s|%s', a.attrelid, a.attname, a.atttypid), ';' ORDER BY a.attrelid, a.attnum)
  FROM pg_attribute a WHERE a.attrelid IN (SELECT relid FROM lattice.electrified) AND a.attnum > 0 AND NOT a.attisdropped), ''))`

// Fingerprint returns a digest of the catalog state that the role's
// policies depend on; Load again when it changes.
func Fingerprint(ctx context.Context, q Querier, role string) (string, error) {
	var fp string
	if err := q.QueryRow(ctx, fingerprintSQL, role).Scan(&fp); err != nil {
		return "", fmt.Errorf("read policy fingerprint: %w", err)
	}
	return fp, nil
}

// Load reads and compiles the SELECT policies of every electrified table
// for role. Policies it cannot enforce are reported by Errors (the tables
// are then refused to clients), not as an error; the error is for
// problems reading the catalog. q must be a connection with the service's
// session settings; Load runs a read-only transaction on it.
func Load(ctx context.Context, q Querier, tables *catalog.Tables, role string) (*Policies, error) {
	fp, err := Fingerprint(ctx, q, role)
	if err != nil {
		return nil, err
	}
	var ri roleInfo
	if err := q.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, role).Scan(&ri.super, &ri.bypass); err != nil {
		return nil, fmt.Errorf("read auth role %q: %w", role, err)
	}
	type trow struct {
		oid             uint32
		key             string
		rls, force, own bool
		canSelect       bool
	}
	rows, err := q.Query(ctx, `SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
		pg_has_role($1, c.relowner, 'USAGE'), has_table_privilege($1, c.oid, 'SELECT')
		FROM lattice.electrified e JOIN pg_class c ON c.oid = e.relid JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY c.oid`, role)
	if err != nil {
		return nil, fmt.Errorf("read electrified tables: %w", err)
	}
	var trs []trow
	for rows.Next() {
		var t trow
		var oid int64
		var schema, name string
		if err := rows.Scan(&oid, &schema, &name, &t.rls, &t.force, &t.own, &t.canSelect); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read electrified tables: %w", err)
		}
		t.oid, t.key = uint32(oid), schema+"."+name
		trs = append(trs, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read electrified tables: %w", err)
	}
	raw, err := readPolicies(ctx, q, role)
	if err != nil {
		return nil, err
	}
	p := &Policies{Role: role, Fingerprint: fp, byKey: map[string]*tablePolicy{}, rels: map[string]*changelog.Rel{}}
	c := &compiler{ctx: ctx, q: q, tables: tables, role: role, raw: raw, applies: map[uint32]bool{}, canSelect: map[uint32]bool{}, keys: map[uint32]string{}, rels: p.rels}
	for _, t := range trs {
		applies := t.rls && !ri.super && !ri.bypass && (!t.own || t.force)
		c.applies[t.oid] = applies
		c.canSelect[t.oid] = t.canSelect
		c.keys[t.oid] = t.key
	}
	for _, t := range trs {
		tp := &tablePolicy{key: t.key, oid: t.oid, canSelect: t.canSelect, rls: c.applies[t.oid]}
		if tp.rls {
			if err := c.table(tp); err != nil {
				var pe *PolicyError
				if !errors.As(err, &pe) {
					return nil, err
				}
				tp.err = pe
				p.errs = append(p.errs, pe)
			}
		}
		p.byKey[t.key] = tp
	}
	return p, nil
}

// rawPolicy is a row of pg_policy that applies to the role for SELECT.
type rawPolicy struct {
	name       string
	permissive bool
	qual       *string
}

func readPolicies(ctx context.Context, q Querier, role string) (map[uint32][]rawPolicy, error) {
	rows, err := q.Query(ctx, `SELECT p.polrelid::int8, p.polname::text, p.polpermissive, pg_get_expr(p.polqual, p.polrelid)
		FROM pg_policy p
		WHERE p.polrelid IN (SELECT relid FROM lattice.electrified) AND p.polcmd IN ('r', '*')
		  AND (0::oid = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r WHERE pg_has_role($1, r, 'USAGE')))
		ORDER BY p.polrelid, p.polname`, role)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	defer rows.Close()
	out := map[uint32][]rawPolicy{}
	for rows.Next() {
		var oid int64
		var rp rawPolicy
		if err := rows.Scan(&oid, &rp.name, &rp.permissive, &rp.qual); err != nil {
			return nil, fmt.Errorf("read policies: %w", err)
		}
		out[uint32(oid)] = append(out[uint32(oid)], rp)
	}
	return out, rows.Err()
}

// As makes the rest of transaction tx run as role with the user's claims
// (set_config local to the transaction, as PostgREST does): row-level
// security and privileges apply. claims is the JWT's claims object (JSON).
func As(ctx context.Context, tx Querier, role string, claims []byte, sub string) error {
	if len(claims) == 0 {
		claims = []byte("{}")
	}
	_, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true), set_config('request.jwt.claim.sub', $3, true)`,
		role, string(claims), sub)
	if err != nil {
		return fmt.Errorf("act as role %s: %w", role, err)
	}
	return nil
}

// Unset ends As: the transaction runs as the service's role again.
func Unset(ctx context.Context, tx Querier) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('role', 'none', true)`); err != nil {
		return fmt.Errorf("reset role: %w", err)
	}
	return nil
}

// keyOf is "schema.table" of a change's relation.
func keyOf(rel *changelog.Rel) string { return rel.Schema + "." + rel.Table }
