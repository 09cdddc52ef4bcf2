package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/proto/planpb"
	"github.com/gostream/gostream/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// recordChunk is the size past which a changelog record sent over gRPC is
// cut into another one: the shuffle's message size.
const recordChunk = 1 << 20

// recordMessages cuts rec, a batch's changelog record of a state
// partition, into records of about recordChunk bytes (state.SplitRecord),
// each a message of its own, in memory of its own.
func recordMessages(rec []byte) ([][]byte, error) {
	return state.SplitRecord(rec, recordChunk)
}

// jobStates keeps the worker's state: per job, one Pebble store in
// DataDir/jobs/NAME/state, labeled with the cluster and the job, holding
// the state partitions this worker owns or stands by for, each under its
// first key group as the store's partition number, so a partition keeps
// its keys wherever it moves. Stores and partitions are opened on first
// use and stay open until close.
//
// Locks: jobStates.mu guards the maps of jobs and partitions; a
// partition's mu is held while its store is used. Neither is held while
// the other is taken.
type jobStates struct {
	dir       string // DataDir/jobs
	clusterID string
	log       *slog.Logger
	mu        struct {
		sync.Mutex
		jobs   map[string]*jobState
		closed bool
	}
}

// jobState is one job's store on this worker.
type jobState struct {
	dir      string
	provider state.Provider
	parts    map[int32]*partState // by first key group; guarded by jobStates.mu
	plan     []byte               // the plan reducer was compiled from
	reducer  *jobReducer
}

// partState is one state partition's store. Its users (a reduce, a
// replication, a rows scan) take turns through mu.
type partState struct {
	mu       sync.Mutex
	provider state.Provider
	first    int32
	st       state.Store // nil until opened, and after a failure: opened again on next use
}

func newJobStates(dataDir, clusterID string, log *slog.Logger) *jobStates {
	s := &jobStates{dir: filepath.Join(dataDir, "jobs"), clusterID: clusterID, log: log}
	s.mu.jobs = map[string]*jobState{}
	return s
}

// jobDirName is job's directory name under jobs/: the name with
// characters a path cannot hold escaped.
func jobDirName(job string) string {
	name := url.PathEscape(job)
	if strings.Trim(name, ".") == "" {
		name = strings.ReplaceAll(name, ".", "%2E")
	}
	return name
}

// stateLabel labels a job's state store (state.Options.Label): a store of
// another cluster, job or key group count is refused.
type stateLabel struct {
	Cluster   string `json:"cluster"`
	Job       string `json:"job"`
	KeyGroups int32  `json:"keyGroups"`
}

// partition returns partition first of job, locked, opening the job's
// store and the partition on first use. The caller unlocks it.
func (s *jobStates) partition(job *clusterpb.Job, first int32) (*partState, error) {
	js, err := s.job(job)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	p := js.parts[first]
	if p == nil {
		p = &partState{provider: js.provider, first: first}
		js.parts[first] = p
	}
	s.mu.Unlock()
	p.mu.Lock()
	if p.st == nil {
		st, err := p.provider.Open(int(first))
		if err != nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("opening the state of key groups from %d in %s: %w", first, js.dir, err)
		}
		p.st = st
	}
	return p, nil
}

// job returns job's store, opened on first use.
func (s *jobStates) job(job *clusterpb.Job) (*jobState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	if js := s.mu.jobs[job.Name]; js != nil {
		return js, nil
	}
	dir := filepath.Join(s.dir, jobDirName(job.Name), "state")
	label, err := json.Marshal(stateLabel{Cluster: s.clusterID, Job: job.Name, KeyGroups: job.KeyGroups})
	if err != nil {
		return nil, err
	}
	opts := state.DefaultOptions()
	opts.Label = label
	opts.Logger = s.log
	// A standby applies a record as the owner committed it: each commit
	// is one changelog record, and nothing is rolled back (a batch that
	// runs again over a committed partition is not merged again).
	opts.Changelog = true
	opts.RetainVersions = 0
	provider, err := state.OpenPebble(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("job %s: state store %s: %w", job.Name, dir, err)
	}
	js := &jobState{dir: dir, provider: provider, parts: map[int32]*partState{}}
	s.mu.jobs[job.Name] = js
	return js, nil
}

// release closes the stores of job's partitions that this worker, name,
// holds open but neither owns nor stands by for in job's epoch, freeing
// their memory. Their data stay on disk at their version, served by no
// request (fencing refuses every request outside the epoch's roles):
// should the partition come back to the worker, its copy goes on from
// there if it is at the batch before, and is replaced by a full copy if
// it is further behind. A partition in use is left for the next call.
func (s *jobStates) release(job *clusterpb.Job, name string) {
	held := map[int32]bool{}
	for _, sp := range job.Assignment.GetState() {
		if sp.Owner == name || sp.Standby == name {
			held[sp.FirstKeyGroup] = true
		}
	}
	var idle []*partState
	s.mu.Lock()
	if js := s.mu.jobs[job.Name]; js != nil {
		for first, p := range js.parts {
			if !held[first] {
				idle = append(idle, p)
			}
		}
	}
	s.mu.Unlock()
	for _, p := range idle {
		if !p.mu.TryLock() {
			continue
		}
		if p.st != nil {
			s.log.Debug("cluster: closing the state of a partition this worker no longer holds", "job", job.Name, "epoch", job.Assignment.GetEpoch(), "first_key_group", p.first, "version", p.st.Version())
		}
		p.unlock(true, s.log)
	}
}

// reducer returns the reduce task of job's plan, compiled on first use.
func (s *jobStates) reducer(job *clusterpb.Job) (*jobReducer, error) {
	js, err := s.job(job)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if js.reducer != nil && string(js.plan) == string(job.Plan) {
		return js.reducer, nil
	}
	var q planpb.Query
	if err := proto.Unmarshal(job.Plan, &q); err != nil {
		return nil, fmt.Errorf("job %s: its plan does not parse: %w", job.Name, err)
	}
	plan, err := task.Compile(q.GetPlan())
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Name, err)
	}
	var red jobReducer
	switch {
	case plan.Agg != nil:
		red.agg = task.NewReducer(plan.Agg)
	case plan.Dedup != nil:
		red.dedup = task.NewDedupReducer(plan.Dedup)
	default:
		return nil, fmt.Errorf("job %s has no aggregation or dropDuplicates: it keeps no state to reduce", job.Name)
	}
	js.plan, js.reducer = job.Plan, &red
	return js.reducer, nil
}

// jobReducer is the reduce task of a job's plan: its aggregation's (agg)
// or its dropDuplicates' (dedup).
type jobReducer struct {
	agg   *task.Reducer
	dedup *task.DedupReducer
}

// unlock ends a use of p. A use that failed closes p's store: it is
// opened again, at its durable version, by the next.
func (p *partState) unlock(failed bool, log *slog.Logger) {
	if failed && p.st != nil {
		if err := p.st.Close(); err != nil {
			log.Warn("cluster: closing a state partition", "first_key_group", p.first, "err", err)
		}
		p.st = nil
	}
	p.mu.Unlock()
}

// close closes every store, once their users are done.
func (s *jobStates) close() error {
	s.mu.Lock()
	s.mu.closed = true
	jobs := s.mu.jobs
	s.mu.jobs = nil
	var parts []*partState
	for _, js := range jobs {
		for _, p := range js.parts {
			parts = append(parts, p)
		}
	}
	s.mu.Unlock()
	for _, p := range parts {
		p.mu.Lock() // wait for its user
		p.st = nil  // the provider closes it
		p.mu.Unlock()
	}
	var errs []error
	for _, js := range jobs {
		errs = append(errs, js.provider.Close())
	}
	return errors.Join(errs...)
}

// stateError turns err, the failure of a request on a state partition on
// this worker, into a gRPC status naming the request, job, batch,
// partition and worker.
func (s *stateServer) stateError(what, job string, batch int64, partition int32, err error) error {
	code, msg := codes.Internal, err.Error()
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		code, msg = st.Code(), st.Message()
	} else if ctxErr := status.FromContextError(err); ctxErr.Code() != codes.Unknown {
		code = ctxErr.Code()
	}
	return status.Errorf(code, "cluster: %s of job %s batch %d state partition %d on %s: %s", what, job, batch, partition, s.name, msg)
}

// recovered turns a panic of a request on a state partition into an
// error, logged with its stack: a failing request never stops the worker.
func (s *stateServer) recovered(r any, what, job string, batch int64, partition int32) error {
	s.log.Error("cluster: a state partition's request panicked", "request", what, "job", job, "batch", batch, "partition", partition, "panic", r, "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "cluster: %s of job %s batch %d state partition %d on %s panicked: %v (the worker goes on; its log has the stack)", what, job, batch, partition, s.name, r)
}

// checkVersion refuses to bring a partition at version v to version
// batch unless v is batch-1 or batch (held already).
func checkVersion(v, batch int64) error {
	switch {
	case v > batch:
		return status.Errorf(codes.FailedPrecondition, "the partition is at batch %d already, after batch %d (a stale request?)", v, batch)
	case v < batch-1:
		return status.Errorf(codes.FailedPrecondition, "the partition is at batch %d: batch %d needs batch %d first (a gap: the partition's state is incomplete here)", v, batch, batch-1)
	}
	return nil
}

// replicate sends recs, batch's record of a job's state partition, to the
// partition's standby and returns once the standby holds the batch. A
// standby that answers it needs a full copy (its copy is below batch-1:
// new, empty or far behind) gets the whole partition instead: st, the
// partition's store at version batch, which the caller holds. h is the
// fencing of the reduce that committed the batch.
func (s *stateServer) replicate(ctx context.Context, h *clusterpb.Header, job string, batch int64, partition int32, standbyName string, recs [][]byte, st state.Store) error {
	addr := s.addr(standbyName)
	if addr == "" {
		return status.Errorf(codes.FailedPrecondition, "standby %s is not a member", standbyName)
	}
	cc, err := s.clients.conn(addr)
	if err != nil {
		return status.Errorf(codes.Unavailable, "standby %s at %s: %v", standbyName, addr, err)
	}
	fwd := proto.CloneOf(h)
	fwd.From = s.name
	open := &clusterpb.ReplicateOpen{Header: fwd, Job: job, Batch: batch, Partition: partition}
	keys := st.Len()
	resp, _, err := sendReplica(ctx, cc, open, keys, func(send func(rec []byte) error) error {
		for _, r := range recs {
			if err := send(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && resp.NeedsCopy {
		start, was := time.Now(), resp.Version
		open.Full = true
		var end *clusterpb.ReplicateEnd
		resp, end, err = sendReplica(ctx, cc, open, keys, func(send func(rec []byte) error) error { return scanRecords(st, send) })
		if err == nil && resp.NeedsCopy {
			err = status.Errorf(codes.Internal, "it asked for a full copy again after one")
		}
		if err == nil {
			s.log.Info("cluster: sent a full copy of a state partition to its standby", "job", job, "batch", batch, "partition", partition,
				"standby", standbyName, "standby_was_at", was, "groups", st.Len(), "bytes", end.Bytes, "took", time.Since(start))
		}
	}
	if err != nil {
		return replicateError(standbyName, addr, err)
	}
	return nil
}

// sendReplica streams one Replicate through cc: open, each record put
// calls send with (each in memory of its own: gRPC may read a message
// after Send returns), and the end message with keys, the partition's key
// count, which it returns with the standby's answer. A standby may answer
// before the stream ends (it needs a full copy, or refuses): the rest is
// not sent.
func sendReplica(ctx context.Context, cc grpc.ClientConnInterface, open *clusterpb.ReplicateOpen, keys int64, put func(send func(rec []byte) error) error) (*clusterpb.ReplicateResponse, *clusterpb.ReplicateEnd, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := clusterpb.NewStatePartitionsClient(cc).Replicate(ctx)
	if err != nil {
		return nil, nil, err
	}
	end := &clusterpb.ReplicateEnd{Keys: keys}
	err = stream.Send(&clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_Open{Open: open}})
	if err == nil {
		err = put(func(rec []byte) error {
			end.Records++
			end.Bytes += uint64(len(rec))
			end.Crc = crc32.Update(end.Crc, castagnoli, rec)
			return stream.Send(&clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_Record{Record: rec}})
		})
	}
	if err == nil {
		err = stream.Send(&clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_End{End: end}})
	}
	if err != nil && !errors.Is(err, io.EOF) { // io.EOF: the standby answered
		return nil, nil, err
	}
	resp, err := stream.CloseAndRecv()
	return resp, end, err
}

func replicateError(standbyName, addr string, err error) error {
	st := status.Convert(err)
	return status.Errorf(st.Code(), "replicating to standby %s at %s: %s", standbyName, addr, st.Message())
}

// Replicate applies one batch's record of a state partition on its
// standby, this worker: it checks the fencing (the standby of the
// partition in the job's current epoch, a term not older than its own),
// takes the records as they come, checks the fencing again and commits
// them as the partition's version batch (state.CommitRecords: written
// durably as they are, applied to the partition's memory later, when it
// is next used or a fold is due). A partition at batch already answers
// applied and writes nothing; one below batch-1 (a gap) answers
// needs_copy and writes nothing. A full copy (ReplicateOpen.full)
// replaces the partition's copy whatever its version below batch: its
// keys are deleted and the copy's written in the same commit, so a copy
// cut short leaves the old one as it was.
func (s *stateServer) Replicate(stream grpc.ClientStreamingServer[clusterpb.ReplicateMessage, clusterpb.ReplicateResponse]) (err error) {
	msg, err := stream.Recv()
	if err != nil {
		return err
	}
	open := msg.GetOpen()
	if open == nil {
		return status.Errorf(codes.InvalidArgument, "cluster: a replication must start with its open message")
	}
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(r, "replication", open.Job, open.Batch, open.Partition)
		}
	}()
	resp, err := s.applyReplica(stream, open)
	if err != nil {
		return s.stateError("replication", open.Job, open.Batch, open.Partition, err)
	}
	return stream.SendAndClose(resp)
}

// applyReplica applies the records of a Replicate stream opened by open.
func (s *stateServer) applyReplica(stream grpc.ClientStreamingServer[clusterpb.ReplicateMessage, clusterpb.ReplicateResponse], open *clusterpb.ReplicateOpen) (*clusterpb.ReplicateResponse, error) {
	r := fenced{what: "a replication", header: open.Header, job: open.Job, batch: open.Batch, partition: open.Partition, role: standby}
	job, sp, err := checkFence(s.fence, r)
	if err != nil {
		return nil, err
	}
	s.states.release(job, s.name)
	p, err := s.states.partition(job, sp.FirstKeyGroup)
	if err != nil {
		return nil, err
	}
	failed := true // also when a panic unwinds
	defer func() { p.unlock(failed, s.log) }()
	st := p.st
	v := st.Version()
	switch {
	case v < open.Batch-1 && !open.Full:
		failed = false
		return &clusterpb.ReplicateResponse{NeedsCopy: true, Version: v}, nil
	case v > open.Batch:
		failed = false
		return nil, checkVersion(v, open.Batch)
	}
	applied := v == open.Batch
	// A batch's records are kept for CommitRecords; a full copy's are
	// staged as they come.
	var recs [][]byte
	apply := func(rec []byte) error { recs = append(recs, rec); return nil }
	var cp *state.Copy
	if open.Full && !applied {
		if cp, err = state.NewCopy(st); err != nil {
			return nil, err
		}
		apply = cp.Apply
	}
	var got clusterpb.ReplicateEnd
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, status.Errorf(codes.DataLoss, "the stream ended without its end message after %d records (the owner stopped mid-stream; nothing is written)", got.Records)
		}
		if err != nil {
			return nil, err
		}
		switch kind := msg.Kind.(type) {
		case *clusterpb.ReplicateMessage_Record:
			got.Records++
			got.Bytes += uint64(len(kind.Record))
			got.Crc = crc32.Update(got.Crc, castagnoli, kind.Record)
			if !applied {
				if err := apply(kind.Record); err != nil {
					return nil, status.Errorf(codes.DataLoss, "record %d: %v (nothing is written)", got.Records, err)
				}
			}
		case *clusterpb.ReplicateMessage_End:
			if sent := kind.End; sent.Records != got.Records || sent.Bytes != got.Bytes || sent.Crc != got.Crc {
				return nil, status.Errorf(codes.DataLoss, "%d records, %d bytes, CRC %08x were sent, %d, %d, %08x received (nothing is written)",
					sent.Records, sent.Bytes, sent.Crc, got.Records, got.Bytes, got.Crc)
			}
			if applied {
				failed = false
				return &clusterpb.ReplicateResponse{Applied: true}, nil
			}
			if cp != nil {
				if _, err := cp.Finish(); err != nil {
					return nil, err
				}
			}
			// The term or the epoch may have moved on while the records
			// came: fencing is checked again before the write.
			if _, _, err := checkFence(s.fence, r); err != nil {
				return nil, err
			}
			if cp != nil {
				err = st.Commit(open.Batch)
			} else {
				err = state.CommitRecords(st, open.Batch, recs, kind.End.Keys)
			}
			if errors.Is(err, state.ErrCorrupt) {
				return nil, status.Error(codes.DataLoss, err.Error())
			}
			if err != nil {
				return nil, err
			}
			failed = false
			return &clusterpb.ReplicateResponse{}, nil
		default:
			return nil, status.Errorf(codes.InvalidArgument, "an open or empty message inside the stream")
		}
	}
}
