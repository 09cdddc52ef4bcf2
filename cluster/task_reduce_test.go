package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/engine/task/tasktest"
	"github.com/gostream/gostream/examples/wordcount"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// wordCountJob is job wc: the word count of examples/wordcount with 4 key
// groups in 2 state partitions, at epoch 1, partition 0 owned by s1 with
// standby s2, partition 1 owned by s2 with standby s1.
func wordCountJob(t testing.TB) *clusterpb.Job {
	t.Helper()
	df := wordcount.Counts(engine.NewSession(), engine.JobParams{Brokers: "127.0.0.1:9", Topic: "logs"})
	plan, err := proto.Marshal(&planpb.Query{Name: "wc", Plan: df.Plan(), OutputMode: planpb.OutputMode_UPDATE})
	if err != nil {
		t.Fatal(err)
	}
	return &clusterpb.Job{Name: "wc", Plan: plan, ShufflePartitions: 2, KeyGroups: 4,
		Assignment: &clusterpb.Assignment{Epoch: 1, State: PlaceState(4, 2, []string{"s1", "s2"}, 2)}}
}

// wordCountReducer compiles job's aggregation, for the test's map tasks
// and to decode rows.
func wordCountReducer(t testing.TB, job *clusterpb.Job) (*operators.Aggregation, *task.Reducer) {
	t.Helper()
	var q planpb.Query
	if err := proto.Unmarshal(job.Plan, &q); err != nil {
		t.Fatal(err)
	}
	agg, err := operators.CompileAggregate(q.Plan.GetAggregate())
	if err != nil {
		t.Fatal(err)
	}
	return agg, task.NewReducer(agg)
}

// countWords counts the words of lines as Spark's split does.
func countWords(into map[string]int64, lines []string) map[string]int64 {
	for _, l := range lines {
		for _, w := range strings.Split(l, " ") {
			into[w]++
		}
	}
	return into
}

// recordCounts adds the word counts of a record of groups to into.
func recordCounts(red *task.Reducer, into map[string]int64) func(rec []byte) error {
	return func(rec []byte) error {
		return red.RecordRows(rec, func(r operators.Row) error {
			w := string(r[0].B)
			if _, dup := into[w]; dup {
				return fmt.Errorf("word %q in two rows", w)
			}
			into[w] = r[1].I
			return nil
		})
	}
}

// stateWorker is one worker's StatePartitions and Shuffle services with
// their own fence, Inbox and state directory.
type stateWorker struct {
	name   string
	fence  *staticFence
	inbox  *Inbox
	states *jobStates
	server *stateServer
	cc     *grpc.ClientConn
}

// stateRig is workers s1 and s2 (or others) of cluster c1 in term 3 over
// loopback TCP, all with job wc (wordCountJob) at epoch 1.
type stateRig struct {
	t       testing.TB
	job     *clusterpb.Job // at the rig's epoch
	epoch   uint64
	downMu  sync.Mutex
	down    map[string]bool // members the others cannot reach; guarded by downMu
	agg     *operators.Aggregation
	reducer *task.Reducer
	workers map[string]*stateWorker
	logs    *logbuf.Buffer
	attempt uint32 // the last map task attempt pushed
}

func newStateRig(t testing.TB) *stateRig { return newStateRigOf(t, "s1", "s2") }

// newStateRigOf is a stateRig of the workers names.
func newStateRigOf(t testing.TB, names ...string) *stateRig {
	r := &stateRig{t: t, job: wordCountJob(t), epoch: 1, workers: map[string]*stateWorker{}, down: map[string]bool{}, logs: &logbuf.Buffer{}}
	r.agg, r.reducer = wordCountReducer(t, r.job)
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	addrs := map[string]string{}
	lns := map[string]net.Listener{}
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[name], addrs[name] = ln, ln.Addr().String()
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { // after the servers' cleanups below
		wg.Wait()
		if t.Failed() {
			t.Logf("logs:\n%s", r.logs)
		}
	})
	for name, ln := range lns {
		w := &stateWorker{name: name, inbox: NewInbox(0, 0),
			fence:  &staticFence{name: name, clusterID: "c1", term: 3, jobs: map[string]*clusterpb.Job{"wc": proto.CloneOf(r.job)}},
			states: newJobStates(t.TempDir(), "c1", log.With("node", name)),
		}
		clients := newClientPool(&net.Dialer{})
		w.server = &stateServer{name: name, fence: w.fence, inbox: w.inbox, states: w.states, clients: clients, log: log.With("node", name),
			addr: func(member string) string {
				r.downMu.Lock()
				defer r.downMu.Unlock()
				if r.down[member] {
					return ""
				}
				return addrs[member]
			}}
		srv := grpc.NewServer(shuffleServerOptions()...)
		clusterpb.RegisterShuffleServer(srv, &shuffleServer{fence: w.fence, inbox: w.inbox})
		clusterpb.RegisterStatePartitionsServer(srv, w.server)
		wg.Go(func() { _ = srv.Serve(ln) })
		cc, err := grpc.NewClient("passthrough:///"+addrs[name], append(shuffleDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		w.cc = cc
		r.workers[name] = w
		t.Cleanup(func() {
			cc.Close()
			srv.Stop()
			clients.close()
			if err := w.states.close(); err != nil {
				t.Error(err)
			}
		})
	}
	return r
}

// owner is the worker owning partition p at the rig's epoch.
func (r *stateRig) owner(p int) *stateWorker { return r.workers[r.job.Assignment.State[p].Owner] }

// push runs one map task per element of tasks, each over its lines, and
// pushes its buckets to the owners, planned in term.
func (r *stateRig) push(batch int64, term uint64, tasks [][]string) {
	r.t.Helper()
	if err := r.tryPush(batch, term, tasks); err != nil {
		r.t.Fatal(err)
	}
}

// tryPush is push, returning the first push's error.
func (r *stateRig) tryPush(batch int64, term uint64, tasks [][]string) error {
	r.t.Helper()
	r.attempt++
	for i, lines := range tasks {
		for p, bucket := range tasktest.Buckets(r.t, r.agg, len(r.job.Assignment.State), lines...) {
			st := ShuffleTask{Job: "wc", Batch: batch, Partition: int32(p), Task: int32(i), Attempt: r.attempt, Epoch: r.epoch, Term: term, ClusterID: "c1", From: "s1"}
			if err := push(context.Background(), r.owner(p).cc, st, [][]byte{bucket}, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// reduce reduces partition p of batch at its owner, as a driver in term
// would, and returns the changed groups' counts and the counts.
func (r *stateRig) reduce(batch int64, term uint64, p, tasks int) (map[string]int64, *clusterpb.ReduceDone, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	changed := map[string]int64{}
	req := &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: term, Epoch: r.epoch, From: "s1"},
		Job: "wc", Batch: batch, Partition: int32(p), Tasks: int32(tasks), Changes: true}
	done, err := ReducePartition(ctx, r.owner(p).cc, req, recordCounts(r.reducer, changed))
	return changed, done, err
}

// runBatch pushes and reduces batch in every partition, and returns the
// changed groups' counts.
func (r *stateRig) runBatch(batch int64, term uint64, tasks [][]string) (map[string]int64, []*clusterpb.ReduceDone) {
	r.t.Helper()
	r.push(batch, term, tasks)
	changed := map[string]int64{}
	var dones []*clusterpb.ReduceDone
	for p := range r.job.Assignment.State {
		c, done, err := r.reduce(batch, term, p, len(tasks))
		if err != nil {
			r.t.Fatalf("batch %d partition %d: %v", batch, p, err)
		}
		maps.Copy(changed, c)
		dones = append(dones, done)
	}
	return changed, dones
}

// storeCounts reads partition p's store on worker w: its version and word
// counts.
func (r *stateRig) storeCounts(w *stateWorker, p int) (int64, map[string]int64) {
	r.t.Helper()
	return storeCounts(r.t, w.states, r.job, r.reducer, r.job.Assignment.State[p].FirstKeyGroup)
}

func storeCounts(t testing.TB, states *jobStates, job *clusterpb.Job, red *task.Reducer, first int32) (int64, map[string]int64) {
	t.Helper()
	ps, err := states.partition(job, first)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.unlock(false, slog.Default())
	counts := map[string]int64{}
	if err := red.EachRow(ps.st, func(row operators.Row) error {
		counts[string(row[0].B)] = row[1].I
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ps.st.Version(), counts
}

// checkStores checks that the owner and the standby of every partition
// are at version batch with the same counts, which together are want.
func (r *stateRig) checkStores(batch int64, want map[string]int64) {
	r.t.Helper()
	all := map[string]int64{}
	for p, sp := range r.job.Assignment.State {
		ov, owned := r.storeCounts(r.workers[sp.Owner], p)
		sv, stood := r.storeCounts(r.workers[sp.Standby], p)
		if ov != batch || sv != batch {
			r.t.Fatalf("partition %d: owner %s at version %d, standby %s at %d; want %d", p, sp.Owner, ov, sp.Standby, sv, batch)
		}
		if !maps.Equal(owned, stood) {
			r.t.Fatalf("partition %d: owner %s holds %v, standby %s %v", p, sp.Owner, owned, sp.Standby, stood)
		}
		maps.Copy(all, owned)
	}
	if !maps.Equal(all, want) {
		r.t.Fatalf("after batch %d the partitions hold %v, want %v", batch, all, want)
	}
}

// TestStateReduceReplicates reduces three batches of two map tasks into
// two state partitions over gRPC: each Reduce answers the counts of the
// words its batch changed, the owner's and the standby's Pebble stores hold
// exact running counts at the batch's version, and Rows streams them.
func TestStateReduceReplicates(t *testing.T) {
	r := newStateRig(t)
	batches := [][][]string{
		{{"a b a", "c"}, {"b  d"}},
		{{"a"}, {"e a", ""}},
		{{}, {"b c"}},
	}
	total := map[string]int64{}
	for batch, tasks := range batches {
		var lines []string
		for _, ls := range tasks {
			lines = append(lines, ls...)
		}
		countWords(total, lines)
		changed, dones := r.runBatch(int64(batch), 3, tasks)
		want := map[string]int64{}
		for w := range countWords(map[string]int64{}, lines) {
			want[w] = total[w]
		}
		if !maps.Equal(changed, want) {
			t.Fatalf("batch %d: changed %v, want %v", batch, changed, want)
		}
		var groups, rows int64
		for p, d := range dones {
			if d.Applied || d.Standby != r.job.Assignment.State[p].Standby {
				t.Fatalf("batch %d partition %d: %v", batch, p, d)
			}
			groups += d.Groups
			rows += d.Rows
		}
		if groups != int64(len(want)) || rows != int64(len(total)) {
			t.Fatalf("batch %d: %d groups, %d rows; want %d, %d", batch, groups, rows, len(want), len(total))
		}
		r.checkStores(int64(batch), total)
	}
}

// reduceRows reduces partition p of batch at its owner as a complete-mode
// driver in term does (ReduceRequest.rows), and returns the counts of
// every group the owner answered, and the counts. It reads the answer
// slowly (a pause at its first record) when slow is set.
func (r *stateRig) reduceRows(batch int64, term uint64, p, tasks int, slow bool) (map[string]int64, *clusterpb.ReduceDone, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	groups := map[string]int64{}
	req := &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: term, Epoch: r.epoch, From: "s1"},
		Job: "wc", Batch: batch, Partition: int32(p), Tasks: int32(tasks), Rows: true}
	count := recordCounts(r.reducer, groups)
	done, err := ReducePartition(ctx, r.owner(p).cc, req, func(rec []byte) error {
		if slow && len(groups) == 0 {
			time.Sleep(300 * time.Millisecond) // the owner's sends fill the stream's window meanwhile
		}
		return count(rec)
	})
	return groups, done, err
}

// TestStateReduceRows: a complete-mode reduce answers every group the
// partition holds at the batch, while the standby takes the batch, then
// done once the standby holds it: with a standby that has the batch
// before, and with a new standby that gets a full copy of the partition,
// whose scan waits for the rows' (run with -race: a reader slow to take
// the rows keeps their scan going past the start of the copy; the store's
// scans must not run at once); a committed batch reduced again answers
// its groups from the state.
func TestStateReduceRows(t *testing.T) {
	r := newStateRigOf(t, "s1", "s2", "s3")
	r.assign(part(0, "s1", "s2"), part(1, "s2", "s1"))
	total := map[string]int64{}
	check := func(batch int64, tasks [][]string, applied, slow bool) {
		t.Helper()
		all := map[string]int64{}
		for p := range r.job.Assignment.State {
			groups, done, err := r.reduceRows(batch, 3, p, len(tasks), slow)
			if err != nil {
				t.Fatalf("batch %d partition %d: %v", batch, p, err)
			}
			if done.Applied != applied || done.Rows != int64(len(groups)) {
				t.Fatalf("batch %d partition %d: %v with %d groups answered; want applied %v, every group", batch, p, done, len(groups), applied)
			}
			maps.Copy(all, groups)
		}
		if !maps.Equal(all, total) {
			t.Fatalf("batch %d: the rows %v, want %v", batch, all, total)
		}
		r.checkStores(batch, total)
	}
	// Words long enough that a partition's rows overfill the stream's
	// flow-control window (4 MiB).
	var lines []string
	pad := strings.Repeat("w", 120)
	for i := range 100_000 {
		lines = append(lines, fmt.Sprintf("%s%d x", pad, i))
	}
	b0 := [][]string{lines[:50_000], lines[50_000:]}
	wordsOf(total, b0)
	r.push(0, 3, b0)
	check(0, b0, false, false)
	check(0, nil, true, false)

	// s3, new, stands by for partition 0: it needs a full copy.
	r.assign(part(0, "s1", "s3"), part(1, "s2", "s1"))
	b1 := [][]string{{"a b", "x y"}, {"w1 z"}}
	wordsOf(total, b1)
	r.push(1, 3, b1)
	check(1, b1, false, true)
	if !strings.Contains(r.logs.String(), "sent a full copy of a state partition to its standby") {
		t.Fatalf("no full copy for the new standby s3:\n%s", r.logs)
	}
}

// TestStateReduceRerun: a batch that runs again over partitions that
// committed it (the driver failed before logging "commit N") answers the
// first run's changes and merges nothing twice; a standby that missed the
// batch (its replication failed) gets it from the re-run.
func TestStateReduceRerun(t *testing.T) {
	r := newStateRig(t)
	b0 := [][]string{{"x y"}, {"x"}}
	b1 := [][]string{{"x z"}, {"z z"}}
	r.runBatch(0, 3, b0)
	first, _ := r.runBatch(1, 3, b1)
	want := map[string]int64{"x": 3, "y": 1, "z": 3}
	r.checkStores(1, want)

	again, dones := r.runBatch(1, 3, b1)
	if !maps.Equal(again, first) {
		t.Fatalf("re-run changed %v, the first run %v", again, first)
	}
	for p, d := range dones {
		if !d.Applied {
			t.Fatalf("partition %d: re-run not applied: %v", p, d)
		}
	}
	r.checkStores(1, want)

	// Batch 2's replication fails: the standbys moved to term 4.
	b2 := [][]string{{"y"}, {"w"}}
	r.push(2, 3, b2)
	for _, w := range r.workers {
		w.fence.set(4, 1)
	}
	for p := range r.job.Assignment.State {
		_, _, err := r.reduce(2, 3, p, len(b2))
		wantStatus(t, err, codes.FailedPrecondition, ErrStaleTerm.Error())
	}
	// The re-run in term 4: the owners that committed batch 2 answer it
	// from their state and bring their standbys to it.
	changed, _ := r.runBatch(2, 4, b2)
	if w := (map[string]int64{"y": 2, "w": 1}); !maps.Equal(changed, w) {
		t.Fatalf("re-run of batch 2 changed %v, want %v", changed, w)
	}
	want["y"], want["w"] = 2, 1
	r.checkStores(2, want)
}

// TestStateReduceFencing: a reduce planned in an older term or another
// epoch, or sent to a worker that does not own the partition, is refused
// and writes nothing; so is one whose term passes while it merges (the
// fencing is checked again right before the commit).
func TestStateReduceFencing(t *testing.T) {
	r := newStateRig(t)
	r.runBatch(0, 3, [][]string{{"a"}})
	r.push(1, 3, [][]string{{"a b"}})

	cases := []struct {
		name string
		req  *clusterpb.ReduceRequest
		code codes.Code
		text string
	}{
		{"stale term", &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 2, Epoch: 1}}, codes.FailedPrecondition, ErrStaleTerm.Error()},
		{"stale epoch", &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 0}}, codes.FailedPrecondition, ErrStaleEpoch.Error()},
		{"other cluster", &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c2", Term: 3, Epoch: 1}}, codes.FailedPrecondition, ErrPeersDisagree.Error()},
		{"not the owner", &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 1}, Partition: 1}, codes.FailedPrecondition, "the owner of state partition 1 is s2, not s1"},
		{"unknown job", &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 1}, Job: "other"}, codes.NotFound, ErrUnknownJob.Error()},
	}
	for _, c := range cases {
		c.req.Batch, c.req.Tasks = 1, 1
		if c.req.Job == "" {
			c.req.Job = "wc"
		}
		_, err := ReducePartition(context.Background(), r.workers["s1"].cc, c.req, func([]byte) error { return nil })
		wantStatus(t, err, c.code, c.text)
		if !strings.Contains(err.Error(), fmt.Sprintf("reduce of job %s batch 1 state partition %d on s1", c.req.Job, c.req.Partition)) {
			t.Fatalf("%s: %v does not name the job, batch, partition and worker", c.name, err)
		}
	}
	r.checkStores(0, map[string]int64{"a": 1})

	// The term passes between the reduce's first check and its commit.
	s1 := r.workers["s1"]
	s1.server.fence = &viewHook{shuffleFence: s1.fence, on: func(n int) {
		if n == 2 {
			s1.fence.set(4, 1)
		}
	}}
	_, _, err := r.reduce(1, 3, 0, 1)
	wantStatus(t, err, codes.FailedPrecondition, ErrStaleTerm.Error())
	if v, counts := r.storeCounts(s1, 0); v != 0 || counts["a"] > 1 {
		t.Fatalf("after a reduce refused at its commit: version %d, %v", v, counts)
	}
}

// TestStateReduceMissingPartialsFailsAtOnce: the driver asks for a
// reduce only once every map task's pushes were taken, so a reduce that
// finds a task's partials missing fails at once (Aborted: the driver maps
// the batch again) and changes nothing: its worker was killed and started
// again after the pushes, before the leader held it down. Before, the
// reduce waited for them forever, and the job with it (TestChaos, seed
// 7665355426810557831: a follower killed for 601 ms, no batch committed
// within a minute).
func TestStateReduceMissingPartialsFailsAtOnce(t *testing.T) {
	r := newStateRig(t)
	r.runBatch(0, 3, [][]string{{"a"}, {"b"}})
	r.attempt++
	s1 := r.owner(0)
	version, before := r.storeCounts(s1, 0)
	pushTask := func(task int32, lines ...string) {
		bucket := tasktest.Buckets(t, r.agg, len(r.job.Assignment.State), lines...)[0]
		st := ShuffleTask{Job: "wc", Batch: 1, Partition: 0, Task: task, Attempt: r.attempt, Epoch: 1, Term: 3, ClusterID: "c1", From: "s1"}
		if err := push(context.Background(), s1.cc, st, [][]byte{bucket}, 0); err != nil {
			t.Fatal(err)
		}
	}
	pushTask(0, "a c") // task 1's partials were taken by a process of s1 that is gone
	_, _, err := r.reduce(1, 3, 0, 2)
	if status.Code(err) != codes.Aborted || !strings.Contains(fmt.Sprint(err), "map task 1 has no complete partials here") {
		t.Fatalf("the reduce with task 1's partials missing: %v; want Aborted, naming task 1", err)
	}
	if v, now := r.storeCounts(s1, 0); v != version || !maps.Equal(now, before) {
		t.Fatalf("the refused reduce changed the store: version %d -> %d, counts %v -> %v", version, v, before, now)
	}
	pushTask(1, "a") // the batch mapped again
	changed, _, err := r.reduce(1, 3, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, want := r.storeCounts(s1, 0)
	for w, n := range changed {
		if want[w] != n {
			t.Fatalf("batch 1 changed %v; the store holds %v", changed, want)
		}
	}
}

// TestStateReduceOfAPassedEpochLetsGo: the reduce of batch 1 on s1 in
// epoch 1 committed and waits for its standby s2, which does not answer
// (cut off: it was the driver, and its cancel never comes). The next
// driver runs the batch again in epoch 2 with s3 as the standby: once s1
// applied epoch 2, the old reduce stops with a stale epoch error and lets
// go of the partition, the new epoch's pushes are taken, and the batch
// counts once on s1 and s3. Before, the old reduce held the partition
// until its standby answered, refusing every push ("was reduced already;
// attempt N came too late"), and the driver failed the job after twice
// DownAfter (TestChaos, seed 4992306789945883474, 30 faults).
func TestStateReduceOfAPassedEpochLetsGo(t *testing.T) {
	r := newStateRigOf(t, "s1", "s2", "s3")
	total := map[string]int64{}
	batches := [][][]string{{{"a b", "c"}, {"d a"}}, {{"b b"}, {"e a"}}}
	wordsOf(total, batches[0])
	r.runBatch(0, 3, batches[0])

	s2 := r.workers["s2"]
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s2.server.fence = &viewHook{shuffleFence: s2.fence, on: func(n int) {
		if n == 1 { // s1's Replicate of batch 1
			close(entered)
			<-release
		}
	}}
	wordsOf(total, batches[1])
	r.push(1, 3, batches[1])
	old := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req := &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 1, From: "s2"}, Job: "wc", Batch: 1, Partition: 0, Tasks: 2}
		_, err := ReducePartition(ctx, r.workers["s1"].cc, req, func([]byte) error { return nil })
		old <- err
	}()
	select {
	case <-entered:
	case err := <-old:
		t.Fatalf("the reduce of batch 1 in epoch 1 ended before it replicated: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the reduce of batch 1 in epoch 1 did not replicate within a minute")
	}

	r.assign(part(0, "s1", "s3"), part(1, "s2", "s3"))
	waitFor(t, 20*time.Second, func() error { return r.tryPush(1, 3, batches[1]) })
	wantStatus(t, <-old, codes.FailedPrecondition, "epoch 1 passed while the request ran")
	if !strings.Contains(r.logs.String(), "cluster: a reduce stopped: its assignment epoch passed while it ran") {
		t.Error("s1 did not log the reduce it stopped")
	}
	for p := range r.job.Assignment.State {
		if _, _, err := r.reduce(1, 3, p, len(batches[1])); err != nil {
			t.Fatalf("batch 1 partition %d in epoch 2: %v", p, err)
		}
	}
	r.checkStores(1, total)
}

// viewHook is a shuffleFence that calls on with the count of its
// fenceView calls before answering.
type viewHook struct {
	shuffleFence
	mu sync.Mutex
	n  int
	on func(n int)
}

func (h *viewHook) fenceView() (string, string, uint64, error) {
	h.mu.Lock()
	h.n++
	n := h.n
	h.mu.Unlock()
	h.on(n)
	return h.shuffleFence.fenceView()
}

// TestStateReducePanics: a reduce that panics answers an error naming the
// job, batch, partition and worker; the worker goes on, and the batch
// then reduces exactly.
func TestStateReducePanics(t *testing.T) {
	r := newStateRig(t)
	r.push(0, 3, [][]string{{"a b"}})
	s1 := r.workers["s1"]
	s1.server.fence = &viewHook{shuffleFence: s1.fence, on: func(n int) {
		if n == 2 {
			panic("boom")
		}
	}}
	_, _, err := r.reduce(0, 3, 0, 1)
	wantStatus(t, err, codes.Internal, "cluster: reduce of job wc batch 0 state partition 0 on s1 panicked: boom")
	s1.server.fence = s1.fence
	r.runBatch(0, 3, [][]string{{"a b"}})
	r.checkStores(0, map[string]int64{"a": 1, "b": 1})
}

// replicate opens a Replicate stream to w as the owner of partition p in
// term at the rig's epoch, a full copy with full, and sends recs and,
// unless cut, the end message with end's changes applied. It returns the
// standby's answer.
func (r *stateRig) replicate(w *stateWorker, term uint64, batch int64, p int32, full bool, recs [][]byte, cut bool, end func(*clusterpb.ReplicateEnd)) (*clusterpb.ReplicateResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := clusterpb.NewStatePartitionsClient(w.cc).Replicate(ctx)
	if err != nil {
		return nil, err
	}
	open := &clusterpb.ReplicateOpen{Header: &clusterpb.Header{ClusterId: "c1", Term: term, Epoch: r.epoch, From: "s1"}, Job: "wc", Batch: batch, Partition: p, Full: full}
	msgs := []*clusterpb.ReplicateMessage{{Kind: &clusterpb.ReplicateMessage_Open{Open: open}}}
	e := &clusterpb.ReplicateEnd{}
	for _, rec := range recs {
		msgs = append(msgs, &clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_Record{Record: rec}})
		e.Records++
		e.Bytes += uint64(len(rec))
		e.Crc = crc32.Update(e.Crc, castagnoli, rec)
	}
	if end != nil {
		end(e)
	}
	if !cut {
		msgs = append(msgs, &clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_End{End: e}})
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server's answer says why
		}
	}
	return stream.CloseAndRecv()
}

// TestStateReplicateRefuses: a standby refuses a record from an older
// term, for a partition it does not stand by for, a stream cut short, a
// malformed record or one whose CRC differs, and writes nothing; one that
// would leave a gap (its partition is not at the batch before) answers
// that it needs a full copy and writes nothing; the next record in order
// applies.
func TestStateReplicateRefuses(t *testing.T) {
	r := newStateRig(t)
	s2 := r.workers["s2"] // standby of partition 0
	rec := state.AppendPut(state.NewRecord(nil), []byte{1, 'k'}, []byte{1})
	cases := []struct {
		name  string
		term  uint64
		batch int64
		p     int32
		recs  [][]byte
		cut   bool
		code  codes.Code
		text  string
	}{
		{"stale term", 2, 0, 0, [][]byte{rec}, false, codes.FailedPrecondition, ErrStaleTerm.Error()},
		{"not the standby", 3, 0, 1, [][]byte{rec}, false, codes.FailedPrecondition, "the standby of state partition 1 is s1, not s2"},
		{"cut short", 3, 0, 0, [][]byte{rec}, true, codes.DataLoss, "without its end message"},
		{"malformed", 3, 0, 0, [][]byte{rec[:len(rec)-1]}, false, codes.DataLoss, state.ErrCorrupt.Error()},
		{"crc", 3, 0, 0, [][]byte{rec}, false, codes.DataLoss, "CRC"},
	}
	for _, c := range cases {
		var end func(*clusterpb.ReplicateEnd)
		if c.name == "crc" {
			end = func(e *clusterpb.ReplicateEnd) { e.Crc++ }
		}
		_, err := r.replicate(s2, c.term, c.batch, c.p, false, c.recs, c.cut, end)
		wantStatus(t, err, c.code, c.text)
		if !strings.Contains(err.Error(), fmt.Sprintf("replication of job wc batch %d state partition %d on s2", c.batch, c.p)) {
			t.Fatalf("%s: %v does not name the job, batch, partition and worker", c.name, err)
		}
		if v, counts := r.storeCounts(s2, 0); v != state.NoVersion || len(counts) != 0 {
			t.Fatalf("%s: the standby is at version %d with %v", c.name, v, counts)
		}
	}
	resp, err := r.replicate(s2, 3, 1, 0, false, [][]byte{rec}, false, nil)
	if err != nil || !resp.NeedsCopy || resp.Version != state.NoVersion {
		t.Fatalf("a gap: %v, %v; want needs_copy at version -1", resp, err)
	}
	if v, counts := r.storeCounts(s2, 0); v != state.NoVersion || len(counts) != 0 {
		t.Fatalf("a gap: the standby is at version %d with %v", v, counts)
	}
	if _, err := r.replicate(s2, 3, 0, 0, false, [][]byte{rec}, false, func(e *clusterpb.ReplicateEnd) { e.Keys = 1 }); err != nil {
		t.Fatal(err)
	}
	if v, counts := r.storeCounts(s2, 0); v != 0 || counts["k"] != 1 {
		t.Fatalf("after batch 0's record: version %d, %v", v, counts)
	}
}

// TestJobStatesRefuseOtherCluster: a worker's state store of a job is
// labeled with its cluster and job; a store of another cluster in the
// same place is refused.
func TestJobStatesRefuseOtherCluster(t *testing.T) {
	dir := t.TempDir()
	job := wordCountJob(t)
	log := slog.New(slog.DiscardHandler)
	s := newJobStates(dir, "c1", log)
	p, err := s.partition(job, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.unlock(false, log)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	other := newJobStates(dir, "c2", log)
	defer other.close()
	_, err = other.partition(job, 0)
	if !errors.Is(err, state.ErrNotStateDir) || !strings.Contains(err.Error(), "jobs/wc/state") {
		t.Fatalf("another cluster's store: %v, want state.ErrNotStateDir naming jobs/wc/state", err)
	}
}

// wantStatus checks that err is a gRPC status with code and text in its
// message.
func wantStatus(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if st := status.Convert(err); err == nil || st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Fatalf("error %v; want code %v and %q", err, code, text)
	}
}

// TestReduceBetweenNodes runs the reduce over real TCP between two Nodes
// of a Raft group, with the job registered and assigned through Raft: map
// tasks push known partials to the owners, Reduce on each owner answers
// the changed counts, and both the owner's and the standby's Pebble store
// (in DATA/jobs/wc/state) hold the exact counts. A worker closed and
// started again from its data directory holds its partitions at their
// version: the last batch run again is answered from its state, counted
// once, and the next batch goes on from it.
func TestReduceBetweenNodes(t *testing.T) {
	g := newNodeGroup(t, 2)
	g.waitStatus(g.addrs(), allReachable)
	leader := g.leader()
	job := wordCountJob(t)
	assignment := job.Assignment
	job.Assignment = nil
	if err := leader.apply(registerCmd(job)); err != nil {
		t.Fatal(err)
	}
	if err := leader.apply(assignCmd("wc", assignment)); err != nil {
		t.Fatal(err)
	}
	job.Assignment = assignment
	waitFor(t, 10*time.Second, func() error {
		for _, n := range g.nodes {
			if j, ok := n.fsm.Job("wc"); !ok || j.Assignment.GetEpoch() != 1 {
				return fmt.Errorf("%s has not applied epoch 1", n.cfg.Name)
			}
		}
		return nil
	})
	node := func(name string) *Node {
		for _, n := range g.nodes {
			if n.cfg.Name == name {
				return n
			}
		}
		t.Fatalf("no node %s", name)
		return nil
	}
	agg, red := wordCountReducer(t, job)
	term := leader.raft.CurrentTerm()
	header := &clusterpb.Header{ClusterId: leader.ClusterID(), Term: term, Epoch: 1, From: leader.cfg.Name}
	// run runs batch over tasks, as the driver would, and returns the
	// changed counts.
	run := func(batch int64, tasks [][]string) map[string]int64 {
		for i, lines := range tasks {
			from := g.nodes[i%len(g.nodes)]
			for p, bucket := range tasktest.Buckets(t, agg, len(assignment.State), lines...) {
				cc, err := from.clients.conn(node(assignment.State[p].Owner).cfg.Listen)
				if err != nil {
					t.Fatal(err)
				}
				st := ShuffleTask{Job: "wc", Batch: batch, Partition: int32(p), Task: int32(i), Attempt: 1, Epoch: 1, Term: term, ClusterID: leader.ClusterID(), From: from.cfg.Name}
				if err := push(context.Background(), cc, st, [][]byte{bucket}, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		changed := map[string]int64{}
		for p, sp := range assignment.State {
			cc, err := leader.clients.conn(node(sp.Owner).cfg.Listen)
			if err != nil {
				t.Fatal(err)
			}
			req := &clusterpb.ReduceRequest{Header: header, Job: "wc", Batch: batch, Partition: int32(p), Tasks: int32(len(tasks)), Changes: true}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			done, err := ReducePartition(ctx, cc, req, recordCounts(red, changed))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if done.Standby != sp.Standby {
				t.Fatalf("partition %d: replicated to %q, want %q", p, done.Standby, sp.Standby)
			}
		}
		return changed
	}
	check := func(batch int64, want map[string]int64) {
		t.Helper()
		all := map[string]int64{}
		for _, sp := range assignment.State {
			ov, owned := storeCounts(t, node(sp.Owner).states, job, red, sp.FirstKeyGroup)
			sv, stood := storeCounts(t, node(sp.Standby).states, job, red, sp.FirstKeyGroup)
			if ov != batch || sv != batch || !maps.Equal(owned, stood) {
				t.Fatalf("batch %d, key groups from %d: owner %s at %d holds %v, standby %s at %d holds %v", batch, sp.FirstKeyGroup, sp.Owner, ov, owned, sp.Standby, sv, stood)
			}
			maps.Copy(all, owned)
		}
		if !maps.Equal(all, want) {
			t.Fatalf("batch %d: the stores hold %v, want %v", batch, all, want)
		}
	}

	batches := [][][]string{{{"a b a"}, {"c a"}}, {{"b"}, {"d"}}, {{"a e"}}}
	total := map[string]int64{}
	var last map[string]int64
	for batch, tasks := range batches[:2] {
		for _, lines := range tasks {
			countWords(total, lines)
		}
		last = run(int64(batch), tasks)
		for w, n := range last {
			if n != total[w] {
				t.Fatalf("batch %d: changed %v, running counts %v", batch, last, total)
			}
		}
		check(int64(batch), total)
	}
	for _, c := range g.cfgs {
		if _, err := os.Stat(filepath.Join(c.DataDir, "jobs", "wc", "state")); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}

	// The follower stops and starts again from its data directory.
	i := slices.IndexFunc(g.nodes, func(n *Node) bool { return n != leader })
	if err := g.nodes[i].Close(); err != nil {
		t.Fatal(err)
	}
	cfg := g.cfgs[i]
	cfg.Peers = nil
	var err error
	if g.nodes[i], err = Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	g.waitStatus(g.addrs(), allReachable)
	waitFor(t, 10*time.Second, func() error {
		if j, ok := g.nodes[i].fsm.Job("wc"); !ok || j.Assignment.GetEpoch() != 1 {
			return errors.New("the restarted worker has not applied epoch 1")
		}
		return nil
	})
	// Without its follower the leader may have stepped down: the driver
	// is whichever member leads now, in its term.
	leader = g.leader()
	term = leader.raft.CurrentTerm()
	header = &clusterpb.Header{ClusterId: leader.ClusterID(), Term: term, Epoch: 1, From: leader.cfg.Name}
	if again := run(1, batches[1]); !maps.Equal(again, last) {
		t.Fatalf("batch 1 run again after the restart changed %v, the first run %v", again, last)
	}
	check(1, total)
	countWords(total, batches[2][0])
	run(2, batches[2])
	check(2, total)
}

// TestConfigStateReplicas: --state-replicas takes 1 or 2, 2 only with 2 or
// more workers; its default is 2 with 2 or more workers, else 1.
func TestConfigStateReplicas(t *testing.T) {
	two := []Peer{{Name: "s1", Addr: "127.0.0.1:7077"}, {Name: "s2", Addr: "127.0.0.1:7078"}}
	for _, c := range []struct {
		replicas int
		peers    []Peer
		err      string // "" when valid
		resolved int
	}{
		{0, two, "", 2},
		{0, two[:1], "", 1},
		{1, two, "", 1},
		{2, two, "", 2},
		{3, two, "--state-replicas 3: want 1 (no standby) or 2", 0},
		{-1, two, "--state-replicas -1", 0},
		{2, two[:1], "--state-replicas 2 needs 2 or more workers", 0},
	} {
		cfg := DefaultConfig()
		cfg.Name, cfg.Listen, cfg.DataDir, cfg.Peers, cfg.StateReplicas = "s1", "127.0.0.1:7077", t.TempDir(), c.peers, c.replicas
		err := cfg.Validate()
		if c.err != "" {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("%d replicas, %d peers: %v, want ErrConfig %q", c.replicas, len(c.peers), err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d replicas, %d peers: %v", c.replicas, len(c.peers), err)
		}
		if got := (&Node{cfg: cfg, peers: c.peers, fsm: NewFSM()}).StateReplicas(); got != c.resolved {
			t.Fatalf("%d replicas, %d peers: StateReplicas %d, want %d", c.replicas, len(c.peers), got, c.resolved)
		}
	}
}

// TestScanRecordsAllocatesEachRecordOnce: the records of a partition's
// groups (a complete-mode batch's Rows) are allocated at their full size,
// once each, not grown put by put: a partition of 30,000 groups, one
// record of 930 KB, costs the scan one allocation per record besides the
// store scan's own few (4 in all). Before, the first record grew from
// nothing: 35 allocations, each copying the record so far.
func TestScanRecordsAllocatesEachRecordOnce(t *testing.T) {
	opts := state.DefaultOptions()
	opts.Changelog, opts.RetainVersions = true, 0
	prov, err := state.OpenPebble(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	st, err := prov.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30_000 {
		if err := st.Put(fmt.Appendf(nil, "2026-12-05T10:11:%09d", i), []byte{1, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Commit(0); err != nil {
		t.Fatal(err)
	}
	var records, size int
	scan := func() {
		records, size = 0, 0
		if err := scanRecords(st, func(rec []byte) error { records++; size += len(rec); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	scan() // the store's key order, kept for later scans
	if allocs := testing.AllocsPerRun(5, scan); allocs > float64(records)+8 {
		t.Errorf("a scan of %d records (%d bytes) allocated %.0f times; want one per record", records, size, allocs)
	}
}
