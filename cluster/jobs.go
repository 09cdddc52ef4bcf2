package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultKeyGroups is the number of key groups of a job registered with
// fewer shuffle partitions: a job's key groups are fixed for its life, so
// its state partitions can later be split up to this many.
const DefaultKeyGroups = 128

const (
	// retainReports is how many reports of each job the leader keeps.
	retainReports = 100
	// retainOutput bounds the sink output bytes a job's kept reports hold:
	// beyond it, the oldest reports lose their output.
	retainOutput = 16 << 20
	// reconcileInterval is how often the job manager checks its runs
	// against the state machine besides when something changes.
	reconcileInterval = 250 * time.Millisecond
	// restartDelay is how long a run that ended without ending its job (its
	// end could not be logged) waits before it starts again.
	restartDelay = time.Second
)

// A Driver runs one job on the leader: the batch loop, against the job's
// batch log in the Raft log (JobRun.Log) and the workers. Drive returns
// nil once the job's trigger ran out (once, available-now), an error when
// the job failed, and ctx's error soon after ctx is canceled: when the job
// is stopped, the member loses its leadership or the node closes. The job
// manager calls Drive from a goroutine of its own, one run per job at a
// time; a run of another job may run concurrently.
type Driver interface {
	Drive(ctx context.Context, run *JobRun) error
}

// DriverFunc adapts a function to Driver.
type DriverFunc func(ctx context.Context, run *JobRun) error

// Drive calls f(ctx, run).
func (f DriverFunc) Drive(ctx context.Context, run *JobRun) error { return f(ctx, run) }

// JobRun is one run of a job's driver on the leader, in one Raft term.
type JobRun struct {
	// Job is the job as it was when the run started: name, plan (a
	// serialized planpb.Query), options, partitioning, batch log and
	// assignment. The run owns this copy.
	Job *clusterpb.Job
	// Member is the name of the member the run is on, the leader.
	Member string
	// Term is the Raft term the run belongs to: Log's appends are logged
	// in it, or refused.
	Term uint64
	// Log is the job's batch log.
	Log *BatchLog

	ctx context.Context
	m   *jobManager

	lease struct {
		sync.Mutex
		until time.Time // Leading answers nil without asking before then
	}
}

// Leading returns nil when the run's member still leads in the run's
// term, and an error wrapping ErrNoLeader otherwise (or once the run
// stopped): call it right before an effect outside the Raft log and the
// workers, which no term fences, such as writing the sink's file on the
// leader's host. It confirms the leadership with a quorum
// (raft.VerifyLeader: a round of heartbeats), which then holds for half
// of HeartbeatTimeout from when it asked: a follower that answered does
// not vote for another member before HeartbeatTimeout passed without
// hearing from this leader, so no other leader can exist before then.
// Within that lease Leading answers at once. A pause (SIGSTOP, a VM
// frozen) longer than the lease between Leading and the effect is not
// covered: call it again after any wait. Safe for concurrent use.
func (r *JobRun) Leading() error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("%w: the driver run of job %s on %s in term %d stopped: %w", ErrNoLeader, r.Job.Name, r.Member, r.Term, err)
	}
	r.lease.Lock()
	defer r.lease.Unlock()
	if time.Now().Before(r.lease.until) {
		return nil
	}
	asked := time.Now()
	n := r.m.n
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %s no longer leads term %d (%v): the run of job %s writes nothing more", ErrNoLeader, r.Member, r.Term, err, r.Job.Name)
	}
	if term := n.raft.CurrentTerm(); term != r.Term {
		return fmt.Errorf("%w: %s leads term %d, the run of job %s belongs to term %d: it writes nothing more", ErrNoLeader, r.Member, term, r.Job.Name, r.Term)
	}
	r.lease.until = asked.Add(n.cfg.HeartbeatTimeout / 2)
	return nil
}

// Report publishes one committed batch's progress and what its sink wrote
// for the submitter (the console sink's text, or jsonl:- rows; nil for
// none) to the job's watchers and status. The leader keeps the last 100
// reports of each job, and logs the progress (logReport) for the next
// leader. Safe for concurrent use; output is copied. A report of a run
// that was stopped is dropped.
func (r *JobRun) Report(p engine.Progress, output []byte) {
	if r.ctx.Err() != nil {
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		r.m.n.log.Warn("cluster: a progress report does not encode", "job", r.Job.Name, "batch", p.BatchID, "err", err)
		return
	}
	r.m.publish(r.Job.Name, &clusterpb.Report{BatchId: p.BatchID, Progress: b, Output: slices.Clone(output)})
	r.logReport(p.BatchID, b)
}

// Bounds of logReport: the largest progress report it logs, and how long
// it waits for Raft to take the entry.
const (
	maxLoggedReport    = 64 << 10
	logReportQueueWait = 100 * time.Millisecond
)

// logReport logs batch's progress through Raft in the run's term as the
// job's last report (SetJobReport), which a new leader shows until its own
// driver commits a batch. It does not wait for the entry to commit: the
// next batch goes on meanwhile. A report that is not logged (larger than
// maxLoggedReport, Raft's queue full, the leadership lost) leaves the next
// leader with an older one.
func (r *JobRun) logReport(batch int64, progress []byte) {
	if len(progress) > maxLoggedReport {
		return
	}
	data, err := EncodeCommand(&clusterpb.Command{Term: r.Term, Kind: &clusterpb.Command_SetJobReport{SetJobReport: &clusterpb.SetJobReport{
		Job: r.Job.Name, Report: &clusterpb.Report{BatchId: batch, Progress: progress}}}})
	if err != nil {
		r.m.n.log.Warn("cluster: a progress report does not encode", "job", r.Job.Name, "batch", batch, "err", err)
		return
	}
	r.m.n.raft.Apply(data, logReportQueueWait)
}

// waitDriver is the Driver of a node whose Config sets none: the job is
// registered, the leader holds its run, and no batch runs until Drive's
// context ends.
var waitDriver = DriverFunc(func(ctx context.Context, run *JobRun) error {
	<-ctx.Done()
	return ctx.Err()
})

// jobManager runs, on the leader, one driver run per RUNNING job. On
// gaining leadership it waits until the state machine holds every entry
// committed before (a barrier), then starts a run per RUNNING job; on
// losing it, it stops every run and waits for them. A run is started
// when a job is registered, and stopped when it ends (SetJobState). A run
// whose Drive returns on its own logs the job's end: FINISHED, or FAILED
// with the error.
//
// Its loop goroutine is the only one that starts and stops runs; the
// gRPC handlers read its state and wait on changed.
type jobManager struct {
	n      *Node
	driver Driver
	poke   chan struct{} // capacity 1: wakes the loop
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		term    uint64 // the leadership term runs belong to; 0 while not leader
		runs    map[string]*runState
		reports map[string][]*clusterpb.Report // oldest first
		changed chan struct{}                  // closed and replaced on every change
	}
}

// runState is one run and its goroutine.
type runState struct {
	run    *JobRun
	cancel context.CancelFunc
	done   chan struct{} // closed once Drive returned and its end was logged
	ended  time.Time     // when done closed; set before
}

func (r *runState) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func newJobManager(n *Node, d Driver) *jobManager {
	if d == nil {
		d = waitDriver
	}
	m := &jobManager{n: n, driver: d, poke: make(chan struct{}, 1)}
	m.mu.runs = map[string]*runState{}
	m.mu.reports = map[string][]*clusterpb.Report{}
	m.mu.changed = make(chan struct{})
	return m
}

// wake makes the loop reconcile soon.
func (m *jobManager) wake() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes every waiter on changed.
func (m *jobManager) broadcastLocked() {
	close(m.mu.changed)
	m.mu.changed = make(chan struct{})
}

// loop reconciles the runs with the leadership and the state machine
// until stop closes, then stops every run and waits for them.
func (m *jobManager) loop(stop <-chan struct{}) {
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		m.reconcile()
		select {
		case <-stop:
			m.stopRuns(func(string) bool { return true })
			m.mu.Lock()
			m.mu.term = 0
			m.broadcastLocked()
			m.mu.Unlock()
			return
		case <-m.poke:
		case <-m.n.fsm.Changed():
		case <-t.C:
		}
	}
}

// reconcile starts and stops runs so that, while this member leads, each
// RUNNING job has one run in the current term, and otherwise none does.
func (m *jobManager) reconcile() {
	r := m.n.raft
	leader, term := r.State() == raft.Leader, r.CurrentTerm()
	m.mu.Lock()
	cur := m.mu.term
	m.mu.Unlock()
	if cur != 0 && (!leader || term != cur) {
		m.n.log.Info("cluster: stopping the job drivers: leadership lost or moved to a new term", "name", m.n.cfg.Name, "term", cur)
		m.stopRuns(func(string) bool { return true })
		m.mu.Lock()
		m.mu.term = 0 // the reports stay for the watches of the term to send
		m.broadcastLocked()
		m.mu.Unlock()
	}
	if !leader {
		return
	}
	if cur != term {
		// Runs read the state machine: it must hold every entry committed
		// before this term.
		if err := r.Barrier(m.n.cfg.ApplyTimeout).Error(); err != nil {
			m.n.log.Warn("cluster: the new leader could not catch up with its log; retrying", "err", err)
			return
		}
		m.mu.Lock()
		m.mu.term = term
		clear(m.mu.reports) // of a term this member led before
		m.seedReportsLocked()
		m.mu.Unlock()
	}
	running := map[string]*clusterpb.Job{}
	for _, j := range m.n.fsm.Jobs() {
		if j.State == clusterpb.JobState_RUNNING {
			running[j.Name] = j
		}
	}
	m.stopRuns(func(name string) bool { return running[name] == nil })
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, j := range running {
		if rs := m.mu.runs[name]; rs == nil || (rs.exited() && time.Since(rs.ended) >= restartDelay) {
			m.startLocked(j, term)
		}
	}
	m.broadcastLocked()
}

// seedReportsLocked gives each job without a report on this member, a
// new leader, the last report its state machine holds (a batch's progress
// logged by the driver before, without the sink's output).
func (m *jobManager) seedReportsLocked() {
	for _, j := range m.n.fsm.Jobs() {
		if j.LastReport != nil && len(m.mu.reports[j.Name]) == 0 {
			m.mu.reports[j.Name] = []*clusterpb.Report{j.LastReport}
		}
	}
}

// startLocked starts a run of j in term.
func (m *jobManager) startLocked(j *clusterpb.Job, term uint64) {
	ctx, cancel := context.WithCancel(m.n.stopCtx)
	run := &JobRun{Job: j, Member: m.n.cfg.Name, Term: term, ctx: ctx, m: m,
		Log: &BatchLog{raft: m.n.raft, fsm: m.n.fsm, job: j.Name, term: term, timeout: m.n.cfg.ApplyTimeout}}
	rs := &runState{run: run, cancel: cancel, done: make(chan struct{})}
	m.mu.runs[j.Name] = rs
	m.n.log.Info("cluster: job driver started", "job", j.Name, "name", m.n.cfg.Name, "term", term)
	m.wg.Go(func() {
		err := m.driver.Drive(ctx, run)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrNoLeader):
			// Deposed before the run was stopped: the next leader runs the job.
			m.n.log.Info("cluster: job driver stopped: this member no longer leads", "job", j.Name, "name", m.n.cfg.Name, "term", term, "err", err)
		default:
			m.logEnd(run, err)
		}
		m.mu.Lock()
		rs.ended = time.Now()
		close(rs.done)
		m.broadcastLocked()
		m.mu.Unlock()
		m.wake()
	})
}

// logEnd logs the end of run's job: FINISHED when err is nil, else FAILED.
func (m *jobManager) logEnd(run *JobRun, err error) {
	c := &clusterpb.SetJobState{Job: run.Job.Name, State: clusterpb.JobState_FINISHED}
	if err != nil {
		c.State, c.Error = clusterpb.JobState_FAILED, fmt.Sprintf("driver on %s: %v", run.Member, err)
		m.n.log.Error("cluster: job failed", "job", run.Job.Name, "err", err)
	}
	if _, aerr := applyInTerm(m.n.raft, &clusterpb.Command{Kind: &clusterpb.Command_SetJobState{SetJobState: c}}, run.Term, m.n.cfg.ApplyTimeout); aerr != nil {
		m.n.log.Warn("cluster: logging a job's end failed; its driver runs again", "job", run.Job.Name, "state", c.State, "err", aerr)
	}
}

// stopRuns stops the runs of the jobs named by which and waits for them.
func (m *jobManager) stopRuns(which func(job string) bool) {
	m.mu.Lock()
	var stopping []*runState
	for name, rs := range m.mu.runs {
		if which(name) {
			rs.cancel()
			stopping = append(stopping, rs)
			delete(m.mu.runs, name)
		}
	}
	m.mu.Unlock()
	for _, rs := range stopping {
		<-rs.done
		m.n.log.Info("cluster: job driver stopped", "job", rs.run.Job.Name, "name", m.n.cfg.Name, "term", rs.run.Term)
	}
	if len(stopping) > 0 {
		m.mu.Lock()
		m.broadcastLocked()
		m.mu.Unlock()
	}
}

// close waits for the runs' goroutines; loop stopped them.
func (m *jobManager) close() { m.wg.Wait() }

// publish keeps rep among job's last reports and wakes the watchers.
func (m *jobManager) publish(job string, rep *clusterpb.Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reps := append(m.mu.reports[job], rep)
	if len(reps) > retainReports {
		reps = slices.Delete(reps, 0, len(reps)-retainReports)
	}
	out := 0
	for _, r := range reps {
		out += len(r.Output)
	}
	for i := 0; out > retainOutput && i < len(reps)-1; i++ {
		out -= len(reps[i].Output)
		reps[i] = &clusterpb.Report{BatchId: reps[i].BatchId, Progress: reps[i].Progress}
	}
	m.mu.reports[job] = reps
	m.broadcastLocked()
}

// leading returns the term this member's runs belong to, or an
// Unavailable status while it is not the leader or is catching up.
func (m *jobManager) leading() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.term == 0 {
		return 0, status.Errorf(codes.Unavailable, "%v: %s is not the leader, or is starting the job drivers (retry)", ErrNoLeader, m.n.cfg.Name)
	}
	return m.mu.term, nil
}

// awaitLeading waits, until ctx is done, for this member to have caught
// up with its log as the leader (leading answers), and returns at once
// once it is no leader.
func (m *jobManager) awaitLeading(ctx context.Context) {
	for m.n.raft.State() == raft.Leader {
		m.mu.Lock()
		term, changed := m.mu.term, m.mu.changed
		m.mu.Unlock()
		if term != 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// job returns the named job, or a NotFound status naming the jobs there
// are.
func (m *jobManager) job(name string) (*clusterpb.Job, error) {
	if j, ok := m.n.fsm.Job(name); ok {
		return j, nil
	}
	var names []string
	for _, j := range m.n.fsm.Jobs() {
		names = append(names, j.Name)
	}
	return nil, status.Errorf(codes.NotFound, "%v %q: the cluster has jobs %v (gostream jobs list)", ErrUnknownJob, name, names)
}

// status is j's status with its run, and with its kept progress reports
// when progress is set.
func (m *jobManager) status(j *clusterpb.Job, progress bool) *clusterpb.JobStatus {
	js := jobStatus(j)
	m.mu.Lock()
	defer m.mu.Unlock()
	if rs := m.mu.runs[j.Name]; rs != nil && !rs.exited() {
		js.Driver, js.DriverTerm = rs.run.Member, rs.run.Term
	}
	if progress {
		for _, r := range m.mu.reports[j.Name] {
			js.Progress = append(js.Progress, r.Progress)
		}
	}
	return js
}

// jobs answers a Jobs request on the leader.
func (m *jobManager) jobs(name string) (*clusterpb.JobsResponse, error) {
	if _, err := m.leading(); err != nil {
		return nil, err
	}
	if name != "" {
		j, err := m.job(name)
		if err != nil {
			return nil, err
		}
		return &clusterpb.JobsResponse{Jobs: []*clusterpb.JobStatus{m.status(j, true)}}, nil
	}
	resp := &clusterpb.JobsResponse{}
	for _, j := range m.n.fsm.Jobs() {
		resp.Jobs = append(resp.Jobs, m.status(j, false))
	}
	return resp, nil
}

// stop logs the job's stop and waits until its run stopped.
func (m *jobManager) stop(ctx context.Context, name string) (*clusterpb.StopJobResponse, error) {
	if _, err := m.leading(); err != nil {
		return nil, err
	}
	if _, err := m.job(name); err != nil {
		return nil, err
	}
	c := &clusterpb.Command{Kind: &clusterpb.Command_SetJobState{SetJobState: &clusterpb.SetJobState{Job: name, State: clusterpb.JobState_STOPPED}}}
	if err := m.n.apply(c); err != nil {
		return nil, applyStatus(err)
	}
	for {
		m.mu.Lock()
		rs, changed := m.mu.runs[name], m.mu.changed
		m.mu.Unlock()
		if rs == nil || rs.exited() {
			break
		}
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
	j, err := m.job(name)
	if err != nil {
		return nil, err
	}
	return &clusterpb.StopJobResponse{Job: m.status(j, false)}, nil
}

// watch sends the job's status, its reports after after (when nil, the
// last one only) and those to come, and its status again when its run
// starts or stops, until the job is no longer RUNNING (a last status), ctx
// ends, or this member's leadership ends (Unavailable, once it sent the
// reports its runs published: the next leader has their progress only,
// without their output).
func (m *jobManager) watch(ctx context.Context, name string, after *int64, send func(*clusterpb.WatchEvent) error) error {
	term, err := m.leading()
	if err != nil {
		return err
	}
	j, err := m.job(name)
	if err != nil {
		return err
	}
	st := m.status(j, false)
	if err := send(&clusterpb.WatchEvent{Kind: &clusterpb.WatchEvent_Status{Status: st}}); err != nil {
		return err
	}
	driver := st.Driver
	last := int64(-1)
	if after != nil {
		last = *after
	} else {
		m.mu.Lock()
		if reps := m.mu.reports[name]; len(reps) > 0 {
			last = reps[len(reps)-1].BatchId - 1
		}
		m.mu.Unlock()
	}
	for {
		// The job's state is read before its reports: every report of a
		// run that ended is kept before its end is logged.
		j, err := m.job(name)
		if err != nil {
			return err
		}
		m.mu.Lock()
		deposed := m.mu.term != term // its runs stopped: no report comes after these
		var reps []*clusterpb.Report
		for _, r := range m.mu.reports[name] {
			if r.BatchId > last {
				reps = append(reps, r)
			}
		}
		changed := m.mu.changed
		m.mu.Unlock()
		for _, r := range reps {
			if err := send(&clusterpb.WatchEvent{Kind: &clusterpb.WatchEvent_Report{Report: r}}); err != nil {
				return err
			}
			last = r.BatchId
		}
		if deposed {
			return status.Errorf(codes.Unavailable, "%v: %s is no longer the leader of term %d (watch again)", ErrNoLeader, m.n.cfg.Name, term)
		}
		st := m.status(j, false)
		if j.State != clusterpb.JobState_RUNNING {
			return send(&clusterpb.WatchEvent{Kind: &clusterpb.WatchEvent_Status{Status: st}})
		}
		if st.Driver != driver { // a run started or stopped
			if err := send(&clusterpb.WatchEvent{Kind: &clusterpb.WatchEvent_Status{Status: st}}); err != nil {
				return err
			}
			driver = st.Driver
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

// NewJob returns the registration of a job named name that runs p: its
// plan, options and fingerprint, p's shuffle partitions (default
// engine.DefaultShufflePartitions) and max(DefaultKeyGroups, partitions)
// key groups.
func NewJob(name string, p *engine.QueryPlan) (*clusterpb.Job, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(p.Query)
	if err != nil {
		return nil, fmt.Errorf("cluster: job %q: encoding its plan: %w", name, err)
	}
	parts := p.Query.ShufflePartitions
	if parts == 0 {
		parts = engine.DefaultShufflePartitions
	}
	return &clusterpb.Job{Name: name, Plan: raw, Options: p.Options, PlanFingerprint: p.Fingerprint,
		ShufflePartitions: parts, KeyGroups: max(DefaultKeyGroups, parts)}, nil
}

// checkJob checks, on the leader, that a job to register can run on the
// members: its plan decodes and compiles with this member's functions,
// and every member that answers within memberInfoTimeout registered the
// same jobs and functions.
func (n *Node) checkJob(ctx context.Context, j *clusterpb.Job) error {
	var q planpb.Query
	if err := proto.Unmarshal(j.GetPlan(), &q); err != nil {
		return fmt.Errorf("job %q: its plan is not a gostream.plan.v1.Query: %w (is the submitting gostream the workers' version?)", j.GetName(), err)
	}
	if err := engine.CheckPlan(&q); err != nil {
		return fmt.Errorf("job %q cannot run on %s: %w (build the workers and the submitting program from the same code, with the same registered functions)", j.GetName(), n.cfg.Name, err)
	}
	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		if string(srv.ID) == n.cfg.Name {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, memberInfoTimeout)
			defer cancel()
			info, err := n.clients.control(string(srv.Address)).MemberInfo(ctx, &clusterpb.MemberInfoRequest{Header: n.header(0)})
			if err != nil {
				return // not running: it is checked when a job is registered while it runs
			}
			errs[i] = n.sameRegistered(string(srv.ID), info.Registered)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("job %q: %w", j.GetName(), err)
	}
	return nil
}

// sameRegistered returns an error naming the difference unless the member
// name's binary registered theirs, the jobs and functions this member's
// did.
func (n *Node) sameRegistered(name string, theirs []string) error {
	mine := n.registered()
	if slices.Equal(theirs, mine) {
		return nil
	}
	return fmt.Errorf("worker %s registered other jobs or functions than %s: only %s has %v, only %s has %v (build every worker from the same code)",
		name, n.cfg.Name, name, missing(mine, theirs), n.cfg.Name, missing(theirs, mine))
}

// missing returns the lines of have that want lacks.
func missing(want, have []string) []string {
	var out []string
	for _, s := range have {
		if !slices.Contains(want, s) {
			out = append(out, s)
		}
	}
	return out
}

// registered is what this member's binary registered.
func (n *Node) registered() []string {
	if n.cfg.Registered != nil {
		return n.cfg.Registered()
	}
	return engine.Registered()
}
