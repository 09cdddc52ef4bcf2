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
)

// shuffleCodecName is the content-subtype of Push streams. Their messages
// are ShuffleMessages in protobuf's wire format, sent and received as
// shuffleFrames: a data message's bytes travel in a buffer of
// shuffleBufferPool that passes from the writer to gRPC's transport, which
// frees it back to the pool once written (no copy to encode it), and on the
// receiving side are copied once from the transport into a pooled buffer
// that the Inbox gives back when its partials are released (gRPC's proto
// codec copies them twice, into buffers it allocates or zeroes).
const shuffleCodecName = "gostream-shuffle"

func init() { encoding.RegisterCodecV2(shuffleCodec{}) }

// shuffleFrame is one message of a Push stream: data, a pooled buffer whose
// ownership passes with the frame, or another message.
type shuffleFrame struct {
	data *[]byte
	msg  *clusterpb.ShuffleMessage
}

// shuffleCodec encodes shuffleFrames; other messages (the stream's
// response) go to gRPC's proto codec.
type shuffleCodec struct{}

func (shuffleCodec) Name() string { return shuffleCodecName }

// dataTag is the tag of ShuffleMessage's data field.
var dataTag = protowire.EncodeTag(2, protowire.BytesType)

func (shuffleCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*shuffleFrame)
	switch {
	case !ok:
		return protoCodec().Marshal(v)
	case f.data == nil:
		return protoCodec().Marshal(f.msg)
	}
	hdr := protowire.AppendTag(make([]byte, 0, 1+binary.MaxVarintLen64), 2, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(len(*f.data)))
	return mem.BufferSlice{mem.SliceBuffer(hdr), mem.NewBuffer(f.data, shuffleBufferPool)}, nil
}

func (shuffleCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*shuffleFrame)
	if !ok {
		return protoCodec().Unmarshal(data, v)
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
	if err := protoCodec().Unmarshal(data, f.msg); err != nil {
		return err
	}
	if d, ok := f.msg.Kind.(*clusterpb.ShuffleMessage_Data); ok { // encoded otherwise than by Marshal
		buf := shuffleBufferPool.Get(len(d.Data))
		copy(*buf, d.Data)
		*f = shuffleFrame{data: buf}
	}
	return nil
}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

// dirtyPool is the buffer pool of the shuffle's codec and of a worker's
// gRPC transport: power-of-two classes of sync.Pools that, unlike gRPC's
// default pool, do not zero a buffer they hand out again (its users write
// every byte they read).
type dirtyPool struct {
	classes [31]sync.Pool
}

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
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put keeps b for a later Get.
func (p *dirtyPool) Put(b *[]byte) {
	c := p.class(cap(*b))
	if c < len(p.classes) && cap(*b) == 1<<c {
		p.classes[c].Put(b)
	}
}
