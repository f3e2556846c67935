package idbvfs

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs"
)

var vfsSeq atomic.Int64

// register registers a fresh VFS on b under a unique name.
func register(t *testing.T, b Backend, o Options) (*VFS, string) {
	t.Helper()
	name := fmt.Sprintf("idbtest%d", vfsSeq.Add(1))
	v := New(b, o)
	vfs.Register(name, v)
	t.Cleanup(func() { vfs.Unregister(name) })
	return v, name
}

func open(t *testing.T, vfsName, file string) *sqlite3.Conn {
	t.Helper()
	db, err := sqlite3.Open("file:" + file + "?vfs=" + vfsName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sqlite3.Conn, sql string) {
	t.Helper()
	if err := db.Exec(sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, db *sqlite3.Conn, sql string) int64 {
	t.Helper()
	st, _, err := db.Prepare(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer st.Close()
	if !st.Step() {
		t.Fatalf("%s: no row: %v", sql, st.Err())
	}
	return st.ColumnInt64(0)
}

func queryText(t *testing.T, db *sqlite3.Conn, sql string) string {
	t.Helper()
	st, _, err := db.Prepare(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer st.Close()
	if !st.Step() {
		t.Fatalf("%s: no row: %v", sql, st.Err())
	}
	return st.ColumnText(0)
}

func TestWriteReadReopen(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{})
	db := open(t, name, "a.db")
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	exec(t, db, `INSERT INTO t(v) SELECT printf('row %d', value) FROM generate_series(1, 1000)`)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A new VFS on the same backend: a fresh process reading what was committed.
	_, name2 := register(t, b, Options{})
	db2 := open(t, name2, "a.db")
	if n := queryInt(t, db2, `SELECT count(*) FROM t`); n != 1000 {
		t.Fatalf("count = %d, want 1000", n)
	}
	if s := queryText(t, db2, `SELECT v FROM t WHERE id = 777`); s != "row 777" {
		t.Fatalf("row 777 = %q", s)
	}
	if s := queryText(t, db2, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check = %q", s)
	}
	if m := queryText(t, db2, `PRAGMA journal_mode`); m != "delete" {
		t.Fatalf("journal_mode = %q", m)
	}
}

// Every transaction is exactly one backend commit, and no journal is stored.
func TestOneCommitPerTransaction(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{})
	db := open(t, name, "c.db")
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	exec(t, db, `INSERT INTO t(v) VALUES ('x')`) // the first write of a new file may go the journal way
	for _, tc := range []struct {
		sql  string
		want int
	}{
		{`INSERT INTO t(v) VALUES ('a')`, 1},
		{`BEGIN; INSERT INTO t(v) VALUES ('b'); INSERT INTO t(v) VALUES ('c'); COMMIT`, 1},
		{`INSERT INTO t(v) SELECT hex(randomblob(500)) FROM generate_series(1, 5000)`, 1},
		{`DELETE FROM t WHERE id % 2 = 0`, 1},
		{`SELECT count(*) FROM t`, 0},
		{`BEGIN; INSERT INTO t(v) VALUES ('rolled back'); ROLLBACK`, 0},
	} {
		before := b.commitCount()
		exec(t, db, tc.sql)
		if got := b.commitCount() - before; got != tc.want {
			t.Errorf("%s: %d commits, want %d", tc.sql, got, tc.want)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for name := range b.files {
		if name != "c.db" {
			t.Errorf("unexpected stored file %q", name)
		}
	}
}

// A transaction bigger than SQLite's page cache spills pages before commit;
// it must still be one commit, and a failure must leave the old database.
func TestSpillingTransaction(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{})
	db := open(t, name, "s.db")
	exec(t, db, `PRAGMA cache_size = 10`)
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	exec(t, db, `INSERT INTO t(v) SELECT randomblob(1000) FROM generate_series(1, 100)`)
	before := b.commitCount()
	exec(t, db, `INSERT INTO t(v) SELECT randomblob(1000) FROM generate_series(1, 2000)`)
	if got := b.commitCount() - before; got != 1 {
		t.Fatalf("spilling transaction: %d commits, want 1", got)
	}
	b.setFail(true)
	err := db.Exec(`INSERT INTO t(v) SELECT randomblob(1000) FROM generate_series(1, 2000)`)
	b.setFail(false)
	if !errors.Is(err, sqlite3.IOERR) {
		t.Fatalf("failing commit: err = %v, want an I/O error", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 2100 {
		t.Fatalf("after failed commit: count = %d, want 2100", n)
	}
	_, name2 := register(t, b, Options{})
	db2 := open(t, name2, "s.db")
	if n := queryInt(t, db2, `SELECT count(*) FROM t`); n != 2100 {
		t.Fatalf("reopened after failed commit: count = %d, want 2100", n)
	}
	if s := queryText(t, db2, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check = %q", s)
	}
}

// A backend failure during a batch commit is an SQLite I/O error; the
// connection rolls back and keeps working once the backend recovers.
func TestCommitFailureIsIOError(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{})
	db := open(t, name, "f.db")
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)
	exec(t, db, `INSERT INTO t(v) VALUES ('one')`)
	b.setFail(true)
	err := db.Exec(`INSERT INTO t(v) VALUES ('two')`)
	if err == nil || !errors.Is(err, sqlite3.IOERR) {
		t.Fatalf("err = %v, want an I/O error", err)
	}
	if !strings.Contains(err.Error(), "I/O") {
		t.Logf("error text: %v", err)
	}
	b.setFail(false)
	if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 1 {
		t.Fatalf("count = %d, want 1 (the failed insert rolled back)", n)
	}
	exec(t, db, `INSERT INTO t(v) VALUES ('three')`)
	if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
	if s := queryText(t, db, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check = %q", s)
	}
}

// A database much larger than the cache bound works, and the cache stays
// within the bound.
func TestLargerThanCache(t *testing.T) {
	b := newMemBackend()
	const bound = 256 << 10
	v, name := register(t, b, Options{CacheBytes: bound})
	db := open(t, name, "big.db")
	exec(t, db, `PRAGMA cache_size = 20`)
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	for i := 0; i < 8; i++ {
		exec(t, db, `INSERT INTO t(v) SELECT randomblob(1000) FROM generate_series(1, 1000)`)
		if st := v.Stats("big.db"); st.CachedBytes > bound {
			t.Fatalf("cache holds %d bytes, bound %d", st.CachedBytes, bound)
		}
	}
	size := queryInt(t, db, `PRAGMA page_count`) * queryInt(t, db, `PRAGMA page_size`)
	if size < 8*bound {
		t.Fatalf("database is %d bytes, want > %d", size, 8*bound)
	}
	if s := queryText(t, db, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check = %q", s)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM t WHERE length(v) = 1000`); n != 8000 {
		t.Fatalf("count = %d", n)
	}
	st := v.Stats("big.db")
	if st.CachedBytes > bound || st.Loads == 0 {
		t.Fatalf("stats %+v: want loads and cache <= %d", st, bound)
	}
}

// Two connections of one process share the locks and the cache.
func TestTwoConnections(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{})
	a := open(t, name, "two.db")
	c := open(t, name, "two.db")
	exec(t, a, `CREATE TABLE t(id INTEGER PRIMARY KEY)`)
	exec(t, a, `INSERT INTO t VALUES (1)`)
	if n := queryInt(t, c, `SELECT count(*) FROM t`); n != 1 {
		t.Fatalf("second connection sees %d rows", n)
	}
	exec(t, a, `BEGIN IMMEDIATE`)
	if err := c.Exec(`INSERT INTO t VALUES (2)`); !errors.Is(err, sqlite3.BUSY) {
		t.Fatalf("write while the other holds RESERVED: %v, want BUSY", err)
	}
	exec(t, a, `INSERT INTO t VALUES (3); COMMIT`)
	exec(t, c, `INSERT INTO t VALUES (2)`)
	if n := queryInt(t, a, `SELECT sum(id) FROM t`); n != 6 {
		t.Fatalf("sum = %d", n)
	}
}

// Blocks larger than pages, and truncation (VACUUM) of a partial block.
func TestBlockLargerThanPage(t *testing.T) {
	b := newMemBackend()
	_, name := register(t, b, Options{BlockSize: 65536, CacheBytes: 1 << 20})
	db := open(t, name, "bb.db")
	exec(t, db, `PRAGMA page_size = 1024`)
	exec(t, db, `CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`)
	exec(t, db, `INSERT INTO t(v) SELECT randomblob(700) FROM generate_series(1, 3000)`)
	exec(t, db, `DELETE FROM t WHERE id > 100`)
	exec(t, db, `VACUUM`)
	exec(t, db, `INSERT INTO t(v) SELECT randomblob(300) FROM generate_series(1, 50)`)
	db.Close()
	_, name2 := register(t, b, Options{}) // the stored block size wins
	db2 := open(t, name2, "bb.db")
	if s := queryText(t, db2, `PRAGMA integrity_check`); s != "ok" {
		t.Fatalf("integrity_check = %q", s)
	}
	if n := queryInt(t, db2, `SELECT count(*) FROM t`); n != 150 {
		t.Fatalf("count = %d, want 150", n)
	}
}
