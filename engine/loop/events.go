package loop

import (
	"cmp"
	"slices"
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// OffsetsEntry is the "offsets N" entry of a batch log: batch N's start and
// end offsets, logged before anything of the batch is written. Its JSON is
// the entry's form in a local checkpoint.
type OffsetsEntry struct {
	BatchID     int64            `json:"batchId"`
	TimestampMs int64            `json:"batchTimestampMs"`
	Start       kafkasrc.Offsets `json:"start"`
	End         kafkasrc.Offsets `json:"end"`
}

// Ranges are the batch's offset ranges, one per partition that has records
// in it, as its map tasks read them, by topic then partition: the order
// of a planned batch's ranges (kafkasrc.Plan), so a re-run emits a narrow
// plan's rows in the order of its first run.
func (e OffsetsEntry) Ranges() []kafkasrc.Range {
	var rs []kafkasrc.Range
	for t, parts := range e.End {
		for p, until := range parts {
			from, ok := e.Start.Get(t, p)
			if ok && from < until {
				rs = append(rs, kafkasrc.Range{Topic: t, Partition: p, From: from, Until: until})
			}
		}
	}
	slices.SortFunc(rs, func(a, b kafkasrc.Range) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return rs
}

// Recovery is what the batch log holds when a run starts.
type Recovery struct {
	// LastCommitted is the last batch with a commit entry, -1 if none.
	LastCommitted int64
	// Rerun is the offsets entry of a batch planned and never committed: the
	// run starts by running it again with the same ranges.
	Rerun *OffsetsEntry
	// End holds the end offsets of the last committed batch, where the next
	// batch planned starts; nil before the first batch.
	End kafkasrc.Offsets
}

// An Event is something that happened, given to Core.Step with the time it
// was seen. Each action that runs in the background (ListOffsets,
// LogOffsets, MapBatch, OutputBatch, SyncBatch, CommitBatch, ReadBuffered)
// is answered by exactly one event: its result, with Err set if it failed.
type Event interface{ event() }

// Start begins the run; it is the first event.
type Start struct{}

// OffsetsListed answers ListOffsets: the log start offsets and the latest
// offsets of every partition of the subscribed topics.
type OffsetsListed struct {
	Earliest, Latest kafkasrc.Offsets
	Err              error
}

// BufferedRead answers ReadBuffered: how far the following readers fetched
// ahead (kafkasrc.Source.Buffered).
type BufferedRead struct {
	Buffered kafkasrc.Offsets
}

// TimerFired says the time of the last WaitUntil or WaitForData came.
type TimerFired struct{}

// DataArrived says a following reader fetched records while WaitForData
// waited.
type DataArrived struct{}

// OffsetsLogged answers LogOffsets.
type OffsetsLogged struct {
	Batch int64
	Err   error
}

// BatchMapped answers MapBatch.
type BatchMapped struct {
	Batch   int64
	Records int64 // records read
	Err     error
}

// BatchOutput answers OutputBatch, with what the batch's groups took, which
// sizes the batches after it (see Sizer).
type BatchOutput struct {
	Batch         int64
	Groups        int64 // groups of an aggregation, output rows without one
	ExchangeBytes int64 // bytes its map side sent to the reduce side
	Err           error
}

// BatchSynced answers SyncBatch.
type BatchSynced struct {
	Batch int64
	Err   error
}

// BatchCommitted answers CommitBatch: "commit N", and the next batch's
// offsets entry if the action carried it, are durable, or Err says why not.
type BatchCommitted struct {
	Batch int64
	Err   error
}

// Failed is a failure outside the actions that answer with an event: the
// run's context ended, following failed, a report failed.
type Failed struct{ Err error }

func (Start) event()          {}
func (OffsetsListed) event()  {}
func (BufferedRead) event()   {}
func (TimerFired) event()     {}
func (DataArrived) event()    {}
func (OffsetsLogged) event()  {}
func (BatchMapped) event()    {}
func (BatchOutput) event()    {}
func (BatchSynced) event()    {}
func (BatchCommitted) event() {}
func (Failed) event()         {}

// An Action is something Core.Step asks its caller to do.
type Action interface{ action() }

// ListOffsets lists the earliest and latest offsets of the subscribed
// topics; answered by OffsetsListed.
type ListOffsets struct{}

// ReadBuffered asks how far the following readers fetched ahead; answered
// by BufferedRead at once.
type ReadBuffered struct{}

// LogOffsets appends the batch's offsets entry to the batch log, durably;
// answered by OffsetsLogged.
type LogOffsets struct{ Entry OffsetsEntry }

// MapBatch runs the map side of a batch whose offsets entry is logged or
// being logged: it reads exactly Ranges and must have no durable effect.
// Answered by BatchMapped.
type MapBatch struct {
	Entry  OffsetsEntry
	Ranges []kafkasrc.Range
	Rerun  bool // the batch was planned by an earlier run
}

// OutputBatch reduces a mapped batch into the state, committing it at the
// batch's version, and writes its output to the sink. Its offsets entry is
// durable. Answered by BatchOutput.
type OutputBatch struct{ Batch int64 }

// SyncBatch makes the state the batch committed durable (local: synced to
// disk; cluster: on its replicas). Answered by BatchSynced.
type SyncBatch struct{ Batch int64 }

// CommitBatch appends "commit Batch" to the batch log and, when Next is not
// nil, the next batch's offsets entry after it, in one durable write.
// Answered by BatchCommitted.
type CommitBatch struct {
	Batch int64
	Next  *OffsetsEntry
}

// FollowFrom makes the source's readers fetch ahead from these offsets
// (kafkasrc.Source.Follow). It is quick and answers nothing; a failure is
// given back as Failed.
type FollowFrom struct{ From kafkasrc.Offsets }

// WaitUntil asks for TimerFired at At (a processing-time trigger's tick).
// A later wait replaces it.
type WaitUntil struct{ At time.Time }

// WaitForData asks for DataArrived once a following reader fetched records,
// or TimerFired at Until, whichever comes first. A later wait replaces it.
type WaitForData struct{ Until time.Time }

// Warn reports a warning of the batch planner (data loss skipped).
type Warn struct{ Message string }

// ReportProgress reports a committed batch.
type ReportProgress struct{ Report Report }

// Stop ends the run: nothing is in flight any more. Err is nil when the
// trigger finished.
type Stop struct{ Err error }

func (ListOffsets) action()    {}
func (ReadBuffered) action()   {}
func (LogOffsets) action()     {}
func (MapBatch) action()       {}
func (OutputBatch) action()    {}
func (SyncBatch) action()      {}
func (CommitBatch) action()    {}
func (FollowFrom) action()     {}
func (WaitUntil) action()      {}
func (WaitForData) action()    {}
func (Warn) action()           {}
func (ReportProgress) action() {}
func (Stop) action()           {}

// Report is what the core knows of a committed batch, for its progress
// report.
type Report struct {
	Entry   OffsetsEntry
	Start   time.Time        // when its trigger fired
	Latest  kafkasrc.Offsets // the latest offsets its plan saw; nil for a re-run
	Records int64            // records read
	// SinceLast is the time since the previous batch's trigger fired; 0 for
	// the first batch a run planned and for a re-run.
	SinceLast time.Duration
	// Durations holds the phases the core saw, in milliseconds, under
	// Spark's names: latestOffset (listing), map, walCommit (its offsets
	// entry), commitOffsets (sync and commit entry) and triggerExecution
	// (from its trigger to its commit).
	Durations map[string]int64
}
