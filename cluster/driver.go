package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
// answers). The leader gathers each batch's output rows, runs the job's
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
	job     *clusterpb.Job // with its assignment
	query   *planpb.Query
	plan    *task.Plan
	reducer *task.Reducer // nil for a job without an aggregation
	cfg     loop.Config
	src     *kafkasrc.Source
	sink    engine.Sink
	out     bytes.Buffer // what sink wrote for the submitter, per batch
}

// newJobDriver compiles run's job, opens its Kafka listing and its sink,
// and logs the job's next assignment epoch.
func newJobDriver(ctx context.Context, run *JobRun) (d *jobDriver, err error) {
	n, job := run.m.n, run.Job
	d = &jobDriver{n: n, run: run, query: &planpb.Query{}}
	defer func() {
		if err != nil {
			d.close()
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
	if d.job, err = d.assign(ctx); err != nil {
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

// assign logs the job's next assignment epoch through Raft, in the run's
// term, and returns the job with it: every partition of its topics has a
// worker, sticky (nextAssignment). Each run starts a new epoch, so a
// worker answers the run's tasks only once it applied the epoch, and with
// it what came before in the log (the job RUNNING again), and refuses the
// tasks of earlier runs.
func (d *jobDriver) assign(ctx context.Context) (*clusterpb.Job, error) {
	_, latest, err := d.src.Offsets(ctx, d.plan.Scan.Subscribe)
	if err != nil {
		return nil, err
	}
	var parts []kafkaPartition
	for t, ps := range latest {
		for p := range ps {
			parts = append(parts, kafkaPartition{t, p})
		}
	}
	job := d.run.Job
	var members []string
	for _, m := range d.n.fsm.Members() {
		members = append(members, m.Name)
	}
	a, reason := nextAssignment(job, parts, members, func(string) bool { return true }, d.n.StateReplicas())
	if reason == "" {
		reason = fmt.Sprintf("a driver run on %s in term %d", d.run.Member, d.run.Term)
	}
	c := &clusterpb.Command{Kind: &clusterpb.Command_SetAssignment{SetAssignment: &clusterpb.SetAssignment{Job: job.Name, Assignment: a, Reason: reason, TimeMs: time.Now().UnixMilli()}}}
	if _, err := applyInTerm(d.n.raft, c, d.run.Term, d.n.cfg.ApplyTimeout); err != nil {
		return nil, fmt.Errorf("logging its assignment epoch %d: %w", a.Epoch, err)
	}
	d.n.log.Info("cluster: job assigned", "job", job.Name, "epoch", a.Epoch, "kafka_partitions", len(a.Kafka), "state_partitions", len(a.State), "reason", reason)
	j, ok := d.n.fsm.Job(job.Name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownJob, job.Name)
	}
	return j, nil
}

// header is the fencing of the run's requests: its cluster, term and
// assignment epoch.
func (d *jobDriver) header() *clusterpb.Header {
	return &clusterpb.Header{ClusterId: d.n.ClusterID(), Term: d.run.Term, From: d.run.Member, Epoch: d.job.Assignment.GetEpoch()}
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

// call calls fn, a task request to a worker, with try 1, 2..., again
// while it fails for a while only (transient), for at most the node's
// ApplyTimeout and maxTries tries: a new epoch, or a job just registered,
// reaches the followers a moment after the leader logged it, and a worker
// started a moment ago may not listen yet.
func (d *jobDriver) call(ctx context.Context, fn func(try uint32) error) error {
	deadline := time.Now().Add(d.n.cfg.ApplyTimeout)
	for try := uint32(1); ; try++ {
		err := fn(try)
		if !transient(err) || try == maxTries || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryDelay):
		}
	}
}

const (
	// retryDelay is how long call waits before it tries again.
	retryDelay = 20 * time.Millisecond
	// maxTries bounds the tries of a call: attempt numbers them in 8 bits.
	maxTries = 255
)

// attempt numbers a map task's try of the run: its assignment epoch, which
// each run logs anew, then the try. So an attempt of a run supersedes, in
// the owners' inboxes, every attempt of an earlier run, and each try the
// one before: a try that failed half way leaves nothing a reduce takes.
func (d *jobDriver) attempt(try uint32) uint32 {
	return uint32(d.job.Assignment.GetEpoch())<<8 | try
}

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
	entry   loop.OffsetsEntry
	tasks   int32 // map tasks, each of which pushed to every state partition
	records int64
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

// Map runs batch e's map tasks: one per worker its ranges' Kafka
// partitions are assigned to, with that worker's ranges. For a job with an
// aggregation, each pushes its partials to every state partition's owner
// before it answers; for one without, each streams its ranges' output
// rows back (MapRows), which Map keeps in the ranges' order.
func (d *jobDriver) Map(ctx context.Context, e loop.OffsetsEntry, ranges []kafkasrc.Range, _ bool) (_ loop.Mapped, err error) {
	defer task.Recover(fmt.Sprintf("cluster: job %s batch %d: map", d.job.Name, e.BatchID), &err)
	byWorker := map[string][]*clusterpb.MapRange{}
	index := map[string][]int{} // of byWorker's ranges in ranges
	for i, r := range ranges {
		w := d.worker(r.Topic, r.Partition)
		if w == "" {
			return nil, fmt.Errorf("cluster: job %s batch %d: Kafka partition %s-%d is assigned to no worker in epoch %d (it appeared after the job's assignment: stop the job and submit it again to assign it)",
				d.job.Name, e.BatchID, r.Topic, r.Partition, d.job.Assignment.GetEpoch())
		}
		byWorker[w] = append(byWorker[w], &clusterpb.MapRange{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until})
		index[w] = append(index[w], i)
	}
	workers := slices.Sorted(func(yield func(string) bool) {
		for w := range byWorker {
			if !yield(w) {
				return
			}
		}
	})
	m := &mapped{entry: e, tasks: int32(len(workers))}
	if d.plan.Narrow != nil {
		m.rows = make([][][]byte, len(ranges))
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for i, w := range workers {
		g.Go(func() error {
			cc, err := d.conn(w)
			if err == nil {
				var records, sent int64
				err = d.call(gctx, func(try uint32) (err error) {
					req := &clusterpb.MapRequest{Header: d.header(), Job: d.job.Name, Batch: e.BatchID,
						Task: int32(i), Attempt: d.attempt(try), Ranges: byWorker[w], BatchTimestampMs: e.TimestampMs}
					if d.plan.Narrow != nil {
						records, err = d.mapRows(gctx, cc, req, m.rows, index[w])
						return err
					}
					resp, err := clusterpb.NewTaskClient(cc).Map(gctx, req)
					records, sent = resp.GetRecords(), int64(resp.GetBytesSent())
					return err
				})
				if err == nil {
					mu.Lock()
					m.records += records
					m.bytes += sent
					mu.Unlock()
					return nil
				}
			}
			return fmt.Errorf("cluster: job %s batch %d: map task %d on worker %s: %w", d.job.Name, e.BatchID, i, w, err)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return m, nil
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

// worker is the worker a Kafka partition is assigned to, "" if none.
func (d *jobDriver) worker(topic string, partition int32) string {
	ks := d.job.Assignment.GetKafka()
	i, ok := slices.BinarySearchFunc(ks, kafkaPartition{topic, partition}, func(k *clusterpb.KafkaAssignment, p kafkaPartition) int {
		return comparePartitions(kafkaPartition{k.Topic, k.Partition}, p)
	})
	if !ok {
		return ""
	}
	return ks[i].Worker
}

// Output reduces the batch on every state partition's owner at once, each
// of which commits the partition at the batch's version and replicates it
// to its standby before it answers, then writes the batch's rows to the
// sink: the groups the batch changed (update mode) or a dropDuplicates'
// new rows, gathered from the reduce's answers, or every group (complete
// mode), streamed from the owners.
func (d *jobDriver) Output(ctx context.Context, lm loop.Mapped) (_ loop.OutputStats, err error) {
	m := lm.(*mapped)
	batch := m.entry.BatchID
	defer task.Recover(fmt.Sprintf("cluster: job %s batch %d: output", d.job.Name, batch), &err)
	m.dur = map[string]int64{}
	if d.plan.Narrow != nil {
		return loop.OutputStats{}, d.write(ctx, m, d.plan.Narrow.Schema(), func(fn operators.Emit) error {
			return readRows("a map task's", m.rows, fn)
		})
	}
	complete := d.query.OutputMode == engine.Complete
	parts := d.job.Assignment.GetState()
	changes := make([][][]byte, len(parts))
	var updated, total atomic.Int64
	t := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i, sp := range parts {
		g.Go(func() error {
			cc, err := d.conn(sp.Owner)
			if err == nil {
				var done *clusterpb.ReduceDone
				req := &clusterpb.ReduceRequest{Header: d.header(), Job: d.job.Name, Batch: batch, Partition: int32(i), Tasks: m.tasks, Changes: !complete}
				err = d.call(gctx, func(uint32) (err error) {
					changes[i] = nil // of a try cut short
					done, err = ReducePartition(gctx, cc, req, func(rec []byte) error {
						changes[i] = append(changes[i], rec)
						return nil
					})
					return err
				})
				if err == nil {
					updated.Add(done.Groups)
					total.Add(done.Rows)
					return nil
				}
			}
			return fmt.Errorf("cluster: job %s batch %d: reduce of state partition %d on worker %s: %w", d.job.Name, batch, i, sp.Owner, err)
		})
	}
	if err := g.Wait(); err != nil {
		return loop.OutputStats{}, err
	}
	m.updated, m.total = updated.Load(), total.Load()
	m.dur["reduce"] = time.Since(t).Milliseconds()

	t = time.Now()
	var schema operators.Schema
	var each func(fn operators.Emit) error
	switch {
	case d.plan.Dedup != nil: // the reduces answered their new rows
		schema, each = d.plan.Dedup.Schema(), func(fn operators.Emit) error {
			return readRows("a reduce's", changes, fn)
		}
	default:
		schema, each = d.plan.Agg.Schema(), func(fn operators.Emit) error {
			for _, recs := range changes {
				for _, rec := range recs {
					if err := d.reducer.RecordRows(rec, fn); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
	if complete {
		each = func(fn operators.Emit) error {
			for i, sp := range parts {
				cc, err := d.conn(sp.Owner)
				if err == nil {
					err = PartitionRows(ctx, cc, &clusterpb.RowsRequest{Header: d.header(), Job: d.job.Name, Batch: batch, Partition: int32(i)},
						func(rec []byte) error { return d.reducer.RecordRows(rec, fn) })
				}
				if err != nil {
					return fmt.Errorf("rows of state partition %d on worker %s: %w", i, sp.Owner, err)
				}
			}
			return nil
		}
	}
	if err := d.write(ctx, m, schema, each); err != nil {
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
		return fmt.Errorf("cluster: job %s batch %d: sink: %w", d.job.Name, m.entry.BatchID, err)
	}
	m.output = bytes.Clone(d.out.Bytes())
	m.dur["addBatch"] = time.Since(t).Milliseconds()
	return nil
}

// Sync does nothing: each state partition's owner committed the batch,
// and replicated it to the partition's standby, before its Reduce
// answered.
func (d *jobDriver) Sync(context.Context, int64) error { return nil }

// Offsets lists the job's topics on the leader.
func (d *jobDriver) Offsets(ctx context.Context) (earliest, latest kafkasrc.Offsets, err error) {
	return d.src.Offsets(ctx, d.plan.Scan.Subscribe)
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
	p := engine.Progress{ID: d.job.Name, RunID: fmt.Sprintf("%s-term-%d", d.run.Member, d.run.Term), Name: d.query.Name,
		Timestamp: rep.Start.UTC(), BatchID: e.BatchID, NumInputRows: n, DurationMs: rep.Durations,
		Sink: engine.SinkProgress{Description: fmt.Sprintf("%T", d.sink), NumOutputRows: m.outputRows}}
	if d.plan.Narrow == nil {
		p.StateOperators = []engine.StateProgress{{OperatorName: "stateStoreSave", NumRowsTotal: m.total, NumRowsUpdated: m.updated,
			NumShufflePartitions: len(d.job.Assignment.GetState())}}
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
