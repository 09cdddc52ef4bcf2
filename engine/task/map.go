package task

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/operators"
)

// MapConfig configures a Mapper.
type MapConfig struct {
	// Exchange routes the partial aggregation's groups to the state
	// partitions' exchange buckets. Required when the plan aggregates.
	Exchange *operators.Exchange
	// PartialGroups is how many groups a map worker's partial aggregation
	// holds before it flushes them into the exchange buckets. Required
	// when the plan aggregates.
	PartialGroups int
	// ReadValues lets Run read record values alone
	// (kafkasrc.Source.ReadValues) when the plan needs nothing else of a
	// record (word count): no row is built per record. Such reads do not
	// take records a following reader fetched ahead (kafkasrc.Source.Follow),
	// so leave it false for a source that follows its partitions.
	ReadValues bool
	// Aggregators, if positive, bounds a run's aggregating workers; there
	// are GOMAXPROCS of them at most in any case (default: one per core).
	// Each worker holds a table of its own, so a group that several
	// workers meet is added to each table, and Run folds the tables before
	// it flushes them: a cluster worker runs as many as the cores it
	// offers, which co-located workers share.
	Aggregators int
	// Catch, if not nil, is deferred at the top of each task's goroutine
	// (a row task, an aggregating worker) with the task's name and its
	// error: it must recover a panic in the task (a registered function
	// raises its *operators.FuncError as one) into the error. Default:
	// Recover.
	Catch func(task string, err *error)
}

// Recover is MapConfig.Catch's default. Deferred, it turns a panic into
// *err: PanicError, named by task, with the stack for a panic outside a
// registered function.
func Recover(task string, err *error) {
	p := recover()
	if p == nil {
		return
	}
	e := PanicError(p)
	if errors.Is(e, ErrPanic) {
		e = fmt.Errorf("%w\n%s", e, debug.Stack())
	}
	*err = fmt.Errorf("%s: %w", task, e)
}

// PanicError is the error of a task that panicked with p: the
// *operators.FuncError of a registered function that failed or panicked,
// else ErrPanic with p's value.
func PanicError(p any) error {
	var fe *operators.FuncError
	if e, ok := p.(error); ok && errors.As(e, &fe) {
		return fe
	}
	return fmt.Errorf("%w: %v", ErrPanic, p)
}

// PartialGroupBytes is the memory a partial aggregation takes per group,
// as PartialGroups counts it; MinPartialGroups and MaxPartialGroups bound
// what PartialGroups returns.
const (
	PartialGroupBytes = 64
	MinPartialGroups  = 1 << 12
	MaxPartialGroups  = 1 << 18
)

// PartialGroups is the MapConfig.PartialGroups that fits a map worker's
// partial aggregation in bytes of memory, within [MinPartialGroups,
// MaxPartialGroups].
func PartialGroups(bytes int64) int {
	return int(min(max(bytes/PartialGroupBytes, MinPartialGroups), MaxPartialGroups))
}

// Mapper runs the map tasks of one query: it reads offset ranges through
// the plan's narrow operators and, when the plan aggregates, its partial
// aggregation into exchange buckets. It is safe for concurrent use; its
// aggregators are reused from batch to batch, so their tables keep their
// size.
type Mapper struct {
	plan       *Plan
	cfg        MapConfig
	readValues bool // cfg.ReadValues and the plan allows it
	partials   freeList[*mapAgg]
}

// NewMapper returns a Mapper of p. It builds one partial aggregator at once,
// so a plan its aggregation cannot run fails here, not in a batch.
func NewMapper(p *Plan, cfg MapConfig) (*Mapper, error) {
	m := &Mapper{plan: p, cfg: cfg}
	if m.cfg.Catch == nil {
		m.cfg.Catch = Recover
	}
	if p.Agg == nil {
		if p.Dedup != nil && cfg.Exchange == nil {
			return nil, errors.New("task: a Mapper of a dropDuplicates needs an Exchange")
		}
		return m, nil
	}
	if cfg.Exchange == nil || cfg.PartialGroups <= 0 {
		return nil, errors.New("task: a Mapper of an aggregation needs an Exchange and PartialGroups")
	}
	a, err := m.getMapAgg()
	if err != nil {
		return nil, err
	}
	m.readValues = a.value != nil && cfg.ReadValues
	m.partials.put(a)
	return m, nil
}

// ReadsValues reports whether Run reads record values alone (see
// MapConfig.ReadValues).
func (m *Mapper) ReadsValues() bool { return m.readValues }

// Output is what one map task produced.
type Output struct {
	// Buckets holds, when the plan aggregates or drops duplicates, an
	// exchange bucket per state partition (operators.HashAgg.Flush,
	// operators.DedupPartial.Buckets), for the reduce side.
	Buckets [][]byte
	// Rows holds, when the plan does not aggregate, the task's output rows
	// in offset order.
	Rows []operators.Row
}

// Run runs the map side of a batch over ranges, read from src, and returns
// what each task produced and the number of records read. ts is the
// batch's timestamp (its offsets entry's), the plan's current_timestamp:
// runs of different batches must not overlap, as they share the plan's
// clock. Without an aggregation, one task per range emits rows in offset
// order. With one, a reader per range hands record slices to one
// aggregating worker per core (MapConfig.Aggregators may bound
// them), so both cores stay busy whatever the number of partitions and
// their skew; the outputs hold their buckets, each group
// of the batch flushed once unless the workers' groups exceed
// MapConfig.PartialGroups.
// Run writes nothing durable: a failed or canceled Run may be run again
// with the same ranges. A task's panic, or a registered function's
// failure, fails Run with the error MapConfig.Catch makes of it.
func (m *Mapper) Run(ctx context.Context, src *kafkasrc.Source, ranges []kafkasrc.Range, ts time.Time) ([]Output, int64, error) {
	chain := m.plan.Narrow
	switch {
	case m.plan.Agg != nil:
		chain = m.plan.Agg.Input()
	case m.plan.Dedup != nil:
		chain = m.plan.Dedup.Input()
	}
	chain.Clock().Set(ts)
	var read atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	if m.plan.Agg == nil {
		outs := make([]Output, len(ranges))
		for i, r := range ranges {
			g.Go(func() (err error) {
				defer m.cfg.Catch("map task "+r.String(), &err)
				if m.plan.Dedup != nil {
					outs[i].Buckets, err = m.dedupTask(gctx, src, r, &read)
				} else {
					outs[i].Rows, err = m.narrowTask(gctx, src, r, &read)
				}
				return err
			})
		}
		err := g.Wait()
		return outs, read.Load(), err
	}
	workers := runtime.GOMAXPROCS(0)
	if k := m.cfg.Aggregators; k > 0 {
		workers = min(workers, k)
	}
	aggs := make([]*mapAgg, workers)
	defer func() {
		for _, a := range aggs { // a failed task's groups are dropped
			if a != nil {
				a.partial.Reset()
				m.partials.put(a)
			}
		}
	}()
	for w := range aggs {
		var err error
		if aggs[w], err = m.getMapAgg(); err != nil {
			return nil, 0, err
		}
	}
	work := make(chan mapInput, workers) // small: readers must not run far ahead in memory
	g.Go(func() error {
		defer close(work)
		readers, rctx := errgroup.WithContext(gctx)
		send := func(in mapInput, n int) error {
			read.Add(int64(n))
			select {
			case work <- in:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		}
		for _, r := range ranges {
			readers.Go(func() error {
				if m.readValues {
					return src.ReadValues(rctx, r, func(values [][]byte, release func()) error {
						return send(mapInput{values: values, release: release}, len(values))
					})
				}
				return src.ReadRange(rctx, r, func(recs []*kgo.Record) error {
					return send(mapInput{recs: slices.Clone(recs)}, len(recs))
				})
			})
		}
		return readers.Wait()
	})
	outs := make([]Output, workers)
	for w := range outs {
		g.Go(func() (err error) {
			defer m.cfg.Catch(fmt.Sprintf("map task %d", w), &err)
			outs[w].Buckets, err = m.aggregateWorker(aggs[w], work)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return outs, read.Load(), err
	}
	err := func() (err error) {
		defer m.cfg.Catch("map task", &err)
		outs[0].Buckets = m.flushAll(aggs, outs[0].Buckets)
		return nil
	}()
	return slices.DeleteFunc(outs, func(o Output) bool { return o.Buckets == nil }), read.Load(), err
}

// flushAll flushes the groups the aggregating workers hold, aggs, into
// dst. It first folds them into as few aggregators as hold at most
// PartialGroups each (HashAgg.Absorb): the workers read slices of the same
// ranges, so their tables share most groups, and each group flushed once
// is encoded, sent and merged once on the reduce side.
func (m *Mapper) flushAll(aggs []*mapAgg, dst [][]byte) [][]byte {
	x, limit := m.cfg.Exchange, m.cfg.PartialGroups
	slices.SortFunc(aggs, func(a, b *mapAgg) int { return cmp.Compare(b.partial.Len(), a.partial.Len()) })
	into := aggs[0].partial
	for _, a := range aggs[1:] {
		if into.Len()+a.partial.Len() > limit {
			dst = into.Flush(x, dst)
		}
		into.Absorb(a.partial)
	}
	return into.Flush(x, dst)
}

// mapAgg is a map worker's partial aggregator and the narrow chain feeding
// it.
type mapAgg struct {
	partial *operators.HashAgg
	entry   operators.Emit // takes rows, when value is nil
	value   func([]byte)   // takes record values instead of rows, if not nil
}

func (m *Mapper) getMapAgg() (*mapAgg, error) {
	if a, ok := m.partials.get(); ok {
		return a, nil
	}
	partial, err := m.plan.Agg.NewPartial()
	if err != nil {
		return nil, err
	}
	value, err := partial.ValueEntry()
	if err != nil || value != nil {
		return &mapAgg{partial: partial, value: value}, err
	}
	entry, err := partial.Entry()
	if err != nil {
		return nil, err
	}
	return &mapAgg{partial: partial, entry: entry}, nil
}

// mapInput is a slice of records, or of record values when the Mapper reads
// values alone, with the function that releases their memory.
type mapInput struct {
	recs    []*kgo.Record
	values  [][]byte
	release func()
}

// aggregateWorker runs the narrow operators and the partial aggregation
// over the record slices it receives until work is closed, into a. It
// returns the exchange buckets of the groups it flushed whenever a held
// PartialGroups; a keeps the others.
func (m *Mapper) aggregateWorker(a *mapAgg, work <-chan mapInput) ([][]byte, error) {
	x, limit, headers := m.cfg.Exchange, m.cfg.PartialGroups, m.plan.Scan.IncludeHeaders
	var buckets [][]byte
	row := make(operators.Row, len(operators.KafkaSchema(headers)))
	var topic operators.Value
	for in := range work {
		for _, v := range in.values {
			a.value(v)
			if a.partial.Bound() >= limit {
				buckets = a.partial.Flush(x, buckets)
			}
		}
		if in.release != nil {
			in.release() // the aggregation copied what it keeps
		}
		for _, rec := range in.recs {
			switch {
			case a.value != nil: // word count: no row per record
				a.value(rec.Value)
			default:
				if string(topic.B) != rec.Topic {
					topic = operators.Str(rec.Topic)
				}
				fillRow(row, rec, topic, headers)
				if err := a.entry(row); err != nil {
					return nil, err
				}
			}
			if a.partial.Bound() >= limit {
				buckets = a.partial.Flush(x, buckets)
			}
		}
	}
	return buckets, nil
}

// narrowTask reads one offset range through the narrow operators and
// returns the output rows, in offset order.
func (m *Mapper) narrowTask(ctx context.Context, src *kafkasrc.Source, r kafkasrc.Range, read *atomic.Int64) ([]operators.Row, error) {
	var rows []operators.Row
	err := m.readRows(ctx, src, r, read, m.plan.Narrow, func(row operators.Row) error {
		rows = append(rows, row.Clone())
		return nil
	})
	return rows, err
}

// dedupTask reads one offset range through the narrow operators below the
// dropDuplicates and returns the exchange buckets of the first row of each
// key, in offset order.
func (m *Mapper) dedupTask(ctx context.Context, src *kafkasrc.Source, r kafkasrc.Range, read *atomic.Int64) ([][]byte, error) {
	p := m.plan.Dedup.NewPartial(m.cfg.Exchange)
	err := m.readRows(ctx, src, r, read, m.plan.Dedup.Input(), p.Add)
	return p.Buckets(), err
}

// readRows reads one offset range through chain into out.
func (m *Mapper) readRows(ctx context.Context, src *kafkasrc.Source, r kafkasrc.Range, read *atomic.Int64, chain *operators.Narrow, out operators.Emit) error {
	entry, err := chain.New(out)
	if err != nil {
		return err
	}
	headers := m.plan.Scan.IncludeHeaders
	row := make(operators.Row, len(operators.KafkaSchema(headers)))
	topic := operators.Str(r.Topic)
	return src.ReadRange(ctx, r, func(recs []*kgo.Record) error {
		read.Add(int64(len(recs)))
		for _, rec := range recs {
			fillRow(row, rec, topic, headers)
			if err := entry(row); err != nil {
				return err
			}
		}
		return nil
	})
}

// fillRow writes a Kafka record into row, in KafkaSchema's column order.
func fillRow(row operators.Row, rec *kgo.Record, topic operators.Value, headers bool) {
	row[0] = operators.Null
	if rec.Key != nil {
		row[0] = operators.Value{Kind: operators.KindBinary, B: rec.Key}
	}
	row[1] = operators.Null // a tombstone's value is null
	if rec.Value != nil {
		row[1] = operators.Value{Kind: operators.KindBinary, B: rec.Value}
	}
	row[2] = topic
	row[3] = operators.Long(int64(rec.Partition))
	row[4] = operators.Long(rec.Offset)
	row[5] = operators.Value{Kind: operators.KindTimestamp, I: rec.Timestamp.UnixMicro()}
	row[6] = operators.Long(int64(rec.Attrs.TimestampType()))
	if headers {
		row[7] = operators.Null
		if len(rec.Headers) > 0 {
			hs := make([]operators.Value, len(rec.Headers))
			for i, h := range rec.Headers {
				hs[i] = operators.Value{Kind: operators.KindStruct, A: []operators.Value{
					operators.Str(h.Key), {Kind: operators.KindBinary, B: h.Value},
				}}
			}
			row[7] = operators.Value{Kind: operators.KindArray, A: hs}
		}
	}
}
