package engine

import (
	"fmt"
	"io"
	"strings"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/operators"
)

// PlannedSink returns the sink of a query Plan planned, for its driver in
// another process (a cluster's leader) to write each batch's output with:
// console or jsonl, with the sink options of opts (QueryPlan.Options),
// checked as Start checks them, showing timestamps in the session time
// zone opts["timezone"] names (UTC when none). The console's output and a jsonl sink's
// path "-" go to stdout; another jsonl path is a file on the driver's
// host. A JSONLSink with a path holds the file open until its Close.
func PlannedSink(opts map[string]string, stdout io.Writer) (Sink, error) {
	format := strings.ToLower(opts["format"])
	if format == "memory" {
		return nil, fmt.Errorf("%w: the memory sink runs in the query's process only: use format console or jsonl", ErrAnalysis)
	}
	w := &DataStreamWriter{df: &DataFrame{s: NewSession(WithTimeZone(opts["timezone"]))}, format: format, opts: options{}}
	for _, name := range sinkOptions[format] {
		if v, ok := opts[strings.ToLower(name)]; ok {
			w.opts.set(name, v)
		}
	}
	return w.resolveSink(stdout)
}

// NewBatch returns batch id's output for a Sink: rows of schema in mode,
// each calling fn with every row, which fn borrows for the call.
func NewBatch(id int64, mode OutputMode, schema operators.Schema, each func(fn operators.Emit) error) *Batch {
	return &Batch{ID: id, Mode: mode, Schema: schema, each: each}
}

// Schedule is the trigger as the batch loop runs it, for a driver in
// another process: a query Plan planned keeps its trigger in
// QueryPlan.Options["trigger"], which ParseTrigger reads.
func (t Trigger) Schedule() loop.Trigger { return t.sched }
