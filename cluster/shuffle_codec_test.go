package cluster

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestDirtyPoolKeepsLargeBuffers checks that a buffer of keepFrom bytes or
// more given back to the pool serves a later Get of its class after two
// garbage collections (which empty a sync.Pool), that the free lists hold
// at most keepBytes, and that Get hands out buffers of the length asked.
func TestDirtyPoolKeepsLargeBuffers(t *testing.T) {
	p := &dirtyPool{}
	b := p.Get(1 << 20)
	if len(*b) != 1<<20 || cap(*b) != 1<<20 {
		t.Fatalf("Get(1 MiB): len %d cap %d", len(*b), cap(*b))
	}
	p.Put(b)
	runtime.GC()
	runtime.GC()
	if again := p.Get(1<<20 - 5); again != b || len(*again) != 1<<20-5 {
		t.Fatalf("Get after two GCs returned another buffer (len %d); want the one put, of length 1 MiB - 5", len(*again))
	}
	if other := p.Get(1 << 19); other == b {
		t.Fatal("Get of a smaller class returned a buffer that was handed out")
	}

	var bufs []*[]byte
	for range 2 * keepBytes / (1 << 20) {
		bufs = append(bufs, p.Get(1<<20))
	}
	for _, b := range bufs {
		p.Put(b)
	}
	p.mu.Lock()
	held, n := p.mu.bytes, len(p.mu.free[20])
	p.mu.Unlock()
	if held != keepBytes || n != keepBytes/(1<<20) {
		t.Fatalf("after putting %d MiB the free lists hold %d bytes in %d buffers; want %d bytes", 2*keepBytes>>20, held, n, keepBytes)
	}
	// A buffer of another size than its class's is not kept.
	odd := make([]byte, 100<<10)
	p.Put(&odd)
	if got := p.Get(100 << 10); got == &odd {
		t.Fatal("Get returned a buffer whose capacity is not its class's")
	}
}

// TestPeerCodecProto checks that the shuffle's codec, which every call
// between workers uses, encodes and decodes protobuf messages as gRPC's
// proto codec does, small and large ones, in pooled buffers that held other
// bytes before, decodes a message that arrives in several buffers (one
// large bytes field alone without joining them first), and sends a large
// bytes field by reference.
func TestPeerCodecProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	// Dirty every buffer class the messages below use.
	for _, n := range []int{2 << 10, 64 << 10, 2 << 20, 4 << 20} {
		b := shuffleBufferPool.Get(n)
		for i := range *b {
			(*b)[i] = 0xee
		}
		shuffleBufferPool.Put(b)
	}
	for _, size := range []int{0, 100, 1500, 100 << 10, 3 << 20} {
		rec := make([]byte, size)
		for i := range rec {
			rec[i] = byte(rng.Uint32())
		}
		msg := &clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Groups{Groups: rec}}
		want, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		data, err := shuffleCodec{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("a message of %d record bytes encodes to %d bytes unlike proto.Marshal's %d", size, len(got), len(want))
		}
		data.Free()
		// As the transport hands it over: in pieces of up to 16 KiB.
		var pieces mem.BufferSlice
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(16<<10))
			pieces = append(pieces, mem.SliceBuffer(rest[:n]))
			rest = rest[n:]
		}
		got := &clusterpb.ReduceResponse{Kind: &clusterpb.ReduceResponse_Changes{Changes: []byte("stale")}}
		if err := (shuffleCodec{}).Unmarshal(pieces, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.GetGroups(), rec) || got.GetChanges() != nil {
			t.Fatalf("a message of %d record bytes decodes to %d other bytes (%v)", size, len(got.GetGroups()), got)
		}
		// A field of a oneof is encoded even when empty.
		if direct := decodeBytesField(pieces, new(clusterpb.ReduceResponse)); !direct {
			t.Errorf("a message of %d record bytes: decoded without joining its buffers %v; want it done for a record alone", size, direct)
		}
	}
	// A large bytes field beside others, in a oneof and not: sent by
	// reference to its bytes, after the other fields.
	plan := make([]byte, aliasFrom)
	for i := range plan {
		plan[i] = byte(rng.Uint32())
	}
	job := shuffleJob()
	job.Plan = plan
	for _, msg := range []proto.Message{job, &clusterpb.ReplicateMessage{Kind: &clusterpb.ReplicateMessage_Record{Record: plan}}} {
		data, err := shuffleCodec{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if last := data[len(data)-1].ReadOnlyData(); &last[0] != &plan[0] {
			t.Errorf("a %T's %d bytes field was copied; want it sent by reference", msg, len(plan))
		}
		got := msg.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, msg) {
			t.Errorf("a %T decodes to another message", msg)
		}
		got = msg.ProtoReflect().New().Interface()
		if err := (shuffleCodec{}).Unmarshal(data, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, msg) {
			t.Errorf("a %T decodes to another message with the codec", msg)
		}
	}
	if _, err := (shuffleCodec{}).Marshal("not a message"); err == nil {
		t.Error("encoding a string: no error")
	}
}
