package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
)

// queryRuntime is one run of a query: its compiled plan, source, state and
// checkpoint. It belongs to the query's driver goroutine.
type queryRuntime struct {
	query    *planpb.Query
	cp       *checkpoint
	sink     Sink
	log      *slog.Logger
	scan     *planpb.KafkaScan
	starting kafkasrc.StartingOffsets
	narrow   *operators.Narrow      // the plan, when it has no aggregation
	agg      *operators.Aggregation // the plan's aggregation, if any
	mapper   *task.Mapper
	src      *kafkasrc.Source
	states   state.Provider
	stores   []state.Store
	parts    int

	reducer *task.Reducer // the aggregation's reduce task
	// changed holds, per state partition, the rows an update-mode batch
	// changed, from its reduce until its sink returns; reused by the next.
	changed []operators.RowBuffer

	rec       recovery
	end       kafkasrc.Offsets // end offsets of the last planned batch
	nextBatch int64            // id of the next batch to plan

	// mem is the query's memory budget, split; sizer caps batches to fit it.
	mem   memoryPlan
	sizer *batchSizer
}

// newRuntime prepares a run of query q on checkpoint cp, which it closes if
// it fails. Everything that can refuse the checkpoint is checked before
// anything in it is written (see checkpoint).
func newRuntime(q *planpb.Query, cp *checkpoint, sink Sink, log *slog.Logger, trig Trigger, memory int64) (_ *queryRuntime, err error) {
	rt := &queryRuntime{query: q, cp: cp, sink: sink, log: log.With("query", q.Name), parts: cp.meta.ShufflePartitions}
	rt.mem = planMemory(memory, rt.parts, !trig.follows())
	rt.sizer = newBatchSizer(rt.mem, q.OutputMode != Complete)
	defer func() {
		if err != nil {
			rt.close()
		}
	}()
	plan, err := task.Compile(q.Plan)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnalysis, err)
	}
	rt.agg, rt.narrow, rt.scan = plan.Agg, plan.Narrow, plan.Scan
	if rt.agg != nil {
		rt.reducer = task.NewReducer(rt.agg)
	}
	if rt.starting, err = kafkasrc.ParseStartingOffsets(rt.scan.StartingOffsets); err != nil {
		return nil, fmt.Errorf("%w: startingOffsets: %w", ErrAnalysis, err)
	}
	rt.src, err = kafkasrc.NewSource(kafkasrc.Config{
		Brokers:      strings.Split(rt.scan.BootstrapServers, ","),
		Options:      rt.scan.KafkaOptions,
		RetryTimeout: time.Duration(rt.scan.KafkaRetryTimeoutMs) * time.Millisecond,
		Logger:       rt.log,

		FetchAheadBytes: rt.mem.fetchAhead,
	})
	if err != nil {
		return nil, err
	}
	if rt.rec, err = cp.recover(); err != nil {
		return nil, err
	}
	rt.end, rt.nextBatch = rt.rec.end, rt.rec.lastCommitted+1
	opts := rt.stateOptions()
	if rt.agg != nil {
		if err := rt.checkState(opts); err != nil {
			return nil, err
		}
	}
	if err := cp.resume(); err != nil {
		return nil, err
	}
	if rt.agg != nil {
		if err := rt.openState(opts); err != nil {
			return nil, err
		}
	}
	// A continuous query's readers follow the partitions, whose records
	// then come from memory: only other queries read values alone.
	x, err := operators.PartitionExchange(rt.parts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnalysis, err)
	}
	rt.mapper, err = task.NewMapper(plan, task.MapConfig{Exchange: x, PartialGroups: rt.mem.partialGroups, ReadValues: !trig.follows(), Catch: rt.catch})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnalysis, err)
	}
	if err := cp.finishUpgrade(); err != nil {
		return nil, err
	}
	return rt, nil
}

// stateOptions are the options of the query's state store.
func (rt *queryRuntime) stateOptions() state.Options {
	opts := state.DefaultOptions()
	opts.Logger = rt.log
	opts.Label = rt.cp.label()
	// No undo records: a partition whose state committed the batch that
	// re-runs is not rolled back but skipped (see task.Reducer.Reduce).
	// Undo records were most of Pebble's compaction work.
	opts.RetainVersions = 0
	// Every query keeps its state in memory and makes each commit durable
	// as one changelog record (state.Options.Changelog), folded into Pebble
	// keys in the background once the changelog reaches four times the
	// partition's state (within a quarter and two memtables). A
	// partition whose state outgrows ChangelogMaxBytes, or would with the
	// batch it is writing, goes on in Pebble, so memory stays bounded
	// whatever the number of groups. The sizes are the memory budget's
	// (planMemory): in the bench suite's throughput run, the changelog
	// took 13-18% off its wall and CPU time against plain Pebble.
	opts.Changelog = true
	rt.mem.stateOptions(&opts)
	// A batch's output does not wait for its state to reach the disk: the
	// commit-log step syncs all partitions at once (see finishBatch).
	opts.DeferSync = true
	return opts
}

// checkState checks the state store against the rest of the checkpoint
// without writing to it: it must be labeled with this checkpoint, hold no
// partition beyond the shuffle partitions, and each partition must be at a
// batch the batch log allows (checkVersion). A missing state store is
// accepted only before the first batch.
func (rt *queryRuntime) checkState(opts state.Options) error {
	dir := filepath.Join(rt.cp.dir, stateDirName)
	sum, err := state.CheckPebble(dir, opts, rt.parts)
	if err != nil {
		return damaged(rt.cp.dir, statePart, err)
	}
	ents := rt.cp.log.ents
	if !sum.Exists {
		if len(ents) > 0 {
			return damaged(rt.cp.dir, statePart, fmt.Errorf("missing or empty, while the batch log holds batches %d to %d", ents[0].batchID(), ents[len(ents)-1].batchID()))
		}
		return nil
	}
	empty := len(ents) == 0 && !slices.ContainsFunc(sum.Versions, func(v int64) bool { return v != state.NoVersion })
	if err := rt.cp.checkStateLabel(sum.Label, empty); err != nil {
		return err
	}
	if sum.Beyond >= 0 {
		return damaged(rt.cp.dir, statePart, fmt.Errorf("it holds state partition %d, while the metadata says %d shuffle partitions", sum.Beyond, rt.parts))
	}
	for p, v := range sum.Versions {
		if err := rt.checkVersion(p, v); err != nil {
			return err
		}
	}
	return nil
}

// checkVersion checks that state partition p, at version v, is at the last
// committed batch, or at the batch that re-runs (its state committed, its
// commit-log entry was never written), whose re-run then reads the
// partition's rows instead of merging again (task.Reducer.Reduce), so that
// it counts once.
func (rt *queryRuntime) checkVersion(p int, v int64) error {
	last := rt.rec.lastCommitted
	switch {
	case v == last+1 && rt.rec.rerun != nil && rt.rec.rerun.BatchID == v:
		// The batch that re-runs committed here: its rows come from the state.
	case v > last:
		return damaged(rt.cp.dir, statePart, fmt.Errorf("partition %d is at batch %d but batch %d is the last committed and no later batch is planned", p, v, last))
	case v < last:
		return damaged(rt.cp.dir, statePart, fmt.Errorf("partition %d is at batch %d but batch %d committed", p, v, last))
	}
	return nil
}

// openState opens the state partitions, checked by checkState.
func (rt *queryRuntime) openState(opts state.Options) error {
	dir := filepath.Join(rt.cp.dir, stateDirName)
	var err error
	if rt.states, err = state.OpenPebble(dir, opts); err != nil {
		return fmt.Errorf("%w: state store %s: %w", ErrCheckpoint, dir, err)
	}
	for p := range rt.parts {
		st, err := rt.states.Open(p)
		if err != nil {
			return fmt.Errorf("%w: state partition %d in %s: %w", ErrCheckpoint, p, dir, err)
		}
		rt.stores = append(rt.stores, st)
		if err := rt.checkVersion(p, st.Version()); err != nil {
			return err
		}
		if v := st.Version(); v > rt.rec.lastCommitted {
			rt.log.Info("state already holds the batch that re-runs; its rows come from the state", "partition", p, "batch", v)
		}
	}
	return nil
}

func (rt *queryRuntime) close() {
	if rt.src != nil {
		rt.src.Close()
	}
	if rt.states != nil {
		if err := rt.states.Close(); err != nil {
			rt.log.Warn("closing state store", "err", err)
		}
	}
	if c, ok := rt.sink.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			rt.log.Warn("closing sink", "err", err)
		}
	}
	if err := rt.cp.close(); err != nil {
		rt.log.Warn("closing checkpoint", "err", err)
	}
}

// mappedBatch is a batch whose map side has run; what remains is its
// commit (finishBatch).
type mappedBatch struct {
	e         offsetEntry
	outs      []task.Output // what each map task produced
	n         int64         // records read
	start     time.Time
	dur       map[string]int64 // phase durations so far
	latest    kafkasrc.Offsets
	sinceLast time.Duration // since the previous batch's trigger start

	// Set by outputBatch.
	state      *StateProgress
	outputRows int64
}

// runBatch runs batch e, whose offsets entry is already in the log, through
// the rest of the protocol of DESIGN.md: map tasks, exchange, reduce with
// state commit, sink, commit log.
func (rt *queryRuntime) runBatch(ctx context.Context, q *StreamingQuery, e offsetEntry, ranges []kafkasrc.Range, start time.Time, listMs int64, latest kafkasrc.Offsets, listeners []func(Progress)) error {
	b, err := rt.mapBatch(ctx, e, ranges, start, listMs, latest)
	if err != nil {
		return err
	}
	f := rt.finishBatch(ctx, q, b, nil, listeners)
	<-f.committed
	return f.err
}

// mapBatch runs the map side of batch e: reading its ranges, the narrow
// operators and the partial aggregation into exchange buckets. It has no
// durable effect, so it may run while the previous batch commits.
func (rt *queryRuntime) mapBatch(ctx context.Context, e offsetEntry, ranges []kafkasrc.Range, start time.Time, listMs int64, latest kafkasrc.Offsets) (*mappedBatch, error) {
	t := time.Now()
	outs, n, err := rt.mapper.Run(ctx, rt.src, ranges, time.UnixMilli(e.TimestampMs))
	if err != nil {
		return nil, fmt.Errorf("batch %d: %w", e.BatchID, err)
	}
	return &mappedBatch{e: e, outs: outs, n: n, start: start, latest: latest,
		dur: map[string]int64{"latestOffset": listMs, "map": time.Since(t).Milliseconds()}}, nil
}

// offsetsWrite is a batch's offsets entry being written to the log in the
// background, while the batch's map side runs.
type offsetsWrite struct {
	done chan struct{} // closed once written or failed
	err  error
	ms   int64 // how long the write and its sync took
}

// logOffsets writes e to the offsets log once prev, the batch before it (nil
// if none is in flight), has committed: the log holds at most one batch that
// has not. If prev has not begun writing its commit-log entry, e waits for
// it and goes into the log with it, at one sync for both.
func (rt *queryRuntime) logOffsets(e offsetEntry, prev *inFlight) *offsetsWrite {
	w := &offsetsWrite{done: make(chan struct{})}
	if prev != nil {
		prev.mu.Lock()
		parked := !prev.mu.committing
		if parked {
			prev.mu.next, prev.mu.nextWrite = &e, w
		}
		prev.mu.Unlock()
		if parked {
			return w
		}
	}
	go func() {
		defer close(w.done)
		if prev != nil {
			if <-prev.committed; prev.err != nil {
				w.err = prev.err // the query reports the cause, not this entry
				return
			}
		}
		t := time.Now()
		w.err = rt.cp.writeOffsets(e)
		w.ms = time.Since(t).Milliseconds()
	}()
	return w
}

// inFlight is a mapped batch going through its remaining steps in the
// background: output (reduce and sink), then the durable end (state sync,
// commit log, progress).
type inFlight struct {
	b         *mappedBatch
	output    chan struct{} // closed once the sink returned or the batch failed before
	outErr    error         // set before output closes
	committed chan struct{} // closed once the commit-log entry is durable or the batch failed
	err       error         // set before committed closes

	mu struct {
		sync.Mutex
		committing bool // its commit-log entry is being written, or it failed
		// The next batch's offsets entry, parked by logOffsets to be
		// written with this batch's commit-log entry, and its write.
		next      *offsetEntry
		nextWrite *offsetsWrite
	}
}

// takeNext marks the batch as committing and returns the next batch's
// offsets entry and write, if parked.
func (f *inFlight) takeNext() (*offsetEntry, *offsetsWrite) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.committing = true
	next, w := f.mu.next, f.mu.nextWrite
	f.mu.next, f.mu.nextWrite = nil, nil
	return next, w
}

// finishBatch takes a mapped batch through the steps after its map side, in
// order: its offsets entry durable (logged; nil if it is from an earlier
// run), reduce with state commit, sink, state sync, commit log, progress.
// Its output does not wait for the state's sync: a crash before the
// commit-log entry re-runs the batch with the same ranges against whatever
// state version reached the disk (see openState), and the sinks write a
// batch idempotently.
func (rt *queryRuntime) finishBatch(ctx context.Context, q *StreamingQuery, b *mappedBatch, logged *offsetsWrite, listeners []func(Progress)) *inFlight {
	f := &inFlight{b: b, output: make(chan struct{}), committed: make(chan struct{})}
	go func() {
		defer func() {
			close(f.committed)
			// A next batch's offsets entry parked on a failed batch is
			// never written; its error is the failed batch's.
			if _, w := f.takeNext(); w != nil {
				w.err = f.err
				close(w.done)
			}
		}()
		f.outErr = rt.outputBatch(ctx, b, logged)
		close(f.output)
		if f.err = f.outErr; f.err != nil {
			return
		}
		f.err = rt.commitBatch(q, f, listeners)
	}()
	return f
}

// outputBatch waits for the batch's offsets entry, then reduces it into the
// state and writes its output to the sink.
func (rt *queryRuntime) outputBatch(ctx context.Context, b *mappedBatch, logged *offsetsWrite) error {
	e, outs, dur := b.e, b.outs, b.dur
	phase := func(name string, t0 time.Time) { dur[name] = time.Since(t0).Milliseconds() }
	dur["walCommit"] = 0
	if logged != nil {
		<-logged.done
		if logged.err != nil {
			return logged.err
		}
		dur["walCommit"] = logged.ms
	}

	t := time.Now()
	batch := &Batch{ID: e.BatchID, Mode: rt.query.OutputMode}
	if rt.agg != nil {
		changed, updated, err := rt.reduce(ctx, e.BatchID, outs)
		if err != nil {
			return fmt.Errorf("batch %d: %w", e.BatchID, err)
		}
		var exchanged int64
		for _, o := range outs {
			for _, bucket := range o.Buckets {
				exchanged += int64(len(bucket))
			}
		}
		rt.sizer.observe(b.n, updated, exchanged)
		b.state = &StateProgress{OperatorName: "stateStoreSave", NumRowsUpdated: updated, NumShufflePartitions: rt.parts}
		for _, st := range rt.stores {
			b.state.NumRowsTotal += st.Len()
		}
		batch.Schema = rt.agg.Schema()
		if rt.query.OutputMode == Complete {
			batch.each = rt.scanState
		} else {
			batch.each = eachRow(changed)
		}
	} else {
		batch.Schema = rt.narrow.Schema()
		rows := make([][]operators.Row, len(outs))
		var n int64
		for i, o := range outs {
			rows[i] = o.Rows
			n += int64(len(o.Rows))
		}
		rt.sizer.observe(b.n, n, 0)
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
		return fmt.Errorf("batch %d: sink: %w", e.BatchID, err)
	}
	phase("addBatch", t)
	return nil
}

// addBatch writes the batch to the sink, a panic in it an error.
func (rt *queryRuntime) addBatch(ctx context.Context, b *Batch) (err error) {
	defer rt.catch(fmt.Sprintf("sink %T", rt.sink), &err)
	return rt.sink.AddBatch(ctx, b)
}

// commitBatch makes the batch's state durable, writes its commit-log entry,
// with the next batch's offsets entry if parked, and reports its progress.
func (rt *queryRuntime) commitBatch(q *StreamingQuery, f *inFlight, listeners []func(Progress)) error {
	b := f.b
	e, n, dur := b.e, b.n, b.dur
	t := time.Now()
	if rt.states != nil {
		if err := rt.states.Sync(); err != nil {
			return fmt.Errorf("batch %d: %w", e.BatchID, err)
		}
	}
	if next, w := f.takeNext(); w != nil {
		tw := time.Now()
		w.err = rt.cp.writeCommitAndOffsets(e.BatchID, *next)
		w.ms = time.Since(tw).Milliseconds()
		close(w.done)
		if w.err != nil {
			return w.err
		}
	} else if err := rt.cp.writeCommit(e.BatchID); err != nil {
		return err
	}
	dur["commitOffsets"] = time.Since(t).Milliseconds()
	dur["triggerExecution"] = time.Since(b.start).Milliseconds()

	elapsed := time.Since(b.start).Seconds()
	p := Progress{
		ID: q.id, RunID: q.runID, Name: q.name, Timestamp: b.start.UTC(), BatchID: e.BatchID,
		NumInputRows: n, DurationMs: dur, Sink: SinkProgress{Description: fmt.Sprintf("%T", rt.sink), NumOutputRows: b.outputRows},
	}
	if elapsed > 0 {
		p.ProcessedRowsPerSecond = float64(n) / elapsed
	}
	if b.sinceLast > 0 {
		p.InputRowsPerSecond = float64(n) / b.sinceLast.Seconds()
	}
	if b.state != nil {
		p.StateOperators = []StateProgress{*b.state}
	}
	p.Sources = []SourceProgress{{
		Description: rt.describeSource(), StartOffset: e.Start, EndOffset: e.End,
		LatestOffset: b.latest, NumInputRows: n,
		InputRowsPerSecond: p.InputRowsPerSecond, ProcessedRowsPerSecond: p.ProcessedRowsPerSecond,
	}}
	q.mu.Lock()
	q.mu.committed = e.End
	q.mu.recent = append(q.mu.recent, p)
	if len(q.mu.recent) > 100 {
		q.mu.recent = q.mu.recent[1:]
	}
	q.mu.Unlock()
	for _, l := range listeners {
		rt.report(l, p)
	}
	return nil
}

// reduce merges each shuffle partition's buckets into its state store and
// commits the partition at version batch (task.Reducer). It returns, per
// partition, the changed output rows (update mode) and the number of groups
// updated.
func (rt *queryRuntime) reduce(ctx context.Context, batch int64, outs []task.Output) ([][]operators.Row, int64, error) {
	if rt.changed == nil {
		rt.changed = make([]operators.RowBuffer, rt.parts)
	}
	changed := rt.changed
	for p := range changed {
		changed[p].Reset() // the last batch's sink has returned
	}
	var updated atomic.Int64
	// One goroutine per partition, not per core: merging is CPU-bound and the
	// scheduler bounds it, while their synced commits overlap, and Pebble
	// folds concurrent syncs into one.
	g, _ := errgroup.WithContext(ctx)
	for p := range rt.parts {
		g.Go(func() (err error) {
			defer rt.catch(fmt.Sprintf("reduce task of state partition %d", p), &err)
			buckets := make([][]byte, 0, len(outs))
			for _, o := range outs {
				if p < len(o.Buckets) {
					buckets = append(buckets, o.Buckets[p])
				}
			}
			var opts task.ReduceOptions
			if rt.query.OutputMode == Update {
				opts.Rows = &changed[p]
			}
			res, err := rt.reducer.Reduce(rt.stores[p], batch, buckets, opts)
			updated.Add(res.Groups)
			return err
		})
	}
	err := g.Wait()
	rows := make([][]operators.Row, len(changed))
	for p := range changed {
		rows[p] = changed[p].Rows()
	}
	return rows, updated.Load(), err
}

// scanState emits every row of the result table (complete mode).
func (rt *queryRuntime) scanState(fn operators.Emit) error {
	for _, st := range rt.stores {
		if err := rt.reducer.EachRow(st, fn); err != nil {
			return err
		}
	}
	return nil
}

func eachRow(parts [][]operators.Row) func(operators.Emit) error {
	return func(fn operators.Emit) error {
		for _, rows := range parts {
			for _, r := range rows {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
}
