package kafkasrc

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/internal/testseed"
)

// lz4Compress writes data as one lz4 frame with pierrec/lz4, the encoder
// franz-go's producer uses.
func lz4Compress(t testing.TB, data []byte, opts ...lz4.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// logText returns n bytes of repetitive log-like text.
func logText(r *rand.Rand, n int) []byte {
	words := []string{"INFO", "WARN", "request", "served", "in", "ms", "user", "id", "the", "a", "cache", "miss"}
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
		if r.IntN(10) == 0 {
			b = fmt.Appendf(b, "%d\n", r.IntN(100000))
		}
	}
	return b[:n]
}

// TestLz4Decompress checks the decoder against pierrec/lz4's encoder with
// every block size and flag it writes, on compressible and incompressible
// data (raw blocks), from empty to several blocks long, and on two frames
// back to back.
func TestLz4Decompress(t *testing.T) {
	r := testseed.Rand(t)
	random := make([]byte, 300_000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	inputs := map[string][]byte{"empty": {}, "byte": {'x'}, "text": logText(r, 5<<20), "random": random,
		"mixed": append(logText(r, 100_000), random[:100_000]...)}
	sizes := []lz4.BlockSize{lz4.Block64Kb, lz4.Block256Kb, lz4.Block1Mb, lz4.Block4Mb}
	d := newDecompressor()
	for name, in := range inputs {
		for _, size := range sizes {
			for _, sums := range []bool{false, true} {
				opts := []lz4.Option{lz4.BlockSizeOption(size), lz4.ChecksumOption(sums), lz4.BlockChecksumOption(sums)}
				if sums {
					opts = append(opts, lz4.SizeOption(uint64(len(in))))
				}
				t.Run(fmt.Sprintf("%s/%s/sums=%v", name, size, sums), func(t *testing.T) {
					got, err := d.Decompress(lz4Compress(t, in, opts...), kgo.CodecLz4)
					if err != nil || !bytes.Equal(got, in) {
						t.Fatalf("got %d bytes, %v; want %d bytes", len(got), err, len(in))
					}
				})
			}
		}
	}
	two := append(lz4Compress(t, inputs["text"][:1000]), lz4Compress(t, inputs["random"][:1000])...)
	got, err := d.Decompress(two, kgo.CodecLz4)
	if want := append(inputs["text"][:1000:1000], inputs["random"][:1000]...); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("two frames: got %d bytes, %v; want %d", len(got), err, len(want))
	}
}

// TestLz4DecompressOtherCodecs checks that other codecs and unsupported
// lz4 frames go to franz-go's decoder.
func TestLz4DecompressOtherCodecs(t *testing.T) {
	d := newDecompressor()
	in := []byte("plain bytes")
	if got, err := d.Decompress(in, kgo.CodecNone); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("none: %q, %v", got, err)
	}
	legacy := lz4Compress(t, in, lz4.LegacyOption(true))
	if got, err := d.Decompress(legacy, kgo.CodecLz4); err != nil || !bytes.Equal(got, in) {
		t.Fatalf("legacy frame: %q, %v", got, err)
	}
}

// TestLz4DecompressCorrupt checks that truncated and damaged frames are
// errors, not panics or silently short data.
func TestLz4DecompressCorrupt(t *testing.T) {
	r := testseed.Rand(t)
	in := logText(r, 200_000)
	frame := lz4Compress(t, in, lz4.BlockSizeOption(lz4.Block64Kb), lz4.SizeOption(uint64(len(in))))
	d := newDecompressor()
	for _, n := range []int{0, 3, 6, 7, 12, 100, len(frame) / 2, len(frame) - 1} {
		if _, err := d.Decompress(frame[:n], kgo.CodecLz4); err == nil && n > 0 {
			t.Errorf("frame cut to %d of %d bytes decoded without error", n, len(frame))
		}
	}
	bad := bytes.Clone(frame)
	bad[5] = 0x30 // block size code 3: reserved
	if _, err := d.Decompress(bad, kgo.CodecLz4); err == nil {
		t.Error("reserved block size decoded without error")
	}
	bad = bytes.Clone(frame)
	bad[len(bad)-9] ^= 0xff // inside the last block
	if got, err := d.Decompress(bad, kgo.CodecLz4); err == nil && bytes.Equal(got, in) {
		t.Error("damaged block decoded to the original")
	}
}

// FuzzLz4Decompress checks that no input panics the decoder, and that
// whatever both decoders accept decodes the same.
func FuzzLz4Decompress(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(lz4Compress(f, logText(r, 1000)))
	f.Add(lz4Compress(f, logText(r, 70_000), lz4.BlockSizeOption(lz4.Block64Kb), lz4.SizeOption(70_000)))
	d := newDecompressor()
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := d.Decompress(src, kgo.CodecLz4)
		if err != nil {
			return
		}
		want, werr := io.ReadAll(lz4.NewReader(bytes.NewReader(src)))
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes, pierrec/lz4 decoded %d", len(got), len(want))
		}
	})
}

// BenchmarkLz4Decompress compares the decoder with franz-go's default on
// 1 MiB record batches of log text written by franz-go's encoder (4 MiB
// blocks).
func BenchmarkLz4Decompress(b *testing.B) {
	in := logText(rand.New(rand.NewPCG(7, 8)), 1<<20)
	src := lz4Compress(b, in)
	for _, c := range []struct {
		name string
		d    kgo.Decompressor
	}{{"kafkasrc", newDecompressor()}, {"franz-go", kgo.DefaultDecompressor()}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.d.Decompress(src, kgo.CodecLz4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
