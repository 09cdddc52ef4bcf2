package kafkasrc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// decompressor decodes lz4 record batches straight into the returned slice
// and leaves other codecs to franz-go's default decompressor. franz-go's own
// lz4 path streams through a pooled lz4 reader, whose block buffer is as
// large as the frame declares (4 MiB for frames written by franz-go, one per
// concurrent fetch, so 16 MiB of heap held in pools), into a pooled buffer
// that is then copied out: two copies of every decompressed byte.
//
// The frames' xxh32 checksums are not verified: franz-go has already checked
// the record batch's CRC-32C, which covers the compressed bytes.
type decompressor struct {
	fallback kgo.Decompressor
	// ratio is the last batch's decompressed/compressed size, in
	// sixteenths, at most maxRatio: it sizes the output of the next.
	ratio atomic.Int64
}

const maxRatio = 16 * 16

func newDecompressor() *decompressor {
	d := &decompressor{fallback: kgo.DefaultDecompressor()}
	d.ratio.Store(4 * 16)
	return d
}

// maxDecompressed bounds what one record batch may decompress to, as
// franz-go's default does (a batch is at most a few MiB compressed; a frame
// that claims more is corrupt or hostile).
const maxDecompressed = 1 << 30

var errLz4 = errors.New("lz4")

func (d *decompressor) Decompress(src []byte, codec kgo.CompressionCodecType) ([]byte, error) {
	out, _, err := d.into(nil, src, codec)
	return out, err
}

// into decompresses src into dst's memory (grown if need be) when it
// decodes the codec itself (lz4), and reports whether it did; franz-go
// decodes the others into memory of its own.
func (d *decompressor) into(dst, src []byte, codec kgo.CompressionCodecType) (out []byte, inDst bool, err error) {
	if codec != kgo.CodecLz4 {
		out, err = d.fallback.Decompress(src, codec)
		return out, false, err
	}
	out, err = d.lz4Into(dst, src)
	if errors.Is(err, errUnsupportedFrame) {
		out, err = d.fallback.Decompress(src, codec)
		return out, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", errLz4, err)
	}
	if len(src) > 0 {
		d.ratio.Store(min(maxRatio, max(16, int64(16*len(out)/len(src)))))
	}
	return out, true, nil
}

// errUnsupportedFrame marks frames this decoder leaves to franz-go: legacy
// and skippable frames, and frames whose blocks refer to a dictionary or to
// earlier blocks.
var errUnsupportedFrame = errors.New("unsupported lz4 frame")

const (
	lz4Magic       = 0x184D2204
	flagVersion    = 0xC0
	flagIndep      = 0x20
	flagBlockSum   = 0x10
	flagSize       = 0x08
	flagContentSum = 0x04
	flagDictID     = 0x01
	blockRaw       = 1 << 31
)

// lz4Into decodes the lz4 frames of src, one after another, into one
// slice in dst's memory, grown if need be.
func (d *decompressor) lz4Into(dst, src []byte) ([]byte, error) {
	// A guess a quarter above the running ratio: a short one costs
	// decoding a block again into a larger slice.
	guess := min(maxDecompressed, 1024+int(d.ratio.Load())*len(src)*5/64)
	out := dst[:0]
	if cap(out) < guess {
		// A quarter more again: the memory serves later batches (the
		// caller keeps it), whose guesses vary with their sizes.
		out = make([]byte, 0, min(maxDecompressed, guess+guess/4))
	}
	for len(src) > 0 {
		var err error
		if out, src, err = lz4Frame(out, src); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lz4Frame appends the content of the frame at the start of src to out and
// returns the bytes after the frame.
func lz4Frame(out, src []byte) ([]byte, []byte, error) {
	if len(src) < 7 {
		return nil, nil, errors.New("truncated frame header")
	}
	if binary.LittleEndian.Uint32(src) != lz4Magic {
		return nil, nil, errUnsupportedFrame
	}
	flg, bd := src[4], src[5]
	if flg&flagVersion != 0x40 || flg&0x02 != 0 || bd&0x8F != 0 {
		return nil, nil, fmt.Errorf("bad frame descriptor %#x %#x", flg, bd)
	}
	if flg&flagDictID != 0 || flg&flagIndep == 0 {
		return nil, nil, errUnsupportedFrame // Kafka's and franz-go's producers write neither
	}
	blockMax := 1 << (8 + 2*int(bd>>4)) // 4: 64 KiB ... 7: 4 MiB
	if bd>>4 < 4 {
		return nil, nil, fmt.Errorf("bad block size code %d", bd>>4)
	}
	pos, contentSize := 6, -1
	if flg&flagSize != 0 {
		if len(src) < pos+8+1 {
			return nil, nil, errors.New("truncated frame header")
		}
		size := binary.LittleEndian.Uint64(src[pos:])
		if size > maxDecompressed {
			return nil, nil, fmt.Errorf("frame declares %d bytes, more than %d", size, maxDecompressed)
		}
		contentSize = int(size)
		out = slices.Grow(out, contentSize)
		pos += 8
	}
	pos++ // header checksum
	start := len(out)
	for {
		if len(src) < pos+4 {
			return nil, nil, errors.New("truncated block header")
		}
		size := binary.LittleEndian.Uint32(src[pos:])
		pos += 4
		if size == 0 { // end mark
			break
		}
		raw, n := size&blockRaw != 0, int(size&^blockRaw)
		if n > blockMax || len(src)-pos < n {
			return nil, nil, fmt.Errorf("block of %d bytes: frame blocks hold at most %d and %d are left", n, blockMax, len(src)-pos)
		}
		block := src[pos : pos+n]
		pos += n
		if flg&flagBlockSum != 0 {
			pos += 4
		}
		if len(out)-start+blockMax > maxDecompressed {
			return nil, nil, fmt.Errorf("frame decompresses to more than %d bytes", maxDecompressed)
		}
		if raw {
			out = append(out, block...)
			continue
		}
		for {
			k, err := lz4.UncompressBlock(block, out[len(out):cap(out)])
			if err == nil {
				out = out[:len(out)+k]
				break
			}
			free := cap(out) - len(out)
			if free >= blockMax {
				return nil, nil, fmt.Errorf("block: %w", err)
			}
			out = slices.Grow(out, min(blockMax, 2*free+4096)) // the size guess was short
		}
	}
	if flg&flagContentSum != 0 {
		pos += 4
	}
	if pos > len(src) {
		return nil, nil, errors.New("truncated frame checksum")
	}
	if contentSize >= 0 && len(out)-start != contentSize {
		return nil, nil, fmt.Errorf("frame declares %d bytes and holds %d", contentSize, len(out)-start)
	}
	return out, src[pos:], nil
}
