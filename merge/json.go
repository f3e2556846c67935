package merge

// JSON documents merged per key path (README.md, "JSON columns merged per
// key"). A Doc is the mergeable state of one opted-in json/jsonb column of
// one row: a set of entries, one per key path ever written, each a
// last-writer-wins register (a leaf value, or "object") plus an
// observed-remove set of tags deciding whether the key exists. Merge of two
// Docs is the entry-wise join, so it is commutative, associative and
// idempotent like the row merge; an op on a document is a Doc delta
// (DocDelta) merged in.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// MaxJSONDepth is the deepest key path that merges per key: an object
// nested deeper than this (counting the column itself as depth 0) is one
// leaf value, merged as a whole.
const MaxJSONDepth = 32

// A path is a sequence of object keys, encoded as a string: each key as a
// uvarint length and its bytes. The root (the column) is "". The encoding
// of p is a byte prefix of the encoding of q iff p is q or an ancestor of
// q, so a subtree is a contiguous range of a Doc's sorted entries.

// EncodePath encodes a key path.
func EncodePath(keys ...string) string {
	var b []byte
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return string(b)
}

// DecodePath returns the keys of an encoded path (nil for the root, or if
// p is malformed).
func DecodePath(p string) []string {
	var keys []string
	for len(p) > 0 {
		n, w := binary.Uvarint([]byte(p[:min(len(p), binary.MaxVarintLen64)]))
		if w <= 0 || uint64(len(p)-w) < n {
			return nil
		}
		keys = append(keys, p[w:w+int(n)])
		p = p[w+int(n):]
	}
	return keys
}

// parentPath returns the parent of p and false for the root (or a
// malformed p).
func parentPath(p string) (string, bool) {
	var last int
	ok := false
	for i := 0; i < len(p); {
		n, w := binary.Uvarint([]byte(p[i:min(len(p), i+binary.MaxVarintLen64)]))
		if w <= 0 || uint64(len(p)-i-w) < n {
			return "", false
		}
		last, ok = i, true
		i += w + int(n)
	}
	return p[:last], ok
}

// under reports whether q is p or a descendant of p.
func under(q, p string) bool { return strings.HasPrefix(q, p) }

// DocEntry is the state of one key path.
type DocEntry struct {
	Path string // encoded key path (EncodePath)
	// Stamp and Value are the LWW register of the path: the Stamp of the
	// write that set it, and the value it set: canonical JSON of a scalar
	// or an array, or nil for "an object" (its keys are the entries
	// below it). A zero Stamp means never written (an object, if alive).
	Stamp Stamp
	Value []byte
	// Adds and Removes are the observed-remove set deciding whether the key
	// exists: every write at or below the path adds its Stamp; a delete
	// removes the tags its author saw. Sorted sets, as in Row.
	Adds    []Stamp
	Removes []Stamp
}

// Doc is the mergeable state of one JSON column: entries sorted by Path,
// each Path once. The zero Doc is "never written" (SQL NULL).
type Doc struct {
	Entries []DocEntry
}

func (e *DocEntry) live() []Stamp { return Row{Adds: e.Adds, Removes: e.Removes}.Live() }
func (e *DocEntry) exists() bool  { return Row{Adds: e.Adds, Removes: e.Removes}.Exists() }

// find returns the index of path p in d.Entries and whether it is there.
func (d Doc) find(p string) (int, bool) {
	return slices.BinarySearchFunc(d.Entries, p, func(e DocEntry, p string) int { return strings.Compare(e.Path, p) })
}

// sorted returns d's entries sorted and merged by path (input from outside
// may be unsorted or repeat a path).
func (d Doc) sorted() []DocEntry {
	if slices.IsSortedFunc(d.Entries, func(a, b DocEntry) int { return strings.Compare(a.Path, b.Path) }) {
		dup := false
		for i := 1; i < len(d.Entries); i++ {
			if d.Entries[i].Path == d.Entries[i-1].Path {
				dup = true
				break
			}
		}
		if !dup {
			return d.Entries
		}
	}
	es := slices.Clone(d.Entries)
	slices.SortStableFunc(es, func(a, b DocEntry) int { return strings.Compare(a.Path, b.Path) })
	out := es[:0]
	for _, e := range es {
		if n := len(out); n > 0 && out[n-1].Path == e.Path {
			out[n-1] = mergeEntry(out[n-1], e)
			continue
		}
		out = append(out, e)
	}
	return out
}

// compareRegister orders two registers: by stamp, then (equal stamps,
// which should carry equal values) object < leaf, then value bytes.
func compareRegister(sa Stamp, va []byte, sb Stamp, vb []byte) int {
	if c := sa.Compare(sb); c != 0 {
		return c
	}
	if (va == nil) != (vb == nil) {
		if va == nil {
			return -1
		}
		return 1
	}
	return bytes.Compare(va, vb)
}

func mergeEntry(a, b DocEntry) DocEntry {
	out := DocEntry{Path: a.Path, Stamp: a.Stamp, Value: a.Value}
	if compareRegister(b.Stamp, b.Value, a.Stamp, a.Value) > 0 {
		out.Stamp, out.Value = b.Stamp, b.Value
	}
	out.Adds, out.Removes = unions(asSet(a.Adds), asSet(b.Adds), asSet(a.Removes), asSet(b.Removes))
	return out
}

// MergeDocs returns the join of two document states: per path, the register
// with the greater stamp and the unions of the tag sets. It is
// commutative, associative and idempotent (up to DocEqual).
func MergeDocs(a, b Doc) Doc {
	ea, eb := a.sorted(), b.sorted()
	out := make([]DocEntry, 0, max(len(ea), len(eb)))
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		switch {
		case j == len(eb) || (i < len(ea) && ea[i].Path < eb[j].Path):
			out = append(out, mergeEntry(ea[i], DocEntry{Path: ea[i].Path}))
			i++
		case i == len(ea) || eb[j].Path < ea[i].Path:
			out = append(out, mergeEntry(eb[j], DocEntry{Path: eb[j].Path}))
			j++
		default:
			out = append(out, mergeEntry(ea[i], eb[j]))
			i++
			j++
		}
	}
	if len(out) == 0 {
		return Doc{}
	}
	return Doc{Entries: out}
}

// DocEqual reports whether a and b are the same state (an entry with
// nothing written and no tags equals no entry; nil and empty alike).
func DocEqual(a, b Doc) bool {
	ea, eb := nonEmpty(a.sorted()), nonEmpty(b.sorted())
	if len(ea) != len(eb) {
		return false
	}
	for i := range ea {
		x, y := ea[i], eb[i]
		if x.Path != y.Path || x.Stamp != y.Stamp || (x.Value == nil) != (y.Value == nil) || !bytes.Equal(x.Value, y.Value) ||
			!setEqual(asSet(x.Adds), asSet(y.Adds)) || !setEqual(asSet(x.Removes), asSet(y.Removes)) {
			return false
		}
	}
	return true
}

func nonEmpty(es []DocEntry) []DocEntry {
	var out []DocEntry
	for _, e := range es {
		if e.Stamp.IsZero() && e.Value == nil && len(e.Adds) == 0 && len(e.Removes) == 0 {
			continue
		}
		out = append(out, e)
	}
	return out
}

// ---- rendering ----

// Render returns the document the state holds, as canonical JSON
// (CanonicalJSON: keys sorted), or nil for SQL NULL (the root does not
// exist). A path is in the document iff it has a live tag, its parent is
// in the document and the parent's register holds "object".
func (d Doc) Render() []byte {
	es := d.sorted()
	if len(es) == 0 || es[0].Path != "" || !es[0].exists() {
		return nil
	}
	var b []byte
	b, _ = renderAt(b, es, 0)
	if c, err := CanonicalJSON(b); err == nil {
		return c
	}
	return b // a leaf that is not valid JSON (hand-built state)
}

// renderAt appends the value of es[i] (alive) and returns the index of the
// first entry after its subtree.
func renderAt(b []byte, es []DocEntry, i int) ([]byte, int) {
	e := es[i]
	j := i + 1
	if e.Value != nil {
		b = append(b, e.Value...)
		for j < len(es) && under(es[j].Path, e.Path) {
			j++
		}
		return b, j
	}
	b = append(b, '{')
	first := true
	for j < len(es) && under(es[j].Path, e.Path) {
		c := es[j]
		if parent, ok := parentPath(c.Path); !ok || parent != e.Path || !c.exists() {
			j++
			for j < len(es) && under(es[j].Path, c.Path) {
				j++
			}
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		keys := DecodePath(c.Path)
		b = appendJSONKey(b, keys[len(keys)-1])
		b = append(b, ':')
		b, j = renderAt(b, es, j)
	}
	return append(b, '}'), j
}

func appendJSONKey(b []byte, k string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(k)
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// ---- JSON values ----

// CanonicalJSON returns v re-encoded with object keys sorted, no
// insignificant space, numbers as written and no HTML escaping.
func CanonicalJSON(v []byte) ([]byte, error) {
	x, err := parseJSON(v)
	if err != nil {
		return nil, err
	}
	return marshalJSON(x), nil
}

func parseJSON(v []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("merge: trailing data after JSON value")
	}
	return x, nil
}

func marshalJSON(x any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(x)
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// JSONChange is one per-path change of a document: set the value at Path
// (replacing the subtree there), or delete the key at Path (and its
// subtree).
type JSONChange struct {
	Path   []string
	Delete bool
	Value  []byte // JSON, for a set
}

func (c JSONChange) String() string {
	p, _ := json.Marshal(c.Path)
	if c.Delete {
		return "-" + string(p)
	}
	return string(p) + "=" + string(c.Value)
}

// DiffJSON returns the per-path changes that turn document old into new
// (nil: SQL NULL): objects are compared key by key, recursively (down to
// MaxJSONDepth); any other difference (a scalar, an array, a type change)
// sets the value at that path whole. Equal documents give no change.
func DiffJSON(old, new []byte) ([]JSONChange, error) {
	var xo, xn any
	var err error
	if old != nil {
		if xo, err = parseJSON(old); err != nil {
			return nil, fmt.Errorf("merge: old document: %w", err)
		}
	}
	if new == nil {
		if old == nil {
			return nil, nil
		}
		return []JSONChange{{Path: []string{}, Delete: true}}, nil
	}
	if xn, err = parseJSON(new); err != nil {
		return nil, fmt.Errorf("merge: new document: %w", err)
	}
	if old == nil {
		return []JSONChange{{Path: []string{}, Value: marshalJSON(xn)}}, nil
	}
	var out []JSONChange
	diffAt(&out, nil, xo, xn)
	return out, nil
}

func diffAt(out *[]JSONChange, path []string, xo, xn any) {
	mo, oko := xo.(map[string]any)
	mn, okn := xn.(map[string]any)
	if oko && okn && len(path) < MaxJSONDepth {
		keys := make([]string, 0, len(mo)+len(mn))
		for k := range mo {
			keys = append(keys, k)
		}
		for k := range mn {
			if _, ok := mo[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(slices.Clip(path), k)
			vo, ino := mo[k]
			vn, inn := mn[k]
			switch {
			case !inn:
				*out = append(*out, JSONChange{Path: p, Delete: true})
			case !ino:
				*out = append(*out, JSONChange{Path: p, Value: marshalJSON(vn)})
			default:
				diffAt(out, p, vo, vn)
			}
		}
		return
	}
	if bytes.Equal(marshalJSON(xo), marshalJSON(xn)) {
		return
	}
	*out = append(*out, JSONChange{Path: slices.Clone(path), Value: marshalJSON(xn)})
}

// ApplyJSONChanges applies changes to a plain document (nil: SQL NULL), the
// way a replica without merge state does (the client's rebase): a set
// creates the objects on its path (replacing a non-object there), a delete
// of a missing key does nothing. The result is canonical JSON.
func ApplyJSONChanges(doc []byte, changes []JSONChange) ([]byte, error) {
	var x any
	exists := doc != nil
	if exists {
		var err error
		if x, err = parseJSON(doc); err != nil {
			return nil, err
		}
	}
	for _, c := range changes {
		if len(c.Path) == 0 {
			if c.Delete {
				exists, x = false, nil
				continue
			}
			v, err := parseJSON(c.Value)
			if err != nil {
				return nil, err
			}
			exists, x = true, v
			continue
		}
		if c.Delete {
			if !exists {
				continue
			}
			m, ok := x.(map[string]any)
			for _, k := range c.Path[:len(c.Path)-1] {
				if !ok {
					break
				}
				m, ok = m[k].(map[string]any)
			}
			if ok {
				delete(m, c.Path[len(c.Path)-1])
			}
			continue
		}
		v, err := parseJSON(c.Value)
		if err != nil {
			return nil, err
		}
		m, ok := x.(map[string]any)
		if !exists || !ok {
			m = map[string]any{}
			x, exists = m, true
		}
		for _, k := range c.Path[:len(c.Path)-1] {
			n, ok := m[k].(map[string]any)
			if !ok {
				n = map[string]any{}
				m[k] = n
			}
			m = n
		}
		m[c.Path[len(c.Path)-1]] = v
	}
	if !exists {
		return nil, nil
	}
	return marshalJSON(x), nil
}

// ---- deltas ----

// DocDelta returns the state that the changes, written by a transaction
// with stamp s against state d, contribute (merge it with MergeDocs):
//
//   - a set at path p removes the tags the author saw (seen) live at p and
//     every path below it (the subtree is replaced), writes the register of
//     p (leaf, or object with its keys set recursively below it, down to
//     MaxJSONDepth) with s and adds tag s there, and writes "object" with s
//     and adds tag s at every ancestor of p (the keys on the way exist and
//     are objects, as after jsonb_set with create_missing);
//   - a delete at p removes the tags the author saw live at p and every path
//     below it. A concurrent write the author had not seen keeps its key:
//     update wins over an unseen delete, as for rows.
//
// seen reports whether the author had observed a tag; nil means every tag
// live in d (the author wrote against d itself, as Postgres triggers do).
// A write never removes its own tag. Changes apply in order: a later one
// overrides what an earlier one wrote at or below its path.
func DocDelta(d Doc, s Stamp, changes []JSONChange, seen func(Stamp) bool) (Doc, error) {
	es := d.sorted()
	visibleObject := visibleObjects(es)
	acc := map[string]*DocEntry{}
	get := func(p string) *DocEntry {
		e := acc[p]
		if e == nil {
			e = &DocEntry{Path: p}
			acc[p] = e
		}
		return e
	}
	removeSeen := func(p string, subtree bool) {
		i, _ := Doc{Entries: es}.find(p)
		for ; i < len(es) && under(es[i].Path, p); i++ {
			if !subtree && es[i].Path != p {
				break
			}
			for _, t := range es[i].live() {
				if t != s && (seen == nil || seen(t)) {
					e := get(es[i].Path)
					e.Removes = append(e.Removes, t)
				}
			}
		}
	}
	write := func(p string, v []byte) { // a later change of the op overrides an earlier one
		e := get(p)
		e.Stamp, e.Value = s, v
		e.Adds = append(e.Adds, s)
	}
	var set func(path []string, x any)
	set = func(path []string, x any) {
		p := EncodePath(path...)
		if m, ok := x.(map[string]any); ok && len(path) < MaxJSONDepth {
			write(p, nil)
			for k, v := range m {
				set(append(slices.Clip(path), k), v)
			}
			return
		}
		write(p, marshalJSON(x))
	}
	for _, c := range changes {
		p := EncodePath(c.Path...)
		// Changes apply in order: this one replaces what earlier ones of
		// the same op wrote at or below p, and what the author saw there.
		for q := range acc {
			if under(q, p) {
				delete(acc, q)
			}
		}
		removeSeen(p, true)
		if c.Delete {
			continue
		}
		x, err := parseJSON(c.Value)
		if err != nil {
			return Doc{}, fmt.Errorf("merge: change %s: %w", c, err)
		}
		for i := range c.Path { // ancestors, the root first
			q := EncodePath(c.Path[:i]...)
			// An ancestor the author did not see as an object becomes an
			// empty object first: keys still held below it, invisible to
			// the author, are removed, not brought back.
			removeSeen(q, !visibleObject[q])
			write(q, nil)
		}
		set(c.Path, x)
	}
	out := make([]DocEntry, 0, len(acc))
	for _, e := range acc {
		e.Adds, e.Removes = unions(asSet(e.Adds), nil, asSet(e.Removes), nil)
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b DocEntry) int { return strings.Compare(a.Path, b.Path) })
	return Doc{Entries: out}, nil
}

// visibleObjects returns the paths that are objects in the rendered
// document.
func visibleObjects(es []DocEntry) map[string]bool {
	vis := map[string]bool{}
	for _, e := range es {
		if e.Value != nil || !e.exists() {
			continue
		}
		if parent, ok := parentPath(e.Path); e.Path == "" || (ok && vis[parent]) {
			vis[e.Path] = true
		}
	}
	return vis
}

// ---- compaction ----

// Compact bounds the state under the same conditions as Row.Compact: it
// drops every removed tag with HLC <= stable.HLC (from Removes, and from
// Adds), then every entry left with no tag whose register is not newer than
// stable (a deleted key, stable everywhere: its tombstone). The rendered
// document does not change.
func (d *Doc) Compact(stable Stamp) {
	var out []DocEntry
	for _, e := range d.sorted() {
		r := Row{Adds: e.Adds, Removes: e.Removes}
		r.Compact(stable)
		e.Adds, e.Removes = r.Adds, r.Removes
		if len(e.Adds) == 0 && len(e.Removes) == 0 && e.Stamp.HLC <= stable.HLC {
			continue
		}
		out = append(out, e)
	}
	d.Entries = out
}

// ---- encoding ----

const docMetaVersion = 1

// ErrDocMeta is wrapped by every error DecodeDoc returns.
var ErrDocMeta = errors.New("merge: malformed document metadata")

// AppendDoc encodes d (its whole state, values included) for storage and
// the wire:
//
//	version  byte = 1
//	origins  uvarint n, then n × (uvarint len, bytes)   -- order of first use
//	entries  uvarint n, then n × entry, in Path order:
//	  path     uvarint len, bytes
//	  register uvarint ref (0: zero stamp; k: origin k-1, then uvarint HLC)
//	           byte kind (0 object, 1 leaf), leaf: uvarint len, bytes
//	  adds     uvarint n, then n × (uvarint origin, uvarint HLC)
//	  removes  as adds
func AppendDoc(dst []byte, d Doc) []byte {
	es := d.sorted()
	var t interner
	for _, e := range es {
		if !e.Stamp.IsZero() {
			t = t.add(e.Stamp.Origin)
		}
		for _, s := range asSet(e.Adds) {
			t = t.add(s.Origin)
		}
		for _, s := range asSet(e.Removes) {
			t = t.add(s.Origin)
		}
	}
	dst = append(dst, docMetaVersion)
	dst = binary.AppendUvarint(dst, uint64(len(t.list)))
	for _, o := range t.list {
		dst = binary.AppendUvarint(dst, uint64(len(o)))
		dst = append(dst, o...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	set := func(s []Stamp) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		for _, x := range s {
			k, _ := t.lookup(x.Origin)
			dst = binary.AppendUvarint(dst, uint64(k))
			dst = binary.AppendUvarint(dst, uint64(x.HLC))
		}
	}
	for _, e := range es {
		dst = binary.AppendUvarint(dst, uint64(len(e.Path)))
		dst = append(dst, e.Path...)
		if e.Stamp.IsZero() {
			dst = append(dst, 0)
		} else {
			k, _ := t.lookup(e.Stamp.Origin)
			dst = binary.AppendUvarint(dst, uint64(k+1))
			dst = binary.AppendUvarint(dst, uint64(e.Stamp.HLC))
		}
		if e.Value == nil {
			dst = append(dst, 0)
		} else {
			dst = append(dst, 1)
			dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
			dst = append(dst, e.Value...)
		}
		set(asSet(e.Adds))
		set(asSet(e.Removes))
	}
	return dst
}

// DecodeDoc decodes what AppendDoc encoded. It never panics and rejects
// trailing bytes, unsorted paths and unsorted tag sets.
func DecodeDoc(b []byte) (Doc, error) {
	fail := func(what string) (Doc, error) { return Doc{}, fmt.Errorf("%w: %s", ErrDocMeta, what) }
	pos := 0
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b[pos:])
		if n <= 0 {
			return 0, false
		}
		pos += n
		return v, true
	}
	bytesN := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)-pos) {
			return nil, false
		}
		v := b[pos : pos+int(n) : pos+int(n)]
		pos += int(n)
		return v, true
	}
	if len(b) == 0 || b[0] != docMetaVersion {
		return fail("version")
	}
	pos = 1
	no, ok := uv()
	if !ok || no > uint64(len(b)) {
		return fail("origins")
	}
	origins := make([]string, no)
	for i := range origins {
		o, ok := bytesN()
		if !ok {
			return fail("origin")
		}
		origins[i] = string(o)
	}
	ne, ok := uv()
	if !ok || ne > uint64(len(b)) {
		return fail("entries")
	}
	stampSet := func() ([]Stamp, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		var s []Stamp
		for range n {
			k, ok1 := uv()
			h, ok2 := uv()
			if !ok1 || !ok2 || k >= uint64(len(origins)) {
				return nil, false
			}
			s = append(s, Stamp{HLC: HLC(h), Origin: origins[k]})
		}
		return s, isSet(s)
	}
	var d Doc
	for i := range ne {
		var e DocEntry
		p, ok := bytesN()
		if !ok {
			return fail("path")
		}
		e.Path = string(p)
		if i > 0 && d.Entries[i-1].Path >= e.Path {
			return fail("paths not sorted")
		}
		ref, ok := uv()
		if !ok || ref > uint64(len(origins)) {
			return fail("register")
		}
		if ref > 0 {
			h, ok := uv()
			if !ok {
				return fail("register HLC")
			}
			e.Stamp = Stamp{HLC: HLC(h), Origin: origins[ref-1]}
		}
		if pos >= len(b) {
			return fail("kind")
		}
		kind := b[pos]
		pos++
		switch kind {
		case 0:
		case 1:
			v, ok := bytesN()
			if !ok {
				return fail("value")
			}
			e.Value = append([]byte{}, v...)
		default:
			return fail("kind")
		}
		if e.Adds, ok = stampSet(); !ok {
			return fail("adds")
		}
		if e.Removes, ok = stampSet(); !ok {
			return fail("removes")
		}
		d.Entries = append(d.Entries, e)
	}
	if pos != len(b) {
		return fail("trailing bytes")
	}
	return d, nil
}

// ---- per-path changes on the wire ----

// AppendJSONChanges encodes changes as JSON text, the form a client sends
// as the value of a column merged per key (see README.md):
//
//	[["set", ["k1","k2"], <value>], ["del", ["k1"]], ...]
//
// The root is the empty path.
func AppendJSONChanges(dst []byte, changes []JSONChange) []byte {
	dst = append(dst, '[')
	for i, c := range changes {
		if i > 0 {
			dst = append(dst, ',')
		}
		path := c.Path
		if path == nil {
			path = []string{}
		}
		if c.Delete {
			dst = append(dst, `["del",`...)
			dst = append(dst, marshalJSON(path)...)
		} else {
			dst = append(dst, `["set",`...)
			dst = append(dst, marshalJSON(path)...)
			dst = append(dst, ',')
			dst = append(dst, c.Value...)
		}
		dst = append(dst, ']')
	}
	return append(dst, ']')
}

// DecodeJSONChanges decodes what AppendJSONChanges encoded; each set's
// value is returned canonical. Paths deeper than MaxJSONDepth are refused.
func DecodeJSONChanges(b []byte) ([]JSONChange, error) {
	var raw [][]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("merge: JSON changes: %w", err)
	}
	out := make([]JSONChange, 0, len(raw))
	for i, r := range raw {
		var op string
		var path []string
		if len(r) < 2 || json.Unmarshal(r[0], &op) != nil || json.Unmarshal(r[1], &path) != nil || path == nil {
			return nil, fmt.Errorf("merge: JSON change %d: want [op, path, value?]", i)
		}
		if len(path) > MaxJSONDepth {
			return nil, fmt.Errorf("merge: JSON change %d: path deeper than %d", i, MaxJSONDepth)
		}
		switch {
		case op == "del" && len(r) == 2:
			out = append(out, JSONChange{Path: path, Delete: true})
		case op == "set" && len(r) == 3:
			v, err := CanonicalJSON(r[2])
			if err != nil {
				return nil, fmt.Errorf("merge: JSON change %d: %w", i, err)
			}
			out = append(out, JSONChange{Path: path, Value: v})
		default:
			return nil, fmt.Errorf("merge: JSON change %d: unknown op %q or wrong length", i, op)
		}
	}
	return out, nil
}
