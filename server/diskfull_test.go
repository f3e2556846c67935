package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/internal/tmpfs"
	"github.com/latticesync/lattice/server"
	"github.com/latticesync/lattice/server/auth"
)

// TestLogDiskFull: the retained log's disk fills while Postgres keeps
// changing and a client writes. The service reports not ready with the
// reason, refuses new work (the client's writes wait in its queue), does
// not confirm the slot past what is on disk, and resumes by itself when
// space returns: every row reaches the client and every client write
// reaches Postgres, once.
func TestLogDiskFull(t *testing.T) {
	mnt := tmpfs.Mount(t, "1m")
	e := &env{t: t, dbURL: pgtest.DB(t)}
	pgtest.Exec(t, e.dbURL, `CREATE TABLE note (id text PRIMARY KEY, body text NOT NULL)`)
	e.cfg = server.Config{
		DatabaseURL:     e.dbURL,
		Auth:            auth.Config{Secret: testSecret},
		DataDir:         filepath.Join(mnt, "data"),
		LogSegmentBytes: 64 << 10,
		Logger:          testLogger(t),
	}
	e.start()
	e.exec("CALL lattice.electrify('note')")
	c, _ := e.clientAt(filepath.Join(t.TempDir(), "c.db"))
	e.subscribe(c, client.Shape{Table: "note"})

	// Leave little space: a filler file takes most of the mount.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 700<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("x", 4000)
	health := func() (int, string) {
		resp, err := http.Get(e.baseURL() + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	n := 0
	eventually(t, 60*time.Second, "the service reports its full disk", func() (bool, string) {
		n++
		e.exec(fmt.Sprintf("INSERT INTO note VALUES ('pg%d', '%s')", n, body))
		code, msg := health()
		return code == http.StatusServiceUnavailable && strings.Contains(msg, "change log cannot be written") &&
			strings.Contains(msg, "no space left"), fmt.Sprint(code, " ", msg)
	})
	t.Logf("disk full after %d rows of 4 KB", n)

	// A client write now waits: refused until space returns, kept locally.
	if err := c.Exec(context.Background(), "INSERT INTO note VALUES ('local1', 'written while the disk is full')"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if c.PendingCount() == 0 {
		// The write may have reached Postgres before the session saw the
		// failure (it is then applied once, like any other).
		t.Log("the client write was applied before the refusal")
	}
	for i := 0; i < 5; i++ {
		n++
		e.exec(fmt.Sprintf("INSERT INTO note VALUES ('pg%d', '%s')", n, body))
	}

	// Space returns: everything goes on by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the service is ready again", func() (bool, string) {
		code, msg := health()
		return code == http.StatusOK, fmt.Sprint(code, " ", msg)
	})
	eventually(t, 60*time.Second, "the client converges", func() (bool, string) {
		want := e.pgRows("SELECT id FROM note ORDER BY id")
		got := localRows(t, c, "SELECT id FROM note ORDER BY id")
		return c.PendingCount() == 0 && equalStrings(want, got) && len(want) == n+1,
			fmt.Sprintf("pending %d, postgres %d rows, client %d, want %d", c.PendingCount(), len(want), len(got), n+1)
	})
}
