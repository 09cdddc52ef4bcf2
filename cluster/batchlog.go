package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

func offsetsEntry(e loop.OffsetsEntry) *clusterpb.BatchLogEntry {
	return &clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Offsets{Offsets: &clusterpb.OffsetsEntry{
		BatchId: e.BatchID, BatchTimestampMs: e.TimestampMs, Start: OffsetsToProto(e.Start), End: OffsetsToProto(e.End),
	}}}
}

func offsetsEntryOf(o *clusterpb.OffsetsEntry) *loop.OffsetsEntry {
	return &loop.OffsetsEntry{BatchID: o.BatchId, TimestampMs: o.BatchTimestampMs, Start: OffsetsFromProto(o.Start), End: OffsetsFromProto(o.End)}
}

// BatchLog is a job's batch log in the Raft log: the cluster's
// counterpart of a local checkpoint's batch log (package engine), with the
// same entries ("offsets N", "commit N") checked by the same rules; it is
// the loop.Log of a job's driver run on the leader. Each
// append is one Raft command logged in the term of the driver run that
// owns the BatchLog: once the leadership moved on, even to this member
// again, its appends are refused (ErrStaleTerm), so a deposed driver never
// writes. An append returns once the command is applied on this member;
// an entry already in the log unchanged is a no-op, so an append may be
// retried. Safe for concurrent use, though a driver appends in order.
type BatchLog struct {
	raft    *raft.Raft
	fsm     *FSM
	job     string
	term    uint64
	timeout time.Duration
}

var _ loop.Log = (*BatchLog)(nil)

// WriteOffsets logs "offsets N".
func (l *BatchLog) WriteOffsets(ctx context.Context, e loop.OffsetsEntry) error {
	return l.append(ctx, offsetsEntry(e))
}

// WriteCommit logs "commit batch" and, when next is not nil, next after
// it, in one command: both or neither.
func (l *BatchLog) WriteCommit(ctx context.Context, batch int64, next *loop.OffsetsEntry) error {
	es := []*clusterpb.BatchLogEntry{{Kind: &clusterpb.BatchLogEntry_Commit{Commit: batch}}}
	if next != nil {
		es = append(es, offsetsEntry(*next))
	}
	return l.append(ctx, es...)
}

func (l *BatchLog) append(ctx context.Context, es ...*clusterpb.BatchLogEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeout := l.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	c := &clusterpb.Command{Kind: &clusterpb.Command_AppendBatchLog{AppendBatchLog: &clusterpb.AppendBatchLog{Job: l.job, Entries: es}}}
	if _, err := applyInTerm(l.raft, c, l.term, timeout); err != nil {
		if errNotLeader(err) {
			err = fmt.Errorf("%w: %w", ErrNoLeader, err)
		}
		return fmt.Errorf("cluster: job %q, batch log of term %d: %w", l.job, l.term, err)
	}
	return nil
}

// Recover reads the batch log as this member applied it: the last
// committed batch, its end offsets, and the batch to re-run, if the last
// planned batch never committed.
func (l *BatchLog) Recover() (loop.Recovery, error) {
	j, ok := l.fsm.Job(l.job)
	if !ok {
		return loop.Recovery{}, fmt.Errorf("%w %q", ErrUnknownJob, l.job)
	}
	return recoverBatchLog(j.BatchLog), nil
}

// recoverBatchLog reads a batch log the state machine checked.
func recoverBatchLog(log []*clusterpb.BatchLogEntry) loop.Recovery {
	r := loop.Recovery{LastCommitted: -1}
	var planned []*clusterpb.OffsetsEntry // the last two planned batches, oldest first
	for _, e := range log {
		if o := e.GetOffsets(); o != nil {
			planned = append(planned[max(0, len(planned)-1):], o)
		} else {
			r.LastCommitted = e.GetCommit()
		}
	}
	if len(planned) == 0 {
		return r
	}
	last := planned[len(planned)-1]
	switch {
	case last.BatchId == r.LastCommitted:
		r.End = OffsetsFromProto(last.End)
	case len(planned) > 1:
		r.Rerun, r.End = offsetsEntryOf(last), OffsetsFromProto(planned[0].End)
	default:
		r.Rerun = offsetsEntryOf(last)
	}
	return r
}
