package client

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/latticesync/lattice/coltype"
)

// Tracing: with a Logger enabled at slog.LevelDebug, the client records
// every service change it applies, every local write it re-applies over
// one (rebase), and every local transaction it stamps, sends, or drops, with
// the row keys. It answers "why does this replica hold this row like
// that?". The check is made once, at Open: a Logger at Info or above costs
// the apply path one branch per change.

// traceEnabled reports whether the logger records Debug events.
func traceEnabled(l *slog.Logger) bool {
	return l.Enabled(context.Background(), slog.LevelDebug)
}

// fmtValues renders values compactly for a trace: 1,'a',NULL.
func fmtValues(vals []coltype.Value) string {
	var b strings.Builder
	for i := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		v := &vals[i]
		switch v.Kind {
		case coltype.Null:
			b.WriteString("NULL")
		case coltype.Integer:
			b.WriteString(strconv.FormatInt(v.I, 10))
		case coltype.Real:
			b.WriteString(strconv.FormatFloat(v.F, 'g', -1, 64))
		case coltype.Text:
			b.WriteString(strconv.Quote(string(v.B)))
		default:
			b.WriteString("x'" + strconv.Itoa(len(v.B)) + " bytes'")
		}
	}
	return b.String()
}
