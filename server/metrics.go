package server

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the service's Prometheus metrics, on their own registry.
type metrics struct {
	reg         *prometheus.Registry
	connections prometheus.Gauge
	shapes      prometheus.Gauge
	lagBytes    prometheus.Gauge
	lagSeconds  prometheus.Gauge
	changes     prometheus.Counter
	txns        prometheus.Counter
	bytesSent   prometheus.Counter
	framesSent  prometheus.Counter
	logBytes    prometheus.Gauge
	rejected    *prometheus.CounterVec
	writes      *prometheus.CounterVec
	// snapshotRetries: snapshots taken again because they did not see
	// every logged transaction yet (see visible.go).
	snapshotRetries prometheus.Counter
	// skewClamped counts client writes whose HLC was too far ahead of the
	// service's clock (Config.MaxClockSkew); skewMax is the greatest
	// amount a write's HLC was ahead, skewMaxMs its value.
	skewClamped prometheus.Counter
	skewMax     prometheus.Gauge
	skewMaxMs   atomic.Int64
	// slotLost: times the replication slot was found missing and a new
	// change log started (every client re-synced).
	slotLost prometheus.Counter
	// queueMetrics: the applier and snapshot queues (queues.go).
	queueMetrics
}

// observeSkew records how far a client write's HLC was ahead of the
// service's clock.
func (m *metrics) observeSkew(ahead time.Duration) {
	ms := ahead.Milliseconds()
	for {
		cur := m.skewMaxMs.Load()
		if ms <= cur {
			return
		}
		if m.skewMaxMs.CompareAndSwap(cur, ms) {
			m.skewMax.Set(float64(ms) / 1000)
			return
		}
	}
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_connections", Help: "Connected clients."}),
		shapes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_shapes", Help: "Active shape subscriptions across all connections."}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_replication_lag_bytes", Help: "WAL bytes between Postgres' current position and what the change log holds durably."}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_replication_lag_seconds", Help: "Seconds between the commit of the newest logged transaction and its arrival in the log (0 when idle)."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_changes_total", Help: "Row changes read from Postgres (rate() gives changes/s)."}),
		txns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_transactions_total", Help: "Transactions read from Postgres."}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_sent_bytes_total", Help: "Bytes sent to clients."}),
		framesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_sent_frames_total", Help: "Frames sent to clients."}),
		logBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_log_bytes", Help: "Bytes held by the retained change log."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lattice_client_errors_total", Help: "Errors sent to clients, by code."}, []string{"code"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lattice_client_transactions_total", Help: "Client transactions, by result (applied, duplicate: applied before and acked again, rejected)."}, []string{"result"}),
		snapshotRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_snapshot_retries_total", Help: "Postgres snapshots taken again because a transaction already in the change log was not visible in them yet."}),
		skewClamped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_clock_skew_clamped_total", Help: "Client transactions whose HLC was more than the maximum clock skew ahead of the service's clock, stamped at the service's clock + the maximum skew instead."}),
		skewMax: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lattice_clock_skew_max_seconds", Help: "The most a client transaction's HLC was ahead of the service's clock since the service started (0: none was ahead)."}),
		slotLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lattice_replication_slot_lost_total", Help: "Times the replication slot was missing (dropped, invalidated) and a new change log was started: changes in the gap are not in the stream, every client re-synced its shapes."}),
	}
	m.reg.MustRegister(m.connections, m.shapes, m.lagBytes, m.lagSeconds, m.changes, m.txns,
		m.bytesSent, m.framesSent, m.logBytes, m.rejected, m.writes, m.snapshotRetries, m.skewClamped, m.skewMax, m.slotLost,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.queueMetrics = newQueueMetrics(m.reg)
	return m
}
