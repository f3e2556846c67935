package protocol

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/latticesync/lattice/coltype"
)

// equal reports whether a and b are deeply equal, treating nil and empty
// slices alike and comparing floats by their bits (so NaN equals the same
// NaN, and 0 differs from -0).
func equal(a, b any) bool { return deepEqual(reflect.ValueOf(a), reflect.ValueOf(b)) }

func deepEqual(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return deepEqual(a.Elem(), b.Elem())
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !deepEqual(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !deepEqual(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.String:
		return a.String() == b.String()
	}
	panic("equal: unsupported kind " + a.Kind().String())
}

// show formats a message for failure output, following pointers.
func show(m any) string {
	v := reflect.ValueOf(m)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		m = v.Elem().Interface()
	}
	s := fmt.Sprintf("%+v", m)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}

func str(s string) *string { return &s }

func vnull() coltype.Value                         { return coltype.Value{} }
func vint(i int64) coltype.Value                   { return coltype.Value{Kind: coltype.Integer, I: i} }
func vreal(f float64) coltype.Value                { return coltype.Value{Kind: coltype.Real, F: f} }
func vtext(s string) coltype.Value                 { return coltype.Value{Kind: coltype.Text, B: []byte(s)} }
func vblob(b ...byte) coltype.Value                { return coltype.Value{Kind: coltype.Blob, B: b} }
func vbytes(b []byte) coltype.Value                { return coltype.Value{Kind: coltype.Blob, B: b} }
func typ(b coltype.Base, name string) coltype.Type { return coltype.Type{Base: b, Name: name} }

// golden holds one representative value of every message; testdata/golden
// holds their encodings (see golden_test.go). Changing a value here changes
// the golden files: regenerate them with -update.
var golden = []struct {
	name string
	msg  interface{ Encode([]byte) []byte }
}{
	{"hello", &Hello{
		Version:  1, // the first release's Hello; hello_v2 below
		Token:    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln",
		ClientID: "c-7f3a",
		LogID:    "log-01",
		LSN:      0x16B3748,
	}},
	{"hello_v2", &Hello{Version: 2, ClientID: "c-7f3a", LogID: "log-01", LSN: 0x16B3748}},
	{"subscribe", &Subscribe{
		ReqID: 7,
		Shapes: []Shape{
			{ID: "s1", Table: "items", Where: "owner = $1 AND deleted_at IS NOT DISTINCT FROM $2", Params: []*string{str("u1"), nil}},
			{ID: "s2", Table: "public.tags"},
		},
	}},
	{"subscribe_include", &Subscribe{
		ReqID: 9,
		Shapes: []Shape{
			{ID: "p1", Table: "project", Where: "id = $1", Params: []*string{str("p1")}, Include: []Include{
				{Table: "issue", Where: "status <> $1", Params: []*string{str("done")}, Include: []Include{
					{Table: "comment"},
					{Table: "users", Via: "assignee_id"},
				}},
			}},
			{ID: "t", Table: "tags"},
		},
	}},
	{"unsubscribe", &Unsubscribe{ReqID: 8, ShapeIDs: []string{"s1", "s2"}}},
	{"welcome", &Welcome{LogID: "log-01", Resync: true, HeadLSN: 0x16B3800}},
	{"relation", &Relation{
		RelID:  1,
		Schema: "public",
		Table:  "items",
		Columns: []Column{
			{Name: "id", Type: typ(coltype.UUID, "uuid"), NotNull: true},
			{Name: "n", Type: typ(coltype.Int8, "bigint"), NotNull: true},
			{Name: "title", Type: typ(coltype.TextType, "character varying(80)"), Default: "'untitled'"},
			{Name: "price", Type: typ(coltype.Numeric, "numeric(10,2)")},
			{Name: "tags", Type: coltype.Type{Base: coltype.TextType, Array: true, Name: "text[]"}},
			{Name: "mood", Type: typ(coltype.Enum, "public.mood")},
		},
		PK: []int{0, 1},
	}},
	// Version 2: the same Relation with its column ids (attnums).
	{"relation_v2", &Relation{
		RelID:  1,
		Schema: "public",
		Table:  "items",
		Columns: []Column{
			{Name: "id", Type: typ(coltype.UUID, "uuid"), NotNull: true},
			{Name: "n", Type: typ(coltype.Int8, "bigint"), NotNull: true},
			{Name: "title", Type: typ(coltype.TextType, "character varying(80)"), Default: "'untitled'"},
		},
		PK:        []int{0, 1},
		ColumnIDs: []uint32{1, 2, 4},
	}},
	// Version 3: with the columns merged per key path (JSONMerge trailer).
	{"relation_v3", &Relation{
		RelID:  1,
		Schema: "public",
		Table:  "docs",
		Columns: []Column{
			{Name: "id", Type: typ(coltype.Int8, "bigint"), NotNull: true},
			{Name: "body", Type: typ(coltype.JSONB, "jsonb"), JSONMerge: true},
			{Name: "meta", Type: typ(coltype.JSON, "json")},
			{Name: "extra", Type: typ(coltype.JSONB, "jsonb"), JSONMerge: true},
		},
		PK:        []int{0},
		ColumnIDs: []uint32{1, 2, 3, 5},
	}},
	{"hello_v3", &Hello{Version: 3, ClientID: "c-7f3a", LogID: "log-01", LSN: 0x16B3748}},
	{"txn", &Txn{
		LSN:        0x16B3800,
		Flags:      FlagFirst | FlagLast,
		CommitTime: 1_767_225_600_000_000,
		Changes: []Change{
			{Op: OpInsert, RelID: 1, Values: []coltype.Value{vtext("0b6f"), vint(-3), vtext("lamp"), vreal(12.5), vblob(0, 0xff), vnull()}},
			{Op: OpUpdate, RelID: 1, Values: []coltype.Value{vtext("0b6f"), vint(300), vtext("lamp"), vreal(math.Inf(-1)), vnull(), vtext("happy")}},
			{Op: OpDelete, RelID: 1, Values: []coltype.Value{vtext("0c11"), vint(1)}},
			{Op: OpMoveOut, RelID: 2, Values: []coltype.Value{vint(42)}},
		},
	}},
	{"txn_snapshot_reset", &Txn{
		LSN:     0x16B3800,
		Flags:   FlagFirst | FlagSnapshot | FlagReset,
		Reset:   []uint32{1, 2},
		Changes: []Change{{Op: OpInsert, RelID: 2, Values: []coltype.Value{vint(42), vtext("red")}}},
	}},
	{"subscribed", &Subscribed{ReqID: 7, ShapeIDs: []string{"s1", "s2"}}},
	{"error", &Error{ReqID: 7, Code: ErrBadShape, Message: `column "owner" does not exist`, Fatal: false}},
	{"write", &Write{TxnID: 12, HLC: 0x18C2_7A4B_9F00_0003, Changes: []WriteChange{
		{Table: "public.items", Op: OpInsert, Key: []coltype.Value{vtext("0b6f"), vint(1)}, Columns: []uint32{0, 1, 2}, Values: []coltype.Value{vtext("0b6f"), vint(1), vtext("lamp")}},
		{Table: "public.items", Op: OpUpdate, Version: 7, Key: []coltype.Value{vtext("0c11"), vint(2)}, Columns: []uint32{3}, Values: []coltype.Value{vreal(9.5)}},
		{Table: "public.items", Op: OpDelete, Version: 3, Key: []coltype.Value{vtext("0d22"), vint(3)}},
	}}},
	{"txn_client", &Txn{
		LSN: 0x16B3900, Flags: FlagFirst | FlagLast, CommitTime: 1_767_225_600_000_000,
		Origin: "c-7f3a", ClientTxnID: 12,
		Changes: []Change{{Op: OpUpdate, RelID: 1, Version: 8, Values: []coltype.Value{vtext("0c11"), vint(2), vtext("lamp"), vreal(9.5), vnull(), vnull()}}},
	}},
	{"ack", &Ack{TxnID: 12}},
	{"reject", &Reject{TxnID: 13, Code: "check_violation", Message: `new row for relation "items" violates check constraint "price_positive"`}},
}

// upCases and downCases are the round-trip table: edge cases on top of the
// golden values.
var upCases = []Up{
	&Hello{},
	&Hello{Version: math.MaxUint16, Token: strings.Repeat("t", 300), LSN: math.MaxUint64},
	&Hello{Version: 1, ClientID: "\xff\xfe not utf-8", LogID: "l", LSN: 1 << 63},
	&Subscribe{},
	&Subscribe{ReqID: math.MaxUint32, Resume: true, Shapes: []Shape{}},
	&Subscribe{Shapes: []Shape{{}}},
	&Subscribe{ReqID: 1, Shapes: []Shape{{ID: "a", Table: "t", Params: []*string{nil, nil, str(""), str("x")}}}},
	&Subscribe{ReqID: 2, Shapes: []Shape{{ID: "a", Table: "t"}, {ID: "b", Table: "u", Include: []Include{{Table: "v", Params: []*string{nil}, Include: []Include{{Table: "w", Via: "x"}}}}}}},
	&Unsubscribe{},
	&Unsubscribe{ReqID: 1, ShapeIDs: []string{""}},
	&Unsubscribe{ReqID: 1, ShapeIDs: []string{}},
	&Write{},
	&Write{TxnID: math.MaxUint64, HLC: math.MaxUint64, Changes: []WriteChange{{Op: OpDelete}}},
	&Write{Changes: []WriteChange{{Table: "t", Op: OpInsert, Key: specialValues(), Columns: []uint32{0, math.MaxUint32}, Values: []coltype.Value{vnull(), vblob(1)}}}},
}

var downCases = []Down{
	&Welcome{},
	&Welcome{LogID: "x", HeadLSN: math.MaxUint64},
	&Relation{},
	&Relation{RelID: math.MaxUint32, Columns: []Column{{Type: coltype.Type{Base: coltype.Unsupported}}}, PK: []int{}},
	&Relation{RelID: 3, Schema: "s", Table: "t", Columns: allBases(), PK: []int{18, 0, 5}},
	&Txn{},
	&Txn{LSN: math.MaxUint64, Flags: knownFlags, CommitTime: math.MinInt64, Reset: []uint32{0, math.MaxUint32}},
	&Txn{CommitTime: math.MaxInt64, Changes: []Change{{Op: OpInsert}}},
	&Txn{CommitTime: -1, Changes: []Change{{Op: OpDelete, RelID: 9, Values: []coltype.Value{}}}},
	&Txn{Changes: []Change{{Op: OpInsert, RelID: 1, Values: specialValues()}}},
	&Subscribed{},
	&Subscribed{ReqID: 1, ShapeIDs: []string{"a", "", "ccc"}},
	&Error{},
	&Error{Code: ErrResync, Message: "position fell out of the retained window", Fatal: true},
	&Ack{}, &Ack{TxnID: math.MaxUint64},
	&Reject{}, &Reject{TxnID: 1, Code: "x", Message: "y"},
	&Txn{Origin: "o", ClientTxnID: math.MaxUint64, Changes: []Change{{Op: OpUpdate, RelID: 1, Version: math.MaxUint64}}},
}

func allBases() []Column {
	var cs []Column
	for b := coltype.Base(0); b <= maxBase; b++ {
		cs = append(cs, Column{Name: fmt.Sprint("c", b), Type: coltype.Type{Base: b, Array: b%2 == 1, Name: fmt.Sprint("t", b)}, NotNull: b%3 == 0})
	}
	return cs
}

func specialValues() []coltype.Value {
	return []coltype.Value{
		vnull(),
		vint(0), vint(1), vint(-1), vint(63), vint(-64), vint(64), vint(-65),
		vint(math.MaxInt64), vint(math.MinInt64),
		vreal(0), vreal(math.Copysign(0, -1)), vreal(math.NaN()),
		vreal(math.Float64frombits(0x7ff8_0000_dead_beef)), // NaN with payload
		vreal(math.Float64frombits(0xfff0_0000_0000_0001)), // signalling NaN
		vreal(math.Inf(1)), vreal(math.Inf(-1)),
		vreal(math.SmallestNonzeroFloat64), vreal(math.MaxFloat64),
		vtext(""), vtext("héllo"), vtext("\xff"), vtext(strings.Repeat("x", 200)),
		vblob(), vblob(0), vbytes(make([]byte, 128)),
	}
}
