package idbvfs

import "time"

// Options tune a VFS instance. The zero value means the defaults.
type Options struct {
	// BlockSize is the size of the blocks a new file is stored in (bytes, a
	// power of two from 512 to 65536). Default 4096, SQLite's default page
	// size, so one page is one IndexedDB record. An existing file keeps the
	// block size it was created with.
	BlockSize int64
	// CacheBytes bounds the clean blocks kept in memory per open file
	// (least recently used evicted first). Default 32 MiB. Dirty blocks of
	// the transaction being written are not counted and never evicted.
	CacheBytes int64
	// PrefetchBytes is how much of a file is read in one go when it is
	// opened. Default 4 MiB (capped by CacheBytes).
	PrefetchBytes int64
	// ReadAheadBlocks is how many blocks one read miss loads (the missing
	// block and the ones after it, in one IndexedDB request). Default 16.
	ReadAheadBlocks int64
	// Timeout bounds one IndexedDB operation. Default 60s.
	Timeout time.Duration
	// Durability is the durability hint of IndexedDB write transactions:
	// "relaxed" (the default: complete fires once the browser has the
	// data; an OS crash or power loss may lose the last commits, never
	// mix them) or "strict" (complete waits for the disk flush).
	Durability string
}

const (
	defaultBlockSize  = 4096
	defaultCacheBytes = 32 << 20
	defaultPrefetch   = 4 << 20
	defaultReadAhead  = 16
	defaultTimeout    = 60 * time.Second
)

func (o Options) withDefaults() Options {
	if o.BlockSize <= 0 {
		o.BlockSize = defaultBlockSize
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = defaultCacheBytes
	}
	if o.PrefetchBytes <= 0 {
		o.PrefetchBytes = defaultPrefetch
	}
	o.PrefetchBytes = min(o.PrefetchBytes, o.CacheBytes)
	if o.ReadAheadBlocks <= 0 {
		o.ReadAheadBlocks = defaultReadAhead
	}
	if o.Durability == "" {
		o.Durability = "relaxed"
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	return o
}

func validBlockSize(bs int64) bool {
	return bs >= 512 && bs <= 65536 && bs&(bs-1) == 0
}
