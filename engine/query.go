package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
)

// DefaultShufflePartitions is the number of state partitions of a new
// aggregation query unless ShufflePartitions says otherwise.
const DefaultShufflePartitions = 4

// listing is the result of one Source.Offsets call.
type listing struct {
	earliest, latest kafkasrc.Offsets
	err              error
}

// startupBatchDivisor divides maxOffsetsPerTrigger for the first batch a
// run plans: with a backlog, the first results and progress report come
// after a fraction of a full batch (a first full batch of a million records
// takes most of a second), and the map tables and broker connections are
// warm when full batches start. maxOffsetsPerTrigger is an upper bound, so
// a smaller batch keeps its contract. In the bench suite's throughput run
// (maxOffsetsPerTrigger one million), an eighth made a first batch of
// 204-607 ms, a sixteenth one of 174-305 ms, in three runs each. The run
// also waits for the startup batch to commit before planning the next
// (see run): from process start to its commit, median 222 ms pipelined
// against 181 ms alone, in six alternating runs each.
const startupBatchDivisor = 16

// pollDelay is how long the default trigger waits before asking Kafka again
// when no new data arrived (Spark's spark.sql.streaming.pollingDelay).
const pollDelay = 10 * time.Millisecond

// relistInterval is how often a continuous query lists the partitions'
// offsets once its readers follow them: the followers tell what arrived,
// the listing finds new partitions and deleted offsets.
const relistInterval = 100 * time.Millisecond

// StreamingQuery is a running query (Spark's StreamingQuery). Its methods
// are safe for concurrent use.
type StreamingQuery struct {
	id, runID, name string
	log             *slog.Logger
	cancel          context.CancelFunc
	done            chan struct{}
	latest          func(context.Context) (kafkasrc.Offsets, error)

	mu struct {
		sync.Mutex
		err       error
		recent    []Progress
		committed kafkasrc.Offsets // end offsets of the last committed batch
	}
}

// ID is the query's id, stable across restarts from the same checkpoint.
func (q *StreamingQuery) ID() string { return q.id }

// RunID is unique to this run.
func (q *StreamingQuery) RunID() string { return q.runID }

// Name is the query's name.
func (q *StreamingQuery) Name() string { return q.name }

// Stop stops the query and waits for it. A batch in flight is abandoned; it
// re-runs when the query restarts from its checkpoint.
func (q *StreamingQuery) Stop() {
	q.cancel()
	<-q.done
}

// AwaitTermination waits until the query ends (stopped, failed, or its
// trigger finished) or ctx is done, and returns the query's error.
func (q *StreamingQuery) AwaitTermination(ctx context.Context) error {
	select {
	case <-q.done:
		return q.Exception()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsActive reports whether the query is running.
func (q *StreamingQuery) IsActive() bool {
	select {
	case <-q.done:
		return false
	default:
		return true
	}
}

// Exception is the error that ended the query, or nil.
func (q *StreamingQuery) Exception() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.mu.err
}

// LastProgress is the progress of the last batch, or nil before the first.
func (q *StreamingQuery) LastProgress() *Progress {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.mu.recent) == 0 {
		return nil
	}
	p := q.mu.recent[len(q.mu.recent)-1]
	return &p
}

// RecentProgress is the progress of up to the last 100 batches, oldest first.
func (q *StreamingQuery) RecentProgress() []Progress {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Progress{}, q.mu.recent...)
}

// ProcessAllAvailable blocks until every record available in Kafka when it
// was called has been processed and committed, and a new query's first
// batch too (it runs even without data), the query ends, or ctx is done
// (Spark's processAllAvailable, meant for tests and tools).
func (q *StreamingQuery) ProcessAllAvailable(ctx context.Context) error {
	if !q.IsActive() {
		return q.stoppedErr()
	}
	target, err := q.latest(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		q.mu.Lock()
		reached := q.mu.committed != nil && covers(q.mu.committed, target)
		q.mu.Unlock()
		if reached {
			return nil
		}
		select {
		case <-q.done:
			return q.stoppedErr()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (q *StreamingQuery) stoppedErr() error {
	if err := q.Exception(); err != nil {
		return err
	}
	return ErrStopped
}

// covers reports whether every partition of target is at or below have.
func covers(have, target kafkasrc.Offsets) bool {
	for t, parts := range target {
		for p, off := range parts {
			if got, ok := have.Get(t, p); (!ok && off > 0) || got < off {
				return false
			}
		}
	}
	return true
}

// Start starts the query. It returns once the checkpoint is recovered and
// the first batch is being planned; the query then runs until Stop, until
// ctx is cancelled, until it fails, or until its trigger finishes.
func (w *DataStreamWriter) Start(ctx context.Context) (*StreamingQuery, error) {
	if err := w.validate(); err != nil {
		return nil, err
	}
	sink, err := w.resolveSink(os.Stdout)
	if err != nil {
		return nil, err
	}
	s := w.df.s
	query := w.query()
	name := query.Name
	cp, tmpDir, err := w.checkpoint(query)
	if err != nil {
		return nil, err
	}
	budget := w.memory
	if budget == 0 {
		budget = DefaultMemory
	}
	rt, err := newRuntime(query, cp, sink, s.log, w.trigger, budget)
	if err != nil {
		if tmpDir != "" {
			os.RemoveAll(tmpDir)
		}
		return nil, err
	}
	runID := make([]byte, 16)
	_, _ = rand.Read(runID)
	qctx, cancel := context.WithCancel(ctx)
	q := &StreamingQuery{
		id: cp.meta.ID, runID: hex.EncodeToString(runID), name: name,
		log: s.log.With("query", name), cancel: cancel, done: make(chan struct{}),
	}
	q.mu.committed = rt.rec.end
	q.latest = func(ctx context.Context) (kafkasrc.Offsets, error) {
		_, latest, err := rt.src.Offsets(ctx, rt.scan.Subscribe)
		return latest, err
	}
	listeners := append(s.listeners(), w.listeners...)
	releaseMemory := claimGoMemory(rt.mem.goLimit())
	go func() {
		defer close(q.done)
		defer cancel()
		defer releaseMemory()
		err := rt.run(qctx, q, w.trigger, listeners)
		if errors.Is(err, state.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) {
			next := rt.rec.lastCommitted + 1
			if p := q.LastProgress(); p != nil {
				next = p.BatchID + 1
			}
			err = fmt.Errorf("%w; nothing was committed for batch %d, which the restart re-runs", err, next)
		}
		rt.close()
		if tmpDir != "" {
			os.RemoveAll(tmpDir)
		}
		if errors.Is(err, context.Canceled) && qctx.Err() != nil {
			err = nil // stopped
		}
		if err != nil {
			q.log.Error("query failed", "err", err)
		}
		q.mu.Lock()
		q.mu.err = err
		q.mu.Unlock()
	}()
	return q, nil
}

// checkpoint opens the checkpointLocation, or a temporary one that is
// removed when the query ends.
func (w *DataStreamWriter) checkpoint(q *planpb.Query) (*checkpoint, string, error) {
	dir, _ := w.opts.get("checkpointLocation")
	tmp := ""
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "gostream-checkpoint-"); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrCheckpoint, err)
		}
		tmp = dir
		w.df.s.log.Info("no checkpointLocation: using a temporary checkpoint, so a restart starts over", "dir", dir)
	}
	p := w.shufflePar
	if p == 0 {
		p = DefaultShufflePartitions
	}
	cp, err := openCheckpoint(filepath.Clean(dir), q, p)
	if err != nil && tmp != "" {
		os.RemoveAll(tmp)
	}
	return cp, tmp, err
}

// fingerprint identifies what a checkpoint's state and offsets depend on:
// the operators and the topics, not options a user may tune between runs
// (brokers, rate limits, starting offsets).
func fingerprint(p *planpb.Plan) string {
	p = proto.Clone(p).(*planpb.Plan)
	for n := p; n != nil; {
		switch x := n.GetNode().(type) {
		case *planpb.Plan_KafkaScan:
			s := x.KafkaScan
			s.BootstrapServers, s.StartingOffsets, s.MaxOffsetsPerTrigger = "", "", 0
			s.MinPartitions, s.FailOnDataLoss, s.KafkaOptions, s.KafkaRetryTimeoutMs = 0, false, nil, 0
			n = nil
		case *planpb.Plan_Project:
			n = x.Project.Input
		case *planpb.Plan_Filter:
			n = x.Filter.Input
		case *planpb.Plan_Explode:
			n = x.Explode.Input
		case *planpb.Plan_Aggregate:
			n = x.Aggregate.Input
		default:
			n = nil
		}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// run is the driver loop: plan a batch, log its offsets, run it, commit it.
//
// Batches are pipelined. While batch N goes through reduce, sink, state
// sync and commit log in the background, batch N+1 is planned and its map
// side runs; a continuous query that has caught up with its input plans
// N+1 once N has output. "offsets N+1" is written while N+1 maps, once
// "commit N" is durable. The map side has no durable effect, so the durable
// order stays DESIGN.md's: "offsets N+1" is logged after "commit N" and
// before any state or sink write of N+1, and a crash during N+1's map
// leaves nothing of it behind. Only N's state reaching the disk may come
// after its sink's output (see finishBatch).
func (rt *queryRuntime) run(ctx context.Context, q *StreamingQuery, trig Trigger, listeners []func(Progress)) (err error) {
	if rt.rec.rerun != nil {
		e := *rt.rec.rerun
		q.log.Info("re-running batch that did not commit before the last stop", "batch", e.BatchID)
		if err := rt.runBatch(ctx, q, e, rangesOf(e), time.Now(), 0, nil, listeners); err != nil {
			return err
		}
		rt.end, rt.nextBatch = e.End, e.BatchID+1
	}
	// Batches overlap: while one goes through reduce, sink and its durable
	// end in the background (last), the next is planned and mapped, its
	// offsets entry written once last has committed.
	var (
		last   *inFlight     // the last batch past its map side, if any
		logged *offsetsWrite // the offsets entry of the batch being mapped
	)
	waitOutput := func() error {
		if last == nil {
			return nil
		}
		<-last.output
		return last.outErr
	}
	var listed chan listing // a listing under way, if any
	defer func() {
		if listed != nil {
			<-listed // the source closes after run returns
		}
		if logged != nil {
			<-logged.done // its error, if any, is last's or run's own
		}
		if last != nil {
			<-last.committed
			if !errors.Is(err, last.err) { // not returned already by waitOutput
				err = errors.Join(err, last.err)
			}
		}
	}()
	var target kafkasrc.Offsets // AvailableNow's end
	// A continuous query's readers follow the partitions between batches
	// (kafkasrc.Source.Follow): what they fetched ahead is in memory, and
	// the latest offsets come from them, not from a listing on the path of
	// every batch. known is the last listing; the next runs in the
	// background every relistInterval.
	follow := trig.follows()
	var (
		known    *listing
		listedAt time.Time
	)
	started := 0 // batches planned by this run
	next := time.Now()
	lastTrigger := time.Time{}
	for {
		if trig.kind == triggerProcessingTime {
			if err := sleepUntil(ctx, next); err != nil {
				return err
			}
			next = nextTick(next, time.Now(), trig.interval)
		}
		start := time.Now()
		var earliest, latest kafkasrc.Offsets
		switch {
		case known != nil:
			select {
			case r := <-listed:
				if listed = nil; r.err != nil {
					return r.err
				}
				known = &r
			default:
			}
			if listed == nil && start.Sub(listedAt) >= relistInterval {
				listed, listedAt = rt.listAsync(ctx), start
			}
			earliest, latest = known.earliest, maxOffsets(known.latest, rt.src.Buffered())
		case listed != nil: // asked for while the last batch's map ran
			r := <-listed
			listed, earliest, latest, err = nil, r.earliest, r.latest, r.err
		default:
			earliest, latest, err = rt.src.Offsets(ctx, rt.scan.Subscribe)
		}
		if err != nil {
			return err
		}
		if follow && known == nil {
			known, listedAt = &listing{earliest: earliest, latest: latest}, start
		}
		listMs := time.Since(start).Milliseconds()
		if trig.kind == triggerAvailableNow {
			if target == nil {
				target = latest
			}
			latest = clampOffsets(latest, target)
		}
		limit := rt.scan.MaxOffsetsPerTrigger
		switch {
		case trig.kind == triggerOnce:
			limit = 0
		case started == 0 && limit > 0:
			limit = max(1, limit/startupBatchDivisor)
		}
		if fit := rt.sizer.limit(); trig.kind != triggerOnce && (limit == 0 || fit < limit) {
			limit = fit // the batch's groups must fit its share of the memory budget
		}
		plan, err := kafkasrc.PlanBatch(kafkasrc.PlanInput{
			Prev: rt.end, Starting: rt.starting, Earliest: earliest, Latest: latest,
			MaxOffsetsPerTrigger: limit, MinPartitions: int(rt.scan.MinPartitions), FailOnDataLoss: rt.scan.FailOnDataLoss,
		})
		if err != nil {
			return err
		}
		for _, w := range plan.Warnings {
			q.log.Warn(w)
		}
		// A query's first batch runs even without data, as Spark's does:
		// "offsets 0" then records where the starting offsets resolved to,
		// and the sink shows batch 0. Later batches need new data.
		if len(plan.Ranges) == 0 && rt.nextBatch > 0 {
			if trig.kind == triggerOnce || trig.kind == triggerAvailableNow {
				return nil
			}
			if follow {
				if err := rt.src.Follow(rt.end); err != nil {
					return err
				}
			}
			if trig.kind == triggerDefault {
				if err := rt.awaitData(ctx); err != nil {
					return err
				}
			}
			continue
		}
		e := offsetEntry{BatchID: rt.nextBatch, TimestampMs: start.UnixMilli(), Start: startOffsets(plan), End: plan.End}
		rt.end, rt.nextBatch = e.End, e.BatchID+1
		started++
		if trig.kind == triggerAvailableNow {
			// The next plan is clamped to target anyway, so its listing can
			// overlap this map instead of delaying the next one.
			listed = rt.listAsync(ctx)
		}
		logged = rt.logOffsets(e, last)
		b, err := rt.mapBatch(ctx, e, plan.Ranges, start, listMs, latest)
		if err != nil {
			return err
		}
		if follow {
			if err := rt.src.Follow(e.End); err != nil {
				return err
			}
		}
		if !lastTrigger.IsZero() {
			b.sinceLast = start.Sub(lastTrigger)
		}
		lastTrigger = start
		if err := waitOutput(); err != nil {
			return err
		}
		last, logged = rt.finishBatch(ctx, q, b, logged, listeners), nil
		if trig.kind == triggerOnce {
			return nil
		}
		// The next batch is planned once this one has output when this is
		// the run's first batch: its reduce and sink then do not share the
		// CPU with the next map, so the first results come out sooner. Also
		// when a continuous query caught up: planned now, the next batch
		// would take only what arrived during this map, and those records
		// would wait for this output anyway. A backlog otherwise keeps the
		// pipeline.
		if started == 1 || follow && covers(e.End, latest) {
			if err := waitOutput(); err != nil {
				return err
			}
		}
	}
}

// listAsync lists the source's offsets in the background.
func (rt *queryRuntime) listAsync(ctx context.Context) chan listing {
	listed := make(chan listing, 1)
	go func() {
		e, l, err := rt.src.Offsets(ctx, rt.scan.Subscribe)
		listed <- listing{e, l, err}
	}()
	return listed
}

// awaitData waits, when the default trigger found no new data, until a
// following reader fetched some or, for partitions that nothing follows
// yet, pollDelay passed.
func (rt *queryRuntime) awaitData(ctx context.Context) error {
	d := pollDelay
	if len(rt.src.Buffered()) > 0 {
		d = relistInterval
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-rt.src.Arrived():
	case <-timer.C:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// maxOffsets is a merge of two views of the latest offsets, each partition
// at the higher one.
func maxOffsets(a, b kafkasrc.Offsets) kafkasrc.Offsets {
	out := a.Clone()
	for t, parts := range b {
		for p, off := range parts {
			if cur, ok := out.Get(t, p); !ok || off > cur {
				out.Set(t, p, off)
			}
		}
	}
	return out
}

// nextTick is the first tick of a processing-time trigger after now, on the
// grid of interval-spaced ticks through next: ticks missed while a batch
// overran are skipped, in a constant time whatever their number.
func nextTick(next, now time.Time, interval time.Duration) time.Time {
	if next.After(now) {
		return next
	}
	return next.Add((now.Sub(next)/interval + 1) * interval)
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// clampOffsets limits latest to target, partition by partition.
func clampOffsets(latest, target kafkasrc.Offsets) kafkasrc.Offsets {
	out := latest.Clone()
	for t, parts := range out {
		for p, off := range parts {
			if lim, ok := target.Get(t, p); ok && off > lim {
				parts[p] = lim
			} else if !ok {
				delete(parts, p) // a partition added after the start waits for the next run
			}
		}
		if len(parts) == 0 {
			delete(out, t)
		}
	}
	return out
}

// startOffsets is where each partition of the plan starts.
func startOffsets(p kafkasrc.Plan) kafkasrc.Offsets {
	start := p.End.Clone()
	for _, r := range p.Ranges {
		if cur, _ := start.Get(r.Topic, r.Partition); r.From < cur {
			start.Set(r.Topic, r.Partition, r.From)
		}
	}
	return start
}

// rangesOf rebuilds the ranges of a logged batch.
func rangesOf(e offsetEntry) []kafkasrc.Range {
	var rs []kafkasrc.Range
	for t, parts := range e.End {
		for p, until := range parts {
			from, ok := e.Start.Get(t, p)
			if ok && from < until {
				rs = append(rs, kafkasrc.Range{Topic: t, Partition: p, From: from, Until: until})
			}
		}
	}
	return rs
}

func (rt *queryRuntime) describeSource() string {
	return "KafkaV2[Subscribe[" + strings.Join(rt.scan.Subscribe, ",") + "]]"
}
