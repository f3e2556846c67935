package jsbridge

import (
	"slices"
	"strconv"

	"github.com/latticesync/lattice/client"
)

// liveMemo is what a live query's previous event told the page: its columns
// and each row's encoding. A new result is sent as a delta against it, so
// the page only decodes the rows that changed and keeps its objects for
// the others (MESSAGES.md, "Live query deltas").
type liveMemo struct {
	columns []string
	rows    []string // each row's JSON array, substrings of one string
}

// encodeLive encodes a live query's new result for the page: in full when
// there is no previous result to refer to (or the columns changed), else as
// a delta. It returns the memo for the next call, and skip when the page
// already has exactly these rows (the client's comparison of typed values
// can see a change JSON cannot, such as 1 becoming 1.0).
func encodeLive(prev *liveMemo, rows *client.Rows) (r *Rows, delta, skip bool, next *liveMemo) {
	buf := make([]byte, 0, 64+len(rows.Values)*len(rows.Columns)*8)
	ends := make([]int, len(rows.Values))
	special := false
	for i, row := range rows.Values {
		var sp bool
		buf, sp = appendRow(buf, row)
		special = special || sp
		ends[i] = len(buf)
	}
	all := string(buf)
	cols := rows.Columns
	if cols == nil {
		cols = []string{}
	}
	next = &liveMemo{columns: cols, rows: make([]string, len(ends))}
	start := 0
	for i, e := range ends {
		next.rows[i] = all[start:e]
		start = e
	}

	if prev == nil || !slices.Equal(prev.columns, cols) || len(prev.rows) == 0 || len(next.rows) == 0 {
		return &Rows{Columns: cols, Rows: joinRows(next.rows, len(all)), Special: special}, false, false, next
	}

	// Where each previous row is, by encoding; duplicates in order.
	at := make(map[string][]int, len(prev.rows))
	for i, s := range prev.rows {
		at[s] = append(at[s], i)
	}
	out := make([]byte, 0, 64)
	out = append(out, '[')
	last, run := -2, 0 // the previous element kept row last, as part of a run of run rows
	kept, same := 0, len(prev.rows) == len(next.rows)
	newSpecial := false
	flush := func() {
		if run > 1 {
			out = append(out, ',')
			out = strconv.AppendInt(out, int64(-(run - 1)), 10)
		}
		run = 0
	}
	first := true
	sep := func() {
		if !first {
			out = append(out, ',')
		}
		first = false
	}
	for i, s := range next.rows {
		if idx := at[s]; len(idx) > 0 {
			j := idx[0]
			at[s] = idx[1:]
			kept++
			same = same && j == i
			if run > 0 && j == last+1 {
				run++
				last = j
				continue
			}
			flush()
			sep()
			out = strconv.AppendInt(out, int64(j), 10)
			last, run = j, 1
			continue
		}
		same = false
		flush()
		last = -2
		sep()
		out = append(out, s...)
		newSpecial = newSpecial || special && rowSpecial(rows.Values[i])
	}
	flush()
	out = append(out, ']')
	if same {
		return nil, false, true, next
	}
	if kept == 0 {
		return &Rows{Columns: cols, Rows: joinRows(next.rows, len(all)), Special: special}, false, false, next
	}
	return &Rows{Columns: cols, Rows: out, Special: newSpecial}, true, false, next
}

func joinRows(rows []string, n int) []byte {
	buf := make([]byte, 0, n+len(rows)+2)
	buf = append(buf, '[')
	for i, s := range rows {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, s...)
	}
	return append(buf, ']')
}

func rowSpecial(row []any) bool {
	for _, v := range row {
		if _, sp := appendValue(nil, v); sp {
			return true
		}
	}
	return false
}
