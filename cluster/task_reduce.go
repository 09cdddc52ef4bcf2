package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stateServer serves the StatePartitions service of a Node: Reduce on the
// partitions it owns, Replicate on those it stands by for.
// A failing or panicking request answers an error naming the job, batch,
// partition and worker; the worker goes on.
type stateServer struct {
	clusterpb.UnimplementedStatePartitionsServer
	name    string // this worker's
	fence   shuffleFence
	inbox   *Inbox
	states  *jobStates
	clients *clientPool
	addr    func(member string) string // a member's address, "" if none
	log     *slog.Logger
}

// newStateServer returns the StatePartitions service of n.
func newStateServer(n *Node) *stateServer {
	return &stateServer{name: n.cfg.Name, fence: n, inbox: n.inbox, states: n.states, clients: n.clients, log: n.log, addr: n.memberAddr}
}

// Reduce reduces one batch into a state partition this worker owns: it
// checks the fencing, takes one complete attempt of each map task's
// partials from the Inbox, merges them into the partition's state through
// the engine's reduce task, checks the fencing again right before the
// state commits at version batch, answers the changed groups (if asked;
// a dropDuplicates' new rows), sends the batch's changelog record to the
// partition's standby (the whole partition when the standby is behind:
// replicate) and, while the standby takes it, answers every group the
// partition holds (if asked: complete mode's rows), then waits until the
// standby holds the batch and answers the counts (done): a driver uses
// the groups only once done came. A partition at version batch already
// is not merged again: the batch's groups come from the state, and are
// sent to the standby again in case it lacks them.
func (s *stateServer) Reduce(req *clusterpb.ReduceRequest, stream grpc.ServerStreamingServer[clusterpb.ReduceResponse]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r, "reduce", req.Job, req.Batch, req.Partition)
		}
	}()
	done, err := s.reduce(stream.Context(), req, stream.Send)
	if err != nil {
		return s.stateError("reduce", req.Job, req.Batch, req.Partition, err)
	}
	return stream.Send(&clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Done{Done: done}})
}

// reduce runs a Reduce request, sends its answer's messages before done
// with send, and returns done. It stops waiting (for its partials, or for
// the standby) once the request's assignment epoch has passed on this
// worker: its driver may be cut off, unable to cancel it, while the next
// epoch's map tasks push the batch to this partition again, which a
// reduce holding it refuses.
func (s *stateServer) reduce(ctx context.Context, req *clusterpb.ReduceRequest, send func(*clusterpb.ReduceResponse) error) (_ *clusterpb.ReduceDone, err error) {
	r := fenced{what: "a reduce", header: req.Header, job: req.Job, batch: req.Batch, partition: req.Partition, role: owner}
	job, sp, err := checkFence(s.fence, r)
	if err != nil {
		return nil, err
	}
	ctx, stop := untilEpochPasses(ctx, s.fence, req.Job, req.Header.GetEpoch())
	defer stop()
	defer func() {
		if cause := stopCause(ctx); err != nil && cause != nil {
			err = cause
			s.log.Info("cluster: a reduce stopped: its assignment epoch passed while it ran", "job", req.Job, "batch", req.Batch,
				"partition", req.Partition, "epoch", req.Header.GetEpoch())
		}
	}()
	s.states.release(job, s.name)
	if req.Tasks < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%d map tasks", req.Tasks)
	}
	reducer, err := s.states.reducer(job)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	// The partials are taken before the partition is. The driver asks for
	// a reduce only once every map task's pushes to this worker were
	// taken, so one missing now was taken by a process of this worker that
	// is gone (killed and started again before the leader held it down):
	// the reduce fails at once, and the batch is mapped again, instead of
	// waiting for partials that will never come.
	partials, err := s.inbox.take(ctx, partKey{job: req.Job, batch: req.Batch, partition: req.Partition}, int(req.Tasks), req.Header.GetEpoch(), false)
	if err != nil {
		return nil, err
	}
	defer func() {
		partials.Release()
		// This batch's reduce is over, whatever came of it: a later run
		// starts afresh. Earlier batches are committed or planned again.
		s.inbox.Forget(req.Job, req.Batch, req.Partition)
		s.inbox.Discard(req.Job, req.Batch)
	}()
	p, err := s.states.partition(job, sp.FirstKeyGroup)
	if err != nil {
		return nil, err
	}
	failed := true // also when a panic unwinds
	defer func() { p.unlock(failed, s.log) }()
	if err := checkVersion(p.st.Version(), req.Batch); err != nil {
		failed = false
		return nil, err
	}
	opts := task.ReduceOptions{
		Record:       true,
		BeforeCommit: func() error { _, _, err := checkFence(s.fence, r); return err },
	}
	var res task.Reduced
	var rows operators.RowBuffer
	if reducer.dedup != nil {
		opts.Rows = &rows
		res, err = reducer.dedup.Reduce(p.st, req.Batch, partials.Blocks, opts)
	} else {
		res, err = reducer.agg.Reduce(p.st, req.Batch, partials.Blocks, opts)
	}
	if err != nil {
		return nil, err
	}
	recs, err := recordMessages(res.Record)
	if err != nil {
		return nil, err
	}
	if req.Changes {
		if err := sendChanges(send, reducer, rows.Rows(), recs); err != nil {
			failed = false // the stream failed, not the store
			return nil, err
		}
	}
	done := &clusterpb.ReduceDone{Groups: res.Groups, Rows: p.st.Len(), Applied: res.Applied, Standby: sp.Standby}
	// The rows go out while the standby takes the batch: a full copy of
	// the partition, if the standby needs one, waits for their scan (a
	// store's scans run one at a time).
	rctx, cancel := context.WithCancel(ctx) // the replication's: ends it when the rows fail
	defer cancel()
	scanned := make(chan struct{})
	var replicated error
	var wg sync.WaitGroup
	if sp.Standby != "" {
		wg.Go(func() {
			replicated = s.replicateRetrying(rctx, req.Header, req.Job, req.Batch, req.Partition, sp.Standby, recs, scanAfter{Store: p.st, scanned: scanned})
		})
	}
	var sendErr error
	if req.Rows {
		err = scanRecords(p.st, func(rec []byte) error {
			sendErr = send(&clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Groups{Groups: rec}})
			return sendErr
		})
	}
	close(scanned)
	if err != nil {
		cancel()
	}
	wg.Wait()
	switch {
	case err != nil:
		failed = sendErr == nil // the store failed, not the stream
		return nil, err
	case replicated != nil:
		failed = false // the partition holds the batch; a re-run sends it again
		return nil, replicated
	}
	failed = false
	return done, nil
}

// sendChanges sends the groups a batch changed with send: recs, records of
// the groups, or a dropDuplicates' new rows in messages of about
// recordChunk bytes.
func sendChanges(send func(*clusterpb.ReduceResponse) error, reducer *jobReducer, rows []operators.Row, recs [][]byte) error {
	if reducer.dedup == nil {
		for _, rec := range recs {
			if err := send(&clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Changes{Changes: rec}}); err != nil {
				return err
			}
		}
		return nil
	}
	var msg *clusterpb.ReduceRows
	size := 0
	for _, row := range rows {
		if msg != nil && size >= recordChunk {
			if err := send(&clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Rows{Rows: msg}}); err != nil {
				return err
			}
			msg = nil
		}
		if msg == nil {
			msg, size = &clusterpb.ReduceRows{}, 0
		}
		b := operators.AppendRow(nil, row)
		msg.Rows = append(msg.Rows, b)
		size += len(b)
	}
	if msg != nil {
		return send(&clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Rows{Rows: msg}})
	}
	return nil
}

// scanAfter is a store whose Scan waits until scanned is closed.
type scanAfter struct {
	state.Store
	scanned <-chan struct{}
}

func (s scanAfter) Scan(fn func(key, value []byte) error) error {
	<-s.scanned
	return s.Store.Scan(fn)
}

// errEpochPassed is the cause untilEpochPasses cancels its context with.
type errEpochPassed struct{ error }

// untilEpochPasses returns ctx, canceled once job's assignment on this
// member (f.job) is no longer at epoch, or the job is gone; stop cancels
// it and waits for its watcher. stopCause tells the cause.
func untilEpochPasses(ctx context.Context, f shuffleFence, job string, epoch uint64) (_ context.Context, stop func()) {
	return cancelWhen(ctx, f.jobChanges, func() error {
		j, ok := f.job(job)
		if now := j.GetAssignment().GetEpoch(); !ok || now != epoch {
			return errEpochPassed{status.Errorf(codes.FailedPrecondition, "%v: job %s: epoch %d passed while the request ran (this worker is at epoch %d)", ErrStaleEpoch, job, epoch, now)}
		}
		return nil
	})
}

// stopCause is the error untilEpochPasses canceled ctx with, nil if it
// did not.
func stopCause(ctx context.Context) error {
	var e errEpochPassed
	if errors.As(context.Cause(ctx), &e) {
		return e.error
	}
	return nil
}

// scanRecords calls send with every group st holds, as records of puts of
// about recordChunk bytes in ascending key order, each in memory of its
// own (gRPC may read a message after Send returns), allocated at its full
// size (recordRoom) rather than grown put by put. An error of send stops
// the scan and is returned unchanged.
func scanRecords(st state.Store, send func(rec []byte) error) error {
	rec := state.NewRecord(make([]byte, 0, recordRoom))
	err := st.Scan(func(key, value []byte) error {
		if rec = state.AppendPut(rec, key, value); len(rec) < recordChunk {
			return nil
		}
		err := send(rec)
		rec = state.NewRecord(make([]byte, 0, recordRoom))
		return err
	})
	if err == nil && !state.EmptyRecord(rec) {
		err = send(rec)
	}
	return err
}

// recordRoom is the capacity of a record scanRecords fills: it is sent
// once a put takes it to recordChunk bytes or past, so it holds up to
// recordChunk-1 bytes and that put, which only a group over 4 KiB makes
// it grow for.
const recordRoom = recordChunk + 4<<10

// ReducePartition asks the owner of a state partition, reached through cc,
// to reduce one batch (StatePartitions.Reduce), and calls out with each
// record of the groups the batch changed when req.Changes is set
// (task.Reducer.RecordRows turns one into rows), or, for a job with a
// dropDuplicates, with each new row (operators.ReadRow decodes it); then,
// when req.Rows is set, with each record of every group the partition
// holds at the batch. It returns once the owner, and the partition's
// standby if it has one, hold the batch.
func ReducePartition(ctx context.Context, cc grpc.ClientConnInterface, req *clusterpb.ReduceRequest, out func(rec []byte) error) (*clusterpb.ReduceDone, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := clusterpb.NewStatePartitionsClient(cc).Reduce(ctx, req)
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Errorf(codes.DataLoss, "cluster: the reduce of job %s batch %d state partition %d ended without its counts", req.Job, req.Batch, req.Partition)
			}
			return nil, err
		}
		switch kind := msg.Kind.(type) {
		case *clusterpb.ReduceResponse_Changes:
			if err := out(kind.Changes); err != nil {
				return nil, err
			}
		case *clusterpb.ReduceResponse_Groups:
			if err := out(kind.Groups); err != nil {
				return nil, err
			}
		case *clusterpb.ReduceResponse_Rows:
			for _, row := range kind.Rows.Rows {
				if err := out(row); err != nil {
					return nil, err
				}
			}
		case *clusterpb.ReduceResponse_Done:
			return kind.Done, nil
		}
	}
}

// replicateTimeout bounds how long a reduce sends its batch again to a
// standby that answers it is not ready (it has not applied the job or its
// assignment epoch yet, or cannot be reached).
const replicateTimeout = 5 * time.Second

// replicateRetrying is replicate, tried again while the standby answers
// with an error that may pass (transient), for up to replicateTimeout. The
// owner has committed the batch by then: a reduce that gives up fails, and
// the partials it took are gone, so the batch must be mapped again; a
// standby that was only slow to apply the job's latest Raft entries must
// not cost that.
func (s *stateServer) replicateRetrying(ctx context.Context, h *clusterpb.Header, job string, batch int64, partition int32, standby string, recs [][]byte, st state.Store) error {
	deadline := time.Now().Add(replicateTimeout)
	for {
		err := s.replicate(ctx, h, job, batch, partition, standby, recs, st)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryDelay):
		}
	}
}
