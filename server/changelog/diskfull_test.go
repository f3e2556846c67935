package changelog

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/latticesync/lattice/internal/tmpfs"
)

// TestAppendDiskFull: when the disk fills, Append fails with ENOSPC and
// leaves nothing torn behind; once space returns the log goes on by
// itself (no reopen), and a reopened log holds exactly the txns whose
// Append succeeded, in order.
func TestAppendDiskFull(t *testing.T) {
	mnt := tmpfs.Mount(t, "512k")
	dir := filepath.Join(mnt, "log")
	// Space to give back later.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 128<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, dir, &Options{SegmentBytes: 16 << 10, MaxBytes: 1 << 30})
	rng := newRNG()
	var ok []uint64
	lsn := uint64(0x1000)
	var full error
	for i := 0; i < 100000 && full == nil; i++ {
		batch := []*Txn{makeTxn(rng, lsn, 1+i%5), makeTxn(rng, lsn+0x40, 1+i%3)}
		if err := l.Append(batch...); err != nil {
			full = err
			break
		}
		ok = append(ok, lsn, lsn+0x40)
		lsn += 0x80
	}
	if full == nil || !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", full)
	}
	if l.Head() != ok[len(ok)-1] {
		t.Fatalf("head %X after a failed append, want %X", l.Head(), ok[len(ok)-1])
	}
	// Still full: fails again, no sticky state.
	if err := l.Append(makeTxn(rng, lsn, 2)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second append on a full disk: %v, want ENOSPC", err)
	}
	// Space returns: the same txns go in.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := l.Append(makeTxn(rng, lsn, 1+i%4)); err != nil {
			t.Fatalf("append after space returned: %v", err)
		}
		ok = append(ok, lsn)
		lsn += 0x80
	}
	got := readAll(t, l.Reader(0))
	if !slices.Equal(got, ok) {
		t.Fatalf("live reader: %d txns, want %d", len(got), len(ok))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, &Options{SegmentBytes: 16 << 10, MaxBytes: 1 << 30})
	defer l.Close()
	got = readAll(t, l.Reader(0))
	if !slices.Equal(got, ok) {
		t.Fatalf("reopened log: %d txns (last %X), want %d (last %X)", len(got), got[len(got)-1], len(ok), ok[len(ok)-1])
	}
}
