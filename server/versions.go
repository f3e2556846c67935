package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pglogrepl"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
)

// Row versions (protocol 2.6) reach the change log with the rows they
// belong to. Every write to a row of an electrified table writes the row's
// shadow row (lattice.shadow_<oid>) in the same transaction, with the
// row's new version; the shadows are in the publication with their key and
// version columns only (lattice.ensure_shadow). At ingest, the shadow
// changes of a transaction give the version of each base row it wrote and
// are dropped: the change log holds base changes with Version set.

const shadowPrefix = "shadow_"

func isShadow(schema, table string) bool {
	return schema == "lattice" && strings.HasPrefix(table, shadowPrefix)
}

// shadowRels maps the Rels of shadow tables (as described for the
// replication stream) to what pairing needs.
type shadowRels struct {
	mu   sync.Mutex
	rels map[*changelog.Rel]shadowRel
}

type shadowRel struct {
	base string // relKey of the electrified table
	ver  int    // index of the version column
}

func (m *shadowRels) get(rel *changelog.Rel) (shadowRel, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rels[rel]
	return r, ok
}

func (m *shadowRels) put(rel *changelog.Rel, r shadowRel) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rels == nil {
		m.rels = map[*changelog.Rel]shadowRel{}
	}
	m.rels[rel] = r
}

// describeShadow builds the Rel of a shadow table's Relation message: key
// columns typed as the electrified table's key, version as bigint, any
// other column (a shadow published without a column list) as text.
func (s *Service) describeShadow(ctx context.Context, msg *pglogrepl.RelationMessage) (*changelog.Rel, error) {
	name := msg.Namespace + "." + msg.RelationName
	oid, err := strconv.ParseUint(msg.RelationName[len(shadowPrefix):], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("shadow table %s: not named after a table OID", name)
	}
	bigint, _ := coltype.BuiltinByOID(20)
	text, _ := coltype.BuiltinByOID(25)
	tb, err := s.tables.Describe(ctx, uint32(oid), true)
	if err != nil && unreachable(err) {
		// Postgres unreachable or restarting: replication restarts and Postgres
		// sends the Relation message again. Dropping the versions here
		// would lose them for good.
		return nil, fmt.Errorf("describe shadow table %s: %w", name, err)
	}
	if err != nil {
		// The table is gone (dropped since this part of the WAL was
		// written): its versions have no row to go to. Decode the shadow's
		// changes as text and drop them.
		s.log.Warn("versions of a table that cannot be described are dropped", "shadow", name, "err", err)
		rel := &changelog.Rel{Schema: msg.Namespace, Table: msg.RelationName}
		for _, mc := range msg.Columns {
			rel.Columns = append(rel.Columns, protocol.Column{Name: mc.Name, Type: text})
		}
		s.shadows.put(rel, shadowRel{ver: -1})
		return rel, nil
	}
	base := tb.Rel
	rel := &changelog.Rel{Schema: msg.Namespace, Table: msg.RelationName, PK: make([]int, len(base.PK))}
	for i := range rel.PK {
		rel.PK[i] = -1
	}
	info := shadowRel{base: relKey(base.Schema, base.Table), ver: -1}
	for _, mc := range msg.Columns {
		col := protocol.Column{Name: mc.Name, Type: text}
		switch {
		case mc.Name == "version":
			col.Type = bigint
			info.ver = len(rel.Columns)
		case strings.HasPrefix(mc.Name, "pk"):
			k, err := strconv.Atoi(mc.Name[2:])
			if err != nil || k < 1 || k > len(base.PK) {
				return nil, fmt.Errorf("shadow table %s: column %s is not a key column of %s", name, mc.Name, info.base)
			}
			col.Type = base.Columns[base.PK[k-1]].Type
			rel.PK[k-1] = len(rel.Columns)
		}
		rel.Columns = append(rel.Columns, col)
	}
	for _, i := range rel.PK {
		if i < 0 {
			return nil, fmt.Errorf("shadow table %s: key columns missing from the replication stream", name)
		}
	}
	if info.ver < 0 {
		return nil, fmt.Errorf("shadow table %s: version column missing from the replication stream", name)
	}
	s.shadows.put(rel, info)
	return rel, nil
}

// pairVersions sets the Version of the base changes of t from its shadow
// changes (the last one of each row), and drops the shadow changes.
func (s *Service) pairVersions(t *changelog.Txn) {
	var vers map[string]uint64
	var buf []byte
	n := 0
	for i := range t.Changes {
		ch := &t.Changes[i]
		info, ok := s.shadows.get(ch.Rel)
		if !ok {
			if n != i {
				t.Changes[n] = *ch
			}
			n++
			continue
		}
		if info.ver < 0 || ch.New == nil || ch.New[info.ver].Kind != coltype.Integer {
			continue // a TRUNCATE or DELETE of metadata, or of a table gone
		}
		if vers == nil {
			vers = map[string]uint64{}
		}
		buf = appendRowID(buf[:0], info.base, ch.Rel, ch.New)
		vers[string(buf)] = uint64(ch.New[info.ver].I)
	}
	clear(t.Changes[n:])
	t.Changes = t.Changes[:n]
	if vers == nil {
		return
	}
	for i := range t.Changes {
		ch := &t.Changes[i]
		if ch.New == nil {
			continue
		}
		buf = appendRowID(buf[:0], relKey(ch.Rel.Schema, ch.Rel.Table), ch.Rel, ch.New)
		if v, ok := vers[string(buf)]; ok {
			ch.Version = v
		}
	}
}

// appendRowID appends an id of the row (table and key values) to dst.
func appendRowID(dst []byte, table string, rel *changelog.Rel, row []coltype.Value) []byte {
	dst = append(dst, table...)
	dst = append(dst, 0)
	for _, k := range rel.PK {
		dst = protocol.AppendValue(dst, row[k])
	}
	return dst
}

// versioned wraps inner, a query returning the columns of tb in Rel order
// (named as the columns), so that each row also returns its version (NULL
// when the row has no metadata) as a last column, read in the same
// snapshot.
func versioned(tb *catalog.Table, inner string) string {
	rel := tb.Rel
	var b strings.Builder
	b.WriteString("SELECT ")
	for _, c := range rel.Columns {
		b.WriteString("r.")
		b.WriteString(catalog.QuoteIdent(c.Name))
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "lattice_s.version FROM (%s) r LEFT JOIN lattice.%s lattice_s ON ", inner,
		catalog.QuoteIdent(shadowPrefix+strconv.FormatUint(uint64(tb.OID), 10)))
	for i, k := range rel.PK {
		if i > 0 {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(&b, "lattice_s.pk%d = r.%s", i+1, catalog.QuoteIdent(rel.Columns[k].Name))
	}
	return b.String()
}

// versionedRow splits a row read by a versioned query into its values
// and its version (0: unknown).
func versionedRow(rel *changelog.Rel, raw [][]byte) ([]coltype.Value, uint64, error) {
	n := len(rel.Columns)
	if len(raw) != n+1 {
		return nil, 0, fmt.Errorf("read %s.%s: %d columns, want %d and a version", rel.Schema, rel.Table, len(raw), n)
	}
	vals, err := rowValues(rel, raw[:n])
	if err != nil {
		return nil, 0, err
	}
	var v uint64
	if raw[n] != nil {
		if v, err = strconv.ParseUint(string(raw[n]), 10, 64); err != nil {
			return nil, 0, fmt.Errorf("read %s.%s: version %q: %w", rel.Schema, rel.Table, raw[n], err)
		}
	}
	return vals, v, nil
}
