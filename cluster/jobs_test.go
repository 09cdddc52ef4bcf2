package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/loop"
	_ "github.com/gostream/gostream/examples/wordcount"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/hashicorp/raft"
)

// wordcountJob is the registration of the wordcount job under name.
func wordcountJob(t *testing.T, name string) *clusterpb.Job {
	t.Helper()
	return jobOf(t, name, func(*planpb.Query) {})
}

// jobOf is the registration of the wordcount job under name, its plan
// changed by edit.
func jobOf(t *testing.T, name string, edit func(*planpb.Query)) *clusterpb.Job {
	t.Helper()
	wc, err := engine.LookupJob("wordcount")
	if err != nil {
		t.Fatal(err)
	}
	df := wc.Build(engine.NewSession(), engine.JobParams{Brokers: "127.0.0.1:9092", Topic: "logs"})
	p, err := df.WriteStream().OutputMode(engine.Complete).QueryName(name).Plan()
	if err != nil {
		t.Fatal(err)
	}
	edit(p.Query)
	j, err := NewJob(name, p)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// recorder is a test Driver: it records each run and, unless the job's
// behaviour says otherwise, runs until its context ends.
type recorder struct {
	mu      sync.Mutex
	runs    []*recordedRun
	behave  map[string]func(ctx context.Context, run *JobRun) error // by job
	changed chan struct{}
}

type recordedRun struct {
	job, member string
	term        uint64
	run         *JobRun
	ended       bool
}

func newRecorder() *recorder {
	return &recorder{behave: map[string]func(context.Context, *JobRun) error{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) Drive(ctx context.Context, run *JobRun) error {
	rec := &recordedRun{job: run.Job.Name, member: run.Member, term: run.Term, run: run}
	r.mu.Lock()
	r.runs = append(r.runs, rec)
	behave := r.behave[run.Job.Name]
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		rec.ended = true
		r.mu.Unlock()
	}()
	if behave != nil {
		return behave(ctx, run)
	}
	<-ctx.Done()
	return ctx.Err()
}

// live returns the runs of job that have not ended.
func (r *recorder) live(job string) []recordedRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedRun
	for _, rr := range r.runs {
		if rr.job == job && !rr.ended {
			out = append(out, *rr)
		}
	}
	return out
}

// waitRun waits for exactly one live run of job, accepted by ok.
func (r *recorder) waitRun(t *testing.T, job string, ok func(recordedRun) error) recordedRun {
	t.Helper()
	var got recordedRun
	waitFor(t, 20*time.Second, func() error {
		live := r.live(job)
		if len(live) != 1 {
			return fmt.Errorf("%d live runs of %s; want 1", len(live), job)
		}
		got = live[0]
		return ok(got)
	})
	return got
}

func anyRun(recordedRun) error { return nil }

func (g *nodeGroup) leaderIndex() int {
	g.t.Helper()
	st := g.waitStatus(g.addrs(), allReachable)
	return slices.IndexFunc(g.cfgs, func(c Config) bool { return c.Name == st.Leader })
}

// TestJobManager: the leader runs one driver per running job: started on
// register, stopped (and waited for) by StopJob, started again by a new
// registration, and moved to the new leader when the leader goes. Jobs
// reports the state and the driver; bad input gets clear errors.
func TestJobManager(t *testing.T) {
	rec := newRecorder()
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = rec })
	li := g.leaderIndex()
	leader := g.cfgs[li].Name
	c := NewClient(g.addrs())
	defer c.Close()
	ctx := context.Background()

	if _, err := c.RegisterJob(ctx, wordcountJob(t, "wc")); err != nil {
		t.Fatal(err)
	}
	first := rec.waitRun(t, "wc", anyRun)
	if first.member != leader {
		t.Fatalf("the driver runs on %s; want the leader %s", first.member, leader)
	}
	jobs, err := c.Jobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].State != clusterpb.JobState_RUNNING || jobs[0].Driver != leader || jobs[0].DriverTerm != first.term {
		t.Fatalf("Jobs = %v; want wc RUNNING, driven by %s in term %d", jobs, leader, first.term)
	}

	// A plan calling a function the members do not know is refused at
	// registration.
	udf := jobOf(t, "udf", func(q *planpb.Query) {
		agg := q.Plan.GetAggregate()
		call := &planpb.Expr{Kind: &planpb.Expr_Call{Call: &planpb.Call{Function: "udf", Args: []*planpb.Expr{
			{Kind: &planpb.Expr_Literal{Literal: &planpb.Literal{Value: &planpb.Literal_String_{String_: "no_such_function"}, Type: planpb.DataType_STRING}}},
		}}}}
		agg.Input = &planpb.Plan{Node: &planpb.Plan_Filter{Filter: &planpb.Filter{Input: agg.Input, Condition: call}}}
	})
	if _, err := c.RegisterJob(ctx, udf); err == nil || !strings.Contains(err.Error(), `no function "no_such_function"`) {
		t.Errorf("registering a plan with an unknown function = %v; want an error naming it", err)
	}
	if _, err := c.StopJob(ctx, "nope"); err == nil || !strings.Contains(err.Error(), ErrUnknownJob.Error()) || !strings.Contains(err.Error(), "[wc]") {
		t.Errorf("StopJob(nope) = %v; want %v naming the jobs there are", err, ErrUnknownJob)
	}

	// Stop: the driver has stopped when StopJob returns.
	st, err := c.StopJob(ctx, "wc")
	if err != nil {
		t.Fatal(err)
	}
	if live := rec.live("wc"); len(live) != 0 || st.State != clusterpb.JobState_STOPPED || st.Driver != "" {
		t.Fatalf("after StopJob: %d live runs, status %v; want none, STOPPED without driver", len(live), st)
	}
	if _, err := c.StopJob(ctx, "wc"); err != nil {
		t.Errorf("stopping a stopped job = %v; want a no-op", err)
	}
	if _, err := c.RegisterJob(ctx, wordcountJob(t, "wc")); err != nil {
		t.Fatal(err)
	}
	rec.waitRun(t, "wc", anyRun)

	// The leader goes: the next one runs the driver, in its term, and a
	// watcher follows it there until the job stops.
	var statuses []*clusterpb.JobStatus
	watched, attached := make(chan error, 1), make(chan struct{})
	go func() {
		watched <- c.Watch(ctx, "wc", nil, func(ev *clusterpb.WatchEvent) error {
			if st := ev.GetStatus(); st != nil {
				if statuses = append(statuses, st); len(statuses) == 1 {
					close(attached)
				}
			}
			return nil
		})
	}()
	select {
	case <-attached:
	case err := <-watched:
		t.Fatalf("Watch ended before its first status: %v", err)
	}
	if err := g.nodes[li].Close(); err != nil {
		t.Fatal(err)
	}
	g.nodes[li] = nil
	moved := rec.waitRun(t, "wc", func(r recordedRun) error {
		if r.member == leader || r.term <= first.term {
			return fmt.Errorf("the run is on %s in term %d", r.member, r.term)
		}
		return nil
	})
	t.Logf("driver moved from %s (term %d) to %s (term %d)", leader, first.term, moved.member, moved.term)
	var rest []string
	for i, cfg := range g.cfgs {
		if i != li {
			rest = append(rest, cfg.Listen)
		}
	}
	c2 := NewClient(rest)
	defer c2.Close()
	waitFor(t, 10*time.Second, func() error {
		jobs, err := c2.Jobs(ctx, "wc")
		if err != nil {
			return err
		}
		if jobs[0].Driver != moved.member {
			return fmt.Errorf("Jobs says the driver is %q; want %s", jobs[0].Driver, moved.member)
		}
		return nil
	})
	if _, err := c2.StopJob(ctx, "wc"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watched:
		if err != nil {
			t.Fatalf("Watch across the leader change: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Watch did not end 20 s after the job stopped")
	}
	// One opening status from the old leader, at least one from the new,
	// and the last one.
	if n := len(statuses); n < 3 || statuses[0].Driver != leader || statuses[n-1].State != clusterpb.JobState_STOPPED {
		t.Errorf("Watch's statuses across the leader change: %v; want the old leader's, the new one's, and STOPPED", statuses)
	}
}

// TestJobManagerWatch: Watch, through a follower, gets the job's status,
// each report and a last status when the driver finishes; a failing
// driver's job is FAILED with its error.
func TestJobManagerWatch(t *testing.T) {
	rec := newRecorder()
	release := make(chan struct{})
	rec.behave["fin"] = func(ctx context.Context, run *JobRun) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		for b := range int64(3) {
			run.Report(engine.Progress{BatchID: b, NumInputRows: 10 * b}, fmt.Appendf(nil, "Batch: %d\n", b))
		}
		return nil
	}
	rec.behave["bad"] = func(ctx context.Context, run *JobRun) error { return errors.New("boom") }
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = rec })
	li := g.leaderIndex()
	follower := g.cfgs[(li+1)%3]
	c := NewClient([]string{follower.Listen})
	defer c.Close()
	ctx := context.Background()

	if _, err := c.RegisterJob(ctx, wordcountJob(t, "fin")); err != nil {
		t.Fatal(err)
	}
	var events []string
	err := c.Watch(ctx, "fin", nil, func(ev *clusterpb.WatchEvent) error {
		switch k := ev.Kind.(type) {
		case *clusterpb.WatchEvent_Status:
			if len(events) > 0 && k.Status.State == clusterpb.JobState_RUNNING {
				return nil // the driver started after the watch did
			}
			events = append(events, "status "+k.Status.State.String())
			if len(events) == 1 {
				close(release)
			}
		case *clusterpb.WatchEvent_Report:
			events = append(events, fmt.Sprintf("report %d %q", k.Report.BatchId, k.Report.Output))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"status RUNNING", `report 0 "Batch: 0\n"`, `report 1 "Batch: 1\n"`, `report 2 "Batch: 2\n"`, "status FINISHED"}
	if !slices.Equal(events, want) {
		t.Errorf("Watch events:\n%q\nwant\n%q", events, want)
	}
	// Watching the finished job from its start gives its reports between
	// the opening and the last status.
	events = nil
	from := int64(-1)
	if err := c.Watch(ctx, "fin", &from, func(ev *clusterpb.WatchEvent) error {
		if r := ev.GetReport(); r != nil {
			events = append(events, fmt.Sprintf("report %d %q", r.BatchId, r.Output))
		} else {
			events = append(events, "status "+ev.GetStatus().State.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want[0] = "status FINISHED"
	if !slices.Equal(events, want) {
		t.Errorf("Watch events of the finished job:\n%q\nwant\n%q", events, want)
	}
	jobs, err := c.Jobs(ctx, "fin")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(jobs[0].Progress); got != 3 {
		t.Errorf("Jobs(fin) has %d progress reports; want 3", got)
	}

	if _, err := c.RegisterJob(ctx, wordcountJob(t, "bad")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		jobs, err := c.Jobs(ctx, "bad")
		if err != nil {
			return err
		}
		if j := jobs[0]; j.State != clusterpb.JobState_FAILED || !strings.Contains(j.Error, "boom") {
			return fmt.Errorf("job bad is %v %q", j.State, j.Error)
		}
		return nil
	})
	var last *clusterpb.JobStatus
	if err := c.Watch(ctx, "bad", nil, func(ev *clusterpb.WatchEvent) error { last = ev.GetStatus(); return nil }); err != nil {
		t.Fatal(err)
	}
	if last.GetState() != clusterpb.JobState_FAILED {
		t.Errorf("Watch of a failed job ended with %v", last)
	}
}

// TestBatchLog: a run's batch log appends through Raft and recovers as a
// local checkpoint's does; once the leadership moved on, even back to the
// same member, an old run's appends are refused.
func TestBatchLog(t *testing.T) {
	rec := newRecorder()
	g := newNodeGroupWith(t, 3, func(c *Config) { c.Driver = rec })
	li := g.leaderIndex()
	c := NewClient(g.addrs())
	defer c.Close()
	ctx := context.Background()
	if _, err := c.RegisterJob(ctx, wordcountJob(t, "wc")); err != nil {
		t.Fatal(err)
	}
	old := rec.waitRun(t, "wc", anyRun).run
	offs := func(id, from, until int64) loop.OffsetsEntry {
		return loop.OffsetsEntry{BatchID: id, TimestampMs: 1000 + id,
			Start: kafkasrc.Offsets{"logs": {0: from}}, End: kafkasrc.Offsets{"logs": {0: until}}}
	}
	recovered := func(l *BatchLog) loop.Recovery {
		t.Helper()
		r, err := l.Recover()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := recovered(old.Log); r.LastCommitted != -1 || r.Rerun != nil {
		t.Fatalf("empty log recovered as %+v", r)
	}
	if err := old.Log.WriteOffsets(ctx, offs(0, 0, 10)); err != nil {
		t.Fatal(err)
	}
	if r := recovered(old.Log); r.LastCommitted != -1 || r.Rerun == nil || r.Rerun.BatchID != 0 || r.End != nil {
		t.Fatalf("after offsets 0: %+v; want batch 0 to re-run", r)
	}
	next := offs(1, 10, 20)
	if err := old.Log.WriteCommit(ctx, 0, &next); err != nil {
		t.Fatal(err)
	}
	if err := old.Log.WriteCommit(ctx, 0, nil); err != nil {
		t.Errorf("a retried commit of batch 0 = %v; want a no-op", err)
	}
	if err := old.Log.WriteCommit(ctx, 2, nil); !errors.Is(err, ErrRefused) {
		t.Errorf("a commit of unplanned batch 2 = %v; want %v", err, ErrRefused)
	}
	want := func(r loop.Recovery) error {
		if r.LastCommitted != 0 || r.Rerun == nil || r.Rerun.BatchID != 1 || r.Rerun.End.String() != `{"logs":{"0":20}}` || r.End.String() != `{"logs":{"0":10}}` {
			return fmt.Errorf("recovered %+v; want batch 1 (to 20) to re-run after 0 (to 10)", r)
		}
		return nil
	}
	if err := want(recovered(old.Log)); err != nil {
		t.Fatal(err)
	}

	// The leadership moves to another member, then back.
	if err := g.nodes[li].raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	moved := rec.waitRun(t, "wc", func(r recordedRun) error {
		if r.term <= old.Term {
			return fmt.Errorf("run of term %d", r.term)
		}
		return nil
	})
	if err := want(recovered(moved.run.Log)); err != nil {
		t.Errorf("the new leader's run: %v", err)
	}
	ni := slices.IndexFunc(g.cfgs, func(c Config) bool { return c.Name == moved.member })
	back := raft.ServerID(g.cfgs[li].Name)
	if err := g.nodes[ni].raft.LeadershipTransferToServer(back, raft.ServerAddress(g.cfgs[li].Listen)).Error(); err != nil {
		t.Fatal(err)
	}
	rec.waitRun(t, "wc", func(r recordedRun) error {
		if r.member != g.cfgs[li].Name || r.term <= moved.term {
			return fmt.Errorf("run on %s in term %d", r.member, r.term)
		}
		return nil
	})
	err := old.Log.WriteCommit(ctx, 1, nil)
	if !errors.Is(err, ErrStaleTerm) {
		t.Errorf("an append of the run of term %d after the leadership came back = %v; want %v", old.Term, err, ErrStaleTerm)
	}
	if j, _ := g.nodes[li].FSM().Job("wc"); len(j.BatchLog) != 3 {
		t.Errorf("the batch log has %d entries; want 3", len(j.BatchLog))
	}
}

// TestJobManagerRefusesOtherRegistries: while a member's binary registered
// other jobs or functions than the leader's, a job is refused at
// registration, naming the member and the difference.
func TestJobManagerRefusesOtherRegistries(t *testing.T) {
	const extra = "function shout (string) -> string"
	g := newNodeGroupWith(t, 3, func(c *Config) {
		if c.Name == "s3" {
			c.Registered = func() []string { return append(engine.Registered(), extra) }
		}
	})
	g.waitStatus(g.addrs(), allReachable)
	c := NewClient(g.addrs())
	defer c.Close()
	_, err := c.RegisterJob(context.Background(), wordcountJob(t, "wc"))
	if err == nil || !strings.Contains(err.Error(), extra) || !strings.Contains(err.Error(), "s3") || !strings.Contains(err.Error(), "build every worker from the same code") {
		t.Fatalf("RegisterJob with s3's registry differing = %v; want an error naming s3 and %q", err, extra)
	}
	t.Log(err)
	if _, ok := g.nodes[0].FSM().Job("wc"); ok {
		t.Error("the job was registered")
	}
}

// TestJobRunLeading: a run's Leading answers nil while its member leads in
// the run's term, and ErrNoLeader once another member leads, even before
// the job manager stopped the run (its context is not canceled here):
// the fence a jsonl sink's writes go through, which then writes nothing.
func TestJobRunLeading(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	leader := g.leader()
	run := &JobRun{Job: &clusterpb.Job{Name: "wc"}, Member: leader.cfg.Name, Term: leader.raft.CurrentTerm(), ctx: context.Background(), m: leader.jobs}
	if err := run.Leading(); err != nil {
		t.Fatalf("Leading on the leader = %v; want nil", err)
	}
	path := filepath.Join(t.TempDir(), "out.jsonl")
	sink := &engine.JSONLSink{Path: path, Fence: run.Leading}
	defer sink.Close()
	batch := engine.NewBatch(0, engine.Complete, operators.Schema{{Name: "word", Type: planpb.DataType_STRING}}, func(fn operators.Emit) error {
		return fn(operators.Row{operators.Str("a")})
	})
	if err := sink.AddBatch(context.Background(), batch); err != nil {
		t.Fatalf("the leader's sink: %v", err)
	}
	if err := leader.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if err := run.Leading(); !errors.Is(err, ErrNoLeader) {
			return fmt.Errorf("Leading after the leadership moved = %v; want ErrNoLeader", err)
		}
		return nil
	})
	t.Log(run.Leading())
	written, _ := os.ReadFile(path)
	if err := sink.AddBatch(context.Background(), batch); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("the deposed leader's sink = %v; want ErrNoLeader", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(written) {
		t.Fatalf("the deposed leader's sink wrote %q after %q", now, written)
	}
}

// TestWatchDeposedLeaderSendsItsReports: a watch on a leader deposed
// right after its driver reported a batch sends that report before it
// ends (Unavailable), so a submitter following the job, who then watches
// the new leader from the last report received, gets every committed
// batch's output (before: the deposed leader dropped its reports and the
// new leader held batch 1's progress only, without its output).
func TestWatchDeposedLeaderSendsItsReports(t *testing.T) {
	var runs sync.Mutex
	first := true
	next, reported := make(chan struct{}), make(chan struct{})
	driver := make(chan string, 1) // the member whose run reports
	g := newNodeGroupWith(t, 3, func(c *Config) {
		c.Driver = DriverFunc(func(ctx context.Context, run *JobRun) error {
			runs.Lock()
			mine := first
			first = false
			runs.Unlock()
			if mine {
				driver <- run.Member
				run.Report(engine.Progress{BatchID: 0}, []byte("zero\n"))
				select {
				case <-next:
				case <-ctx.Done():
					return ctx.Err()
				}
				run.Report(engine.Progress{BatchID: 1}, []byte("one\n"))
				close(reported)
			}
			<-ctx.Done()
			return ctx.Err()
		})
	})
	if err := g.nodes[g.leaderIndex()].apply(registerCmd(wordcountJob(t, "wc"))); err != nil {
		t.Fatal(err)
	}
	// Every wait is bounded: an election the test did not ask for (the
	// in-memory group under load) ends the run it follows.
	await := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not after 30s (a leader change the test did not make?)", what)
		}
	}
	var l *Node
	select {
	case name := <-driver:
		l = g.nodes[slices.IndexFunc(g.nodes, func(n *Node) bool { return n.cfg.Name == name })]
	case <-time.After(30 * time.Second):
		t.Fatal("no driver run started after 30s")
	}
	gotZero, unblock := make(chan struct{}), make(chan struct{})
	var got []string
	done := make(chan error, 1)
	go func() {
		after := int64(-1)
		done <- l.jobs.watch(context.Background(), "wc", &after, func(ev *clusterpb.WatchEvent) error {
			if r := ev.GetReport(); r != nil {
				got = append(got, string(r.Output))
				if r.BatchId == 0 {
					close(gotZero)
					<-unblock // the watch is slow: batch 1 is reported meanwhile
				}
			}
			return nil
		})
	}()
	defer func() {
		select {
		case <-unblock:
		default:
			close(unblock)
		}
	}()
	await("the watch on "+l.cfg.Name+" sending batch 0", gotZero)
	close(next)
	await("the run on "+l.cfg.Name+" reporting batch 1", reported)
	if err := l.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := l.jobs.leading()
		if err == nil {
			return fmt.Errorf("%s still leads", l.cfg.Name)
		}
		return nil
	})
	close(unblock)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the deposed leader %s's watch did not end after 30s", l.cfg.Name)
	}
	if !strings.Contains(fmt.Sprint(err), ErrNoLeader.Error()) {
		t.Errorf("the watch ended with %v; want Unavailable: no longer the leader", err)
	}
	if want := []string{"zero\n", "one\n"}; !slices.Equal(got, want) {
		t.Errorf("the deposed leader's watch sent the outputs %q; want %q", got, want)
	}
}
