package server

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The service's queues, as metrics (README.md, Metrics):
//
//   - Each session's send backlog: the change log between the session's
//     position and the log head, which the session reads and sends at the
//     pace its client accepts (nothing is buffered per session beyond the
//     frame being written). Measured in WAL bytes (head LSN - session
//     position), as a distribution over the sessions streaming shapes.
//   - Each session's request queue: frames read from the client (Write,
//     Subscribe, Unsubscribe) waiting for the session to handle them.
//   - The client-write applier: client transactions being applied in
//     Postgres, each waiting for a pool connection first.
//   - Snapshots: snapshot transactions waiting to start (a pool
//     connection, logged transactions to become visible) and running.
//   - The Postgres pool both wait for.

// backlogBuckets are the upper bounds (WAL bytes) of the backlog histogram.
var backlogBuckets = []float64{0, 4 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30}

// queueCollector reports, at each scrape, the queues whose state is read
// from the sessions and the pool.
type queueCollector struct {
	svc *Service

	backlog, backlogMax, requests                  *prometheus.Desc
	poolAcquired, poolIdle, poolMax, poolEmptyWait *prometheus.Desc
}

func newQueueCollector(s *Service) *queueCollector {
	return &queueCollector{
		svc: s,
		backlog: prometheus.NewDesc("lattice_session_backlog_bytes",
			"Distribution over the sessions streaming shapes of their send backlog: WAL bytes between the session's position and the change log's head, still to be read and sent to the client.", nil, nil),
		backlogMax: prometheus.NewDesc("lattice_session_backlog_max_bytes",
			"The largest send backlog of any session (WAL bytes).", nil, nil),
		requests: prometheus.NewDesc("lattice_session_requests_queued",
			"Client frames (Write, Subscribe, Unsubscribe) read and waiting for their session to handle them, all sessions together.", nil, nil),
		poolAcquired: prometheus.NewDesc("lattice_pg_pool_acquired_conns",
			"Postgres connections of the service's pool in use (client writes, snapshots, catalog reads).", nil, nil),
		poolIdle: prometheus.NewDesc("lattice_pg_pool_idle_conns",
			"Idle Postgres connections of the service's pool.", nil, nil),
		poolMax: prometheus.NewDesc("lattice_pg_pool_max_conns",
			"Size bound of the service's Postgres pool.", nil, nil),
		poolEmptyWait: prometheus.NewDesc("lattice_pg_pool_empty_acquires_total",
			"Pool acquires that had to wait for a connection (none was idle).", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.backlog, c.backlogMax, c.requests, c.poolAcquired, c.poolIdle, c.poolMax, c.poolEmptyWait} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.svc
	head := s.changeLog().Head()
	buckets := make(map[float64]uint64, len(backlogBuckets))
	var count uint64
	var sum, maxBacklog float64
	queued := 0
	s.connMu.Lock()
	for sess := range s.conns {
		queued += len(sess.reqs)
		if !sess.streaming.Load() {
			continue
		}
		b := float64(0)
		if pos := sess.pos.Load(); head > pos {
			b = float64(head - pos)
		}
		count++
		sum += b
		maxBacklog = max(maxBacklog, b)
		for _, ub := range backlogBuckets {
			if b <= ub {
				buckets[ub]++
			}
		}
	}
	s.connMu.Unlock()
	ch <- prometheus.MustNewConstHistogram(c.backlog, count, sum, buckets)
	ch <- prometheus.MustNewConstMetric(c.backlogMax, prometheus.GaugeValue, maxBacklog)
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.GaugeValue, float64(queued))
	st := s.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.poolAcquired, prometheus.GaugeValue, float64(st.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.poolIdle, prometheus.GaugeValue, float64(st.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.poolMax, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.poolEmptyWait, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
}

// queueMetrics are the queue metrics counted where the work happens.
type queueMetrics struct {
	writesApplying   prometheus.Gauge
	writeSeconds     prometheus.Histogram
	snapshotsWaiting prometheus.Gauge
	snapshotsRunning prometheus.Gauge
	snapshotWait     prometheus.Histogram
}

func newQueueMetrics(reg *prometheus.Registry) queueMetrics {
	q := queueMetrics{
		writesApplying: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_client_writes_applying", Help: "Client transactions being applied in Postgres now (waiting for a pool connection included)."}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lattice_client_write_apply_seconds", Help: "Time to apply one client transaction in Postgres, waiting for a pool connection and retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 30}}),
		snapshotsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_snapshots_waiting", Help: "Snapshot transactions (initial data, move-ins, re-syncs) waiting to start: for a pool connection, or for logged transactions to become visible."}),
		snapshotsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_snapshots_running", Help: "Snapshot transactions open, reading rows for clients."}),
		snapshotWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lattice_snapshot_wait_seconds", Help: "Time a snapshot transaction waited to start.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}),
	}
	reg.MustRegister(q.writesApplying, q.writeSeconds, q.snapshotsWaiting, q.snapshotsRunning, q.snapshotWait)
	return q
}

// runningTx is a snapshot transaction counted in lattice_snapshots_running
// until it ends (Commit or Rollback, whichever comes first).
type runningTx struct {
	pgx.Tx
	ended   atomic.Bool
	running prometheus.Gauge
}

func (t *runningTx) end() {
	if t.ended.CompareAndSwap(false, true) {
		t.running.Dec()
	}
}

func (t *runningTx) Commit(ctx context.Context) error {
	defer t.end()
	return t.Tx.Commit(ctx)
}

func (t *runningTx) Rollback(ctx context.Context) error {
	defer t.end()
	return t.Tx.Rollback(ctx)
}
