package writes

import (
	"fmt"
	"sync"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
)

// BenchmarkApplySingleRow: single-row update transactions through Apply
// (one op = one client transaction: BEGIN, dedupe record, lock and read
// the base and shadow rows, merge, UPDATE of the changed column, shadow
// UPDATE, COMMIT), with 1 and 4 concurrent appliers, each its own origin
// updating its own rows (no lock waits) with Seen = the row's live tag, as
// a client would. Postgres (fsync=off, synchronous_commit=off), the
// applier and the benchmark share the machine.
func BenchmarkApplySingleRow(b *testing.B) {
	e := newEnv(b, `CREATE TABLE bench (id bigint PRIMARY KEY, n bigint NOT NULL, title text NOT NULL, done boolean NOT NULL)`, "bench")
	const rowsPer = 256
	round := 0
	for _, appliers := range []int{1, 4} {
		b.Run(fmt.Sprintf("appliers=%d", appliers), func(b *testing.B) {
			e.exec("TRUNCATE bench")
			round++ // fresh origins: (origin, id) of earlier rounds are applied already
			type worker struct {
				origin string
				id     uint64
				clock  merge.Clock
				last   []merge.Stamp // per row: its live tag
			}
			ws := make([]*worker, appliers)
			for w := range ws {
				wk := &worker{origin: fmt.Sprintf("bench-%d-%d", round, w), last: make([]merge.Stamp, rowsPer)}
				var seed []Change
				for r := range rowsPer {
					id := int64(w*rowsPer + r)
					seed = append(seed, ins("bench", I(id), I(id), I(0), T(fmt.Sprintf("row %d", id)), I(0)))
				}
				wk.id++
				tx := &Txn{Origin: wk.origin, ID: wk.id, HLC: wk.clock.Next(), Changes: seed}
				e.apply(tx)
				for r := range wk.last {
					wk.last[r] = merge.Stamp{HLC: tx.HLC, Origin: wk.origin}
				}
				ws[w] = wk
			}
			e.exec("VACUUM ANALYZE bench")
			var wg sync.WaitGroup
			errs := make(chan error, appliers)
			b.ResetTimer()
			for w, wk := range ws {
				n := b.N / appliers
				if w < b.N%appliers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range n {
						r := i % rowsPer
						id := int64(w*rowsPer + r)
						wk.id++
						tx := &Txn{Origin: wk.origin, ID: wk.id, HLC: wk.clock.Next(), Changes: []Change{{
							Table: "bench", Op: Update, Key: []coltype.Value{I(id)},
							Set: []int{1}, Values: []coltype.Value{I(int64(i + 1))},
							Seen: []merge.Stamp{wk.last[r]},
						}}}
						if _, err := e.a.Apply(e.ctx, tx); err != nil {
							errs <- err
							return
						}
						wk.last[r] = merge.Stamp{HLC: tx.HLC, Origin: wk.origin}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txns/s")
		})
	}
}
