package client

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

// benchRelation is a 6-column table of ~200-byte rows.
func benchRelation(id uint32) *protocol.Relation {
	return &protocol.Relation{
		RelID: id, Schema: "public", Table: "bench",
		Columns: []protocol.Column{
			{Name: "id", Type: coltype.Type{Base: coltype.Int8, Name: "bigint"}, NotNull: true},
			{Name: "owner", Type: coltype.Type{Base: coltype.UUID, Name: "uuid"}, NotNull: true},
			{Name: "title", Type: coltype.Type{Base: coltype.TextType, Name: "text"}},
			{Name: "amount", Type: coltype.Type{Base: coltype.Float8, Name: "double precision"}},
			{Name: "created", Type: coltype.Type{Base: coltype.Timestamptz, Name: "timestamp with time zone"}},
			{Name: "done", Type: coltype.Type{Base: coltype.Bool, Name: "boolean"}},
		},
		PK: []int{0},
	}
}

func benchRow(i int) []coltype.Value {
	owner := fmt.Sprintf("%08x-0000-4000-8000-%012x", i%1000, i)
	title := fmt.Sprintf("item %d: the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor", i)
	created := time.Unix(1700000000+int64(i), 0).UTC().Format("2006-01-02 15:04:05.000000Z")
	return []coltype.Value{
		{Kind: coltype.Integer, I: int64(i)},
		{Kind: coltype.Text, B: []byte(owner)},
		{Kind: coltype.Text, B: []byte(title)},
		{Kind: coltype.Real, F: float64(i) * 1.25},
		{Kind: coltype.Text, B: []byte(created)},
		{Kind: coltype.Integer, I: int64(i & 1)},
	}
}

// snapshotFrames encodes a snapshot of n rows at version 1 as Txn chunks
// of about protocol.TargetDownFrame bytes, the way the service chunks them.
func snapshotFrames(relID uint32, lsn uint64, n int) (frames [][]byte, bytes int) {
	return snapshotFramesAt(relID, lsn, n, 1)
}

// snapshotFramesAt is snapshotFrames with the rows at version (0:
// unknown).
func snapshotFramesAt(relID uint32, lsn uint64, n int, version uint64) (frames [][]byte, bytes int) {
	var chunk protocol.Txn
	var size int
	flush := func(last bool) {
		if last {
			chunk.Flags |= protocol.FlagLast
		}
		f := chunk.Encode(nil)
		frames = append(frames, f)
		bytes += len(f)
		chunk = protocol.Txn{LSN: lsn, Flags: protocol.FlagSnapshot}
		size = 0
	}
	chunk = protocol.Txn{LSN: lsn, Flags: protocol.FlagFirst | protocol.FlagSnapshot}
	for i := range n {
		ch := protocol.Change{Op: protocol.OpInsert, RelID: relID, Version: version, Values: benchRow(i)}
		size += len(protocol.AppendChange(nil, &ch))
		chunk.Changes = append(chunk.Changes, ch)
		if size >= protocol.TargetDownFrame && i < n-1 {
			flush(false)
		}
	}
	flush(true)
	return frames, bytes
}

// BenchmarkApplySnapshot measures the apply path (decode + SQLite upsert,
// one local transaction) of a 100k-row snapshot into a WAL file database
// (file) or an in-memory one (memory), without network. The rows are at
// version 1, as most are; memory-unknown has them at unknown versions
// (the service sent 0), each of which is recorded in the version store.
func BenchmarkApplySnapshot(b *testing.B) {
	for _, mode := range []string{"file", "memory", "memory-unknown"} {
		b.Run(mode, func(b *testing.B) {
			const rows = 100_000
			rel := benchRelation(1).Encode(nil)
			version := uint64(1)
			if mode == "memory-unknown" {
				version = 0
			}
			frames, size := snapshotFramesAt(1, 100, rows, version)
			ctx := context.Background()
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				path := ":memory:"
				if mode == "file" {
					path = filepath.Join(b.TempDir(), fmt.Sprintf("bench%d.db", i))
				}
				c, err := Open(ctx, path, nil)
				if err != nil {
					b.Fatal(err)
				}
				s := newSession(c, ctx, nil)
				if err := c.handle(s, &protocol.Welcome{LogID: "bench"}); err != nil {
					b.Fatal(err)
				}
				if err := c.applyFrame(s, rel); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				for _, f := range frames {
					if err := c.applyFrame(s, f); err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(start)
				b.StopTimer()
				if _, lsn := c.Position(); lsn != 100 {
					b.Fatalf("lsn %d", lsn)
				}
				c.endSession(s)
				c.Close()
				b.StartTimer()
			}
			b.SetBytes(int64(size))
			b.ReportMetric(float64(rows*b.N)/total.Seconds(), "rows/s")
			b.ReportMetric(float64(size)/rows, "B/row")
		})
	}
}

// BenchmarkApplyStream measures streamed one-row transactions (an update
// each, one local commit each) into a WAL file database.
func BenchmarkApplyStream(b *testing.B) {
	ctx := context.Background()
	c, err := Open(ctx, filepath.Join(b.TempDir(), "stream.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s := newSession(c, ctx, nil)
	if err := c.handle(s, &protocol.Welcome{LogID: "bench"}); err != nil {
		b.Fatal(err)
	}
	if err := c.applyFrame(s, benchRelation(1).Encode(nil)); err != nil {
		b.Fatal(err)
	}
	const rows = 1000
	frames, _ := snapshotFrames(1, 1, rows)
	for _, f := range frames {
		if err := c.applyFrame(s, f); err != nil {
			b.Fatal(err)
		}
	}
	var txns [][]byte
	for i := range 10_000 {
		t := protocol.Txn{LSN: uint64(2 + i), Flags: protocol.FlagFirst | protocol.FlagLast, CommitTime: 1,
			Changes: []protocol.Change{{Op: protocol.OpUpdate, RelID: 1, Version: uint64(2 + i/rows), Values: benchRow(i % rows)}}}
		txns = append(txns, t.Encode(nil))
	}
	// LSNs must grow: replaying the same frames keeps the stored LSN (it
	// never moves backwards) and still commits every transaction.
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := c.applyFrame(s, txns[n%len(txns)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "txns/s")
	c.endSession(s)
}
