package engine

import (
	"strings"
	"testing"

	"github.com/gostream/gostream/operators"
)

// BenchmarkUDF is the cost of a call through a typed UDF against the
// built-in doing the same work (lower):
//
//	go test -run '^$' -bench BenchmarkUDF -benchmem ./engine
func BenchmarkUDF(b *testing.B) {
	regs := NewRegistrations()
	defer regs.Close()
	if err := regs.RegisterUDF("bench_lower", strings.ToLower); err != nil {
		b.Fatal(err)
	}
	if err := regs.RegisterUDF("bench_len2", func(s string, n int64) int64 { return int64(len(s)) + n }); err != nil {
		b.Fatal(err)
	}
	in := operators.Schema{{Name: "word", Type: String}, {Name: "n", Type: Long}}
	row := operators.Row{operators.Str("GoStream"), operators.Long(2)}
	for _, bc := range []struct {
		name string
		col  Column
	}{
		{"builtin-lower", Lower(Col("word"))},
		{"udf-lower", Udf("bench_lower", Col("word"))},
		{"udf-string-long", Udf("bench_len2", Col("word"), Col("n"))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			x, err := operators.CompileExpr(bc.col.expr, in)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Eval(row)
			}
		})
	}
}
