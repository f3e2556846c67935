//go:build js

// Command wasm is the Lattice worker: Go compiled to WebAssembly, loaded by
// the worker script of the npm package (web/src/worker). It opens the app's
// SQLite database on IndexedDB (idbvfs), syncs it with the service over
// WebSocket, and serves the page's requests (jsbridge/MESSAGES.md).
package main

import (
	"context"
	"log/slog"
	"net/url"
	"os"

	"github.com/latticesync/lattice/client"
	_ "github.com/latticesync/lattice/idbvfs" // registers the VFS "idb"
	"github.com/latticesync/lattice/jsbridge"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := jsbridge.Serve(context.Background(), jsbridge.Options{
		Logger: log,
		Open: func(ctx context.Context, dbName string, opts *client.Options) (*client.Client, error) {
			// One IndexedDB database per app database: "idbvfs:<dbName>.db".
			return client.Open(ctx, "file:"+url.PathEscape(dbName)+".db?vfs=idb", opts)
		},
	})
	log.Error("lattice worker stopped", "err", err)
}
