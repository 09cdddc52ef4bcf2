package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gostream/gostream/engine/loop"
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
	narrow   *operators.Narrow      // the plan, when it has no aggregation or dropDuplicates
	agg      *operators.Aggregation // the plan's aggregation, if any
	dedup    *operators.Dedup       // the plan's dropDuplicates, if any
	mapper   *task.Mapper
	src      *kafkasrc.Source
	states   state.Provider
	stores   []state.Store
	parts    int

	reducer      *task.Reducer      // the aggregation's reduce task
	dedupReducer *task.DedupReducer // the dropDuplicates' reduce task
	// changed holds, per state partition, the rows an update-mode batch
	// changed, from its reduce until its sink returns; reused by the next.
	changed []operators.RowBuffer

	rec loop.Recovery

	// mem is the query's memory budget, split.
	mem memoryPlan
}

// newRuntime prepares a run of query q on checkpoint cp, which it closes if
// it fails. Everything that can refuse the checkpoint is checked before
// anything in it is written (see checkpoint).
func newRuntime(q *planpb.Query, cp *checkpoint, sink Sink, log *slog.Logger, trig Trigger, memory int64) (_ *queryRuntime, err error) {
	rt := &queryRuntime{query: q, cp: cp, sink: sink, log: log.With("query", q.Name), parts: cp.meta.ShufflePartitions}
	rt.mem = planMemory(memory, rt.parts, !trig.follows())
	defer func() {
		if err != nil {
			rt.close()
		}
	}()
	plan, err := task.Compile(q.Plan)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnalysis, err)
	}
	rt.agg, rt.dedup, rt.narrow, rt.scan = plan.Agg, plan.Dedup, plan.Narrow, plan.Scan
	if rt.agg != nil {
		rt.reducer = task.NewReducer(rt.agg)
	}
	if rt.dedup != nil {
		rt.dedupReducer = task.NewDedupReducer(rt.dedup)
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
		FailOnDataLoss:  rt.scan.FailOnDataLoss,
	})
	if err != nil {
		return nil, err
	}
	if rt.rec, err = cp.recover(); err != nil {
		return nil, err
	}
	opts := rt.stateOptions()
	if rt.stateful() {
		if err := rt.checkState(opts); err != nil {
			return nil, err
		}
	}
	if err := cp.resume(); err != nil {
		return nil, err
	}
	if rt.stateful() {
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

// stateful reports whether the plan keeps state: an aggregation's groups
// or the keys a dropDuplicates has seen.
func (rt *queryRuntime) stateful() bool { return rt.agg != nil || rt.dedup != nil }

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
	// commit-log step syncs all partitions at once (localTasks.Sync).
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
	last := rt.rec.LastCommitted
	switch {
	case v == last+1 && rt.rec.Rerun != nil && rt.rec.Rerun.BatchID == v:
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
		if v := st.Version(); v > rt.rec.LastCommitted {
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

// reduce merges each shuffle partition's buckets into its state store and
// commits the partition at version batch (task.Reducer, or
// task.DedupReducer for a dropDuplicates). It returns, per partition, the
// output rows (update mode, or a dropDuplicates' new rows) and the number of
// groups updated (of rows kept).
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
			var res task.Reduced
			if rt.dedup != nil {
				res, err = rt.dedupReducer.Reduce(rt.stores[p], batch, buckets, task.ReduceOptions{Rows: &changed[p]})
				updated.Add(res.Groups)
				return err
			}
			var opts task.ReduceOptions
			if rt.query.OutputMode == Update {
				opts.Rows = &changed[p]
			}
			res, err = rt.reducer.Reduce(rt.stores[p], batch, buckets, opts)
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
