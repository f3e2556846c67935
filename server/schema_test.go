package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/schema"
)

// relationOf reads until the Relation of table arrives.
func (r *rawConn) relationOf(table string) *protocol.Relation {
	r.t.Helper()
	for {
		m, err := r.next()
		if err != nil {
			r.t.Fatalf("waiting for the Relation of %s: %v", table, err)
		}
		if rel, ok := m.(*protocol.Relation); ok && rel.Table == table {
			return rel
		}
	}
}

// TestRelationColumnIDs: a version 2 client gets the columns' attnums with
// every Relation, a version 1 client the first release's Relation.
func TestRelationColumnIDs(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id int PRIMARY KEY, junk text, title text);
		ALTER TABLE docs DROP COLUMN junk; ALTER TABLE docs ADD COLUMN n int`, "docs")
	for _, v := range []uint16{1, 2} {
		r := e.dialRaw(t)
		r.send(&protocol.Hello{Version: v, Token: e.token("alice"), ClientID: "raw"})
		if _, err := r.next(); err != nil {
			t.Fatal(err)
		}
		r.send(&protocol.Subscribe{ReqID: 1, Shapes: []protocol.Shape{{ID: "a", Table: "docs"}}})
		rel := r.relationOf("docs")
		want := "[1 3 4]"
		if v == 1 {
			want = "[]"
		}
		if got := fmt.Sprint(rel.ColumnIDs); got != want {
			t.Fatalf("version %d: column ids %s, want %s", v, got, want)
		}
	}
}

// TestUnsupportedChangeWithoutEventTrigger: where no event trigger refuses
// it, an unsupported change stops the table's sync, with the reason in
// /readyz (readiness; /healthz, liveness, stays 200) and the client's
// status; other tables sync on.
func TestUnsupportedChangeWithoutEventTrigger(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id int PRIMARY KEY, n int); CREATE TABLE notes (id int PRIMARY KEY, body text);
		INSERT INTO docs VALUES (1, 1); INSERT INTO notes VALUES (1, 'a')`, "docs", "notes")
	e.exec(`DROP EVENT TRIGGER ` + schema.TriggerDDLEnd + `; DROP EVENT TRIGGER ` + schema.TriggerSQLDrop)
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "docs"})
	e.subscribe(c, client.Shape{Table: "notes"})
	waitEqual(t, e, c, "SELECT id, n FROM docs ORDER BY id", "SELECT id, n FROM docs ORDER BY id")

	e.exec(`ALTER TABLE docs ALTER COLUMN n TYPE smallint`)
	e.exec(`UPDATE docs SET n = 2 WHERE id = 1`)
	e.exec(`UPDATE notes SET body = 'b' WHERE id = 1`)
	waitEqual(t, e, c, "SELECT id, body FROM notes ORDER BY id", "SELECT id, body FROM notes ORDER BY id")
	const why = "table public.docs stopped syncing: unsupported schema change: column n changes type from integer to smallint"
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pe *protocol.Error
		if err := c.Status().LastError; errors.As(err, &pe) && strings.Contains(pe.Message, why) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client status: %v, want %q", c.Status().LastError, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := health(e); code != 503 || !strings.Contains(body, "table public.docs is not synced: unsupported schema change: column n changes type from integer to smallint") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := get(t, e.baseURL()+"/healthz"); code != 200 {
		t.Fatalf("/healthz (liveness) with a table stopped: %d %s", code, body)
	}
	// The update of the stopped table was not applied.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, "SELECT n FROM docs WHERE id = 1")
	if err != nil || len(rows.Values) != 1 || rows.Values[0][0] != int64(1) {
		t.Fatalf("docs locally: %+v %v", rows, err)
	}
}

// TestElectrifyWhileClientsRun: a table created and electrified while a
// client is connected syncs to it like any other, and has its history.
func TestElectrifyWhileClientsRun(t *testing.T) {
	e := newEnv(t, `CREATE TABLE docs (id int PRIMARY KEY, n int); INSERT INTO docs VALUES (1, 1)`, "docs")
	c, _ := e.clientAt(":memory:")
	e.subscribe(c, client.Shape{Table: "docs"})
	waitEqual(t, e, c, "SELECT id, n FROM docs ORDER BY id", "SELECT id, n FROM docs ORDER BY id")
	e.exec(`CREATE TABLE tags (id int PRIMARY KEY, docs_id int REFERENCES docs, label text NOT NULL DEFAULT 'x');
		INSERT INTO tags VALUES (1, 1, 'a')`)
	e.exec(`CALL lattice.electrify('tags')`)
	e.subscribe(c, client.Shape{Table: "tags"})
	e.exec(`INSERT INTO tags (id, docs_id) VALUES (2, 1)`)
	waitEqual(t, e, c, "SELECT id, docs_id, label FROM tags ORDER BY id", "SELECT id, docs_id, label FROM tags ORDER BY id")
	if rows := e.pgRows(`SELECT kind, source FROM lattice.schema_history WHERE table_name = 'tags' ORDER BY version`); len(rows) != 1 || rows[0] != "electrify|electrify" {
		t.Fatalf("history of tags: %v", rows)
	}
}
