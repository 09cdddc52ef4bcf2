package cluster

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/kafkatest"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
)

// mapRig is two in-process workers, s1 and s2, with a word count job
// registered and assigned over Kafka partitions of a topic with 3
// partitions: the test plays the driver.
type mapRig struct {
	t       *testing.T
	g       *nodeGroup
	leader  *Node
	brokers string
	topic   string
	plan    *task.Plan
	// The job's assignment: Kafka partitions 0 and 1 to s1, 2 to s2; key
	// groups [0, 50) to s1, [50, 128) to s2.
	assignment *clusterpb.Assignment
}

const mapRigKeyGroups = 128

// wordCountPlan is word count over topic, as a serialized planpb.Query.
// With udf, each line first goes through cluster_test_panics_on_boom.
func wordCountPlan(t *testing.T, brokers, topic string, udf bool) ([]byte, *task.Plan) {
	t.Helper()
	lines := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", topic).Option("startingOffsets", "earliest").Load().
		Select(engine.Col("value").Cast(engine.String).As("value"))
	if udf {
		lines = lines.Select(engine.Udf("cluster_test_panics_on_boom", engine.Col("value")).As("value"))
	}
	df := lines.Select(engine.Explode(engine.Split(engine.Col("value"), " ")).As("word")).GroupBy(engine.Col("word")).Count()
	if err := df.Err(); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&planpb.Query{Name: "wc", Plan: df.Plan(), OutputMode: planpb.OutputMode_COMPLETE})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := task.Compile(df.Plan())
	if err != nil {
		t.Fatal(err)
	}
	return b, plan
}

func newMapRig(t *testing.T, brokers, topic string) *mapRig {
	g := newNodeGroup(t, 2)
	g.waitStatus(g.addrs(), allReachable)
	r := &mapRig{t: t, g: g, brokers: brokers, topic: topic}
	for _, n := range g.nodes {
		if n.raft.State() == raft.Leader {
			r.leader = n
		}
	}
	if r.leader == nil {
		t.Fatal("no leader")
	}
	var planBytes []byte
	planBytes, r.plan = wordCountPlan(t, brokers, topic, false)
	r.register(&clusterpb.Job{Name: "wc", Plan: planBytes, ShufflePartitions: 2, KeyGroups: mapRigKeyGroups})
	r.assignment = &clusterpb.Assignment{Epoch: 1,
		Kafka: []*clusterpb.KafkaAssignment{{Topic: topic, Partition: 0, Worker: "s1"}, {Topic: topic, Partition: 1, Worker: "s1"}, {Topic: topic, Partition: 2, Worker: "s2"}},
		State: []*clusterpb.StatePartition{{FirstKeyGroup: 0, EndKeyGroup: 50, Owner: "s1"}, {FirstKeyGroup: 50, EndKeyGroup: mapRigKeyGroups, Owner: "s2"}},
	}
	r.assign("wc", r.assignment)
	return r
}

// apply logs c through the leader, whichever node it is now (on a
// loaded machine, an election may come any time).
func (r *mapRig) apply(c *clusterpb.Command) {
	r.t.Helper()
	waitFor(r.t, 20*time.Second, func() error {
		for _, n := range r.g.nodes {
			if n.raft.State() == raft.Leader {
				r.leader = n
				return n.apply(proto.CloneOf(c))
			}
		}
		return fmt.Errorf("no leader")
	})
}

// register registers job and waits until every node has it.
func (r *mapRig) register(job *clusterpb.Job) {
	r.t.Helper()
	r.apply(registerCmd(job))
	r.waitJob(job.Name, 0)
}

// assign sets job's assignment and waits until every node applied it.
func (r *mapRig) assign(job string, a *clusterpb.Assignment) {
	r.t.Helper()
	r.apply(assignCmd(job, a))
	r.waitJob(job, a.Epoch)
}

// term is the newest Raft term among the nodes.
func (r *mapRig) term() uint64 {
	var t uint64
	for _, n := range r.g.nodes {
		t = max(t, n.raft.CurrentTerm())
	}
	return t
}

func (r *mapRig) waitJob(name string, epoch uint64) {
	r.t.Helper()
	waitFor(r.t, 10*time.Second, func() error {
		for _, n := range r.g.nodes {
			if j, ok := n.fsm.Job(name); !ok || j.Assignment.GetEpoch() != epoch {
				return fmt.Errorf("%s has not applied job %s at epoch %d", n.cfg.Name, name, epoch)
			}
		}
		return nil
	})
}

// header is the driver's header for epoch.
func (r *mapRig) header(epoch uint64) *clusterpb.Header {
	return &clusterpb.Header{ClusterId: r.leader.ClusterID(), Term: r.term(), From: "driver", Epoch: epoch}
}

// mapOn calls Map on worker w (0: s1, 1: s2). A task refused because an
// election came since it was planned runs again in the new term, with the
// next attempt, as the driver would run it.
func (r *mapRig) mapOn(w int, req *clusterpb.MapRequest) (*clusterpb.MapResponse, error) {
	for {
		resp, err := r.mapOnce(w, req)
		if err == nil || !strings.Contains(err.Error(), ErrStaleTerm.Error()) || r.term() == req.Header.Term {
			return resp, err
		}
		r.t.Logf("task %d attempt %d: %v; again in term %d", req.Task, req.Attempt, err, r.term())
		req.Header.Term = r.term()
		req.Attempt++
	}
}

// mapOnce calls Map on worker w once.
func (r *mapRig) mapOnce(w int, req *clusterpb.MapRequest) (*clusterpb.MapResponse, error) {
	cc, err := r.leader.clients.conn(r.g.cfgs[w].Listen)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return clusterpb.NewTaskClient(cc).Map(ctx, req)
}

// tasks are a batch's map requests from start to end offsets: task 0 on
// s1 reads partitions 0 and 1, task 1 on s2 partition 2.
func (r *mapRig) tasks(job string, batch int64, start, end kafkasrc.Offsets) []*clusterpb.MapRequest {
	rng := func(p int32) *clusterpb.MapRange {
		return &clusterpb.MapRange{Topic: r.topic, Partition: p, From: start[r.topic][p], Until: end[r.topic][p]}
	}
	return []*clusterpb.MapRequest{
		{Header: r.header(r.assignment.Epoch), Job: job, Batch: batch, BatchTimestampMs: 1000 + batch, Task: 0, Attempt: 1, Ranges: []*clusterpb.MapRange{rng(0), rng(1)}},
		{Header: r.header(r.assignment.Epoch), Job: job, Batch: batch, BatchTimestampMs: 1000 + batch, Task: 1, Attempt: 1, Ranges: []*clusterpb.MapRange{rng(2)}},
	}
}

// waitFetchedAhead waits until the workers' readers of job, following
// their partitions since the last task, have fetched every record before
// end: the next task reads them from memory.
func (r *mapRig) waitFetchedAhead(job string, end kafkasrc.Offsets) {
	r.t.Helper()
	waitFor(r.t, 20*time.Second, func() error {
		for _, k := range r.assignment.Kafka {
			n := r.g.nodes[map[string]int{"s1": 0, "s2": 1}[k.Worker]]
			n.maps.mu.Lock()
			rt := n.maps.mu.jobs[job]
			n.maps.mu.Unlock()
			if rt == nil {
				return fmt.Errorf("%s has no runtime of job %s", k.Worker, job)
			}
			if got, _ := rt.src.Buffered().Get(k.Topic, k.Partition); got < end[k.Topic][k.Partition] {
				return fmt.Errorf("%s fetched %s-%d up to %d, want %d", k.Worker, k.Topic, k.Partition, got, end[k.Topic][k.Partition])
			}
		}
		return nil
	})
}

// counts takes each state partition's partials of batch from its owner's
// Inbox, checks that every word is in the partition owning its key group,
// and returns the words' counts.
func (r *mapRig) counts(job string, batch int64) map[string]int64 {
	r.t.Helper()
	got := map[string]int64{}
	for p, sp := range r.assignment.State {
		owner := r.g.nodes[map[string]int{"s1": 0, "s2": 1}[sp.Owner]]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		parts, err := owner.Inbox().Take(ctx, job, batch, int32(p), 2)
		cancel()
		if err != nil {
			r.t.Fatal(err)
		}
		final := r.plan.Agg.NewFinal()
		for _, b := range parts.Blocks {
			if err := final.Merge(b); err != nil {
				r.t.Fatal(err)
			}
		}
		err = final.MergeInto(memStateStore{}, func(row operators.Row) error {
			w := string(row[0].B)
			if g := operators.KeyGroup(append([]byte{1}, w...), mapRigKeyGroups); g < int(sp.FirstKeyGroup) || g >= int(sp.EndKeyGroup) {
				r.t.Errorf("word %q of key group %d is in partition %d, which owns [%d, %d)", w, g, p, sp.FirstKeyGroup, sp.EndKeyGroup)
			}
			got[w] += row[1].I
			return nil
		})
		parts.Release()
		if err != nil {
			r.t.Fatal(err)
		}
	}
	return got
}

// memStateStore is an operators.StateStore in a map.
type memStateStore map[string][]byte

func (m memStateStore) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m memStateStore) Put(k, v []byte) error              { m[string(k)] = append([]byte(nil), v...); return nil }

// randomLines returns n lines of words from a small vocabulary, some with
// double spaces (empty words), and their word counts.
func randomLines(rng *rand.Rand, n int) ([]string, map[string]int64) {
	counts := map[string]int64{}
	lines := make([]string, n)
	for i := range lines {
		words := make([]string, 1+rng.IntN(12))
		for j := range words {
			if rng.IntN(20) > 0 {
				words[j] = fmt.Sprintf("w%d", rng.IntN(500))
			}
			counts[words[j]]++
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines, counts
}

func latestOffsets(t *testing.T, brokers, topic string) kafkasrc.Offsets {
	t.Helper()
	src, err := kafkasrc.NewSource(kafkasrc.Config{Brokers: strings.Split(brokers, ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, latest, err := src.Offsets(ctx, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	return latest
}

// testMapTasks plays the driver of two batches of word count over topic
// (3 partitions, empty) on brokers: it calls Map on each worker for the
// batch's ranges, and checks that the partials the owners received add up
// to the exact word counts of the lines produced for the batch. Between
// the batches, the workers' readers fetch the second batch's records ahead. The first
// batch's task 0 runs twice: its second attempt replaces the first,
// pushing the partials the worker kept of the first. Then
// requests of a stale term or epoch, of a partition assigned elsewhere or
// of an unknown job are refused.
func testMapTasks(t *testing.T, brokers, topic string) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	r := newMapRig(t, brokers, topic)
	start := kafkasrc.Offsets{topic: {0: 0, 1: 0, 2: 0}}
	for batch := range int64(2) {
		lines, want := randomLines(rng, 2000+rng.IntN(2000))
		embedtest.Produce(t, brokers, topic, lines...)
		end := latestOffsets(t, brokers, topic)
		if batch > 0 {
			r.waitFetchedAhead("wc", end)
		}
		reqs := r.tasks("wc", batch, start, end)
		if batch == 0 {
			if _, err := r.mapOn(0, reqs[0]); err != nil {
				t.Fatal(err)
			}
			reqs[0].Attempt++
		}
		var records int64
		for w, req := range reqs {
			resp, err := r.mapOn(w, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.BytesSent == 0 {
				t.Errorf("task %d sent no bytes", req.Task)
			}
			if batch == 0 && w == 0 && (resp.Records != 0 || resp.ReusedRecords == 0) {
				t.Errorf("task 0's second attempt read %d records and re-used %d; want its first attempt's partials re-used", resp.Records, resp.ReusedRecords)
			}
			records += resp.Records + resp.ReusedRecords
		}
		if records != int64(len(lines)) {
			t.Errorf("batch %d: the tasks read %d records, %d were produced", batch, records, len(lines))
		}
		if got := r.counts("wc", batch); !maps.Equal(got, want) {
			t.Fatalf("batch %d: the owners received counts of %d words, want %d: %v, want %v", batch, len(got), len(want), got, want)
		}
		start = end
	}

	// refused checks that worker s1 refuses batch 2's first task, changed
	// by change, with code and a message holding want. A task refused for
	// a stale term because an election came since it was made (on a
	// loaded machine, any time) is made again in the new term.
	refused := func(code codes.Code, want string, change func(*clusterpb.MapRequest)) {
		t.Helper()
		for {
			req := r.tasks("wc", 2, start, start)[0]
			change(req)
			_, err := r.mapOnce(0, req)
			if want != ErrStaleTerm.Error() && strings.Contains(status.Convert(err).Message(), ErrStaleTerm.Error()) && r.term() != req.Header.Term {
				t.Logf("%v; again in term %d", err, r.term())
				continue
			}
			wantStatus(t, err, code, want)
			return
		}
	}
	refused(codes.FailedPrecondition, ErrStaleTerm.Error(), func(req *clusterpb.MapRequest) { req.Header.Term-- })
	refused(codes.FailedPrecondition, "assigns Kafka partition "+topic+"-2 to s2, not s1", func(req *clusterpb.MapRequest) { req.Ranges[0].Partition = 2 })
	refused(codes.NotFound, ErrUnknownJob.Error(), func(req *clusterpb.MapRequest) { req.Job = "other" })

	next := proto.CloneOf(r.assignment)
	next.Epoch = 2
	r.assign("wc", next)
	refused(codes.FailedPrecondition, ErrStaleEpoch.Error(), func(*clusterpb.MapRequest) {}) // of epoch 1
	refused(codes.Unavailable, ErrStaleEpoch.Error(), func(req *clusterpb.MapRequest) { req.Header.Epoch = 3 })
}

// TestMapTasks runs testMapTasks on an in-process broker (kfake).
func TestMapTasks(t *testing.T) {
	testMapTasks(t, embedtest.Start(t, "logs", 3), "logs")
}

// TestMapTasksKafka runs testMapTasks on Apache Kafka (3 brokers, the
// topic replicated twice), started by kafkatest.
func TestMapTasksKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Apache Kafka; run without -short")
	}
	c := kafkatest.Start(t, kafkatest.Brokers(3))
	topic := kafkatest.UniqueTopic(t, "maptasks")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 3, 2); err != nil {
		t.Fatal(err)
	}
	testMapTasks(t, c.BootstrapServers(), topic)
}

// testMapTaskDataLoss: a map task whose range of a Kafka partition Kafka
// no longer holds whole (its first offsets deleted after the batch was
// planned) fails, naming the job, batch, task, worker, partition and
// offsets and how to go on, and is not one the driver tries again; the
// other task of the batch, whose range is whole, maps it. Before, the
// task read what was left and the batch counted fewer records.
func testMapTaskDataLoss(t *testing.T, brokers, topic string) {
	r := newMapRig(t, brokers, topic)
	lines, _ := randomLines(rand.New(rand.NewPCG(testseed.Seed(t), 0)), 300)
	embedtest.Produce(t, brokers, topic, lines...)
	start, end := kafkasrc.Offsets{topic: {0: 0, 1: 0, 2: 0}}, latestOffsets(t, brokers, topic)
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var before kadm.Offsets
	before.Add(kadm.Offset{Topic: topic, Partition: 0, At: 30, LeaderEpoch: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resps, err := adm.DeleteRecords(ctx, before)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	tasks := r.tasks("wc", 0, start, end)
	_, err = r.mapOn(0, tasks[0])
	wantStatus(t, err, codes.FailedPrecondition, "map task 0 (attempt 1 of epoch 1) of job wc batch 0 on s1: ")
	wantStatus(t, err, codes.FailedPrecondition, fmt.Sprintf("kafka: data loss: %s/0: offsets [0, 30) of the range %[1]s/0[0,%d) were deleted (retention or DeleteRecords) before they were read; the query stops here (to skip the lost offsets and go on with a warning, set failOnDataLoss=false", topic, end[topic][0]))
	if retryable(err) {
		t.Errorf("the driver would try the task again: %v", err)
	}
	// The other task maps the batch; one failing Unavailable (a connection
	// still backing off from a peer's start) is tried again, as the driver
	// does.
	waitFor(t, 20*time.Second, func() error {
		_, err := r.mapOn(1, tasks[1])
		if transient(err) {
			tasks[1].Attempt++
			return err
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
}

func TestMapTaskDataLoss(t *testing.T) {
	testMapTaskDataLoss(t, embedtest.Start(t, "logs", 3), "logs")
}

// TestMapTaskDataLossKafka runs testMapTaskDataLoss on Apache Kafka,
// started by kafkatest.
func TestMapTaskDataLossKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Apache Kafka; run without -short")
	}
	c := kafkatest.Start(t)
	topic := kafkatest.UniqueTopic(t, "maploss")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	testMapTaskDataLoss(t, c.BootstrapServers(), topic)
}

// TestMapTasksAvailableNow: the map tasks of a job whose trigger ends
// (available-now) read record values alone, as local mode's do, and leave
// no reader following their partitions, while those of a job with the
// default trigger follow them; both count exactly. Stopped and registered
// again with another trigger, a job's tasks switch.
func TestMapTasksAvailableNow(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	brokers, topic := embedtest.Start(t, "logs", 3), "logs"
	r := newMapRig(t, brokers, topic)
	planBytes, _ := wordCountPlan(t, brokers, topic, false)
	lines, want := randomLines(rng, 3000)
	embedtest.Produce(t, brokers, topic, lines...)
	start, end := kafkasrc.Offsets{topic: {0: 0, 1: 0, 2: 0}}, latestOffsets(t, brokers, topic)
	// runtime is job's map runtime on s1 once its tasks ran.
	runtime := func(job string) *mapJob {
		n := r.g.nodes[0]
		n.maps.mu.Lock()
		defer n.maps.mu.Unlock()
		return n.maps.mu.jobs[job]
	}
	for i, c := range []struct {
		job, trigger string
		follows      bool
	}{{"wc", "", true}, {"now", "available-now", false}, {"now", "1s", true}} {
		if c.job != "wc" {
			job := &clusterpb.Job{Name: c.job, Plan: planBytes, PlanFingerprint: "wc", ShufflePartitions: 2, KeyGroups: mapRigKeyGroups,
				Options: map[string]string{"trigger": c.trigger}}
			if old, ok := r.leader.fsm.Job(c.job); ok { // registered again: a new epoch as a new driver run logs
				r.apply(stateCmd(c.job, clusterpb.JobState_STOPPED, ""))
				r.apply(registerCmd(job))
				r.assignment = proto.CloneOf(r.assignment)
				r.assignment.Epoch = old.Assignment.GetEpoch() + 1
			} else {
				r.register(job)
			}
			r.assign(c.job, r.assignment)
		}
		batch := int64(i)
		for w, req := range r.tasks(c.job, batch, start, end) {
			if _, err := r.mapOn(w, req); err != nil {
				t.Fatal(err)
			}
		}
		if got := r.counts(c.job, batch); !maps.Equal(got, want) {
			t.Fatalf("job %s, trigger %q: the owners received %v, want %v", c.job, c.trigger, got, want)
		}
		rt := runtime(c.job)
		if rt.mapper.ReadsValues() == c.follows {
			t.Errorf("job %s, trigger %q: its map tasks read values alone: %v, want %v", c.job, c.trigger, rt.mapper.ReadsValues(), !c.follows)
		}
		if following := len(rt.src.Buffered()) > 0; following != c.follows {
			t.Errorf("job %s, trigger %q: its readers follow its partitions: %v, want %v", c.job, c.trigger, following, c.follows)
		}
	}
}

// TestMapTaskFailures checks that a map task whose plan panics (a
// registered function's panic) fails with an error naming the job, batch,
// task and worker, that the worker serves the next task, and that a job
// without aggregation is refused.
func TestMapTaskFailures(t *testing.T) {
	regs := engine.NewRegistrations()
	defer regs.Close()
	err := regs.RegisterUDF("cluster_test_panics_on_boom", func(s string) string {
		if s == "boom" {
			panic("boom")
		}
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
	brokers := embedtest.Start(t, "logs", 3)
	r := newMapRig(t, brokers, "logs")
	planBytes, _ := wordCountPlan(t, brokers, "logs", true)
	r.register(&clusterpb.Job{Name: "boom", Plan: planBytes, ShufflePartitions: 2, KeyGroups: mapRigKeyGroups})
	r.assign("boom", r.assignment)
	embedtest.Produce(t, brokers, "logs", "a b", "boom", "c", "d e")
	end := latestOffsets(t, brokers, "logs")
	start := kafkasrc.Offsets{"logs": {0: 0, 1: 0, 2: 0}}
	failed := 0
	for w, req := range r.tasks("boom", 4, start, end) {
		if _, err := r.mapOn(w, req); err != nil { // the task that read "boom"
			failed++
			wantStatus(t, err, codes.Internal, fmt.Sprintf("map task %d (attempt 1 of epoch 1) of job boom batch 4 on s%d: ", w, w+1))
			wantStatus(t, err, codes.Internal, `function "cluster_test_panics_on_boom" panicked: boom`)
		}
	}
	if failed != 1 {
		t.Fatalf("%d tasks failed, want the one that read \"boom\"", failed)
	}
	for w, req := range r.tasks("wc", 0, start, end) {
		if _, err := r.mapOn(w, req); err != nil {
			t.Fatalf("after a task panicked: %v", err)
		}
	}
	if got, want := r.counts("wc", 0), map[string]int64{"a": 1, "b": 1, "boom": 1, "c": 1, "d": 1, "e": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}

	// A stopped job's tasks are refused, and the next task of another
	// job closes its runtime (its readers stop fetching ahead).
	r.apply(stateCmd("boom", clusterpb.JobState_STOPPED, ""))
	waitFor(t, 10*time.Second, func() error {
		for _, n := range r.g.nodes {
			if j, _ := n.fsm.Job("boom"); j.State != clusterpb.JobState_STOPPED {
				return fmt.Errorf("%s has not applied the stop", n.cfg.Name)
			}
		}
		return nil
	})
	_, err = r.mapOn(0, r.tasks("boom", 5, end, end)[0])
	wantStatus(t, err, codes.FailedPrecondition, "job boom batch 5: the job is STOPPED")
	if _, err := r.mapOn(0, r.tasks("wc", 1, end, end)[0]); err != nil {
		t.Fatal(err)
	}
	s1 := r.g.nodes[0]
	s1.maps.mu.Lock()
	_, kept := s1.maps.mu.jobs["boom"]
	s1.maps.mu.Unlock()
	if kept {
		t.Error("s1 keeps the runtime of the stopped job")
	}

	rows := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Load()
	planBytes, err = proto.Marshal(&planpb.Query{Name: "rows", Plan: rows.Plan()})
	if err != nil {
		t.Fatal(err)
	}
	r.register(&clusterpb.Job{Name: "rows", Plan: planBytes, ShufflePartitions: 2, KeyGroups: mapRigKeyGroups})
	r.assign("rows", r.assignment)
	_, err = r.mapOn(0, r.tasks("rows", 0, start, end)[0])
	wantStatus(t, err, codes.InvalidArgument, "Map runs the tasks of jobs with an aggregation or dropDuplicates; this job's take MapRows")
}
