package engine

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/planpb"
)

// QueryPlan is a query as Start would run it, validated, for a driver in
// another process (a cluster's leader) to run.
type QueryPlan struct {
	// Query is the plan: name, operators, output mode and shuffle
	// partitions (0 when ShufflePartitions was not set).
	Query *planpb.Query
	// Options are the query's other settings, lower-case keys: "trigger"
	// (as ParseTrigger reads it), "memory" (bytes, when set), "format"
	// (console or jsonl), the sink's options ("numrows", "truncate",
	// "path"; path "-" is the submitter's standard output) and "timezone"
	// (the session time zone the sink shows timestamps in, when set).
	Options map[string]string
	// Fingerprint identifies what the query's offsets and state depend on:
	// its operators and topics, not tunables such as rate limits or
	// starting offsets. Two plans with the same fingerprint may share a
	// batch log and state.
	Fingerprint string
}

// Plan returns the query Start would run, checked as Start checks it, with
// this binary's functions, without starting it or opening a checkpoint. A
// sink in this process cannot run elsewhere: Plan refuses a Go sink (To,
// ForeachBatch) and the memory sink.
func (w *DataStreamWriter) Plan() (*QueryPlan, error) {
	if err := w.validate(); err != nil {
		return nil, err
	}
	if w.sink != nil || strings.EqualFold(w.format, "memory") {
		return nil, fmt.Errorf("%w: a Go sink or the memory sink runs in this process only: use format console or jsonl to run the query elsewhere", ErrAnalysis)
	}
	if _, err := w.resolveSink(io.Discard); err != nil {
		return nil, err
	}
	q := w.query()
	q.ShufflePartitions = int32(w.shufflePar)
	if err := CheckPlan(q); err != nil {
		return nil, err
	}
	opts := map[string]string{"trigger": w.trigger.spec(), "format": strings.ToLower(w.format)}
	for k, o := range w.opts {
		opts[k] = o.value
	}
	if w.memory != 0 {
		opts["memory"] = strconv.FormatInt(w.memory, 10)
	}
	if z := w.df.s.timeZone; z != "" {
		opts["timezone"] = z
	}
	return &QueryPlan{Query: q, Options: opts, Fingerprint: fingerprint(q.Plan)}, nil
}

// query is the plan Start runs.
func (w *DataStreamWriter) query() *planpb.Query {
	name := w.name
	if name == "" {
		name = "query"
	}
	return &planpb.Query{Name: name, Plan: w.df.plan, OutputMode: w.mode}
}

// CheckPlan checks that this binary can run q: its operators and
// expressions compile, every function it calls is built in or registered
// here (operators.RegisterFunc), and its starting offsets parse. A
// cluster's members check a submitted plan with it.
func CheckPlan(q *planpb.Query) error {
	c, err := task.Compile(q.GetPlan())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAnalysis, err)
	}
	if _, err := kafkasrc.ParseStartingOffsets(c.Scan.StartingOffsets); err != nil {
		return fmt.Errorf("%w: startingOffsets: %w", ErrAnalysis, err)
	}
	return nil
}
