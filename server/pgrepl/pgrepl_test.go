package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/internal/pgtest"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// typesByOID covers the built-in types the tests use.
var typesByOID = map[uint32]coltype.Type{
	16:   {Base: coltype.Bool},
	17:   {Base: coltype.Bytea},
	20:   {Base: coltype.Int8},
	21:   {Base: coltype.Int2},
	23:   {Base: coltype.Int4},
	25:   {Base: coltype.TextType},
	700:  {Base: coltype.Float4},
	701:  {Base: coltype.Float8},
	1043: {Base: coltype.TextType},
	1082: {Base: coltype.Date},
	1083: {Base: coltype.Time},
	1114: {Base: coltype.Timestamp},
	1184: {Base: coltype.Timestamptz},
	1186: {Base: coltype.Interval},
	1700: {Base: coltype.Numeric},
	114:  {Base: coltype.JSON},
	3802: {Base: coltype.JSONB},
	2950: {Base: coltype.UUID},
	1007: {Base: coltype.Int4, Array: true},
	1009: {Base: coltype.TextType, Array: true},
}

// harness runs Run against a fresh database with an in-memory sink.
type harness struct {
	t    *testing.T
	url  string
	db   *pgx.Conn // for the test's statements
	meta *pgx.Conn // for Describe (only called from Run's goroutine)

	mu       sync.Mutex
	txns     []*changelog.Txn
	batches  []int
	flushed  atomic.Uint64
	sinkWait time.Duration // delay in Sink
	describe atomic.Int32  // Describe calls
}

const schemaSQL = `SELECT pg_create_logical_replication_slot('s', 'pgoutput')`

func newHarness(t *testing.T, sqls ...string) *harness {
	t.Helper()
	url := pgtest.DB(t)
	pgtest.Exec(t, url, sqls...)
	ctx := context.Background()
	h := &harness{t: t, url: url}
	for _, c := range []**pgx.Conn{&h.db, &h.meta} {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		*c = conn
	}
	return h
}

func (h *harness) Describe(ctx context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
	h.describe.Add(1)
	rows, err := h.meta.Query(ctx, `
		SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       coalesce(array_position(i.indkey::int2[], a.attnum) + 1, 0) -- int2vector is 0-based
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, m.RelationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	rel := &changelog.Rel{Schema: m.Namespace, Table: m.RelationName}
	var pk []struct{ col, pos int }
	for rows.Next() {
		var (
			name, typName string
			oid           uint32
			notNull       bool
			pkPos         int
		)
		if err := rows.Scan(&name, &oid, &typName, &notNull, &pkPos); err != nil {
			return nil, err
		}
		typ, ok := typesByOID[oid]
		if !ok {
			return nil, fmt.Errorf("column %s: unsupported type %s", name, typName)
		}
		typ.Name = typName
		if pkPos > 0 {
			pk = append(pk, struct{ col, pos int }{len(rel.Columns), pkPos})
		}
		rel.Columns = append(rel.Columns, protocol.Column{Name: name, Type: typ, NotNull: notNull})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(pk, func(a, b struct{ col, pos int }) int { return a.pos - b.pos })
	for _, k := range pk {
		rel.PK = append(rel.PK, k.col)
	}
	return rel, nil
}

func (h *harness) Sink(ctx context.Context, txns []*changelog.Txn) error {
	time.Sleep(h.sinkWait)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range txns {
		if n := len(h.txns); n > 0 && x.LSN <= h.txns[n-1].LSN {
			return fmt.Errorf("txn %d at %X after %X", x.Xid, x.LSN, h.txns[n-1].LSN)
		}
		h.txns = append(h.txns, x)
	}
	h.batches = append(h.batches, len(txns))
	h.flushed.Store(txns[len(txns)-1].EndLSN)
	return nil
}

func (h *harness) config() Config {
	return Config{
		ConnString:     h.url,
		Slot:           "s",
		Publication:    "pub",
		Describe:       h.Describe,
		Sink:           h.Sink,
		Flushed:        h.flushed.Load,
		StatusInterval: 100 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(h.t.Output(), nil)),
		conv:           rawConv,
	}
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) start(cfg Config, start uint64) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg, start) }()
	h.t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels Run and returns its error (nil for a cancellation).
func (r *running) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(20 * time.Second):
		return errors.New("Run did not return after cancel")
	}
}

// wait waits for n txns in the sink and returns them.
func (h *harness) wait(r *running, n int) []*changelog.Txn {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		got := slices.Clone(h.txns)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case err := <-r.done:
			r.done <- err
			h.t.Fatalf("Run returned %v with %d of %d txns", err, len(got), n)
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timeout: %d of %d txns", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) reset() {
	h.mu.Lock()
	h.txns, h.batches = nil, nil
	h.mu.Unlock()
}

// txn runs statements in one transaction and returns its xid.
func (h *harness) txn(sqls ...string) uint32 {
	h.t.Helper()
	ctx := context.Background()
	tx, err := h.db.Begin(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		h.t.Fatal(err)
	}
	for _, q := range sqls {
		if _, err := tx.Exec(ctx, q); err != nil {
			h.t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		h.t.Fatal(err)
	}
	return uint32(xid)
}

func (h *harness) lsn(q string) uint64 {
	h.t.Helper()
	var s *string
	if err := h.db.QueryRow(context.Background(), q).Scan(&s); err != nil {
		h.t.Fatal(err)
	}
	if s == nil {
		return 0
	}
	l, err := pglogrepl.ParseLSN(*s)
	if err != nil {
		h.t.Fatal(err)
	}
	return uint64(l)
}

// waitConfirmed waits until the slot's confirmed_flush_lsn reaches lsn.
func (h *harness) waitConfirmed(lsn uint64) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := h.lsn(`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 's'`)
		if got >= lsn {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("confirmed_flush_lsn %s, want >= %s", pglogrepl.LSN(got), pglogrepl.LSN(lsn))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) waitActive() {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var active bool
		if err := h.db.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = 's'`).Scan(&active); err != nil {
			h.t.Fatal(err)
		}
		if active {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("slot never became active")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStream(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL, data bytea, at timestamptz,
			d interval, f float8, n numeric(10,2), tags text[])`,
		`ALTER TABLE items REPLICA IDENTITY FULL`,
		`CREATE TABLE "Other" (k text, v int4, PRIMARY KEY (v, k))`,
		`ALTER TABLE "Other" REPLICA IDENTITY FULL`,
		`CREATE TABLE unpublished (x int)`,
		`CREATE PUBLICATION pub FOR TABLE items, "Other"`,
		schemaSQL)
	r := h.start(h.config(), 0)
	h.waitActive()

	var xids []uint32
	xids = append(xids, h.txn(
		`INSERT INTO items VALUES (1, 'a', '\x0102', '2024-01-02 03:04:05.5+02', '1 day 2 hours', 0.1, 12.5, '{x,"y z"}')`))
	xids = append(xids, h.txn(
		`INSERT INTO "Other" VALUES ('k1', 1)`,
		`UPDATE items SET name = 'b' WHERE id = 1`,
		`INSERT INTO unpublished VALUES (1)`,
		`INSERT INTO items (id, name) VALUES (2, 'c')`,
		`DELETE FROM "Other" WHERE k = 'k1'`))
	xids = append(xids, h.txn(`UPDATE items SET id = 3 WHERE id = 2`))
	xids = append(xids, h.txn(`DELETE FROM items WHERE id = 1`))

	txns := h.wait(r, 4)
	if len(txns) != 4 {
		t.Fatalf("got %d txns, want 4", len(txns))
	}
	row1 := `1|a|\x0102|2024-01-02 01:04:05.5+00|P1DT2H|0.1|12.50|{x,"y z"}`
	row1b := strings.Replace(row1, "|a|", "|b|", 1)
	want := [][]string{
		{"insert public.items old=<nil> new=" + row1},
		{
			`insert public.Other old=<nil> new=k1|1`,
			"update public.items old=" + row1 + " new=" + row1b,
			`insert public.items old=<nil> new=2|c|NULL|NULL|NULL|NULL|NULL|NULL`,
			`delete public.Other old=k1|1 new=<nil>`,
		},
		{`update public.items old=2|c|NULL|NULL|NULL|NULL|NULL|NULL new=3|c|NULL|NULL|NULL|NULL|NULL|NULL`},
		{"delete public.items old=" + row1b + " new=<nil>"},
	}
	now := time.Now()
	for i, x := range txns {
		if x.Xid != xids[i] {
			t.Errorf("txn %d: xid %d, want %d", i, x.Xid, xids[i])
		}
		if x.EndLSN <= x.LSN || (i > 0 && x.LSN < txns[i-1].EndLSN) {
			t.Errorf("txn %d: LSN %X end %X (previous end %X)", i, x.LSN, x.EndLSN, txns[max(i-1, 0)].EndLSN)
		}
		if ct := time.UnixMicro(x.CommitTime); ct.After(now) || now.Sub(ct) > time.Minute {
			t.Errorf("txn %d: commit time %v", i, ct)
		}
		var got []string
		for _, c := range x.Changes {
			got = append(got, changeText(c))
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("txn %d:\n got %q\nwant %q", i, got, want[i])
		}
	}
	other := txns[1].Changes[0].Rel
	if other.Table != "Other" || !slices.Equal(other.PK, []int{1, 0}) || !other.Columns[0].NotNull {
		t.Errorf("Rel: %+v", other)
	}
	if txns[0].Changes[0].Rel != txns[3].Changes[0].Rel {
		t.Error("Describe should be called once per relation in a session")
	}
	if n := h.describe.Load(); n != 2 {
		t.Errorf("Describe called %d times, want 2", n)
	}

	// Status updates confirm what the sink made durable.
	h.waitConfirmed(txns[3].EndLSN)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestToast(t *testing.T) {
	for _, full := range []bool{true, false} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			sqls := []string{
				`CREATE TABLE docs (id int8 PRIMARY KEY, body text, n int4)`,
				`CREATE PUBLICATION pub FOR TABLE docs`,
				schemaSQL,
			}
			if full {
				sqls = append(sqls, `ALTER TABLE docs REPLICA IDENTITY FULL`)
			}
			h := newHarness(t, sqls...)
			r := h.start(h.config(), 0)
			h.txn(`INSERT INTO docs SELECT 1, string_agg(md5(random()::text), ''), 0 FROM generate_series(1, 4000)`)
			h.txn(`UPDATE docs SET n = n + 1`)
			var body string
			if err := h.db.QueryRow(context.Background(), `SELECT body FROM docs`).Scan(&body); err != nil {
				t.Fatal(err)
			}
			if len(body) != 128000 {
				t.Fatalf("body is %d bytes", len(body))
			}
			if !full {
				select {
				case err := <-r.done:
					r.done <- err
					if !errors.Is(err, ErrUnchangedTOAST) || !strings.Contains(err.Error(), "table public.docs column body") {
						t.Fatalf("err = %v, want ErrUnchangedTOAST naming public.docs column body", err)
					}
					t.Log(err)
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not fail")
				}
				return
			}
			txns := h.wait(r, 2)
			c := txns[1].Changes[0]
			if c.Op != protocol.OpUpdate || string(c.New[1].B) != body || string(c.Old[1].B) != body ||
				rowText(c.New[:1]) != "1" || string(c.New[2].B) != "1" || string(c.Old[2].B) != "0" {
				t.Errorf("update: new %.40s... old %.40s...", rowText(c.New), rowText(c.Old))
			}
		})
	}
}

func TestLargeTxn(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE big (id int8 PRIMARY KEY, v text)`,
		`ALTER TABLE big REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION pub FOR TABLE big`,
		schemaSQL)
	r := h.start(h.config(), 0)
	h.waitActive()
	begin := time.Now()
	h.txn(`INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g`)
	committed := time.Now()
	txns := h.wait(r, 1)
	received := time.Now()
	if len(txns) != 1 || len(txns[0].Changes) != 100000 {
		t.Fatalf("got %d txns, first with %d changes", len(txns), len(txns[0].Changes))
	}
	for i, c := range txns[0].Changes {
		if want := fmt.Sprint(i + 1); string(c.New[0].B) != want {
			t.Fatalf("change %d has id %s", i, c.New[0].B)
		}
	}
	t.Logf("100k-row txn: insert %v, then streamed and decoded in %v (%.0f rows/s)",
		committed.Sub(begin), received.Sub(committed), 100000/received.Sub(committed).Seconds())
}

func TestBatching(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY)`,
		`ALTER TABLE t REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	h.sinkWait = 20 * time.Millisecond
	r := h.start(h.config(), 0)
	h.waitActive()
	// 3000 single-row transactions, sent in one round trip.
	var sql strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&sql, "BEGIN; INSERT INTO t VALUES (%d); COMMIT;", i)
	}
	pgtest.Exec(t, h.url, sql.String())
	txns := h.wait(r, 3000)
	for i, x := range txns {
		if string(x.Changes[0].New[0].B) != fmt.Sprint(i) {
			t.Fatalf("txn %d has row %s", i, x.Changes[0].New[0].B)
		}
	}
	h.mu.Lock()
	batches := slices.Clone(h.batches)
	h.mu.Unlock()
	if slices.Max(batches) > maxBatchTxns || len(batches) < 3 || len(batches) > 500 {
		t.Errorf("batches: %v", batches)
	}
	t.Logf("%d batches, largest %d", len(batches), slices.Max(batches))
}

func TestRestartSkips(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY)`,
		`ALTER TABLE t REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	cfg := h.config()
	cfg.Flushed = func() uint64 { return 0 } // confirm nothing: Postgres resends everything
	r := h.start(cfg, 0)
	for i := range 3 {
		h.txn(fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	first := h.wait(r, 3)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	for _, start := range []uint64{first[0].LSN, first[0].EndLSN} {
		h.reset()
		// The previous walsender may still hold the slot for a moment.
		var r *running
		for try := 0; ; try++ {
			r = h.start(cfg, start)
			select {
			case err := <-r.done:
				r.done <- err
				if errors.Is(err, ErrSlotInUse) && try < 100 {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				t.Fatalf("restart: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			break
		}
		got := h.wait(r, 2)
		if got[0].LSN != first[1].LSN || got[1].LSN != first[2].LSN || got[1].Xid != first[2].Xid {
			t.Errorf("start %X: got txns at %X, %X; want %X, %X", start, got[0].LSN, got[1].LSN, first[1].LSN, first[2].LSN)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSlotInUse(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY)`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	r := h.start(h.config(), 0)
	h.waitActive()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, h.config(), 0)
	if !errors.Is(err, ErrSlotInUse) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Run: %v", err)
	}
	t.Log(err)
	// The first one is unaffected.
	h.txn("INSERT INTO t VALUES (1)")
	h.wait(r, 1)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestAdvanceWhenIdle(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY)`,
		`CREATE TABLE unpublished (x int)`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	cfg := h.config()
	cfg.AdvanceWhenIdle = true
	r := h.start(cfg, 0)
	h.txn("INSERT INTO t VALUES (1)")
	txns := h.wait(r, 1)
	h.waitConfirmed(txns[0].EndLSN)
	flushed := h.flushed.Load()
	h.txn("INSERT INTO unpublished VALUES (1)")
	h.waitConfirmed(flushed + 1)
	if h.flushed.Load() != flushed {
		t.Fatal("Flushed moved")
	}
	// Nothing was lost: the next change still arrives.
	h.txn("INSERT INTO t VALUES (2)")
	if got := h.wait(r, 2); rowText(got[1].Changes[0].New) != "2" {
		t.Errorf("after advance: %s", changeText(got[1].Changes[0]))
	}
}

func TestRunErrors(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY, v int4[])`, // int4[] is fine, point is not
		`CREATE TABLE p (id int8 PRIMARY KEY, at point)`,
		`CREATE PUBLICATION pub FOR TABLE t, p`,
		schemaSQL)
	cfg := h.config()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bad := cfg
	bad.Slot = "nope"
	if err := Run(ctx, bad, 0); err == nil || !strings.Contains(err.Error(), "start replication on slot nope") {
		t.Errorf("missing slot: %v", err)
	}
	bad = cfg
	bad.Slot = "Bad-Name"
	if err := Run(ctx, bad, 0); err == nil || !strings.Contains(err.Error(), "invalid slot name") {
		t.Errorf("bad slot name: %v", err)
	}
	bad = cfg
	bad.Sink = nil
	if err := Run(ctx, bad, 0); err == nil {
		t.Error("no sink: no error")
	}

	// Describe errors stop Run.
	pgtest.Exec(t, h.url, "INSERT INTO p VALUES (1, '(1,2)')")
	if err := Run(ctx, cfg, 0); err == nil || !strings.Contains(err.Error(), "describe public.p: column at: unsupported type point") {
		t.Errorf("describe error: %v", err)
	}

	// Sink errors stop Run.
	pgtest.Exec(t, h.url, "SELECT pg_create_logical_replication_slot('s2', 'pgoutput')")
	cfg.Slot = "s2"
	cfg.Sink = func(context.Context, []*changelog.Txn) error { return errors.New("disk full") }
	pgtest.Exec(t, h.url, "INSERT INTO t VALUES (1, '{1,2}')")
	if err := Run(ctx, cfg, 0); err == nil || !strings.Contains(err.Error(), "sink: disk full") {
		t.Errorf("sink error: %v", err)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY)`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	cfg := h.config()
	cfg.StatusInterval = time.Hour
	r := h.start(cfg, 0)
	h.waitActive()
	begin := time.Now()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
}

// TestFromPGText runs with the real converter once coltype implements it.
func TestFromPGText(t *testing.T) {
	if _, err := coltype.FromPGText(coltype.Type{Base: coltype.Int8, Name: "bigint"}, []byte("1")); err != nil {
		t.Skipf("coltype.FromPGText: %v", err)
	}
	h := newHarness(t,
		`CREATE TABLE t (id int8 PRIMARY KEY, s text, f float8, b bytea)`,
		`ALTER TABLE t REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION pub FOR TABLE t`,
		schemaSQL)
	cfg := h.config()
	cfg.conv = nil
	r := h.start(cfg, 0)
	h.txn(`INSERT INTO t VALUES (-42, 'héllo', 0.1, '\xff00')`)
	row := h.wait(r, 1)[0].Changes[0].New
	if row[0].Kind != coltype.Integer || row[0].I != -42 ||
		row[1].Kind != coltype.Text || string(row[1].B) != "héllo" ||
		row[2].Kind != coltype.Real || row[2].F != 0.1 ||
		row[3].Kind != coltype.Blob || string(row[3].B) != "\xff\x00" {
		t.Errorf("row: %+v", row)
	}
}

func TestOriginMessage(t *testing.T) {
	h := newHarness(t,
		`CREATE TABLE om (id int PRIMARY KEY, v text)`,
		`ALTER TABLE om REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION pub FOR TABLE om`,
		schemaSQL)
	r := h.start(h.config(), 0)
	h.waitActive()
	h.txn(`INSERT INTO om VALUES (1, 'a')`, `SELECT pg_logical_emit_message(true, 'lattice.origin', '42:client-a')`)
	h.txn(`INSERT INTO om VALUES (2, 'b')`, `SELECT pg_logical_emit_message(false, 'lattice.origin', '7:nontx')`)
	txns := h.wait(r, 2)
	if txns[0].Origin != "client-a" || txns[0].ClientTxnID != 42 {
		t.Fatalf("first txn origin %q id %d", txns[0].Origin, txns[0].ClientTxnID)
	}
	if txns[1].Origin != "" || txns[1].ClientTxnID != 0 {
		t.Fatalf("second txn origin %q id %d", txns[1].Origin, txns[1].ClientTxnID)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
