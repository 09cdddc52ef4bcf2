package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"
)

// The shuffle's block stream: a Push stream's data messages, joined, are a
// sequence of blocks, each a header (a version byte, blockV1, then the
// payload's length as a uvarint) and the payload. A payload is opaque to
// this package: an exchange bucket of operators' HashAgg.Flush, which holds
// whole groups, so a receiver may Merge each block by itself. Data messages
// cut the block stream anywhere: small blocks share a message, a large one
// spans several.
const (
	blockV1        = 1
	maxBlockHeader = 1 + binary.MaxVarintLen64
	// MaxShuffleBlock bounds a block's payload; a larger one is refused.
	MaxShuffleBlock = 1 << 30
)

// DefaultShuffleMessageSize is the size of a Push stream's data messages,
// the fastest of 64 KiB, 256 KiB and 1 MiB in BenchmarkShuffle. A writer
// holds one message's buffer.
const DefaultShuffleMessageSize = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ShuffleTask identifies one attempt of a map task sending its partials for
// one state partition, and the fencing the receiver checks.
type ShuffleTask struct {
	Job       string
	Batch     int64
	Partition int32  // index of the state partition in the epoch's assignment
	Task      int32  // the map task, in [0, tasks of the batch)
	Attempt   uint32 // from 1 in each epoch; a retry takes the next number
	Epoch     uint64 // the assignment epoch the task runs in
	Term      uint64 // the Raft term of the driver that planned the task
	ClusterID string // hex, as Node.ClusterID
	From      string // the sending worker
}

func (t ShuffleTask) String() string {
	return fmt.Sprintf("job %s batch %d partition %d task %d attempt %d of epoch %d", t.Job, t.Batch, t.Partition, t.Task, t.Attempt, t.Epoch)
}

// ShuffleWriter streams one map task attempt's blocks for one state
// partition to the partition's owner (Shuffle.Push). Write blocks with
// WriteBlock, then Close to end the stream and learn whether the owner took
// it, or Abort to abandon it (the owner drops what it received). Not safe
// for concurrent use.
type ShuffleWriter struct {
	task   ShuffleTask
	stream grpc.ClientStream
	cancel context.CancelFunc
	size   int
	buf    *[]byte // the next data message, from shuffleBufferPool
	crc    uint32
	blocks uint64
	bytes  uint64
	err    error // set once the stream ended
}

// OpenShuffle opens a Push stream over cc for task and sends its open
// message. messageSize is the data messages' size (0: the default);
// messages are filled up to it, so small blocks share one and a large one
// spans several. The stream ends when ctx does.
func OpenShuffle(ctx context.Context, cc grpc.ClientConnInterface, task ShuffleTask, messageSize int) (*ShuffleWriter, error) {
	if messageSize <= 0 {
		messageSize = DefaultShuffleMessageSize
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := cc.NewStream(ctx, &clusterpb.Shuffle_ServiceDesc.Streams[0], clusterpb.Shuffle_Push_FullMethodName, grpc.CallContentSubtype(shuffleCodecName))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster: shuffle of %s: %w", task, err)
	}
	w := &ShuffleWriter{task: task, stream: stream, cancel: cancel, size: messageSize}
	open := &clusterpb.ShuffleMessage{Kind: &clusterpb.ShuffleMessage_Open{Open: &clusterpb.ShuffleOpen{
		Header: &clusterpb.Header{ClusterId: task.ClusterID, Term: task.Term, From: task.From, Epoch: task.Epoch},
		Job:    task.Job, Batch: task.Batch, Partition: task.Partition, Task: task.Task, Attempt: task.Attempt,
	}}}
	if err := w.send(&shuffleFrame{msg: open}); err != nil {
		return nil, w.fail(err)
	}
	return w, nil
}

// WriteBlock appends one block, an exchange bucket. It copies block before
// it returns: the caller may reuse it at once. An error ends the stream;
// Close returns it too.
func (w *ShuffleWriter) WriteBlock(block []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(block) > MaxShuffleBlock {
		return w.fail(fmt.Errorf("cluster: shuffle of %s: a block of %d bytes exceeds %d", w.task, len(block), MaxShuffleBlock))
	}
	var hdr [maxBlockHeader]byte
	hdr[0] = blockV1
	n := 1 + binary.PutUvarint(hdr[1:], uint64(len(block)))
	w.blocks++
	if err := w.write(hdr[:n]); err != nil {
		return err
	}
	return w.write(block)
}

// write appends p to the block stream, sending each message it fills.
func (w *ShuffleWriter) write(p []byte) error {
	w.crc = crc32.Update(w.crc, castagnoli, p)
	w.bytes += uint64(len(p))
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = shuffleBufferPool.Get(w.size)
			*w.buf = (*w.buf)[:0]
		}
		n := min(len(p), w.size-len(*w.buf))
		*w.buf = append(*w.buf, p[:n]...)
		p = p[n:]
		if len(*w.buf) == w.size {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush sends the pending data message, whose buffer passes to gRPC.
func (w *ShuffleWriter) flush() error {
	if w.buf == nil || len(*w.buf) == 0 {
		return nil
	}
	f := &shuffleFrame{data: w.buf}
	w.buf = nil
	if err := w.send(f); err != nil {
		return w.fail(err)
	}
	return nil
}

// send sends f.
func (w *ShuffleWriter) send(f *shuffleFrame) error {
	err := w.stream.SendMsg(f)
	if errors.Is(err, io.EOF) {
		// The owner ended the stream; its status says why.
		err = w.stream.RecvMsg(new(clusterpb.ShuffleResponse))
		if err == nil {
			err = fmt.Errorf("cluster: shuffle of %s: the owner answered before the stream ended", w.task)
		}
	}
	return err
}

// fail ends the stream with err, unless it ended already, and returns the
// error the stream ended with.
func (w *ShuffleWriter) fail(err error) error {
	if w.err != nil {
		return w.err
	}
	w.cancel()
	if w.buf != nil {
		shuffleBufferPool.Put(w.buf)
		w.buf = nil
	}
	w.err = err
	if st, ok := status.FromError(err); ok {
		w.err = &shuffleError{msg: fmt.Sprintf("cluster: shuffle of %s failed: %s (%s)", w.task, st.Message(), st.Code()), st: st}
	}
	return w.err
}

// shuffleError is a Push stream's failure as the receiver or gRPC reported
// it: its message names the task, and status.Code gives its code (Aborted
// for a superseded attempt, Unavailable for a receiver gone, ...).
type shuffleError struct {
	msg string
	st  *status.Status
}

func (e *shuffleError) Error() string              { return e.msg }
func (e *shuffleError) GRPCStatus() *status.Status { return e.st }

// Close sends what is pending and the stream's end, and waits for the
// owner's answer: nil once the owner holds the attempt complete. After
// Close or Abort, WriteBlock fails.
func (w *ShuffleWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flush(); err != nil {
		return err
	}
	end := &clusterpb.ShuffleMessage{Kind: &clusterpb.ShuffleMessage_End{End: &clusterpb.ShuffleEnd{Blocks: w.blocks, Bytes: w.bytes, Crc32C: w.crc}}}
	if err := w.send(&shuffleFrame{msg: end}); err != nil {
		return w.fail(err)
	}
	err := w.stream.CloseSend()
	resp := new(clusterpb.ShuffleResponse)
	if err == nil {
		err = w.stream.RecvMsg(resp)
	}
	if err == nil && (resp.Blocks != w.blocks || resp.Bytes != w.bytes) {
		err = fmt.Errorf("cluster: shuffle of %s: the owner acknowledged %d blocks, %d bytes; %d, %d were sent", w.task, resp.Blocks, resp.Bytes, w.blocks, w.bytes)
	}
	if err != nil {
		return w.fail(err)
	}
	w.fail(errWriterClosed)
	return nil
}

// Abort abandons the stream: the owner drops what it received.
func (w *ShuffleWriter) Abort() {
	w.fail(errWriterClosed)
}

var errWriterClosed = fmt.Errorf("cluster: shuffle stream closed")

// The HTTP/2 flow control windows of a worker's gRPC server and
// connections: 4 MiB per stream and 16 MiB per connection, fixed. They
// bound the bytes in flight towards a receiver beyond what it has read
// (gRPC's default window starts at 64 KiB and grows by estimating the
// bandwidth-delay product, which holds a new stream back for its first
// megabytes).
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// shuffleServerOptions and shuffleDialOptions tune a worker's gRPC server
// and connections for the shuffle's throughput; shuffleDialOptions' calls
// use the shuffle's codec, whatever their messages.
func shuffleServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		experimental.BufferPool(shuffleBufferPool),
	}
}

func shuffleDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow),
		experimental.WithBufferPool(shuffleBufferPool),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(shuffleCodecName)),
	}
}
