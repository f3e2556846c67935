package protocol

import (
	"fmt"
	"strings"
	"testing"

	"github.com/latticesync/lattice/coltype"
)

// benchTxn returns a Txn of n rows of 6 columns (id, name, price, qty,
// description, updated_at), about 200 bytes a row on the wire.
func benchTxn(n int) *Txn {
	m := &Txn{LSN: 0x1234_5678, Flags: FlagFirst | FlagLast, CommitTime: 1_767_225_600_000_000}
	desc := strings.Repeat("lorem ipsum dolor sit amet, ", 6)
	for i := range n {
		m.Changes = append(m.Changes, Change{Op: OpInsert, RelID: 1, Values: []coltype.Value{
			vint(int64(i) + 1_000_000),
			vtext(fmt.Sprintf("item %06d", i)),
			vreal(float64(i) * 1.25),
			vint(int64(i % 97)),
			vtext(desc[:150+i%10]),
			vint(1_767_225_600_000_000 + int64(i)),
		}})
	}
	return m
}

const benchRows = 5000

func BenchmarkEncodeTxn(b *testing.B) {
	m := benchTxn(benchRows)
	buf := m.Encode(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		buf = m.Encode(buf[:0])
		n++
	}
	b.ReportMetric(float64(n*benchRows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(len(buf))/benchRows, "B/row")
}

func BenchmarkDecodeTxn(b *testing.B) {
	frame := benchTxn(benchRows).Encode(nil)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := DecodeDown(frame); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*benchRows)/b.Elapsed().Seconds(), "rows/s")
}
