package where

import (
	"context"
	"testing"

	"github.com/latticesync/lattice/coltype"
	"github.com/latticesync/lattice/protocol"
)

func benchPred(b *testing.B, expr string, cols []protocol.Column, params []*string) *Pred {
	e, err := Parse(expr, cols, len(params))
	if err != nil {
		b.Fatal(err)
	}
	p, err := e.Bind(context.Background(), params, fakeCoerce)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func runEval(b *testing.B, p *Pred, rows [][]coltype.Value) {
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if p.Match(rows[i%len(rows)]) {
			n++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
	_ = n
}

// BenchmarkEval evaluates a typical shape on rows that match and rows that
// do not.
func BenchmarkEval(b *testing.B) {
	cols := []protocol.Column{
		col("id", coltype.Int8, "bigint"),
		col("project_id", coltype.Int8, "bigint"),
		col("status", coltype.TextType, "text"),
		col("title", coltype.TextType, "text"),
		col("updated_at", coltype.Timestamptz, "timestamp with time zone"),
	}
	mk := func(project int64, status string) []coltype.Value {
		return []coltype.Value{
			{Kind: coltype.Integer, I: 1},
			{Kind: coltype.Integer, I: project},
			{Kind: coltype.Text, B: []byte(status)},
			{Kind: coltype.Text, B: []byte("fix the thing")},
			{Kind: coltype.Text, B: []byte("2024-05-01 12:00:00Z")},
		}
	}
	rows := [][]coltype.Value{mk(42, "open"), mk(42, "done"), mk(7, "open"), mk(42, "closed")}
	b.Run("typical", func(b *testing.B) {
		runEval(b, benchPred(b, "project_id = $1 AND status IN ('open','closed')", cols, []*string{sp("42")}), rows)
	})
	b.Run("timestamp+like", func(b *testing.B) {
		runEval(b, benchPred(b, "project_id = $1 AND updated_at > '2024-01-01 00:00:00+00' AND title LIKE '%thing%'", cols, []*string{sp("42")}), rows)
	})
}
