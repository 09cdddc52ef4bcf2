package cluster

import (
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/clusterpb"
)

// TestKeptPartialsReusable: a task's kept partials hold for a later task
// of the same batch and timestamp, the same state partition layout (any
// owners), whose ranges include the kept ones exactly; anything else maps
// again.
func TestKeptPartialsReusable(t *testing.T) {
	job := func(owner string, ranges ...[2]int32) *clusterpb.Job {
		a := &clusterpb.Assignment{}
		for _, r := range ranges {
			a.State = append(a.State, &clusterpb.StatePartition{FirstKeyGroup: r[0], EndKeyGroup: r[1], Owner: owner})
		}
		return &clusterpb.Job{Name: "j", KeyGroups: 128, Assignment: a}
	}
	r0 := kafkasrc.Range{Topic: "logs", Partition: 0, From: 10, Until: 20}
	r1 := kafkasrc.Range{Topic: "logs", Partition: 1, From: 5, Until: 9}
	old := job("s1", [2]int32{0, 64}, [2]int32{64, 128})
	groups, layout := stateLayout(old)
	k := &keptPartials{batch: 7, timestampMs: 1000, keyGroups: groups, layout: layout, ranges: []kafkasrc.Range{r0}}
	for _, c := range []struct {
		what   string
		job    *clusterpb.Job
		batch  int64
		ts     int64
		ranges []kafkasrc.Range
		want   bool
	}{
		{"same ranges, owners moved", job("s2", [2]int32{0, 64}, [2]int32{64, 128}), 7, 1000, []kafkasrc.Range{r0}, true},
		{"the kept ranges and a moved one", old, 7, 1000, []kafkasrc.Range{r1, r0}, true},
		{"other ranges", old, 7, 1000, []kafkasrc.Range{r1}, false},
		{"a range cut otherwise", old, 7, 1000, []kafkasrc.Range{{Topic: "logs", Partition: 0, From: 10, Until: 21}}, false},
		{"another batch", old, 8, 1000, []kafkasrc.Range{r0}, false},
		{"another timestamp", old, 7, 1001, []kafkasrc.Range{r0}, false},
		{"another partition layout", job("s1", [2]int32{0, 32}, [2]int32{32, 128}), 7, 1000, []kafkasrc.Range{r0}, false},
		{"more state partitions", job("s1", [2]int32{0, 64}, [2]int32{64, 96}, [2]int32{96, 128}), 7, 1000, []kafkasrc.Range{r0}, false},
		{"other key groups", &clusterpb.Job{KeyGroups: 256, Assignment: old.Assignment}, 7, 1000, []kafkasrc.Range{r0}, false},
	} {
		if got := k.reusable(c.job, c.batch, c.ts, c.ranges); got != c.want {
			t.Errorf("%s: reusable %v; want %v", c.what, got, c.want)
		}
	}
	if (*keptPartials)(nil).reusable(old, 7, 1000, []kafkasrc.Range{r0}) {
		t.Error("nothing kept: reusable")
	}
}

// TestKeptPartialsBudget: the partials of the oldest batches are dropped
// while the kept buckets take more than half the job's map memory, so a
// task that runs again then maps again.
func TestKeptPartialsBudget(t *testing.T) {
	m := newMapJobs(100, func() int { return 1 })
	sized := func(batch int64, n int) *keptPartials {
		return &keptPartials{batch: batch, outs: []task.Output{{Buckets: [][]byte{make([]byte, n/2), make([]byte, n-n/2)}}}}
	}
	var kept []*keptPartials
	batches := func() (bs []int64) {
		for _, k := range kept {
			bs = append(bs, k.batch)
		}
		return bs
	}
	m.keep(&kept, sized(4, 20))
	m.keep(&kept, sized(3, 30)) // a re-run of the batch before
	if got := batches(); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("50 bytes of a budget of 100: kept batches %v; want [3 4]", got)
	}
	m.keep(&kept, sized(5, 1))
	if got := batches(); !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("51 bytes: kept batches %v; want [4 5]", got)
	}
	m.keep(&kept, sized(6, 51))
	if got := batches(); len(got) != 0 {
		t.Fatalf("a task of 51 bytes: kept batches %v; want none", got)
	}
}

// rerun is a driver's log line of a batch mapped again.
var rerun = regexp.MustCompile(`msg="cluster: a batch mapped again[^"]*".* job=\S+ batch=(\d+) epoch=(\d+) records_read=(\d+) records_reused=(\d+) moved_offsets=(\d+) offsets=(\d+)`)

// checkShareReread checks, from a group's logs, that the batches mapped
// again after a worker was lost read again only the ranges that moved
// (the workers whose ranges stayed pushed the partials they kept), and
// that some map task re-used its partials.
func checkShareReread(t *testing.T, logs string) {
	t.Helper()
	reruns := rerun.FindAllStringSubmatch(logs, -1)
	if len(reruns) == 0 {
		t.Fatal("no batch was mapped again")
	}
	var reused int64
	for _, r := range reruns {
		t.Log(r[0])
		n := make([]int64, 4) // read, reused, moved, offsets
		for i := range n {
			n[i], _ = strconv.ParseInt(r[3+i], 10, 64)
		}
		// A try that failed after its map (a push refused) kept its
		// partials too: the next try in the epoch reads nothing again.
		if n[0] > n[2] {
			t.Errorf("batch %s mapped again in epoch %s read %d records; want at most those of the ranges that moved, %d", r[1], r[2], n[0], n[2])
		}
		if n[0]+n[1] != n[3] {
			t.Errorf("batch %s mapped again in epoch %s: %d records read and %d re-used; want the batch's %d", r[1], r[2], n[0], n[1], n[3])
		}
		reused += n[1]
	}
	if reused == 0 {
		t.Error("no map task re-used its partials")
	}
}

// TestMapRerunMillion runs both map tasks of a batch of 1M lines (word
// count, two workers) four times, as a failover runs a batch again: every
// run after the first reads nothing and re-uses the partials its worker
// kept, and the owners' partials of the last attempts hold the exact
// counts. An election before the first run makes each task's first
// attempt stale; each run is a later attempt than any before it. It logs
// each run's time (the re-run's cost); it produces 1M lines, so it does
// not run with -short.
func TestMapRerunMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("produces 1M lines; run without -short")
	}
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	brokers, topic := embedtest.Start(t, "logs", 3), "logs"
	r := newMapRig(t, brokers, topic)
	lines, want := randomLines(rng, 1_000_000)
	for c := range slices.Chunk(lines, 50_000) {
		embedtest.Produce(t, brokers, topic, c...)
	}
	reqs := r.tasks("wc", 0, kafkasrc.Offsets{topic: {0: 0, 1: 0, 2: 0}}, latestOffsets(t, brokers, topic))
	// An election between planning the tasks and running them (on a
	// loaded machine, any time) refuses them as of a stale term: mapOn
	// runs them again in the new term, as a next attempt.
	if err := r.g.leader().raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 4; run++ {
		for w, req := range reqs {
			if run > 1 {
				req.Attempt++ // after the last one mapOn made
			}
			start := time.Now()
			resp, err := r.mapOn(w, req)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("run %d of task %d (attempt %d): %v (read %d records, re-used %d)", run, req.Task, req.Attempt, time.Since(start).Round(time.Millisecond), resp.Records, resp.ReusedRecords)
			if run > 1 && (resp.Records != 0 || resp.ReusedRecords == 0) {
				t.Errorf("run %d of task %d (attempt %d) read %d records and re-used %d; want its partials re-used", run, req.Task, req.Attempt, resp.Records, resp.ReusedRecords)
			}
		}
	}
	if got := r.counts("wc", 0); !maps.Equal(got, want) {
		t.Fatalf("the owners received counts of %d words, want %d", len(got), len(want))
	}
}
