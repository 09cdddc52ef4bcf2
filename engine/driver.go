package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
)

// run is the driver loop: loop.Run over the query's checkpoint (the batch
// log), its tasks run in goroutines, its Kafka source and its progress
// reports. loop.Core decides; see there for the order of the protocol and
// how batches overlap. A batch's output does not wait for its state to
// reach the disk (the sync comes after the sink, before the commit entry):
// a crash before the commit entry re-runs the batch with the same ranges
// against whatever state version reached the disk (see openState), and the
// sinks write a batch idempotently.
func (rt *queryRuntime) run(ctx context.Context, q *StreamingQuery, trig Trigger, listeners []func(Progress)) error {
	if e := rt.rec.Rerun; e != nil {
		q.log.Info("re-running batch that did not commit before the last stop", "batch", e.BatchID)
	}
	core := loop.NewCore(loop.Config{
		Trigger: trig.sched, Starting: rt.starting, MaxOffsetsPerTrigger: rt.scan.MaxOffsetsPerTrigger,
		MinPartitions: int(rt.scan.MinPartitions), FailOnDataLoss: rt.scan.FailOnDataLoss,
		Sizer: rt.mem.sizer(rt.query.OutputMode != Complete),
	}, rt.rec)
	return loop.Run(ctx, core, loop.Parts{
		Log:      checkpointLog{rt.cp},
		Executor: localTasks{rt},
		Source:   kafkaSource{rt},
		Reporter: &progressReporter{rt: rt, q: q, listeners: listeners},
		Logger:   q.log,
	})
}

// checkpointLog is the batch log of a local query: its checkpoint's.
type checkpointLog struct{ cp *checkpoint }

func (l checkpointLog) WriteOffsets(_ context.Context, e loop.OffsetsEntry) error {
	return l.cp.writeOffsets(e)
}

func (l checkpointLog) WriteCommit(_ context.Context, batch int64, next *loop.OffsetsEntry) error {
	if next != nil {
		return l.cp.writeCommitAndOffsets(batch, *next)
	}
	return l.cp.writeCommit(batch)
}

// kafkaSource is the query's source as the loop sees it.
type kafkaSource struct{ rt *queryRuntime }

func (s kafkaSource) Offsets(ctx context.Context) (earliest, latest kafkasrc.Offsets, err error) {
	return s.rt.src.Offsets(ctx, s.rt.scan.Subscribe)
}

func (s kafkaSource) Follow(from kafkasrc.Offsets) error { return s.rt.src.Follow(from) }
func (s kafkaSource) Buffered() kafkasrc.Offsets         { return s.rt.src.Buffered() }
func (s kafkaSource) Arrived() <-chan struct{}           { return s.rt.src.Arrived() }

// localTasks runs a batch's tasks in goroutines of this process, its
// exchange in memory.
type localTasks struct{ rt *queryRuntime }

// mappedBatch is a batch whose map side has run (loop.Mapped); Output fills
// in what its progress report needs.
type mappedBatch struct {
	e    offsetEntry
	outs []task.Output // what each map task produced
	n    int64         // records read

	// Set by Output.
	dur        map[string]int64 // reduce and addBatch, in milliseconds
	state      *StateProgress
	outputRows int64
}

func (b *mappedBatch) Records() int64 { return b.n }

// Map runs the map side of batch e: reading its ranges, the narrow
// operators and the partial aggregation into exchange buckets.
func (x localTasks) Map(ctx context.Context, e loop.OffsetsEntry, ranges []kafkasrc.Range, _ bool) (loop.Mapped, error) {
	outs, n, err := x.rt.mapper.Run(ctx, x.rt.src, ranges, time.UnixMilli(e.TimestampMs))
	if err != nil {
		return nil, fmt.Errorf("batch %d: %w", e.BatchID, err)
	}
	return &mappedBatch{e: e, outs: outs, n: n}, nil
}

// Output reduces the batch into the state and writes its output to the
// sink.
func (x localTasks) Output(ctx context.Context, m loop.Mapped) (loop.OutputStats, error) {
	rt, b := x.rt, m.(*mappedBatch)
	e, outs := b.e, b.outs
	b.dur = map[string]int64{}
	phase := func(name string, t0 time.Time) { b.dur[name] = time.Since(t0).Milliseconds() }

	t := time.Now()
	var stats loop.OutputStats
	batch := &Batch{ID: e.BatchID, Mode: rt.query.OutputMode}
	if rt.stateful() {
		changed, updated, err := rt.reduce(ctx, e.BatchID, outs)
		if err != nil {
			return stats, fmt.Errorf("batch %d: %w", e.BatchID, err)
		}
		stats.Groups = updated
		for _, o := range outs {
			for _, bucket := range o.Buckets {
				stats.ExchangeBytes += int64(len(bucket))
			}
		}
		b.state = &StateProgress{OperatorName: "stateStoreSave", NumRowsUpdated: updated, NumShufflePartitions: rt.parts}
		for _, st := range rt.stores {
			b.state.NumRowsTotal += st.Len()
		}
		switch {
		case rt.dedup != nil:
			b.state.OperatorName = "dedupe" // Spark's name for it
			batch.Schema = rt.dedup.Schema()
			batch.each = eachRow(changed)
		case rt.query.OutputMode == Complete:
			batch.Schema = rt.agg.Schema()
			batch.each = rt.scanState
		default:
			batch.Schema = rt.agg.Schema()
			batch.each = eachRow(changed)
		}
	} else {
		batch.Schema = rt.narrow.Schema()
		rows := make([][]operators.Row, len(outs))
		for i, o := range outs {
			rows[i] = o.Rows
			stats.Groups += int64(len(o.Rows))
		}
		batch.each = eachRow(rows)
	}
	phase("reduce", t)

	t = time.Now()
	counted := batch.each
	batch.each = func(fn operators.Emit) error {
		b.outputRows = 0
		return counted(func(r operators.Row) error { b.outputRows++; return fn(r) })
	}
	if err := rt.addBatch(ctx, batch); err != nil {
		return stats, fmt.Errorf("batch %d: sink: %w", e.BatchID, err)
	}
	phase("addBatch", t)
	return stats, nil
}

// addBatch writes the batch to the sink, a panic in it an error.
func (rt *queryRuntime) addBatch(ctx context.Context, b *Batch) (err error) {
	defer rt.catch(fmt.Sprintf("sink %T", rt.sink), &err)
	return rt.sink.AddBatch(ctx, b)
}

// Sync makes the state stores durable; they hold the batch's commit.
func (x localTasks) Sync(_ context.Context, batch int64) error {
	if x.rt.states == nil {
		return nil
	}
	if err := x.rt.states.Sync(); err != nil {
		return fmt.Errorf("batch %d: %w", batch, err)
	}
	return nil
}

// progressReporter makes a committed batch's Progress, keeps it on the
// query and gives it to the listeners.
type progressReporter struct {
	rt        *queryRuntime
	q         *StreamingQuery
	listeners []func(Progress)
}

func (r *progressReporter) Report(rep loop.Report, m loop.Mapped) {
	q, b, e, n := r.q, m.(*mappedBatch), rep.Entry, rep.Records
	dur := rep.Durations
	for k, v := range b.dur {
		dur[k] = v
	}
	p := Progress{
		ID: q.id, RunID: q.runID, Name: q.name, Timestamp: rep.Start.UTC(), BatchID: e.BatchID,
		NumInputRows: n, DurationMs: dur, Sink: SinkProgress{Description: fmt.Sprintf("%T", r.rt.sink), NumOutputRows: b.outputRows},
	}
	if elapsed := time.Since(rep.Start).Seconds(); elapsed > 0 {
		p.ProcessedRowsPerSecond = float64(n) / elapsed
	}
	if rep.SinceLast > 0 {
		p.InputRowsPerSecond = float64(n) / rep.SinceLast.Seconds()
	}
	if b.state != nil {
		p.StateOperators = []StateProgress{*b.state}
	}
	p.Sources = []SourceProgress{{
		Description: r.rt.describeSource(), StartOffset: e.Start, EndOffset: e.End,
		LatestOffset: rep.Latest, NumInputRows: n,
		InputRowsPerSecond: p.InputRowsPerSecond, ProcessedRowsPerSecond: p.ProcessedRowsPerSecond,
	}}
	q.mu.Lock()
	q.mu.committed = e.End
	q.mu.recent = append(q.mu.recent, p)
	if len(q.mu.recent) > 100 {
		q.mu.recent = q.mu.recent[1:]
	}
	q.mu.Unlock()
	for _, l := range r.listeners {
		r.rt.report(l, p)
	}
}
