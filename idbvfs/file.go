package idbvfs

import (
	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/vfs"
)

// file is one connection's handle on a database file.
type file struct {
	s        *store
	lock     vfs.LockLevel
	readOnly bool
	closed   bool

	// Change detection between connections of this process. SQLite built
	// with both SQLITE_ENABLE_ATOMIC_WRITE and SQLITE_ENABLE_BATCH_ATOMIC_WRITE
	// (as go-sqlite3 is) does not bump the file change counter on a batch
	// commit, so another connection would keep a stale page cache. The
	// store counts commits; a connection that takes a shared lock after
	// someone else committed sees a different change counter once, in the
	// 16-byte header read SQLite does to validate its cache, and so
	// discards its cache.
	seenGen int64
	stale   bool
}

var (
	_ vfs.FileLockState        = (*file)(nil)
	_ vfs.FileBatchAtomicWrite = (*file)(nil)
)

func (f *file) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.Unlock(vfs.LOCK_NONE)
	return f.s.v.release(f.s)
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.s.readAt(p, off)
	if f.stale {
		f.stale = false
		if off == 24 && len(p) == 16 && n == 16 {
			p[0] ^= 0xff
		}
	}
	return n, err
}

// wrote records that this connection committed: its SQLite cache is current.
func (f *file) wrote() {
	f.s.mu.Lock()
	f.seenGen = f.s.gen
	f.s.mu.Unlock()
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if f.readOnly {
		return 0, sqlite3.READONLY
	}
	return f.s.writeAt(p, off)
}

func (f *file) Truncate(size int64) error {
	if f.readOnly {
		return sqlite3.READONLY
	}
	return f.s.truncate(size)
}

// Sync commits what was written since the last commit (the non-batch commit
// path: SQLite syncs the database file once, at commit).
func (f *file) Sync(flags vfs.SyncFlag) error {
	err := f.s.sync()
	f.wrote()
	return err
}

func (f *file) Size() (int64, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.size, nil
}

func (f *file) SectorSize() int { return 512 }

// DeviceCharacteristics: a batch of writes commits atomically (one
// IndexedDB transaction), so SQLite keeps its rollback journal in memory and
// never writes it out.
func (f *file) DeviceCharacteristics() vfs.DeviceCharacteristic {
	return vfs.IOCAP_BATCH_ATOMIC | vfs.IOCAP_SAFE_APPEND | vfs.IOCAP_SEQUENTIAL |
		vfs.IOCAP_POWERSAFE_OVERWRITE | vfs.IOCAP_SUBPAGE_READ
}

func (f *file) BeginAtomicWrite() error { return f.s.beginBatch() }
func (f *file) CommitAtomicWrite() error {
	err := f.s.commitBatch()
	f.wrote()
	return err
}
func (f *file) RollbackAtomicWrite() error { return f.s.rollbackBatch() }

func (f *file) LockState() vfs.LockLevel { return f.lock }

// Lock implements SQLite's locking protocol between the connections of
// this process (one in-memory lock state per database name).
func (f *file) Lock(lock vfs.LockLevel) error {
	if f.lock >= lock {
		return nil
	}
	if f.readOnly && lock >= vfs.LOCK_RESERVED {
		return sqlite3.IOERR_LOCK
	}
	s := f.s
	s.lk.Lock()
	defer s.lk.Unlock()
	switch lock {
	case vfs.LOCK_SHARED:
		if s.pending {
			return sqlite3.BUSY
		}
		s.shared++
		s.mu.Lock()
		if f.seenGen != s.gen {
			f.seenGen, f.stale = s.gen, true
		}
		s.mu.Unlock()
	case vfs.LOCK_RESERVED:
		if s.reserved {
			return sqlite3.BUSY
		}
		s.reserved = true
	case vfs.LOCK_EXCLUSIVE:
		if f.lock == vfs.LOCK_RESERVED {
			f.lock = vfs.LOCK_PENDING
			s.pending = true
		}
		if s.shared > 1 {
			return sqlite3.BUSY
		}
	}
	f.lock = lock
	return nil
}

// Unlock releases locks. Leaving a write lock commits anything still dirty
// (only with synchronous=OFF, where SQLite never syncs).
func (f *file) Unlock(lock vfs.LockLevel) error {
	if f.lock <= lock {
		return nil
	}
	var err error
	if f.lock >= vfs.LOCK_RESERVED {
		err = f.s.sync()
		f.wrote()
	}
	s := f.s
	s.lk.Lock()
	defer s.lk.Unlock()
	if f.lock >= vfs.LOCK_RESERVED {
		s.reserved = false
	}
	if f.lock >= vfs.LOCK_PENDING {
		s.pending = false
	}
	if lock < vfs.LOCK_SHARED {
		s.shared--
	}
	f.lock = lock
	return err
}

func (f *file) CheckReservedLock() (bool, error) {
	if f.lock >= vfs.LOCK_RESERVED {
		return true, nil
	}
	f.s.lk.Lock()
	defer f.s.lk.Unlock()
	return f.s.reserved, nil
}
