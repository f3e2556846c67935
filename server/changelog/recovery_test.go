package changelog

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// snapshotDir returns the contents of the files in dir.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// restoreDir makes dir hold exactly the given files (plus LOCK), rewriting
// only files that differ.
func restoreDir(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && e.Name() != lockName {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
			continue
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCrashRecoveryTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		roll bool // the last record starts a new segment
	}{{"mid-segment", false}, {"first-of-segment", true}} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			o := &Options{SegmentBytes: 4 << 10}
			l := mustOpen(t, src, o)
			rng := newRNG()
			want := appendN(t, l, rng, 1, 1, 20)
			for {
				size := l.segs[len(l.segs)-1].size
				if tc.roll && size >= 4<<10 || !tc.roll && size < 3<<10 {
					break
				}
				want = append(want, appendN(t, l, rng, l.Head()+1, 1, 1)...)
			}
			lastSeg := l.segs[len(l.segs)-1]
			prevSize := lastSeg.size
			last := l.Head() + 1
			if err := l.Append(makeTxn(rng, last, 1)); err != nil {
				t.Fatal(err)
			}
			seg := l.segs[len(l.segs)-1]
			if tc.roll != (seg != lastSeg) {
				t.Fatalf("roll = %v", seg != lastSeg)
			}
			if tc.roll {
				prevSize = 0
			}
			segFile := filepath.Base(seg.path)
			fullSize := seg.size
			id := l.ID()
			l.Close()
			files := snapshotDir(t, src)
			work := t.TempDir()

			for cut := prevSize; cut < fullSize; cut++ {
				dir := restoreDir(t, work, files)
				path := filepath.Join(dir, segFile)
				if err := os.Truncate(path, cut); err != nil {
					t.Fatal(err)
				}
				l := mustOpen(t, dir, o)
				if l.ID() != id || l.Head() != want[len(want)-1] {
					t.Fatalf("cut %d: id %s head %X", cut, l.ID(), l.Head())
				}
				if got := readAll(t, l.Reader(0)); !slices.Equal(got, want) {
					t.Fatalf("cut %d: read %d txns, want %d", cut, len(got), len(want))
				}
				fi, err := os.Stat(path)
				switch {
				case prevSize == 0 && !errors.Is(err, os.ErrNotExist):
					t.Fatalf("cut %d: empty last segment not removed (%v)", cut, err)
				case prevSize > 0 && (err != nil || fi.Size() != prevSize):
					t.Fatalf("cut %d: segment not truncated to %d: %v %v", cut, prevSize, fi.Size(), err)
				}
				// The lost txn can be appended again.
				if cut%16 == 0 {
					if err := l.Append(makeTxn(rng, last, 1)); err != nil {
						t.Fatalf("cut %d: %v", cut, err)
					}
				}
				l.Close()
			}

			// Garbage after the last complete record.
			garbage := [][]byte{
				{0},
				{0, 0, 0, 0, 0, 0, 0, 0}, // zero length
				{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6},                                              // huge length
				binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 20), 0xdeadbeef), // length ok, no data
			}
			// A record with a valid length and a wrong checksum.
			bad := binary.LittleEndian.AppendUint32(nil, 24)
			bad = binary.LittleEndian.AppendUint32(bad, 12345)
			garbage = append(garbage, append(bad, make([]byte, 24)...))
			rng2 := rand.New(rand.NewPCG(3, 4))
			for range 20 {
				g := make([]byte, 1+rng2.IntN(600))
				for i := range g {
					g[i] = byte(rng2.Uint32())
				}
				garbage = append(garbage, g)
			}
			all := append(slices.Clone(want), last)
			for i, g := range garbage {
				dir := restoreDir(t, work, files)
				path := filepath.Join(dir, segFile)
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write(g)
				f.Close()
				l := mustOpen(t, dir, o)
				if got := readAll(t, l.Reader(0)); !slices.Equal(got, all) {
					t.Fatalf("garbage %d: read %d txns, want %d", i, len(got), len(all))
				}
				if fi, _ := os.Stat(path); fi.Size() != fullSize {
					t.Fatalf("garbage %d: size %d, want %d", i, fi.Size(), fullSize)
				}
				if err := l.Append(makeTxn(rng, last+1, 1)); err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, l.Reader(last)); !slices.Equal(got, []uint64{last + 1}) {
					t.Fatalf("garbage %d: after append read %v", i, got)
				}
				l.Close()
				l = mustOpen(t, dir, o)
				if l.Head() != last+1 {
					t.Fatalf("garbage %d: head %X after reopen", i, l.Head())
				}
				l.Close()
			}
		})
	}
}

func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	o := &Options{SegmentBytes: 2 << 10}
	l := mustOpen(t, dir, o)
	want := appendN(t, l, newRNG(), 1, 1, 60)
	if len(l.segs) < 4 {
		t.Fatalf("%d segments", len(l.segs))
	}
	second, third := l.segs[1], l.segs[2]
	l.Close()
	// Flip a byte in the middle of the second segment.
	b, _ := os.ReadFile(second.path)
	b[len(b)/2] ^= 0x55
	os.WriteFile(second.path, b, 0o644)

	l = mustOpen(t, dir, o)
	defer l.Close()
	if tt := l.TruncatedThrough(); tt != third.first-1 {
		t.Fatalf("TruncatedThrough %X, want %X", tt, third.first-1)
	}
	if _, _, err := l.Reader(0).TryNext(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v", err)
	}
	i := slices.Index(want, third.first)
	if got := readAll(t, l.Reader(third.first-1)); !slices.Equal(got, want[i:]) {
		t.Fatalf("got %d txns", len(got))
	}
	q, _ := filepath.Glob(filepath.Join(dir, "*.corrupt"))
	if len(q) != 2 {
		t.Fatalf("quarantined %v", q)
	}
}

func TestInterruptedRetentionAndLostState(t *testing.T) {
	dir := t.TempDir()
	o := &Options{SegmentBytes: 2 << 10}
	l := mustOpen(t, dir, o)
	want := appendN(t, l, newRNG(), 1, 1, 60)
	id := l.ID()
	first, second := l.segs[0], l.segs[1]
	l.Close()

	// Crash after the state was written but before the files were removed.
	if err := writeMeta(dir, meta{ID: id, TruncatedThrough: first.last}); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, o)
	if _, err := os.Stat(first.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("truncated segment not removed on open")
	}
	if l.TruncatedThrough() != first.last || l.Stats().OldestLSN != second.first || l.ID() != id {
		t.Fatalf("%+v", l.Stats())
	}
	if got := readAll(t, l.Reader(first.last)); !slices.Equal(got, want[slices.Index(want, second.first):]) {
		t.Fatalf("got %d", len(got))
	}
	l.Close()

	// Lost state file: a new ID, and nothing before the oldest segment.
	os.Remove(filepath.Join(dir, metaName))
	l = mustOpen(t, dir, o)
	defer l.Close()
	if l.ID() == id || l.TruncatedThrough() != second.first-1 {
		t.Fatalf("id %s tt %X", l.ID(), l.TruncatedThrough())
	}
	if _, err := readMetaOK(dir); err != nil {
		t.Fatal(err)
	}
}

func readMetaOK(dir string) (meta, error) {
	m, found, err := readMeta(dir)
	if err == nil && !found {
		err = os.ErrNotExist
	}
	return m, err
}
