package cluster

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/embedtest"
)

// TestBatchDriverMemoryCap: a job's memory budget (submit --memory) caps
// its batches as in local mode: with the smallest budget and no
// maxOffsetsPerTrigger, a backlog of 20,000 distinct words is counted in
// several batches, the first capped by the first batch's assumption of 32
// groups a record, exactly. Before, the leader planned one batch of every
// record.
func TestBatchDriverMemoryCap(t *testing.T) {
	const lines = 20_000
	brokers := embedtest.Start(t, "logs", 2)
	words := make([]string, lines)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	embedtest.Produce(t, brokers, "logs", words...)
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = BatchDriver })
	g.waitStatus(g.addrs(), allReachable)
	p, err := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("word")).
		GroupBy(engine.Col("word")).Count().
		WriteStream().Format("jsonl").Option("path", "-").OutputMode(engine.Update).Trigger(engine.AvailableNow()).
		QueryName("wc-capped").Memory(engine.MinMemory).Plan()
	if err != nil {
		t.Fatal(err)
	}
	reps := runPlan(t, g, "wc-capped", p)
	var read int64
	counts := map[string]int64{}
	for _, r := range reps {
		var pr engine.Progress
		if err := json.Unmarshal(r.Progress, &pr); err != nil {
			t.Fatal(err)
		}
		t.Logf("batch %d: %d records", pr.BatchID, pr.NumInputRows)
		read += pr.NumInputRows
		jsonlCounts(t, r.Output, counts)
	}
	if len(reps) < 2 || read != lines {
		t.Fatalf("%d batches read %d records; want %d in 2 or more (the budget caps the first)", len(reps), read, lines)
	}
	if len(counts) != lines {
		t.Fatalf("%d words counted; want %d", len(counts), lines)
	}
	for w, n := range counts {
		if n != 1 {
			t.Fatalf("%s counted %d times; want 1", w, n)
		}
	}
}
