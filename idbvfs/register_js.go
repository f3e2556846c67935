//go:build js

package idbvfs

import (
	"context"

	"github.com/ncruces/go-sqlite3/vfs"
)

// Name is the name the default IndexedDB VFS is registered under.
const Name = "idb"

var defaultVFS = Register(Name, Options{})

// Register registers an IndexedDB VFS with options under name and returns it.
// The package registers Name ("idb") with the defaults on import.
func Register(name string, o Options) *VFS {
	o = o.withDefaults()
	v := New(&idbBackend{durability: o.Durability}, o)
	vfs.Register(name, v)
	return v
}

// Default returns the VFS registered as "idb".
func Default() *VFS { return defaultVFS }

// Delete deletes a database of the "idb" VFS (its IndexedDB database). The
// database must not be open in this process.
func Delete(ctx context.Context, name string) error {
	return defaultVFS.DeleteFile(ctx, name)
}
