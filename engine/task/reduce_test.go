package task_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/engine/task/tasktest"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
)

func col(name string) *planpb.Expr { return &planpb.Expr{Kind: &planpb.Expr_Column{Column: name}} }

// wordCount compiles groupBy(word).count() over
// explode(split(CAST(value AS STRING), ' ')) AS word.
func wordCount(t testing.TB) *operators.Aggregation {
	t.Helper()
	scan := &planpb.Plan{Node: &planpb.Plan_KafkaScan{KafkaScan: &planpb.KafkaScan{Subscribe: []string{"logs"}}}}
	lines := &planpb.Plan{Node: &planpb.Plan_Project{Project: &planpb.Project{Input: scan, Exprs: []*planpb.NamedExpr{
		{Expr: &planpb.Expr{Kind: &planpb.Expr_Cast{Cast: &planpb.Cast{Expr: col("value"), To: planpb.DataType_STRING}}}, Name: "value"},
	}}}}
	space := &planpb.Expr{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_String_{String_: " "}, Type: planpb.DataType_STRING}}}
	words := &planpb.Plan{Node: &planpb.Plan_Explode{Explode: &planpb.Explode{Input: lines,
		Generator: &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: "split", Args: []*planpb.Expr{col("value"), space}}}},
		Output:    "word"}}}
	agg, err := operators.CompileAggregate(&planpb.Aggregate{Input: words,
		GroupBy:    []*planpb.NamedExpr{{Expr: col("word"), Name: "word"}},
		Aggregates: []*planpb.AggregateExpr{{Function: planpb.AggregateFunction_COUNT, Name: "count"}}})
	if err != nil {
		t.Fatal(err)
	}
	return agg
}

// partitionBuckets is every task's bucket of partition p.
func partitionBuckets(tasks [][][]byte, p int) [][]byte {
	var out [][]byte
	for _, b := range tasks {
		out = append(out, b[p])
	}
	return out
}

// counts reads a word count's rows into word -> count.
func counts(t testing.TB, rows []operators.Row) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, r := range rows {
		w := string(r[0].B)
		if _, dup := out[w]; dup {
			t.Fatalf("word %q in two rows", w)
		}
		out[w] = r[1].I
	}
	return out
}

// stateCounts reads a store through EachRow.
func stateCounts(t testing.TB, red *task.Reducer, st state.Store) map[string]int64 {
	t.Helper()
	var buf operators.RowBuffer
	if err := red.EachRow(st, func(r operators.Row) error { buf.Add(r); return nil }); err != nil {
		t.Fatal(err)
	}
	return counts(t, buf.Rows())
}

// wordCounts counts the words of lines as Spark does (empty words too).
func wordCounts(lines ...string) map[string]int64 {
	out := map[string]int64{}
	for _, l := range lines {
		for _, w := range strings.Split(l, " ") {
			out[w]++
		}
	}
	return out
}

// providers are the state store implementations the reduce task runs on.
var providers = []struct {
	name string
	open func(t *testing.T) state.Provider
}{
	{"memory", func(t *testing.T) state.Provider { return state.NewMemory() }},
	{"pebble", func(t *testing.T) state.Provider { return openPebble(t, false) }},
	{"pebble-changelog", func(t *testing.T) state.Provider { return openPebble(t, true) }},
}

func openPebble(t *testing.T, changelog bool) state.Provider {
	opts := state.DefaultOptions()
	opts.Changelog = changelog
	opts.RetainVersions = 0
	p, err := state.OpenPebble(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// forEachProvider runs test on every state store implementation.
func forEachProvider(t *testing.T, test func(t *testing.T, p state.Provider)) {
	for _, pr := range providers {
		t.Run(pr.name, func(t *testing.T) {
			p := pr.open(t)
			t.Cleanup(func() {
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			})
			test(t, p)
		})
	}
}

func openStore(t *testing.T, p state.Provider, partition int) state.Store {
	t.Helper()
	st, err := p.Open(partition)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestReduceBatches reduces three batches of two map tasks into two state
// partitions: each batch's changed rows are the words it saw with their
// running counts, and the state holds the running counts at the batch's
// version.
func TestReduceBatches(t *testing.T) {
	const parts = 2
	batches := [][][]string{ // batch -> task -> lines
		{{"a b a", "c"}, {"b  d"}},
		{{"a"}, {"e a", ""}},
		{{}, {"b c"}},
	}
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		stores := []state.Store{openStore(t, p, 0), openStore(t, p, 1)}
		var all []string
		for batch, tasks := range batches {
			var buckets [][][]byte
			var lines []string
			for _, ls := range tasks {
				buckets = append(buckets, tasktest.Buckets(t, agg, parts, ls...))
				lines = append(lines, ls...)
			}
			all = append(all, lines...)
			total := wordCounts(all...)
			changed := map[string]int64{}
			var groups int64
			for part, st := range stores {
				var rows operators.RowBuffer
				res, err := red.Reduce(st, int64(batch), partitionBuckets(buckets, part), task.ReduceOptions{Rows: &rows})
				if err != nil {
					t.Fatalf("batch %d partition %d: %v", batch, part, err)
				}
				if res.Applied {
					t.Fatalf("batch %d partition %d: applied at its first run", batch, part)
				}
				if v := st.Version(); v != int64(batch) {
					t.Fatalf("batch %d partition %d: version %d", batch, part, v)
				}
				groups += res.Groups
				maps.Copy(changed, counts(t, rows.Rows()))
			}
			want := map[string]int64{}
			for w := range wordCounts(lines...) {
				want[w] = total[w]
			}
			if !maps.Equal(changed, want) {
				t.Fatalf("batch %d: changed rows %v, want %v", batch, changed, want)
			}
			if groups != int64(len(want)) {
				t.Fatalf("batch %d: %d groups, want %d", batch, groups, len(want))
			}
			got := map[string]int64{}
			for _, st := range stores {
				maps.Copy(got, stateCounts(t, red, st))
			}
			if !maps.Equal(got, total) {
				t.Fatalf("batch %d: state %v, want %v", batch, got, total)
			}
		}
	})
}

// TestReduceRerun runs a batch again over a store that committed it: the
// store is not written (no count doubles), and the changed rows are those
// of the first run, read from the state.
func TestReduceRerun(t *testing.T) {
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		st := openStore(t, p, 0)
		b0 := tasktest.Buckets(t, agg, 1, "x y x")
		b1 := tasktest.Buckets(t, agg, 1, "x z")
		if _, err := red.Reduce(st, 0, b0, task.ReduceOptions{}); err != nil {
			t.Fatal(err)
		}
		var first operators.RowBuffer
		if _, err := red.Reduce(st, 1, b1, task.ReduceOptions{Rows: &first}); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"update", "complete"} {
			var again operators.RowBuffer
			out := task.ReduceOptions{Rows: &again}
			if mode == "complete" {
				out = task.ReduceOptions{}
			}
			res, err := red.Reduce(st, 1, b1, out)
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			if !res.Applied || res.Groups != 2 {
				t.Fatalf("%s: rerun gave %+v, want applied with 2 groups", mode, res)
			}
			if got, want := counts(t, again.Rows()), counts(t, first.Rows()); mode == "update" && !maps.Equal(got, want) {
				t.Fatalf("%s: rerun's changed rows %v, want %v", mode, got, want)
			}
			if got, want := stateCounts(t, red, st), map[string]int64{"x": 3, "y": 1, "z": 1}; !maps.Equal(got, want) {
				t.Fatalf("%s: state after rerun %v, want %v", mode, got, want)
			}
			if st.Version() != 1 {
				t.Fatalf("%s: version %d after rerun", mode, st.Version())
			}
		}
	})
}

// TestReduceDamagedBucket: a damaged bucket fails the reduce with an error
// naming the partition and writes nothing; the store then reduces the
// batch as if the failure had not happened.
func TestReduceDamagedBucket(t *testing.T) {
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		st := openStore(t, p, 7)
		good := tasktest.Buckets(t, agg, 1, "a b")[0]
		bad := []byte{0xff, 0xff, 0xff}
		_, err := red.Reduce(st, 0, [][]byte{good, bad}, task.ReduceOptions{})
		if !errors.Is(err, operators.ErrCorrupt) || !strings.Contains(err.Error(), "state partition 7") {
			t.Fatalf("damaged bucket: %v, want operators.ErrCorrupt naming state partition 7", err)
		}
		if st.Version() != state.NoVersion || st.Len() != 0 {
			t.Fatalf("after a failed reduce: version %d, %d keys", st.Version(), st.Len())
		}
		if _, err := red.Reduce(st, 0, [][]byte{good}, task.ReduceOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, want := stateCounts(t, red, st), map[string]int64{"a": 1, "b": 1}; !maps.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
	})
}

// TestReduceConcurrentPartitions runs one Reducer on many partitions at
// once, as the local engine does (run it with -race): each partition's
// counts are exact.
func TestReduceConcurrentPartitions(t *testing.T) {
	const parts, batches = 8, 3
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		var lines []string
		for i := range 200 {
			lines = append(lines, fmt.Sprintf("w%d w%d w%d", i%37, i%11, i%5))
		}
		stores := make([]state.Store, parts)
		for part := range stores {
			stores[part] = openStore(t, p, part)
		}
		for batch := range int64(batches) {
			buckets := [][][]byte{tasktest.Buckets(t, agg, parts, lines[:100]...), tasktest.Buckets(t, agg, parts, lines[100:]...)}
			var wg sync.WaitGroup
			errs := make([]error, parts)
			for part := range parts {
				wg.Go(func() {
					_, errs[part] = red.Reduce(stores[part], batch, partitionBuckets(buckets, part), task.ReduceOptions{})
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]int64{}
		for _, st := range stores {
			maps.Copy(got, stateCounts(t, red, st))
		}
		want := wordCounts(lines...)
		for w := range want {
			want[w] *= batches
		}
		if !maps.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
	})
}

// TestReduceRecord: with ReduceOptions.Record, Reduced.Record is the
// batch's changelog record, a put of each changed group's key and the
// state the store holds, which decode to the rows ReduceOptions.Rows
// receives, on a first run and on a re-run. The record is the caller's:
// the store's next batch leaves it as it was (a changelog-mode store hands
// over the record it committed rather than reusing its memory).
func TestReduceRecord(t *testing.T) {
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		st := openStore(t, p, 3)
		if _, err := red.Reduce(st, 0, tasktest.Buckets(t, agg, 1, "p q p"), task.ReduceOptions{}); err != nil {
			t.Fatal(err)
		}
		b1 := tasktest.Buckets(t, agg, 1, "q r", "q")
		for _, run := range []string{"first", "rerun"} {
			var rows operators.RowBuffer
			res, err := red.Reduce(st, 1, b1, task.ReduceOptions{Rows: &rows, Record: true})
			if err != nil {
				t.Fatalf("%s: %v", run, err)
			}
			if res.Applied != (run == "rerun") {
				t.Fatalf("%s: applied %v", run, res.Applied)
			}
			states := map[string]string{}
			err = state.EachWrite(res.Record, func(k, v []byte, del bool) error {
				if _, dup := states[string(k)]; dup || del {
					return fmt.Errorf("key %q twice or deleted", k)
				}
				states[string(k)] = string(v)
				if got, ok, err := st.Get(k); err != nil || !ok || string(got) != string(v) {
					return fmt.Errorf("key %q: state %q, the store holds %q (%v, %v)", k, v, got, ok, err)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %v", run, err)
			}
			var recRows operators.RowBuffer
			if err := red.RecordRows(res.Record, func(r operators.Row) error { recRows.Add(r); return nil }); err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{"q": 3, "r": 1}
			if got := counts(t, rows.Rows()); !maps.Equal(got, want) {
				t.Fatalf("%s: rows %v, want %v", run, got, want)
			}
			if got := counts(t, recRows.Rows()); !maps.Equal(got, want) {
				t.Fatalf("%s: the record's rows %v, want %v", run, got, want)
			}
		}
		res, err := red.Reduce(st, 2, tasktest.Buckets(t, agg, 1, "r s"), task.ReduceOptions{Record: true})
		if err != nil {
			t.Fatal(err)
		}
		kept := slices.Clone(res.Record)
		if _, err := red.Reduce(st, 3, tasktest.Buckets(t, agg, 1, "t u v w x y z"), task.ReduceOptions{Record: true}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Record, kept) {
			t.Fatalf("batch 2's record changed with batch 3: %q, was %q", res.Record, kept)
		}
	})
}

// TestReduceBeforeCommit: a BeforeCommit that refuses fails the reduce with
// its error, and nothing is written; the batch then reduces as if it had
// not run.
func TestReduceBeforeCommit(t *testing.T) {
	errStale := errors.New("stale")
	forEachProvider(t, func(t *testing.T, p state.Provider) {
		agg := wordCount(t)
		red := task.NewReducer(agg)
		st := openStore(t, p, 0)
		b := tasktest.Buckets(t, agg, 1, "a b a")
		_, err := red.Reduce(st, 0, b, task.ReduceOptions{BeforeCommit: func() error { return errStale }})
		if !errors.Is(err, errStale) {
			t.Fatalf("refused commit: %v, want %v", err, errStale)
		}
		if st.Version() != state.NoVersion || st.Len() != 0 {
			t.Fatalf("after a refused commit: version %d, %d keys", st.Version(), st.Len())
		}
		checked := false
		if _, err := red.Reduce(st, 0, b, task.ReduceOptions{BeforeCommit: func() error { checked = true; return nil }}); err != nil || !checked {
			t.Fatalf("reduce: %v, BeforeCommit called: %v", err, checked)
		}
		if got, want := stateCounts(t, red, st), map[string]int64{"a": 2, "b": 1}; !maps.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
	})
}
