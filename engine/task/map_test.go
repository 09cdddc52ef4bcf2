package task_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
)

// broker starts an in-process broker with topic logs in 3 partitions,
// produces lines round-robin, and returns a Source reading it and the
// ranges holding every line.
func broker(t *testing.T, lines ...string) (string, *kafkasrc.Source, []kafkasrc.Range) {
	t.Helper()
	brokers := embedtest.Start(t, "logs", 3)
	embedtest.Produce(t, brokers, "logs", lines...)
	src, err := kafkasrc.NewSource(kafkasrc.Config{Brokers: strings.Split(brokers, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, latest, err := src.Offsets(ctx, []string{"logs"})
	if err != nil {
		t.Fatal(err)
	}
	var ranges []kafkasrc.Range
	for p, end := range latest["logs"] {
		ranges = append(ranges, kafkasrc.Range{Topic: "logs", Partition: p, Until: end})
	}
	return brokers, src, ranges
}

func lines(s *engine.Session, brokers string) *engine.DataFrame {
	return s.ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(engine.Col("value").Cast(engine.String))
}

func compile(t *testing.T, p *planpb.Plan) *task.Plan {
	t.Helper()
	plan, err := task.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// mapStore is an operators.StateStore in a map.
type mapStore map[string][]byte

func (m mapStore) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m mapStore) Put(k, v []byte) error              { m[string(k)] = append([]byte(nil), v...); return nil }

// wordCountInput produces n lines, line i being line(i), to a broker, and
// returns them, the counts of their words, the source and ranges reading
// them and word count's compiled plan.
func wordCountInput(t *testing.T, n int, line func(i int) string) ([]string, map[string]int64, *kafkasrc.Source, []kafkasrc.Range, *task.Plan) {
	var in []string
	want := map[string]int64{}
	for i := range n {
		l := line(i)
		in = append(in, l)
		for w := range strings.SplitSeq(l, " ") {
			want[w]++
		}
	}
	brokers, src, ranges := broker(t, in...)
	df := lines(engine.NewSession(), brokers).Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word")).
		GroupBy(engine.Col("word")).Count()
	return in, want, src, ranges, compile(t, df.Plan())
}

// TestMapperWordCount runs word count's map side over every line, reading
// rows and values alone, with room for few groups (so workers flush
// several times), and checks that the buckets of each partition add up to
// the exact counts.
func TestMapperWordCount(t *testing.T) {
	in, want, src, ranges, plan := wordCountInput(t, 3000, func(i int) string { return fmt.Sprintf("w%d w%d  x%d", i%97, i%13, i%5) })
	for _, values := range []bool{false, true} {
		const parts = 4
		x, err := operators.PartitionExchange(parts)
		if err != nil {
			t.Fatal(err)
		}
		m, err := task.NewMapper(plan, task.MapConfig{Exchange: x, PartialGroups: 16, ReadValues: values})
		if err != nil {
			t.Fatal(err)
		}
		if m.ReadsValues() != values {
			t.Fatalf("ReadValues %v: ReadsValues() = %v", values, m.ReadsValues())
		}
		for batch := range 2 { // the second reuses the aggregators
			outs, n, err := m.Run(context.Background(), src, ranges, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(in)) {
				t.Fatalf("read %d records, want %d", n, len(in))
			}
			got := map[string]int64{}
			for p := range parts {
				final := plan.Agg.NewFinal()
				for _, o := range outs {
					if len(o.Buckets) != parts || o.Rows != nil {
						t.Fatalf("an output has %d buckets and %d rows; want %d buckets, no rows", len(o.Buckets), len(o.Rows), parts)
					}
					if err := final.Merge(o.Buckets[p]); err != nil {
						t.Fatal(err)
					}
				}
				err := final.MergeInto(mapStore{}, func(r operators.Row) error {
					w := string(r[0].B)
					if _, dup := got[w]; dup {
						t.Errorf("word %q in two partitions", w)
					}
					got[w] = r[1].I
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if !maps.Equal(got, want) {
				t.Fatalf("ReadValues %v batch %d: counts %v, want %v", values, batch, got, want)
			}
		}
	}
}

// TestMapperFlushesEachGroupOnce runs word count's map side with room for
// every group and more aggregating workers than ranges: the workers fold
// their groups together before they flush, so the outputs' buckets hold
// each word once, with its exact count, whichever worker counted it.
func TestMapperFlushesEachGroupOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	_, want, src, ranges, plan := wordCountInput(t, 6000, func(i int) string { return fmt.Sprintf("w%d w%d w%d", i%97, i%13, i%1009) })
	const parts = 3
	x, err := operators.PartitionExchange(parts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := task.NewMapper(plan, task.MapConfig{Exchange: x, PartialGroups: task.MaxPartialGroups, ReadValues: true})
	if err != nil {
		t.Fatal(err)
	}
	for batch := range 2 { // the second reuses the aggregators
		outs, _, err := m.Run(context.Background(), src, ranges, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := flushedCounts(t, outs, parts); !maps.Equal(got, want) {
			t.Fatalf("batch %d: %d words flushed, want %d; the counts differ", batch, len(got), len(want))
		}
	}
}

// flushedCounts decodes word count's map outputs, of parts buckets each,
// into each word's count, failing t if a word was flushed twice.
func flushedCounts(t *testing.T, outs []task.Output, parts int) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, o := range outs {
		if len(o.Buckets) != parts {
			t.Fatalf("an output has %d buckets, want %d", len(o.Buckets), parts)
		}
		for _, b := range o.Buckets {
			for len(b) > 0 { // key length, null flag and key, count
				kl, n := binary.Uvarint(b)
				word := string(b[n+1 : n+int(kl)])
				count, c := binary.Uvarint(b[n+int(kl):])
				if _, dup := got[word]; dup {
					t.Fatalf("word %q flushed twice (by %d outputs)", word, len(outs))
				}
				got[word] = int64(count)
				b = b[n+int(kl)+c:]
			}
		}
	}
	return got
}

// TestMapperAggregators runs word count's map side over one and over
// three ranges with 4 cores, with MapConfig.Aggregators unset, 1, 2 and 8:
// a run starts one aggregating worker per core, or fewer as the setting
// allows, whatever the number of ranges, and the counts are those of the
// default either way.
func TestMapperAggregators(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	_, _, src, ranges, plan := wordCountInput(t, 6000, func(i int) string { return fmt.Sprintf("w%d w%d w%d", i%97, i%13, i%1009) })
	const parts = 3
	x, err := operators.PartitionExchange(parts)
	if err != nil {
		t.Fatal(err)
	}
	counts := func(aggregators int, ranges []kafkasrc.Range) (map[string]int64, int) {
		m, err := task.NewMapper(plan, task.MapConfig{Exchange: x, PartialGroups: task.MaxPartialGroups, ReadValues: true, Aggregators: aggregators})
		if err != nil {
			t.Fatal(err)
		}
		outs, _, err := m.Run(context.Background(), src, ranges, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return flushedCounts(t, outs, parts), task.Aggregators(m)
	}
	for _, tc := range []struct{ aggregators, ranges, want int }{{0, 1, 4}, {1, 1, 1}, {1, 3, 1}, {2, 1, 2}, {2, 3, 2}, {8, 1, 4}, {8, 3, 4}} {
		want, _ := counts(0, ranges[:tc.ranges])
		got, aggs := counts(tc.aggregators, ranges[:tc.ranges])
		if aggs != tc.want {
			t.Errorf("Aggregators %d over %d ranges: %d aggregators, want %d", tc.aggregators, tc.ranges, aggs, tc.want)
		}
		if !maps.Equal(got, want) {
			t.Errorf("Aggregators %d over %d ranges: %d words flushed, want %d; the counts differ", tc.aggregators, tc.ranges, len(got), len(want))
		}
	}
}

// TestMapperRows runs a plan without aggregation: each range's task emits
// its rows in offset order.
func TestMapperRows(t *testing.T) {
	var in []string
	for i := range 300 {
		in = append(in, fmt.Sprintf("line %d", i))
	}
	brokers, src, ranges := broker(t, in...)
	plan := compile(t, lines(engine.NewSession(), brokers).Plan())
	m, err := task.NewMapper(plan, task.MapConfig{})
	if err != nil {
		t.Fatal(err)
	}
	outs, n, err := m.Run(context.Background(), src, ranges, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 300 || len(outs) != len(ranges) {
		t.Fatalf("read %d records into %d outputs; want 300 into %d", n, len(outs), len(ranges))
	}
	for i, o := range outs {
		// Lines went round-robin: partition p holds lines p, p+3, ...
		r := ranges[i]
		if len(o.Rows) != int(r.Until) {
			t.Fatalf("partition %d: %d rows, want %d", r.Partition, len(o.Rows), r.Until)
		}
		var first int
		for j, row := range o.Rows {
			var k int
			if _, err := fmt.Sscanf(string(row[0].B), "line %d", &k); err != nil {
				t.Fatal(err)
			}
			if j == 0 {
				first = k
			}
			if k != first+3*j {
				t.Fatalf("partition %d row %d is line %d, want %d", r.Partition, j, k, first+3*j)
			}
		}
	}
}

func TestNewMapperNeedsExchange(t *testing.T) {
	s := engine.NewSession()
	df := lines(s, "127.0.0.1:1").GroupBy(engine.Col("value")).Count()
	if _, err := task.NewMapper(compile(t, df.Plan()), task.MapConfig{}); err == nil {
		t.Fatal("NewMapper of an aggregation without an Exchange succeeded")
	}
}

// TestMapperUDFPanic checks that a registered function's panic fails the
// map task with the function's *operators.FuncError (task.Recover), with
// and without aggregation, instead of the process.
func TestMapperUDFPanic(t *testing.T) {
	regs := engine.NewRegistrations()
	defer regs.Close()
	err := regs.RegisterUDF("task_test_panics_on_boom", func(s string) string {
		if s == "boom" {
			panic("boom")
		}
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
	brokers, src, ranges := broker(t, "a", "b", "boom", "c")
	df := lines(engine.NewSession(), brokers).Select(engine.Udf("task_test_panics_on_boom", engine.Col("value")).As("v"))
	x, err := operators.PartitionExchange(2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*planpb.Plan{df.Plan(), df.GroupBy(engine.Col("v")).Count().Plan()} {
		m, err := task.NewMapper(compile(t, p), task.MapConfig{Exchange: x, PartialGroups: 16})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = m.Run(context.Background(), src, ranges, time.Now())
		var fe *operators.FuncError
		if !errors.As(err, &fe) || fe.Func != "task_test_panics_on_boom" || !strings.Contains(err.Error(), "map task") {
			t.Fatalf("error %v, want the function's FuncError, naming the map task", err)
		}
	}
}
