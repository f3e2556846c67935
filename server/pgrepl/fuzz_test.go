package pgrepl

import (
	"bytes"
	"context"
	"encoding/binary"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
	"github.com/latticesync/lattice/server/changelog"
)

// FuzzDecode feeds a stream of pgoutput messages (the WAL data of the
// replication stream: bytes from Postgres) to the decoder, with relations
// typed by their column type OIDs and values converted by
// coltype.FromPGText. The input is a sequence of [uint16 length][message]
// (a short last chunk is the last message). It checks that the decoder
// never panics and that every transaction it returns
//   - has a commit LSN above the previous one and the start position,
//   - holds only changes the change log accepts: a known op, Old and New as
//     the op requires, one value per column of the Rel, the Rel being the
//     one described for the message's relation;
//   - does not alias the message buffers (a second decoder fed the same
//     messages, with each buffer overwritten after use, returns deeply
//     equal transactions).
//
//	go test ./server/pgrepl -run=^$ -fuzz=FuzzDecode -fuzztime=60s

func mMessage(transactional bool, prefix, content string) []byte {
	var f byte
	if transactional {
		f = 1
	}
	m := msg{'M'}.u8(f).u64(0x90).str(prefix).u32(uint32(len(content)))
	return append(m, content...)
}

// joinMsgs joins messages in the fuzz input format.
func joinMsgs(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

func splitStream(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			out = append(out, b)
			break
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// oidDescribe types the columns by their type OID (text for unknown
// OIDs); the key is the replica identity.
func oidDescribe(_ context.Context, m *pglogrepl.RelationMessage) (*changelog.Rel, error) {
	rel := &changelog.Rel{Schema: m.Namespace, Table: m.RelationName}
	for i, c := range m.Columns {
		t, ok := coltype.BuiltinByOID(c.DataType)
		if !ok {
			t = coltype.Type{Base: coltype.TextType, Name: "text"}
		}
		rel.Columns = append(rel.Columns, protocol.Column{Name: c.Name, Type: t})
		if c.Flags&1 != 0 {
			rel.PK = append(rel.PK, i)
		}
	}
	return rel, nil
}

func FuzzDecode(f *testing.F) {
	relTyped := mRelation(16385, "app", "u", rcol{"id", true, 23}, rcol{"f", false, 700}, rcol{"tags", false, 1009},
		rcol{"b", false, 17}, rcol{"ok", false, 16}, rcol{"at", false, 1184}, rcol{"n", false, 1700})
	begin := mBegin(0x100, t0, 7)
	commit := mCommit(0x100, 0x128, t0)
	seeds := [][][]byte{
		{begin, mOrigin(0x50, "elsewhere"), relT, mType(99999, "public", "mood"),
			mInsert(16384, "1", "hello", "n:"),
			mUpdate(16384, 'O', []string{"1", "hello", "n:"}, []string{"1", "world", "5"}),
			mUpdate(16384, 'K', []string{"1", "n:", "n:"}, []string{"1", "u:", "6"}),
			mUpdate(16384, 0, nil, []string{"1", "u:", "6"}),
			mDelete(16384, 'O', "1", "world", "5"),
			mDelete(16384, 'K', "1", "n:", "n:"),
			mTruncate(16384, 77),
			mMessage(true, OriginMessagePrefix, "12:c-1"),
			mMessage(false, OriginMessagePrefix, "13:c-2"),
			mMessage(true, OriginMessagePrefix, "x"),
			commit,
			mBegin(0x200, t0, 8), mInsert(16384, "2", "", "3"), mCommit(0x200, 0x228, t0)},
		{relTyped, begin,
			mInsert(16385, "1", "1.1", `{a,"b c",NULL}`, `\x00ff`, "t", "2024-01-02 03:04:05.5+00", "1.50"),
			mInsert(16385, "2", "NaN", "{}", `\x`, "f", "infinity", "NaN"),
			mInsert(16385, "x", "1", "{}", `\x`, "f", "infinity", "1"),
			commit},
		{mBegin(0, t0, 1), relT, mInsert(16384, "1", "a", "1"), mCommit(0, 8, t0)}, // skipped
		{begin, relT, mInsert(16384, "1", "b:xx", "1")},
		{begin, relT, mCommit(0x101, 0x128, t0)},
		{begin, begin},
		{relT[:12]},
	}
	for _, s := range seeds {
		f.Add(joinMsgs(s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := splitStream(data)
		run := func(scribble bool) []*changelog.Txn {
			d := newDecoder(oidDescribe, 0, nil)
			var out []*changelog.Txn
			for _, m := range msgs {
				buf := bytes.Clone(m)
				txn, size, err := d.decode(context.Background(), buf)
				if scribble {
					for i := range buf {
						buf[i] ^= 0xff
					}
				}
				if err != nil {
					break
				}
				if txn != nil {
					if size <= 0 {
						t.Fatalf("txn %X of size %d", txn.LSN, size)
					}
					out = append(out, txn)
				}
			}
			return out
		}
		txns := run(true)
		var prev uint64
		for _, x := range txns {
			if x.LSN <= prev {
				t.Fatalf("txn LSN %X after %X", x.LSN, prev)
			}
			prev = x.LSN
			for i, c := range x.Changes {
				checkChange(t, x, i, &c)
			}
		}
		if again := run(false); !reflect.DeepEqual(again, txns) {
			t.Fatalf("the decoded transactions alias the message buffers")
		}
	})
}

func checkChange(t *testing.T, x *changelog.Txn, i int, c *changelog.Change) {
	t.Helper()
	bad := func(why string) { t.Fatalf("txn %X change %d (op %d): %s", x.LSN, i, c.Op, why) }
	if c.Rel == nil {
		bad("no Rel")
	}
	n := len(c.Rel.Columns)
	row := func(r []coltype.Value, what string) {
		if len(r) != n {
			bad(what + " row does not have one value per column")
		}
		for _, v := range r {
			if v.Kind > coltype.Blob {
				bad("value of unknown kind")
			}
		}
	}
	switch c.Op {
	case protocol.OpInsert:
		if c.Old != nil || c.New == nil {
			bad("insert rows")
		}
		row(c.New, "new")
	case protocol.OpUpdate:
		if c.New == nil {
			bad("update without a new row")
		}
		row(c.New, "new")
		if c.Old != nil {
			row(c.Old, "old")
		}
	case protocol.OpDelete:
		if c.Old == nil || c.New != nil {
			bad("delete rows")
		}
		row(c.Old, "old")
	case changelog.OpTruncate:
		if c.Old != nil || c.New != nil {
			bad("truncate with rows")
		}
	default:
		bad("unknown op")
	}
	for _, k := range c.Rel.PK {
		if k < 0 || k >= n {
			bad("key index out of range")
		}
	}
}

// TestDecodeHugeLengths: a value length or relation count beyond the
// message is refused before anything is allocated for it (pglogrepl alone
// allocated the declared 4 GiB value, or 16 GiB of relation OIDs, found by
// FuzzDecode).
func TestDecodeHugeLengths(t *testing.T) {
	begin := mBegin(0x100, t0, 7)
	huge := func(m msg) []byte { return append(m.u16(1).u8('t').u32(0xFFFFFFF0), "abc"...) }
	for _, tc := range []struct {
		name string
		m    []byte
	}{
		{"insert", huge(msg{'I'}.u32(16384).u8('N'))},
		{"update old", huge(msg{'U'}.u32(16384).u8('O'))},
		{"update new", huge(tuple(msg{'U'}.u32(16384).u8('K'), "1", "n:", "n:").u8('N'))},
		{"delete", huge(msg{'D'}.u32(16384).u8('K'))},
		{"truncate", msg{'T'}.u32(0xFFFFFFFF).u8(0).u32(16384)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := feed(t, newDecoder(oidDescribe, 0, nil), begin, relT, tc.m)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), "malformed pgoutput message") {
				t.Errorf("err = %v", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("decoding allocated %d bytes", n)
			}
		})
	}
}
