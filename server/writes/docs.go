package writes

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/merge"
)

// JSON columns merged per key path (README.md, "JSON columns merged per
// key"; merge/README.md for the rule). The merge state of each such
// column (merge.Doc) is kept in the shadow row's docs column as
//
//	{"cols": {"<attnum>": "<base64 of merge.AppendDoc>"}, "ver": {"<tag>": <version>}}
//
// where ver gives the row version at which each tag of the documents was
// added, so that a client's SeenVersion says which of them it saw.

type docsJSON struct {
	Cols map[string]string `json:"cols,omitempty"`
	Ver  map[string]int64  `json:"ver,omitempty"`
}

func tagText(s merge.Stamp) string {
	return fmt.Sprintf("%016x/%s", uint64(s.HLC), s.Origin)
}

func parseTagText(s string) (merge.Stamp, bool) {
	h, o, ok := strings.Cut(s, "/")
	if !ok {
		return merge.Stamp{}, false
	}
	v, err := strconv.ParseUint(h, 16, 64)
	return merge.Stamp{HLC: merge.HLC(v), Origin: o}, err == nil
}

// loadDocs decodes the shadow's docs column into the row state: only the
// live tags are kept (as for the row's tags, see "Compaction": an op is
// applied once, so a removed tag never comes back), and entries with none.
func (t *table) loadDocs(st *rowState, raw []byte) error {
	if raw == nil {
		return nil
	}
	var dj docsJSON
	if err := json.Unmarshal(raw, &dj); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	st.docVer = map[merge.Stamp]int64{}
	for k, v := range dj.Ver {
		if s, ok := parseTagText(k); ok {
			st.docVer[s] = v
		}
	}
	for i, a := range t.attnums {
		enc, ok := dj.Cols[strconv.Itoa(int(a))]
		if !ok || t.jsonMerge == nil || !t.jsonMerge[i] {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return fmt.Errorf("docs of column %s: %w", t.cols[i].Name, err)
		}
		d, err := merge.DecodeDoc(b)
		if err != nil {
			return fmt.Errorf("docs of column %s: %w", t.cols[i].Name, err)
		}
		var live []merge.DocEntry
		for _, e := range d.Entries {
			e.Adds = merge.Row{Adds: e.Adds, Removes: e.Removes}.Live()
			e.Removes = nil
			if len(e.Adds) > 0 {
				live = append(live, e)
			}
		}
		if st.docs == nil {
			st.docs = map[int]merge.Doc{}
		}
		st.docs[i] = merge.Doc{Entries: live}
	}
	st.rawDocs = raw
	return nil
}

// docsParam encodes the documents of sr for the shadow (the stored text
// unchanged when the transaction wrote none).
func (sr *simRow) docsParam() []byte {
	if !sr.docsDirty {
		return sr.st.rawDocs
	}
	t := sr.st.t
	dj := docsJSON{Cols: map[string]string{}, Ver: map[string]int64{}}
	for i, d := range sr.docs {
		if len(d.Entries) == 0 {
			continue
		}
		dj.Cols[strconv.Itoa(int(t.attnums[i]))] = base64.StdEncoding.EncodeToString(merge.AppendDoc(nil, d))
		for _, e := range d.Entries {
			for _, tag := range e.Adds {
				if v, ok := sr.docVer[tag]; ok {
					dj.Ver[tagText(tag)] = v
				}
			}
		}
	}
	b, _ := json.Marshal(dj)
	return b
}

// canonicalText returns the canonical JSON of a json/jsonb value as
// Postgres text (nil: NULL; text that is not JSON is returned as is).
func canonicalText(b []byte) []byte {
	if b == nil {
		return nil
	}
	c, err := merge.CanonicalJSON(b)
	if err != nil {
		return b
	}
	return c
}

// applyDoc merges the change's write of JSON column c (the k-th of op.Set)
// into the row's document and sets the column to the merged document.
//
// The write is the change's per-path changes (Change.JSON), or, from a
// client that sends whole values, a set of the whole document (NULL: a
// delete of it): keys it did not see survive, the others take its value
// where its stamp is newer.
//
// Plain SQL writes (jsonb_set, ||, -, any UPDATE) do not maintain the
// document state: when the column's value differs from the state's
// document, the difference is merged first as per-path changes by the
// column's stamp (the trigger's), having seen everything: a plain SQL
// write sees the whole row.
func (s *simulation) applyDoc(sr *simRow, nr *merge.Row, op merge.Op, k, c, change int) *Rejected {
	t := sr.st.t
	ch := &s.r.txn.Changes[change]
	if !sr.ownDocs {
		sr.docs = maps.Clone(sr.docs)
		if sr.docs == nil {
			sr.docs = map[int]merge.Doc{}
		}
		sr.docVer = maps.Clone(sr.docVer)
		if sr.docVer == nil {
			sr.docVer = map[merge.Stamp]int64{}
		}
		sr.ownDocs = true
	}
	sr.docsDirty = true
	doc := sr.docs[c]
	cur := canonicalText(sr.texts[c])
	if string(cur) != string(doc.Render()) {
		// The plain SQL write's stamp: the column's (the trigger stamps
		// it). Newer than op, it wins where both wrote, and op, which
		// did not see it, cannot remove what it wrote.
		ps := sr.row.Cols[c]
		if ps.IsZero() {
			ps = merge.Stamp{HLC: max(op.Stamp.HLC, 2) - 1, Origin: PlainSQLOrigin}
		}
		diff, err := merge.DiffJSON(doc.Render(), cur)
		if err == nil {
			if delta, err := merge.DocDelta(doc, ps, diff, nil); err == nil {
				doc = merge.MergeDocs(doc, delta)
				sr.docVer[ps] = max(sr.st.version, 1)
			}
		}
	}
	changes, ok := ch.JSON[c]
	if !ok {
		v := op.Values[k]
		switch v.Kind {
		case coltype.Null:
			changes = []merge.JSONChange{{Path: []string{}, Delete: true}}
		case coltype.Text:
			changes = []merge.JSONChange{{Path: []string{}, Value: v.B}}
		default:
			return badChange(change, "%s column %s: a JSON value must be text", t.name, t.cols[c].Name)
		}
	}
	next := sr.st.version + 1
	seen := func(tag merge.Stamp) bool {
		switch {
		case tag.Compare(op.Stamp) >= 0:
			return false
		case ch.SeenLive, tag.Origin == s.r.txn.Origin:
			return true
		case ch.BySeenVersion:
			v, ok := sr.docVer[tag]
			if !ok {
				v = sr.st.tagVersion(tag, next)
			}
			return v >= 1 && uint64(v) <= ch.SeenVersion
		}
		for _, x := range op.Seen {
			if x == tag {
				return true
			}
		}
		return false
	}
	delta, err := merge.DocDelta(doc, op.Stamp, changes, seen)
	if err != nil {
		return badChange(change, "%s column %s: %v", t.name, t.cols[c].Name, err)
	}
	doc = merge.MergeDocs(doc, delta)
	sr.docs[c] = doc
	sr.docVer[op.Stamp] = next
	nt := doc.Render()
	if nt == nil {
		nr.Values[c] = coltype.Value{}
	} else {
		nr.Values[c] = coltype.Value{Kind: coltype.Text, B: nt}
	}
	if (nt == nil) != (sr.texts[c] == nil) || string(nt) != string(sr.texts[c]) {
		if !sr.own {
			sr.texts = append([][]byte(nil), sr.texts...)
			sr.own = true
		}
		sr.texts[c] = nt
		sr.dirty[c] = true
	}
	return nil
}
