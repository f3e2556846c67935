package idbvfs

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// memBackend is an in-memory Backend with the same contract as the
// IndexedDB one: a commit is all or nothing. failCommits makes commits fail
// (like an aborted IndexedDB transaction) so error paths can be tested.
type memBackend struct {
	mu          sync.Mutex
	files       map[string]*memData
	failCommits bool
	commits     int
}

type memData struct {
	meta   Meta
	blocks map[int64][]byte
}

var errInjected = errors.New("injected backend failure")

func newMemBackend() *memBackend { return &memBackend{files: map[string]*memData{}} }

func (b *memBackend) Open(ctx context.Context, name string, create bool) (Handle, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.files[name]
	if !ok && create {
		d = &memData{blocks: map[int64][]byte{}}
		b.files[name] = d
	}
	return &memHandle{b: b, name: name}, ok, nil
}

func (b *memBackend) Exists(ctx context.Context, name string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.files[name]
	return ok, nil
}

func (b *memBackend) Delete(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.files, name)
	return nil
}

type memHandle struct {
	b    *memBackend
	name string
}

func (h *memHandle) Load(ctx context.Context, first, n int64) (Meta, []Block, error) {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	d := h.b.files[h.name]
	if d == nil {
		return Meta{}, nil, errors.New("deleted")
	}
	var out []Block
	for i := first; i < first+n; i++ {
		if b, ok := d.blocks[i]; ok {
			out = append(out, Block{Index: i, Data: slices.Clone(b)})
		}
	}
	return d.meta, out, nil
}

func (h *memHandle) Commit(ctx context.Context, puts []Block, dropFrom int64, meta *Meta) error {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	if h.b.failCommits {
		return errInjected
	}
	d := h.b.files[h.name]
	if d == nil {
		return errors.New("deleted")
	}
	if dropFrom >= 0 {
		for i := range d.blocks {
			if i >= dropFrom {
				delete(d.blocks, i)
			}
		}
	}
	for _, b := range puts {
		d.blocks[b.Index] = slices.Clone(b.Data)
	}
	if meta != nil {
		d.meta = *meta
	}
	h.b.commits++
	return nil
}

func (h *memHandle) Close() error { return nil }

func (b *memBackend) setFail(v bool) {
	b.mu.Lock()
	b.failCommits = v
	b.mu.Unlock()
}

func (b *memBackend) commitCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commits
}
