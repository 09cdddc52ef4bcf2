package task_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/engine/task/tasktest"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/state"
)

// BenchmarkReduceZipf is an owner's reduce of one of 4 state partitions in
// the bench suite's throughput run: batches of 200,000 lines of 9 words
// drawn from a 250,000-word Zipf vocabulary (each batch changes about
// 25,000 groups of the partition's 60,000), reduced into a changelog-mode
// Pebble store that holds the earlier batches. "three" reduces three map
// tasks' buckets, "three-processes" three map tasks' of as many
// processes (a cluster's owner: each process's partials have hash seeds,
// and so a group order, of their own) and takes the batch's changelog
// record as a cluster's owner does (ReduceOptions.Record), "one" a single
// map task's (local mode, whose map side folds its partials). It reports
// the time per batch and per group changed; the batches are made
// beforehand.
func BenchmarkReduceZipf(b *testing.B) {
	const parts, batches, lines = 4, 4, 200_000
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 2, 249_999)
	batchLines := make([][]string, batches)
	for i := range batchLines {
		for range lines {
			var line strings.Builder
			for w := range 9 {
				if w > 0 {
					line.WriteByte(' ')
				}
				fmt.Fprintf(&line, "w%d", zipf.Uint64())
			}
			batchLines[i] = append(batchLines[i], line.String())
		}
	}
	for _, c := range []struct {
		name      string
		tasks     int
		processes bool
	}{{"three", 3, false}, {"three-processes", 3, true}, {"one", 1, false}} {
		b.Run(c.name, func(b *testing.B) {
			tasks := c.tasks
			agg := wordCount(b)
			red := task.NewReducer(agg)
			maps := make([]*operators.Aggregation, tasks) // each map task's aggregation
			for t := range maps {
				maps[t] = agg
				if c.processes {
					maps[t] = wordCount(b)
				}
			}
			buckets := make([][][]byte, batches) // batch -> task's bucket of partition 0
			for i, ls := range batchLines {
				for t := range tasks {
					buckets[i] = append(buckets[i], tasktest.Buckets(b, maps[t], parts, ls[t*len(ls)/tasks:(t+1)*len(ls)/tasks]...)[0])
				}
			}
			opts := state.DefaultOptions()
			opts.Changelog, opts.RetainVersions, opts.DeferSync = true, 0, true
			opts.Logger = slog.New(slog.DiscardHandler)
			p, err := state.OpenPebble(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			st, err := p.Open(0)
			if err != nil {
				b.Fatal(err)
			}
			var version int64
			reduce := func() task.Reduced {
				res, err := red.Reduce(st, version, buckets[version%batches], task.ReduceOptions{Record: c.processes})
				if err != nil {
					b.Fatal(err)
				}
				version++
				return res
			}
			for range batches { // the state holds every batch's words
				reduce()
			}
			var groups int64
			b.ReportAllocs()
			for b.Loop() {
				groups += reduce().Groups
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(groups), "ns/group")
			b.ReportMetric(float64(st.Len()), "state-groups")
		})
	}
}
