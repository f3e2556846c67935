package changelog

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// benchTxns returns n fresh txns with 1-10 changes (avg 5.5) and LSNs
// from start.
func benchTxns(templates []*Txn, start uint64, n int) []*Txn {
	out := make([]*Txn, n)
	for i := range out {
		t := *templates[(int(start)+i)%len(templates)]
		t.LSN = start + uint64(i)
		t.EndLSN = t.LSN + 1
		out[i] = &t
	}
	return out
}

func templates() []*Txn {
	rng := newRNG()
	ts := make([]*Txn, 1000)
	for i := range ts {
		ts[i] = makeTxn(rng, uint64(i+1), 1+i%10)
	}
	return ts
}

func BenchmarkAppend(b *testing.B) {
	tpl := templates()
	for _, batch := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l := mustOpen(b, b.TempDir(), nil)
			defer l.Close()
			lsn := uint64(1)
			var txns int
			start := time.Now()
			for b.Loop() {
				if err := l.Append(benchTxns(tpl, lsn, batch)...); err != nil {
					b.Fatal(err)
				}
				lsn += uint64(batch)
				txns += batch
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(float64(txns)/sec, "txns/s")
			b.ReportMetric(float64(l.Stats().Bytes)/1e6/sec, "MB/s")
			b.ReportMetric(float64(l.Stats().Bytes)/float64(txns), "B/txn")
		})
	}
}

// BenchmarkAppendFanout appends batches of 16 while 1,000 readers wait at
// the head and read every txn.
func BenchmarkAppendFanout(b *testing.B) {
	const readers = 1000
	tpl := templates()
	l := mustOpen(b, b.TempDir(), nil)
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range readers {
		r := l.Reader(0)
		wg.Go(func() {
			for {
				if _, err := r.Next(ctx); err != nil {
					return
				}
			}
		})
	}
	lsn := uint64(1)
	var txns int
	start := time.Now()
	for b.Loop() {
		if err := l.Append(benchTxns(tpl, lsn, 16)...); err != nil {
			b.Fatal(err)
		}
		lsn += 16
		txns += 16
	}
	sec := time.Since(start).Seconds()
	cancel()
	wg.Wait()
	b.ReportMetric(float64(txns)/sec, "txns/s")
	b.ReportMetric(float64(txns)*readers/sec, "deliveries/s")
}

func prefill(b *testing.B, o *Options, n int) *Log {
	l := mustOpen(b, b.TempDir(), o)
	tpl := templates()
	for lsn := uint64(1); lsn <= uint64(n); lsn += 500 {
		if err := l.Append(benchTxns(tpl, lsn, 500)...); err != nil {
			b.Fatal(err)
		}
	}
	return l
}

func benchRead(b *testing.B, l *Log) {
	r := l.Reader(0)
	var txns, changes int
	start := time.Now()
	for b.Loop() {
		t, ok, err := r.TryNext()
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			r.Close()
			r = l.Reader(0)
			continue
		}
		txns++
		changes += len(t.Changes)
	}
	sec := time.Since(start).Seconds()
	st := l.Stats()
	b.ReportMetric(float64(txns)/sec, "txns/s")
	b.ReportMetric(float64(txns)*float64(st.Bytes)/float64(st.Head)/1e6/sec, "MB/s")
	b.ReportMetric(float64(changes)/sec, "changes/s")
}

func BenchmarkReaderMemory(b *testing.B) {
	l := prefill(b, &Options{MemoryBytes: 1 << 30}, 20000)
	defer l.Close()
	if l.Stats().MemTxns != 20000 {
		b.Fatalf("%+v", l.Stats())
	}
	benchRead(b, l)
}

func BenchmarkReaderDisk(b *testing.B) {
	l := prefill(b, &Options{MemoryBytes: -1, SegmentBytes: 4 << 20}, 20000)
	defer l.Close()
	benchRead(b, l)
}
