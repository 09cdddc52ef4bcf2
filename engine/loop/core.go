package loop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// TriggerKind says when batches run (Spark's triggers).
type TriggerKind int

const (
	// Default runs each batch as soon as the last has output, and waits
	// for data when there is none.
	Default TriggerKind = iota
	// ProcessingTime runs a batch every Interval; ticks missed while a
	// batch overran are skipped.
	ProcessingTime
	// Once runs one batch of everything available, with no cap, then stops.
	Once
	// AvailableNow runs batches up to the latest offsets listed at start,
	// then stops.
	AvailableNow
)

// Trigger decides when batches run.
type Trigger struct {
	Kind     TriggerKind
	Interval time.Duration // ProcessingTime's
}

// Follows tells whether a query with the trigger runs on after it caught
// up: its source's readers then follow the partitions between batches
// (kafkasrc.Source.Follow), and the latest offsets come from them and from
// a listing every RelistInterval.
func (t Trigger) Follows() bool { return t.Kind == Default || t.Kind == ProcessingTime }

// StartupBatchDivisor divides maxOffsetsPerTrigger for the first batch a
// run plans: with a backlog, the first results and progress report come
// after a fraction of a full batch, and the map tables and broker
// connections are warm when full batches start. maxOffsetsPerTrigger is an
// upper bound, so a smaller batch keeps its contract. The run also waits
// for the startup batch to output before planning the next, so its reduce
// and sink do not share the CPU with the next map.
const StartupBatchDivisor = 16

// RelistInterval is how often a following query lists the partitions'
// offsets: the followers tell what arrived, the listing finds new
// partitions and deleted offsets. It is also how long the default trigger
// waits for a follower to fetch records before it plans again (Spark's
// spark.sql.streaming.pollingDelay, which a follower's news shortens).
const RelistInterval = 100 * time.Millisecond

// Config is what a Core decides with.
type Config struct {
	Trigger Trigger
	// The Kafka source's options (see kafkasrc.PlanInput).
	Starting             kafkasrc.StartingOffsets
	MaxOffsetsPerTrigger int64
	MinPartitions        int
	FailOnDataLoss       bool
	// Sizer caps batches to fit their memory; its zero value caps nothing.
	// Once ignores it, as it ignores MaxOffsetsPerTrigger.
	Sizer Sizer
}

// Core is the batch loop's decisions, without I/O: Step takes an event and
// returns the actions it calls for. It plans batches with
// kafkasrc.PlanBatch and pipelines them: while batch N outputs, syncs and
// commits, batch N+1 is planned and mapped; "offsets N+1" is logged once
// "commit N" is durable, in the same write when N's commit had not begun
// when N+1 was planned, and N+1 outputs once its offsets entry is durable.
// A batch the batch log planned and never committed runs first, alone,
// with the same ranges. After a failure nothing more is logged, output or
// planned: the core waits for the actions in flight, then stops with the
// failure. A Core belongs to one goroutine.
type Core struct {
	cfg    Config
	follow bool

	end     kafkasrc.Offsets // end offsets of the last planned batch
	next    int64            // id of the next batch to plan
	started int              // batches planned by this run
	rerun   *OffsetsEntry    // runs first

	phase     phase
	attemptAt time.Time        // when the plan under way began
	tick      time.Time        // the processing-time trigger's next tick
	target    kafkasrc.Offsets // AvailableNow's end
	listing   bool             // a ListOffsets is in flight
	fresh     *listed          // a listing no plan used yet (not following)
	known     *listed          // the last listing (following)
	listedAt  time.Time        // when known's successor was asked for
	lastStart time.Time        // when the last planned batch's trigger fired

	batches  []*batch // planned and not committed, oldest first
	inFlight int      // actions answered by an event, not yet answered
	done     bool     // no batch is planned any more
	err      error
	stopped  bool
}

// phase is where the next plan stands.
type phase int

const (
	idle        phase = iota // not under way
	waitTick                 // WaitUntil the next tick
	waitData                 // WaitForData
	waitListing              // ListOffsets, to plan with
	waitBuffer               // ReadBuffered, to plan with
)

type listed struct{ earliest, latest kafkasrc.Offsets }

// batch is a planned batch on its way to its commit.
type batch struct {
	entry     OffsetsEntry
	rerun     bool
	latest    kafkasrc.Offsets
	start     time.Time     // when its trigger fired
	sinceLast time.Duration // since the trigger of the batch planned before it
	ordinal   int           // its position among the batches this run planned
	records   int64
	dur       map[string]int64 // Report.Durations

	log    logState
	parked bool // its offsets entry goes into the log with the commit of the batch before
	mapped bool
	// Each step asked for and answered, in order.
	outputting, output          bool
	syncing, synced, committing bool
	// when its map, offsets write, sync and commit were asked for
	mapAt, logAt, syncAt, commitAt time.Time
}

// logState is how far a batch's offsets entry is.
type logState int

const (
	logPending logState = iota // to be logged once the batch before committed, or parked with its commit
	logWriting                 // LogOffsets, or the CommitBatch of the batch before, in flight
	logDone
)

// NewCore returns the core of a run that starts from what the batch log
// recovered.
func NewCore(cfg Config, rec Recovery) *Core {
	return &Core{cfg: cfg, follow: cfg.Trigger.Follows(), end: rec.End, next: rec.LastCommitted + 1, rerun: rec.Rerun}
}

// Step takes an event that happened at now and returns the actions it
// calls for, in order. The caller answers ReadBuffered before any other
// event, and every other action of those that answer (see Event) once, in
// any order. An answer to no action in flight is the caller's bug: Step
// panics. After Stop, Step does nothing.
func (c *Core) Step(now time.Time, ev Event) []Action {
	var out []Action
	emit := func(a Action) {
		switch a.(type) {
		case ListOffsets, LogOffsets, MapBatch, OutputBatch, SyncBatch, CommitBatch:
			c.inFlight++
		}
		out = append(out, a)
	}
	if c.stopped {
		return nil
	}
	c.handle(now, ev, emit)
	c.advance(now, emit)
	return out
}

// handle records ev.
func (c *Core) handle(now time.Time, ev Event, emit func(Action)) {
	switch ev := ev.(type) {
	case Start:
		if c.rerun != nil {
			e := *c.rerun
			b := &batch{entry: e, rerun: true, start: now, log: logDone, dur: map[string]int64{"latestOffset": 0, "walCommit": 0}}
			c.batches = append(c.batches, b)
			c.mapBatch(now, b, e.Ranges(), emit)
			c.end, c.next = e.End, e.BatchID+1
		}
	case OffsetsListed:
		c.inFlight--
		c.listing = false
		if c.fail(ev.Err) {
			return
		}
		l := &listed{ev.Earliest, ev.Latest}
		switch {
		case c.phase == waitListing:
			c.phase = idle
			if c.follow {
				c.known, c.listedAt = l, c.attemptAt
			}
			c.plan(now, *l, emit)
		case c.follow:
			c.known = l
		default:
			c.fresh = l
		}
	case BufferedRead:
		if c.phase == waitBuffer {
			c.phase = idle
			c.plan(now, listed{c.known.earliest, maxOffsets(c.known.latest, ev.Buffered)}, emit)
		}
	case TimerFired:
		if c.phase == waitTick || c.phase == waitData {
			c.phase = idle
		}
	case DataArrived:
		if c.phase == waitData {
			c.phase = idle
		}
	case OffsetsLogged:
		c.inFlight--
		b := c.batch(ev.Batch)
		if c.fail(ev.Err) {
			return
		}
		if b.log != logWriting || b.parked {
			panic(fmt.Sprintf("loop: batch %d's offsets entry logged, but no LogOffsets of it is in flight", ev.Batch))
		}
		b.log, b.dur["walCommit"] = logDone, ms(now.Sub(b.logAt))
	case BatchMapped:
		c.inFlight--
		b := c.batch(ev.Batch)
		if c.fail(ev.Err) {
			return
		}
		b.mapped, b.records, b.dur["map"] = true, ev.Records, ms(now.Sub(b.mapAt))
		if c.follow && !b.rerun && c.err == nil {
			emit(FollowFrom{From: b.entry.End})
		}
	case BatchOutput:
		c.inFlight--
		b := c.batch(ev.Batch)
		if c.fail(ev.Err) {
			return
		}
		b.output = true
		c.cfg.Sizer.Observe(b.records, ev.Groups, ev.ExchangeBytes)
	case BatchSynced:
		c.inFlight--
		b := c.batch(ev.Batch)
		if c.fail(ev.Err) {
			return
		}
		b.synced = true
	case BatchCommitted:
		c.inFlight--
		if b := c.batch(ev.Batch); b != c.batches[0] {
			panic(fmt.Sprintf("loop: batch %d committed before batch %d", ev.Batch, c.batches[0].entry.BatchID))
		}
		if c.fail(ev.Err) {
			return
		}
		b := c.batches[0]
		c.batches = c.batches[1:]
		b.dur["commitOffsets"] = ms(now.Sub(b.syncAt))
		b.dur["triggerExecution"] = ms(now.Sub(b.start))
		emit(ReportProgress{Report: Report{Entry: b.entry, Start: b.start, Latest: b.latest, Records: b.records,
			SinceLast: b.sinceLast, Durations: b.dur}})
		if len(c.batches) > 0 && c.batches[0].parked {
			n := c.batches[0] // its offsets entry went with this commit
			n.log, n.dur["walCommit"] = logDone, ms(now.Sub(b.commitAt))
		}
	case Failed:
		c.fail(ev.Err)
	}
}

// advance issues what the batches in flight and the next plan are ready
// for, or stops once nothing is in flight after a failure or the trigger's
// end.
func (c *Core) advance(now time.Time, emit func(Action)) {
	if c.err == nil {
		for i, b := range c.batches {
			c.advanceBatch(now, i, b, emit)
		}
		for c.phase == idle && !c.done && c.err == nil && c.mayPlan() {
			c.attempt(now, emit)
		}
	}
	if c.inFlight == 0 && (c.err != nil || c.done && len(c.batches) == 0) {
		c.stopped = true
		emit(Stop{Err: c.err})
	}
}

// advanceBatch issues the next step of b, the i-th batch in flight.
func (c *Core) advanceBatch(now time.Time, i int, b *batch, emit func(Action)) {
	if b.log == logPending && i == 0 {
		b.log, b.logAt = logWriting, now
		emit(LogOffsets{Entry: b.entry})
	}
	if b.mapped && b.log == logDone && !b.outputting {
		b.outputting = true
		emit(OutputBatch{Batch: b.entry.BatchID})
	}
	if b.output && !b.syncing {
		b.syncing, b.syncAt = true, now
		emit(SyncBatch{Batch: b.entry.BatchID})
	}
	if b.synced && !b.committing {
		b.committing, b.commitAt = true, now
		a := CommitBatch{Batch: b.entry.BatchID}
		if i+1 < len(c.batches) && c.batches[i+1].log == logPending {
			n := c.batches[i+1] // parked: it goes into the log with this commit
			n.log, n.parked, a.Next = logWriting, true, &n.entry
		}
		emit(a)
	}
}

// mayPlan tells whether the pipeline has room for the next batch: every
// batch is mapped, a re-run has committed, every batch but the last has
// output, and so has the last when it is the run's first batch (its first
// results come sooner when its reduce and sink do not share the CPU with
// the next map) or when a following query caught up with its input (the
// next batch would take only what arrived during this map, and those
// records would wait for this output anyway).
func (c *Core) mayPlan() bool {
	for i, b := range c.batches {
		switch {
		case !b.mapped, b.rerun:
			return false
		case i < len(c.batches)-1 && !b.output:
			return false
		case i == len(c.batches)-1 && !b.output && (b.ordinal == 1 || c.follow && Covers(b.entry.End, b.latest)):
			return false
		}
	}
	return true
}

// attempt begins the next plan: at the trigger's tick, with a fresh listing
// or, when following, the last listing and the followers' offsets.
func (c *Core) attempt(now time.Time, emit func(Action)) {
	if c.cfg.Trigger.Kind == ProcessingTime {
		if c.tick.IsZero() {
			c.tick = now
		}
		if now.Before(c.tick) {
			c.phase = waitTick
			emit(WaitUntil{At: c.tick})
			return
		}
		c.tick = nextTick(c.tick, now, c.cfg.Trigger.Interval)
	}
	c.attemptAt = now
	switch {
	case c.known != nil:
		if !c.listing && now.Sub(c.listedAt) >= RelistInterval {
			c.listing, c.listedAt = true, now
			emit(ListOffsets{})
		}
		c.phase = waitBuffer
		emit(ReadBuffered{})
	case c.fresh != nil:
		l := *c.fresh
		c.fresh = nil
		c.plan(now, l, emit)
	default:
		if !c.listing {
			c.listing = true
			emit(ListOffsets{})
		}
		c.phase = waitListing
	}
}

// plan plans the next batch from listing l, unless the run failed or
// ended meanwhile.
func (c *Core) plan(now time.Time, l listed, emit func(Action)) {
	if c.err != nil || c.done {
		return
	}
	latest := l.latest
	if c.cfg.Trigger.Kind == AvailableNow {
		if c.target == nil {
			c.target = latest
		}
		latest = clampOffsets(latest, c.target)
	}
	p, err := kafkasrc.PlanBatch(kafkasrc.PlanInput{
		Prev: c.end, Starting: c.cfg.Starting, Earliest: l.earliest, Latest: latest,
		MaxOffsetsPerTrigger: c.limit(), MinPartitions: c.cfg.MinPartitions, FailOnDataLoss: c.cfg.FailOnDataLoss,
	})
	if c.fail(err) {
		return
	}
	for _, w := range p.Warnings {
		emit(Warn{Message: w})
	}
	// A query's first batch runs even without data, as Spark's does:
	// "offsets 0" then records where the starting offsets resolved to,
	// and the sink shows batch 0. Later batches need new data.
	if len(p.Ranges) == 0 && c.next > 0 {
		switch c.cfg.Trigger.Kind {
		case Once, AvailableNow:
			c.done = true
		case Default:
			emit(FollowFrom{From: c.end})
			c.phase = waitData
			emit(WaitForData{Until: now.Add(RelistInterval)})
		case ProcessingTime:
			emit(FollowFrom{From: c.end})
		}
		return
	}
	c.started++
	b := &batch{
		entry:  OffsetsEntry{BatchID: c.next, TimestampMs: c.attemptAt.UnixMilli(), Start: startOffsets(p), End: p.End},
		latest: latest, start: c.attemptAt, ordinal: c.started,
		dur: map[string]int64{"latestOffset": ms(now.Sub(c.attemptAt))},
	}
	if !c.lastStart.IsZero() {
		b.sinceLast = c.attemptAt.Sub(c.lastStart)
	}
	c.end, c.next, c.lastStart = p.End, c.next+1, c.attemptAt
	c.batches = append(c.batches, b)
	if c.cfg.Trigger.Kind == AvailableNow {
		// The next plan is clamped to the target anyway, so its listing
		// can overlap this map instead of delaying the next plan.
		c.listing = true
		emit(ListOffsets{})
	}
	if len(c.batches) == 1 {
		b.log, b.logAt = logWriting, now
		emit(LogOffsets{Entry: b.entry})
	}
	c.mapBatch(now, b, p.Ranges, emit)
	if c.cfg.Trigger.Kind == Once {
		c.done = true
	}
}

// limit is the cap on the offsets of the batch to plan: none for Once, a
// fraction of maxOffsetsPerTrigger for the run's first batch, and at most
// what fits the memory.
func (c *Core) limit() int64 {
	if c.cfg.Trigger.Kind == Once {
		return 0
	}
	limit := c.cfg.MaxOffsetsPerTrigger
	if c.started == 0 && limit > 0 {
		limit = max(1, limit/StartupBatchDivisor)
	}
	if fit := c.cfg.Sizer.Limit(); fit > 0 && (limit == 0 || fit < limit) {
		limit = fit
	}
	return limit
}

func (c *Core) mapBatch(now time.Time, b *batch, ranges []kafkasrc.Range, emit func(Action)) {
	b.mapAt = now
	emit(MapBatch{Entry: b.entry, Ranges: ranges, Rerun: b.rerun})
}

// batch is the batch in flight with id, which an event answered.
func (c *Core) batch(id int64) *batch {
	for _, b := range c.batches {
		if b.entry.BatchID == id {
			return b
		}
	}
	panic(fmt.Sprintf("loop: an event about batch %d, which is not in flight", id))
}

// fail records err, if not nil, and reports whether it was. The first
// failure is the run's error; a later one joins it unless it is the first
// one again or the cancellation that follows a stop.
func (c *Core) fail(err error) bool {
	switch {
	case err == nil:
		return false
	case c.err == nil:
		c.err = err
	case errors.Is(c.err, err), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	default:
		c.err = errors.Join(c.err, err)
	}
	return true
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
