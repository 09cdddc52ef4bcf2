package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// staticFence is a shuffleFence whose view a test sets: directly before
// the first stream opens, with set while streams run.
type staticFence struct {
	mu              sync.Mutex
	name, clusterID string
	term            uint64
	jobs            map[string]*clusterpb.Job
	changed         chan struct{} // closed and replaced by set and setJob; nil until jobChanges
}

func (f *staticFence) fenceView() (string, string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.name, f.clusterID, f.term, nil
}

func (f *staticFence) job(name string) (*clusterpb.Job, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[name]
	return j, ok
}

func (f *staticFence) jobChanges() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

// set changes the view as the member's Raft apply would: term, and job wc
// replaced by a copy at epoch.
func (f *staticFence) set(term, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.term = term
	j := proto.Clone(f.jobs["wc"]).(*clusterpb.Job)
	j.Assignment.Epoch = epoch
	f.setJobLocked(j)
}

// setJob replaces job j.Name by j, as the member's Raft apply would.
func (f *staticFence) setJob(j *clusterpb.Job) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setJobLocked(j)
}

func (f *staticFence) setJobLocked(j *clusterpb.Job) {
	f.jobs[j.Name] = j
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// shuffleJob is job "wc" at epoch 1 with two state partitions, both owned
// by s1.
func shuffleJob() *clusterpb.Job {
	j := testJob("wc")
	j.Assignment = testAssignment(1)
	j.Assignment.State[1].Owner = "s1"
	return j
}

// shuffleRig is a Shuffle server for worker s1 of cluster c1 in term 3,
// over bufconn or loopback TCP.
type shuffleRig struct {
	inbox  *Inbox
	fence  *staticFence
	server *grpc.Server
	cc     *grpc.ClientConn
}

func newShuffleRig(t testing.TB, ln net.Listener, inbox *Inbox, dial ...grpc.DialOption) *shuffleRig {
	r := &shuffleRig{inbox: inbox, fence: &staticFence{name: "s1", clusterID: "c1", term: 3, jobs: map[string]*clusterpb.Job{"wc": shuffleJob()}}}
	r.server = grpc.NewServer(shuffleServerOptions()...)
	clusterpb.RegisterShuffleServer(r.server, &shuffleServer{fence: r.fence, inbox: inbox})
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.server.Serve(ln) })
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), append(append(shuffleDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials())), dial...)...)
	if err != nil {
		t.Fatal(err)
	}
	r.cc = cc
	t.Cleanup(func() {
		cc.Close()
		r.server.Stop()
		wg.Wait()
	})
	return r
}

// newBufconnRig serves over an in-memory connection.
func newBufconnRig(t testing.TB, inbox *Inbox) *shuffleRig {
	ln := bufconn.Listen(1 << 20)
	return newShuffleRig(t, ln, inbox, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
}

// task is attempt of map task n for partition 0 of batch 1, fenced right.
func (r *shuffleRig) task(n int32, attempt uint32) ShuffleTask {
	return ShuffleTask{Job: "wc", Batch: 1, Partition: 0, Task: n, Attempt: attempt, Epoch: 1, Term: 3, ClusterID: "c1", From: "s2"}
}

// push streams blocks as task in messages of size bytes.
func push(ctx context.Context, cc grpc.ClientConnInterface, task ShuffleTask, blocks [][]byte, size int) error {
	w, err := OpenShuffle(ctx, cc, task, size)
	if err != nil {
		return err
	}
	for _, b := range blocks {
		if err := w.WriteBlock(b); err != nil {
			return err
		}
	}
	return w.Close()
}

// randomBlocks returns n blocks of random bytes of 0 to max bytes.
func randomBlocks(rng *rand.Rand, n, max int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, rng.IntN(max+1))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		out[i] = b
	}
	return out
}

func equalBlocks(got, want [][]byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d blocks, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			return fmt.Errorf("block %d differs (%d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	return nil
}

func take(t *testing.T, in *Inbox, tasks int) *Partials {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := in.Take(ctx, "wc", 1, 0, tasks)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantCode checks that err is a refusal with code and text in its message.
func wantCode(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v %q", code, text)
	}
	if !strings.Contains(err.Error(), "("+code.String()+")") || !strings.Contains(err.Error(), text) {
		t.Fatalf("error %q; want code %v and %q", err, code, text)
	}
}

// TestShuffleRoundTrip pushes random blocks, including empty ones and ones
// larger than a message, in messages from 1 byte (every block header cut)
// to 64 KiB, and checks that Take returns them exactly, task by task.
func TestShuffleRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	for _, size := range []int{1, 3, 1000, 64 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			in := NewInbox(0, 0)
			r := newBufconnRig(t, in)
			maxBlock := 200 << 10
			if size < 100 {
				maxBlock = 2000
			}
			var want [][]byte
			for task := range int32(3) {
				blocks := randomBlocks(rng, 1+rng.IntN(20), maxBlock)
				if err := push(context.Background(), r.cc, r.task(task, 1), blocks, size); err != nil {
					t.Fatal(err)
				}
				want = append(want, blocks...)
			}
			p := take(t, in, 3)
			if err := equalBlocks(p.Blocks, want); err != nil {
				t.Fatal(err)
			}
			p.Release()
			if h := in.heldBytes(); h != 0 {
				t.Fatalf("%d bytes held after Release", h)
			}
		})
	}
}

// TestShuffleFencing checks that a stream from another cluster, an older
// term, an unknown job, another epoch or for a partition owned by another
// worker is refused before any of its data is held.
func TestShuffleFencing(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	r.fence.jobs["wc"].Assignment.State[1].Owner = "s3"
	for _, tc := range []struct {
		name  string
		edit  func(*ShuffleTask)
		code  codes.Code
		error error
	}{
		{"wrong cluster", func(t *ShuffleTask) { t.ClusterID = "c2" }, codes.FailedPrecondition, ErrPeersDisagree},
		{"stale term", func(t *ShuffleTask) { t.Term = 2 }, codes.FailedPrecondition, ErrStaleTerm},
		{"unknown job", func(t *ShuffleTask) { t.Job = "other" }, codes.NotFound, ErrUnknownJob},
		{"stale epoch", func(t *ShuffleTask) { t.Epoch = 0 }, codes.FailedPrecondition, ErrStaleEpoch},
		{"epoch not applied yet", func(t *ShuffleTask) { t.Epoch = 2 }, codes.Unavailable, ErrStaleEpoch},
		{"partition of another owner", func(t *ShuffleTask) { t.Partition = 1 }, codes.FailedPrecondition, ErrStaleEpoch},
		{"partition out of range", func(t *ShuffleTask) { t.Partition = 2 }, codes.InvalidArgument, ErrShuffleRefused},
		{"attempt 0", func(t *ShuffleTask) { t.Attempt = 0 }, codes.InvalidArgument, ErrShuffleRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := r.task(0, 1)
			tc.edit(&task)
			err := push(context.Background(), r.cc, task, [][]byte{[]byte("partials")}, 0)
			wantCode(t, err, tc.code, tc.error.Error())
			if h := in.heldBytes(); h != 0 {
				t.Fatalf("%d bytes held", h)
			}
		})
	}
	// A newer term than the receiver's is accepted: the receiver is behind.
	task := r.task(0, 1)
	task.Term = 4
	if err := push(context.Background(), r.cc, task, [][]byte{[]byte("partials")}, 0); err != nil {
		t.Fatal(err)
	}
}

// TestShuffleAttempts checks the attempt rule: only a task's latest attempt
// counts, an older one is refused, a failed latest attempt leaves the task
// without partials until another completes, and a push after Take is
// refused.
func TestShuffleAttempts(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	ctx := context.Background()
	blocks := func(s string) [][]byte { return [][]byte{[]byte(s + "-a"), []byte(s + "-b")} }
	for _, step := range []struct {
		task    int32
		attempt uint32
		data    string
		code    codes.Code // OK: accepted
	}{
		{0, 1, "t0a1", codes.OK},
		{0, 2, "t0a2", codes.OK},            // replaces attempt 1
		{0, 1, "t0a1-again", codes.Aborted}, // older than attempt 2
		{0, 2, "t0a2-again", codes.Aborted}, // attempt 2 was opened already
		{1, 1, "t1a1", codes.OK},
	} {
		err := push(ctx, r.cc, r.task(step.task, step.attempt), blocks(step.data), 0)
		if step.code == codes.OK {
			if err != nil {
				t.Fatalf("task %d attempt %d: %v", step.task, step.attempt, err)
			}
			continue
		}
		wantCode(t, err, step.code, "superseded")
	}

	// Attempt 2 of task 1 opens and dies mid-stream: task 1 has nothing
	// complete, so Take waits, until attempt 3 completes.
	w, err := OpenShuffle(ctx, r.cc, r.task(1, 2), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock([]byte("t1a2")); err != nil {
		t.Fatal(err)
	}
	waitAttempt(t, in, 1, 2, false)
	w.Abort()
	waitAttempt(t, in, 1, 2, true)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = in.Take(short, "wc", 1, 0, 2)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "task 1 has none complete") {
		t.Fatalf("Take with task 1's latest attempt aborted = %v; want it to wait for task 1", err)
	}

	// An attempt superseded while it streams is refused when it ends.
	w, err = OpenShuffle(ctx, r.cc, r.task(1, 3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlock([]byte("t1a3")); err != nil {
		t.Fatal(err)
	}
	if err := push(ctx, r.cc, r.task(1, 4), blocks("t1a4"), 0); err != nil {
		t.Fatal(err)
	}
	wantCode(t, w.Close(), codes.Aborted, "attempt 3 of epoch 1 is superseded by attempt 4 of epoch 1")

	p := take(t, in, 2)
	if err := equalBlocks(p.Blocks, append(blocks("t0a2"), blocks("t1a4")...)); err != nil {
		t.Fatalf("Take: %v; got %q", err, p.Blocks)
	}
	wantCode(t, push(ctx, r.cc, r.task(0, 3), blocks("late"), 0), codes.FailedPrecondition, "reduced already")
	p.Release()
	waitFor(t, 5*time.Second, func() error {
		if h := in.heldBytes(); h != 0 {
			return fmt.Errorf("%d bytes held after Release", h)
		}
		return nil
	})
	if _, err := in.Take(ctx, "wc", 1, 0, 2); !errors.Is(err, ErrShuffleRefused) {
		t.Fatalf("a second Take = %v; want %v", err, ErrShuffleRefused)
	}
	in.Discard("wc", 2)
	if err := push(ctx, r.cc, r.task(0, 1), blocks("after discard"), 0); err != nil {
		t.Fatalf("a push for a discarded batch, planned again: %v", err)
	}
}

// TestShuffleFencingAtEnd checks that a stream whose Raft term or
// assignment epoch became stale while it ran is refused at its end and its
// data dropped: Take never sees it, and the task's next attempt, fenced
// with the new view, is the one taken.
func TestShuffleFencingAtEnd(t *testing.T) {
	for _, tc := range []struct {
		name        string
		term, epoch uint64
		code        codes.Code
		error       error
	}{
		{"term grew", 4, 1, codes.FailedPrecondition, ErrStaleTerm},
		{"epoch grew", 3, 2, codes.FailedPrecondition, ErrStaleEpoch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := NewInbox(0, 0)
			r := newBufconnRig(t, in)
			ctx := context.Background()
			w, err := OpenShuffle(ctx, r.cc, r.task(0, 1), 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteBlock([]byte("stale")); err != nil {
				t.Fatal(err)
			}
			waitAttempt(t, in, 0, 1, false) // the open message passed fencing
			r.fence.set(tc.term, tc.epoch)
			closeErr := w.Close()
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			p, err := in.Take(short, "wc", 1, 0, 1)
			cancel()
			if err == nil {
				t.Fatalf("Take returned the stale stream's partials %q (its Close: %v)", p.Blocks, closeErr)
			}
			wantCode(t, closeErr, tc.code, tc.error.Error())
			waitAttempt(t, in, 0, 1, true)

			fresh := r.task(0, 2)
			fresh.Term, fresh.Epoch = tc.term, tc.epoch
			if err := push(ctx, r.cc, fresh, [][]byte{[]byte("fresh")}, 0); err != nil {
				t.Fatal(err)
			}
			p = take(t, in, 1)
			defer p.Release()
			if err := equalBlocks(p.Blocks, [][]byte{[]byte("fresh")}); err != nil {
				t.Fatalf("Take: %v; got %q", err, p.Blocks)
			}
		})
	}
}

// TestShuffleAttemptsOfEpochs: a task's attempts are ordered by their
// assignment epoch first, then their number in it, however many tries an
// epoch took: attempt 1 of epoch 2 supersedes attempt 600 of epoch 1 (a
// stream still open), and only its partials are taken. Before, the
// driver numbered attempts epoch<<8|try and the Inbox compared the
// numbers: past 255 tries in an epoch a try ran into the next epoch's
// numbers (try 600 of epoch 1 was 856, above try 1 of epoch 2, 513), and
// the Inbox refused the newer epoch's attempt as superseded.
func TestShuffleAttemptsOfEpochs(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	ctx := context.Background()
	if err := push(ctx, r.cc, r.task(0, 599), [][]byte{[]byte("e1a599")}, 0); err != nil {
		t.Fatal(err)
	}
	old, err := OpenShuffle(ctx, r.cc, r.task(0, 600), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.WriteBlock([]byte("e1a600")); err != nil {
		t.Fatal(err)
	}
	waitAttempt(t, in, 0, 600, false)
	r.fence.set(3, 2)
	fresh := r.task(0, 1)
	fresh.Epoch = 2
	if err := push(ctx, r.cc, fresh, [][]byte{[]byte("e2a1")}, 0); err != nil {
		t.Fatalf("attempt 1 of epoch 2 after attempt 600 of epoch 1: %v", err)
	}
	wantCode(t, old.Close(), codes.Aborted, "attempt 600 of epoch 1 is superseded by attempt 1 of epoch 2")
	p := take(t, in, 1)
	defer p.Release()
	if err := equalBlocks(p.Blocks, [][]byte{[]byte("e2a1")}); err != nil {
		t.Fatalf("Take: %v; got %q", err, p.Blocks)
	}
}

// TestShuffleTakenByAnOlderEpoch: a push to a partition a reduce of an
// earlier epoch took is refused as one to try again (Unavailable: that
// reduce stops as its epoch passed), one of the reduce's own epoch as
// too late (FailedPrecondition); once the partition is forgotten, the
// push is taken.
func TestShuffleTakenByAnOlderEpoch(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	ctx := context.Background()
	if err := push(ctx, r.cc, r.task(0, 1), [][]byte{[]byte("e1")}, 0); err != nil {
		t.Fatal(err)
	}
	k := partKey{job: "wc", batch: 1, partition: 0}
	p, err := in.take(ctx, k, 1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	wantCode(t, push(ctx, r.cc, r.task(0, 2), [][]byte{[]byte("e1a2")}, 0), codes.FailedPrecondition, "was reduced already; attempt 2 of epoch 1")
	r.fence.set(3, 2)
	fresh := r.task(0, 1)
	fresh.Epoch = 2
	wantCode(t, push(ctx, r.cc, fresh, [][]byte{[]byte("e2")}, 0), codes.Unavailable, "is held by a reduce of epoch 1, which stops now that the job is at epoch 2")
	in.Forget("wc", 1, 0)
	if err := push(ctx, r.cc, fresh, [][]byte{[]byte("e2")}, 0); err != nil {
		t.Fatal(err)
	}
}

// waitAttempt waits until the latest attempt of task of partition 0 of
// batch 1 is n, open or (dropped) dropped.
func waitAttempt(t *testing.T, in *Inbox, task int32, n uint32, dropped bool) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		in.mu.Lock()
		defer in.mu.Unlock()
		p := in.mu.parts[partKey{job: "wc", batch: 1, partition: 0}]
		if p == nil || p.tasks[task] == nil {
			return fmt.Errorf("task %d has no attempt", task)
		}
		if a := p.tasks[task]; a.id.n != n || (a.drop != nil) != dropped {
			return fmt.Errorf("task %d: %v, dropped: %v", task, a.id, a.drop)
		}
		return nil
	})
}

// heldBytes reports the bytes held.
func (in *Inbox) heldBytes() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.mu.held
}

// rawPush sends msgs on a Push stream as they are, then closes it.
func rawPush(r *shuffleRig, msgs ...*clusterpb.ShuffleMessage) error {
	stream, err := clusterpb.NewShuffleClient(r.cc).Push(context.Background(), grpc.CallContentSubtype(shuffleCodecName))
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

// TestShuffleTruncated checks that a stream cut short or damaged is refused
// with DataLoss and its data dropped.
func TestShuffleTruncated(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	block := bytes.Repeat([]byte("x"), 1000)
	var stream bytes.Buffer // one block, as WriteBlock frames it
	stream.Write([]byte{blockV1, 0xe8, 0x07})
	stream.Write(block)
	full := stream.Bytes()
	open := func(attempt uint32) *clusterpb.ShuffleMessage {
		task := r.task(0, attempt)
		return &clusterpb.ShuffleMessage{Kind: &clusterpb.ShuffleMessage_Open{Open: &clusterpb.ShuffleOpen{
			Header: &clusterpb.Header{ClusterId: task.ClusterID, Term: task.Term, From: task.From, Epoch: task.Epoch},
			Job:    task.Job, Batch: task.Batch, Partition: task.Partition, Task: task.Task, Attempt: task.Attempt,
		}}}
	}
	data := func(b []byte) *clusterpb.ShuffleMessage {
		return &clusterpb.ShuffleMessage{Kind: &clusterpb.ShuffleMessage_Data{Data: b}}
	}
	end := func(blocks, n uint64, crc uint32) *clusterpb.ShuffleMessage {
		return &clusterpb.ShuffleMessage{Kind: &clusterpb.ShuffleMessage_End{End: &clusterpb.ShuffleEnd{Blocks: blocks, Bytes: n, Crc32C: crc}}}
	}
	crc := func(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
	n := uint64(len(full))
	for i, tc := range []struct {
		name string
		msgs []*clusterpb.ShuffleMessage
		want string
	}{
		{"no end", []*clusterpb.ShuffleMessage{data(full)}, "ended without its end message after 1003 bytes"},
		{"end inside a block", []*clusterpb.ShuffleMessage{data(full[:500]), end(1, 500, crc(full[:500]))}, "ends inside a block"},
		{"end inside a header", []*clusterpb.ShuffleMessage{data(full[:2]), end(1, 2, crc(full[:2]))}, "ends inside a block"},
		{"a message lost", []*clusterpb.ShuffleMessage{data(full[:500]), end(1, n, crc(full))}, "ends inside a block"},
		{"fewer blocks", []*clusterpb.ShuffleMessage{data(full), end(2, n, crc(full))}, "2 blocks, 1003 bytes were sent, 1, 1003 received"},
		{"damaged", []*clusterpb.ShuffleMessage{data(full), end(1, n, crc(full)^1)}, "checksum"},
		{"unknown format", []*clusterpb.ShuffleMessage{data(append([]byte{2}, full[1:]...))}, "block format 2 is not known here"},
		{"open twice", []*clusterpb.ShuffleMessage{open(99)}, "a second open message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := append([]*clusterpb.ShuffleMessage{open(uint32(i + 1))}, tc.msgs...)
			err := rawPush(r, msgs...)
			st := status.Convert(err)
			if err == nil || (st.Code() != codes.DataLoss && st.Code() != codes.InvalidArgument) || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("push = %v; want DataLoss or InvalidArgument with %q", err, tc.want)
			}
			waitFor(t, 5*time.Second, func() error {
				if h := in.heldBytes(); h != 0 {
					return fmt.Errorf("%d bytes held", h)
				}
				return nil
			})
		})
	}
	// The stream as sent whole is accepted, and only it.
	if err := rawPush(r, open(100), data(full[:1]), data(full[1:]), end(1, n, crc(full))); err != nil {
		t.Fatal(err)
	}
	p := take(t, in, 1)
	defer p.Release()
	if err := equalBlocks(p.Blocks, [][]byte{block}); err != nil {
		t.Fatal(err)
	}
}

// TestShuffleReceiverFails stops the receiver while a map task streams: the
// writer gets an error, and the receiver holds nothing of the attempt.
func TestShuffleReceiverFails(t *testing.T) {
	in := NewInbox(0, 0)
	r := newBufconnRig(t, in)
	w, err := OpenShuffle(context.Background(), r.cc, r.task(0, 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for i := 0; ; i++ {
		if i == 10 {
			r.server.Stop()
		}
		if err = w.WriteBlock(block); err != nil {
			break
		}
		if i > 100000 {
			t.Fatal("writes go on after the receiver stopped")
		}
	}
	if code := status.Code(err); code != codes.Unavailable && code != codes.Canceled {
		t.Fatalf("writer error %v (code %v); want Unavailable", err, code)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close succeeded after the receiver stopped")
	}
	waitFor(t, 5*time.Second, func() error {
		if h := in.heldBytes(); h != 0 {
			return fmt.Errorf("%d bytes held", h)
		}
		return nil
	})
}

// TestShuffleFlowControl checks the receiver's memory budget: a stream that
// would exceed it waits, and fails with ResourceExhausted when nothing is
// released in time; once memory is released, it goes on.
func TestShuffleFlowControl(t *testing.T) {
	in := NewInbox(128<<10, 200*time.Millisecond)
	r := newBufconnRig(t, in)
	ctx := context.Background()
	big := [][]byte{make([]byte, 100<<10)}
	if err := push(ctx, r.cc, r.task(0, 1), big, 64<<10); err != nil {
		t.Fatal(err)
	}
	other := r.task(0, 1)
	other.Partition = 1
	wantCode(t, push(ctx, r.cc, other, big, 64<<10), codes.ResourceExhausted, "budget is 131072")

	// With a longer wait, the stream goes on once Take's caller releases.
	in.wait = time.Minute
	other.Attempt = 2
	done := make(chan error, 1)
	go func() { done <- push(ctx, r.cc, other, big, 64<<10) }()
	p := take(t, in, 1)
	p.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h := in.heldBytes(); h > 128<<10 {
		t.Fatalf("%d bytes held, over the budget", h)
	}
}
