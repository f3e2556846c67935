package pgrepl

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

// pgoutput protocol version 1 message builders.

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type msg []byte

func (m msg) u8(v byte) msg      { return append(m, v) }
func (m msg) u16(v uint16) msg   { return binary.BigEndian.AppendUint16(m, v) }
func (m msg) u32(v uint32) msg   { return binary.BigEndian.AppendUint32(m, v) }
func (m msg) u64(v uint64) msg   { return binary.BigEndian.AppendUint64(m, v) }
func (m msg) str(s string) msg   { return append(append(m, s...), 0) }
func (m msg) ts(t time.Time) msg { return m.u64(uint64(t.Sub(pgEpoch).Microseconds())) }

func mBegin(final uint64, t time.Time, xid uint32) []byte {
	return msg{'B'}.u64(final).ts(t).u32(xid)
}

func mCommit(lsn, end uint64, t time.Time) []byte {
	return msg{'C'}.u8(0).u64(lsn).u64(end).ts(t)
}

type rcol struct {
	name string
	key  bool
	oid  uint32
}

func mRelation(oid uint32, schema, table string, cols ...rcol) []byte {
	m := msg{'R'}.u32(oid).str(schema).str(table).u8('f').u16(uint16(len(cols)))
	for _, c := range cols {
		var f byte
		if c.key {
			f = 1
		}
		if c.oid == 0 {
			c.oid = 25
		}
		m = m.u8(f).str(c.name).u32(c.oid).u32(0xffffffff)
	}
	return m
}

// tuple columns: "n:" null, "u:" unchanged toast, "b:..." binary, else text.
func tuple(m msg, cols ...string) msg {
	m = m.u16(uint16(len(cols)))
	for _, c := range cols {
		switch {
		case c == "n:":
			m = m.u8('n')
		case c == "u:":
			m = m.u8('u')
		case strings.HasPrefix(c, "b:"):
			m = m.u8('b').u32(uint32(len(c) - 2))
			m = append(m, c[2:]...)
		default:
			m = m.u8('t').u32(uint32(len(c)))
			m = append(m, c...)
		}
	}
	return m
}

func mInsert(oid uint32, cols ...string) []byte { return tuple(msg{'I'}.u32(oid).u8('N'), cols...) }

// mUpdate: kind is 0 (no old tuple), 'K' or 'O'.
func mUpdate(oid uint32, kind byte, old, new []string) []byte {
	m := msg{'U'}.u32(oid)
	if kind != 0 {
		m = tuple(m.u8(kind), old...)
	}
	return tuple(m.u8('N'), new...)
}

func mDelete(oid uint32, kind byte, old ...string) []byte {
	return tuple(msg{'D'}.u32(oid).u8(kind), old...)
}

func mTruncate(oids ...uint32) []byte {
	m := msg{'T'}.u32(uint32(len(oids))).u8(0)
	for _, o := range oids {
		m = m.u32(o)
	}
	return m
}

func mType(oid uint32, schema, name string) []byte { return msg{'Y'}.u32(oid).str(schema).str(name) }
func mOrigin(lsn uint64, name string) []byte       { return msg{'O'}.u64(lsn).str(name) }

// textDescribe describes every column as text; PK = replica identity key.
func textDescribe(_ context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
	rel := &changelog.Rel{Schema: m.Namespace, Table: m.RelationName}
	for i, c := range m.Columns {
		rel.Columns = append(rel.Columns, protocol.Column{Name: c.Name, Type: coltype.Type{Base: coltype.TextType, Name: "text"}})
		if c.Flags&1 != 0 {
			rel.PK = append(rel.PK, i)
		}
	}
	return rel, nil
}

// rawConv keeps the text as a Text value (conversion is coltype's job).
func rawConv(_ coltype.Type, b []byte) (coltype.Value, error) {
	return coltype.Value{Kind: coltype.Text, B: bytes.Clone(b)}, nil
}

func newTestDecoder(after uint64, log *slog.Logger) *decoder {
	d := newDecoder(textDescribe, after, log)
	d.conv = rawConv
	return d
}

// feed decodes messages and returns the committed Txns.
func feed(t testing.TB, d *decoder, msgs ...[]byte) ([]*changelog.Txn, error) {
	t.Helper()
	var out []*changelog.Txn
	for _, m := range msgs {
		buf := bytes.Clone(m)
		txn, _, err := d.decode(context.Background(), buf)
		// The decoder must not keep references to the message buffer.
		for i := range buf {
			buf[i] = 0xEE
		}
		if err != nil {
			return out, err
		}
		if txn != nil {
			out = append(out, txn)
		}
	}
	return out, nil
}

// rowText renders a row as "a|b|NULL".
func rowText(row []coltype.Value) string {
	if row == nil {
		return "<nil>"
	}
	var s []string
	for _, v := range row {
		switch v.Kind {
		case coltype.Null:
			s = append(s, "NULL")
		case coltype.Text, coltype.Blob:
			s = append(s, string(v.B))
		case coltype.Integer:
			s = append(s, fmt.Sprint(v.I))
		case coltype.Real:
			s = append(s, fmt.Sprint(v.F))
		}
	}
	return strings.Join(s, "|")
}

func changeText(c changelog.Change) string {
	return fmt.Sprintf("%v %s.%s old=%s new=%s", c.Op, c.Rel.Schema, c.Rel.Table, rowText(c.Old), rowText(c.New))
}

var (
	t0   = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	relT = mRelation(16384, "public", "t", rcol{"id", true, 20}, rcol{"body", false, 25}, rcol{"n", false, 23})
)

func TestDecodeTransaction(t *testing.T) {
	d := newTestDecoder(0, nil)
	txns, err := feed(t, d,
		mBegin(0x100, t0, 7),
		mOrigin(0x50, "elsewhere"),
		relT,
		mType(99999, "public", "mood"),
		mInsert(16384, "1", "hello", "n:"),
		mUpdate(16384, 'O', []string{"1", "hello", "n:"}, []string{"1", "world", "5"}),
		mDelete(16384, 'O', "1", "world", "5"),
		mCommit(0x100, 0x128, t0),
		mBegin(0x200, t0.Add(time.Second), 8),
		mInsert(16384, "2", "", "3"), // empty string is not NULL
		mCommit(0x200, 0x228, t0.Add(time.Second)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(txns) != 2 {
		t.Fatalf("got %d txns, want 2", len(txns))
	}
	x := txns[0]
	if x.LSN != 0x100 || x.EndLSN != 0x128 || x.Xid != 7 || x.CommitTime != t0.UnixMicro() {
		t.Errorf("txn header = %+v", *x)
	}
	want := []string{
		"insert public.t old=<nil> new=1|hello|NULL",
		"update public.t old=1|hello|NULL new=1|world|5",
		"delete public.t old=1|world|5 new=<nil>",
	}
	if len(x.Changes) != len(want) {
		t.Fatalf("got %d changes, want %d", len(x.Changes), len(want))
	}
	for i, c := range x.Changes {
		if got := changeText(c); got != want[i] {
			t.Errorf("change %d = %s, want %s", i, got, want[i])
		}
	}
	if x.Changes[0].Rel != x.Changes[2].Rel {
		t.Error("changes of one relation should share the Rel")
	}
	if got := changeText(txns[1].Changes[0]); got != "insert public.t old=<nil> new=2||3" {
		t.Errorf("second txn: %s", got)
	}
	if v := txns[1].Changes[0].New[1]; v.Kind != coltype.Text || len(v.B) != 0 {
		t.Errorf("empty string decoded as %+v", v)
	}
}

func TestDecodeToast(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8192)
	d := newTestDecoder(0, nil)
	txns, err := feed(t, d,
		mBegin(0x100, t0, 7), relT,
		mUpdate(16384, 'O', []string{"1", big, "1"}, []string{"1", "u:", "2"}),
		mCommit(0x100, 0x128, t0),
	)
	if err != nil {
		t.Fatal(err)
	}
	c := txns[0].Changes[0]
	if string(c.New[1].B) != big || string(c.Old[1].B) != big || string(c.New[2].B) != "2" {
		t.Errorf("toast: new=%.20q old=%.20q", c.New[1].B, c.Old[1].B)
	}

	// Key-only old row: the non-key columns are NULL; a key column may be
	// taken from it.
	d = newTestDecoder(0, nil)
	txns, err = feed(t, d,
		mBegin(0x100, t0, 7), relT,
		mUpdate(16384, 'K', []string{"1", "n:", "n:"}, []string{"u:", "x", "2"}),
		mCommit(0x100, 0x128, t0),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := changeText(txns[0].Changes[0]); got != "update public.t old=1|NULL|NULL new=1|x|2" {
		t.Errorf("key-only old: %s", got)
	}

	for name, m := range map[string][]byte{
		"no old row":     mUpdate(16384, 0, nil, []string{"1", "u:", "2"}),
		"key-only old":   mUpdate(16384, 'K', []string{"1", "n:", "n:"}, []string{"1", "u:", "2"}),
		"toast in old":   mUpdate(16384, 'O', []string{"1", "u:", "2"}, []string{"1", "x", "2"}),
		"delete toasted": mDelete(16384, 'O', "1", "u:", "2"),
	} {
		d := newTestDecoder(0, nil)
		_, err := feed(t, d, mBegin(0x100, t0, 7), relT, m)
		if !errors.Is(err, ErrUnchangedTOAST) || !strings.Contains(err.Error(), "public.t column body") {
			t.Errorf("%s: err = %v, want ErrUnchangedTOAST naming public.t column body", name, err)
		}
	}
}

func TestDecodeSkip(t *testing.T) {
	d := newTestDecoder(0x200, nil)
	txns, err := feed(t, d,
		mBegin(0x100, t0, 7), relT, mInsert(16384, "1", "a", "1"), mCommit(0x100, 0x128, t0),
		mBegin(0x200, t0, 8), mInsert(16384, "2", "b", "2"), mTruncate(16384), mCommit(0x200, 0x228, t0),
		// The Relation message came in a skipped transaction; it still counts.
		mBegin(0x300, t0, 9), mInsert(16384, "3", "c", "3"), mCommit(0x300, 0x328, t0),
		// Postgres never goes backwards within a session, but if it did:
		mBegin(0x280, t0, 10), mInsert(16384, "4", "d", "4"), mCommit(0x280, 0x2a8, t0),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(txns) != 1 || txns[0].Xid != 9 || rowText(txns[0].Changes[0].New) != "3|c|3" {
		t.Fatalf("got %d txns: %+v", len(txns), txns)
	}
}

func TestDecodeTruncate(t *testing.T) {
	var logBuf bytes.Buffer
	d := newTestDecoder(0, slog.New(slog.NewTextHandler(&logBuf, nil)))
	txns, err := feed(t, d,
		mBegin(0x100, t0, 7), relT, mTruncate(16384, 777), mCommit(0x100, 0x128, t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(txns) != 1 || len(txns[0].Changes) != 1 || txns[0].Changes[0].Op != changelog.OpTruncate ||
		txns[0].Changes[0].Rel.Table != "t" {
		t.Fatalf("truncate: %+v", txns)
	}
	if log := logBuf.String(); !strings.Contains(log, "777") {
		t.Errorf("log does not name the undescribed relation: %s", log)
	}
}

func TestDecodeErrors(t *testing.T) {
	begin := mBegin(0x100, t0, 7)
	truncated := mInsert(16384, "1", "hello", "2")
	truncated = truncated[:len(truncated)-3]
	for _, tc := range []struct {
		name string
		msgs [][]byte
		want string
	}{
		{"empty", [][]byte{{}}, "empty pgoutput message"},
		{"unknown type", [][]byte{{'Z', 1, 2, 3}}, "pgoutput message 'Z'"},
		{"truncated tuple", [][]byte{begin, relT, truncated}, "malformed pgoutput message 'I'"},
		{"truncated relation", [][]byte{begin, relT[:12]}, "pgoutput message 'R'"},
		{"truncated relation column", [][]byte{begin, relT[:len(relT)-3]}, "malformed pgoutput message 'R'"},
		{"short begin", [][]byte{begin[:10]}, "pgoutput message 'B'"},
		{"insert outside txn", [][]byte{relT, mInsert(16384, "1", "a", "1")}, "INSERT outside a transaction"},
		{"unknown relation", [][]byte{begin, mInsert(1, "1", "a", "1")}, "relation OID 1 without a preceding Relation"},
		{"begin in txn", [][]byte{begin, begin}, "BEGIN (xid 7) inside transaction 7"},
		{"commit outside", [][]byte{mCommit(0x100, 0x128, t0)}, "COMMIT 0/100 outside a transaction"},
		{"commit mismatch", [][]byte{begin, mCommit(0x101, 0x128, t0)}, "does not match"},
		{"binary value", [][]byte{begin, relT, mInsert(16384, "1", "b:xx", "1")}, "column body: unexpected binary-format value"},
		{"column count", [][]byte{begin, relT, mInsert(16384, "1", "a")}, "INSERT into public.t: tuple has 2 columns, relation has 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := feed(t, newTestDecoder(0, nil), tc.msgs...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}

	// Conversion errors name the column.
	d := newTestDecoder(0, nil)
	d.conv = func(coltype.Type, []byte) (coltype.Value, error) { return coltype.Value{}, errors.New("bad int") }
	_, err := feed(t, d, begin, relT, mInsert(16384, "x", "a", "1"))
	if err == nil || !strings.Contains(err.Error(), "INSERT into public.t: column id (text): bad int") {
		t.Errorf("conversion error: %v", err)
	}
}

func TestDecodeDescribe(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		describe func(context.Context, *pglogrepl.RelationMessage) (*changelog.Rel, error)
		want     string
	}{
		{"error", func(context.Context, *pglogrepl.RelationMessage) (*changelog.Rel, error) { return nil, boom }, "describe public.t: boom"},
		{"nil", func(context.Context, *pglogrepl.RelationMessage) (*changelog.Rel, error) { return nil, nil }, "no relation"},
		{"name", func(ctx context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
			r, _ := textDescribe(ctx, m)
			r.Table = "u"
			return r, nil
		}, "returned public.u"},
		{"count", func(ctx context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
			r, _ := textDescribe(ctx, m)
			r.Columns = r.Columns[:2]
			return r, nil
		}, "2 columns, but pgoutput sends 3"},
		{"order", func(ctx context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
			r, _ := textDescribe(ctx, m)
			r.Columns[1], r.Columns[2] = r.Columns[2], r.Columns[1]
			return r, nil
		}, `column 1 is "n", but pgoutput sends "body"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDecoder(0, nil)
			d.describe = tc.describe
			_, err := feed(t, d, mBegin(0x100, t0, 7), relT)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if tc.name == "error" && !errors.Is(err, boom) {
				t.Error("describe error not wrapped")
			}
		})
	}

	// A new Relation message (schema change) replaces the Rel.
	d := newTestDecoder(0, nil)
	relT2 := mRelation(16384, "public", "t", rcol{"id", true, 20}, rcol{"body", false, 25}, rcol{"n", false, 23}, rcol{"extra", false, 25})
	txns, err := feed(t, d,
		mBegin(0x100, t0, 7), relT, mInsert(16384, "1", "a", "1"), relT2, mInsert(16384, "2", "b", "2", "e"), mCommit(0x100, 0x128, t0))
	if err != nil {
		t.Fatal(err)
	}
	c := txns[0].Changes
	if c[0].Rel == c[1].Rel || len(c[1].Rel.Columns) != 4 || rowText(c[1].New) != "2|b|2|e" {
		t.Errorf("schema change: %s / %s", changeText(c[0]), changeText(c[1]))
	}
}

// BenchmarkDecode measures decoding of 200-byte rows (5 columns), 100 rows
// per transaction. It uses coltype.FromPGText when it works, else rawConv.
func BenchmarkDecode(b *testing.B) {
	rel := mRelation(1, "public", "bench",
		rcol{"id", true, 20}, rcol{"name", false, 25}, rcol{"qty", false, 23}, rcol{"at", false, 1184}, rcol{"ok", false, 16})
	types := []coltype.Type{
		{Base: coltype.Int8, Name: "bigint"}, {Base: coltype.TextType, Name: "text"}, {Base: coltype.Int4, Name: "integer"},
		{Base: coltype.Timestamptz, Name: "timestamp with time zone"}, {Base: coltype.Bool, Name: "boolean"},
	}
	describe := func(_ context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
		r := &changelog.Rel{Schema: m.Namespace, Table: m.RelationName, PK: []int{0}}
		for i, c := range m.Columns {
			r.Columns = append(r.Columns, protocol.Column{Name: c.Name, Type: types[i]})
		}
		return r, nil
	}
	name := strings.Repeat("x", 150)
	const perTxn = 100
	var msgs [][]byte
	rowBytes := 0
	for i := range perTxn {
		m := mInsert(1, fmt.Sprint(1000000+i), name, "12345", "2025-03-04 05:06:07.123456+00", "t")
		rowBytes = len(m)
		msgs = append(msgs, m)
	}
	conv := coltype.FromPGText
	if _, err := conv(types[0], []byte("1")); err != nil {
		b.Logf("coltype.FromPGText not usable (%v): measuring with a raw text converter", err)
		conv = rawConv
	}
	d := newDecoder(describe, 0, nil)
	d.conv = conv
	ctx := context.Background()
	if _, _, err := d.decode(ctx, rel); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(rowBytes))
	b.ReportAllocs()
	lsn := uint64(0)
	rows := 0
	for b.Loop() {
		if rows%perTxn == 0 {
			lsn += 0x1000
			if _, _, err := d.decode(ctx, mBegin(lsn, t0, 1)); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := d.decode(ctx, msgs[rows%perTxn]); err != nil {
			b.Fatal(err)
		}
		rows++
		if rows%perTxn == 0 {
			if _, _, err := d.decode(ctx, mCommit(lsn, lsn+0x28, t0)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
