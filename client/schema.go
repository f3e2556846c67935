package client

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// ParseSchema decodes the schema object that `lattice generate` writes
// (and that the JS createLattice takes), so that Options.Schema can create
// the local tables before the first sync:
//
//	{"version": 1, "tables": [{"schema": "public", "name": "issue",
//	  "columns": [{"name": "id", "type": "uuid", "array": false, "enum": null,
//	               "notNull": true, "default": null}],
//	  "primaryKey": ["id"]}]}
//
// type is the Postgres base type name as coltype.Base.String() spells it
// ("bigint", "timestamp with time zone", "enum"...), enum the enum type's
// name when type is "enum", default a SQLite expression (as the service
// sends it) or null.
func ParseSchema(data []byte) ([]protocol.Relation, error) {
	var doc struct {
		Version int `json:"version"`
		Tables  []struct {
			Schema  string `json:"schema"`
			Name    string `json:"name"`
			Columns []struct {
				Name    string  `json:"name"`
				Type    string  `json:"type"`
				Array   bool    `json:"array"`
				Enum    *string `json:"enum"`
				NotNull bool    `json:"notNull"`
				Default *string `json:"default"`
			} `json:"columns"`
			PrimaryKey []string `json:"primaryKey"`
		} `json:"tables"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("parse schema: unsupported version %d (want 1)", doc.Version)
	}
	rels := make([]protocol.Relation, 0, len(doc.Tables))
	for _, t := range doc.Tables {
		if t.Name == "" {
			return nil, fmt.Errorf("parse schema: a table has no name")
		}
		rel := protocol.Relation{Schema: t.Schema, Table: t.Name}
		if rel.Schema == "" {
			rel.Schema = "public"
		}
		index := map[string]int{}
		for _, col := range t.Columns {
			base, ok := coltype.BaseByName(col.Type)
			if !ok || base == coltype.Unsupported {
				return nil, fmt.Errorf("parse schema: table %s column %s: unknown type %q", t.Name, col.Name, col.Type)
			}
			typ := coltype.Type{Base: base, Array: col.Array, Name: col.Type}
			if base == coltype.Enum {
				if col.Enum == nil || *col.Enum == "" {
					return nil, fmt.Errorf("parse schema: table %s column %s: enum without a name", t.Name, col.Name)
				}
				typ.Name = *col.Enum
			}
			if col.Array {
				typ.Name += "[]"
			}
			c := protocol.Column{Name: col.Name, Type: typ, NotNull: col.NotNull}
			if col.Default != nil {
				c.Default = *col.Default
			}
			if _, dup := index[col.Name]; dup {
				return nil, fmt.Errorf("parse schema: table %s: column %s twice", t.Name, col.Name)
			}
			index[col.Name] = len(rel.Columns)
			rel.Columns = append(rel.Columns, c)
		}
		if len(t.PrimaryKey) == 0 {
			return nil, fmt.Errorf("parse schema: table %s has no primary key", t.Name)
		}
		for _, k := range t.PrimaryKey {
			i, ok := index[k]
			if !ok {
				return nil, fmt.Errorf("parse schema: table %s: primary key column %s is not a column", t.Name, k)
			}
			rel.PK = append(rel.PK, i)
		}
		rels = append(rels, rel)
	}
	return rels, nil
}

// createSchema creates the local tables of Options.Schema that do not
// exist yet (tables already known are left as the service made them).
// Caller holds db, inside init's transaction.
func (c *Client) createSchema() error {
	for i := range c.opts.Schema {
		m := &c.opts.Schema[i]
		local := localName(m.Schema, m.Table)
		st, _, err := c.conn.Prepare(`SELECT 1 FROM _lattice_relations WHERE local_name = ?`)
		if err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		st.BindText(1, local)
		known := st.Step()
		err = st.Err()
		st.Close()
		if err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if known {
			continue
		}
		if _, err := c.ensureTable(local, m); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return nil
}
