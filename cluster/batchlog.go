package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

// OffsetsEntry is the "offsets N" entry of a batch log: batch N's offset
// ranges, logged before the batch runs.
type OffsetsEntry struct {
	BatchID     int64
	TimestampMs int64
	Start, End  kafkasrc.Offsets
}

func (e OffsetsEntry) proto() *clusterpb.BatchLogEntry {
	return &clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Offsets{Offsets: &clusterpb.OffsetsEntry{
		BatchId: e.BatchID, BatchTimestampMs: e.TimestampMs, Start: OffsetsToProto(e.Start), End: OffsetsToProto(e.End),
	}}}
}

func offsetsEntryOf(o *clusterpb.OffsetsEntry) *OffsetsEntry {
	return &OffsetsEntry{BatchID: o.BatchId, TimestampMs: o.BatchTimestampMs, Start: OffsetsFromProto(o.Start), End: OffsetsFromProto(o.End)}
}

func commitEntry(id int64) *clusterpb.BatchLogEntry {
	return &clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Commit{Commit: id}}
}

// Recovery is what a job's new driver run must do first, read from the
// batch log.
type Recovery struct {
	// LastCommitted is the last batch whose commit is logged; -1 for none.
	LastCommitted int64
	// Rerun is the batch planned after it that never committed, to run
	// again with the same ranges; nil for none.
	Rerun *OffsetsEntry
	// End is the end offsets of LastCommitted: where the next batch after
	// it (or Rerun) starts; nil before the first commit.
	End kafkasrc.Offsets
}

// BatchLog is a job's batch log in the Raft log: the cluster's
// counterpart of a local checkpoint's batch log (package engine), with the
// same entries ("offsets N", "commit N") checked by the same rules. Each
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

// WriteOffsets logs "offsets N".
func (l *BatchLog) WriteOffsets(ctx context.Context, e OffsetsEntry) error {
	return l.append(ctx, e.proto())
}

// WriteCommit logs "commit id".
func (l *BatchLog) WriteCommit(ctx context.Context, id int64) error {
	return l.append(ctx, commitEntry(id))
}

// WriteCommitAndOffsets logs "commit id" and the next batch's offsets
// entry e in one command: both or neither.
func (l *BatchLog) WriteCommitAndOffsets(ctx context.Context, id int64, e OffsetsEntry) error {
	return l.append(ctx, commitEntry(id), e.proto())
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
func (l *BatchLog) Recover() (Recovery, error) {
	j, ok := l.fsm.Job(l.job)
	if !ok {
		return Recovery{}, fmt.Errorf("%w %q", ErrUnknownJob, l.job)
	}
	return recoverBatchLog(j.BatchLog), nil
}

// recoverBatchLog reads a batch log the state machine checked.
func recoverBatchLog(log []*clusterpb.BatchLogEntry) Recovery {
	r := Recovery{LastCommitted: -1}
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
