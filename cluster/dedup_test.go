package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
)

// TestBatchDriverDropDuplicates runs a dropDuplicates on three in-process
// workers over the embedded broker, in append and update mode: every word
// of the produced lines comes out exactly once over all batches and runs
// (the keys seen kept in the state partitions, replicated to their
// standbys), with a line that had it; the second run goes on from the
// state the first left.
func TestBatchDriverDropDuplicates(t *testing.T) {
	for _, mode := range []engine.OutputMode{engine.Append, engine.Update} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			rng := testseed.Rand(t)
			brokers := embedtest.Start(t, "logs", 3)
			g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = BatchDriver })
			g.waitStatus(g.addrs(), allReachable)
			w := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
				Option("subscribe", "logs").Option("startingOffsets", "earliest").Load().
				Select(engine.Col("value").Cast(engine.String).As("line"),
					engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("word")).
				DropDuplicates("word").
				WriteStream().Format("jsonl").Option("path", "-").OutputMode(mode).Trigger(engine.AvailableNow()).QueryName("firsts")
			p, err := w.Plan()
			if err != nil {
				t.Fatal(err)
			}
			words := map[string]bool{} // every word produced
			got := map[string]string{} // each word output, with its line
			var seen int64 = -1        // the last batch of the runs before
			for run := range 2 {
				produced := make([]string, 200+rng.IntN(200))
				for i := range produced {
					ws := make([]string, 1+rng.IntN(4))
					for j := range ws {
						ws[j] = fmt.Sprint("w", rng.IntN(100*(run+1)))
						words[ws[j]] = true
					}
					produced[i] = strings.Join(ws, " ")
				}
				embedtest.Produce(t, brokers, "logs", produced...)
				for _, r := range runPlan(t, g, "firsts", p) {
					if r.BatchId <= seen {
						continue
					}
					seen = r.BatchId
					for _, text := range strings.Split(strings.TrimSpace(string(r.Output)), "\n") {
						if text == "" {
							continue
						}
						var x struct{ Line, Word string }
						if err := json.Unmarshal([]byte(text), &x); err != nil {
							t.Fatalf("run %d batch %d: a row %q: %v", run, r.BatchId, text, err)
						}
						if line, dup := got[x.Word]; dup {
							t.Fatalf("run %d batch %d: word %q output twice (lines %q and %q)", run, r.BatchId, x.Word, line, x.Line)
						}
						if !strings.Contains(" "+x.Line+" ", " "+x.Word+" ") {
							t.Fatalf("run %d batch %d: word %q with line %q", run, r.BatchId, x.Word, x.Line)
						}
						got[x.Word] = x.Line
					}
				}
				for w := range words {
					if _, ok := got[w]; !ok {
						t.Fatalf("run %d: word %q never output (%d of %d words were)", run, w, len(got), len(words))
					}
				}
				if len(got) != len(words) {
					t.Fatalf("run %d: %d words output, %d produced", run, len(got), len(words))
				}
				checkReplicas(t, g, "firsts", len(words))
			}
		})
	}
}

// checkReplicas checks that the owner and the standby of each of job
// name's state partitions hold the same keys and states at the same
// version, keys in all.
func checkReplicas(t *testing.T, g *nodeGroup, name string, keys int) {
	t.Helper()
	node := map[string]*Node{}
	for _, n := range g.nodes {
		node[n.cfg.Name] = n
	}
	job, ok := g.nodes[0].fsm.Job(name)
	if !ok {
		t.Fatalf("no job %s", name)
	}
	read := func(member string, first int32) (int64, map[string]string) {
		p, err := node[member].states.partition(job, first)
		if err != nil {
			t.Fatal(err)
		}
		defer p.unlock(false, slog.Default())
		kv := map[string]string{}
		if err := p.st.Scan(func(k, v []byte) error { kv[string(k)] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		return p.st.Version(), kv
	}
	total := 0
	for i, sp := range job.Assignment.GetState() {
		ov, owned := read(sp.Owner, sp.FirstKeyGroup)
		sv, stood := read(sp.Standby, sp.FirstKeyGroup)
		if ov != sv || !maps.Equal(owned, stood) {
			t.Fatalf("state partition %d: owner %s at version %d with %d keys, standby %s at %d with %d", i, sp.Owner, ov, len(owned), sp.Standby, sv, len(stood))
		}
		total += len(owned)
	}
	if total != keys {
		t.Fatalf("the state partitions hold %d keys, want %d", total, keys)
	}
}

// TestBatchDriverDropDuplicatesWorkerLost: a dropDuplicates runs batch
// after batch on three in-process workers while new words keep coming; a
// worker that is not the leader is closed mid-job. Its state partitions'
// standbys take over from their copies and get new standbys by full
// copies, the batch in flight runs again, and over all the batches every
// word is output exactly once: none lost, none twice.
func TestBatchDriverDropDuplicatesWorkerLost(t *testing.T) {
	rng := testseed.Rand(t)
	brokers := embedtest.Start(t, "logs", 3)
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = BatchDriver })
	g.waitStatus(g.addrs(), allReachable)
	p, err := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Option("startingOffsets", "earliest").Option("maxOffsetsPerTrigger", "300").Load().
		Select(engine.Explode(engine.Split(engine.Col("value").Cast(engine.String), " ")).As("word")).
		DropDuplicates("word").
		WriteStream().Format("jsonl").Option("path", "-").OutputMode(engine.Append).ShufflePartitions(4).
		Trigger(engine.ProcessingTime(20 * time.Millisecond)).QueryName("firsts-lost").Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := NewJob("firsts-lost", p)
	if err != nil {
		t.Fatal(err)
	}
	leader := g.leader()
	if err := leader.apply(registerCmd(job)); err != nil {
		t.Fatal(err)
	}
	reports := watchReports(t, g, "firsts-lost", -1)
	words := map[string]bool{}
	vocabulary := 0
	produce := func(n int) {
		vocabulary += 30 // new words in every call
		lines := make([]string, n)
		for i := range lines {
			ws := make([]string, 1+rng.IntN(4))
			for j := range ws {
				ws[j] = fmt.Sprint("w", rng.IntN(vocabulary))
				words[ws[j]] = true
			}
			lines[i] = strings.Join(ws, " ")
		}
		embedtest.Produce(t, brokers, "logs", lines...)
	}
	// output reads every batch's rows the leaders reported: each word and
	// the batch that output it, or an error naming a word output twice.
	output := func() (map[string]int64, error) {
		if st := reports.status(); st.GetState() == clusterpb.JobState_FAILED {
			t.Fatalf("the job failed: %s", st.Error)
		}
		got := map[string]int64{}
		for _, r := range reports.reports() {
			for _, text := range strings.Split(strings.TrimSpace(string(r.Output)), "\n") {
				var row struct{ Word string }
				if text == "" {
					continue
				}
				if err := json.Unmarshal([]byte(text), &row); err != nil {
					t.Fatalf("batch %d: a row %q: %v", r.BatchId, text, err)
				}
				if b, dup := got[row.Word]; dup {
					return nil, fmt.Errorf("word %q output by batch %d and by batch %d", row.Word, b, r.BatchId)
				}
				got[row.Word] = r.BatchId
			}
		}
		return got, nil
	}
	for range 3 {
		produce(200 + rng.IntN(200))
	}
	waitFor(t, 30*time.Second, func() error {
		got, err := output()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return errors.New("no batch output yet")
		}
		return nil
	})
	var lost *Node
	for _, n := range g.nodes {
		if n != leader && (lost == nil || rng.IntN(2) == 0) {
			lost = n
		}
	}
	t.Logf("closing %s while the job runs", lost.cfg.Name)
	produce(300)
	lost.Close()
	for range 4 {
		produce(200 + rng.IntN(200))
	}
	waitFor(t, 60*time.Second, func() error {
		got, err := output()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(words) {
			return fmt.Errorf("%d words output of %d", len(got), len(words))
		}
		for w := range words {
			if _, ok := got[w]; !ok {
				return fmt.Errorf("word %q not output", w)
			}
		}
		return nil
	})
	// The first leader applies the epochs the last leader logged, if the
	// leadership moved on.
	waitFor(t, 10*time.Second, func() error {
		if j, _ := leader.fsm.Job("firsts-lost"); slices.Contains(assigned(j.Assignment), lost.cfg.Name) {
			return fmt.Errorf("epoch %d still assigns work to %s", j.Assignment.GetEpoch(), lost.cfg.Name)
		}
		return nil
	})
}
