package idbvfs

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ncruces/go-sqlite3"
)

// Stats are counters of one open database, for tests and tuning.
type Stats struct {
	Loads         int64 // read requests sent to the backend
	BlocksLoaded  int64
	Commits       int64 // backend transactions that wrote
	BlocksWritten int64
	CachedBlocks  int64 // clean blocks in memory now
	CachedBytes   int64
	DirtyBlocks   int64
	Reads         int64 // xRead calls (SQLite page cache misses)
	Writes        int64 // xWrite calls
}

// store is the state of one database file, shared by every connection of
// this process that has it open.
//
// Invariants (under mu): blocks with index < limit may be read from the
// backend; blocks >= limit read as zeros unless dirty. dirty holds every
// block written since the last commit; cache holds clean copies of stored
// blocks.
type store struct {
	v    *VFS
	name string
	refs int // under v.mu

	mu     sync.Mutex
	h      Handle
	bs     int64
	size   int64 // logical size, with uncommitted writes
	stored int64 // size recorded in the backend
	limit  int64
	newDB  bool  // meta not stored yet
	gen    int64 // commits since open
	cache  *lru
	dirty  map[int64][]byte

	// batch-atomic write state
	batch      bool
	saved      map[int64][]byte
	savedSize  int64
	savedLimit int64

	// locks (SQLite's five levels, in process)
	lk       sync.Mutex
	shared   int
	reserved bool
	pending  bool

	loads, blocksLoaded, commits, blocksWritten atomic.Int64
	reads, writes                               atomic.Int64
}

func divUp(a, b int64) int64 { return (a + b - 1) / b }

func (v *VFS) openStore(name string, create bool) (*store, error) {
	ctx, cancel := v.ctx()
	defer cancel()
	h, exists, err := v.b.Open(ctx, name, create)
	if err != nil {
		return nil, fmt.Errorf("idbvfs: open %q: %w", name, err)
	}
	if !exists && !create {
		if h != nil {
			h.Close()
		}
		return nil, sqlite3.CANTOPEN
	}
	s := &store{v: v, name: name, h: h, cache: newLRU(v.o.CacheBytes), dirty: map[int64][]byte{}}
	// Prefetch: metadata and the first blocks in one request.
	meta, blocks, err := h.Load(ctx, 0, v.o.PrefetchBytes/v.o.BlockSize)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("idbvfs: open %q: %w", name, err)
	}
	s.loads.Add(1)
	s.blocksLoaded.Add(int64(len(blocks)))
	s.bs = meta.BlockSize
	if s.bs == 0 {
		s.bs = v.o.BlockSize
		s.newDB = true
	}
	if !validBlockSize(s.bs) {
		h.Close()
		return nil, fmt.Errorf("idbvfs: open %q: bad block size %d", name, s.bs)
	}
	s.size, s.stored = meta.Size, meta.Size
	s.limit = divUp(meta.Size, s.bs)
	for _, b := range blocks {
		if b.Index < s.limit && int64(len(b.Data)) == s.bs {
			s.cache.put(b.Index, b.Data)
		}
	}
	return s, nil
}

func (s *store) close() error {
	s.mu.Lock()
	err := s.flush()
	s.mu.Unlock()
	if cerr := s.h.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *store) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Loads:         s.loads.Load(),
		BlocksLoaded:  s.blocksLoaded.Load(),
		Commits:       s.commits.Load(),
		BlocksWritten: s.blocksWritten.Load(),
		CachedBlocks:  int64(s.cache.len()),
		CachedBytes:   s.cache.bytes,
		DirtyBlocks:   int64(len(s.dirty)),
		Reads:         s.reads.Load(),
		Writes:        s.writes.Load(),
	}
}

// block returns block idx for reading (the caller must not keep or modify it).
func (s *store) block(idx int64) ([]byte, error) {
	if b, ok := s.dirty[idx]; ok {
		return b, nil
	}
	if b, ok := s.cache.get(idx); ok {
		return b, nil
	}
	return s.load(idx)
}

// load reads block idx from the backend, with the blocks after it
// (read-ahead) in the same request; they go to the cache.
func (s *store) load(idx int64) ([]byte, error) {
	if idx >= s.limit {
		return make([]byte, s.bs), nil
	}
	n := min(s.v.o.ReadAheadBlocks, s.limit-idx)
	// Do not re-read what is already in memory at the end of the range.
	for n > 1 && (s.cache.has(idx+n-1) || s.dirty[idx+n-1] != nil) {
		n--
	}
	ctx, cancel := s.v.ctx()
	defer cancel()
	_, blocks, err := s.h.Load(ctx, idx, n)
	if err != nil {
		return nil, fmt.Errorf("idbvfs: read %q block %d: %w", s.name, idx, err)
	}
	s.loads.Add(1)
	s.blocksLoaded.Add(int64(len(blocks)))
	var target []byte
	for _, b := range blocks {
		if int64(len(b.Data)) != s.bs {
			return nil, fmt.Errorf("idbvfs: read %q block %d: stored block has %d bytes, want %d", s.name, b.Index, len(b.Data), s.bs)
		}
		if b.Index == idx {
			target = b.Data
			continue
		}
		if _, ok := s.dirty[b.Index]; !ok && b.Index < s.limit && !s.cache.has(b.Index) {
			s.cache.put(b.Index, b.Data)
		}
	}
	if target == nil { // a hole: zeros
		return make([]byte, s.bs), nil
	}
	s.cache.put(idx, target)
	return target, nil
}

// writable returns block idx as a dirty block the caller may modify.
// whole tells that the caller overwrites all of it (no read needed).
func (s *store) writable(idx int64, whole bool) ([]byte, error) {
	if b, ok := s.dirty[idx]; ok {
		return b, nil
	}
	b, ok := s.cache.take(idx)
	if !ok {
		if whole || idx >= s.limit {
			b = make([]byte, s.bs)
		} else {
			var err error
			if b, err = s.load(idx); err != nil {
				return nil, err
			}
			s.cache.take(idx)
		}
	}
	s.dirty[idx] = b
	return b, nil
}

func (s *store) readAt(p []byte, off int64) (int, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		b, err := s.block(pos / s.bs)
		if err != nil {
			return done, err
		}
		done += copy(p[done:n], b[pos%s.bs:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *store) writeAt(p []byte, off int64) (int, error) {
	s.writes.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		o := pos % s.bs
		whole := o == 0 && int64(len(p)-done) >= s.bs
		b, err := s.writable(pos/s.bs, whole)
		if err != nil {
			return done, err
		}
		done += copy(b[o:], p[done:])
	}
	s.size = max(s.size, off+int64(len(p)))
	return len(p), nil
}

func (s *store) truncate(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size >= s.size {
		s.size = size
		return nil
	}
	keep := divUp(size, s.bs)
	if o := size % s.bs; o != 0 {
		b, err := s.writable(size/s.bs, false)
		if err != nil {
			return err
		}
		clear(b[o:])
	}
	for idx := range s.dirty {
		if idx >= keep {
			delete(s.dirty, idx)
		}
	}
	s.cache.dropFrom(keep)
	s.limit = min(s.limit, keep)
	s.size = size
	return nil
}

// flush commits the dirty blocks and the size as one backend transaction.
// Called with mu held.
func (s *store) flush() error {
	storedBlocks := divUp(s.stored, s.bs)
	if len(s.dirty) == 0 && s.size == s.stored && s.limit >= storedBlocks && !s.newDB {
		return nil
	}
	n := divUp(s.size, s.bs)
	puts := make([]Block, 0, len(s.dirty))
	for _, idx := range slices.Sorted(maps.Keys(s.dirty)) {
		if idx < n {
			puts = append(puts, Block{Index: idx, Data: s.dirty[idx]})
		}
	}
	dropFrom := int64(-1)
	if s.limit < storedBlocks {
		dropFrom = s.limit
	}
	ctx, cancel := s.v.ctx()
	defer cancel()
	var meta *Meta
	if s.size != s.stored || s.newDB {
		meta = &Meta{Size: s.size, BlockSize: s.bs}
	}
	if err := s.h.Commit(ctx, puts, dropFrom, meta); err != nil {
		return fmt.Errorf("idbvfs: commit %q: %w", s.name, err)
	}
	s.commits.Add(1)
	s.blocksWritten.Add(int64(len(puts)))
	for _, b := range puts {
		s.cache.put(b.Index, b.Data)
	}
	clear(s.dirty)
	s.stored, s.newDB = s.size, false
	s.gen++
	s.limit = n
	return nil
}

func (s *store) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batch {
		return nil
	}
	return s.flush()
}

func (s *store) beginBatch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved = make(map[int64][]byte, len(s.dirty))
	for idx, b := range s.dirty {
		s.saved[idx] = slices.Clone(b)
	}
	s.savedSize, s.savedLimit = s.size, s.limit
	s.batch = true
	return nil
}

func (s *store) commitBatch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch = false
	if err := s.flush(); err != nil {
		return err // SQLite follows with a rollback of the batch
	}
	s.saved = nil
	return nil
}

func (s *store) rollbackBatch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batch = false
	if s.saved == nil {
		return nil
	}
	s.dirty, s.saved = s.saved, nil
	s.size, s.limit = s.savedSize, s.savedLimit
	return nil
}
