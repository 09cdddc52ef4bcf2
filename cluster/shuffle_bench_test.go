package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// Shuffle throughput of one stream over loopback TCP, beside a plain TCP
// connection carrying the same bytes. Run, alternating, with
//
//	go test -run '^$' -bench 'BenchmarkShuffle' -count 5 ./cluster
//
// and compare the raw-tcp MB/s with each grpc one.

// benchBlocks returns exchange buckets as a word count's map task flushes
// them for one partition: 64 blocks of about 4,000 groups each, a group
// being a key (a flag byte and a word of 3 to 12 letters) and its count.
func benchBlocks() (blocks [][]byte, total int) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 64 {
		var b []byte
		for range 4000 {
			word := make([]byte, 1+3+rng.IntN(10))
			word[0] = 1
			for i := 1; i < len(word); i++ {
				word[i] = 'a' + byte(rng.IntN(26))
			}
			b = binary.AppendUvarint(b, uint64(len(word)))
			b = append(b, word...)
			b = binary.AppendUvarint(b, uint64(1+rng.IntN(1000)))
		}
		blocks = append(blocks, b)
		total += len(b)
	}
	return blocks, total
}

func BenchmarkShuffle(b *testing.B) {
	blocks, total := benchBlocks()
	b.Run("raw-tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 256<<10)
			for {
				// Read one op's bytes, then acknowledge them.
				for got := 0; got < total; {
					n, err := c.Read(buf)
					if err != nil {
						done <- nil // the client closed
						return
					}
					got += n
				}
				if _, err := c.Write([]byte{1}); err != nil {
					done <- err
					return
				}
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		ack := make([]byte, 1)
		b.SetBytes(int64(total))
		b.ResetTimer()
		for b.Loop() {
			for _, blk := range blocks {
				if _, err := c.Write(blk); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(c, ack); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		c.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	})
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("grpc-%dKiB", size>>10), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			in := NewInbox(1<<30, 0)
			r := newShuffleRig(b, ln, in)
			ctx := context.Background()
			b.SetBytes(int64(total))
			b.ReportAllocs()
			batch := int64(0)
			for b.Loop() {
				batch++
				task := r.task(0, 1)
				task.Batch = batch
				if err := push(ctx, r.cc, task, blocks, size); err != nil {
					b.Fatal(err)
				}
				p, err := in.Take(ctx, "wc", batch, 0, 1)
				if err != nil {
					b.Fatal(err)
				}
				p.Release()
				in.Discard("wc", batch)
			}
		})
	}
}
