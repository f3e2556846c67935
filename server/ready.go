package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// DefaultReadyMaxLag is how far behind Postgres replication may be for
// /readyz to answer 200 (Config.ReadyMaxLag).
const DefaultReadyMaxLag = 30 * time.Second

// walLag measures how far behind Postgres replication is, in time: the
// service samples Postgres' flushed WAL position now and then (pollLag),
// and replication is behind by the age of the oldest sample it has not
// reached. Until it reaches the first sample (the WAL when the service
// started), it has not caught up at all.
type walLag struct {
	mu      sync.Mutex
	samples []walSample // increasing lsn; pruned as replication passes them
	reached bool        // replication has reached a sample once
	started bool        // a sample was taken
}

type walSample struct {
	at  time.Time
	lsn uint64
}

// maxWALSamples bounds the samples kept while replication is stuck: the
// oldest is kept (it dates the lag), the ones after it thinned.
const maxWALSamples = 1024

// sample records Postgres' flushed WAL position lsn at time at.
func (w *walLag) sample(at time.Time, lsn uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.started = true
	if n := len(w.samples); n > 0 && w.samples[n-1].lsn >= lsn {
		return // no new WAL: the older sample dates the position
	}
	if len(w.samples) >= maxWALSamples {
		w.samples = append(w.samples[:1], w.samples[2:]...)
	}
	w.samples = append(w.samples, walSample{at: at, lsn: lsn})
}

// lag returns how far behind replication at position pos is at now, and
// whether it has caught up with Postgres since the service started (false
// also before the first sample).
func (w *walLag) lag(now time.Time, pos uint64) (lag time.Duration, caughtUp bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := 0
	for i < len(w.samples) && w.samples[i].lsn <= pos {
		i++
	}
	if i > 0 {
		w.reached = true
		w.samples = append(w.samples[:0], w.samples[i:]...)
	}
	if !w.started || !w.reached {
		return 0, false
	}
	if len(w.samples) == 0 {
		return 0, true
	}
	return max(now.Sub(w.samples[0].at), 0), true
}

// replicatedLSN is the WAL position up to which everything committed is
// in the change log: its end, or past it the position replication last
// found idle (nothing pending).
func (s *Service) replicatedLSN() uint64 {
	pos := max(s.changeLog().EndLSN(), s.idleLSN.Load())
	if s.following.Load() {
		// Serving from a stream another replica appends to: that replica
		// confirms the slot only once the stream holds the transactions
		// (and when idle), so the slot's position is the stream's.
		pos = max(pos, s.slotFlushed.Load())
	}
	return pos
}

// sampleWAL records Postgres' flushed WAL position for the lag of /readyz,
// and, while following another replica's stream, the slot's position.
func (s *Service) sampleWAL(ctx context.Context) {
	var flushed string
	if err := s.pool.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&flushed); err != nil {
		return // Postgres unreachable: /readyz says so by itself
	}
	if lsn, err := pglogrepl.ParseLSN(flushed); err == nil {
		s.walLag.sample(time.Now(), uint64(lsn))
	}
	if !s.following.Load() {
		return
	}
	var confirmed *string
	if err := s.pool.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", s.cur.Load().slot).Scan(&confirmed); err != nil || confirmed == nil {
		return
	}
	if lsn, err := pglogrepl.ParseLSN(*confirmed); err == nil {
		s.slotFlushed.Store(uint64(lsn))
	}
}

// serveHealth is liveness (/healthz): 200 while the service runs. Nothing
// the service knows to go wrong is fixed by restarting it (it reconnects
// to Postgres, restarts replication, retries its log), so those are
// readiness (/readyz); after Close it answers 503.
func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request) {
	if s.closed.Load() {
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}

// serveReady is readiness (/readyz): 200 when the service takes new
// clients and serves them current data: not shutting down, Postgres
// reachable, the change log writable, replication running and caught up
// within ReadyMaxLag, every row-level security policy enforceable, no
// table stopped by an unsupported schema change. 503 with the reason
// otherwise.
func (s *Service) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		http.Error(w, "postgres unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if p := s.logErr.Load(); p != nil && *p != nil {
		http.Error(w, "change log cannot be written: "+(*p).Error(), http.StatusServiceUnavailable)
		return
	}
	if p := s.replErr.Load(); p != nil && *p != nil {
		http.Error(w, "replication: "+(*p).Error(), http.StatusServiceUnavailable)
		return
	}
	pos := s.replicatedLSN()
	lag, caughtUp := s.walLag.lag(time.Now(), pos)
	if !caughtUp {
		http.Error(w, fmt.Sprintf("replication has not caught up with Postgres yet (at %s)", pglogrepl.LSN(pos)), http.StatusServiceUnavailable)
		return
	}
	if lag > s.cfg.ReadyMaxLag {
		http.Error(w, fmt.Sprintf("replication behind Postgres by %s (more than --ready-max-lag %s; at %s)",
			lag.Round(time.Millisecond), s.cfg.ReadyMaxLag, pglogrepl.LSN(pos)), http.StatusServiceUnavailable)
		return
	}
	if p := s.policies.Load(); p != nil && len(p.Errors()) > 0 {
		// The service runs; the tables these policies guard are closed.
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, e := range p.Errors() {
			io.WriteString(w, "row-level security: "+e.Error()+"\n")
		}
		return
	}
	if refused := s.refusedTables(); len(refused) > 0 {
		// The service runs; these tables do not sync (schemastate.go).
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, e := range refused {
			io.WriteString(w, e+"\n")
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}
