package cluster

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
)

// keptPartials are the partials a worker keeps of its latest map task of a
// job with an aggregation or a dropDuplicates: the buckets each state
// partition's owner was pushed, per task.Output, for the task's ranges of
// one batch. A failover runs the batch again in a new epoch; the task of a
// worker whose ranges stayed then pushes them again to the new epoch's
// owners instead of reading its ranges from Kafka and aggregating them
// again (mapKept). The key groups and the state partitions' key group
// ranges are fixed for a job, so the buckets hold in any epoch of the
// same layout; only the partitions' owners move.
type keptPartials struct {
	batch       int64
	timestampMs int64 // the batch's, which the narrow operators saw
	keyGroups   int32
	layout      []operators.KeyGroupRange // of the state partitions
	ranges      []kafkasrc.Range
	outs        []task.Output
	records     int64 // read from ranges
}

// stateLayout is job's number of key groups and its state partitions' key
// group ranges, in the order of its assignment.
func stateLayout(job *clusterpb.Job) (int32, []operators.KeyGroupRange) {
	parts := job.Assignment.GetState()
	layout := make([]operators.KeyGroupRange, len(parts))
	for i, sp := range parts {
		layout[i] = operators.KeyGroupRange{First: int(sp.FirstKeyGroup), End: int(sp.EndKeyGroup)}
	}
	return job.KeyGroups, layout
}

// reusable tells whether k's partials hold for a task of job's current
// assignment that maps ranges of batch at timestampMs: the same batch and
// timestamp, the same state partition layout, and each of k's ranges
// among ranges, exactly.
func (k *keptPartials) reusable(job *clusterpb.Job, batch, timestampMs int64, ranges []kafkasrc.Range) bool {
	if k == nil || k.batch != batch || k.timestampMs != timestampMs {
		return false
	}
	groups, layout := stateLayout(job)
	if groups != k.keyGroups || !slices.Equal(layout, k.layout) {
		return false
	}
	for _, r := range k.ranges {
		if !slices.Contains(ranges, r) {
			return false
		}
	}
	return true
}

// size is the bytes of k's buckets.
func (k *keptPartials) size() int64 {
	var n int64
	for _, o := range k.outs {
		for _, b := range o.Buckets {
			n += int64(len(b))
		}
	}
	return n
}

// keptBatches is how many batches' map tasks a worker keeps the partials
// of per job: the batch loop maps batch N+1 while batch N outputs, so a
// failover may run both again.
const keptBatches = 2

// mapKept runs a map task's ranges through run's Mapper and returns the
// task's outputs, the records it read and those of the ranges it did not
// read again (reused). For a job that shuffles (agg), the ranges of the
// partials kept from the worker's previous task of the same batch are not
// read again when they are reusable for this one: their buckets join the
// outputs of the other ranges. Then the task's partials are kept in
// place of the batch's previous ones (keep); a task of a batch drops those
// of batches keptBatches or more before it. The caller holds run.mu.
func (m *mapJobs) mapKept(ctx context.Context, run mapRun, job *clusterpb.Job, req *clusterpb.MapRequest, ranges []kafkasrc.Range, agg bool) (outs []task.Output, records, reused int64, err error) {
	ts := time.UnixMilli(req.BatchTimestampMs)
	if !agg {
		outs, records, err = run.mapper.Run(ctx, run.src, ranges, ts)
		return outs, records, 0, err
	}
	var kept *keptPartials
	*run.kept = slices.DeleteFunc(*run.kept, func(k *keptPartials) bool {
		if k.batch == req.Batch && k.reusable(job, req.Batch, req.BatchTimestampMs, ranges) {
			kept = k
		}
		return k.batch == req.Batch || k.batch <= req.Batch-keptBatches
	})
	todo := ranges
	if kept != nil {
		todo = slices.DeleteFunc(slices.Clone(ranges), func(r kafkasrc.Range) bool { return slices.Contains(kept.ranges, r) })
		outs, reused = slices.Clip(kept.outs), kept.records
	}
	if kept == nil || len(todo) > 0 {
		read, n, err := run.mapper.Run(ctx, run.src, todo, ts)
		if err != nil {
			return nil, 0, 0, err
		}
		outs, records = append(outs, read...), n
	}
	groups, layout := stateLayout(job)
	m.keep(run.kept, &keptPartials{batch: req.Batch, timestampMs: req.BatchTimestampMs, keyGroups: groups, layout: layout,
		ranges: slices.Clone(ranges), outs: outs, records: records + reused})
	return outs, records, reused, nil
}

// keep adds next to kept, then drops the partials of the oldest batches
// while their buckets take more than half the job's map memory: a task
// that runs again then maps again.
func (m *mapJobs) keep(kept *[]*keptPartials, next *keptPartials) {
	ks := append(*kept, next)
	slices.SortFunc(ks, func(a, b *keptPartials) int { return cmp.Compare(a.batch, b.batch) })
	var size int64
	for _, k := range ks {
		size += k.size()
	}
	for len(ks) > 0 && size > m.memory/2 {
		size -= ks[0].size()
		ks = ks[1:]
	}
	*kept = ks
}
