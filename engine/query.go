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

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
)

// DefaultShufflePartitions is the number of state partitions of a new
// aggregation query unless ShufflePartitions says otherwise.
const DefaultShufflePartitions = 4

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
		reached := q.mu.committed != nil && loop.Covers(q.mu.committed, target)
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
	q.mu.committed = rt.rec.End
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
			next := rt.rec.LastCommitted + 1
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
		case *planpb.Plan_DropDuplicates:
			n = x.DropDuplicates.Input
		default:
			n = nil
		}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (rt *queryRuntime) describeSource() string {
	return "KafkaV2[Subscribe[" + strings.Join(rt.scan.Subscribe, ",") + "]]"
}
