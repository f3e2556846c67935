// Package doctor checks a Postgres database for everything `lattice serve`
// needs (lattice doctor): the server version and wal_level, the role's
// privileges, free replication slots and WAL senders, the WAL that lattice
// slots retain, the publication and the electrified tables (primary key,
// replica identity, triggers, shadow table, column types), and, given the
// auth role, row-level security policies the service cannot enforce.
//
// Every check mirrors what the service installs or requires (the bootstrap
// in server/catalog, schema.sql's lattice.electrify and
// lattice.ensure_shadow, server/authz); each finding says what is wrong and
// the SQL or configuration that fixes it.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/server/authz"
	"github.com/latticesync/lattice/server/catalog"
)

// MinServerVersion is the oldest Postgres the service runs on
// (server_version_num): lattice.ensure_shadow publishes the shadow tables
// with a column list, which Postgres has since version 15.
const MinServerVersion = 150000

// DefaultMaxRetainedWAL is the WAL a lattice slot may retain before a
// warning: 1 GiB.
const DefaultMaxRetainedWAL = 1 << 30

// Severity grades a finding.
type Severity int

const (
	OK Severity = iota
	Warn
	Error
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "error"
	}
}

// Finding is the outcome of one check.
type Finding struct {
	Severity Severity
	// Check names what was checked ("wal_level", "table public.items").
	Check string
	// Message says what was found.
	Message string
	// Fix is the SQL or configuration that fixes it ("" for OK).
	Fix string
}

// Options tune the checks.
type Options struct {
	// AuthRole is the role clients act as (lattice serve --auth-role):
	// when set, the role is checked and its row-level security policies
	// compiled as the service would; "" skips policies.
	AuthRole string
	// MaxRetainedWAL is the WAL (bytes) a lattice slot may retain before a
	// warning; 0 means DefaultMaxRetainedWAL.
	MaxRetainedWAL int64
}

// Run runs every check on conn and returns the findings in order. conn
// should carry the service's session settings (coltype.SessionParams) for
// the policy checks. The error is for failures to read the catalog, not
// for problems found.
func Run(ctx context.Context, conn *pgx.Conn, opts Options) ([]Finding, error) {
	if opts.MaxRetainedWAL <= 0 {
		opts.MaxRetainedWAL = DefaultMaxRetainedWAL
	}
	d := &doctor{conn: conn, opts: opts}
	steps := []func(context.Context) error{
		d.version, d.walLevel, d.privileges, d.senders, d.slots, d.publication, d.tables, d.policies,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return d.out, err
		}
	}
	return d.out, nil
}

// Worst is the highest severity among findings (OK for none).
func Worst(findings []Finding) Severity {
	w := OK
	for _, f := range findings {
		w = max(w, f.Severity)
	}
	return w
}

// Print writes the findings, one per line with the fix indented below, and
// a summary line.
func Print(w io.Writer, findings []Finding) error {
	var b strings.Builder
	n := map[Severity]int{}
	for _, f := range findings {
		n[f.Severity]++
		fmt.Fprintf(&b, "%-5s  %s: %s\n", f.Severity, f.Check, f.Message)
		if f.Fix != "" {
			for _, line := range strings.Split(f.Fix, "\n") {
				fmt.Fprintf(&b, "       fix: %s\n", line)
			}
		}
	}
	if n[Warn]+n[Error] == 0 {
		fmt.Fprintf(&b, "\nall %d checks passed\n", n[OK])
	} else {
		fmt.Fprintf(&b, "\n%d error(s), %d warning(s), %d ok\n", n[Error], n[Warn], n[OK])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type doctor struct {
	conn *pgx.Conn
	opts Options
	out  []Finding

	role   string
	super  bool
	schema bool // schema lattice exists
	// schemaOwner owns schema lattice; ownsSchema: the role has its
	// privileges (superuser, or a member that inherits them).
	schemaOwner string
	ownsSchema  bool
	pub         bool // publication lattice exists
	allTables   bool // the publication is FOR ALL TABLES
	// latticeSlots counts this database's lattice_* slots, active ones
	// apart (a running service holds a walsender).
	latticeSlots, activeSlots int
}

func (d *doctor) add(sev Severity, check, msg, fix string) {
	d.out = append(d.out, Finding{Severity: sev, Check: check, Message: msg, Fix: fix})
}

func (d *doctor) version(ctx context.Context) error {
	var num int
	var ver string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version')`).Scan(&num, &ver); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if num < MinServerVersion {
		d.add(Error, "server version", fmt.Sprintf("Postgres %s; Lattice needs 15 or newer (publication column lists)", ver),
			"upgrade Postgres to version 15 or newer")
		return nil
	}
	d.add(OK, "server version", "Postgres "+ver, "")
	return nil
}

func (d *doctor) walLevel(ctx context.Context) error {
	var level string
	if err := d.conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if level != "logical" {
		d.add(Error, "wal_level", fmt.Sprintf("wal_level = %s; logical replication needs logical", level),
			"ALTER SYSTEM SET wal_level = logical; -- then restart Postgres (or set wal_level = logical in postgresql.conf)")
		return nil
	}
	d.add(OK, "wal_level", "logical", "")
	return nil
}

func (d *doctor) privileges(ctx context.Context) error {
	var db string
	var repl, canCreate bool
	err := d.conn.QueryRow(ctx, `SELECT current_user::text, current_database()::text, r.rolreplication, r.rolsuper,
		has_database_privilege(current_database(), 'CREATE'),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'lattice'),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		coalesce((SELECT puballtables FROM pg_publication WHERE pubname = $1), false)
		FROM pg_roles r WHERE r.rolname = current_user`, catalog.Publication).
		Scan(&d.role, &db, &repl, &d.super, &canCreate, &d.schema, &d.pub, &d.allTables)
	if err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	check := fmt.Sprintf("role %s", d.role)
	switch {
	case d.super:
		d.add(OK, check, "superuser", "")
	case repl:
		d.add(OK, check, "has REPLICATION", "")
	default:
		d.add(Error, check, "no REPLICATION attribute: it cannot create or read a replication slot",
			fmt.Sprintf("ALTER ROLE %s WITH REPLICATION; -- as a superuser", catalog.QuoteIdent(d.role)))
	}
	switch {
	case d.super || canCreate:
		d.add(OK, "database "+db, "the role has CREATE (schema lattice, publication lattice)", "")
	case d.schema && d.pub:
		d.add(OK, "database "+db, "schema lattice and publication lattice exist (CREATE on the database not needed)", "")
	default:
		d.add(Error, "database "+db, "the role may not create schema lattice and publication lattice, which the service creates at start",
			fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s;", catalog.QuoteIdent(db), catalog.QuoteIdent(d.role)))
	}
	if !d.schema {
		return nil
	}
	err = d.conn.QueryRow(ctx, `SELECT pg_get_userbyid(nspowner)::text, pg_has_role(current_user, nspowner, 'USAGE')
		FROM pg_namespace WHERE nspname = 'lattice'`).Scan(&d.schemaOwner, &d.ownsSchema)
	if err != nil {
		return fmt.Errorf("read schema lattice: %w", err)
	}
	d.ownsSchema = d.ownsSchema || d.super
	if !d.ownsSchema {
		d.add(Error, "schema lattice", fmt.Sprintf("belongs to role %s: the service's bootstrap replaces its functions and writes its tables at every start, which needs the owner's privileges", d.schemaOwner),
			fmt.Sprintf("GRANT %s TO %s; -- or run lattice serve as role %s", catalog.QuoteIdent(d.schemaOwner), catalog.QuoteIdent(d.role), d.schemaOwner))
	}
	return nil
}

// senders checks that a replication slot and a WAL sender are free for
// the service. A database that already has a lattice slot needs no new
// slot; one with an active lattice slot has its service's walsender.
func (d *doctor) senders(ctx context.Context) error {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	err := d.conn.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int,
		(SELECT count(*) FROM pg_replication_slots)::int,
		current_setting('max_wal_senders')::int,
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int,
		(SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE 'lattice\_%')::int,
		(SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE 'lattice\_%' AND active)::int`).
		Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders, &d.latticeSlots, &d.activeSlots)
	if err != nil {
		return fmt.Errorf("read replication settings: %w", err)
	}
	switch {
	case maxSlots-usedSlots > 0:
		d.add(OK, "max_replication_slots", fmt.Sprintf("%d of %d in use", usedSlots, maxSlots), "")
	case d.latticeSlots > 0:
		d.add(Warn, "max_replication_slots", fmt.Sprintf("all %d in use (a lattice slot exists; a service with a new data directory could not create its own)", maxSlots),
			fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; -- then restart Postgres (or drop unused slots)", maxSlots+1))
	default:
		d.add(Error, "max_replication_slots", fmt.Sprintf("all %d in use: the service cannot create its slot", maxSlots),
			fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; -- then restart Postgres (or drop unused slots: SELECT pg_drop_replication_slot(name))", maxSlots+1))
	}
	if maxSenders-usedSenders > 0 || d.activeSlots > 0 {
		d.add(OK, "max_wal_senders", fmt.Sprintf("%d of %d in use", usedSenders, maxSenders), "")
	} else {
		d.add(Error, "max_wal_senders", fmt.Sprintf("all %d in use: the service cannot start replication", maxSenders),
			fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; -- then restart Postgres", maxSenders+1))
	}
	return nil
}

// slots reports the lattice slots of the database and the WAL they retain.
func (d *doctor) slots(ctx context.Context) error {
	rows, err := d.conn.Query(ctx, `SELECT slot_name::text, active, coalesce(plugin, ''), coalesce(wal_status, ''),
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
		FROM pg_replication_slots
		WHERE database = current_database() AND slot_name LIKE 'lattice\_%'
		ORDER BY slot_name`)
	if err != nil {
		return fmt.Errorf("list replication slots: %w", err)
	}
	type slot struct {
		name, plugin, status string
		active               bool
		retained             int64
	}
	slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (slot, error) {
		var s slot
		err := r.Scan(&s.name, &s.active, &s.plugin, &s.status, &s.retained)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("list replication slots: %w", err)
	}
	if len(slots) == 0 {
		d.add(OK, "replication slots", "no lattice slot yet: lattice serve creates lattice_<log id> at start", "")
		return nil
	}
	for _, s := range slots {
		check := "slot " + s.name
		drop := fmt.Sprintf("SELECT pg_drop_replication_slot('%s'); -- if no service uses it: its clients re-sync", s.name)
		state := "inactive"
		if s.active {
			state = "active"
		}
		msg := fmt.Sprintf("%s, retains %s of WAL", state, bytesText(s.retained))
		switch {
		case s.plugin != "pgoutput":
			d.add(Error, check, fmt.Sprintf("uses plugin %q; the service reads pgoutput", s.plugin), drop)
		case s.status == "lost":
			d.add(Error, check, msg+"; invalidated (wal_status = lost, max_slot_wal_keep_size): it cannot stream any more", drop)
		case s.retained > d.opts.MaxRetainedWAL && s.active:
			d.add(Warn, check, fmt.Sprintf("%s, over %s: its service is behind", msg, bytesText(d.opts.MaxRetainedWAL)),
				"look at the service's lattice_replication_lag_bytes and log; the WAL is freed as it catches up")
		case s.retained > d.opts.MaxRetainedWAL:
			d.add(Warn, check, fmt.Sprintf("%s, over %s: Postgres keeps this WAL until the slot is read or dropped", msg, bytesText(d.opts.MaxRetainedWAL)),
				"start the service that owns it, or drop it:\n"+drop)
		default:
			d.add(OK, check, msg, "")
		}
	}
	return nil
}

// publication checks the publication's existence and actions.
func (d *doctor) publication(ctx context.Context) error {
	if !d.pub {
		if d.schema {
			d.add(Warn, "publication lattice", "missing: lattice serve creates it at start, but tables electrified before are not in it",
				"CREATE PUBLICATION lattice; -- then CALL lattice.electrify(...) again for every electrified table")
		} else {
			d.add(OK, "publication lattice", "not created yet: lattice serve creates it (and schema lattice) at start", "")
		}
		return nil
	}
	var ins, upd, del, trunc bool
	err := d.conn.QueryRow(ctx, `SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, catalog.Publication).
		Scan(&ins, &upd, &del, &trunc)
	if err != nil {
		return fmt.Errorf("read publication: %w", err)
	}
	if !ins || !upd || !del || !trunc {
		d.add(Error, "publication lattice", "does not publish every change (insert, update, delete, truncate): changes would be missing from the stream",
			"ALTER PUBLICATION lattice SET (publish = 'insert, update, delete, truncate');")
		return nil
	}
	d.add(OK, "publication lattice", "exists, publishes insert, update, delete, truncate", "")
	return nil
}

// electrified is what the catalog says of an electrified table.
type electrified struct {
	name                  string // regclass text, quoted as needed
	oid                   uint32
	pk                    bool
	replident             string
	inPub, pubFiltered    bool
	shadow                string // lattice.shadow_<oid>, "" if missing
	shadowInPub           bool
	triggers              map[string]string // name -> tgenabled
	unsupported           []string
	stampKind, insertKind bool // lattice_stamp is FOR EACH ROW on UPDATE OR DELETE; lattice_stamp_insert is AFTER INSERT per statement
}

func (d *doctor) tables(ctx context.Context) error {
	if !d.schema {
		d.add(OK, "electrified tables", "none yet (schema lattice not created)", "")
		return nil
	}
	if !d.ownsSchema {
		d.add(Warn, "electrified tables", "not checked: the role may not read schema lattice (above)", "")
		return nil
	}
	rows, err := d.conn.Query(ctx, `SELECT e.relid::text, e.relid::oid::int8,
		EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = e.relid AND i.indisprimary),
		c.relreplident::text,
		EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = e.relid),
		EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = e.relid
			AND (pr.prqual IS NOT NULL OR pr.prattrs IS NOT NULL)),
		coalesce(to_regclass(e.shadow)::text, ''),
		EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = to_regclass(e.shadow)),
		coalesce((SELECT array_agg(t.tgname::text || '=' || t.tgenabled::text) FROM pg_trigger t WHERE t.tgrelid = e.relid AND t.tgname LIKE 'lattice\_%'), '{}'),
		coalesce((SELECT array_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
			FROM pg_attribute a WHERE a.attrelid = e.relid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			AND NOT lattice.supported_type(a.atttypid)), '{}'),
		EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = e.relid AND t.tgname = 'lattice_stamp'
			AND t.tgtype & 1 <> 0 AND t.tgtype & 4 = 0 AND t.tgtype & 8 <> 0 AND t.tgtype & 16 <> 0),
		EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = e.relid AND t.tgname = 'lattice_stamp_insert'
			AND t.tgtype & 1 = 0 AND t.tgtype & 4 <> 0)
		FROM lattice.electrified e JOIN pg_class c ON c.oid = e.relid
		ORDER BY e.relid::text`, catalog.Publication)
	if err != nil {
		return fmt.Errorf("read electrified tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (electrified, error) {
		var t electrified
		var oid int64
		var trigs []string
		err := r.Scan(&t.name, &oid, &t.pk, &t.replident, &t.inPub, &t.pubFiltered, &t.shadow, &t.shadowInPub,
			&trigs, &t.unsupported, &t.stampKind, &t.insertKind)
		t.oid = uint32(oid)
		t.triggers = map[string]string{}
		for _, s := range trigs {
			name, enabled, _ := strings.Cut(s, "=")
			t.triggers[name] = enabled
		}
		return t, err
	})
	if err != nil {
		return fmt.Errorf("read electrified tables: %w", err)
	}
	if len(tables) == 0 {
		d.add(OK, "electrified tables", "none yet: CALL lattice.electrify('schema.table') opts a table in", "")
		return nil
	}
	for _, t := range tables {
		d.table(t)
	}
	return nil
}

// table reports the problems of one electrified table.
func (d *doctor) table(t electrified) {
	check := "table " + t.name
	lit := "'" + strings.ReplaceAll(t.name, "'", "''") + "'"
	electrify := fmt.Sprintf("CALL lattice.electrify(%s); -- re-creates what is missing", lit)
	bad := false
	problem := func(sev Severity, msg, fix string) {
		bad = true
		d.add(sev, check, msg, fix)
	}
	if !t.pk {
		problem(Error, "no primary key: rows cannot be identified (the service cannot describe the table)",
			fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (id); -- the column(s) that identify a row", t.name))
	}
	if t.replident != "f" {
		problem(Error, fmt.Sprintf("replica identity is %s, the service needs FULL (an update that moves a row out of a shape carries its old values)", replidentText(t.replident)),
			fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", t.name))
	}
	if len(t.unsupported) > 0 {
		problem(Error, "columns of types Lattice cannot sync: "+strings.Join(t.unsupported, ", "),
			"change the column types (see the README's supported types) or drop the columns")
	}
	if d.pub && !d.allTables && !t.inPub {
		problem(Error, "not in publication lattice: its changes never reach the service",
			fmt.Sprintf("ALTER PUBLICATION lattice ADD TABLE %s;", t.name))
	}
	if t.pubFiltered {
		problem(Error, "published with a row filter or column list: some of its changes never reach the service",
			fmt.Sprintf("ALTER PUBLICATION lattice DROP TABLE %s;\nALTER PUBLICATION lattice ADD TABLE %s;", t.name, t.name))
	}
	if t.shadow == "" {
		problem(Error, "its shadow table (merge metadata, lattice.shadow_<oid>) is missing: plain SQL writes are not stamped and client writes fail", electrify)
	} else if d.pub && !d.allTables && !t.shadowInPub {
		problem(Error, fmt.Sprintf("its shadow table %s is not in publication lattice: row versions are missing from the stream", t.shadow), electrify)
	}
	for _, trig := range []struct {
		name, does string
		kind       bool
	}{
		{"lattice_stamp", "stamps plain SQL updates and deletes (AFTER UPDATE OR DELETE, FOR EACH ROW)", t.stampKind},
		{"lattice_stamp_insert", "stamps plain SQL inserts (AFTER INSERT, FOR EACH STATEMENT)", t.insertKind},
		{"lattice_truncate", "forgets merge metadata on TRUNCATE", true},
	} {
		enabled, ok := t.triggers[trig.name]
		switch {
		case !ok:
			problem(Error, fmt.Sprintf("trigger %s is missing (it %s): plain SQL writes would not merge with client writes", trig.name, trig.does), electrify)
		case !trig.kind:
			problem(Error, fmt.Sprintf("trigger %s is not the one lattice installs (it %s)", trig.name, trig.does),
				fmt.Sprintf("DROP TRIGGER %s ON %s;\n%s", trig.name, t.name, electrify))
		case enabled == "D":
			problem(Error, fmt.Sprintf("trigger %s is disabled (it %s)", trig.name, trig.does),
				fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER %s;", t.name, trig.name))
		}
	}
	if !bad {
		d.add(OK, check, "primary key, replica identity full, published, shadow table and triggers in place", "")
	}
}

func replidentText(r string) string {
	switch r {
	case "d":
		return "DEFAULT"
	case "n":
		return "NOTHING"
	case "i":
		return "USING INDEX"
	case "f":
		return "FULL"
	}
	return r
}

// policies compiles the auth role's policies as the service does at start.
func (d *doctor) policies(ctx context.Context) error {
	if d.opts.AuthRole == "" {
		d.add(OK, "row-level security", "not checked: no auth role given (--auth-role, as for lattice serve)", "")
		return nil
	}
	check := "auth role " + d.opts.AuthRole
	if err := authz.CheckRole(ctx, d.conn, d.opts.AuthRole); err != nil {
		msg, fix, _ := strings.Cut(err.Error(), ": ")
		d.add(Error, check, msg, fix)
		return nil
	}
	if !d.schema {
		d.add(OK, check, "exists; policies not checked (no electrified table yet)", "")
		return nil
	}
	if !d.ownsSchema {
		d.add(Warn, check, "policies not checked: the role may not read schema lattice (above)", "")
		return nil
	}
	p, err := authz.Load(ctx, d.conn, catalog.NewTables(d.conn), d.opts.AuthRole)
	if err != nil {
		var pe *authz.PolicyError
		if errors.As(err, &pe) {
			d.add(Error, check, pe.Error(), "see server/authz/README.md for the policy forms the service supports")
			return nil
		}
		return fmt.Errorf("compile row-level security policies: %w", err)
	}
	errs := p.Errors()
	if len(errs) == 0 {
		d.add(OK, check, "every row-level security policy of the electrified tables can be enforced on the stream", "")
		return nil
	}
	for _, e := range errs {
		d.add(Error, "row-level security", e.Error()+": the service refuses to start with it (a running service closes the table to clients)",
			"rewrite the policy in a supported form (see server/authz/README.md), e.g. USING (owner_id = current_setting('request.jwt.claims', true)::jsonb ->> 'sub')")
	}
	return nil
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
