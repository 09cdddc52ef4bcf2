package engine

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/proto/planpb"
)

// OutputMode says which rows each batch writes (Spark's outputMode).
type OutputMode = planpb.OutputMode

// Output modes: Append writes new final rows, Complete the whole result
// table, Update the rows changed in the batch.
const (
	Append   = planpb.OutputMode_APPEND
	Complete = planpb.OutputMode_COMPLETE
	Update   = planpb.OutputMode_UPDATE
)

// ParseOutputMode parses "append", "complete" or "update".
func ParseOutputMode(s string) (OutputMode, error) {
	switch strings.ToLower(s) {
	case "append":
		return Append, nil
	case "complete":
		return Complete, nil
	case "update":
		return Update, nil
	}
	return 0, fmt.Errorf("%w: output mode %q: use append, complete or update", ErrAnalysis, s)
}

// Trigger decides when batches run (Spark's Trigger); the zero value is
// Spark's default trigger, each batch as soon as the last has ended. With
// every trigger, a new query's first batch runs even when there is no data
// (the sink then shows batch 0 empty, as Spark's does); later batches run
// only for new data.
type Trigger struct {
	sched loop.Trigger
}

// follows tells whether a query with the trigger runs on after it caught
// up: its source's readers then follow the partitions between batches
// (kafkasrc.Source.Follow).
func (t Trigger) follows() bool { return t.sched.Follows() }

// MinTriggerInterval is the shortest processing-time interval a query
// accepts: below it a trigger would plan batches faster than Kafka can
// answer a listing, and only spin the CPU.
const MinTriggerInterval = time.Millisecond

// ProcessingTime runs a batch every interval (a batch that overruns is
// followed at once by the next); no batch runs while no data arrives. Start
// refuses an interval below MinTriggerInterval.
func ProcessingTime(interval time.Duration) Trigger {
	return Trigger{loop.Trigger{Kind: loop.ProcessingTime, Interval: interval}}
}

// check refuses a processing-time interval below MinTriggerInterval.
func (t Trigger) check() error {
	if t.sched.Kind == loop.ProcessingTime && t.sched.Interval < MinTriggerInterval {
		return fmt.Errorf("%w: trigger interval %s is below the minimum of %s: use a longer interval, or the default trigger to run each batch as soon as the last ends",
			ErrAnalysis, t.sched.Interval, MinTriggerInterval)
	}
	return nil
}

// Once runs one batch of everything available, ignoring
// maxOffsetsPerTrigger, then stops.
func Once() Trigger { return Trigger{loop.Trigger{Kind: loop.Once}} }

// AvailableNow processes everything available at start, in batches capped
// by maxOffsetsPerTrigger, then stops.
func AvailableNow() Trigger { return Trigger{loop.Trigger{Kind: loop.AvailableNow}} }

// ParseTrigger parses "once", "available-now" (or "availableNow"),
// "default", or a processing-time interval such as "1s" or "500ms", at
// least MinTriggerInterval.
func ParseTrigger(s string) (Trigger, error) {
	switch strings.ToLower(s) {
	case "", "default":
		return Trigger{}, nil
	case "once":
		return Once(), nil
	case "available-now", "availablenow":
		return AvailableNow(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Trigger{}, fmt.Errorf("%w: trigger %q: use an interval like 1s or 500ms, once, available-now or default", ErrAnalysis, s)
	}
	t := ProcessingTime(d)
	return t, t.check()
}

// spec is the trigger as ParseTrigger reads it.
func (t Trigger) spec() string {
	switch t.sched.Kind {
	case loop.ProcessingTime:
		return t.sched.Interval.String()
	case loop.Once:
		return "once"
	case loop.AvailableNow:
		return "available-now"
	}
	return "default"
}

func (t Trigger) String() string {
	switch t.sched.Kind {
	case loop.ProcessingTime:
		return "ProcessingTime(" + t.sched.Interval.String() + ")"
	case loop.Once:
		return "Once"
	case loop.AvailableNow:
		return "AvailableNow"
	}
	return "Default"
}

// DataStreamWriter configures how a DataFrame's results are written
// (Spark's writeStream).
type DataStreamWriter struct {
	df         *DataFrame
	mode       OutputMode
	modeSet    bool
	trigger    Trigger
	format     string
	opts       options
	name       string
	sink       Sink
	listeners  []func(Progress)
	shufflePar int
	memory     int64
	err        error
}

// WriteStream starts describing the output of a streaming query.
func (df *DataFrame) WriteStream() *DataStreamWriter {
	return &DataStreamWriter{df: df, format: "console", opts: options{}}
}

// OutputMode sets the output mode (default: append).
func (w *DataStreamWriter) OutputMode(m OutputMode) *DataStreamWriter {
	w.mode, w.modeSet = m, true
	return w
}

// Trigger sets the trigger (default: next batch as soon as the last ends).
func (w *DataStreamWriter) Trigger(t Trigger) *DataStreamWriter { w.trigger = t; return w }

// Format picks a built-in sink: "console" (default; options numRows,
// truncate), "memory" (needs QueryName; read with Session.Table) or "jsonl"
// (option path; "-" is standard output).
func (w *DataStreamWriter) Format(f string) *DataStreamWriter { w.format = f; return w }

// Option sets a sink or query option: "checkpointLocation", the
// checkpoint directory, or an option of the sink's Format. Names match in
// any case, as in Spark; Start refuses an unknown one, listing the known.
func (w *DataStreamWriter) Option(key, value string) *DataStreamWriter {
	w.opts.set(key, value)
	return w
}

// Options sets several options, as Option does.
func (w *DataStreamWriter) Options(opts map[string]string) *DataStreamWriter {
	for k, v := range opts {
		w.opts.set(k, v)
	}
	return w
}

// QueryName names the query (the memory sink's table name; stored in the checkpoint).
func (w *DataStreamWriter) QueryName(name string) *DataStreamWriter { w.name = name; return w }

// ShufflePartitions sets the number of state partitions P of a new query
// (default 4; Spark's spark.sql.shuffle.partitions). A restarted query keeps
// the P stored in its checkpoint.
func (w *DataStreamWriter) ShufflePartitions(p int) *DataStreamWriter {
	w.shufflePar = p
	return w
}

// Memory sets the query's memory budget in bytes (default DefaultMemory,
// 512 MiB; at least MinMemory), as spark.driver.memory sizes a local
// Spark job. The budget is split among the state store (its in-memory
// tables, Pebble's memtables and cache), the records fetched ahead, the
// batches in flight and the map side's partial aggregation, and the Go
// runtime's soft memory limit (debug.SetMemoryLimit) is set to its Go
// part while the query runs, unless the GOMEMLIMIT environment variable
// sets one. Batches are capped so that their groups fit: the cap is
// learnt from the groups per record of the batches before (see the
// README's Memory section for what it bounds and what it does not).
// Trigger Once reads everything in one batch, as in Spark, whatever the
// budget.
func (w *DataStreamWriter) Memory(bytes int64) *DataStreamWriter {
	w.memory = bytes
	return w
}

// ForeachBatch writes each batch with fn (Spark's foreachBatch). fn may be
// called again with the same batch id after a failure; make it idempotent.
func (w *DataStreamWriter) ForeachBatch(fn func(ctx context.Context, batchID int64, rows []Row) error) *DataStreamWriter {
	w.sink = SinkFunc(func(ctx context.Context, b *Batch) error {
		rows, err := b.Collect()
		if err != nil {
			return err
		}
		return fn(ctx, b.ID, rows)
	})
	return w
}

// To writes to a Go Sink.
func (w *DataStreamWriter) To(s Sink) *DataStreamWriter { w.sink = s; return w }

// OnProgress registers fn for this query's per-batch progress.
func (w *DataStreamWriter) OnProgress(fn func(Progress)) *DataStreamWriter {
	w.listeners = append(w.listeners, fn)
	return w
}

// sinkOptions are the options of each Format, besides the query's
// checkpointLocation.
var sinkOptions = map[string][]string{"console": {"numRows", "truncate"}, "memory": nil, "jsonl": {"path"}}

// resolveSink builds the sink from Format and options, once the options
// are checked.
func (w *DataStreamWriter) resolveSink(stdout io.Writer) (Sink, error) {
	format := strings.ToLower(w.format)
	what, known := "a Go sink (ForeachBatch, To)", []string{"checkpointLocation"}
	if w.sink == nil {
		opts, ok := sinkOptions[format]
		if !ok {
			return nil, fmt.Errorf("%w: sink format %q: use console, memory or jsonl, or ForeachBatch / To for Go sinks", ErrAnalysis, w.format)
		}
		what, known = "the "+format+" sink", append(known, opts...)
	}
	if err := w.opts.check(what, known); err != nil {
		return nil, err
	}
	if w.sink != nil {
		return w.sink, nil
	}
	switch format {
	case "console":
		c := &ConsoleSink{W: stdout, NumRows: 20, Truncate: 20, TimeZone: w.df.s.zone()}
		if v, ok := w.opts.get("numRows"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: console option numRows=%q must be a number >= 0", ErrAnalysis, v)
			}
			c.NumRows = n
		}
		if v, ok := w.opts.get("truncate"); ok {
			switch b, err := strconv.ParseBool(v); {
			case err == nil && b:
				c.Truncate = 20
			case err == nil:
				c.Truncate = 0
			default:
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("%w: console option truncate=%q must be true, false or a width", ErrAnalysis, v)
				}
				c.Truncate = n
			}
		}
		return c, nil
	case "memory":
		if w.name == "" {
			return nil, fmt.Errorf("%w: the memory sink needs a QueryName (the table name)", ErrAnalysis)
		}
		return w.df.s.memorySink(w.name, w.mode), nil
	}
	path, _ := w.opts.get("path") // jsonl
	if path == "" {
		return nil, fmt.Errorf("%w: the jsonl sink needs option path (a file, or - for standard output)", ErrAnalysis)
	}
	if path == "-" {
		return &JSONLSink{W: stdout, TimeZone: w.df.s.zone()}, nil
	}
	return &JSONLSink{Path: path, TimeZone: w.df.s.zone()}, nil
}

// validate applies Spark's output-mode rules.
func (w *DataStreamWriter) validate() error {
	df := w.df
	if df.err != nil {
		return df.err
	}
	if !w.modeSet {
		w.mode = Append
	}
	switch {
	case w.mode == Complete && !df.agg:
		return fmt.Errorf("%w: complete output mode needs an aggregation (Spark: \"Complete output mode not supported when there are no streaming aggregations\"); use append", ErrAnalysis)
	case w.mode == Append && df.agg:
		return fmt.Errorf("%w: append output mode with an aggregation needs a watermark, which gostream does not support yet; use complete or update", ErrAnalysis)
	case w.shufflePar < 0 || w.shufflePar > 4096:
		return fmt.Errorf("%w: shuffle partitions %d: use 1 to 4096", ErrAnalysis, w.shufflePar)
	case w.memory != 0:
		return checkMemory(w.memory)
	}
	return w.trigger.check()
}
