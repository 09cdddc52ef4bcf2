package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine"
)

// registrations returns a scope of registrations closed when t ends, so a
// test's UDFs do not leak into the next test, or into its own next run
// under -count.
func registrations(t *testing.T) *engine.Registrations {
	regs := engine.NewRegistrations()
	t.Cleanup(regs.Close)
	return regs
}

// logsStream is the topic logs of addrs, from the earliest offset.
func logsStream(s *engine.Session, addrs []string) *engine.DataFrame {
	return s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(addrs, ",")).
		Option("subscribe", "logs").
		Option("startingOffsets", "earliest").
		Load()
}

// runAll runs df to the end of the topic into a memory table and returns
// its rows, or the query's error.
func runAll(t *testing.T, s *engine.Session, df *engine.DataFrame, mode engine.OutputMode, dir string) ([]engine.Row, error) {
	t.Helper()
	q, err := df.WriteStream().OutputMode(mode).Format("memory").QueryName("t").
		Trigger(engine.AvailableNow()).Option("checkpointLocation", dir).Start(context.Background())
	if err != nil {
		return nil, err
	}
	if err := q.AwaitTermination(context.Background()); err != nil {
		return nil, err
	}
	return s.Table("t"), nil
}

func TestTypedUDF(t *testing.T) {
	addrs := embedded(t, "GET /a 200", "POST /b 503")
	produceRecords(t, addrs, &kgo.Record{Topic: "logs", Value: nil}) // a tombstone: null value
	regs := registrations(t)
	var calls atomic.Int64
	must(t, regs.RegisterUDF("describe", func(line string, offset int64, part int64, f float64, b bool, raw []byte, ts time.Time) (string, error) {
		calls.Add(1)
		if ts.IsZero() || len(raw) != len(line) {
			return "", fmt.Errorf("bad arguments %v %q", ts, raw)
		}
		return fmt.Sprintf("%s|%.1f|%t", strings.Fields(line)[2], f, b), nil
	}))
	must(t, regs.RegisterUDF("is_error", func(status string) bool { return status >= "5" }))
	s := engine.NewSession()
	df := logsStream(s, addrs).Select(
		engine.Udf("describe", engine.Col("value").Cast(engine.String), engine.Col("offset"), engine.Col("partition"),
			engine.Lit(1.5), engine.Lit(true), engine.Col("value"), engine.Col("timestamp")).As("d"))
	df = df.Select(engine.Col("d"), engine.Udf("is_error", engine.Col("d")).As("err"))
	rows, err := runAll(t, s, df, engine.Append, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%v %v", r.Get("d"), r.Get("err")))
	}
	sort.Strings(got)
	// The tombstone's null value gives null without a call.
	want := []string{"200|1.5|true false", "503|1.5|true true", "<nil> <nil>"}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("rows %q, want %q", got, want)
	}
	if calls.Load() != 2 {
		t.Fatalf("describe called %d times, want 2 (not for the null value)", calls.Load())
	}
}

func produceRecords(t *testing.T, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestUDFAnalysis checks that a query's UDF calls are checked against the
// registered signatures before it runs, and that RegisterUDF refuses what
// it cannot call.
func TestUDFAnalysis(t *testing.T) {
	regs := registrations(t)
	must(t, regs.RegisterUDF("status_class", func(status int64) string { return "" }))
	must(t, regs.RegisterUDF("twice", func(s string) string { return s }))
	if err := regs.RegisterUDF("twice", func(s string) int64 { return 0 }); !errors.Is(err, engine.ErrDuplicate) {
		t.Fatalf("second RegisterUDF(twice) = %v, want ErrDuplicate", err)
	}
	src := engine.NewSession().ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", "localhost:1").Option("subscribe", "logs").Load()
	for _, tc := range []struct {
		col  engine.Column
		want []string
	}{
		{engine.Udf("status_class", engine.Col("value")),
			[]string{`function "status_class"`, "argument 1 (value) is binary", "takes bigint"}},
		{engine.Udf("status_class", engine.Col("value").Cast(engine.String)),
			[]string{`function "status_class"`, "argument 1 is string", "takes bigint"}},
		{engine.Udf("status_class", engine.Col("offset"), engine.Col("offset")),
			[]string{`function "status_class" (bigint) -> string takes 1 argument(s), got 2`}},
		{engine.Udf("nope", engine.Col("offset")), []string{`no function "nope"`, "status_class"}},
		{engine.Udf("twice", engine.Col("topic")), []string{`function "twice", twice in this binary`}},
	} {
		q, err := src.Select(tc.col).WriteStream().Start(context.Background())
		if q != nil {
			q.Stop()
		}
		if !errors.Is(err, engine.ErrAnalysis) {
			t.Fatalf("Start = %v, want ErrAnalysis containing %q", err, tc.want)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not say %q", err, w)
			}
		}
	}
	// Function names match in any case, as in Spark; a built-in's name is
	// refused rather than shadowed in SQL.
	if err := src.Select(engine.Expr("Status_Class(offset)")).Err(); err != nil {
		t.Fatalf("SQL call of status_class in another case: %v", err)
	}
	for _, name := range []string{"Lower", "split", "coalesce"} {
		if err := regs.RegisterUDF(name, func(s string) string { return s }); !errors.Is(err, engine.ErrInvalidUDF) || !strings.Contains(err.Error(), "built-in") {
			t.Fatalf("RegisterUDF(%s) = %v, want ErrInvalidUDF naming the built-in", name, err)
		}
	}
	for _, fn := range []any{
		nil, "f", func(int) string { return "" }, func(string) {}, func(string) (string, int) { return "", 0 },
		func(...string) string { return "" }, func(string) map[string]int { return nil },
	} {
		if err := regs.RegisterUDF("bad", fn); !errors.Is(err, engine.ErrInvalidUDF) {
			t.Fatalf("RegisterUDF(%T) = %v, want ErrInvalidUDF", fn, err)
		}
	}
}

// TestTaskPanicFailsBatch checks that a panic, or an error, in a UDF of a
// map task (with and without an aggregation) or in a sink fails the batch
// with an error naming the query, the batch and the function, and that
// nothing of the batch is committed: a run after the fix counts everything
// once.
func TestTaskPanicFailsBatch(t *testing.T) {
	addrs := embedded(t, "a b", "b c", "c d")
	for _, tc := range []struct {
		name  string
		udf   any    // registered as "f"; a panic or an error on "b"
		sink  func() // called by a ForeachBatch sink, if set
		agg   bool
		wants []string
	}{
		{name: "narrow panic", udf: func(w string) string {
			if w == "b" {
				var m map[string]int
				m[w]++ // assignment to entry in nil map
			}
			return w
		}, wants: []string{`function "f" panicked: assignment to entry in nil map`}},
		{name: "aggregation panic", agg: true, udf: func(w string) string {
			if w == "b" {
				panic("no b")
			}
			return w
		}, wants: []string{`function "f" panicked: no b`}},
		{name: "error", agg: true, udf: func(w string) (string, error) {
			if w == "b" {
				return "", errors.New("b is bad")
			}
			return w, nil
		}, wants: []string{`function "f" failed: b is bad`}},
		{name: "foreachBatch panic", agg: true, sink: func() { panic("sink down") },
			wants: []string{engine.ErrPanic.Error(), "sink down", "sink"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			run := func(udf any, sink func()) (map[string]int64, error) {
				regs := engine.NewRegistrations()
				defer regs.Close()
				if udf == nil {
					udf = func(w string) string { return w }
				}
				must(t, regs.RegisterUDF("f", udf))
				s := engine.NewSession()
				words := logsStream(s, addrs).Select(engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("w"))
				df := words.Select(engine.Udf("f", engine.Col("w")).As("word"))
				mode := engine.Append
				if tc.agg {
					df, mode = df.GroupBy(engine.Col("word")).Count(), engine.Complete
				}
				got := map[string]int64{}
				q, err := df.WriteStream().OutputMode(mode).QueryName("q").Trigger(engine.AvailableNow()).
					Option("checkpointLocation", dir).
					ForeachBatch(func(_ context.Context, _ int64, rows []engine.Row) error {
						if sink != nil {
							sink()
						}
						for _, r := range rows {
							w, _ := r.Get("word").(string)
							if tc.agg {
								got[w] = r.Get("count").(int64)
							} else {
								got[w]++
							}
						}
						return nil
					}).Start(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				err = q.AwaitTermination(context.Background())
				if err != q.Exception() {
					t.Fatalf("AwaitTermination returned %v, Exception %v", err, q.Exception())
				}
				return got, err
			}
			_, err := run(tc.udf, tc.sink)
			if err == nil {
				t.Fatal("the query did not fail")
			}
			for _, w := range append(tc.wants, `query "q"`, "batch 0") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			got, err := run(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{"a": 1, "b": 2, "c": 2, "d": 1}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after the failed run, counted %v, want %v", got, want)
			}
		})
	}
}

// TestFingerprint checks that the fingerprint a cluster compares covers the
// registered functions and jobs, and that scoped registrations end with
// their scope.
func TestFingerprint(t *testing.T) {
	before := engine.Fingerprint()
	regs := engine.NewRegistrations()
	must(t, regs.RegisterUDF("fp_len", func(s string) int64 { return int64(len(s)) }))
	withFunc := engine.Fingerprint()
	if withFunc == before || !slices.Contains(engine.Registered(), "function fp_len (string) -> bigint") {
		t.Fatalf("a registered UDF left the fingerprint unchanged or is not listed: %q", engine.Registered())
	}
	must(t, regs.RegisterJob(engine.Job{Name: "fp_job"}))
	if engine.Fingerprint() == withFunc || !slices.Contains(engine.Registered(), "job fp_job") {
		t.Fatalf("a registered job left the fingerprint unchanged or is not listed: %q", engine.Registered())
	}
	regs.Close()
	if engine.Fingerprint() != before {
		t.Fatalf("after Close, the registry still holds %q", engine.Registered())
	}
	if _, err := engine.LookupJob("fp_job"); !errors.Is(err, engine.ErrUnknownJob) {
		t.Fatalf("LookupJob after Close = %v", err)
	}
}

// TestLitOfUnsupportedType checks that Lit of a type it cannot hold is an
// analysis error when the query starts, wherever the literal is used.
// Before, Lit panicked.
func TestLitOfUnsupportedType(t *testing.T) {
	df := engine.NewSession().ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", "localhost:1").Option("subscribe", "logs").Load()
	for name, build := range map[string]func() *engine.DataFrame{
		"select": func() *engine.DataFrame { return df.Select(engine.Lit(time.Second)) },
		"filter": func() *engine.DataFrame { return df.Filter(engine.Col("offset").Gt(time.Second)) },
		"udf":    func() *engine.DataFrame { return df.Select(engine.Udf("f", engine.Lit(time.Second))) },
		"agg": func() *engine.DataFrame {
			return df.GroupBy(engine.Col("topic")).Agg(engine.Sum(engine.Col("offset").Plus(time.Second)))
		},
	} {
		_, err := build().WriteStream().Start(context.Background())
		if !errors.Is(err, engine.ErrAnalysis) || !strings.Contains(err.Error(), "Lit of a time.Duration: use a string, int") {
			t.Fatalf("%s: Start = %v, want ErrAnalysis naming time.Duration", name, err)
		}
	}
}
