package state

import (
	"fmt"
	"sync"
	"testing"
)

// TestPebbleBlockCacheServesReads reads and writes back keys of four
// partitions concurrently, batch after batch, as the engine's reduce tasks
// do, and checks that reads hit the block cache. Pebble reserves memtable
// memory out of the block cache; a cache sized for blocks alone was
// reserved away in full and every read went to disk (a bug found by
// profiling the bench suite).
func TestPebbleBlockCacheServesReads(t *testing.T) {
	o := DefaultOptions()
	o.MemTableSize = 8 << 20
	o.CacheSize = 8 << 20
	o.ReadCacheSize = 0 // count Pebble's own reads
	p, err := OpenPebble(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var stores []Store
	for i := range 4 {
		s, err := p.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	for v := range int64(30) {
		var wg sync.WaitGroup
		errs := make([]error, len(stores))
		for si, s := range stores {
			wg.Go(func() {
				val := make([]byte, 8)
				for i := range 5_000 {
					k := fmt.Appendf(nil, "word%07d", (i*7919+int(v)*13)%50_000)
					if _, _, err := s.Get(k); err != nil {
						errs[si] = err
						return
					}
					if err := s.Put(k, val); err != nil {
						errs[si] = err
						return
					}
				}
				errs[si] = s.Commit(v)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	m := p.(*pebbleProvider).db.Metrics().BlockCache
	if m.Hits < 10*m.Misses {
		t.Fatalf("block cache: %d hits, %d misses (holding %d bytes); reads are not served from the cache", m.Hits, m.Misses, m.Size)
	}
}
