package idbvfs

import "context"

// Backend is the persistent block store under the VFS: IndexedDB in the
// browser (see idb_js.go). It is the only part that talks to the outside
// world; everything above it (block layout, cache, dirty tracking, batches)
// is plain Go and tested natively.
type Backend interface {
	// Open opens (creating when create is set) the store of one file.
	// exists reports whether the file was there before.
	Open(ctx context.Context, name string, create bool) (h Handle, exists bool, err error)
	// Exists reports whether a file exists.
	Exists(ctx context.Context, name string) (bool, error)
	// Delete removes a file and all its blocks. Deleting a missing file is not an error.
	Delete(ctx context.Context, name string) error
}

// Meta is what a store records beside the blocks.
type Meta struct {
	Size      int64 // file size in bytes
	BlockSize int64 // 0 when the file is new
}

// Block is one fixed-size block of a file: bytes [Index*bs, (Index+1)*bs).
type Block struct {
	Index int64
	Data  []byte
}

// Handle is the store of one open file.
type Handle interface {
	// Load returns the metadata and the stored blocks with index in
	// [first, first+n), in index order; absent blocks are left out.
	// n == 0 reads the metadata only.
	Load(ctx context.Context, first, n int64) (Meta, []Block, error)
	// Commit atomically (all or nothing, one IndexedDB transaction) deletes
	// every block with index >= dropFrom (dropFrom < 0: none), stores the
	// blocks and records meta (nil: unchanged).
	Commit(ctx context.Context, puts []Block, dropFrom int64, meta *Meta) error
	// Close releases the handle.
	Close() error
}
