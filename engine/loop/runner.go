package loop

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// Log is a query's batch log: "offsets N" before batch N writes anything,
// "commit N" once its output and state are durable (DESIGN.md's protocol).
// Local mode appends to the checkpoint's file; a cluster applies Raft
// entries. Run calls its methods from goroutines of its own, one call at a
// time, in the order of the log; the entries are the caller's until the
// call returns.
type Log interface {
	// WriteOffsets appends e and returns once it is durable.
	WriteOffsets(ctx context.Context, e OffsetsEntry) error
	// WriteCommit appends "commit batch" and, when next is not nil, next
	// after it, and returns once both are durable: one write, so that a
	// batch's offsets entry costs no durable write of its own while the
	// batch before commits.
	WriteCommit(ctx context.Context, batch int64, next *OffsetsEntry) error
}

// Mapped is a batch whose map side ran, as Executor.Map returned it: the
// executor's own (its exchange buckets, its rows, its workers' answers).
// Run hands it back to Output and to Reporter.Report and keeps it no longer.
type Mapped interface {
	// Records is the number of records the map side read.
	Records() int64
}

// OutputStats is what a batch's groups took, which sizes the batches after
// it (Sizer).
type OutputStats struct {
	Groups        int64 // groups of an aggregation, output rows without one
	ExchangeBytes int64 // bytes the map side sent to the reduce side
}

// Executor runs a batch's tasks: locally goroutines that read, map,
// exchange in memory and reduce into the state stores; in a cluster, gRPC
// calls to the workers. Run calls each method from a goroutine of its own:
// Map calls never overlap one another, nor do Output and Sync calls, which
// come in batch order (Output N, Sync N, Output N+1...); a Map runs while
// earlier batches output, sync and commit. An error ends the run as is, so
// it should name the batch.
type Executor interface {
	// Map runs the map side of batch e over exactly ranges: reading,
	// narrow operators, partial aggregation. It must have no durable
	// effect: it may run before e is logged, and its batch may never
	// output. rerun says e was planned by an earlier run.
	Map(ctx context.Context, e OffsetsEntry, ranges []kafkasrc.Range, rerun bool) (Mapped, error)
	// Output reduces m into the state, committing it at m's batch
	// version, and writes the batch's output to the sink. m's offsets
	// entry is durable.
	Output(ctx context.Context, m Mapped) (OutputStats, error)
	// Sync makes the state batch committed durable (local: on disk;
	// cluster: on its replicas) before its commit entry is written.
	Sync(ctx context.Context, batch int64) error
}

// Source is the query's source as the loop sees it. Offsets is called from
// goroutines of Run's, one call at a time; Follow, Buffered and Arrived from
// Run's own goroutine.
type Source interface {
	// Offsets lists the log start offsets and the latest offsets of every
	// partition of the subscribed topics.
	Offsets(ctx context.Context) (earliest, latest kafkasrc.Offsets, err error)
	// Follow makes the readers of the partitions fetch ahead from the
	// offsets given, which are the caller's once it returns; it must
	// return quickly.
	Follow(from kafkasrc.Offsets) error
	// Buffered is how far the following readers fetched, partition by
	// partition; it must not call a broker.
	Buffered() kafkasrc.Offsets
	// Arrived receives a value after a follower fetched records.
	Arrived() <-chan struct{}
}

// Reporter receives a report of each committed batch, from Run's own
// goroutine: the next batch's offsets entry waits for it, so it must be
// quick. m is the batch's Mapped, which the reporter may keep.
type Reporter interface {
	Report(r Report, m Mapped)
}

// Parts are the implementations Run runs a Core over.
type Parts struct {
	Log      Log
	Executor Executor
	Source   Source
	Reporter Reporter
	Logger   *slog.Logger // receives the planner's warnings
}

// result is what an action run in the background answers: its event and,
// for a map, the batch mapped.
type result struct {
	ev     Event
	mapped Mapped
}

// Run runs core over parts until it stops, and returns its error: nil when
// its trigger finished, the first failure otherwise (ctx's error once ctx
// ends). Every goroutine it starts has returned when it returns.
func Run(ctx context.Context, core *Core, parts Parts) error {
	var (
		wg      sync.WaitGroup
		results = make(chan result, 8)
		mapped  = map[int64]Mapped{}
		queue   = []Event{Start{}} // events that answer at once
		timer   *time.Timer
		timerC  <-chan time.Time
		arrived <-chan struct{}
		done    = ctx.Done()
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		wg.Wait()
	}()
	background := func(fn func() result) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- fn()
		}()
	}
	wait := func(until time.Time) {
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(time.Until(until))
		timerC, arrived = timer.C, nil
	}
	for {
		var ev Event
		if len(queue) > 0 {
			ev, queue = queue[0], queue[1:]
		} else {
			select {
			case r := <-results:
				ev = r.ev
				if m, ok := ev.(BatchMapped); ok && m.Err == nil {
					mapped[m.Batch] = r.mapped
				}
			case <-timerC:
				ev, timerC, arrived = TimerFired{}, nil, nil
			case <-arrived:
				ev, timerC, arrived = DataArrived{}, nil, nil
			case <-done:
				ev, done = Failed{Err: ctx.Err()}, nil
			}
		}
		for _, a := range core.Step(time.Now(), ev) {
			switch a := a.(type) {
			case ListOffsets:
				background(func() result {
					earliest, latest, err := parts.Source.Offsets(ctx)
					return result{ev: OffsetsListed{Earliest: earliest, Latest: latest, Err: err}}
				})
			case ReadBuffered:
				queue = append(queue, BufferedRead{Buffered: parts.Source.Buffered()})
			case LogOffsets:
				background(func() result {
					return result{ev: OffsetsLogged{Batch: a.Entry.BatchID, Err: parts.Log.WriteOffsets(ctx, a.Entry)}}
				})
			case MapBatch:
				background(func() result {
					m, err := parts.Executor.Map(ctx, a.Entry, a.Ranges, a.Rerun)
					ev := BatchMapped{Batch: a.Entry.BatchID, Err: err}
					if err == nil {
						ev.Records = m.Records()
					}
					return result{ev: ev, mapped: m}
				})
			case OutputBatch:
				m := mapped[a.Batch]
				background(func() result {
					s, err := parts.Executor.Output(ctx, m)
					return result{ev: BatchOutput{Batch: a.Batch, Groups: s.Groups, ExchangeBytes: s.ExchangeBytes, Err: err}}
				})
			case SyncBatch:
				background(func() result {
					return result{ev: BatchSynced{Batch: a.Batch, Err: parts.Executor.Sync(ctx, a.Batch)}}
				})
			case CommitBatch:
				background(func() result {
					return result{ev: BatchCommitted{Batch: a.Batch, Err: parts.Log.WriteCommit(ctx, a.Batch, a.Next)}}
				})
			case FollowFrom:
				if err := parts.Source.Follow(a.From); err != nil {
					queue = append(queue, Failed{Err: err})
				}
			case WaitUntil:
				wait(a.At)
			case WaitForData:
				wait(a.Until)
				arrived = parts.Source.Arrived()
			case Warn:
				if parts.Logger != nil {
					parts.Logger.Warn(a.Message)
				}
			case ReportProgress:
				id := a.Report.Entry.BatchID
				parts.Reporter.Report(a.Report, mapped[id])
				delete(mapped, id)
			case Stop:
				return a.Err
			}
		}
	}
}
