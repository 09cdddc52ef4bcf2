package engine

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/state"
)

// TestPlanMemorySplit checks the split of a budget: every share is
// positive, the shares add up to no more than the budget, the Go runtime's
// limit leaves room for Pebble's memory outside the Go heap, the state
// options are valid and a larger budget gives no consumer less.
func TestPlanMemorySplit(t *testing.T) {
	workers := int64(runtime.GOMAXPROCS(0))
	for _, backlog := range []bool{false, true} {
		for _, parts := range []int{1, 4, 200} {
			var prev memoryPlan
			for _, budget := range []int64{MinMemory, 128 << 20, DefaultMemory, 4 << 30, 64 << 30} {
				m := planMemory(budget, parts, backlog)
				name := fmt.Sprintf("budget %d MiB, %d partitions, backlog %v", budget>>20, parts, backlog)
				planned := fixedBytes + m.pebbleBytes() + int64(parts)*m.stateTable + m.fetchAhead + m.batch +
					workers*int64(m.partialGroups)*task.PartialGroupBytes
				if planned > budget {
					t.Errorf("%s: the shares add up to %d bytes, over the budget by %d", name, planned, planned-budget)
				}
				if m.memTable < 1<<20 || m.blockCache <= 0 || m.stateTable <= 0 || m.fetchAhead <= 0 || m.batch <= 0 ||
					m.partialGroups < task.MinPartialGroups || m.partialGroups > task.MaxPartialGroups {
					t.Errorf("%s: a share is out of range: %+v", name, m)
				}
				if m.readCache > m.stateTable || backlog && m.readCache != 0 {
					t.Errorf("%s: read cache %d, state table %d: the cache takes the table's place once it is freed, and a backlog query keeps none", name, m.readCache, m.stateTable)
				}
				if got := m.goLimit() + m.pebbleBytes() + codeBytes; got != budget || m.goLimit() < budget/2 {
					t.Errorf("%s: Go limit %d + Pebble %d + code %d = %d, want the budget", name, m.goLimit(), m.pebbleBytes(), int64(codeBytes), got)
				}
				opts := state.DefaultOptions()
				opts.RetainVersions, opts.Changelog = 0, true
				m.stateOptions(&opts)
				if err := opts.Validate(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				if prev.budget != 0 && (m.memTable < prev.memTable || m.blockCache < prev.blockCache || m.stateTable < prev.stateTable ||
					m.readCache < prev.readCache || m.fetchAhead < prev.fetchAhead || m.batch < prev.batch || m.partialGroups < prev.partialGroups) {
					t.Errorf("%s gives some consumer less than %d MiB: %+v, then %+v", name, prev.budget>>20, prev, m)
				}
				prev = m
			}
		}
	}
}

// TestMemoryBudgetApplied runs a word count whose lines hold 32 distinct
// words each with the smallest budget: while it runs, the Go runtime's soft
// limit is the budget's Go share, every batch is capped to what its groups
// may take (a first batch of at most budget/(32 groups a record), later ones
// sized by the groups a record measured), the counts are exact, and the
// limit is given back when the query ends. Without the budget the 4,000
// lines made one batch.
func TestMemoryBudgetApplied(t *testing.T) {
	const lines, wordsPerLine = 4000, 32
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := kafkasrc.StartEmbedded(ctx, "logs", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range lines {
		var words []string
		for j := range wordsPerLine {
			words = append(words, fmt.Sprintf("w%d-%d", i, j))
		}
		recs = append(recs, &kgo.Record{Topic: "logs", Value: []byte(strings.Join(words, " "))})
	}
	err = cl.ProduceSync(ctx, recs...).FirstErr()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}

	_, envLimit := os.LookupEnv("GOMEMLIMIT")
	before := debug.SetMemoryLimit(-1)
	plan := planMemory(MinMemory, DefaultShufflePartitions, true)
	s := NewSession()
	df := s.ReadStream().Format("kafka").
		Option("kafka.bootstrap.servers", strings.Join(e.Addrs(), ",")).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(Col("value").Cast(String)).
		Select(Explode(Split(Col("value"), " ")).As("word")).
		GroupBy(Col("word")).Count()
	var (
		mu     sync.Mutex
		limits []int64
		counts = map[string]int64{}
	)
	q, err := df.WriteStream().OutputMode(Update).Trigger(AvailableNow()).Memory(MinMemory).
		Option("checkpointLocation", t.TempDir()).
		ForeachBatch(func(_ context.Context, _ int64, rows []Row) error {
			mu.Lock()
			defer mu.Unlock()
			limits = append(limits, debug.SetMemoryLimit(-1))
			for _, r := range rows {
				counts[r.Get("word").(string)] = r.Get("count").(int64)
			}
			return nil
		}).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.AwaitTermination(ctx); err != nil {
		t.Fatal(err)
	}
	if len(counts) != lines*wordsPerLine {
		t.Fatalf("%d words counted, want %d", len(counts), lines*wordsPerLine)
	}
	for w, n := range counts {
		if n != 1 {
			t.Fatalf("count of %q = %d, want 1", w, n)
		}
	}
	sizer := plan.sizer(true)
	progress := q.RecentProgress()
	for i, p := range progress {
		if cap := sizer.Limit(); p.NumInputRows > cap {
			t.Errorf("batch %d read %d records, over the cap of %d for %d MiB", p.BatchID, p.NumInputRows, cap, MinMemory>>20)
		}
		if i+1 < len(progress) {
			sizer.Observe(p.NumInputRows, p.StateOperators[0].NumRowsUpdated, 0)
		}
	}
	t.Logf("%d batches", len(progress))
	if len(progress) < 2 {
		t.Errorf("%d batches: the %d lines of %d distinct words do not fit one batch of a %d MiB budget", len(progress), lines, wordsPerLine, MinMemory>>20)
	}
	for i, l := range limits {
		if want := plan.goLimit(); !envLimit && l != want {
			t.Errorf("batch %d ran with Go memory limit %d, want the budget's Go share %d", i, l, want)
		}
	}
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("Go memory limit after the query: %d, want %d as before (%v)", after, before, before == math.MaxInt64)
	}
}
