package operators

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gostream/gostream/proto/planpb"
)

func col(name string) *planpb.Expr { return &planpb.Expr{Kind: &planpb.Expr_Column{Column: name}} }

func lit(s string) *planpb.Expr {
	return &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_String_{String_: s}, Type: planpb.DataType_STRING}}}
}

func callE(fn string, args ...*planpb.Expr) *planpb.Expr {
	return &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: fn, Args: args}}}
}

func castE(e *planpb.Expr, t planpb.DataType) *planpb.Expr {
	return &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: e, To: t}}}
}

// wordsPlan is value -> CAST AS STRING -> explode(split(value, ' ')) AS word.
func wordsPlan() *planpb.Plan {
	scan := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{Subscribe: []string{"logs"}}}}
	lines := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: scan, Exprs: []*planpb.NamedExpr{
		{Expr: castE(col("value"), planpb.DataType_STRING), Name: "value"},
		{Expr: col("partition"), Name: "partition"},
	}}}}
	return &planpb.Plan{Node: &planpb.Plan_Explode{Explode: &planpb.Explode{
		Input: lines, Keep: []*planpb.NamedExpr{{Expr: col("partition"), Name: "partition"}},
		Generator: callE("split", col("value"), lit(" ")), Output: "word",
	}}}
}

// wordCount is groupBy(word).count() over wordsPlan.
func wordCount() *planpb.Aggregate {
	return &planpb.Aggregate{Input: wordsPlan(), GroupBy: []*planpb.NamedExpr{{Expr: col("word"), Name: "word"}},
		Aggregates: []*planpb.AggregateExpr{{Function: planpb.AggregateFunction_COUNT, Name: "count"}}}
}

// wordCountPartial compiles wordCount's map side: its partial aggregator
// and the entry of the narrow chain feeding it.
func wordCountPartial(tb testing.TB) (*Aggregation, *HashAgg, Emit) {
	tb.Helper()
	return compilePartial(tb, wordCount())
}

// compilePartial compiles a's map side: its partial aggregator and the
// entry of the narrow chain feeding it.
func compilePartial(tb testing.TB, a *planpb.Aggregate) (*Aggregation, *HashAgg, Emit) {
	tb.Helper()
	g, err := CompileAggregate(a)
	if err != nil {
		tb.Fatal(err)
	}
	partial, err := g.NewPartial()
	if err != nil {
		tb.Fatal(err)
	}
	entry, err := partial.Entry()
	if err != nil {
		tb.Fatal(err)
	}
	return g, partial, entry
}

func kafkaRow(value string, partition int64) Row {
	row := make(Row, len(KafkaSchema(false)))
	if value != "\x00null" {
		row[1] = Value{Kind: KindBinary, B: []byte(value)}
	}
	row[2], row[3] = Str("logs"), Long(partition)
	return row
}

// runAgg runs lines through partial aggregation on three "map tasks" (the
// second absorbs the first's groups), the exchange, and the final
// aggregation into a memory map, like a batch. It
// returns each group's aggregates as text by the group's keys as text, both
// joined by spaces.
func runAgg(t testing.TB, a *planpb.Aggregate, parts int, batches ...[]Row) map[string]string {
	t.Helper()
	g, err := CompileAggregate(a)
	if err != nil {
		t.Fatal(err)
	}
	return runCompiled(t, g, parts, batches...)
}

// runCompiled is runAgg on a compiled aggregation.
func runCompiled(t testing.TB, g *Aggregation, parts int, batches ...[]Row) map[string]string {
	t.Helper()
	st := mapStore{}
	for _, rows := range batches {
		var buckets [][]byte
		var absorbed *HashAgg
		for task := range 3 {
			partial, err := g.NewPartial()
			if err != nil {
				t.Fatal(err)
			}
			// One task takes the fused entry (Entry), one the row-at-a-time
			// chain, one the values (ValueEntry, when the chain has it):
			// all must encode the same partials.
			entry, err := partial.Entry()
			switch task {
			case 1:
				entry, err = g.Input().New(partial.Add)
			case 2:
				var values func([]byte)
				if values, err = partial.ValueEntry(); values != nil {
					entry = func(r Row) error { values(r[1].B); return nil }
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range rows {
				if i%3 == task {
					if err := entry(r); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Task 1 absorbs task 0's groups (as a map task's workers
			// do before they flush), task 2 flushes its own.
			switch task {
			case 0:
				absorbed = partial
				continue
			case 1:
				partial.Absorb(absorbed)
				if n := absorbed.Len(); n != 0 {
					t.Fatalf("a partial holds %d groups after another absorbed it", n)
				}
			}
			buckets = partial.Flush(partitions(t, parts), buckets)
		}
		for p := range parts {
			final := g.NewFinal()
			if err := final.Merge(buckets[p]); err != nil {
				t.Fatal(err)
			}
			if err := final.MergeInto(st, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := map[string]string{}
	row := make(Row, len(g.Schema()))
	for k, v := range st {
		if err := g.DecodeRow(row, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		var cells []string
		for _, v := range row {
			cells = append(cells, string(v.AppendText(nil)))
		}
		keys := len(g.keyTypes)
		out[strings.Join(cells[:keys], " ")] = strings.Join(cells[keys:], " ")
	}
	return out
}

type mapStore map[string]string

func (m mapStore) Get(k []byte) ([]byte, bool, error) {
	v, ok := m[string(k)]
	return []byte(v), ok, nil
}

func (m mapStore) Put(k, v []byte) error { m[string(k)] = string(v); return nil }

func TestWordCountAggregation(t *testing.T) {
	b1 := []Row{kafkaRow("a b a", 0), kafkaRow("", 1), kafkaRow("\x00null", 2), kafkaRow(" b", 0)}
	b2 := []Row{kafkaRow("a", 1)}
	got := runAgg(t, wordCount(), 3, b1, b2)
	want := map[string]string{"a": "3", "b": "2", "": "2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestWordCountFilteredPieces counts explode(split(lower(value), '\W+'))
// through filters after the explode: on the exploded word alone they run
// on the split's pieces (the fused entry); on another column they run row
// at a time. runAgg feeds half the rows to each entry, so both must agree.
func TestWordCountFilteredPieces(t *testing.T) {
	filtered := func(cond *planpb.Expr) *planpb.Aggregate {
		a := wordCount()
		x := a.Input.GetExplode()
		x.Generator = callE("split", callE("lower", col("value")), lit(`\W+`))
		a.Input = &planpb.Plan{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{Input: a.Input, Condition: cond}}}
		return a
	}
	lines := []Row{kafkaRow("GET /a?B=1", 0), kafkaRow("[x] a.", 1), kafkaRow("", 0), kafkaRow("\x00null", 1), kafkaRow("A_b a", 1)}
	cases := []struct {
		name  string
		cond  *planpb.Expr
		fused bool
		want  map[string]string
	}{
		{"non-empty words", callE("!=", col("WORD"), lit("")), true,
			map[string]string{"get": "1", "a": "3", "b": "1", "1": "1", "x": "1", "a_b": "1"}},
		{"on another column", callE("=", col("partition"), &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_Long{Long: 1}, Type: planpb.DataType_LONG}}}), false,
			map[string]string{"": "2", "x": "1", "a": "2", "a_b": "1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := CompileAggregate(filtered(c.cond))
			if err != nil {
				t.Fatal(err)
			}
			h, err := g.NewPartial()
			if err != nil {
				t.Fatal(err)
			}
			if _, fused, err := g.Input().newPieces(h.counter); err != nil || fused != c.fused {
				t.Fatalf("fused entry %v (%v), want %v", fused, err, c.fused)
			}
			if got := runAgg(t, filtered(c.cond), 3, lines); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// wordStats groups words by partition: count(*), sum(length(word)),
// min(word), max(word) and avg(length(word)).
func wordStats() *planpb.Aggregate {
	length := callE("length", col("word"))
	return &planpb.Aggregate{
		Input: wordsPlan(),
		GroupBy: []*planpb.NamedExpr{
			{Expr: col("partition"), Name: "partition"},
		},
		Aggregates: []*planpb.AggregateExpr{
			{Function: planpb.AggregateFunction_COUNT, Name: "n"},
			{Function: planpb.AggregateFunction_SUM, Arg: length, Name: "sum"},
			{Function: planpb.AggregateFunction_MIN, Arg: col("word"), Name: "min"},
			{Function: planpb.AggregateFunction_MAX, Arg: col("word"), Name: "max"},
			{Function: planpb.AggregateFunction_AVG, Arg: length, Name: "avg"},
		},
	}
}

func TestAggregatesAndNulls(t *testing.T) {
	rows := []Row{kafkaRow("bb a", 0), kafkaRow("ccc", 0), kafkaRow("z", 1)}
	got := runAgg(t, wordStats(), 2, rows[:2], rows[2:])
	want := map[string]string{"0": "3 6 a ccc 2.0", "1": "1 1 z z 1.0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestMultiColumnKeyRoundTrip(t *testing.T) {
	vals := []Value{Null, Long(-5), Str("x y"), Double(2.5), Bool(true), Str("tail")}
	types := []planpb.DataType{planpb.DataType_STRING, planpb.DataType_LONG, planpb.DataType_STRING, planpb.DataType_DOUBLE, planpb.DataType_BOOLEAN, planpb.DataType_STRING}
	key := encodeKey(nil, vals)
	row := make(Row, len(vals))
	if err := decodeKey(row, key, types); err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if Compare(row[i], vals[i]) != 0 || row[i].Kind != vals[i].Kind {
			t.Fatalf("column %d: got %+v, want %+v", i, row[i], vals[i])
		}
	}
}

func TestFilterAndCompile(t *testing.T) {
	filtered := &planpb.Plan{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{Input: wordsPlan(),
		Condition: callE("and", callE("!=", col("word"), lit("")), callE(">=", callE("length", col("word")), &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_Long{Long: 2}}}}))}}}
	n, err := CompileNarrow(filtered)
	if err != nil {
		t.Fatal(err)
	}
	var words []string
	entry, err := n.New(func(r Row) error { words = append(words, string(r[1].B)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Row{kafkaRow("ab  c def", 0), kafkaRow("\x00null", 0)} {
		if err := entry(r); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(words)
	if strings.Join(words, ",") != "ab,def" {
		t.Fatalf("got %v", words)
	}
	bad := []*planpb.Plan{
		{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{Input: wordsPlan(), Condition: col("word")}}},
		{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: wordsPlan(), Exprs: []*planpb.NamedExpr{{Expr: col("nope"), Name: "x"}}}}},
		{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: wordsPlan(), Exprs: []*planpb.NamedExpr{{Expr: callE("udf", lit("unregistered")), Name: "x"}}}}},
		{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: wordsPlan(), Exprs: []*planpb.NamedExpr{{Expr: callE("split", col("partition"), lit(" ")), Name: "x"}}}}},
	}
	for i, p := range bad {
		if _, err := CompileNarrow(p); err == nil {
			t.Errorf("bad plan %d compiled", i)
		}
	}
}

func TestRegisteredFunc(t *testing.T) {
	funcs := Funcs.Scope()
	t.Cleanup(funcs.Close)
	err := funcs.Register("test_double_len", Func{Name: "test_double_len", Args: []planpb.DataType{planpb.DataType_STRING}, Result: planpb.DataType_LONG,
		Fn: func(args []Value) (Value, error) { return Long(2 * int64(len(args[0].B))), nil }})
	if err != nil {
		t.Fatal(err)
	}
	p := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: wordsPlan(), Exprs: []*planpb.NamedExpr{
		{Expr: callE("udf", lit("test_double_len"), col("word")), Name: "n"}}}}}
	n, err := CompileNarrow(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	entry, _ := n.New(func(r Row) error { got = append(got, r[0].I); return nil })
	if err := entry(kafkaRow("ab c", 0)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[4 2]" {
		t.Fatalf("got %v", got)
	}
}

// FuzzMerge checks the exchange round trip against a direct computation:
// the lines of data, cut into two batches, each counted on two map tasks,
// flushed into 1 to 8 buckets, merged on the reduce side and into the
// state, must give what plain maps give, for the word count (the string
// counter), several aggregates by partition (accumulators) and a count by
// word and partition (a two-column key). Merge must also refuse data
// itself as a bucket without panicking.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("a b a\n\nb  c\n\xff\xfe x\n\x00null\n 🚀 a"), uint8(3), uint8(2))
	f.Add([]byte{2, 1, 'a', 5}, uint8(1), uint8(0))
	compile := func(a *planpb.Aggregate) *Aggregation {
		g, err := CompileAggregate(a)
		if err != nil {
			f.Fatal(err)
		}
		return g
	}
	wordsMax := compile(&planpb.Aggregate{Input: wordsPlan(), GroupBy: []*planpb.NamedExpr{{Expr: col("word"), Name: "word"}},
		Aggregates: []*planpb.AggregateExpr{{Function: planpb.AggregateFunction_MAX, Arg: col("word"), Name: "m"}}})
	aggs := []struct {
		name string
		g    *Aggregation
	}{
		{"word count", compile(wordCount())},
		{"stats by partition", compile(wordStats())},
		{"count by word and partition", compile(&planpb.Aggregate{Input: wordsPlan(),
			GroupBy:    []*planpb.NamedExpr{{Expr: col("word"), Name: "word"}, {Expr: col("partition"), Name: "partition"}},
			Aggregates: []*planpb.AggregateExpr{{Function: planpb.AggregateFunction_COUNT, Name: "n"}}})},
	}
	f.Fuzz(func(t *testing.T, data []byte, parts, cut uint8) {
		_ = wordsMax.NewFinal().Merge(data) // must not panic on corrupt input

		lines := strings.Split(string(data), "\n")
		rows := make([]Row, len(lines))
		for i, l := range lines {
			rows[i] = kafkaRow(l, int64(i%3))
		}
		n := int(cut) % (len(rows) + 1)
		p := 1 + int(parts)%8
		words, stats, pairs := mergeModel(lines)
		for i, want := range []map[string]string{words, stats, pairs} {
			if got := runCompiled(t, aggs[i].g, p, rows[:n], rows[n:]); !maps.Equal(got, want) {
				t.Errorf("%s of %q (batches of %d and %d lines, %d buckets):\ngot  %q\nwant %q",
					aggs[i].name, lines, n, len(rows)-n, p, got, want)
			}
		}
	})
}

// mergeModel computes, from plain maps, what runAgg returns for the word
// count, wordStats and a count by word and partition of lines, where line
// i is in partition i%3 and "\x00null" stands for a null value.
func mergeModel(lines []string) (words, stats, pairs map[string]string) {
	type stat struct {
		n, sum   int64
		min, max string
	}
	counts, pairCounts, byPart := map[string]int64{}, map[string]int64{}, map[int]*stat{}
	for i, l := range lines {
		if l == "\x00null" {
			continue // a null value has no words
		}
		for _, w := range strings.Split(string(AppendValidUTF8(nil, []byte(l))), " ") {
			counts[w]++
			pairCounts[fmt.Sprintf("%s %d", w, i%3)]++
			s := byPart[i%3]
			if s == nil {
				s = &stat{min: w, max: w}
				byPart[i%3] = s
			}
			s.n++
			s.sum += int64(utf8.RuneCountInString(w))
			s.min, s.max = min(s.min, w), max(s.max, w)
		}
	}
	words, stats, pairs = map[string]string{}, map[string]string{}, map[string]string{}
	for w, n := range counts {
		words[w] = fmt.Sprint(n)
	}
	for k, n := range pairCounts {
		pairs[k] = fmt.Sprint(n)
	}
	for p, s := range byPart {
		avg := Double(float64(s.sum) / float64(s.n)).AppendText(nil)
		stats[fmt.Sprint(p)] = fmt.Sprintf("%d %d %s %s %s", s.n, s.sum, s.min, s.max, avg)
	}
	return words, stats, pairs
}

// BenchmarkPartialAggregation is the map side of word count: cast, split,
// explode and count per word, on log-like lines.
func BenchmarkPartialAggregation(b *testing.B) {
	lines := make([]string, 1000)
	for i := range lines {
		lines[i] = fmt.Sprintf(`198.51.100.%d - - [24/Nov/2026:09:00:%02d +0000] "GET /api/item/%d HTTP/1.1" 200 %d`, i%50, i%60, i%300, i*7)
	}
	benchPartial(b, lines)
}

// benchPartial measures the map side of word count (cast, split, explode,
// partial count, flush into 4 buckets) over lines.
func benchPartial(b *testing.B, lines []string) {
	_, partial, entry := wordCountPartial(b)
	rows := make([]Row, len(lines))
	var bytes int64
	for i, l := range lines {
		rows[i] = kafkaRow(l, 0)
		bytes += int64(len(l))
	}
	b.ReportAllocs()
	b.SetBytes(bytes)
	x := partitions(b, 4)
	var buckets [][]byte
	for b.Loop() {
		for _, r := range rows {
			_ = entry(r)
		}
		buckets = partial.Flush(x, buckets[:0])
		for i := range buckets {
			buckets[i] = buckets[i][:0]
		}
	}
}

// BenchmarkFinalMerge is the reduce side: decoding exchange buckets and
// merging partials of 10k distinct keys.
func BenchmarkFinalMerge(b *testing.B) {
	g, partial, entry := wordCountPartial(b)
	for i := range 10000 {
		_ = entry(kafkaRow(fmt.Sprintf("word%d", i), 0))
	}
	buckets := partial.Flush(partitions(b, 1), nil)
	final := g.NewFinal()
	b.ReportAllocs()
	b.SetBytes(int64(len(buckets[0])))
	for b.Loop() {
		if err := final.Merge(buckets[0]); err != nil {
			b.Fatal(err)
		}
		final.Reset()
	}
}

// BenchmarkExchangeEncode is the map side's Flush: encoding 10k partial
// aggregates into 8 shuffle buckets.
// BenchmarkExchangeEncode flushes 10,000 groups into 8 buckets, reused or
// new each time (a map task's are new: they go to the reduce side).
func BenchmarkExchangeEncode(b *testing.B) {
	for _, fresh := range []bool{false, true} {
		b.Run(map[bool]string{false: "reused", true: "fresh"}[fresh], func(b *testing.B) {
			_, partial, entry := wordCountPartial(b)
			rows := make([]Row, 10000)
			for i := range rows {
				rows[i] = kafkaRow(fmt.Sprintf("word%d", i), 0)
			}
			x := partitions(b, 8)
			var buckets [][]byte
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for _, r := range rows {
					_ = entry(r)
				}
				for i := range buckets {
					buckets[i] = buckets[i][:0]
					if fresh {
						buckets[i] = nil
					}
				}
				b.StartTimer()
				buckets = partial.Flush(x, buckets)
			}
			var n int
			for _, bk := range buckets {
				n += len(bk)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkPartialAggregationZipf is the map side on lines drawn from a
// 50,000-word Zipf vocabulary, like the bench suite's data: unlike
// BenchmarkPartialAggregation, its groups do not all fit in cache.
func BenchmarkPartialAggregationZipf(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, 49_999)
	lines := make([]string, 20_000)
	for i := range lines {
		var line strings.Builder
		for w := range 12 {
			if w > 0 {
				line.WriteByte(' ')
			}
			fmt.Fprintf(&line, "w%d", zipf.Uint64())
		}
		lines[i] = line.String()
	}
	benchPartial(b, lines)
}

func TestGlobalAggregationWithoutKeys(t *testing.T) {
	a := &planpb.Aggregate{Input: wordsPlan(), Aggregates: []*planpb.AggregateExpr{{Function: planpb.AggregateFunction_COUNT, Name: "n"}}}
	g, err := CompileAggregate(a)
	if err != nil {
		t.Fatal(err)
	}
	partial, err := g.NewPartial()
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := g.Input().New(partial.Add)
	for _, r := range []Row{kafkaRow("a b", 0), kafkaRow("c", 1)} {
		if err := entry(r); err != nil {
			t.Fatal(err)
		}
	}
	final := g.NewFinal()
	if err := final.Merge(partial.Flush(partitions(t, 1), nil)[0]); err != nil {
		t.Fatal(err)
	}
	st := mapStore{}
	if err := final.MergeInto(st, nil); err != nil {
		t.Fatal(err)
	}
	row := make(Row, 1)
	for k, v := range st {
		if err := g.DecodeRow(row, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if len(st) != 1 || row[0].I != 3 {
		t.Fatalf("groups %d, count %d; want one group of 3", len(st), row[0].I)
	}
}

// TestCountOnlyAggregation covers count-only aggregations, which finals
// keep as plain counts: count(*) and count(column) side by side, a
// non-string key, and the changed rows MergeInto emits.
func TestCountOnlyAggregation(t *testing.T) {
	a := &planpb.Aggregate{
		Input:   wordsPlan(),
		GroupBy: []*planpb.NamedExpr{{Expr: col("partition"), Name: "partition"}},
		Aggregates: []*planpb.AggregateExpr{
			{Function: planpb.AggregateFunction_COUNT, Name: "n"},
			{Function: planpb.AggregateFunction_COUNT, Arg: col("word"), Name: "words"},
		},
	}
	rows := []Row{kafkaRow("a b", 0), kafkaRow("c", 1), kafkaRow("d e f", 1)}
	got := runAgg(t, a, 2, rows[:1], rows[1:])
	if want := map[string]string{"0": "2 2", "1": "4 4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}

	g, partial, entry := compilePartial(t, a)
	for _, r := range rows {
		if err := entry(r); err != nil {
			t.Fatal(err)
		}
	}
	final := g.NewFinal()
	if err := final.Merge(partial.Flush(partitions(t, 1), nil)[0]); err != nil {
		t.Fatal(err)
	}
	var changed []string
	err := final.MergeInto(mapStore{"\x01\x02": "\x05\x05"}, func(r Row) error { // partition 1 held 5 and 5
		changed = append(changed, fmt.Sprintf("%d:%d/%d", r[0].I, r[1].I, r[2].I))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[0:2/2 1:9/9]"; fmt.Sprint(changed) != want {
		t.Fatalf("changed rows %v, want %v", changed, want)
	}
}

// TestValueEntry checks the record-value entry of word count: it counts as
// the row entry does (tombstones and invalid UTF-8 included), and it is
// offered only when the split's input is CAST(value AS STRING).
func TestValueEntry(t *testing.T) {
	g, err := CompileAggregate(wordCount())
	if err != nil {
		t.Fatal(err)
	}
	byValue, err := g.NewPartial()
	if err != nil {
		t.Fatal(err)
	}
	value, err := byValue.ValueEntry()
	if err != nil || value == nil {
		t.Fatalf("word count has no value entry (%v)", err)
	}
	_, byRow, entry := wordCountPartial(t)
	for _, v := range []string{"a b a", "", " b", "x\xffy z", "\x00null"} {
		if v == "\x00null" {
			value(nil)
		} else {
			value([]byte(v))
		}
		if err := entry(kafkaRow(v, 0)); err != nil {
			t.Fatal(err)
		}
	}
	got, want := byValue.Flush(partitions(t, 1), nil)[0], byRow.Flush(partitions(t, 1), nil)[0]
	final := func(b []byte) map[string]string {
		st := mapStore{}
		f := g.NewFinal()
		if err := f.Merge(b); err != nil {
			t.Fatal(err)
		}
		if err := f.MergeInto(st, nil); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if fmt.Sprint(final(got)) != fmt.Sprint(final(want)) {
		t.Fatalf("value entry counted %v, row entry %v", final(got), final(want))
	}

	lower := wordCount()
	lower.Input.GetExplode().Generator = callE("split", callE("lower", col("value")), lit(" "))
	g, err = CompileAggregate(lower)
	if err != nil {
		t.Fatal(err)
	}
	h, err := g.NewPartial()
	if err != nil {
		t.Fatal(err)
	}
	if value, err := h.ValueEntry(); err != nil || value != nil {
		t.Fatalf("split(lower(value)) got a value entry (%v)", err)
	}
}

// inMemoryStore is a mapStore that says it holds its state in memory.
type inMemoryStore struct{ mapStore }

func (inMemoryStore) InMemory() bool { return true }

// TestMergeOrder checks that MergeInto visits groups in key order for a
// store on disk, and without sorting them (in the order the final took them
// in, here the hash order of the partial's flush) for one in memory, with
// the same resulting state.
func TestMergeOrder(t *testing.T) {
	var words []string
	for i := range 50 {
		words = append(words, fmt.Sprintf("w%02d", i))
	}
	merge := func(st StateStore) []string {
		g, partial, entry := compilePartial(t, wordCount())
		if err := entry(kafkaRow(strings.Join(words, " "), 0)); err != nil {
			t.Fatal(err)
		}
		final := g.NewFinal()
		if err := final.Merge(partial.Flush(partitions(t, 1), nil)[0]); err != nil {
			t.Fatal(err)
		}
		var order []string
		err := final.MergeInto(st, func(r Row) error {
			order = append(order, string(r[0].B))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return order
	}
	disk, mem := mapStore{}, inMemoryStore{mapStore{}}
	if got := merge(disk); !slices.Equal(got, words) {
		t.Errorf("store on disk: groups merged in order %v, want key order", got)
	}
	// 50 keys in hash order come out sorted once in 50! runs.
	if got := merge(mem); slices.IsSorted(got) || len(got) != len(words) {
		t.Errorf("store in memory: groups merged in order %v, want the final's order, unsorted", got)
	}
	if !maps.Equal(disk, mem.mapStore) {
		t.Errorf("states differ: on disk %v, in memory %v", disk, mem.mapStore)
	}
}

// TestAbsorb folds one word count partial into another, the words short
// and long (past a counter slot's inline bytes), shared and not, enough to
// grow the absorbing table: the flushed bucket holds each word once, with
// the sum of both partials' counts.
func TestAbsorb(t *testing.T) {
	g, a, feedA := wordCountPartial(t)
	b, err := g.NewPartial()
	if err != nil {
		t.Fatal(err)
	}
	feedB, err := b.Entry()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	feed := func(entry Emit, words ...string) {
		for _, w := range words {
			want[w]++
		}
		if err := entry(kafkaRow(strings.Join(words, " "), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3000 {
		long := fmt.Sprintf("a-word-longer-than-sixteen-bytes-%d", i%700)
		feed(feedA, fmt.Sprintf("a%d", i%1500), fmt.Sprintf("s%d", i%200), long)
		feed(feedB, fmt.Sprintf("b%d", i%2500), fmt.Sprintf("s%d", i%300), long)
	}
	a.Absorb(b)
	if b.Len() != 0 {
		t.Fatalf("the absorbed partial holds %d groups", b.Len())
	}
	if a.Len() != len(want) {
		t.Fatalf("the absorbing partial holds %d groups, want %d", a.Len(), len(want))
	}
	bucket := a.Flush(partitions(t, 1), nil)[0]
	got := map[string]int64{}
	for len(bucket) > 0 {
		kl, n := binary.Uvarint(bucket)
		key := string(bucket[n+1 : n+int(kl)]) // after the key's null flag
		count, m := binary.Uvarint(bucket[n+int(kl):])
		if _, dup := got[key]; dup {
			t.Fatalf("word %q flushed twice", key)
		}
		got[key] = int64(count)
		bucket = bucket[n+int(kl)+m:]
	}
	if !maps.Equal(got, want) {
		t.Fatalf("flushed %d words, want %d; they differ", len(got), len(want))
	}
}

// BenchmarkFlushTwoPartials is the end of a map task whose two workers
// each counted 33,000 lines drawn from a 50,000-word Zipf vocabulary (the
// bench suite's data, a batch's share of one of three workers), then the
// reduce side's merge of its buckets: "separate" flushes both partials,
// "absorbed" folds one into the other (Absorb) and flushes it. It reports
// the map side's and the reduce side's time and the bytes shuffled per
// task; counting the words is left out.
func BenchmarkFlushTwoPartials(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, 49_999)
	var values [2][][]byte
	for i := range 66_000 {
		var line strings.Builder
		for w := range 9 {
			if w > 0 {
				line.WriteByte(' ')
			}
			fmt.Fprintf(&line, "w%d", zipf.Uint64())
		}
		values[i%2] = append(values[i%2], []byte(line.String()))
	}
	for _, absorb := range []bool{false, true} {
		b.Run(map[bool]string{false: "separate", true: "absorbed"}[absorb], func(b *testing.B) {
			g, err := CompileAggregate(wordCount())
			if err != nil {
				b.Fatal(err)
			}
			var partials [2]*HashAgg
			var entries [2]func([]byte)
			for i := range partials {
				if partials[i], err = g.NewPartial(); err == nil {
					entries[i], err = partials[i].ValueEntry()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			x, final := partitions(b, 4), g.NewFinal()
			var mapSide, reduceSide time.Duration
			var shuffled int
			for b.Loop() {
				b.StopTimer()
				for i, entry := range entries {
					for _, v := range values[i] {
						entry(v)
					}
				}
				b.StartTimer()
				start := time.Now()
				var buckets [][]byte
				if absorb {
					partials[0].Absorb(partials[1])
				} else {
					buckets = partials[1].Flush(x, buckets)
				}
				buckets = partials[0].Flush(x, buckets)
				mapped := time.Now()
				for _, bucket := range buckets {
					shuffled += len(bucket)
					if err := final.Merge(bucket); err != nil {
						b.Fatal(err)
					}
				}
				reduceSide += time.Since(mapped)
				mapSide += mapped.Sub(start)
				final.Reset()
			}
			b.ReportMetric(float64(mapSide.Nanoseconds())/float64(b.N), "map-ns/op")
			b.ReportMetric(float64(reduceSide.Nanoseconds())/float64(b.N), "reduce-ns/op")
			b.ReportMetric(float64(shuffled)/float64(b.N), "shuffled-B/op")
		})
	}
}
