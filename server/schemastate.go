package server

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/latticesync/lattice/protocol"
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
