package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/catalog"
	"github.com/latticesync/lattice/server/changelog"
	"github.com/latticesync/lattice/server/schema"
)

// schemaState is what the service knows of the schema history (package
// schema): the tables whose latest change is not supported, which it has
// stopped syncing. With event triggers such changes are refused at DDL
// time; without them (a role that may not create event triggers) the
// service sees them on the stream (observeSchema).
type schemaState struct {
	mu      sync.Mutex
	refused map[string]string // "schema.table" -> why
	// seen counts the Relation messages of each table the stream showed:
	// after the first, its layout may differ from what a session
	// described (see remapWrite).
	seen map[string]int
}

// loadSchemaState reads the refused tables from the history (a restart
// keeps them stopped) and warns when no event trigger guards DDL.
func (s *Service) loadSchemaState(ctx context.Context) error {
	ok, err := schema.EventTriggers(ctx, s.pool)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Warn("no lattice event triggers (the role may not create them; a superuser can, by running lattice serve or lattice electrify once): unsupported schema changes of electrified tables (primary-key changes, narrowing type changes) cannot be refused at DDL time; such a table stops syncing instead")
	}
	refused, err := schema.Refused(ctx, s.pool)
	if err != nil {
		return err
	}
	s.schema.mu.Lock()
	s.schema.refused = refused
	s.schema.mu.Unlock()
	for t, why := range refused {
		s.log.Error("table not synced: its schema changed in a way Lattice does not support", "table", t, "reason", why)
	}
	return nil
}

// observeSchema records the schema of the electrified table relid as the
// stream describes it (a Relation message) and stops or resumes syncing
// it.
func (s *Service) observeSchema(ctx context.Context, relid uint32, key string) error {
	why, err := schema.Observe(ctx, s.pool, relid)
	if err != nil {
		return fmt.Errorf("schema history: %w", err)
	}
	s.schema.mu.Lock()
	defer s.schema.mu.Unlock()
	if s.schema.seen == nil {
		s.schema.seen = map[string]int{}
	}
	s.schema.seen[key]++
	old, had := s.schema.refused[key]
	switch {
	case why != "" && (!had || old != why):
		if s.schema.refused == nil {
			s.schema.refused = map[string]string{}
		}
		s.schema.refused[key] = why
		s.log.Error("table stops syncing: its schema changed in a way Lattice does not support", "table", key, "reason", why)
	case why == "" && had:
		delete(s.schema.refused, key)
		s.log.Info("table syncs again: its schema changed back to a supported one", "table", key)
	}
	return nil
}

// tableRefused says why table key ("schema.table") is not synced, or "".
func (s *Service) tableRefused(key string) string {
	s.schema.mu.Lock()
	defer s.schema.mu.Unlock()
	return s.schema.refused[key]
}

// refusedTables lists the tables not synced, with why, sorted.
func (s *Service) refusedTables() []string {
	s.schema.mu.Lock()
	m := maps.Clone(s.schema.refused)
	s.schema.mu.Unlock()
	out := make([]string, 0, len(m))
	for t, why := range m {
		out = append(out, fmt.Sprintf("table %s is not synced: unsupported schema change: %s", t, why))
	}
	sort.Strings(out)
	return out
}

// skipRefused reports whether changes to table key are to be skipped
// because the table is not synced; the session's client is told once per
// table (a non-fatal Error, shown in its status).
func (s *session) skipRefused(key string) (bool, error) {
	why := s.svc.tableRefused(key)
	if why == "" {
		return false, nil
	}
	if s.toldRefused == nil {
		s.toldRefused = map[string]bool{}
	}
	if s.toldRefused[key] {
		return true, nil
	}
	s.toldRefused[key] = true
	s.log.Warn("changes of a table not synced are held back", "table", key, "reason", why)
	return true, s.send(&protocol.Error{Code: protocol.ErrBadShape,
		Message: fmt.Sprintf("table %s stopped syncing: unsupported schema change: %s", key, why)})
}

// described records rel as the layout of its table the client has now.
func (s *session) described(rel *changelog.Rel) {
	if s.sentRel == nil {
		s.sentRel = map[string]*changelog.Rel{}
	}
	s.sentRel[relKey(rel.Schema, rel.Table)] = rel
}

// columnIDs returns the attnums of rel's columns for a version 2
// Relation: from rel (the change log stores them), or (a relation of a
// record written before it did) from the catalog by column name, 0 where
// unknown.
func (s *session) columnIDs(rel *changelog.Rel) []uint32 {
	ids := make([]uint32, len(rel.Columns))
	attnums := rel.Attnums
	if len(attnums) != len(rel.Columns) {
		attnums = nil
		if tb, err := s.svc.tables.Lookup(s.ctx, catalog.QuoteIdent(rel.Schema)+"."+catalog.QuoteIdent(rel.Table)); err == nil {
			byName := make(map[string]int16, len(tb.Rel.Columns))
			for i, c := range tb.Rel.Columns {
				if i < len(tb.Rel.Attnums) {
					byName[c.Name] = tb.Rel.Attnums[i]
				}
			}
			attnums = make([]int16, len(rel.Columns))
			for i, c := range rel.Columns {
				attnums[i] = byName[c.Name]
			}
		}
	}
	for i := range attnums {
		ids[i] = uint32(max(attnums[i], 0))
	}
	return ids
}

// jsonMergeColumns returns rel's columns for a version 3 Relation: with
// JSONMerge set on the json/jsonb columns merged per key path
// (lattice.electrified.json_merge), read from Postgres when the table is
// described. rel's own columns (shared, read-only) when there are none,
// or when the setting cannot be read (logged: the client then writes
// those columns whole, which the service merges as a set of the root).
func (s *session) jsonMergeColumns(rel *changelog.Rel) []protocol.Column {
	var names []string
	err := s.svc.pool.QueryRow(s.ctx, `SELECT e.json_merge FROM lattice.electrified e WHERE e.relid = to_regclass($1)`,
		catalog.QuoteIdent(rel.Schema)+"."+catalog.QuoteIdent(rel.Table)).Scan(&names)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.log.Warn("cannot read which columns are merged per key path; described as plain columns", "table", rel.Schema+"."+rel.Table, "err", err)
	}
	if len(names) == 0 {
		return rel.Columns
	}
	var cols []protocol.Column
	for i, c := range rel.Columns {
		if !slices.Contains(names, c.Name) || c.Type.Array || (c.Type.Base != coltype.JSON && c.Type.Base != coltype.JSONB) {
			continue
		}
		if cols == nil {
			cols = slices.Clone(rel.Columns)
		}
		cols[i].JSONMerge = true
	}
	if cols == nil {
		return rel.Columns
	}
	return cols
}

// mayHaveChanged reports whether table key's layout may have changed
// while the service ran.
func (s *Service) mayHaveChanged(key string) bool {
	s.schema.mu.Lock()
	defer s.schema.mu.Unlock()
	return s.schema.seen[key] > 1
}

// remapChanges applies remapWrite to the changes of a client write whose
// tables may have changed layout since they were described to the client.
func (s *session) remapChanges(m *protocol.Write) error {
	var cur map[string]*changelog.Rel
	for i := range m.Changes {
		c := &m.Changes[i]
		sent := s.sentRel[c.Table]
		if sent == nil || len(c.Columns) == 0 || !s.svc.mayHaveChanged(c.Table) {
			continue
		}
		rel, ok := cur[c.Table]
		if !ok {
			tb, err := s.svc.tables.Lookup(s.ctx, quoteName(c.Table))
			if err != nil {
				continue // the write path says what is wrong with the table
			}
			if cur == nil {
				cur = map[string]*changelog.Rel{}
			}
			rel = tb.Rel
			cur[c.Table] = rel
		}
		c.Columns, c.Values = s.remapWrite(c.Table, rel, c.Columns, c.Values)
	}
	return nil
}

// quoteName quotes "schema.table" (as WriteChange.Table) for to_regclass.
func quoteName(t string) string {
	if i := strings.IndexByte(t, '.'); i >= 0 {
		return catalog.QuoteIdent(t[:i]) + "." + catalog.QuoteIdent(t[i+1:])
	}
	return catalog.QuoteIdent(t)
}

// remapWrite translates the columns of a client's write, indexes into the
// layout of the table last described to it (sentRel), to the table's
// columns now, by attnum: after a schema change a write made against the
// old layout writes the renamed column, and loses only the values of
// dropped columns (logged; the client learns of the drop from the
// Relation). cur is the table's layout now.
func (s *session) remapWrite(table string, cur *changelog.Rel, cols []uint32, vals []coltype.Value) ([]uint32, []coltype.Value) {
	sent := s.sentRel[table]
	if sent == nil || sent == cur || len(sent.Attnums) != len(sent.Columns) || len(cur.Attnums) != len(cur.Columns) || slices.Equal(sent.Attnums, cur.Attnums) {
		return cols, vals
	}
	at := make(map[int16]int, len(cur.Attnums))
	for i, a := range cur.Attnums {
		at[a] = i
	}
	outCols := make([]uint32, 0, len(cols))
	outVals := make([]coltype.Value, 0, len(vals))
	var lost []string
	for k, col := range cols {
		c := col &^ protocol.ColumnJSONChanges // the flag stays with the column
		if int(c) >= len(sent.Attnums) || k >= len(vals) {
			return cols, vals // malformed: the write path says so
		}
		i, ok := at[sent.Attnums[c]]
		if !ok || sent.Attnums[c] == 0 {
			lost = append(lost, sent.Columns[c].Name)
			continue
		}
		outCols = append(outCols, uint32(i)|col&protocol.ColumnJSONChanges)
		outVals = append(outVals, vals[k])
	}
	if len(lost) > 0 {
		s.log.Warn("a client write names columns dropped since the client's layout; their values are not written", "table", table, "columns", lost)
	}
	return outCols, outVals
}
