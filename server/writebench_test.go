package server_test

// Write-path benchmark: a write on one client to a live query on another
// (figures in BENCHMARKS.md). Needs Postgres (the pgtest harness starts one);
// only runs with -bench, e.g.
//
//	go test ./server -run '^$' -bench BenchmarkWriteToPeerLiveQuery -benchtime 1x -count 1

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/latticesync/lattice/client"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
	"github.com/latticesync/lattice/protocol"
)

const (
	peerWriteInterval = 100 * time.Millisecond // 10 transactions/s per writer
	peerWriteDuration = 10 * time.Second
)

// BenchmarkWriteToPeerLiveQuery: n native clients (":memory:" databases)
// all subscribe to the whole marks table, so every write fans out to all of
// them; each writes one single-row transaction (an UPDATE of its own row,
// id = writer number) every 100 ms, with a jittered start, for 10 s. A
// separate observer client, also subscribed, has a live query on the table;
// for every row whose seq advanced in a callback, the latency is the
// callback's time minus the row's sent_ns (stamped just before the writer's
// Exec; one process, one clock). Rows whose seq advanced by more than one
// in a callback give one sample (the newest write).
//
// Metrics: p50-ms/p99-ms/max-ms of those samples, samples, txn/s achieved
// by the writers, exec-p50-ms/exec-p99-ms the local Exec (commit on the
// writer's SQLite), catchup-ms how long after the last write the observer
// had seen every writer's last seq.
//
// The variant "own-row" differs in one thing: each writer subscribes to its
// own row only (shape marks WHERE id = $1), so only the observer receives
// every write. Full fan-out makes the box apply n*1,000 service
// transactions/s across n+1 co-located clients; own-row isolates the
// service and the write path from that.
func BenchmarkWriteToPeerLiveQuery(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchWriteToPeer(b, n, true) })
	}
	b.Run("clients=100/own-row", func(b *testing.B) { benchWriteToPeer(b, 100, false) })
}

// marksSQL is the write benchmarks' database: synchronous_commit = on,
// Postgres' default (the test cluster turns it off for speed, but then
// logical decoding sees a commit only after the WAL writer's next flush,
// wal_writer_delay, 10 ms there, which the benchmarks would measure; fsync
// stays off, a fast disk), and the table marks.
const marksSQL = `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database()); END $$;
CREATE TABLE marks (id int PRIMARY KEY, writer int NOT NULL, seq bigint NOT NULL, sent_ns bigint NOT NULL);
`

func benchWriteToPeer(b *testing.B, n int, fanout bool) {
	setup := marksSQL + `INSERT INTO marks SELECT i, i, 0, 0 FROM generate_series(1, ` + fmt.Sprint(n) + `) i`
	e := newEnv(b, setup, "marks")
	shape := client.Shape{Table: "marks"}

	writers := make([]*client.Client, n)
	stops := make([]func(), 0, n+1)
	defer func() { // stop every client before the service goes
		for _, stop := range stops {
			stop()
		}
	}()
	for i := range writers {
		c, stop := e.clientAt(":memory:")
		stops = append(stops, stop)
		if fanout {
			e.subscribe(c, shape)
		} else {
			e.subscribe(c, client.Shape{Table: "marks", Where: "id = $1", Params: []any{i + 1}})
		}
		writers[i] = c
	}
	obs, stop := e.clientAt(":memory:")
	stops = append(stops, stop)
	e.subscribe(obs, shape)

	var (
		mu      sync.Mutex
		lastSeq = map[int64]int64{}
		samples []time.Duration
		lqErr   error
		record  atomic.Bool
	)
	cancel, err := obs.LiveQuery("SELECT id, seq, sent_ns FROM marks", nil, func(rows *client.Rows, err error) {
		now := time.Now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lqErr = err
			return
		}
		for _, r := range rows.Values {
			id, _ := r[0].(int64)
			seq, _ := r[1].(int64)
			sent, _ := r[2].(int64)
			if seq > lastSeq[id] {
				lastSeq[id] = seq
				if record.Load() && sent > 0 {
					samples = append(samples, time.Duration(now-sent))
				}
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()

	var (
		all      []time.Duration
		execAll  []time.Duration
		txns     int64
		elapsed  time.Duration
		catchup  []time.Duration
		finalSeq = make([]int64, n)
	)
	for b.Loop() {
		mu.Lock()
		samples = samples[:0]
		mu.Unlock()
		record.Store(true)

		ctx := context.Background()
		var wg sync.WaitGroup
		var failed atomic.Value
		execTimes := make([][]time.Duration, n)
		start := time.Now()
		end := start.Add(peerWriteDuration)
		for i, c := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := int64(i + 1)
				next := start.Add(time.Duration(rand.Int64N(int64(peerWriteInterval))))
				for next.Before(end) {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					seq := finalSeq[i] + 1
					t0 := time.Now()
					if err := c.Exec(ctx, "UPDATE marks SET seq = ?, sent_ns = ? WHERE id = ?", seq, t0.UnixNano(), id); err != nil {
						failed.Store(err)
						return
					}
					execTimes[i] = append(execTimes[i], time.Since(t0))
					finalSeq[i] = seq
					next = next.Add(peerWriteInterval) // fall behind rather than skip
				}
			}()
		}
		wg.Wait()
		last := time.Now()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("write: %v", err)
		}
		elapsed += last.Sub(start)
		for _, ts := range execTimes {
			txns += int64(len(ts))
			execAll = append(execAll, ts...)
		}
		eventually(b, 120*time.Second, "the observer to see every write", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			if lqErr != nil {
				b.Fatalf("live query: %v", lqErr)
			}
			behind := 0
			for i, s := range finalSeq {
				if lastSeq[int64(i+1)] < s {
					behind++
				}
			}
			return behind == 0, fmt.Sprintf("%d writers behind", behind)
		})
		catchup = append(catchup, time.Since(last))
		record.Store(false)
		mu.Lock()
		all = append(all, samples...)
		mu.Unlock()
	}

	slices.Sort(all)
	slices.Sort(execAll)
	slices.Sort(catchup)
	b.ReportMetric(ms(pct(all, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(all, 0.99)), "p99-ms")
	b.ReportMetric(ms(pct(all, 1)), "max-ms")
	b.ReportMetric(float64(len(all)), "samples")
	b.ReportMetric(float64(txns)/elapsed.Seconds(), "txn/s")
	b.ReportMetric(ms(pct(execAll, 0.50)), "exec-p50-ms")
	b.ReportMetric(ms(pct(execAll, 0.99)), "exec-p99-ms")
	b.ReportMetric(ms(pct(catchup, 1)), "catchup-ms")
}

// BenchmarkServiceWriteThroughput: n connections (the protocol spoken
// directly, so that no local SQLite is measured) each send single-row
// UPDATE transactions of their own rows as fast as the service acks them,
// up to 64 in flight per connection (as the client does), for 5 s. Every
// write goes through the whole service: WebSocket, session, the applier's
// merge in Postgres (synchronous_commit on, fsync off), the Ack. Reports
// txn/s acked; the count in lattice.applied is checked against the acks.
func BenchmarkServiceWriteThroughput(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) { benchServiceWrites(b, n) })
	}
}

func benchServiceWrites(b *testing.B, n int) {
	const rowsPerConn, inFlight, duration = 100, 64, 5 * time.Second
	e := newEnv(b, marksSQL+`INSERT INTO marks SELECT i, i / `+fmt.Sprint(rowsPerConn)+`, 0, 0 FROM generate_series(0, `+fmt.Sprint(n*rowsPerConn-1)+`) i`, "marks")
	ctx := context.Background()
	conns := make([]*benchConn, n)
	acks := make([]chan error, n)
	txids := make([]uint64, n)
	for i := range conns {
		// A shape holding nothing: the connection only writes.
		c, err := dialBenchShapes(ctx, e.url, e.token("w"), fmt.Sprintf("writer-%d-%d", i, rand.Int64()),
			[]protocol.Shape{{ID: "none", Table: "marks", Where: "id < 0"}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.ws.CloseNow()
		conns[i] = c
		acks[i] = make(chan error, inFlight+1)
		go readAcks(ctx, c, acks[i])
	}
	var acked, total atomic.Int64
	for b.Loop() {
		acked.Store(0)
		start := time.Now()
		end := start.Add(duration)
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = writeLoop(ctx, c, acks[i], &txids[i], i, rowsPerConn, inFlight, end, &acked)
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		total.Add(acked.Load())
		b.ReportMetric(float64(acked.Load())/elapsed.Seconds(), "txn/s")
	}
	if got := e.pgRows("SELECT count(*) FROM lattice.applied")[0]; got != fmt.Sprint(total.Load()) {
		b.Fatalf("lattice.applied holds %s transactions, %d were acked", got, total.Load())
	}
}

// readAcks delivers, for each Ack read from c, nil, and for a Reject,
// an Error or a read error, that error (then stops).
func readAcks(ctx context.Context, c *benchConn, out chan<- error) {
	for {
		_, data, err := c.ws.Read(ctx)
		if err == nil {
			var m protocol.Down
			if m, err = protocol.DecodeDown(data); err == nil {
				switch m := m.(type) {
				case *protocol.Ack:
					out <- nil
					continue
				case *protocol.Reject:
					err = fmt.Errorf("txn %d rejected: %s", m.TxnID, m.Message)
				case *protocol.Error:
					err = m
				default:
					continue
				}
			}
		}
		out <- err
		return
	}
}

// writeLoop sends updates of conn i's rows until end, keeping at most
// inFlight unacknowledged, then waits for the last acks.
func writeLoop(ctx context.Context, c *benchConn, acks <-chan error, txid *uint64, i, rows, inFlight int, end time.Time, acked *atomic.Int64) error {
	hlc := merge.MakeHLC(time.Now().UnixMilli(), 0)
	pending := 0
	for time.Now().Before(end) || pending > 0 {
		if pending >= inFlight || !time.Now().Before(end) {
			select {
			case err := <-acks:
				if err != nil {
					return err
				}
				pending--
				acked.Add(1)
			case <-time.After(30 * time.Second):
				return errors.New("no ack for 30 s")
			}
			continue
		}
		*txid++
		hlc++
		id := int64(i*rows) + int64(*txid)%int64(rows)
		w := &protocol.Write{TxnID: *txid, HLC: uint64(hlc), Changes: []protocol.WriteChange{{Table: "public.marks", Op: protocol.OpUpdate,
			Version: protocol.VersionCurrent, Key: []coltype.Value{{Kind: coltype.Integer, I: id}},
			Columns: []uint32{2}, Values: []coltype.Value{{Kind: coltype.Integer, I: int64(*txid)}}}}}
		if err := c.ws.Write(ctx, websocket.MessageBinary, w.Encode(nil)); err != nil {
			return err
		}
		pending++
	}
	return nil
}
