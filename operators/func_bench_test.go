package operators

import (
	"testing"

	"github.com/gostream/gostream/proto/planpb"
)

// BenchmarkFunctions measures the functions a log pipeline runs per record,
// on one typical line each: allocations per row should be 0.
//
//	go test -run '^$' -bench BenchmarkFunctions -benchmem ./operators
func BenchmarkFunctions(b *testing.B) {
	nginx := `10.0.0.2 - - [05/Dec/2026:14:00:01 +0000] "GET /api/v1/items?id=42 HTTP/1.1" 404 153 "-" "curl/8.5.0"`
	jsonLine := `{"ts":"2026-12-05T14:00:01Z","level":"WARN","status":503,"msg":"upstream \"api\" timed out","host":"web-3"}`
	in := Schema{{Name: "line", Type: planpb.DataType_STRING}}
	for _, c := range []struct {
		name string
		line string
		expr *planpb.Expr
	}{
		{"regexp_extract", nginx, fn("regexp_extract", colRef("line"), `" (\d{3}) `, 1)},
		{"rlike", nginx, fn("rlike", colRef("line"), `HTTP/1\.[01]" 5\d\d`)},
		{"like", nginx, fn("like", colRef("line"), `%" 404 %`)},
		{"substring_index", nginx, fn("substring_index", colRef("line"), " ", 1)},
		{"split_get_item", nginx, fn("get_item", fn("split", colRef("line"), " "), 8)},
		{"to_timestamp", "05/Dec/2026:14:00:01 +0000", fn("to_timestamp", colRef("line"), "dd/MMM/yyyy:HH:mm:ss Z")},
		{"from_json", jsonLine, fn("from_json", colRef("line"), "ts TIMESTAMP, level STRING, status INT, msg STRING")},
		{"get_json_object", jsonLine, fn("get_json_object", colRef("line"), "$.status")},
		{"to_json", jsonLine, fn("to_json", fn("from_json", colRef("line"), "level STRING, status INT, msg STRING"))},
	} {
		b.Run(c.name, func(b *testing.B) {
			x, err := CompileExpr(c.expr, in)
			if err != nil {
				b.Fatal(err)
			}
			row := Row{Str(c.line)}
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			for b.Loop() {
				x.Eval(row)
			}
		})
	}
}
