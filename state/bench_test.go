package state_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gostream/gostream/state"
)

// Benchmarks of the Pebble store's hot paths. Run with
//
//	go test ./state -run '^$' -bench Pebble -benchtime 20x -count 5
//
// Keys look like words of a word count (11 bytes), values are 8-byte counts.

const benchKeys = 10_000

func benchKey(dst []byte, i int) []byte { return fmt.Appendf(dst[:0], "word%07d", i) }

func openBenchStore(b *testing.B) state.Store {
	b.Helper()
	return openBenchStoreWith(b, testOptions())
}

func openBenchStoreWith(b *testing.B, opts state.Options) state.Store {
	b.Helper()
	p, err := state.OpenPebble(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	s, err := p.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fill commits keys [0, n) as version 0.
func fill(b *testing.B, s state.Store, n int) {
	b.Helper()
	var key []byte
	value := make([]byte, 8)
	for i := range n {
		key = benchKey(key, i)
		if err := s.Put(key, value); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Commit(0); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPebbleCommit10k is one reduce task's batch: for each of 10k keys,
// Get the old count and Put the new one, then Commit (synced). "update"
// touches the same keys every version, "insert" new keys every version.
func BenchmarkPebbleCommit10k(b *testing.B) {
	for _, mode := range []string{"update", "insert"} {
		b.Run(mode, func(b *testing.B) {
			s := openBenchStore(b)
			var key []byte
			value := make([]byte, 8)
			b.SetBytes(benchKeys * int64(len(benchKey(nil, 0))+len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			for v := range int64(b.N) {
				for i := range benchKeys {
					if mode == "insert" {
						i += int(v) * benchKeys
					}
					key = benchKey(key, i)
					old, _, err := s.Get(key)
					if err != nil {
						b.Fatal(err)
					}
					var n uint64
					if len(old) == 8 {
						n = binary.BigEndian.Uint64(old)
					}
					binary.BigEndian.PutUint64(value, n+1)
					if err := s.Put(key, value); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Commit(v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPebbleGet(b *testing.B) {
	const n = 100_000
	for _, hit := range []bool{true, false} {
		b.Run(map[bool]string{true: "hit", false: "miss"}[hit], func(b *testing.B) {
			s := openBenchStore(b)
			fill(b, s, n)
			var key []byte
			b.SetBytes(int64(len(benchKey(nil, 0))))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := (i * 7919) % n // a stride, so that consecutive Gets differ
				if !hit {
					k += n
				}
				key = benchKey(key, k)
				if _, found, err := s.Get(key); err != nil || found != hit {
					b.Fatalf("Get(%s) = %v, %v", key, found, err)
				}
			}
		})
	}
}

func BenchmarkPebbleScan(b *testing.B) {
	const n = 100_000
	s := openBenchStore(b)
	fill(b, s, n)
	b.SetBytes(n * int64(len(benchKey(nil, 0))+8))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rows := 0
		if err := s.Scan(func(k, v []byte) error { rows++; return nil }); err != nil || rows != n {
			b.Fatalf("Scan: %d rows, %v", rows, err)
		}
	}
}

// BenchmarkPebbleBatchCycle is the reduce side of one micro-batch of a word
// count with 100k keys of state: read 70% of the keys in key order (plus 5%
// new ones), write each back, commit. It is what the engine does per batch
// and shuffle partition. Both modes keep no undo history, as the engine
// does; mode=changelog sets Options.Changelog, whose folds run in the
// background of the loop.
func BenchmarkPebbleBatchCycle(b *testing.B) {
	b.Run("mode=plain", func(b *testing.B) { benchBatchCycle(b, retainNoneOptions()) })
	b.Run("mode=changelog", func(b *testing.B) { benchBatchCycle(b, changelogOptions(0)) })
}

func benchBatchCycle(b *testing.B, opts state.Options) {
	const n = 100_000
	s := openBenchStoreWith(b, opts)
	fill(b, s, n)
	var key []byte
	value := make([]byte, 8)
	b.ReportAllocs()
	for v := int64(1); b.Loop(); v++ {
		for i := range n + n/20 {
			if i < n && (i*7+int(v))%10 >= 7 {
				continue
			}
			key = benchKey(key, i)
			mergeKey(b, s, key, value, v)
		}
		if err := s.Commit(v); err != nil {
			b.Fatal(err)
		}
	}
}

// mergeKey gets key and puts a new value, as a reduce merges a group.
func mergeKey(b *testing.B, s state.Store, key, value []byte, v int64) {
	old, _, err := s.Get(key)
	if err != nil {
		b.Fatal(err)
	}
	binary.LittleEndian.PutUint64(value, uint64(len(old))+uint64(v))
	if err := s.Put(key, value); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkChangelogMergeRandom is a continuous query's reduce into one
// partition in changelog mode: 100,000 keys held, batches that get and put
// 20,000 of them in random order, as a batch's changed words arrive, then
// commit; with and without Prefetch 16 keys ahead, as MergeInto does.
func BenchmarkChangelogMergeRandom(b *testing.B) {
	for _, ahead := range []int{0, 16} {
		b.Run(fmt.Sprintf("prefetch=%d", ahead), func(b *testing.B) {
			const n, batch = 100_000, 20_000
			s := openBenchStoreWith(b, changelogOptions(0))
			fill(b, s, n)
			pf := s.(interface{ Prefetch(key []byte) })
			r := rand.New(rand.NewPCG(1, 2))
			keys := make([][]byte, batch)
			value := make([]byte, 8)
			b.ReportAllocs()
			for v := int64(1); b.Loop(); v++ {
				for i := range keys {
					keys[i] = benchKey(keys[i], r.IntN(n))
				}
				for i, key := range keys {
					if ahead > 0 && i+ahead < len(keys) {
						pf.Prefetch(keys[i+ahead])
					}
					mergeKey(b, s, key, value, v)
				}
				if err := s.Commit(v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
		})
	}
}
