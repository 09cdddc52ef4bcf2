package clustertest_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkatest"
	"github.com/gostream/gostream/proto/clusterpb"
)

// sinkFile is the streaming job's jsonl file, relative: each worker
// writes its own, in its directory, while it leads.
const sinkFile = "counts.jsonl"

// streaming is a word count job running on a cluster batch after batch
// (trigger 200ms, complete mode, the jsonl sink writing a file on the
// leader's host) over a topic a producer keeps writing to.
type streaming struct {
	c     *clustertest.Cluster
	kc    *kafkatest.Cluster
	topic string
	rng   *rand.Rand
	vocab []string // the words of the lines produced

	mu    sync.Mutex
	truth map[string]int64

	stopProducing context.CancelFunc
	produced      chan struct{} // closed when the producer stopped
}

// streamSetup shapes a streaming job.
type streamSetup struct {
	partitions int32    // of the topic
	lines      int      // produced before the job starts
	vocab      []string // the words of the lines
	submit     []string // more arguments of submit
}

// startStreaming starts Apache Kafka with 3 brokers, a topic, three
// workers and the job, and a producer writing 100 random lines every
// 50ms until stopProducer.
func startStreaming(t *testing.T, setup streamSetup) *streaming {
	t.Helper()
	rng := testseed.Rand(t)
	kc := kafkatest.Start(t, kafkatest.Brokers(3))
	topic := kafkatest.UniqueTopic(t, "wc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kc.CreateTopic(ctx, topic, setup.partitions, 2); err != nil {
		t.Fatal(err)
	}
	s := &streaming{kc: kc, topic: topic, vocab: setup.vocab, rng: rng, truth: map[string]int64{}}
	s.c = clustertest.Start(t, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Addrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.produce(ctx, cl, rng, setup.lines); err != nil {
		t.Fatal(err)
	}

	sctx, stopSubmit := context.WithCancel(context.Background())
	follow := s.c.Command(sctx, append([]string{"submit", "wordcount", "--master", s.c.Master(), "--brokers", kc.BootstrapServers(), "--topic", topic,
		"--starting-offsets", "earliest", "--trigger", "200ms", "--max-offsets-per-trigger", "3000", "--output-mode", "complete",
		"--sink", "jsonl:" + sinkFile, "-q"}, setup.submit...)...)
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopSubmit()
		_ = follow.Wait()
	})

	pctx, stop := context.WithCancel(context.Background())
	s.stopProducing, s.produced = stop, make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(s.produced)
		defer cl.Close()
		for pctx.Err() == nil {
			if err := s.produce(pctx, cl, rng, 100); err != nil {
				if pctx.Err() == nil {
					errc <- err
				}
				return
			}
			select {
			case <-pctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		s.stopProducer(t)
		select {
		case err := <-errc:
			t.Errorf("the producer failed: %v", err)
		default:
		}
	})
	return s
}

// produce produces n random lines and adds their words to the truth once
// Kafka acknowledged them (a line is produced whole or not at all: one
// ProduceSync of records that each are one line).
func (s *streaming) produce(ctx context.Context, cl *kgo.Client, rng *rand.Rand, n int) error {
	counts := map[string]int64{}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		ws := make([]string, 1+rng.IntN(8))
		for j := range ws {
			ws[j] = s.vocab[rng.IntN(len(s.vocab))]
		}
		for _, w := range ws {
			counts[w]++
		}
		recs[i] = &kgo.Record{Topic: s.topic, Value: []byte(strings.Join(ws, " "))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w, c := range counts {
		s.truth[w] += c
	}
	return nil
}

// stopProducer stops the producer and waits for it.
func (s *streaming) stopProducer(t *testing.T) {
	s.stopProducing()
	<-s.produced
}

// batches reads w's jsonl file: each batch's counts, in file order. A
// last line without its newline is dropped: a leader deposed while it
// wrote a batch leaves it torn, as a crash does (the sink cuts it when
// that worker leads again). Any other line that is not a whole JSON
// object (overwritten in the middle) fails t.
func (s *streaming) batches(t *testing.T, w *clustertest.Worker) (ids []int64, counts []map[string]int64) {
	t.Helper()
	path := filepath.Join(w.Dir(), sinkFile)
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	for line := range bytes.Lines(b) {
		var row struct {
			Batch *int64 `json:"batch"`
			Word  string `json:"word"`
			Count int64  `json:"count"`
		}
		if err := json.Unmarshal(line, &row); err != nil || row.Batch == nil {
			t.Fatalf("%s: a line after batch %v, %q, is not a row of a batch: %v", path, ids[max(0, len(ids)-1):], line, err)
		}
		if len(ids) == 0 || ids[len(ids)-1] != *row.Batch {
			ids, counts = append(ids, *row.Batch), append(counts, map[string]int64{})
		}
		counts[len(counts)-1][row.Word] = row.Count
	}
	return ids, counts
}

// checkOutput fails t unless each worker's jsonl file holds its batches
// in order (the batches of the terms the worker led, the last one maybe
// cut short by a deposal) and every word's count never goes back from a
// batch to the next (complete mode: a count that goes back is a duplicate
// or a rollback that leaked), and returns the counts of the last batch any
// file holds.
func (s *streaming) checkOutput(t *testing.T) (int64, map[string]int64) {
	t.Helper()
	last, lastCounts := int64(-1), map[string]int64(nil)
	for _, w := range s.c.Workers {
		ids, counts := s.batches(t, w)
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("%s's jsonl file: batch %d follows batch %d (batches in file order: %v)", w.Name, ids[i], ids[i-1], ids)
			}
			for word, n := range counts[i] {
				if was := counts[i-1][word]; n < was {
					t.Fatalf("%s's jsonl file: %q counted %d in batch %d, then %d in batch %d", w.Name, word, was, ids[i-1], n, ids[i])
				}
			}
		}
		if len(ids) > 0 && ids[len(ids)-1] > last {
			last, lastCounts = ids[len(ids)-1], counts[len(counts)-1]
		}
	}
	return last, lastCounts
}

// waitExact stops the producer and waits until the last batch written
// counts every line produced, checking the files' batches.
func (s *streaming) waitExact(t *testing.T) {
	t.Helper()
	s.stopProducer(t)
	s.mu.Lock()
	truth := s.truth
	s.mu.Unlock()
	var last int64
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var counts map[string]int64
		last, counts = s.checkOutput(t)
		if mapsEqual(counts, truth) {
			break
		}
		if time.Now().After(deadline) {
			wantCounts(t, fmt.Sprintf("the last batch, %d, after 2 minutes", last), counts, truth)
			t.FailNow()
		}
	}
	t.Logf("batch %d counts every line produced exactly", last)
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// jobView polls the job's status through the members at addrs.
type jobView struct {
	cl *cluster.Client
}

func newJobView(t *testing.T, ws ...*clustertest.Worker) jobView {
	var addrs []string
	for _, w := range ws {
		addrs = append(addrs, w.Addr)
	}
	cl := cluster.NewClient(addrs)
	t.Cleanup(func() { cl.Close() })
	return jobView{cl: cl}
}

// job is the wordcount job's status, or nil while no leader answers.
func (v jobView) job() *clusterpb.JobStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	jobs, err := v.cl.Jobs(ctx, "wordcount")
	if err != nil || len(jobs) != 1 {
		return nil
	}
	return jobs[0]
}

// waitJob polls the job's status until done says so, and returns it.
func (v jobView) waitJob(t *testing.T, what string, done func(*clusterpb.JobStatus) bool) *clusterpb.JobStatus {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if js := v.job(); js != nil && done(js) {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after a minute; job %v", what, v.job())
		}
	}
}

// workerNamed is the worker named name.
func workerNamed(t *testing.T, c *clustertest.Cluster, name string) *clustertest.Worker {
	t.Helper()
	for _, w := range c.Workers {
		if w.Name == name {
			return w
		}
	}
	t.Fatalf("no worker %q", name)
	return nil
}

// others are c's workers but w.
func others(c *clustertest.Cluster, w *clustertest.Worker) []*clustertest.Worker {
	return slices.DeleteFunc(slices.Clone(c.Workers), func(o *clustertest.Worker) bool { return o == w })
}

// replicated reports whether every state partition of the job has a
// standby holding a current copy: a worker lost then loses no partition's
// only copy.
func replicated(js *clusterpb.JobStatus) bool {
	for _, sp := range js.Assignment.GetState() {
		if sp.Standby == "" || js.LastCommitted < sp.StandbyReadyFrom {
			return false
		}
	}
	return true
}

// waitKilled is how long TestClusterLeaderKilled waits for a commit
// without the killed worker before it restarts it.
const waitKilled = 10 * time.Second

// recovery is one leader kill's timeline, from the kill.
type recovery struct {
	driver  time.Duration // the new leader's driver runs (after election and barrier)
	epoch   time.Duration // it logged its assignment epoch
	planned time.Duration // it logged its first batch log entry (its first "offsets N", or a re-run's "commit N" with "offsets N+1")
	commit  time.Duration // it logged its first "commit N"
}

// logSince returns the lines of w's log of its leadership and its job
// driver since t, each with its time from t.
func logSince(tb testing.TB, w *clustertest.Worker, t time.Time) string {
	b, err := os.ReadFile(w.LogPath)
	if err != nil {
		tb.Fatal(err)
	}
	var out strings.Builder
	for line := range strings.Lines(string(b)) {
		at, ok := strings.CutPrefix(line, "time=")
		if !ok || !strings.Contains(line, "msg=cluster:") && !strings.Contains(line, "msg=\"cluster:") {
			continue
		}
		stamp, _, _ := strings.Cut(at, " ")
		when, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || when.Before(t) {
			continue
		}
		fmt.Fprintf(&out, "  +%v %s", when.Sub(t).Round(time.Millisecond), line)
	}
	return out.String()
}

// envCount is the positive number the environment variable name gives,
// def when it is not set.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// TestClusterLeaderKilled: a job runs batch after batch on three worker
// processes (trigger 200ms, real Kafka, new lines produced all along)
// while its leader is killed with SIGKILL, again and again (once every
// state partition has a current standby; the killed worker is restarted
// once a new leader committed a batch without it, or after waitKilled): a new leader resumes
// the job from the Raft batch log, moves the killed worker's work to the
// others and re-runs the batch in flight with the same ranges, and each
// worker's jsonl file (written while it leads) holds its batches in
// order, with counts that never go back, the last one the exact counts of
// every line produced. It logs each kill's timeline
// (new driver, its epoch, its first batch log entry, its first commit)
// and their medians; a run of many kills measures them:
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process GOSTREAM_LEADER_KILLS=10 \
//	  go test -count=1 -v -run '^TestClusterLeaderKilled$' ./cluster/clustertest
func TestClusterLeaderKilled(t *testing.T) {
	skipShort(t)
	s := startStreaming(t, streamSetup{partitions: 3, lines: 2000, vocab: words})
	all := newJobView(t, s.c.Workers...)
	all.waitJob(t, "the job commits a batch", func(js *clusterpb.JobStatus) bool { return js.LastCommitted >= 1 })
	var recs []recovery
	for i := range envCount(t, "GOSTREAM_LEADER_KILLS", 2) {
		before := all.waitJob(t, "a driver plans a batch, every state partition with a current standby", func(js *clusterpb.JobStatus) bool {
			return js.Driver != "" && js.LastPlanned > js.LastCommitted && replicated(js)
		})
		leader := workerNamed(t, s.c, before.Driver)
		survivors := newJobView(t, others(s.c, leader)...)
		killed := time.Now()
		leader.Kill(t)
		var (
			r    recovery
			base *clusterpb.JobStatus // the batch log as the new driver found it
		)
		js := survivors.waitJob(t, "a new leader drives the job", func(js *clusterpb.JobStatus) bool {
			since := time.Since(killed)
			if js.DriverTerm <= before.DriverTerm {
				return false
			}
			if base == nil {
				base, r.driver = js, since
			}
			if since > waitKilled && !leader.Running() {
				// The batch waits for the killed worker (it held a
				// partition's only current copy): restarted, as a
				// supervisor would, it serves it again.
				t.Logf("kill %d: no commit %v after the kill: %s restarted", i+1, waitKilled, leader.Name)
				leader.Start(t)
			}
			if js.Assignment.GetEpoch() > base.Assignment.GetEpoch() || base.Assignment.GetEpoch() > before.Assignment.GetEpoch() {
				r.epoch = cmp.Or(r.epoch, since)
			}
			if js.LastPlanned > base.LastPlanned || js.LastCommitted > base.LastCommitted {
				r.planned = cmp.Or(r.planned, since)
			}
			if js.LastCommitted > base.LastCommitted {
				r.commit = since
				return true
			}
			return false
		})
		t.Logf("kill %d: leader %s (term %d) killed while batch %d was in flight; %s drives the job in term %d after %v, logs epoch %d after %v, its first batch log entry after %v, commits batch %d after %v",
			i+1, leader.Name, before.DriverTerm, before.LastPlanned, js.Driver, js.DriverTerm, r.driver, js.Assignment.GetEpoch(), r.epoch, r.planned, js.LastCommitted, r.commit)
		t.Logf("kill %d: the new leader's log:\n%s", i+1, logSince(t, workerNamed(t, s.c, js.Driver), killed))
		recs = append(recs, r)
		if !leader.Running() {
			leader.Start(t)
		}
		s.c.WaitLeader(t)
	}
	median := func(f func(recovery) time.Duration) time.Duration {
		ds := make([]time.Duration, len(recs))
		for i, r := range recs {
			ds[i] = f(r)
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	t.Logf("medians of %d leader kills: driver %v, epoch %v, first batch log entry %v, commit %v", len(recs),
		median(func(r recovery) time.Duration { return r.driver }), median(func(r recovery) time.Duration { return r.epoch }),
		median(func(r recovery) time.Duration { return r.planned }), median(func(r recovery) time.Duration { return r.commit }))
	s.waitExact(t)
}

// fileState is path's size and modification time, or that it does not
// exist.
func fileState(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return "no file"
	}
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d bytes, modified %v", st.Size(), st.ModTime())
}

// TestClusterLeaderPaused: a leader paused with SIGSTOP while a batch is
// in flight, deposed, and resumed with SIGCONT once a new leader has
// committed that batch and the next, writes nothing more: its own jsonl
// file (each worker writes its own while it leads, as on separate hosts)
// does not change after it resumed, and every worker's file holds its
// batches in order, with counts that never go back, the last one the
// exact counts. The job has one Kafka partition and one state partition
// (owner and standby): the test restarts the leader until the worker
// holding none of them leads, so the others go on while it is paused. Its
// batches write about 20,000 rows (a vocabulary of 50,000 words), several
// writes each, so a pause often falls in the middle of the sink's writes,
// or while the batch's answers wait in its sockets: without the fence,
// the resumed leader went on writing. The pauses fall at random times
// (the seed is logged):
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process GOSTREAM_LEADER_PAUSES=10 \
//	  go test -count=1 -v -run '^TestClusterLeaderPaused$' ./cluster/clustertest
func TestClusterLeaderPaused(t *testing.T) {
	skipShort(t)
	vocab := make([]string, 50_000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%05d", i)
	}
	s := startStreaming(t, streamSetup{partitions: 1, lines: 20_000, vocab: vocab, submit: []string{"--shuffle-partitions", "1"}})
	rng := rand.New(rand.NewPCG(s.rng.Uint64(), 0)) // the pauses' times; the producer has s.rng
	all := newJobView(t, s.c.Workers...)
	all.waitJob(t, "the job commits a batch", func(js *clusterpb.JobStatus) bool { return js.LastCommitted >= 1 })
	for i := range envCount(t, "GOSTREAM_LEADER_PAUSES", 2) {
		var before *clusterpb.JobStatus
		for restarts := 0; ; restarts++ {
			before = all.waitJob(t, "a driver plans a batch", func(js *clusterpb.JobStatus) bool {
				return js.Driver != "" && js.LastPlanned > js.LastCommitted
			})
			if r, o, sb := holds(before.Assignment, before.Driver); !r && !o && !sb {
				break
			}
			if restarts == 20 {
				t.Fatalf("the leader held a partition of the job after 20 restarts of the leader: %v", before)
			}
			// Move the leadership on until the worker holding nothing has it.
			workerNamed(t, s.c, before.Driver).Restart(t)
			s.c.WaitLeader(t)
		}
		paused := workerNamed(t, s.c, before.Driver)
		time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		paused.Pause(t)
		stopped := time.Now()
		out := filepath.Join(paused.Dir(), sinkFile)
		was := fileState(t, out)
		js := newJobView(t, others(s.c, paused)...).waitJob(t, "a new leader commits the batch in flight and the next", func(js *clusterpb.JobStatus) bool {
			return js.DriverTerm > before.DriverTerm && js.LastCommitted > before.LastPlanned
		})
		paused.Resume(t)
		t.Logf("pause %d: %s (term %d) paused while batch %d was in flight; %s committed batch %d in term %d after %v; %s resumed",
			i+1, paused.Name, before.DriverTerm, before.LastPlanned, js.Driver, js.LastCommitted, js.DriverTerm, time.Since(stopped), paused.Name)
		s.c.WaitLeader(t)
		// Once the resumed member follows, what it would write, it has.
		all.waitJob(t, "the job runs on", func(js2 *clusterpb.JobStatus) bool { return js2.LastCommitted > js.LastCommitted })
		t.Logf("pause %d: %s's log since it was paused:\n%s", i+1, paused.Name, logSince(t, paused, stopped))
		if now := fileState(t, out); now != was {
			t.Fatalf("pause %d: %s, deposed while paused, changed its jsonl file after it resumed: %s; was %s", i+1, paused.Name, now, was)
		}
		s.checkOutput(t)
	}
	s.waitExact(t)
}

// TestClusterMinority: a leader whose two peers are paused (SIGSTOP) is a
// minority: it steps down, its log says why (no majority: it reaches 1 of
// 3 members, naming the two it cannot reach) and that it makes no
// progress, and `gostream cluster status` asked of it answers at once
// with its own view (no leader reachable from it, whom it reaches) rather
// than hanging. Pre-vote works over the workers' stream layer: campaigning
// alone, it does not raise its term (without pre-vote each election it
// starts raises it), so when the peers resume it does not depose
// anyone; they elect a leader in the next term, which status then shows
// with the leader changes.
func TestClusterMinority(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	st := c.WaitLeader(t)
	alone := workerNamed(t, c, st.Leader)
	paused := others(c, alone)
	for _, w := range paused {
		w.Pause(t)
	}
	cl := newJobView(t, alone).cl
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		out, err = run(t, c, nil, "cluster", "status", "--master", cluster.MasterScheme+alone.Addr)
		if err == nil && strings.Contains(out, "leader: none reachable from "+alone.Name) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status asked of %s, alone, after 30 s: %v\n%s", alone.Name, err, out)
		}
	}
	wantOut(t, "cluster status of the minority member", out, "reaches 1 of 3 members, itself included; a leader needs 2",
		"no progress on this side", "Unreachable")
	var warned string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		warned = logSince(t, alone, time.Time{})
		if strings.Contains(warned, "no leader reachable from this member") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say it has no leader after 30 s:\n%s", alone.Name, warned)
		}
	}
	wantOut(t, alone.Name+"'s log", warned, "cluster: lost leadership: no majority: "+alone.Name+" reaches 1 of 3 members",
		"it makes no progress")
	for _, w := range paused {
		wantOut(t, alone.Name+"'s log", warned, w.Name+" at "+w.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mine, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mine.Term != st.Term {
		t.Errorf("%s campaigned alone from term %d to %d: pre-vote should keep its term", alone.Name, st.Term, mine.Term)
	}

	for _, w := range paused {
		w.Resume(t)
	}
	healed := c.WaitLeader(t)
	if healed.Term != st.Term+1 {
		t.Errorf("after the peers resumed, leader %s in term %d; want term %d (one election: the member alone in term %d disrupts nothing)", healed.Leader, healed.Term, st.Term+1, st.Term)
	}
	out, err = run(t, c, nil, "cluster", "status", "--master", c.Master())
	if err != nil {
		t.Fatal(err)
	}
	wantOut(t, "cluster status once healed", out, "leader changes, as", fmt.Sprintf("term %d: leader %s", healed.Term, healed.Leader))
}
