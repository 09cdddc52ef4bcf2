package cluster

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of an Inbox.
const (
	// DefaultShuffleMemory bounds the bytes an Inbox holds.
	DefaultShuffleMemory = 256 << 20
	// DefaultShuffleWait bounds a stream's wait for memory.
	DefaultShuffleWait = 30 * time.Second
)

// Inbox keeps the partials that map tasks push to the state partitions this
// worker owns, until the partition's reduce takes them (Take).
//
// Attempts: only the latest attempt of a map task counts: the one of the
// latest assignment epoch, and of that epoch the highest number. Per (job,
// batch, partition, task), an attempt that opens drops every earlier one,
// complete or not, and an attempt older than one already opened is
// refused. A
// stream that fails (broken, truncated, damaged, refused) drops its
// attempt's data; the task then has no partials until a later attempt
// completes. Take hands a partition's reduce exactly one complete attempt
// per map task, the latest, and closes the partition for the batch: a push
// arriving after it is refused.
//
// Flow control: the Inbox holds at most its memory budget of received
// bytes (data messages, counted as received) until Take's caller releases
// them. A stream that would exceed it stops reading, so HTTP/2's flow
// control stops its sender, until memory is released, for at most the wait
// given to NewInbox; then it fails with ResourceExhausted. A single message
// is let in when nothing is held, so a budget smaller than a message cannot
// block forever.
//
// An Inbox is safe for concurrent use.
type Inbox struct {
	budget int64
	wait   time.Duration
	mu     struct {
		sync.Mutex
		parts map[partKey]*partInbox
		held  int64
		freed chan struct{} // closed and replaced when memory is released
	}
}

// partKey names a state partition's partials of one batch.
type partKey struct {
	job       string
	batch     int64
	partition int32
}

func (k partKey) String() string {
	return fmt.Sprintf("job %s batch %d partition %d", k.job, k.batch, k.partition)
}

// partInbox is what a partition holds for one batch.
type partInbox struct {
	tasks      map[int32]*attempt // the latest attempt of each task
	taken      bool
	takenEpoch uint64        // the assignment epoch of the reduce that took it, 0 if not told
	changed    chan struct{} // closed and replaced when an attempt completes
}

// attempt is a map task attempt's partials for one partition.
type attempt struct {
	key    partKey
	task   int32
	id     attemptID
	blocks [][]byte
	bufs   []*[]byte // the pooled buffers blocks lie in
	held   int64
	done   bool  // complete
	drop   error // why the attempt was dropped, a gRPC status error; nil while it counts
}

// NewInbox returns an Inbox holding at most budget bytes (0: the default),
// whose streams wait at most wait for memory (0: the default).
func NewInbox(budget int64, wait time.Duration) *Inbox {
	if budget <= 0 {
		budget = DefaultShuffleMemory
	}
	if wait <= 0 {
		wait = DefaultShuffleWait
	}
	in := &Inbox{budget: budget, wait: wait}
	in.mu.parts = map[partKey]*partInbox{}
	in.mu.freed = make(chan struct{})
	return in
}

// attemptID names a map task's attempt: its assignment epoch and its
// number in the epoch, from 1.
type attemptID struct {
	epoch uint64
	n     uint32
}

// before reports whether a is an earlier attempt than b.
func (a attemptID) before(b attemptID) bool {
	return a.epoch < b.epoch || a.epoch == b.epoch && a.n < b.n
}

func (a attemptID) String() string { return fmt.Sprintf("attempt %d of epoch %d", a.n, a.epoch) }

// open starts attempt id of task for k, dropping earlier attempts.
func (in *Inbox) open(k partKey, task int32, id attemptID) (*attempt, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p := in.mu.parts[k]
	if p == nil {
		p = &partInbox{tasks: map[int32]*attempt{}, changed: make(chan struct{})}
		in.mu.parts[k] = p
	}
	if p.taken {
		return nil, errTaken(k, task, id, p.takenEpoch)
	}
	if old := p.tasks[task]; old != nil {
		if !old.id.before(id) {
			return nil, errSuperseded(k, task, id, old.id)
		}
		in.dropLocked(old, errSuperseded(k, task, old.id, id))
	}
	a := &attempt{key: k, task: task, id: id}
	p.tasks[task] = a
	return a, nil
}

// errTaken refuses attempt id of task for k, which a reduce of epoch
// took (0: not told): Unavailable, to try again, when id is of a later
// epoch (that reduce stops once this worker applied it, and its partition
// takes pushes again), else FailedPrecondition.
func errTaken(k partKey, task int32, id attemptID, epoch uint64) error {
	if epoch != 0 && id.epoch > epoch {
		return status.Errorf(codes.Unavailable, "%v: %s is held by a reduce of epoch %d, which stops now that the job is at epoch %d; %s of task %d came meanwhile (retry)", ErrShuffleRefused, k, epoch, id.epoch, id, task)
	}
	return status.Errorf(codes.FailedPrecondition, "%v: %s was reduced already; %s of task %d came too late", ErrShuffleRefused, k, id, task)
}

func errSuperseded(k partKey, task int32, id, by attemptID) error {
	return status.Errorf(codes.Aborted, "%v: %s task %d: %s is superseded by %s", ErrShuffleRefused, k, task, id, by)
}

// currentLocked refuses a's stream once a was dropped.
func (in *Inbox) currentLocked(a *attempt) error { return a.drop }

// reserve waits until n more bytes fit in the budget and counts them as
// held by a.
func (in *Inbox) reserve(ctx context.Context, a *attempt, n int) error {
	var timeout <-chan time.Time
	for {
		in.mu.Lock()
		if err := in.currentLocked(a); err != nil {
			in.mu.Unlock()
			return err
		}
		if in.mu.held == 0 || in.mu.held+int64(n) <= in.budget {
			in.mu.held += int64(n)
			a.held += int64(n)
			in.mu.Unlock()
			return nil
		}
		freed := in.mu.freed
		held := in.mu.held
		in.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(in.wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-timeout:
			return status.Errorf(codes.ResourceExhausted, "%v: %s task %d: the receiver holds %d bytes of partials not yet reduced, its budget is %d, and none was released for %v (give the workers more shuffle memory, or make batches smaller)",
				ErrShuffleRefused, a.key, a.task, held, in.budget, in.wait)
		}
	}
}

// add appends blocks to a, which takes bufs, the pooled buffers they lie
// in, even when it refuses them.
func (in *Inbox) add(a *attempt, blocks [][]byte, bufs []*[]byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.currentLocked(a); err != nil {
		putBuffers(bufs)
		return err
	}
	a.blocks = append(a.blocks, blocks...)
	a.bufs = append(a.bufs, bufs...)
	return nil
}

func putBuffers(bufs []*[]byte) {
	for _, b := range bufs {
		shuffleBufferPool.Put(b)
	}
}

// complete marks a complete: the task's partials for a's partition.
func (in *Inbox) complete(a *attempt) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := in.currentLocked(a); err != nil {
		return err
	}
	a.done = true
	p := in.mu.parts[a.key]
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// drop drops a's partials unless it completed or was dropped: its stream
// failed with err.
func (in *Inbox) drop(a *attempt, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !a.done && a.drop == nil {
		in.dropLocked(a, err)
	}
}

// dropLocked drops a's partials, why being the error its stream gets.
func (in *Inbox) dropLocked(a *attempt, why error) {
	a.drop = why
	a.blocks = nil
	putBuffers(a.bufs)
	a.bufs = nil
	in.releaseLocked(a.held)
	a.held = 0
}

func (in *Inbox) releaseLocked(n int64) {
	if n == 0 {
		return
	}
	in.mu.held -= n
	close(in.mu.freed)
	in.mu.freed = make(chan struct{})
}

// Partials are a state partition's partials of one batch, as Take hands
// them to its reduce.
type Partials struct {
	// Blocks holds each map task's blocks, task by task in task order, a
	// task's blocks in the order it sent them. They are exchange buckets to
	// Merge; they must not be used after Release.
	Blocks [][]byte
	in     *Inbox
	bufs   []*[]byte
	held   int64
	once   sync.Once
}

// Release gives the partials' memory back to the Inbox's budget.
func (p *Partials) Release() {
	p.once.Do(func() {
		p.in.mu.Lock()
		defer p.in.mu.Unlock()
		p.in.releaseLocked(p.held)
		putBuffers(p.bufs)
		p.Blocks, p.bufs = nil, nil
	})
}

// Take waits until each of the batch's tasks, 0 to tasks-1, has a complete
// attempt for the partition, and returns their partials: exactly one
// attempt per task, the latest. The partition is then closed for the batch:
// later pushes are refused. The caller must Release the partials.
func (in *Inbox) Take(ctx context.Context, job string, batch int64, partition int32, tasks int) (*Partials, error) {
	return in.take(ctx, partKey{job: job, batch: batch, partition: partition}, tasks, 0, true)
}

// take is Take of k by a reduce of assignment epoch epoch (0: not told),
// which the pushes it refuses are told (errTaken). Unless wait, a task
// with no complete attempt fails it at once (Aborted) instead of being
// waited for.
func (in *Inbox) take(ctx context.Context, k partKey, tasks int, epoch uint64, wait bool) (*Partials, error) {
	for {
		in.mu.Lock()
		p := in.mu.parts[k]
		if p == nil {
			p = &partInbox{tasks: map[int32]*attempt{}, changed: make(chan struct{})}
			in.mu.parts[k] = p
		}
		if p.taken {
			in.mu.Unlock()
			return nil, fmt.Errorf("%w: %s was taken already", ErrShuffleRefused, k)
		}
		missing := -1
		for t := range tasks {
			if a := p.tasks[int32(t)]; a == nil || !a.done {
				missing = t
				break
			}
		}
		if missing < 0 {
			p.taken, p.takenEpoch = true, epoch
			out := &Partials{in: in}
			for t := range tasks {
				a := p.tasks[int32(t)]
				out.Blocks = append(out.Blocks, a.blocks...)
				out.bufs = append(out.bufs, a.bufs...)
				out.held += a.held
				a.blocks, a.bufs, a.held = nil, nil, 0
			}
			// Attempts of tasks beyond the batch's count cannot count.
			for t, a := range p.tasks {
				if int(t) >= tasks {
					in.dropLocked(a, status.Errorf(codes.FailedPrecondition, "%v: %s was reduced with %d map tasks, task %d is not one of them", ErrShuffleRefused, k, tasks, t))
				}
			}
			in.mu.Unlock()
			return out, nil
		}
		changed := p.changed
		in.mu.Unlock()
		if !wait {
			return nil, status.Errorf(codes.Aborted, "%v: %s: map task %d has no complete partials here, though the driver reduces only once every map task's pushes were taken: this worker lost them (it started again since); the batch is mapped again", ErrShuffleRefused, k, missing)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: waiting for the partials of %s: task %d has none complete: %w", k, missing, ctx.Err())
		}
	}
}

// Discard forgets every partition of job's batches before batch, taken or
// not, and releases their memory: those batches are committed or will be
// planned again.
func (in *Inbox) Discard(job string, before int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, p := range in.mu.parts {
		if k.job == job && k.batch < before {
			in.forgetLocked(k, p, "the batch was committed or is planned again")
		}
	}
}

// Forget forgets one partition's batch, taken or not, and releases its
// memory: its reduce is over, so a later run of the batch (the driver
// runs it again) starts afresh, its pushes accepted and Take waiting for
// them.
func (in *Inbox) Forget(job string, batch int64, partition int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	k := partKey{job: job, batch: batch, partition: partition}
	if p := in.mu.parts[k]; p != nil {
		in.forgetLocked(k, p, "its reduce is over")
	}
}

// forgetLocked drops what p, k's partition inbox, holds and forgets it;
// why says why to the streams still running.
func (in *Inbox) forgetLocked(k partKey, p *partInbox, why string) {
	for _, a := range p.tasks {
		if a.drop == nil {
			in.dropLocked(a, status.Errorf(codes.FailedPrecondition, "%v: %s was discarded (%s)", ErrShuffleRefused, k, why))
		}
	}
	delete(in.mu.parts, k)
}

// shuffleFence is what the Shuffle service checks a stream's open message
// against: the receiving member's identity and view of the jobs.
type shuffleFence interface {
	// fenceView returns the member's name, cluster id and current Raft
	// term, or a gRPC status error while it cannot tell them.
	fenceView() (name, clusterID string, term uint64, err error)
	// job returns a registered job with its assignment, but without its
	// batch log (FSM.fenceJob), shared: the caller must not modify it.
	job(name string) (*clusterpb.Job, bool)
	// jobChanges returns a channel closed once what job returns may
	// have changed after the call.
	jobChanges() <-chan struct{}
}

// shuffleServer serves Shuffle.Push into an Inbox.
type shuffleServer struct {
	clusterpb.UnimplementedShuffleServer
	fence shuffleFence
	inbox *Inbox
}

// Push receives one map task attempt's partials for one state partition:
// it checks the open message's fencing, parses the block stream into the
// attempt, checks the fencing again when the end message comes, and
// completes the attempt once the end message matches what came and the
// fencing still holds. Any failure drops the attempt's data.
func (s *shuffleServer) Push(stream grpc.ClientStreamingServer[clusterpb.ShuffleMessage, clusterpb.ShuffleResponse]) (err error) {
	var f shuffleFrame
	if err := stream.RecvMsg(&f); err != nil {
		return err
	}
	open := f.msg.GetOpen()
	if open == nil {
		f.release()
		return status.Errorf(codes.InvalidArgument, "%v: a shuffle stream must start with its open message", ErrShuffleRefused)
	}
	if err := s.check(open); err != nil {
		return err
	}
	k := partKey{job: open.Job, batch: open.Batch, partition: open.Partition}
	a, err := s.inbox.open(k, open.Task, attemptID{epoch: open.Header.GetEpoch(), n: open.Attempt})
	if err != nil {
		return err
	}
	defer func() { s.inbox.drop(a, err) }() // a no-op once complete
	what := fmt.Sprintf("%s task %d %s from %s", k, open.Task, a.id, open.Header.GetFrom())
	var r blockReader
	defer r.release()
	var blocks [][]byte
	for {
		err := stream.RecvMsg(&f)
		if errors.Is(err, io.EOF) {
			return status.Errorf(codes.DataLoss, "%v: the stream of %s ended without its end message after %d bytes (the sender stopped mid-stream; the attempt is dropped)", ErrShuffleRefused, what, r.bytes)
		}
		if err != nil {
			return err
		}
		if f.data != nil {
			if err := s.inbox.reserve(stream.Context(), a, cap(*f.data)); err != nil {
				f.release()
				return err
			}
			blocks, err = r.read(*f.data, blocks[:0])
			// The Inbox owns the message's buffer now, and any block r put
			// together; it releases them with the attempt.
			bufs := append(r.done, f.data)
			r.done = nil
			if aerr := s.inbox.add(a, blocks, bufs); err == nil {
				err = aerr
			}
			if err != nil {
				if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
					return err
				}
				return status.Errorf(codes.DataLoss, "%v: %s: %v", ErrShuffleRefused, what, err)
			}
			continue
		}
		switch kind := f.msg.Kind.(type) {
		case *clusterpb.ShuffleMessage_End:
			if err := r.check(kind.End); err != nil {
				return status.Errorf(codes.DataLoss, "%v: %s: %v (the attempt is dropped)", ErrShuffleRefused, what, err)
			}
			// The term or the epoch may have moved on while the stream
			// ran: fencing is checked again before the attempt counts.
			if err := s.check(open); err != nil {
				return err
			}
			if err := s.inbox.complete(a); err != nil {
				return err
			}
			return stream.SendAndClose(&clusterpb.ShuffleResponse{Blocks: r.blocks, Bytes: r.bytes})
		case *clusterpb.ShuffleMessage_Open:
			return status.Errorf(codes.InvalidArgument, "%v: %s: a second open message", ErrShuffleRefused, what)
		default:
			return status.Errorf(codes.InvalidArgument, "%v: %s: an empty message", ErrShuffleRefused, what)
		}
	}
}

// release gives f's buffer back to the pool.
func (f *shuffleFrame) release() {
	if f.data != nil {
		shuffleBufferPool.Put(f.data)
		f.data = nil
	}
}

// check refuses an open message from another cluster, an older term, for a
// job this member does not know, from another assignment epoch, or for a
// partition this member does not own in that epoch.
func (s *shuffleServer) check(open *clusterpb.ShuffleOpen) error {
	switch {
	case open.Attempt == 0:
		return status.Errorf(codes.InvalidArgument, "%v: job %s batch %d task %d: attempts count from 1", ErrShuffleRefused, open.Job, open.Batch, open.Task)
	case open.Task < 0:
		return status.Errorf(codes.InvalidArgument, "%v: job %s batch %d: task %d", ErrShuffleRefused, open.Job, open.Batch, open.Task)
	}
	_, _, err := checkFence(s.fence, fenced{what: "a shuffle", header: open.Header, job: open.Job, batch: open.Batch, partition: open.Partition, role: owner})
	return err
}

// A role is what a member is to a state partition.
type role bool

const (
	owner   role = false
	standby role = true
)

func (r role) String() string {
	if r == standby {
		return "standby"
	}
	return "owner"
}

// fenced is a request that acts on a state partition of a job's batch.
type fenced struct {
	what      string // "a shuffle", "a reduce"...: names the request in errors
	header    *clusterpb.Header
	job       string
	batch     int64
	partition int32 // index in the epoch's Assignment.state
	role      role  // what the receiving member must be to the partition
}

// checkFence refuses r, with a gRPC status, when it comes from another
// cluster or an older Raft term, names a job f does not know or another
// assignment epoch than the job's, or a partition the member is not r.role
// of in that epoch. It returns the job and the partition.
func checkFence(f shuffleFence, r fenced) (*clusterpb.Job, *clusterpb.StatePartition, error) {
	name, job, err := checkJobFence(f, r.what, r.header, r.job, r.batch)
	if err != nil {
		return nil, nil, err
	}
	a := job.Assignment
	if r.partition < 0 || int(r.partition) >= len(a.State) {
		return nil, nil, status.Errorf(codes.InvalidArgument, "%v: job %s epoch %d has %d state partitions, not %d", ErrShuffleRefused, r.job, a.GetEpoch(), len(a.State), r.partition)
	}
	p := a.State[r.partition]
	is := p.Owner
	if r.role == standby {
		is = cmp.Or(p.Standby, "no member")
	}
	if is != name {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "%v: job %s epoch %d: the %s of state partition %d is %s, not %s", ErrStaleEpoch, r.job, a.GetEpoch(), r.role, r.partition, is, name)
	}
	return job, p, nil
}

// checkJobFence refuses what (a request of job's batch with header h),
// with a gRPC status, when it comes from another cluster or an older Raft
// term, names a job f does not know or another assignment epoch than the
// job's (a newer one is Unavailable: this member has not applied it yet).
// It returns this member's name and the job.
func checkJobFence(f shuffleFence, what string, h *clusterpb.Header, jobName string, batch int64) (string, *clusterpb.Job, error) {
	name, id, term, err := f.fenceView()
	if err != nil {
		return "", nil, err
	}
	switch {
	case h.GetClusterId() != id:
		return "", nil, status.Errorf(codes.FailedPrecondition, "%v: %s is a member of cluster %s, %s came from cluster %q (member %q)", ErrPeersDisagree, name, id, what, h.GetClusterId(), h.GetFrom())
	case h.GetTerm() < term:
		return "", nil, status.Errorf(codes.FailedPrecondition, "%v: %s of job %s batch %d planned in term %d, from %s; %s is in term %d", ErrStaleTerm, what, jobName, batch, h.GetTerm(), h.GetFrom(), name, term)
	}
	job, ok := f.job(jobName)
	if !ok {
		return "", nil, status.Errorf(codes.NotFound, "%v: %s does not know job %q (was it registered? %s came from %s)", ErrUnknownJob, name, jobName, what, h.GetFrom())
	}
	switch epoch := job.Assignment.GetEpoch(); {
	case h.GetEpoch() < epoch:
		return "", nil, status.Errorf(codes.FailedPrecondition, "%v: job %s batch %d: %s of epoch %d from %s; the job's assignment is at epoch %d", ErrStaleEpoch, jobName, batch, what, h.GetEpoch(), h.GetFrom(), epoch)
	case h.GetEpoch() > epoch:
		return "", nil, status.Errorf(codes.Unavailable, "%v: job %s: %s has not applied epoch %d yet (it is at %d; retry)", ErrStaleEpoch, jobName, name, h.GetEpoch(), epoch)
	}
	return name, job, nil
}

// blockReader parses a block stream cut into messages at any byte. A block
// that lies in one message is a slice of it; one that spans messages is
// copied together.
type blockReader struct {
	hdr    []byte    // a block header cut by a message's end
	blk    []byte    // the block being put together; cap is its length
	blkBuf *[]byte   // blk's pooled buffer
	done   []*[]byte // the buffers of blocks put together, for the caller to own
	inBlk  bool
	crc    uint32
	bytes  uint64
	blocks uint64
}

// read parses p, appending the blocks it completes to dst. The blocks may
// be slices of p.
func (r *blockReader) read(p []byte, dst [][]byte) ([][]byte, error) {
	r.crc = crc32.Update(r.crc, castagnoli, p)
	r.bytes += uint64(len(p))
	for len(p) > 0 {
		if r.inBlk {
			n := copy(r.blk[len(r.blk):cap(r.blk)], p)
			r.blk, p = r.blk[:len(r.blk)+n], p[n:]
			if len(r.blk) == cap(r.blk) {
				dst = append(dst, r.blk)
				r.done = append(r.done, r.blkBuf)
				r.blk, r.blkBuf, r.inBlk = nil, nil, false
				r.blocks++
			}
			continue
		}
		var (
			length  int
			n       int
			err     error
			partial = len(r.hdr) > 0
		)
		if partial {
			had := len(r.hdr)
			take := min(len(p), maxBlockHeader-had)
			r.hdr = append(r.hdr, p[:take]...)
			if length, n, err = parseBlockHeader(r.hdr); err != nil {
				return dst, err
			}
			if n == 0 {
				p = p[take:]
				continue
			}
			p = p[n-had:]
			r.hdr = r.hdr[:0]
		} else {
			if length, n, err = parseBlockHeader(p); err != nil {
				return dst, err
			}
			if n == 0 {
				r.hdr = append(r.hdr[:0], p...)
				return dst, nil
			}
			p = p[n:]
		}
		if len(p) >= length {
			dst = append(dst, p[:length:length])
			p = p[length:]
			r.blocks++
			continue
		}
		r.blkBuf = shuffleBufferPool.Get(length)
		r.blk, r.inBlk = (*r.blkBuf)[:0:length], true
	}
	return dst, nil
}

// release gives the buffers r still owns back to the pool.
func (r *blockReader) release() {
	if r.blkBuf != nil {
		shuffleBufferPool.Put(r.blkBuf)
	}
	for _, b := range r.done {
		shuffleBufferPool.Put(b)
	}
	*r = blockReader{}
}

// parseBlockHeader parses the block header at the start of b and returns
// the payload's length and the header's size, 0 when b holds only part of
// a header.
func parseBlockHeader(b []byte) (length, n int, err error) {
	if len(b) == 0 {
		return 0, 0, nil
	}
	if b[0] != blockV1 {
		return 0, 0, fmt.Errorf("block format %d is not known here (this worker reads format %d: is it an older gostream version than the sender?)", b[0], blockV1)
	}
	v, m := binary.Uvarint(b[1:])
	switch {
	case m == 0 && len(b) < maxBlockHeader:
		return 0, 0, nil
	case m <= 0 || v > MaxShuffleBlock:
		return 0, 0, fmt.Errorf("a block header gives a bad length (the stream is damaged)")
	}
	return int(v), 1 + m, nil
}

// check compares the stream read with its end message.
func (r *blockReader) check(end *clusterpb.ShuffleEnd) error {
	switch {
	case r.inBlk || len(r.hdr) > 0:
		return fmt.Errorf("the stream ends inside a block (%d bytes read)", r.bytes)
	case end.Blocks != r.blocks || end.Bytes != r.bytes:
		return fmt.Errorf("%d blocks, %d bytes were sent, %d, %d received", end.Blocks, end.Bytes, r.blocks, r.bytes)
	case end.Crc32C != r.crc:
		return fmt.Errorf("the block stream's checksum is %08x, %08x was sent (the stream is damaged)", r.crc, end.Crc32C)
	}
	return nil
}
