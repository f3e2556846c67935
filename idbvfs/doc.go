// Package idbvfs is a SQLite VFS for github.com/ncruces/go-sqlite3 that
// stores databases in IndexedDB, for Go compiled to WebAssembly
// (GOOS=js GOARCH=wasm) running in a Web Worker.
//
// Importing the package in a js/wasm build registers the VFS "idb":
//
//	import _ "github.com/latticesync/lattice/idbvfs"
//	db, err := sqlite3.Open("file:app.db?vfs=idb")
//
// Register(name, Options) registers another instance with other options
// (cache bound, block size, durability); Default returns the "idb" instance;
// Delete(ctx, name) deletes a database that is not open; VFS.Stats reports
// an open database's cache and IndexedDB counters.
//
// One worker per database: the cache and the locks live in this process
// (the connections of one worker share them), so two workers (tabs) must
// not open the same database at once; Lattice makes one worker the owner
// (SharedWorker, or a Web Lock).
//
// # Layout
//
// Each SQLite database file is its own IndexedDB database, named
// "idbvfs:" + the file name, with two object stores: "blocks" (key: the
// block index, a number; value: a Uint8Array of exactly the block size) and
// "meta" (key "meta": {size, blockSize}). Blocks are fixed-size (4096 bytes
// by default, SQLite's page size, so a page is a record); a missing block
// reads as zeros.
//
// # Atomic commits
//
// The database file declares SQLITE_IOCAP_BATCH_ATOMIC, so SQLite keeps its
// rollback journal in memory and brackets each commit with the batch-atomic
// file controls. Writes land in an in-memory dirty set; the commit sends
// every dirty block, the deletions of truncated blocks and the new size in
// one IndexedDB readwrite transaction and waits for its complete event. A
// crash therefore leaves the old or the new database, never a mix. When
// SQLite cannot use a batch (a transaction that spilled its page cache, the
// first transaction of a new file), it writes a rollback journal, which
// this VFS also keeps in memory, and syncs the database file once at commit:
// that sync is the single IndexedDB transaction. Nothing reaches IndexedDB
// before the commit, so an in-memory journal is enough: after a crash the
// stored database is the last committed one and needs no recovery. The
// price: a transaction's written pages are held in memory until it commits.
// Temporary files and statement journals live in memory. WAL mode is not
// supported (the VFS refuses -wal files, SQLite stays in rollback mode).
//
// # Cache
//
// Clean blocks are cached per open database, least recently used evicted
// beyond Options.CacheBytes (32 MiB by default). Opening a database reads
// its first Options.PrefetchBytes in one request; a read miss loads the
// missing block and up to Options.ReadAheadBlocks-1 following ones in one
// request. Connections of one process to one database share the cache and
// the in-process locks (SQLite's five lock levels).
//
// # Blocking
//
// VFS methods run on the goroutine that called SQLite and block on a
// channel until IndexedDB answers; the IndexedDB callbacks only do
// non-blocking sends. Never call SQLite from inside a js.FuncOf callback:
// start a goroutine. Errors and JS exceptions from IndexedDB become SQLite
// I/O errors.
//
// The pure logic (blocks, cache, dirty tracking, batches, locks) is in the
// files without a build tag and runs natively on any Backend; the IndexedDB
// Backend is in idb_js.go.
package idbvfs
