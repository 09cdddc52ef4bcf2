package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
)

// DefaultMapMemory bounds the memory of each job's map tasks on a worker
// (Config.MapMemory).
const DefaultMapMemory = 64 << 20

// taskServer serves the Task service of a Node.
type taskServer struct {
	clusterpb.UnimplementedTaskServer
	n *Node
}

// Map runs one attempt of the map task of a job with an aggregation or a
// dropDuplicates: it checks the request's fencing, reads the task's ranges
// with the job's Kafka source, runs the job's narrow operators and partial
// aggregation or first rows per key (task.Mapper), and pushes each state partition's partials to its owner
// (ShuffleWriter). It answers once every owner took them. A failure or a
// panic fails the task, never the worker.
func (s *taskServer) Map(ctx context.Context, req *clusterpb.MapRequest) (resp *clusterpb.MapResponse, err error) {
	t, err := s.runMap(ctx, req, true)
	if err != nil {
		return nil, err
	}
	defer s.n.recoverTask(t.what, &err)
	start := time.Now()
	st := ShuffleTask{Job: req.Job, Batch: req.Batch, Task: req.Task, Attempt: req.Attempt,
		Epoch: req.Header.GetEpoch(), Term: req.Header.GetTerm(), ClusterID: s.n.ClusterID(), From: t.name}
	sent, err := s.n.pushPartials(ctx, t.job.Assignment, st, t.outs)
	if err != nil {
		return nil, taskError(err, "cluster: %s on %s: %v", t.what, t.name, err)
	}
	return &clusterpb.MapResponse{Records: t.records, BytesSent: sent, MapMs: t.mapMs, ShuffleMs: time.Since(start).Milliseconds(),
		ReusedRecords: t.reused}, nil
}

// mapRowsBytes is about the most row bytes a MapRowsResponse carries.
const mapRowsBytes = 1 << 20

// MapRows runs one attempt of a narrow job's map task (no aggregation): as
// Map, then it streams the task's output rows, each range's in offset
// order and the ranges in the request's order, in messages of about
// mapRowsBytes. It writes nothing durable, so an attempt may run again.
func (s *taskServer) MapRows(req *clusterpb.MapRequest, stream grpc.ServerStreamingServer[clusterpb.MapRowsResponse]) (err error) {
	t, err := s.runMap(stream.Context(), req, false)
	if err != nil {
		return err
	}
	defer s.n.recoverTask(t.what, &err)
	msg := &clusterpb.MapRowsResponse{}
	size := 0
	send := func() error {
		if err := stream.Send(msg); err != nil {
			return taskError(err, "cluster: %s on %s: sending its rows: %v", t.what, t.name, err)
		}
		msg.Rows, size = msg.Rows[:0], 0
		return nil
	}
	for i, o := range t.outs {
		if int32(i) != msg.RangeIndex && len(msg.Rows) > 0 {
			if err := send(); err != nil {
				return err
			}
		}
		msg.RangeIndex = int32(i)
		for _, row := range o.Rows {
			b := operators.AppendRow(nil, row)
			if size > 0 && size+len(b) > mapRowsBytes {
				if err := send(); err != nil {
					return err
				}
			}
			msg.Rows = append(msg.Rows, b)
			size += len(b)
		}
	}
	msg.Done, msg.Records = true, t.records
	return send()
}

// mapTask is a map task's attempt that ran its ranges (runMap).
type mapTask struct {
	what, name string // the attempt and the worker, for errors
	job        *clusterpb.Job
	outs       []task.Output
	records    int64
	reused     int64 // records of ranges whose kept partials outs holds (mapKept)
	mapMs      int64
}

// runMap checks a map request's fencing, runs its ranges through the job's
// Mapper (the job shuffles to state partitions if agg: an aggregation or
// a dropDuplicates; else it is narrow) and checks
// the fencing again: the term or epoch may have moved on while it ran.
func (s *taskServer) runMap(ctx context.Context, req *clusterpb.MapRequest, agg bool) (t mapTask, err error) {
	n := s.n
	attempt := fmt.Sprintf("map task %d (attempt %d of epoch %d)", req.Task, req.Attempt, req.Header.GetEpoch())
	t.what = fmt.Sprintf("%s of job %s batch %d", attempt, req.Job, req.Batch)
	defer n.recoverTask(t.what, &err)
	if req.Attempt == 0 || req.Task < 0 {
		return t, status.Errorf(codes.InvalidArgument, "cluster: %s: tasks count from 0, attempts from 1", t.what)
	}
	name, job, err := checkJobFence(n, attempt, req.Header, req.Job, req.Batch)
	if err != nil {
		return t, err
	}
	t.name, t.job = name, job
	if job.State != clusterpb.JobState_RUNNING {
		return t, status.Errorf(codes.FailedPrecondition, "cluster: %s: the job is %s (register it again to run it)", t.what, job.State)
	}
	ranges, err := taskRanges(job, name, req.Ranges, t.what)
	if err != nil {
		return t, err
	}
	n.maps.forget(func(name string) bool {
		j, ok := n.job(name)
		return ok && j.State == clusterpb.JobState_RUNNING
	})
	run, err := n.maps.begin(job)
	if err != nil {
		return t, status.Errorf(status.Code(err), "cluster: %s on %s: %v", t.what, name, err)
	}
	defer n.maps.end()
	if (run.plan.Narrow == nil) != agg {
		rpc := map[bool]string{true: "Map", false: "MapRows"}
		return t, status.Errorf(codes.InvalidArgument, "cluster: %s: %s runs the tasks of jobs %s an aggregation or dropDuplicates; this job's take %s", t.what, rpc[agg], map[bool]string{true: "with", false: "without"}[agg], rpc[!agg])
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.stopCtx, cancel)()

	start := time.Now()
	run.mu.Lock() // the job's tasks share its plan's clock (current_timestamp)
	t.outs, t.records, t.reused, err = n.maps.mapKept(ctx, run, job, req, ranges, agg)
	run.mu.Unlock()
	var stack []byte // of a registered function's panic
	if fe := (*operators.FuncError)(nil); errors.As(err, &fe) {
		stack = fe.Stack
	}
	if errors.Is(err, task.ErrPanic) || stack != nil {
		// The stack goes to the worker's log, the panic to the driver.
		n.log.Error("cluster: a map task panicked", "task", t.what, "err", err, "stack", string(stack))
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return t, status.Errorf(codes.Internal, "cluster: %s on %s: %s (the stack is in %s's log)", t.what, name, msg, name)
	}
	if err != nil {
		return t, taskError(err, "cluster: %s on %s: %v", t.what, name, err)
	}
	t.mapMs = time.Since(start).Milliseconds()
	// The readers fetch ahead from where the task ended: the worker's
	// next task of the job most likely starts there (sticky assignment).
	// A job whose trigger ends (available-now, once) reads values alone
	// instead, each task from its ranges (task.MapConfig.ReadValues).
	if run.follows {
		if err := run.src.Follow(untilOffsets(ranges)); err != nil {
			n.log.Warn("cluster: following the job's partitions failed; the next batch reads from the brokers", "job", req.Job, "err", err)
		}
	}
	if _, _, err := checkJobFence(n, attempt, req.Header, req.Job, req.Batch); err != nil {
		return t, err
	}
	return t, nil
}

// recoverTask, deferred by a task's handler, turns a panic into an
// Internal error naming the task (what), and logs its stack: it fails the
// task, never the worker.
func (n *Node) recoverTask(what string, err *error) {
	if r := recover(); r != nil {
		n.log.Error("cluster: a map task panicked", "task", what, "panic", r, "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "cluster: %s on %s panicked: %v", what, n.cfg.Name, r)
	}
}

// taskError is a failed task's gRPC status error: the code of the status
// err carries, if any (a refused shuffle, a canceled call), else Internal;
// FailedPrecondition for a range Kafka no longer holds whole, which no try
// reads again.
func taskError(err error, format string, args ...any) error {
	code := status.Code(err)
	switch {
	case errors.Is(err, kafkasrc.ErrDataLoss):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case code == codes.Unknown:
		code = codes.Internal
	}
	return status.Errorf(code, format, args...)
}

// taskRanges converts a map task's ranges, refusing a range of a Kafka
// partition the job's assignment does not give to this worker, name.
func taskRanges(job *clusterpb.Job, name string, rs []*clusterpb.MapRange, what string) ([]kafkasrc.Range, error) {
	owner := map[kafkasrc.Range]string{}
	for _, k := range job.Assignment.GetKafka() {
		owner[kafkasrc.Range{Topic: k.Topic, Partition: k.Partition}] = k.Worker
	}
	out := make([]kafkasrc.Range, len(rs))
	for i, r := range rs {
		switch w, ok := owner[kafkasrc.Range{Topic: r.Topic, Partition: r.Partition}]; {
		case r.From < 0 || r.Until < r.From:
			return nil, status.Errorf(codes.InvalidArgument, "cluster: %s: range %s-%d [%d, %d) is not a range of offsets", what, r.Topic, r.Partition, r.From, r.Until)
		case !ok:
			return nil, status.Errorf(codes.FailedPrecondition, "%v: %s: epoch %d of the job assigns Kafka partition %s-%d to no worker", ErrStaleEpoch, what, job.Assignment.GetEpoch(), r.Topic, r.Partition)
		case w != name:
			return nil, status.Errorf(codes.FailedPrecondition, "%v: %s: epoch %d of the job assigns Kafka partition %s-%d to %s, not %s", ErrStaleEpoch, what, job.Assignment.GetEpoch(), r.Topic, r.Partition, w, name)
		}
		out[i] = kafkasrc.Range{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until}
	}
	return out, nil
}

// untilOffsets are the offsets where ranges end.
func untilOffsets(ranges []kafkasrc.Range) kafkasrc.Offsets {
	o := kafkasrc.Offsets{}
	for _, r := range ranges {
		if o[r.Topic] == nil {
			o[r.Topic] = map[int32]int64{}
		}
		o[r.Topic][r.Partition] = r.Until
	}
	return o
}

// pushPartials streams each state partition's partials, the buckets of
// outs for it, to the partition's owner, one stream per partition at once,
// and returns the bytes sent. Every partition gets a stream, empty or not:
// its owner's reduce takes one complete attempt of every task.
func (n *Node) pushPartials(ctx context.Context, a *clusterpb.Assignment, st ShuffleTask, outs []task.Output) (uint64, error) {
	sent := make([]uint64, len(a.State))
	g, gctx := errgroup.WithContext(ctx)
	for p, sp := range a.State {
		g.Go(func() (err error) {
			defer recoverTo(&err)
			addr := n.memberAddr(sp.Owner)
			if addr == "" {
				return fmt.Errorf("state partition %d's owner %s is not a member (members: %s)", p, sp.Owner, memberNames(n.fsm.Members()))
			}
			cc, err := n.clients.conn(addr)
			if err != nil {
				return err
			}
			pt := st
			pt.Partition = int32(p)
			w, err := OpenShuffle(gctx, cc, pt, 0)
			if err != nil {
				return err
			}
			for _, o := range outs {
				if p < len(o.Buckets) && len(o.Buckets[p]) > 0 {
					if err := w.WriteBlock(o.Buckets[p]); err != nil {
						w.Abort()
						return err
					}
				}
			}
			if err := w.Close(); err != nil {
				return err
			}
			sent[p] = w.bytes
			return nil
		})
	}
	err := g.Wait()
	var total uint64
	for _, b := range sent {
		total += b
	}
	return total, err
}

// recoverTo turns a panic of the calling goroutine into *err.
func recoverTo(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
	}
}

// mapJobs keeps, per job, what its map tasks on this worker reuse from
// batch to batch: the compiled plan, a Mapper per assignment epoch and the
// Kafka source, whose readers follow the partitions assigned here between
// batches. Safe for concurrent use; close waits for running tasks and
// closes the sources.
type mapJobs struct {
	memory  int64      // Config.MapMemory
	cores   func() int // Node.Cores: the aggregating workers of a task
	running sync.WaitGroup
	mu      struct {
		sync.Mutex
		closed bool
		jobs   map[string]*mapJob
	}
}

// mapJob is one job's map runtime.
type mapJob struct {
	planBytes []byte // the Job.Plan it was built from
	follows   bool   // the job's trigger runs on once caught up (loop.Trigger.Follows)
	plan      *task.Plan
	src       *kafkasrc.Source
	epoch     uint64
	cores     int // the Mapper's aggregating workers
	mapper    *task.Mapper
	run       *sync.Mutex     // held while a task of the job runs its Mapper
	kept      []*keptPartials // guarded by run
}

// mapRun is what a map task uses of its job's runtime.
type mapRun struct {
	plan    *task.Plan
	follows bool // the readers follow the partitions between tasks
	src     *kafkasrc.Source
	mapper  *task.Mapper
	// mu is held while the task runs mapper: the job's tasks on this
	// worker run one at a time (each takes every core), so a task's
	// batch timestamp, set on the plan, holds for all of its run.
	mu   *sync.Mutex
	kept *[]*keptPartials // the job's, guarded by mu
}

func newMapJobs(memory int64, cores func() int) *mapJobs {
	m := &mapJobs{memory: memory, cores: cores}
	m.mu.jobs = map[string]*mapJob{}
	return m
}

// begin returns job's Kafka source and its Mapper for the job's current
// assignment, building what is missing, and counts a running task until
// end.
func (m *mapJobs) begin(job *clusterpb.Job) (mapRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return mapRun{}, status.Errorf(codes.Unavailable, "%v (the worker is stopping)", ErrClosed)
	}
	follows, err := jobFollows(job)
	if err != nil {
		return mapRun{}, status.Errorf(codes.InvalidArgument, "job %s: %v", job.Name, err)
	}
	rt := m.mu.jobs[job.Name]
	if rt != nil && (!bytes.Equal(rt.planBytes, job.Plan) || rt.follows != follows) { // registered again, with another plan or trigger
		rt.src.Close()
		delete(m.mu.jobs, job.Name)
		rt = nil
	}
	if rt == nil {
		if rt, err = m.newJob(job); err != nil {
			return mapRun{}, err
		}
		rt.follows = follows
		m.mu.jobs[job.Name] = rt
	}
	if cores := m.cores(); rt.mapper == nil || rt.epoch != job.Assignment.GetEpoch() || rt.cores != cores {
		x, err := exchangeOf(job)
		if err != nil {
			return mapRun{}, status.Errorf(codes.FailedPrecondition, "job %s epoch %d: %v", job.Name, job.Assignment.GetEpoch(), err)
		}
		mapper, err := task.NewMapper(rt.plan, task.MapConfig{
			Exchange:      x,
			PartialGroups: task.PartialGroups(m.memory / 2 / int64(min(cores, runtime.GOMAXPROCS(0)))),
			ReadValues:    !rt.follows,
			Aggregators:   cores,
		})
		if err != nil {
			return mapRun{}, status.Errorf(codes.FailedPrecondition, "job %s: %v", job.Name, err)
		}
		rt.mapper, rt.epoch, rt.cores = mapper, job.Assignment.GetEpoch(), cores
	}
	m.running.Add(1)
	return mapRun{plan: rt.plan, follows: rt.follows, src: rt.src, mapper: rt.mapper, mu: rt.run, kept: &rt.kept}, nil
}

// jobFollows tells whether job's trigger runs on once it caught up
// (default, processing time), so that its readers follow its partitions
// between tasks, rather than end (available-now, once).
func jobFollows(job *clusterpb.Job) (bool, error) {
	trig, err := engine.ParseTrigger(job.Options["trigger"])
	if err != nil {
		return false, err
	}
	return trig.Schedule().Follows(), nil
}

// end ends a task counted by begin.
func (m *mapJobs) end() { m.running.Done() }

// newJob compiles job's plan, a serialized planpb.Query, and makes its
// Kafka source.
func (m *mapJobs) newJob(job *clusterpb.Job) (*mapJob, error) {
	q := &planpb.Query{}
	if err := proto.Unmarshal(job.Plan, q); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "job %s: its plan is not a gostream.plan.v1 Query: %v", job.Name, err)
	}
	plan, err := task.Compile(q.Plan)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "job %s: its plan does not compile here: %v (do all workers run the same gostream version, with the same registered functions?)", job.Name, err)
	}
	scan := plan.Scan
	src, err := kafkasrc.NewSource(kafkasrc.Config{
		Brokers:         strings.Split(scan.BootstrapServers, ","),
		Options:         scan.KafkaOptions,
		RetryTimeout:    time.Duration(scan.KafkaRetryTimeoutMs) * time.Millisecond,
		FetchAheadBytes: m.memory / 2,
		FailOnDataLoss:  scan.FailOnDataLoss,
	})
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "job %s: its Kafka source: %v", job.Name, err)
	}
	return &mapJob{planBytes: job.Plan, plan: plan, src: src, run: &sync.Mutex{}}, nil
}

// exchangeOf routes job's key groups to the state partitions of its
// assignment.
func exchangeOf(job *clusterpb.Job) (*operators.Exchange, error) {
	groups, ranges := stateLayout(job)
	return operators.NewExchange(int(groups), ranges)
}

// forget closes the runtimes of jobs for which running is false: the
// cluster no longer runs them. running is called without m's lock held.
func (m *mapJobs) forget(running func(job string) bool) {
	m.mu.Lock()
	var names []string
	for name := range m.mu.jobs {
		names = append(names, name)
	}
	m.mu.Unlock()
	for _, name := range names {
		if running(name) {
			continue
		}
		m.mu.Lock()
		if rt := m.mu.jobs[name]; rt != nil {
			rt.src.Close()
			delete(m.mu.jobs, name)
		}
		m.mu.Unlock()
	}
}

// close refuses new tasks, waits for the running ones and closes every
// job's source.
func (m *mapJobs) close() {
	m.mu.Lock()
	m.mu.closed = true
	m.mu.Unlock()
	m.running.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, rt := range m.mu.jobs {
		rt.src.Close()
		delete(m.mu.jobs, name)
	}
}
