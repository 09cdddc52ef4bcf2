package cluster

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// shuffleCodecName is the content-subtype of every call between workers
// (peerDialOptions), Push streams included. Their messages are protobuf's
// wire format, encoded and decoded in buffers of shuffleBufferPool, which,
// unlike gRPC's proto codec's, are not zeroed first. A Push stream's are
// ShuffleMessages sent and received as shuffleFrames: a data message's
// bytes travel in a buffer of shuffleBufferPool that passes from the
// writer to gRPC's transport, which frees it back to the pool once written
// (no copy to encode it), and on the receiving side are copied once from
// the transport into a pooled buffer that the Inbox gives back when its
// partials are released (gRPC's proto codec copies them twice, into
// buffers it allocates or zeroes).
const shuffleCodecName = "gostream-shuffle"

func init() { encoding.RegisterCodecV2(shuffleCodec{}) }

// shuffleFrame is one message of a Push stream: data, a pooled buffer whose
// ownership passes with the frame, or another message.
type shuffleFrame struct {
	data *[]byte
	msg  *clusterpb.ShuffleMessage
}

// shuffleCodec encodes shuffleFrames and other protobuf messages.
type shuffleCodec struct{}

func (shuffleCodec) Name() string { return shuffleCodecName }

// dataTag is the tag of ShuffleMessage's data field.
var dataTag = protowire.EncodeTag(2, protowire.BytesType)

func (shuffleCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*shuffleFrame)
	switch {
	case !ok:
		return marshalProto(v)
	case f.data == nil:
		return marshalProto(f.msg)
	}
	hdr := protowire.AppendTag(make([]byte, 0, 1+binary.MaxVarintLen64), 2, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(len(*f.data)))
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(f.data, shuffleBufferPool)}, nil
}

func (shuffleCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*shuffleFrame)
	if !ok {
		return unmarshalProto(data, v)
	}
	*f = shuffleFrame{}
	r := data.Reader()
	defer r.Close()
	if tag, err := binary.ReadUvarint(r); err == nil && tag == dataTag {
		if n, err := binary.ReadUvarint(r); err == nil && n == uint64(r.Remaining()) {
			f.data = shuffleBufferPool.Get(int(n))
			if _, err := io.ReadFull(r, *f.data); err != nil {
				return fmt.Errorf("cluster: reading a shuffle data message: %w", err)
			}
			return nil
		}
	}
	f.msg = &clusterpb.ShuffleMessage{}
	if err := unmarshalProto(data, f.msg); err != nil {
		return err
	}
	if d, ok := f.msg.Kind.(*clusterpb.ShuffleMessage_Data); ok { // encoded otherwise than by Marshal
		buf := shuffleBufferPool.Get(len(d.Data))
		copy(*buf, d.Data)
		*f = shuffleFrame{data: buf}
	}
	return nil
}

// aliasFrom is the size from which marshalProto sends a bytes field by
// reference.
const aliasFrom = 64 << 10

// marshalProto encodes v, a protobuf message, as gRPC's proto codec does,
// but a message gRPC would pool the buffer of goes in a buffer of
// shuffleBufferPool, which Marshal fills whole, and a singular bytes field
// of aliasFrom bytes or more at the message's top level (a record) is not
// copied: the encoding refers to it, placed after the other fields, until
// gRPC has written it. So the caller must leave such a field's bytes as
// they are until the call ends, as the messages it sends (gRPC may read a
// message after SendMsg returns).
func marshalProto(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cluster: %T is not a protobuf message", v)
	}
	opts := proto.MarshalOptions{UseCachedSize: true} // the size Size just cached
	size := proto.Size(m)
	if size >= aliasFrom {
		if fd, b := largeBytes(m); fd != nil {
			return marshalAliasing(m, fd, b)
		}
	}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := shuffleBufferPool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err == nil && len(b) != size {
		err = fmt.Errorf("cluster: a %T encoded to %d bytes, its size being %d (was it changed while sent?)", v, len(b), size)
	}
	if err != nil {
		shuffleBufferPool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, shuffleBufferPool)}, nil
}

// largeBytes returns m's first singular bytes field of aliasFrom bytes or
// more, and its bytes; nil if it has none.
func largeBytes(m proto.Message) (fd protoreflect.FieldDescriptor, b []byte) {
	m.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f.Kind() == protoreflect.BytesKind && f.Cardinality() != protoreflect.Repeated && len(v.Bytes()) >= aliasFrom {
			fd, b = f, v.Bytes()
			return false
		}
		return true
	})
	return fd, b
}

// marshalAliasing encodes m with its field fd, whose bytes are b, as a
// reference to b after m's other fields.
func marshalAliasing(m proto.Message, fd protoreflect.FieldDescriptor, b []byte) (mem.BufferSlice, error) {
	src := m.ProtoReflect()
	rest := src.New()
	src.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f != fd {
			rest.Set(f, v)
		}
		return true
	})
	rest.SetUnknown(src.GetUnknown())
	head, err := proto.Marshal(rest.Interface())
	if err != nil {
		return nil, err
	}
	head = protowire.AppendTag(head, fd.Number(), protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(b)))
	return mem.BufferSlice{mem.SliceBuffer(head), mem.SliceBuffer(b)}, nil
}

// unmarshalProto decodes data into v, a protobuf message, joining data's
// buffers, if more than one, in a buffer of shuffleBufferPool, but for a
// message that is one large bytes field alone (decodeBytesField).
func unmarshalProto(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("cluster: %T is not a protobuf message", v)
	}
	if data.Len() >= aliasFrom && decodeBytesField(data, m) {
		return nil
	}
	buf := data.MaterializeToBuffer(shuffleBufferPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// dirtyPool is the buffer pool of the shuffle's codec and of a worker's
// gRPC transport: power-of-two classes of buffers that, unlike gRPC's
// default pool, it does not zero when it hands one out again (its users
// write every byte they read). Buffers of keepFrom bytes or more wait on
// free lists of at most keepBytes in all, which garbage collections leave
// alone: a sync.Pool drops what waited through two of them, as a buffer of
// one batch often did by the next batch; smaller ones wait in sync.Pools.
// Safe for concurrent use.
type dirtyPool struct {
	classes [31]sync.Pool
	mu      struct {
		sync.Mutex
		free  [31][]*[]byte
		bytes int // in free
	}
}

const (
	keepFrom  = 64 << 10
	keepBytes = 64 << 20
)

var shuffleBufferPool = &dirtyPool{}

// class returns the smallest class whose buffers hold n bytes.
func (p *dirtyPool) class(n int) int { return bits.Len(uint(max(n, 1) - 1)) }

// Get returns a buffer of length n.
func (p *dirtyPool) Get(n int) *[]byte {
	c := p.class(n)
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if b := p.take(c); b != nil {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// take returns a free buffer of class c, nil if none waits.
func (p *dirtyPool) take(c int) *[]byte {
	if 1<<c < keepFrom {
		b, _ := p.classes[c].Get().(*[]byte)
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	free := p.mu.free[c]
	if len(free) == 0 {
		return nil
	}
	b := free[len(free)-1]
	free[len(free)-1] = nil
	p.mu.free[c] = free[:len(free)-1]
	p.mu.bytes -= cap(*b)
	return b
}

// Put keeps b for a later Get, unless the free lists are full.
func (p *dirtyPool) Put(b *[]byte) {
	c := p.class(cap(*b))
	switch {
	case c >= len(p.classes) || cap(*b) != 1<<c:
	case cap(*b) < keepFrom:
		p.classes[c].Put(b)
	default:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.mu.bytes+cap(*b) <= keepBytes {
			p.mu.free[c] = append(p.mu.free[c], b)
			p.mu.bytes += cap(*b)
		}
	}
}

// decodeBytesField decodes data into m if data is one singular bytes field
// of m and nothing else, as a message carrying a record alone encodes,
// copying its bytes once, from data into memory of the field's own (where
// proto.Unmarshal needs data joined first, and copies again). It reports
// whether it did; if not, m is as it was.
func decodeBytesField(data mem.BufferSlice, m proto.Message) bool {
	r := data.Reader()
	defer r.Close()
	tag, err := binary.ReadUvarint(r)
	if err != nil {
		return false
	}
	num, typ := protowire.DecodeTag(tag)
	n, err := binary.ReadUvarint(r)
	if err != nil || typ != protowire.BytesType || !num.IsValid() || n != uint64(r.Remaining()) {
		return false
	}
	msg := m.ProtoReflect()
	fd := msg.Descriptor().Fields().ByNumber(num)
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.Cardinality() == protoreflect.Repeated {
		return false
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return false
	}
	proto.Reset(m)
	msg.Set(fd, protoreflect.ValueOfBytes(b))
	return true
}
