package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// BatchDriver is the Driver `gostream worker` runs: the batch loop of
// package loop, the one local mode runs, over the job's BatchLog, a Kafka
// listing on the leader (the workers' readers follow the partitions), the
// workers' map tasks (Task.Map on the worker each Kafka partition is
// assigned to) and the state partitions' reduce (StatePartitions.Reduce on
// each owner, which commits and replicates the batch's state before it
// answers). A batch whose tasks fail because a worker is down (liveness)
// runs again, with the same ranges, in a new assignment epoch without it
// (failover). The leader gathers each batch's output rows, runs the job's
// sink (console or jsonl) and publishes the sink's output with the batch's
// progress to the job's watchers (JobRun.Report). A job with no assignment
// gets one, logged through Raft before its first batch, and every run
// logs a new epoch of it (nextAssignment). A panic of the driver, its
// sink's included, fails the job, not the worker.
var BatchDriver Driver = DriverFunc(driveJob)

func driveJob(ctx context.Context, run *JobRun) (err error) {
	defer task.Recover("cluster: job "+run.Job.Name+": driver", &err)
	d, err := newJobDriver(ctx, run)
	if err != nil {
		return err
	}
	defer d.close()
	rec, err := run.Log.Recover()
	if err != nil {
		return err
	}
	if e := rec.Rerun; e != nil {
		d.n.log.Info("cluster: re-running a batch that did not commit before the driver stopped", "job", run.Job.Name, "batch", e.BatchID)
	}
	core := loop.NewCore(d.cfg, rec)
	return loop.Run(ctx, core, loop.Parts{Log: run.Log, Executor: d, Source: d, Reporter: d, Logger: d.n.log.With("job", run.Job.Name)})
}

// jobDriver is one run of BatchDriver: the loop's Executor, Source and
// Reporter for a job on the leader. Map, Output and Sync are called as
// loop.Executor says; Offsets, Follow, Buffered and Arrived as loop.Source
// says; sink is used by Output only, one batch at a time.
type jobDriver struct {
	n       *Node
	run     *JobRun
	query   *planpb.Query
	plan    *task.Plan
	reducer *task.Reducer // nil for a job without an aggregation
	cfg     loop.Config
	src     *kafkasrc.Source
	sink    engine.Sink
	out     bytes.Buffer // what sink wrote for the submitter, per batch

	// epochMu serializes the run's epoch changes; mu guards job, the job
	// with the run's current assignment epoch, which Map and Output read
	// at once, and the partitions the last listing found.
	epochMu sync.Mutex
	mu      struct {
		sync.Mutex
		job   *clusterpb.Job
		parts []kafkaPartition // of the job's topics, as last listed
	}
}

// newJobDriver compiles run's job, opens its Kafka listing and its sink,
// and logs the job's next assignment epoch.
func newJobDriver(ctx context.Context, run *JobRun) (d *jobDriver, err error) {
	n, job := run.m.n, run.Job
	d = &jobDriver{n: n, run: run, query: &planpb.Query{}}
	opened := d // d is nil once an error returns
	defer func() {
		if err != nil {
			opened.close()
			err = fmt.Errorf("cluster: job %s: %w", job.Name, err)
		}
	}()
	if err := proto.Unmarshal(job.Plan, d.query); err != nil {
		return nil, fmt.Errorf("its plan is not a gostream.plan.v1.Query: %w", err)
	}
	if d.plan, err = task.Compile(d.query.Plan); err != nil {
		return nil, fmt.Errorf("its plan does not compile on %s: %w", n.cfg.Name, err)
	}
	if d.plan.Agg != nil {
		d.reducer = task.NewReducer(d.plan.Agg)
	}
	scan := d.plan.Scan
	if d.cfg, err = loopConfig(job.Options, scan); err != nil {
		return nil, err
	}
	if d.plan.Narrow == nil {
		if d.cfg.Sizer, err = batchSizer(job.Options, d.query.OutputMode); err != nil {
			return nil, err
		}
	}
	if d.sink, err = engine.PlannedSink(job.Options, &d.out); err != nil {
		return nil, err
	}
	if js, ok := d.sink.(*engine.JSONLSink); ok {
		js.Fence = run.Leading // a file on this host: no term fences it
	}
	d.src, err = kafkasrc.NewSource(kafkasrc.Config{
		Brokers:      strings.Split(scan.BootstrapServers, ","),
		Options:      scan.KafkaOptions,
		RetryTimeout: time.Duration(scan.KafkaRetryTimeoutMs) * time.Millisecond,
		Logger:       n.log,
	})
	if err != nil {
		return nil, err
	}
	if err := d.assign(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// loopConfig is the batch loop's configuration of a job: its trigger
// (options["trigger"], as engine.ParseTrigger reads it) and its Kafka
// scan's options.
func loopConfig(options map[string]string, scan *planpb.KafkaScan) (loop.Config, error) {
	trig, err := engine.ParseTrigger(options["trigger"])
	if err != nil {
		return loop.Config{}, err
	}
	starting, err := kafkasrc.ParseStartingOffsets(scan.StartingOffsets)
	if err != nil {
		return loop.Config{}, fmt.Errorf("startingOffsets: %w", err)
	}
	return loop.Config{Trigger: trig.Schedule(), Starting: starting, MaxOffsetsPerTrigger: scan.MaxOffsetsPerTrigger,
		MinPartitions: int(scan.MinPartitions), FailOnDataLoss: scan.FailOnDataLoss}, nil
}

func (d *jobDriver) close() {
	if d.src != nil {
		d.src.Close()
	}
	if c, ok := d.sink.(io.Closer); ok {
		if err := c.Close(); err != nil {
			d.n.log.Warn("cluster: closing a job's sink failed", "job", d.run.Job.Name, "err", err)
		}
	}
}

// assign logs the job's first assignment epoch of the run through Raft
// (logEpoch), planned by nextAssignment over the partitions of its topics,
// with the leader's view of which members are up. Each run starts a new
// epoch, so a worker answers the run's tasks only once it applied the
// epoch, and with it what came before in the log (the job RUNNING again),
// and refuses the tasks of earlier runs.
func (d *jobDriver) assign(ctx context.Context) error {
	if _, _, err := d.Offsets(ctx); err != nil {
		return err
	}
	if d.run.Job.Assignment == nil {
		// A new job's first epoch waits until the leader heard from every
		// member (or holds it down): a driver that starts right after its
		// election, before its first probes were answered, would give all
		// the Kafka partitions to itself, move them an epoch later, and map
		// the batch under way again.
		d.n.liveness.awaitHeard(ctx, nameList(d.n.fsm.Members()), d.n.cfg.DownAfter)
	}
	d.n.planMu.RLock()
	defer d.n.planMu.RUnlock()
	a, reason := d.next(d.run.Job)
	if reason == "" {
		reason = fmt.Sprintf("a driver run on %s in term %d", d.run.Member, d.run.Term)
	}
	return d.logEpoch(a, reason)
}

// next plans the epoch after j's (nextAssignment) over the Kafka
// partitions j assigns and those the last listing found, the group's
// members and the leader's view of which are up; reason is "" when
// nothing changes.
func (d *jobDriver) next(j *clusterpb.Job) (a *clusterpb.Assignment, reason string) {
	d.mu.Lock()
	parts := d.mu.parts
	d.mu.Unlock()
	return nextAssignment(j, parts, nameList(d.n.fsm.Members()), d.n.planState, d.n.StateReplicas())
}

// logEpoch logs a, the job's next assignment epoch, through Raft in the
// run's term, with reason, which it logs at Info too, and makes it the
// run's current epoch.
func (d *jobDriver) logEpoch(a *clusterpb.Assignment, reason string) error {
	name := d.run.Job.Name
	c := &clusterpb.Command{Kind: &clusterpb.Command_SetAssignment{SetAssignment: &clusterpb.SetAssignment{Job: name, Assignment: a, Reason: reason, TimeMs: time.Now().UnixMilli()}}}
	if _, err := applyInTerm(d.n.raft, c, d.run.Term, d.n.cfg.ApplyTimeout); err != nil {
		return fmt.Errorf("logging its assignment epoch %d: %w", a.Epoch, err)
	}
	d.n.log.Info("cluster: job assigned", "job", name, "epoch", a.Epoch, "kafka_partitions", len(a.Kafka), "state_partitions", len(a.State), "reason", reason)
	j, ok := d.n.fsm.Job(name)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	d.mu.Lock()
	d.mu.job = j
	d.mu.Unlock()
	return nil
}

// current is the job with the run's current assignment epoch.
func (d *jobDriver) current() *clusterpb.Job {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.job
}

// assigned lists the workers a assigns anything to, sorted.
func assigned(a *clusterpb.Assignment) []string {
	var ws []string
	for _, k := range a.GetKafka() {
		ws = append(ws, k.Worker)
	}
	for _, sp := range a.GetState() {
		ws = append(ws, sp.Owner)
		if sp.Standby != "" {
			ws = append(ws, sp.Standby)
		}
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// down lists, as "no answer from s2 for 1.2s" or "s2 removed", the
// workers a assigns work to that the leader holds down or that are no
// longer members (gostream cluster remove).
func (d *jobDriver) down(a *clusterpb.Assignment) []string {
	var down []string
	for _, w := range assigned(a) {
		if isDown, silent := d.n.liveness.down(w); isDown {
			down = append(down, fmt.Sprintf("no answer from %s for %v", w, silent.Round(time.Millisecond)))
		} else if d.n.memberAddr(w) == "" {
			down = append(down, w+" removed")
		}
	}
	return down
}

// replan logs the job's next epoch if the planner moves anything now (a
// worker down, back or new, a move's second step once its batch
// committed, a new Kafka partition). Map calls it before each batch: a
// batch boundary. An epoch it fails to log is planned again at the next.
func (d *jobDriver) replan() {
	d.epochMu.Lock()
	defer d.epochMu.Unlock()
	d.n.planMu.RLock()
	defer d.n.planMu.RUnlock()
	fresh, ok := d.n.fsm.Job(d.run.Job.Name) // with the batches committed since
	if !ok || fresh.Assignment.GetEpoch() != d.current().Assignment.GetEpoch() {
		return // a run that is ending
	}
	if a, reason := d.next(fresh); reason != "" {
		if err := d.logEpoch(a, reason); err != nil {
			d.n.log.Warn("cluster: a job's new epoch was not logged; it goes on in its current one", "job", fresh.Name, "err", err)
		}
	}
}

// failover logs a new assignment epoch without the workers the leader
// holds down, if job's epoch, in which a try of a batch failed, is still
// the run's and assigns work to one of them. It reports whether the batch
// should run again in a newer epoch (this one's, or one logged since),
// and whether the run's epoch still assigns work to a worker that is down
// (waits: the planner keeps a state partition with its owner when no
// live worker holds a current copy).
func (d *jobDriver) failover(job *clusterpb.Job) (moved, waits bool, err error) {
	d.epochMu.Lock()
	defer d.epochMu.Unlock()
	d.n.planMu.RLock()
	defer d.n.planMu.RUnlock()
	cur := d.current()
	if cur.Assignment.GetEpoch() != job.Assignment.GetEpoch() {
		return true, false, nil
	}
	down := d.down(cur.Assignment)
	if len(down) == 0 {
		return false, false, nil
	}
	fresh, ok := d.n.fsm.Job(job.Name) // with the batches committed since
	if !ok || fresh.Assignment.GetEpoch() != cur.Assignment.GetEpoch() {
		return false, false, fmt.Errorf("%w %q at epoch %d", ErrUnknownJob, job.Name, cur.Assignment.GetEpoch())
	}
	a, reason := d.next(fresh)
	if reason == "" {
		return false, true, nil
	}
	if err := d.logEpoch(a, reason+" ("+strings.Join(down, ", ")+")"); err != nil {
		return false, false, err
	}
	return true, false, nil
}

// untilDown returns ctx, canceled once the leader holds a worker that a
// assigns work to down, so that no task waits on it; stop cancels it and
// waits for its watcher.
func (d *jobDriver) untilDown(ctx context.Context, a *clusterpb.Assignment) (_ context.Context, stop func()) {
	workers := assigned(a)
	return cancelWhen(ctx, d.n.liveness.changes, func() error {
		for _, w := range workers {
			if !d.n.liveness.live(w) {
				return fmt.Errorf("cluster: worker %s is down", w)
			}
		}
		return nil
	})
}

// cancelWhen returns ctx, canceled with the error check returns once it
// returns one: check runs at once, then each time the channel changes
// returned before it is closed. stop cancels ctx and waits for the
// watcher.
func cancelWhen(ctx context.Context, changes func() <-chan struct{}, check func() error) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			changed := changes()
			if err := check(); err != nil {
				cancel(err)
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		cancel(nil)
		<-done
	}
}

// retry decides whether a batch whose try in job's epoch failed with err
// runs again, and returns err when it does not. It runs again at once in
// a newer epoch when a worker job's epoch assigns work to is down
// (failover), or once a member goes down or comes back while the epoch
// waits for a worker that is down. Otherwise, while err is one that a
// worker's loss or a moment's disorder gives (retryable), or the new
// epoch could not be logged, it runs again after a pause or as soon as a
// member goes down or comes back, until *until: twice Config.DownAfter
// after the first such failure since the batch last moved to a new epoch
// or waited, time enough for the leader to find a lost worker down.
func (d *jobDriver) retry(ctx context.Context, job *clusterpb.Job, err error, until *time.Time) error {
	if ctx.Err() != nil {
		return err
	}
	changed := d.n.liveness.changes()
	moved, waits, ferr := d.failover(job)
	if ferr != nil {
		err = fmt.Errorf("%w; moving its work off the workers that are down failed: %w", err, ferr)
	}
	switch {
	case moved:
		*until = time.Time{}
		return nil
	case waits:
		*until = time.Time{}
		d.n.log.Info("cluster: a batch waits for a worker that is down: it holds the only current copy of a state partition", "job", job.Name,
			"epoch", job.Assignment.GetEpoch(), "down", strings.Join(d.down(job.Assignment), ", "))
		select {
		case <-ctx.Done():
			return err
		case <-changed:
		}
		return nil
	case ferr == nil && !retryable(err):
		return err
	case until.IsZero():
		*until = time.Now().Add(2 * d.n.cfg.DownAfter)
	case time.Now().After(*until):
		return fmt.Errorf("%w (the batch was tried again for %v, in epoch %d, with every worker it needs up: the log of the worker it names tells the cause; once that is fixed, submit the job again, which resumes it from its batch log)",
			err, 2*d.n.cfg.DownAfter, job.Assignment.GetEpoch())
	}
	d.n.log.Info("cluster: a batch failed; running it again", "job", job.Name, "epoch", job.Assignment.GetEpoch(), "err", err)
	select {
	case <-ctx.Done():
		return err
	case <-changed:
	case <-time.After(probeInterval):
	}
	return nil
}

// retryable reports whether err, a task's failure, may pass with a new
// try or epoch: a worker unreachable, stopping or not ready (transient), a
// stream cut short, a deadline or cancellation, a try superseded or
// refused by the fencing or the shuffle (a reduce of an earlier try may
// still hold the partials a moment).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.DataLoss, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	msg := err.Error()
	return transient(err) || strings.Contains(msg, ErrStaleEpoch.Error()) || strings.Contains(msg, ErrShuffleRefused.Error())
}

// header is the fencing of the run's requests in epoch: its cluster, term
// and assignment epoch.
func (d *jobDriver) header(epoch uint64) *clusterpb.Header {
	return &clusterpb.Header{ClusterId: d.n.ClusterID(), Term: d.run.Term, From: d.run.Member, Epoch: epoch}
}

// conn is a client connection to worker.
func (d *jobDriver) conn(worker string) (grpc.ClientConnInterface, error) {
	for _, m := range d.n.fsm.Members() {
		if m.Name == worker {
			return d.n.clients.conn(m.Address)
		}
	}
	return nil, fmt.Errorf("worker %s is not a member", worker)
}

// call calls fn, a task request to a worker, with try *tries+1, +2...,
// again while it fails for a while only (transient), for at most the
// node's ApplyTimeout: a new epoch, or a job just registered, reaches the
// followers a moment after the leader logged it, and a worker started a
// moment ago may not listen yet. The try is the request's attempt number
// in its assignment epoch, counted over every run of the batch's map in
// the epoch: with the epoch, it orders the attempts in the owners'
// inboxes (attemptID), so a try that failed half way leaves nothing a
// reduce takes. call fails rather than let the count wrap.
func (d *jobDriver) call(ctx context.Context, tries *uint32, fn func(try uint32) error) error {
	deadline := time.Now().Add(d.n.cfg.ApplyTimeout)
	for {
		if *tries == math.MaxUint32 {
			return fmt.Errorf("cluster: the task was tried %d times in its assignment epoch, the most its attempt number counts", *tries)
		}
		*tries++
		err := fn(*tries)
		if !transient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryDelay):
		}
	}
}

// retryDelay is how long call waits before it tries again.
const retryDelay = 20 * time.Millisecond

// transient reports whether err is a worker's answer that may change
// soon: Unavailable (it cannot be reached, or has not applied the
// request's assignment epoch yet) or its not knowing the job (it has not
// applied its registration yet; the driver's run only exists once it is
// logged). A request refused so did nothing durable, and a reduce tried
// again over a committed partition does not merge it twice.
func transient(err error) bool {
	st, ok := status.FromError(err)
	switch {
	case !ok:
		return false
	case st.Code() == codes.Unavailable:
		return true
	case st.Code() == codes.NotFound:
		return strings.Contains(st.Message(), ErrUnknownJob.Error())
	}
	return false
}

// mapped is a batch whose map tasks ran (loop.Mapped).
type mapped struct {
	entry  loop.OffsetsEntry
	ranges []kafkasrc.Range
	epoch  uint64   // of the map tasks' run
	tries  []uint32 // of each map task in epoch
	stale  bool     // a reduce may have taken the partials: map again before reducing

	tasks   int32 // map tasks, each of which pushed to every state partition
	records int64 // in the batch's ranges
	reused  int64 // of records, those of partials kept from an earlier try (MapResponse.reused_records)
	// workers are the worker of each of ranges in the latest run of the
	// map tasks, nil before the first.
	workers []string
	bytes   int64 // sent to the state partitions' owners
	// rows are, for a job without an aggregation, the output rows of each
	// of the batch's ranges (operators.AppendRow), in offset order.
	rows [][][]byte

	// Set by Output.
	dur        map[string]int64
	updated    int64 // groups the batch changed
	total      int64 // groups the state holds
	outputRows int64
	output     []byte // what the sink wrote for the submitter
}

func (m *mapped) Records() int64 { return m.records }

// Map runs batch e's map tasks in the run's current epoch (mapIn), again
// while a failure may pass (retry): in a new epoch when a worker is down.
func (d *jobDriver) Map(ctx context.Context, e loop.OffsetsEntry, ranges []kafkasrc.Range, _ bool) (_ loop.Mapped, err error) {
	defer task.Recover(fmt.Sprintf("cluster: job %s batch %d: map", d.run.Job.Name, e.BatchID), &err)
	m := &mapped{entry: e, ranges: ranges}
	d.replan()
	var until time.Time
	for {
		job := d.current()
		err := d.mapIn(ctx, job, m)
		if err == nil {
			return m, nil
		}
		if err := d.retry(ctx, job, err, &until); err != nil {
			return nil, err
		}
	}
}

// mapIn runs m's map tasks in job's assignment epoch: one per worker its
// ranges' Kafka partitions are assigned to, with that worker's ranges. For
// a job with an aggregation, each pushes its partials to every state
// partition's owner before it answers; for one without, each streams its
// ranges' output rows back (MapRows), which mapIn keeps in the ranges'
// order. The tasks are canceled once a worker of the epoch is down.
func (d *jobDriver) mapIn(ctx context.Context, job *clusterpb.Job, m *mapped) error {
	a, e := job.Assignment, m.entry
	byWorker := map[string][]*clusterpb.MapRange{}
	index := map[string][]int{} // of byWorker's ranges in ranges
	for i, r := range m.ranges {
		w := worker(a, r.Topic, r.Partition)
		if w == "" {
			return fmt.Errorf("cluster: job %s batch %d: Kafka partition %s-%d is assigned to no worker in epoch %d",
				job.Name, e.BatchID, r.Topic, r.Partition, a.GetEpoch())
		}
		byWorker[w] = append(byWorker[w], &clusterpb.MapRange{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until})
		index[w] = append(index[w], i)
	}
	moved := m.moved(a)
	workers := slices.Sorted(maps.Keys(byWorker))
	if m.epoch != a.GetEpoch() || len(m.tries) != len(workers) {
		m.epoch, m.tries = a.GetEpoch(), make([]uint32, len(workers))
	}
	m.tasks, m.records, m.reused, m.bytes = int32(len(workers)), 0, 0, 0
	if d.plan.Narrow != nil {
		m.rows = make([][][]byte, len(m.ranges))
	}
	ctx, stop := d.untilDown(ctx, a)
	defer stop()
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for i, w := range workers {
		g.Go(func() error {
			cc, err := d.conn(w)
			if err == nil {
				var records, reused, sent int64
				err = d.call(gctx, &m.tries[i], func(try uint32) (err error) {
					req := &clusterpb.MapRequest{Header: d.header(a.GetEpoch()), Job: job.Name, Batch: e.BatchID,
						Task: int32(i), Attempt: try, Ranges: byWorker[w], BatchTimestampMs: e.TimestampMs}
					if d.plan.Narrow != nil {
						records, err = d.mapRows(gctx, cc, req, m.rows, index[w])
						return err
					}
					resp, err := clusterpb.NewTaskClient(cc).Map(gctx, req)
					records, reused, sent = resp.GetRecords(), resp.GetReusedRecords(), int64(resp.GetBytesSent())
					return err
				})
				if err == nil {
					mu.Lock()
					m.records += records + reused
					m.reused += reused
					m.bytes += sent
					mu.Unlock()
					return nil
				}
			}
			return fmt.Errorf("cluster: job %s batch %d: map task %d on worker %s: %w", job.Name, e.BatchID, i, w, err)
		})
	}
	err := g.Wait()
	if err == nil && moved >= 0 && d.plan.Narrow == nil {
		d.n.log.Info("cluster: a batch mapped again; its workers pushed the partials they kept of ranges that stayed", "job", job.Name,
			"batch", e.BatchID, "epoch", a.GetEpoch(), "records_read", m.records-m.reused, "records_reused", m.reused, "moved_offsets", moved, "offsets", rangeOffsets(m.ranges))
	}
	return err
}

// rangeOffsets is the number of offsets in ranges.
func rangeOffsets(ranges []kafkasrc.Range) (n int64) {
	for _, r := range ranges {
		n += r.Until - r.From
	}
	return n
}

// moved sets m.workers to the worker a assigns each of m's ranges to and
// returns the offsets of the ranges whose worker changed since the latest
// run of the map tasks: the share of a batch mapped again that its workers
// read again. It is -1 before the first run.
func (m *mapped) moved(a *clusterpb.Assignment) int64 {
	moved := int64(-1)
	if m.workers != nil {
		moved = 0
	}
	workers := make([]string, len(m.ranges))
	for i, r := range m.ranges {
		workers[i] = worker(a, r.Topic, r.Partition)
		if m.workers != nil && workers[i] != m.workers[i] {
			moved += r.Until - r.From
		}
	}
	m.workers = workers
	return moved
}

// mapRows runs a narrow map task, req, on cc and puts the rows of its
// range number i into rows[index[i]], then returns the records it read.
// The rows of a try cut short are dropped: a try puts every range's rows.
func (d *jobDriver) mapRows(ctx context.Context, cc grpc.ClientConnInterface, req *clusterpb.MapRequest, rows [][][]byte, index []int) (int64, error) {
	for _, j := range index {
		rows[j] = nil
	}
	stream, err := clusterpb.NewTaskClient(cc).MapRows(ctx, req)
	if err != nil {
		return 0, err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%w: the worker ended its rows before the last message", ErrProtocol)
			}
			return 0, err
		}
		if msg.RangeIndex < 0 || int(msg.RangeIndex) >= len(index) {
			return 0, fmt.Errorf("%w: rows of range %d, of a task of %d ranges", ErrProtocol, msg.RangeIndex, len(index))
		}
		j := index[msg.RangeIndex]
		rows[j] = append(rows[j], msg.Rows...)
		if msg.Done {
			return msg.Records, nil
		}
	}
}

// worker is the worker a assigns a Kafka partition to, "" if none.
func worker(a *clusterpb.Assignment, topic string, partition int32) string {
	ks := a.GetKafka()
	i, ok := slices.BinarySearchFunc(ks, kafkaPartition{topic, partition}, func(k *clusterpb.KafkaAssignment, p kafkaPartition) int {
		return comparePartitions(kafkaPartition{k.Topic, k.Partition}, p)
	})
	if !ok {
		return ""
	}
	return ks[i].Worker
}

// Output reduces the batch (reduceIn), again while a failure may pass
// (retry): in a new epoch when a worker is down, each time after mapping
// it again. Then it writes the batch's rows to the sink: the groups the
// batch changed (update mode) or a dropDuplicates' new rows, or every
// group (complete mode).
func (d *jobDriver) Output(ctx context.Context, lm loop.Mapped) (_ loop.OutputStats, err error) {
	m := lm.(*mapped)
	batch := m.entry.BatchID
	defer task.Recover(fmt.Sprintf("cluster: job %s batch %d: output", d.run.Job.Name, batch), &err)
	m.dur = map[string]int64{}
	if d.plan.Narrow != nil {
		return loop.OutputStats{}, d.write(ctx, m, d.plan.Narrow.Schema(), func(fn operators.Emit) error {
			return readRows("a map task's", m.rows, fn)
		})
	}
	t := time.Now()
	var recs [][]byte
	var until time.Time
	for {
		job := d.current()
		if recs, err = d.reduceIn(ctx, job, m); err == nil {
			break
		}
		if err := d.retry(ctx, job, err, &until); err != nil {
			return loop.OutputStats{}, err
		}
	}
	m.dur["reduce"] = time.Since(t).Milliseconds()
	if d.plan.Dedup != nil { // the reduces answered their new rows
		err = d.write(ctx, m, d.plan.Dedup.Schema(), func(fn operators.Emit) error {
			return readRows("a reduce's", [][][]byte{recs}, fn)
		})
	} else {
		err = d.write(ctx, m, d.plan.Agg.Schema(), func(fn operators.Emit) error {
			for _, rec := range recs {
				if err := d.reducer.RecordRows(rec, fn); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return loop.OutputStats{}, err
	}
	return loop.OutputStats{Groups: m.updated, ExchangeBytes: m.bytes}, nil
}

// readRows calls fn with each row of rows, in order, each encoded by
// operators.AppendRow; whose says where they came from, for errors.
func readRows(whose string, rows [][][]byte, fn operators.Emit) error {
	for _, rs := range rows {
		for _, b := range rs {
			row, err := operators.ReadRow(b)
			if err != nil {
				return fmt.Errorf("%s row: %w", whose, err)
			}
			if err := fn(row); err != nil {
				return err
			}
		}
	}
	return nil
}

// reduceIn reduces batch m in job's assignment epoch, after mapping it
// again when its map ran in another epoch or a reduce of it failed (that
// reduce may have taken the partials): on every state partition's owner
// at once, each of which commits the partition at the batch's version and
// replicates it to its standby before it answers done. It returns the
// records of the batch's output rows, in state partition order, gathered
// from the reduces' answers: the groups the batch changed (update mode), a
// dropDuplicates' new rows (operators.AppendRow), or every group (complete
// mode, which each owner streams while its standby takes the batch). The
// tasks are canceled once a worker of the epoch is down.
func (d *jobDriver) reduceIn(ctx context.Context, job *clusterpb.Job, m *mapped) ([][]byte, error) {
	a, batch := job.Assignment, m.entry.BatchID
	if m.stale || m.epoch != a.GetEpoch() {
		if err := d.mapIn(ctx, job, m); err != nil {
			return nil, err
		}
	}
	m.stale = true
	ctx, stop := d.untilDown(ctx, a)
	defer stop()
	complete := d.query.OutputMode == engine.Complete
	var updated, total atomic.Int64
	recs, err := eachPartition(ctx, a.GetState(), func(ctx context.Context, i int32, owner string) (recs [][]byte, err error) {
		keep := func(rec []byte) error {
			recs = append(recs, rec)
			return nil
		}
		cc, err := d.conn(owner)
		if err == nil {
			var done *clusterpb.ReduceDone
			req := &clusterpb.ReduceRequest{Header: d.header(a.GetEpoch()), Job: job.Name, Batch: batch, Partition: i, Tasks: m.tasks, Changes: !complete, Rows: complete}
			if done, err = ReducePartition(ctx, cc, req, keep); err == nil {
				updated.Add(done.Groups)
				total.Add(done.Rows)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: job %s batch %d: reduce of state partition %d on worker %s: %w", job.Name, batch, i, owner, err)
		}
		return recs, nil
	})
	if err != nil {
		return nil, err
	}
	m.updated, m.total = updated.Load(), total.Load()
	return recs, nil
}

// eachPartition calls fn for each state partition of parts, with its
// index and owner, each on a goroutine of its own, all at once, and
// returns the records they returned, in partition order. The first error
// cancels the others' ctx and is returned once all have returned.
func eachPartition(ctx context.Context, parts []*clusterpb.StatePartition, fn func(ctx context.Context, i int32, owner string) ([][]byte, error)) ([][]byte, error) {
	recs := make([][][]byte, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	for i, sp := range parts {
		g.Go(func() (err error) {
			recs[i], err = fn(gctx, int32(i), sp.Owner)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(recs...), nil
}

// write runs the job's sink over batch m's output rows, which each emits,
// and keeps what the sink wrote for the submitter.
func (d *jobDriver) write(ctx context.Context, m *mapped, schema operators.Schema, each func(operators.Emit) error) error {
	t := time.Now()
	m.outputRows = 0
	counted := func(fn operators.Emit) error {
		return each(func(r operators.Row) error { m.outputRows++; return fn(r) })
	}
	d.out.Reset()
	if err := d.sink.AddBatch(ctx, engine.NewBatch(m.entry.BatchID, d.query.OutputMode, schema, counted)); err != nil {
		return fmt.Errorf("cluster: job %s batch %d: sink: %w", d.run.Job.Name, m.entry.BatchID, err)
	}
	m.output = bytes.Clone(d.out.Bytes())
	m.dur["addBatch"] = time.Since(t).Milliseconds()
	return nil
}

// Sync does nothing: each state partition's owner committed the batch,
// and replicated it to the partition's standby, before its Reduce
// answered.
func (d *jobDriver) Sync(context.Context, int64) error { return nil }

// Offsets lists the job's topics on the leader, and keeps their
// partitions for the planner.
func (d *jobDriver) Offsets(ctx context.Context) (earliest, latest kafkasrc.Offsets, err error) {
	earliest, latest, err = d.src.Offsets(ctx, d.plan.Scan.Subscribe)
	if err != nil {
		return nil, nil, err
	}
	var parts []kafkaPartition
	for t, ps := range latest {
		for p := range ps {
			parts = append(parts, kafkaPartition{t, p})
		}
	}
	d.mu.Lock()
	d.mu.parts = parts
	d.mu.Unlock()
	return earliest, latest, nil
}

// Follow does nothing: the workers' readers follow their partitions from
// where their last map task ended.
func (d *jobDriver) Follow(kafkasrc.Offsets) error { return nil }

// Buffered is nil: the leader reads no records, it lists the offsets
// (Offsets) every loop.RelistInterval.
func (d *jobDriver) Buffered() kafkasrc.Offsets { return nil }

// Arrived never receives: see Buffered.
func (d *jobDriver) Arrived() <-chan struct{} { return nil }

// Report publishes a committed batch's progress and sink output to the
// job's watchers.
func (d *jobDriver) Report(rep loop.Report, lm loop.Mapped) {
	m, e, n := lm.(*mapped), rep.Entry, rep.Records
	for k, v := range m.dur {
		rep.Durations[k] = v
	}
	p := engine.Progress{ID: d.run.Job.Name, RunID: fmt.Sprintf("%s-term-%d", d.run.Member, d.run.Term), Name: d.query.Name,
		Timestamp: rep.Start.UTC(), BatchID: e.BatchID, NumInputRows: n, DurationMs: rep.Durations,
		Sink: engine.SinkProgress{Description: fmt.Sprintf("%T", d.sink), NumOutputRows: m.outputRows}}
	if d.plan.Narrow == nil {
		p.StateOperators = []engine.StateProgress{{OperatorName: "stateStoreSave", NumRowsTotal: m.total, NumRowsUpdated: m.updated,
			NumShufflePartitions: len(d.current().Assignment.GetState())}}
		if d.plan.Dedup != nil {
			p.StateOperators[0].OperatorName = "dedupe" // Spark's name for it
		}
	}
	if elapsed := time.Since(rep.Start).Seconds(); elapsed > 0 {
		p.ProcessedRowsPerSecond = float64(n) / elapsed
	}
	if rep.SinceLast > 0 {
		p.InputRowsPerSecond = float64(n) / rep.SinceLast.Seconds()
	}
	p.Sources = []engine.SourceProgress{{Description: "KafkaV2[Subscribe[" + strings.Join(d.plan.Scan.Subscribe, ",") + "]]",
		StartOffset: e.Start, EndOffset: e.End, LatestOffset: rep.Latest, NumInputRows: n,
		InputRowsPerSecond: p.InputRowsPerSecond, ProcessedRowsPerSecond: p.ProcessedRowsPerSecond}}
	d.run.Report(p, m.output)
}
