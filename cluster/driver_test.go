package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
)

// TestNextAssignment: a job's first assignment spreads its Kafka
// partitions over the workers, one each in turn by name, and places its
// state partitions with owners in turn and standbys on the next worker;
// the next epoch keeps every partition where it was (sticky), gives a new
// Kafka partition to the worker reading the fewest and keeps the state
// partitions; with one worker there is no standby.
func TestNextAssignment(t *testing.T) {
	var parts []kafkaPartition
	for p := range int32(4) {
		parts = append(parts, kafkaPartition{"logs", 3 - p})
	}
	j := &clusterpb.Job{Name: "wc", KeyGroups: 128, ShufflePartitions: 4}
	a := nextAssignment(j, parts, []string{"s3", "s1", "s2"}, 2)
	if a.Epoch != 1 {
		t.Fatalf("epoch %d; want 1", a.Epoch)
	}
	if got, want := kafkaOf(a), "logs-0:s1 logs-1:s2 logs-2:s3 logs-3:s1"; got != want {
		t.Errorf("kafka %s; want %s", got, want)
	}
	if got, want := stateOf(a), "[0,32):s1/s2 [32,64):s2/s3 [64,96):s3/s1 [96,128):s1/s2"; got != want {
		t.Errorf("state %s; want %s", got, want)
	}

	// Partition 3 moved to s2 in an epoch before; a partition 4 appears.
	a.Kafka[3].Worker = "s2"
	j.Assignment = a
	next := nextAssignment(j, append(parts, kafkaPartition{"logs", 4}), []string{"s1", "s2", "s3"}, 2)
	if next.Epoch != 2 {
		t.Fatalf("epoch %d; want 2", next.Epoch)
	}
	if got, want := kafkaOf(next), "logs-0:s1 logs-1:s2 logs-2:s3 logs-3:s2 logs-4:s1"; got != want {
		t.Errorf("next kafka %s; want %s", got, want)
	}
	if got, want := stateOf(next), stateOf(a); got != want {
		t.Errorf("next state %s; want %s as before", got, want)
	}

	one := nextAssignment(&clusterpb.Job{Name: "wc", KeyGroups: 2, ShufflePartitions: 2}, parts[:1], []string{"s1"}, 2)
	if got, want := kafkaOf(one)+" "+stateOf(one), "logs-3:s1 [0,1):s1/ [1,2):s1/"; got != want {
		t.Errorf("one worker: %s; want %s", got, want)
	}
}

func kafkaOf(a *clusterpb.Assignment) string {
	s := ""
	for i, k := range a.Kafka {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s-%d:%s", k.Topic, k.Partition, k.Worker)
	}
	return s
}

func stateOf(a *clusterpb.Assignment) string {
	s := ""
	for i, p := range a.State {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("[%d,%d):%s/%s", p.FirstKeyGroup, p.EndKeyGroup, p.Owner, p.Standby)
	}
	return s
}

// TestBatchDriver runs word count jobs end to end on three in-process
// workers over the embedded Kafka broker, as `gostream worker` runs them
// (BatchDriver): the leader assigns the job, maps each batch on the workers
// its Kafka partitions are assigned to, reduces it on the state
// partitions' owners (replicated to their standbys), runs the jsonl sink
// and publishes its rows with the batch's report. The complete-mode job's
// last batch holds, and the update-mode job's rows add up to, the exact
// counts of the lines produced, in two runs of each job.
func TestBatchDriver(t *testing.T) {
	rng := testseed.Rand(t)
	brokers := embedtest.Start(t, "logs", 3)
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = BatchDriver })
	g.waitStatus(g.addrs(), allReachable)
	truth := map[string]int64{}
	produce := func(n int) {
		lines := make([]string, n)
		for i := range lines {
			ws := make([]string, 1+rng.IntN(6))
			for j := range ws {
				ws[j] = fmt.Sprint("w", rng.IntN(40))
			}
			lines[i] = strings.Join(ws, " ")
			for _, w := range ws {
				truth[w]++
			}
		}
		embedtest.Produce(t, brokers, "logs", lines...)
	}
	updated := map[string]int64{}
	for run := range 2 {
		produce(500 + rng.IntN(500))
		for _, mode := range []engine.OutputMode{engine.Complete, engine.Update} {
			name := "wc-" + strings.ToLower(mode.String())
			reports := runJob(t, g, name, brokers, mode, "jsonl")
			var last int64 = -1
			counts := map[string]int64{}
			for _, r := range reports {
				if mode == engine.Complete && r.BatchId > last {
					last, counts = r.BatchId, map[string]int64{}
				}
				for _, line := range strings.Split(strings.TrimSpace(string(r.Output)), "\n") {
					var row struct {
						Word  string `json:"word"`
						Count int64  `json:"count"`
					}
					if line == "" {
						continue
					}
					if err := json.Unmarshal([]byte(line), &row); err != nil {
						t.Fatalf("%s: a row %q: %v", name, line, err)
					}
					counts[row.Word] = row.Count
				}
			}
			if mode == engine.Update {
				maps.Copy(updated, counts)
				counts = updated
			}
			if !maps.Equal(counts, truth) {
				t.Fatalf("run %d, %s: counts %v; want %v", run, name, counts, truth)
			}
		}
	}
	// The console sink prints Spark's tables, gathered on the leader.
	reports := runJob(t, g, "wc-console", brokers, engine.Complete, "console")
	out := string(reports[len(reports)-1].Output)
	for _, want := range []string{"Batch: " + fmt.Sprint(reports[len(reports)-1].BatchId), "|word|count|", "only showing top 20 rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("the console output lacks %q:\n%s", want, out)
		}
	}
}

// runJob registers a word count job over topic logs on g with the sink
// format (console, or jsonl on the submitter's side), waits until it finished and returns the
// reports its run published.
func runJob(t *testing.T, g *nodeGroup, name, brokers string, mode engine.OutputMode, format string) []*clusterpb.Report {
	t.Helper()
	w := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("word")).
		GroupBy(engine.Col("word")).Count().
		WriteStream().Format(format).OutputMode(mode).Trigger(engine.AvailableNow()).QueryName(name)
	if format == "jsonl" {
		w.Option("path", "-")
	}
	p, err := w.Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := NewJob(name, p)
	if err != nil {
		t.Fatal(err)
	}
	var leader *Node
	waitFor(t, 20*time.Second, func() error {
		for _, n := range g.nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return n.apply(registerCmd(job))
			}
		}
		return fmt.Errorf("no leader")
	})
	var reps []*clusterpb.Report
	waitFor(t, 60*time.Second, func() error {
		j, _ := leader.fsm.Job(name)
		if j.GetState() == clusterpb.JobState_FAILED {
			t.Fatalf("job %s failed: %s", name, j.Error)
		}
		if j.GetState() != clusterpb.JobState_FINISHED {
			return fmt.Errorf("job %s is %s", name, j.GetState())
		}
		leader.jobs.mu.Lock()
		reps = leader.jobs.mu.reports[name]
		leader.jobs.mu.Unlock()
		return nil
	})
	return reps
}
