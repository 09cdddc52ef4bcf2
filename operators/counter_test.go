package operators

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gostream/gostream/internal/testseed"
)

// TestStrCounter checks the counter against a map on keys of every length
// class: empty, short, exactly inline, long, sharing prefixes, with zero
// bytes, across growth and reset. Each key is passed in one buffer,
// overwritten after the call: keys still waiting to be counted must not
// depend on the caller's memory.
func TestStrCounter(t *testing.T) {
	r := testseed.Rand(t)
	keys := []string{"", "a", "\x00", "a\x00", "0123456789abcdef", "0123456789abcdefg", "0123456789abcdefh",
		"01234567", "012345678", string(bytes.Repeat([]byte{0}, 16)), string(bytes.Repeat([]byte{0}, 17))}
	for i := range 5000 {
		k := fmt.Sprintf("w%d", i)
		if i%7 == 0 {
			k = fmt.Sprintf("a-long-common-prefix-%d", i)
		}
		keys = append(keys, k)
	}
	c := newStrCounter()
	var buf []byte
	for round := range 2 {
		want := map[string]int64{}
		for i := range 100_000 {
			k := keys[r.IntN(len(keys))]
			want[k]++
			buf = append(buf[:0], k...)
			c.add(buf)
			for i := range buf {
				buf[i] = 0xff
			}
			if i%97 == 0 && c.bound() < len(want) {
				t.Fatalf("round %d: bound %d below the %d keys added", round, c.bound(), len(want))
			}
		}
		if c.len() != len(want) || c.bound() != c.len() {
			t.Fatalf("round %d: len %d, bound %d; want %d", round, c.len(), c.bound(), len(want))
		}
		got := map[string]int64{}
		c.take(func(k []byte, n int64) {
			if _, dup := got[string(k)]; dup {
				t.Fatalf("round %d: key %q listed twice", round, k)
			}
			got[string(k)] = n
		})
		if !maps.Equal(got, want) {
			t.Fatalf("round %d: counts differ from a map's: %d keys listed, want %d", round, len(got), len(want))
		}
		if c.len() != 0 || c.bound() != 0 { // the next round counts from zero in the same slots
			t.Fatalf("len %d, bound %d after take", c.len(), c.bound())
		}
	}
}

// BenchmarkStrCounterZipf counts words drawn from a 250,000-word Zipf
// vocabulary (like the bench suite's 50,000 words in five punctuations), in
// lines of 12: the counter alone, without splitting. Its table outgrows the
// CPU caches, as a map task's does.
func BenchmarkStrCounterZipf(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, 249_999)
	words := make([][]byte, 1<<20)
	for i := range words {
		words[i] = fmt.Appendf(nil, "w%d", zipf.Uint64())
	}
	c := newStrCounter()
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(words); i += 12 {
			c.addAll(words[i:min(i+12, len(words))])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(words)), "ns/word")
}

// TestStrCounterAddSplit checks the fused split-and-count against the
// Splitter: separators at the ends, in runs, and pieces of every length
// around the 8-, 16- and 64-byte boundaries, at every distance from the end,
// and invalid UTF-8 (whose rest the pipeline splits with the Splitter).
func TestStrCounterAddSplit(t *testing.T) {
	r := testseed.Rand(t)
	var strs []string
	for _, s := range []string{"", " ", "  ", "a", " a", "a ", "a  b", "0123456789abcdef", "0123456789abcdefg h", "x\x00y z",
		"é è", "a \xff b", "\xff", strings.Repeat("ab ", 30) + "\xe2\x82 c", strings.Repeat("ab ", 30) + "€ c \xc3",
		// 64 pieces in a 64-byte chunk, over several chunks (see queueCap).
		strings.Repeat(" ", 200), strings.Repeat("a ", 100), strings.Repeat("x", 17) + strings.Repeat(" b", 70)} {
		strs = append(strs, s)
	}
	for range 3000 {
		var b []byte
		for range r.IntN(8) {
			if r.IntN(4) == 0 {
				b = append(b, ' ')
			}
			b = append(b, bytes.Repeat([]byte{byte('a' + r.IntN(3))}, r.IntN(20))...)
			if r.IntN(50) == 0 {
				b = append(b, "\xc3\xa9\xff"[r.IntN(3):]...) // é, or its bad tail
			}
			b = append(b, ' ')
		}
		strs = append(strs, string(b[:r.IntN(len(b)+1)]))
	}
	checkAddSplit(t, strs)
}

func checkAddSplit(t *testing.T, strs []string) {
	t.Helper()
	sp, err := NewSplitter(" ", -1)
	if err != nil {
		t.Fatal(err)
	}
	fused, pieces := newStrCounter(), newStrCounter()
	for _, s := range strs {
		if rest := fused.addSplit([]byte(s), ' '); rest >= 0 {
			// What the pipeline does with a rest that is not valid UTF-8.
			if utf8.ValidString(s[rest:]) {
				t.Fatalf("addSplit(%q) left %q, valid UTF-8", s, s[rest:])
			}
			sp.Each([]byte(s[rest:]), fused.add)
		}
		sp.Each([]byte(s), pieces.add)
	}
	want := map[string]int64{}
	pieces.take(func(k []byte, n int64) { want[string(k)] = n })
	got := map[string]int64{}
	fused.take(func(k []byte, n int64) { got[string(k)] = n })
	if !maps.Equal(got, want) {
		t.Fatalf("fused split counted %v, want %v", got, want)
	}
}

func FuzzStrCounterAddSplit(f *testing.F) {
	f.Add("a b  c ")
	f.Add("0123456789abcdefgh 0123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		checkAddSplit(t, []string{s})
	})
}

// BenchmarkStrCounterSplitZipf is a map task's batch: reset, then split and
// count 200,000 lines of 12 words drawn from a 250,000-word Zipf vocabulary,
// laid out one after another as a fetched record batch is. About 100,000
// distinct words per batch: the table outgrows the core's caches.
func BenchmarkStrCounterSplitZipf(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 2, 249_999)
	var text []byte
	lines := make([][]byte, 200_000)
	for i := range lines {
		start := len(text)
		for w := range 12 {
			if w > 0 {
				text = append(text, ' ')
			}
			text = fmt.Appendf(text, "w%d", zipf.Uint64())
		}
		lines[i] = text[start:len(text):len(text)]
	}
	c := newStrCounter()
	b.ReportAllocs()
	for b.Loop() {
		c.reset()
		for _, l := range lines {
			c.addSplit(l, ' ')
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lines)*12), "ns/word")
}

// sepMasksNaive is sepMasks byte by byte.
func sepMasksNaive(b []byte, sep byte) (seps, high uint64) {
	for i := range min(len(b), 64) {
		if b[i] == sep {
			seps |= 1 << i
		}
		if b[i] >= 0x80 {
			high |= 1 << i
		}
	}
	return seps, high
}

// TestSepMasks checks sepMasks (AVX2 where the CPU has it) and its portable
// version against a byte loop, for every length up to 130 at every
// alignment, separators and non-ASCII bytes at every place.
func TestSepMasks(t *testing.T) {
	r := testseed.Rand(t)
	buf := make([]byte, 4096+256)
	for i := range buf {
		buf[i] = []byte{' ', 'a', 'b', 0x80, 0xff, 0, '\n'}[r.IntN(7)]
	}
	for off := range 64 {
		for n := 1; n <= 130; n++ {
			b := buf[off : off+n]
			ws, wh := sepMasksNaive(b, ' ')
			if s, h := sepMasks(b, ' '); s != ws || h != wh {
				t.Fatalf("off %d, n %d: sepMasks %x %x, want %x %x", off, n, s, h, ws, wh)
			}
			if s, h := sepMasksSWAR(b, ' '); s != ws || h != wh {
				t.Fatalf("off %d, n %d: sepMasksSWAR %x %x, want %x %x", off, n, s, h, ws, wh)
			}
		}
	}
}

func FuzzSepMasks(f *testing.F) {
	f.Add([]byte("a b  c \x80 d"), byte(' '))
	f.Fuzz(func(t *testing.T, b []byte, sep byte) {
		if len(b) == 0 {
			return
		}
		ws, wh := sepMasksNaive(b, sep)
		if s, h := sepMasks(b, sep); s != ws || h != wh {
			t.Fatalf("sepMasks(%q, %q) = %x %x, want %x %x", b, sep, s, h, ws, wh)
		}
		if s, h := sepMasksSWAR(b, sep); s != ws || h != wh {
			t.Fatalf("sepMasksSWAR(%q, %q) = %x %x, want %x %x", b, sep, s, h, ws, wh)
		}
	})
}

// TestStrCounterShrinks checks that a batch of few keys after a large one
// leaves a small table, which still counts and grows again, whether the
// keys are taken (as Flush does) or reset.
func TestStrCounterShrinks(t *testing.T) {
	c := newStrCounter()
	for round, keys := range []int{100_000, 300, 5, 100_000} {
		for i := range 3 * keys {
			c.add(fmt.Appendf(nil, "k%d", i%keys))
		}
		if c.len() != keys {
			t.Fatalf("round %d: %d keys, want %d", round, c.len(), keys)
		}
		before := len(c.slots)
		if round%2 == 0 {
			c.take(func(k []byte, n int64) {
				if n != 3 {
					t.Fatalf("round %d: %q counted %d times, want 3", round, k, n)
				}
			})
		} else {
			c.reset()
		}
		c.reset() // again, empty: as the engine does after a flush, and no change
		if shrunk := len(c.slots) < before; shrunk != (8*keys < before && before > 1024) || len(c.slots) < 2*keys && shrunk {
			t.Fatalf("round %d: %d keys in %d slots, %d after reset", round, keys, before, len(c.slots))
		}
	}
}

// take calls fn for every key and its count, in no particular order, and
// forgets them.
func (c *strCounter) take(fn func(key []byte, count int64)) {
	c.takeAfter(0, func(k []byte, n int64) { fn(k[1:], n) })
}
