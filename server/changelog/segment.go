package changelog

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	segExt    = ".seg"
	metaName  = "meta.json"
	lockName  = "LOCK"
	tmpSuffix = ".tmp"
	// indexEvery is the spacing of the sparse in-memory index of a segment
	// (LSN -> file offset) used to position disk readers.
	indexEvery = 64 << 10
)

// segment is one file of the log, holding the txns with LSN in
// [first, next segment's first). Fields after path are guarded by Log.mu and
// change only while the segment is active.
type segment struct {
	first uint64 // LSN of its first txn, also its file name
	path  string

	last         uint64 // LSN of its newest txn
	lastEnd      uint64 // EndLSN of its newest txn
	newestCommit int64  // greatest CommitTime (unix micros)
	modTime      time.Time
	size         int64
	count        int
	index        []indexEntry
}

type indexEntry struct {
	lsn uint64
	off int64
}

func segName(first uint64) string { return fmt.Sprintf("%016x%s", first, segExt) }

// parseSegName returns the first LSN of a segment file name.
func parseSegName(name string) (uint64, bool) {
	if len(name) != 16+len(segExt) || !strings.HasSuffix(name, segExt) {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:16], 16, 64)
	return v, err == nil
}

// add accounts for a record of n bytes at offset off.
func (s *segment) add(h txnHeader, off int64, n int64) {
	if s.count == 0 || off-s.index[len(s.index)-1].off >= indexEvery {
		s.index = append(s.index, indexEntry{lsn: h.LSN, off: off})
	}
	s.count++
	s.last = h.LSN
	s.lastEnd = h.EndLSN
	s.newestCommit = max(s.newestCommit, h.CommitTime)
	s.size = off + n
}

// expiry is the time the segment's age is measured from: the later of its
// newest commit time and its last write, so that neither clock skew nor a
// catch-up replay of old transactions deletes data as soon as it is written.
func (s *segment) expiry() time.Time {
	t := s.modTime
	if c := time.UnixMicro(s.newestCommit); s.newestCommit > 0 && c.After(t) {
		t = c
	}
	return t
}

// scanSegment reads and verifies every record of the segment file at path.
// It returns the segment as far as it is valid; bad describes the first
// invalid record (nil if the whole file is valid), and s.size is the offset
// where the valid part ends. err reports I/O errors.
func scanSegment(path string, first, prevLast uint64) (s *segment, fileSize int64, bad, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, nil, fmt.Errorf("stat segment: %w", err)
	}
	s = &segment{first: first, path: path, modTime: fi.ModTime()}
	fileSize = fi.Size()
	br := bufio.NewReaderSize(f, int(min(max(fileSize, 16), 256<<10)))
	var hdr [recHeaderLen]byte
	var buf []byte
	var off int64
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return s, fileSize, nil, nil
			}
			if err == io.ErrUnexpectedEOF {
				return s, fileSize, fmt.Errorf("torn record header at offset %d", off), nil
			}
			return nil, 0, nil, fmt.Errorf("read segment %s: %w", path, err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n < minPayload || n > maxRecord || off+recHeaderLen+n > fileSize {
			return s, fileSize, fmt.Errorf("invalid record length %d at offset %d", n, off), nil
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return s, fileSize, fmt.Errorf("torn record at offset %d", off), nil
			}
			return nil, 0, nil, fmt.Errorf("read segment %s: %w", path, err)
		}
		if crc32.Checksum(buf, castagnoli) != sum {
			return s, fileSize, fmt.Errorf("checksum mismatch at offset %d", off), nil
		}
		h, herr := decodeHeader(buf)
		switch {
		case herr != nil:
			return s, fileSize, fmt.Errorf("record at offset %d: %w", off, herr), nil
		case s.count == 0 && h.LSN != first:
			return s, fileSize, fmt.Errorf("first record has LSN %X, file name says %X", h.LSN, first), nil
		case h.LSN <= prevLast || (s.count > 0 && h.LSN <= s.last):
			return s, fileSize, fmt.Errorf("record at offset %d: LSN %X not increasing", off, h.LSN), nil
		}
		s.add(h, off, recHeaderLen+n)
		off += recHeaderLen + n
	}
}

// meta is the small state file of a log, replaced atomically.
type meta struct {
	ID               string `json:"id"`
	TruncatedThrough uint64 `json:"truncated_through"`
}

func readMeta(dir string) (m meta, found bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if errors.Is(err, os.ErrNotExist) {
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, false, fmt.Errorf("read state %s: %w", metaName, err)
	}
	if !validID(m.ID) {
		return meta{}, false, fmt.Errorf("read state %s: invalid log id %q", metaName, m.ID)
	}
	return m, true, nil
}

func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// writeMeta replaces the state file atomically: write a temporary file,
// fsync it, rename it over the old one and fsync the directory.
func writeMeta(dir string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp := filepath.Join(dir, metaName+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, metaName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory so that file creations, renames and removals
// in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
