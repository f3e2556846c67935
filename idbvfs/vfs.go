package idbvfs

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/util/vfsutil"
	"github.com/ncruces/go-sqlite3/vfs"
)

// VFS is a SQLite VFS that keeps main database files in a Backend as
// fixed-size blocks and everything else (rollback journals, temporary files)
// in memory. See the package documentation for why that is crash safe.
type VFS struct {
	b Backend
	o Options

	mu    sync.Mutex
	files map[string]*store             // open databases, shared by the connections of this process
	mem   map[string]*vfsutil.SliceFile // named in-memory files (rollback journals)
}

var _ vfs.VFS = (*VFS)(nil)

// New returns a VFS storing databases in b. Register it with vfs.Register.
func New(b Backend, o Options) *VFS {
	return &VFS{b: b, o: o.withDefaults(), files: map[string]*store{}, mem: map[string]*vfsutil.SliceFile{}}
}

func (v *VFS) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), v.o.Timeout)
}

// isAux reports whether name is one of SQLite's companion files.
func isAux(name string) bool {
	return strings.HasSuffix(name, "-journal") || strings.HasSuffix(name, "-wal") || strings.HasSuffix(name, "-shm")
}

// Open implements vfs.VFS.
func (v *VFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	switch {
	case flags&vfs.OPEN_MAIN_DB != 0:
		return v.openDB(name, flags)
	case flags&vfs.OPEN_WAL != 0:
		// No shared memory here: WAL mode is refused and SQLite stays in
		// rollback mode.
		return nil, flags, sqlite3.CANTOPEN
	case flags&(vfs.OPEN_MAIN_JOURNAL|vfs.OPEN_SUPER_JOURNAL) != 0 && name != "":
		v.mu.Lock()
		defer v.mu.Unlock()
		f := v.mem[name]
		if f == nil {
			if flags&vfs.OPEN_CREATE == 0 {
				return nil, flags, sqlite3.CANTOPEN
			}
			f = &vfsutil.SliceFile{}
			v.mem[name] = f
		}
		return &memFile{v: v, name: name, SliceFile: f}, flags | vfs.OPEN_MEMORY, nil
	default:
		// Temporary databases, statement journals, sorter files.
		return &memFile{SliceFile: &vfsutil.SliceFile{}}, flags | vfs.OPEN_MEMORY, nil
	}
}

// Delete implements vfs.VFS.
func (v *VFS) Delete(name string, syncDir bool) error {
	v.mu.Lock()
	if _, ok := v.mem[name]; ok {
		delete(v.mem, name)
		v.mu.Unlock()
		return nil
	}
	_, open := v.files[name]
	v.mu.Unlock()
	if isAux(name) {
		return sqlite3.IOERR_DELETE_NOENT
	}
	if open {
		return sqlite3.IOERR_DELETE
	}
	ctx, cancel := v.ctx()
	defer cancel()
	return v.b.Delete(ctx, name)
}

// Access implements vfs.VFS.
func (v *VFS) Access(name string, flags vfs.AccessFlag) (bool, error) {
	v.mu.Lock()
	_, mem := v.mem[name]
	_, open := v.files[name]
	v.mu.Unlock()
	if mem || open {
		return true, nil
	}
	if isAux(name) {
		return false, nil
	}
	ctx, cancel := v.ctx()
	defer cancel()
	return v.b.Exists(ctx, name)
}

// FullPathname implements vfs.VFS.
func (v *VFS) FullPathname(name string) (string, error) { return name, nil }

func (v *VFS) openDB(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.files[name]
	if s == nil {
		var err error
		s, err = v.openStore(name, flags&vfs.OPEN_CREATE != 0)
		if err != nil {
			return nil, flags, err
		}
		v.files[name] = s
	}
	s.refs++
	return &file{s: s, readOnly: flags&vfs.OPEN_READONLY != 0}, flags, nil
}

func (v *VFS) release(s *store) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return nil
	}
	delete(v.files, s.name)
	return s.close()
}

// Stats returns the counters of an open database (zero when not open).
func (v *VFS) Stats(name string) Stats {
	v.mu.Lock()
	s := v.files[name]
	v.mu.Unlock()
	if s == nil {
		return Stats{}
	}
	return s.stats()
}

// memFile is an in-memory file; a named one stays in the VFS until deleted.
type memFile struct {
	*vfsutil.SliceFile
	v    *VFS
	name string
}

func (*memFile) DeviceCharacteristics() vfs.DeviceCharacteristic {
	return vfs.IOCAP_ATOMIC | vfs.IOCAP_SEQUENTIAL | vfs.IOCAP_SAFE_APPEND | vfs.IOCAP_POWERSAFE_OVERWRITE
}

// DeleteFile deletes a database stored by v; it must not be open.
func (v *VFS) DeleteFile(ctx context.Context, name string) error {
	v.mu.Lock()
	_, open := v.files[name]
	delete(v.mem, name+"-journal")
	v.mu.Unlock()
	if open {
		return fmt.Errorf("idbvfs: delete %q: the database is open", name)
	}
	if err := v.b.Delete(ctx, name); err != nil {
		return fmt.Errorf("idbvfs: delete %q: %w", name, err)
	}
	return nil
}
