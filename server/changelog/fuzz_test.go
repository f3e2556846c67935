package changelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// Fuzz targets of the on-disk format.
//
// FuzzDecodeRecord feeds arbitrary bytes to the payload decoder and checks:
//   - it never panics, and every error wraps ErrCorrupt;
//   - decodeHeader agrees with decodeTxn (it accepts whatever decodeTxn
//     accepts, with the same header fields);
//   - an accepted record satisfies what Append requires of a txn (valid
//     ops, rows of one value per column, primary key indexes in range), so
//     it can be re-encoded;
//   - the decoded Txn does not alias the payload;
//   - re-encoding and decoding again gives an equal Txn, and re-encoding
//     that gives the same bytes (the encoder's output is a fixed point).
//     The payload format itself is not canonical (varints need not be
//     minimal, the value and byte totals are upper bounds, Rels may be
//     listed twice or unused, version 1 records are still read), so the
//     input bytes themselves are only reproduced for encoder output.
//
// FuzzRecoverSegment writes a log of a few txns, appends the fuzz input as
// the tail of the last segment (raw bytes, or one record with a valid
// length and checksum around the input, so that the header and LSN checks
// behind the checksum are reached) and opens the log. It checks that Open
// never fails or panics on a damaged tail, keeps every txn before it,
// truncates the file to a prefix of what was written that ends at a record
// boundary, never returns a txn that is not in the file, that every further
// record either decodes or is reported as ErrCorrupt, and that the
// recovered log accepts and returns a new append.
//
//	go test ./server/changelog -run=^$ -fuzz=FuzzDecodeRecord -fuzztime=60s
//	go test ./server/changelog -run=^$ -fuzz=FuzzRecoverSegment -fuzztime=60s

func fuzzTxns() []*Txn {
	rng := newRNG()
	txns := []*Txn{
		{LSN: 1},
		{LSN: math.MaxUint64, EndLSN: math.MaxUint64, Xid: math.MaxUint32, CommitTime: math.MinInt64, Origin: "c-1", ClientTxnID: math.MaxUint64},
		{LSN: 7, Changes: []Change{{Op: OpTruncate, Rel: relUsers}, {Op: protocol.OpDelete, Rel: relUsers, Old: userRow(3), Version: 9}}},
		{LSN: 8, Changes: []Change{{Op: protocol.OpInsert, Rel: &Rel{Schema: "s", Table: "empty"}, New: []coltype.Value{}}}},
		{LSN: 10, Changes: []Change{{Op: protocol.OpDelete, Rel: relUsersAttnums, Old: userRow(4), Version: 2}}},
		{LSN: 9, Changes: []Change{{Op: protocol.OpUpdate, Rel: relItems, New: []coltype.Value{
			{Kind: coltype.Integer, I: math.MinInt64}, {Kind: coltype.Text}, {Kind: coltype.Real, F: math.Float64frombits(0x7ff8_0000_dead_beef)},
			{}, {Kind: coltype.Blob}, {Kind: coltype.Real, F: math.Copysign(0, -1)},
		}}}},
	}
	for i := range 6 {
		txns = append(txns, makeTxn(rng, uint64(100+i), i))
	}
	return txns
}

// appendV1 appends the version 1 payload of t (no origin, client txn id
// or row versions).
func appendV1(dst []byte, t *Txn) []byte {
	var rels []*Rel
	idx := map[*Rel]int{}
	nValues, nBytes := 0, 0
	for _, c := range t.Changes {
		if _, ok := idx[c.Rel]; !ok {
			idx[c.Rel] = len(rels)
			rels = append(rels, c.Rel)
		}
		for _, row := range [][]coltype.Value{c.Old, c.New} {
			nValues += len(row)
			for _, v := range row {
				nBytes += len(v.B)
			}
		}
	}
	dst = append(dst, 1)
	dst = binary.LittleEndian.AppendUint64(dst, t.LSN)
	dst = binary.AppendUvarint(dst, t.EndLSN)
	dst = binary.AppendUvarint(dst, uint64(t.Xid))
	dst = binary.AppendVarint(dst, t.CommitTime)
	dst = binary.AppendUvarint(dst, uint64(nValues))
	dst = binary.AppendUvarint(dst, uint64(nBytes))
	dst = binary.AppendUvarint(dst, uint64(len(rels)))
	for _, r := range rels {
		k := appendRelV2(nil, r)
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(t.Changes)))
	for _, c := range t.Changes {
		dst = append(dst, byte(c.Op))
		dst = binary.AppendUvarint(dst, uint64(idx[c.Rel]))
		var f byte
		if c.Old != nil {
			f |= hasOld
		}
		if c.New != nil {
			f |= hasNew
		}
		dst = append(dst, f)
		if c.Old != nil {
			dst = appendRow(dst, c.Old)
		}
		if c.New != nil {
			dst = appendRow(dst, c.New)
		}
	}
	return dst
}

// encodePayload returns the record of t without its header.
func encodePayload(tb testing.TB, t *Txn) []byte {
	var e encoder
	var in interner
	rec, _, err := e.appendRecord(nil, t, &in)
	if err != nil {
		tb.Fatalf("encode %X: %v", t.LSN, err)
	}
	return rec[recHeaderLen:]
}

func FuzzDecodeRecord(f *testing.F) {
	for _, t := range fuzzTxns() {
		f.Add(encodePayload(f, t))
		f.Add(appendV1(nil, t))
	}
	f.Add([]byte{})
	f.Add([]byte{payloadVersion})
	f.Add(append([]byte{3}, make([]byte, minPayload)...))
	f.Fuzz(func(t *testing.T, payload []byte) {
		buf := bytes.Clone(payload)
		var in interner
		txn, err := decodeTxn(buf, &in)
		h, herr := decodeHeader(payload)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if herr != nil && !errors.Is(herr, ErrCorrupt) {
				t.Fatalf("header error %v does not wrap ErrCorrupt", herr)
			}
			return
		}
		if herr != nil {
			t.Fatalf("decodeTxn accepts what decodeHeader refuses: %v", herr)
		}
		if h.LSN != txn.LSN || h.EndLSN != txn.EndLSN || h.Xid != txn.Xid || h.CommitTime != txn.CommitTime ||
			h.Origin != txn.Origin || h.ClientTxnID != txn.ClientTxnID {
			t.Fatalf("header %+v differs from txn %s", h, showTxn(txn))
		}
		for i := range txn.Changes {
			c := &txn.Changes[i]
			if err := validateChange(c); err != nil {
				t.Fatalf("accepted change %d that Append refuses: %v", i, err)
			}
			if err := validateRel(c.Rel); err != nil {
				t.Fatalf("accepted change %d that Append refuses: %v", i, err)
			}
		}
		want := cloneTxn(txn)
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !equalTxn(txn, want) {
			t.Fatalf("the decoded txn aliases its payload")
		}

		enc := encodePayload(t, txn)
		txn2, err := decodeTxn(enc, &in)
		if err != nil {
			t.Fatalf("decoding the re-encoded %s: %v\n% x", showTxn(want), err, enc)
		}
		if !equalTxn(txn2, want) {
			t.Fatalf("re-encoding changed the txn:\n got %s\nwant %s", showTxn(txn2), showTxn(want))
		}
		if enc2 := encodePayload(t, txn2); !bytes.Equal(enc2, enc) {
			t.Fatalf("re-encoding is not a fixed point:\n% x\n% x", enc, enc2)
		}
		if payload[0] == payloadVersion && len(enc) > len(payload) {
			t.Fatalf("re-encoding grew the record from %d to %d bytes", len(payload), len(enc))
		}
	})
}

func cloneTxn(t *Txn) *Txn {
	c := *t
	c.Changes = make([]Change, len(t.Changes))
	for i, ch := range t.Changes {
		r := *ch.Rel
		r.Columns = append([]protocol.Column(nil), r.Columns...)
		r.PK = append([]int(nil), r.PK...)
		r.Attnums = append([]int16(nil), r.Attnums...)
		ch.Rel = &r
		ch.Old, ch.New = cloneRow(ch.Old), cloneRow(ch.New)
		c.Changes[i] = ch
	}
	return &c
}

func cloneRow(row []coltype.Value) []coltype.Value {
	if row == nil {
		return nil
	}
	out := make([]coltype.Value, len(row))
	for i, v := range row {
		v.B = bytes.Clone(v.B)
		out[i] = v
	}
	return out
}

// equalTxn compares txns by content (Rels by value, values with Equal;
// nil and empty rows differ).
func equalTxn(a, b *Txn) bool {
	if a.LSN != b.LSN || a.EndLSN != b.EndLSN || a.Xid != b.Xid || a.CommitTime != b.CommitTime ||
		a.Origin != b.Origin || a.ClientTxnID != b.ClientTxnID || len(a.Changes) != len(b.Changes) {
		return false
	}
	for i := range a.Changes {
		x, y := &a.Changes[i], &b.Changes[i]
		if x.Op != y.Op || x.Version != y.Version || !equalRel(x.Rel, y.Rel) || !equalRow(x.Old, y.Old) || !equalRow(x.New, y.New) {
			return false
		}
	}
	return true
}

func equalRel(a, b *Rel) bool {
	if a.Schema != b.Schema || a.Table != b.Table || len(a.Columns) != len(b.Columns) || len(a.PK) != len(b.PK) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i] != b.Columns[i] {
			return false
		}
	}
	for i := range a.PK {
		if a.PK[i] != b.PK[i] {
			return false
		}
	}
	return slices.Equal(relAttnums(a), relAttnums(b))
}

func equalRow(a, b []coltype.Value) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func showTxn(t *Txn) string {
	if t == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("{LSN %X End %X xid %d time %d origin %q/%d", t.LSN, t.EndLSN, t.Xid, t.CommitTime, t.Origin, t.ClientTxnID)
	for _, c := range t.Changes {
		s += fmt.Sprintf(" [%d %s.%s v%d old %v new %v]", c.Op, c.Rel.Schema, c.Rel.Table, c.Version, c.Old, c.New)
	}
	return s + "}"
}

// recordOf wraps payload in a record header with its length and checksum.
func recordOf(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

func FuzzRecoverSegment(f *testing.F) {
	// A log of a few txns, all in one segment.
	src := f.TempDir()
	l, err := Open(src, nil)
	if err != nil {
		f.Fatal(err)
	}
	rng := newRNG()
	var want []*Txn
	for i := range 4 {
		t := makeTxn(rng, uint64(10+i*10), i+1)
		want = append(want, cloneTxn(t))
		if err := l.Append(t); err != nil {
			f.Fatal(err)
		}
	}
	head := l.Head()
	id := l.ID()
	l.Close()
	segFile := segName(10)
	seg, err := os.ReadFile(filepath.Join(src, segFile))
	if err != nil {
		f.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(src, metaName))
	if err != nil {
		f.Fatal(err)
	}

	// Seeds: mode byte (bit 0: wrap the rest in a valid header), then the
	// tail or payload.
	next := makeTxn(rng, 50, 2)
	nextRec := recordOf(encodePayload(f, next))
	f.Add([]byte{0})
	f.Add(append([]byte{0}, nextRec...))
	f.Add(append([]byte{0}, nextRec[:len(nextRec)-1]...))
	f.Add(append([]byte{0}, nextRec[:5]...))
	f.Add(append([]byte{0}, append(bytes.Clone(nextRec), nextRec...)...))
	f.Add(append([]byte{0}, append(bytes.Clone(nextRec), 0xff, 0xff, 0xff, 0xff, 1, 2, 3)...))
	f.Add(append([]byte{1}, encodePayload(f, next)...))
	f.Add(append([]byte{1}, encodePayload(f, &Txn{LSN: 40})...)) // LSN not increasing
	f.Add(append([]byte{1}, appendV1(nil, next)...))
	f.Add(append([]byte{1}, encodePayload(f, next)[:20]...)) // good header, bad body
	f.Add([]byte{1, 2, 3})

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		tail := data[1:]
		if data[0]&1 != 0 {
			tail = recordOf(tail)
		}
		written := append(bytes.Clone(seg), tail...)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.Remove(filepath.Join(dir, e.Name()))
		}
		if err := os.WriteFile(filepath.Join(dir, metaName), meta, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segFile), written, 0o644); err != nil {
			t.Fatal(err)
		}

		l, err := Open(dir, &Options{MaxBytes: -1, MaxAge: -1})
		if err != nil {
			t.Fatalf("open with a damaged tail: %v", err)
		}
		defer l.Close()
		if l.ID() != id || l.Head() < head || l.TruncatedThrough() != 0 {
			t.Fatalf("id %s head %X truncated through %X", l.ID(), l.Head(), l.TruncatedThrough())
		}
		kept, err := os.ReadFile(filepath.Join(dir, segFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(kept) < len(seg) || !bytes.HasPrefix(written, kept) {
			t.Fatalf("recovery kept %d bytes that are not a prefix of the %d written (valid part: %d)", len(kept), len(written), len(seg))
		}
		if st := l.Stats(); st.Bytes != int64(len(kept)) || st.Segments != 1 {
			t.Fatalf("stats %+v, file has %d bytes", st, len(kept))
		}

		// Every kept record after the log's own is a whole record of the
		// tail; decode them independently.
		var extra []*Txn
		var extraErr error
		for off := len(seg); off < len(kept); {
			if len(kept)-off < recHeaderLen {
				t.Fatalf("kept a torn header at %d", off)
			}
			n := int(binary.LittleEndian.Uint32(kept[off:]))
			if off+recHeaderLen+n > len(kept) {
				t.Fatalf("kept a torn record at %d", off)
			}
			p := kept[off+recHeaderLen : off+recHeaderLen+n]
			if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(kept[off+4:]) {
				t.Fatalf("kept a record with a bad checksum at %d", off)
			}
			if extraErr == nil {
				var in interner
				x, err := decodeTxn(p, &in)
				if err != nil {
					extraErr = err
				} else {
					extra = append(extra, x)
				}
			}
			off += recHeaderLen + n
		}

		// Read everything back (from disk: Open starts with an empty
		// in-memory tail).
		r := l.Reader(0)
		defer r.Close()
		all := append(append([]*Txn(nil), want...), extra...)
		for i, w := range all {
			got, ok, err := r.TryNext()
			if err != nil || !ok {
				t.Fatalf("read txn %d (%X): %v %v", i, w.LSN, ok, err)
			}
			if !equalTxn(got, w) {
				t.Fatalf("read txn %d:\n got %s\nwant %s", i, showTxn(got), showTxn(w))
			}
		}
		got, ok, err := r.TryNext()
		switch {
		case extraErr != nil:
			if err == nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("reading the record that does not decode (%v): %s %v %v", extraErr, showTxn(got), ok, err)
			}
			return
		case err != nil || ok:
			t.Fatalf("read past the end: %s %v %v", showTxn(got), ok, err)
		}

		// The recovered log goes on.
		n := makeTxn(newRNG(), l.Head()+1, 1)
		nw := cloneTxn(n)
		if err := l.Append(n); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		got, ok, err = r.TryNext()
		if err != nil || !ok || !equalTxn(got, nw) {
			t.Fatalf("read the txn appended after recovery: %s %v %v", showTxn(got), ok, err)
		}
	})
}
