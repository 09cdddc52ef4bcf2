package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/protobuf/proto"
)

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
	produce, truth := wordProducer(t, rng, brokers)
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
				jsonlCounts(t, r.Output, counts)
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
	if len(reports) == 0 {
		t.Fatal("the console job reported no batch")
	}
	out := string(reports[len(reports)-1].Output)
	for _, want := range []string{"Batch: " + fmt.Sprint(reports[len(reports)-1].BatchId), "|word|count|", "only showing top 20 rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("the console output lacks %q:\n%s", want, out)
		}
	}
}

// TestBatchDriverNarrow runs a job without an aggregation (select, filter,
// explode; append mode) on three in-process workers over the embedded
// Kafka broker: the workers stream each range's rows to the leader, which
// runs the jsonl sink. Each line's words but "w0" come out once, in the
// line's order, each batch's rows in (partition, offset) order, in two
// runs of the job (the second reads only the lines produced after the
// first).
func TestBatchDriverNarrow(t *testing.T) {
	rng := testseed.Rand(t)
	brokers := embedtest.Start(t, "logs", 3)
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = BatchDriver })
	g.waitStatus(g.addrs(), allReachable)
	w := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
		Select(engine.Col("partition"), engine.Col("offset"), engine.Col("value").Cast(engine.String).As("line"),
			engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("word")).
		Where(engine.Col("word").Ne("w0")).
		WriteStream().Format("jsonl").Option("path", "-").OutputMode(engine.Append).Trigger(engine.AvailableNow()).QueryName("words")
	p, err := w.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var seen int64 = -1   // the last batch of the runs before
	var lastOutput []byte // seen's output
	for run := range 2 {
		rerun := int64(-1)
		if run == 1 {
			// Batch seen+1 plans seen's offsets again and the job stops
			// before it commits: the next run re-runs it first, and its
			// rows are seen's, byte for byte.
			rerunLast(t, g, "words", seen)
			rerun = seen + 1
		}
		lines := map[string]int{} // produced in this run, by line
		n := 300 + rng.IntN(300)
		produced := make([]string, n)
		for i := range produced {
			ws := make([]string, 1+rng.IntN(5))
			for j := range ws {
				ws[j] = fmt.Sprint("w", rng.IntN(10))
			}
			produced[i] = strings.Join(ws, " ") + fmt.Sprintf(" r%di%d", run, i) // each line unique
			lines[produced[i]]++
		}
		embedtest.Produce(t, brokers, "logs", produced...)
		type row struct {
			Partition int64  `json:"partition"`
			Offset    int64  `json:"offset"`
			Line      string `json:"line"`
			Word      string `json:"word"`
		}
		got := map[string][]string{}                  // words by line
		for _, r := range runPlan(t, g, "words", p) { // the reports of every run
			if r.BatchId <= seen {
				continue
			}
			if r.BatchId == rerun {
				if got, want := unbatched(r.Output, r.BatchId), unbatched(lastOutput, seen); got != want {
					t.Fatalf("re-run of batch %d's offsets as batch %d wrote\n%s\nwant, as the first run\n%s", seen, r.BatchId, got, want)
				}
				seen, rerun = r.BatchId, -2 // seen
				continue
			}
			seen, lastOutput = r.BatchId, r.Output
			var prev row
			for i, text := range strings.Split(strings.TrimSpace(string(r.Output)), "\n") {
				if text == "" {
					continue
				}
				var x row
				if err := json.Unmarshal([]byte(text), &x); err != nil {
					t.Fatalf("run %d batch %d: a row %q: %v", run, r.BatchId, text, err)
				}
				if i > 0 && (x.Partition < prev.Partition || x.Partition == prev.Partition && x.Offset < prev.Offset) {
					t.Fatalf("run %d batch %d: row %+v after %+v: not in (partition, offset) order", run, r.BatchId, x, prev)
				}
				prev = x
				got[x.Line] = append(got[x.Line], x.Word)
			}
		}
		for line := range lines {
			var want []string
			for _, w := range strings.Fields(line) {
				if w != "w0" {
					want = append(want, w)
				}
			}
			if g := strings.Join(got[line], " "); g != strings.Join(want, " ") {
				t.Fatalf("run %d: line %q gave words %q; want %q", run, line, g, want)
			}
			delete(got, line)
		}
		if len(got) > 0 {
			t.Fatalf("run %d: rows of %d lines not produced in this run, e.g. %v", run, len(got), got)
		}
		if len(lastOutput) == 0 {
			t.Fatalf("run %d: its last batch %d wrote no rows", run, seen)
		}
		if rerun >= 0 {
			t.Fatalf("run %d: no report of re-run batch %d", run, rerun)
		}
	}
}

// unbatched is a jsonl sink's output of batch without its rows' batch
// field.
func unbatched(out []byte, batch int64) string {
	return strings.ReplaceAll(string(out), fmt.Sprintf(`{"batch":%d,`, batch), "{")
}

// rerunLast logs, on g's leader, job name's batch last+1 over the offsets
// of its last batch, last, which committed: as if the driver stopped after
// it planned batch last+1 and before it committed it.
func rerunLast(t *testing.T, g *nodeGroup, name string, last int64) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		for _, n := range g.nodes {
			if n.raft.State() != raft.Leader {
				continue
			}
			j, _ := n.fsm.Job(name)
			var e *clusterpb.OffsetsEntry
			for _, l := range j.GetBatchLog() {
				if o := l.GetOffsets(); o != nil && o.BatchId == last {
					e = proto.CloneOf(o)
				}
			}
			if e == nil {
				t.Fatalf("job %s logs no batch %d: %v", name, last, j.GetBatchLog())
			}
			e.BatchId++
			return n.apply(&clusterpb.Command{Kind: &clusterpb.Command_AppendBatchLog{AppendBatchLog: &clusterpb.AppendBatchLog{Job: name,
				Entries: []*clusterpb.BatchLogEntry{{Kind: &clusterpb.BatchLogEntry_Offsets{Offsets: e}}}}}})
		}
		return fmt.Errorf("no leader")
	})
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
	return runPlan(t, g, name, p)
}

// runPlan registers job name of plan p on g, waits until it finished and
// returns the reports of the batches it committed, one per batch in
// batch order, as the submitter receives them: followed through
// Client.Watch, which follows a new leader (a driver's reports are its
// leader's own, so a leader change on a loaded machine must not lose
// them).
func runPlan(t *testing.T, g *nodeGroup, name string, p *engine.QueryPlan) []*clusterpb.Report {
	t.Helper()
	job, err := NewJob(name, p)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(g.addrs())
	defer c.Close()
	ctx := context.Background()
	after := int64(-1) // the last batch committed before this run
	if js, err := c.Jobs(ctx, ""); err != nil {
		t.Fatal(err)
	} else if i := slices.IndexFunc(js, func(j *clusterpb.JobStatus) bool { return j.Name == name }); i >= 0 {
		after = js[i].LastCommitted
	}
	if _, err := c.RegisterJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	w := watchReports(t, g, name, after)
	st := w.wait(t, 60*time.Second)
	if st.GetState() != clusterpb.JobState_FINISHED {
		t.Fatalf("job %s ended %s: %s", name, st.GetState(), st.GetError())
	}
	return w.reports()
}

// reportWatch follows a job's reports through Client.Watch, as submit
// does, keeping each batch's last report (a batch that runs again under a
// new leader reports again).
type reportWatch struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once Watch returned
	mu     struct {
		sync.Mutex
		byBatch map[int64]*clusterpb.Report
		status  *clusterpb.JobStatus // the last status received
		terms   []uint64             // the terms of the driver runs seen
		err     error                // Watch's, once done
	}
}

// watchReports follows job name's reports of the batches after after
// until the job is no longer running or the test ends.
func watchReports(t *testing.T, g *nodeGroup, name string, after int64) *reportWatch {
	c := NewClient(g.addrs())
	ctx, cancel := context.WithCancel(context.Background())
	w := &reportWatch{cancel: cancel, done: make(chan struct{})}
	w.mu.byBatch = map[int64]*clusterpb.Report{}
	go func() {
		defer close(w.done)
		err := c.Watch(ctx, name, &after, func(ev *clusterpb.WatchEvent) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if r := ev.GetReport(); r != nil {
				w.mu.byBatch[r.BatchId] = r
			}
			if st := ev.GetStatus(); st != nil {
				w.mu.status = st
				if st.DriverTerm != 0 && !slices.Contains(w.mu.terms, st.DriverTerm) {
					w.mu.terms = append(w.mu.terms, st.DriverTerm)
				}
			}
			return nil
		})
		w.mu.Lock()
		w.mu.err = err
		w.mu.Unlock()
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
		c.Close()
	})
	return w
}

// reports is the reports received so far, in batch order.
func (w *reportWatch) reports() []*clusterpb.Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.SortedFunc(maps.Values(w.mu.byBatch), func(a, b *clusterpb.Report) int { return cmp.Compare(a.BatchId, b.BatchId) })
}

// status is the job's last status received, nil before the first.
func (w *reportWatch) status() *clusterpb.JobStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.status
}

// wait waits up to timeout for the watch to end with the job no longer
// running, and returns the job's last status.
func (w *reportWatch) wait(t *testing.T, timeout time.Duration) *clusterpb.JobStatus {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		w.cancel()
		<-w.done
		t.Fatalf("the job still runs after %v", timeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.err != nil {
		t.Fatalf("watching the job: %v", w.mu.err)
	}
	if len(w.mu.terms) > 1 {
		t.Logf("job %s: driver runs in terms %v (leader changes)", w.mu.status.GetName(), w.mu.terms)
	}
	return w.mu.status
}
