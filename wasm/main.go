//go:build js

// Command wasm is the Lattice worker: Go compiled to WebAssembly, loaded by
// the worker script of the npm package (web/src/worker). It opens the app's
// SQLite database on IndexedDB, syncs it with the service over WebSocket,
// and serves the page's requests (jsbridge/MESSAGES.md).
package main

import (
	"context"
	"log/slog"
	"net/url"
	"os"

	"github.com/ncruces/go-sqlite3/vfs/memdb"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/jsbridge"
)

func main() {
	memdb.Create("x", nil)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := jsbridge.Serve(context.Background(), jsbridge.Options{
		Logger: log,
		Open: func(ctx context.Context, dbName string, opts *client.Options) (*client.Client, error) {
			return client.Open(ctx, "file:/"+url.PathEscape(dbName)+"?vfs=memdb", opts)
		},
	})
	log.Error("lattice worker stopped", "err", err)
}
