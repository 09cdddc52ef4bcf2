package operators

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"unicode/utf8"
	"unsafe"

	"github.com/gostream/gostream/internal/prefetch"
)

// strCounter counts occurrences of byte strings: the map side of
// groupBy(<one string column>).count(), word count's hot loop. It is an
// open-addressing table with linear probing whose 32-byte slots hold the
// count and, for keys of up to 16 bytes (nearly every word), the key itself,
// so counting a word touches one cache line: no key arena, no separate
// counter array, no call to compare. Longer keys keep their first 8 bytes in
// the slot and the rest in an arena.
type strCounter struct {
	seed  uint64
	mseed maphash.Seed
	slots []counterSlot
	n     int    // keys held in slots
	arena []byte // bytes of keys longer than inlineKey
	q     probeQueue
}

// slotShift is log2 of a slot's size, for prefetch.Slots.
const slotShift = 5

const _ = -uint(unsafe.Sizeof(counterSlot{}) ^ 1<<slotShift) // slotShift matches the slots

// inlineKey is the longest key a slot holds in place.
const inlineKey = 16

type counterSlot struct {
	w0, w1 uint64 // key bytes 0-15, zero padded; for a long key, bytes 0-7 and its arena offset
	tag    uint32 // high hash bits | 1; 0 marks an empty slot
	klen   uint32
	count  int64
}

func newStrCounter() *strCounter { return newCounterSeeds().counter() }

// counterSeeds are a strCounter's hash seeds. Counters of the same seeds
// put a key in the same slot when their sizes are the same, so merge walks
// both tables in order instead of probing the one it adds to at random.
type counterSeeds struct {
	seed  uint64
	mseed maphash.Seed
}

func newCounterSeeds() counterSeeds {
	return counterSeeds{seed: rand.Uint64(), mseed: maphash.MakeSeed()}
}

// counter returns an empty strCounter of seeds s.
func (s counterSeeds) counter() *strCounter { return &strCounter{seed: s.seed, mseed: s.mseed} }

// len is the number of distinct keys.
func (c *strCounter) len() int {
	c.drain()
	return c.n
}

// bound is an upper bound on len that leaves the queue alone: the keys
// still queued count as new.
func (c *strCounter) bound() int { return c.n + c.q.bufs[0].n + c.q.bufs[1].n }

// hashShort hashes a key of at most inlineKey bytes loaded as two words: one
// 64x64->128-bit multiply, folded, mixes every input bit into the result.
func hashShort(seed, w0, w1 uint64, n int) uint64 {
	hi, lo := bits.Mul64(w0^seed, w1^(seed*0x9e3779b97f4a7c15)^uint64(n))
	return hi ^ lo
}

// add counts one occurrence of key.
func (c *strCounter) add(key []byte) { c.addAll([][]byte{key}) }

// probeBatch is how many short keys, at least, are hashed and their slots
// prefetched before any is probed.
const probeBatch = 16

// queueCap is a probe buffer's room: probeBatch-1 keys and a 64-byte
// chunk's pieces (see addSplit), rounded up to a power of two.
const queueCap = 128

const _ = uint(queueCap - (probeBatch - 1 + 64)) // a chunk's pieces fit

// addAll counts one occurrence of every key.
func (c *strCounter) addAll(keys [][]byte) {
	for _, key := range keys {
		if len(key) > inlineKey {
			c.addLong(key)
			continue
		}
		var k [inlineKey]byte
		copy(k[:], key)
		c.queue(binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:]), len(key))
	}
}

// addSplit counts every piece of str split on sep, an ASCII byte, as
// Splitter does with a one-byte literal and no limit, without a call per
// piece: it finds separators 64 bytes at a time (sepMasks) and loads a short
// piece's bytes straight from str, masking off what follows it. Splitter
// first replaces the bytes of invalid UTF-8, so addSplit counts the pieces
// before the first non-ASCII byte, checks the rest, and, if it is not valid
// UTF-8, leaves it uncounted and returns where it starts (a separator's
// successor, so splitting str[rest:] gives the missing pieces). Otherwise
// rest is -1.
func (c *strCounter) addSplit(str []byte, sep byte) (rest int) {
	start, checked, seed := 0, false, c.seed
	for base := 0; ; base += 64 {
		var seps, high uint64
		if base < len(str) {
			seps, high = sepMasks(str[base:], sep)
		}
		// The end of str ends the last piece as a separator would.
		last := len(str)-base < 64
		if last {
			seps |= 1 << (len(str) - base)
		}
		if high != 0 && !checked {
			// str[:start] is ASCII, so str[start:] decodes as it does in str.
			if !utf8.Valid(str[start:]) {
				return start
			}
			checked = true
		}
		// The chunk's pieces, at most 64, all fit in the buffer: the loop
		// then keeps its length in a register and calls nothing on the
		// common path.
		b := &c.q.bufs[c.q.cur&1]
		if b.n >= probeBatch {
			b = c.swap()
		}
		queued := b.n
		for seps != 0 {
			// The common piece: short, with 16 bytes of str from its start.
			for ; seps != 0; seps &= seps - 1 {
				end := base + bits.TrailingZeros64(seps)
				n := end - start
				if n > inlineKey || start > len(str)-inlineKey {
					break
				}
				w0 := binary.LittleEndian.Uint64(str[start:])
				w1 := binary.LittleEndian.Uint64(str[start+8:])
				b.put(queued, seed, w0, w1, n)
				queued++
				start = end + 1
			}
			if seps == 0 {
				break
			}
			// Any other piece, out of the loop above so that its calls do
			// not make the loop keep its variables in memory.
			end := base + bits.TrailingZeros64(seps)
			seps &= seps - 1
			n := end - start
			if n > inlineKey {
				c.addLong(str[start:end])
				start = end + 1
				continue
			}
			var w0, w1 uint64
			if len(str) >= inlineKey {
				// Near the end: shift the last 16 bytes down to start.
				w0, w1 = shiftDown(binary.LittleEndian.Uint64(str[len(str)-16:]),
					binary.LittleEndian.Uint64(str[len(str)-8:]), start-(len(str)-16))
			} else {
				var k [inlineKey]byte
				copy(k[:], str[start:end])
				w0, w1 = binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])
			}
			b.put(queued, seed, w0, w1, n)
			queued++
			start = end + 1
		}
		b.n = queued
		if last {
			return -1
		}
	}
}

const (
	lsb  = 0x0101010101010101
	low7 = 0x7f7f7f7f7f7f7f7f
	msb  = 0x8080808080808080
)

// sepMasksSWAR is sepMasks eight bytes at a time in plain Go.
func sepMasksSWAR(b []byte, sep byte) (seps, high uint64) {
	n := min(len(b), 64)
	fill := uint64(sep) * lsb
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		y := x ^ fill
		// A byte of y is zero exactly when adding 0x7f to its low bits
		// carries nothing into bit 7 and bit 7 is clear.
		zero := ^((y&low7 + low7) | y) & msb
		seps |= gatherMSB(zero) << i
		high |= gatherMSB(x&msb) << i
	}
	for ; i < n; i++ {
		if b[i] == sep {
			seps |= 1 << i
		}
		if b[i] >= 0x80 {
			high |= 1 << i
		}
	}
	return seps, high
}

// gatherMSB packs the top bits of x's eight bytes into its low byte: the
// multiply moves each byte's bit to its own place in the top byte.
func gatherMSB(x uint64) uint64 { return (x >> 7) * 0x0102040810204080 >> 56 }

// keyMasks[n] masks the n bytes of a short key in its two words.
var keyMasks = func() (m [2 * inlineKey][2]uint64) {
	for n := range inlineKey + 1 {
		m[n] = [2]uint64{lowBytes(n), lowBytes(n - 8)}
	}
	return m
}()

// lowBytes is a mask of the low n bytes of a word (n may be out of 0-8).
func lowBytes(n int) uint64 { return ^uint64(0) >> (64 - 8*uint(min(max(n, 0), 8))) }

// shiftDown returns bytes off to off+15 of the 16 bytes lo, hi (little
// endian; off in 0-16), zero padded.
func shiftDown(lo, hi uint64, off int) (w0, w1 uint64) {
	s := 8 * uint(off)
	if s >= 64 {
		return hi >> (s - 64), 0
	}
	return lo>>s | hi<<(64-s), hi >> s
}

// probeQueue holds short keys, hashed, waiting to be counted, in two
// buffers: while the slots of the last full buffer are on their way into the
// cache, the keys of the one before are probed. A table larger than the
// caches then costs about one memory latency per buffer of keys rather than
// one per key. The keys' bytes are held in the queue (w0, w1), never in the
// caller's memory, so keys may wait across calls until len, each or reset.
type probeQueue struct {
	bufs [2]probeBuf
	cur  int // the buffer being filled
}

// probeBuf is one buffer of a probeQueue.
type probeBuf struct {
	n      int
	hs     [queueCap]uint64
	w0, w1 [queueCap]uint64
	lens   [queueCap]uint32
}

// queue counts one occurrence of the short key of n bytes held in w0 and w1
// (zero padded), later.
func (c *strCounter) queue(w0, w1 uint64, n int) {
	b := &c.q.bufs[c.q.cur&1]
	if b.n >= probeBatch {
		b = c.swap()
	}
	b.put(b.n, c.seed, w0, w1, n)
	b.n++
}

// put writes the short key of n bytes whose words w0 and w1 may hold bytes
// after it (put masks them off) as the buffer's key j, hashed with seed.
func (b *probeBuf) put(j int, seed, w0, w1 uint64, n int) {
	m := &keyMasks[n&(2*inlineKey-1)] // n <= inlineKey
	w0, w1 = w0&m[0], w1&m[1]
	j &= queueCap - 1
	b.w0[j], b.w1[j], b.lens[j] = w0, w1, uint32(n)
	b.hs[j] = hashShort(seed, w0, w1, n)
}

// swap prefetches the slots of the full buffer being filled, then probes
// the other buffer, prefetched a round ago, and returns it, empty, to be
// filled.
func (c *strCounter) swap() *probeBuf {
	if full := &c.q.bufs[c.q.cur]; len(c.slots) > 0 {
		prefetch.Slots(unsafe.Pointer(unsafe.SliceData(c.slots)), full.hs[:full.n], uint64(len(c.slots)-1), slotShift)
	}
	c.q.cur ^= 1
	b := &c.q.bufs[c.q.cur]
	c.probeAll(b)
	return b
}

// drain counts every key waiting in the queue, the older buffer first.
func (c *strCounter) drain() {
	c.probeAll(&c.q.bufs[c.q.cur^1])
	c.probeAll(&c.q.bufs[c.q.cur])
}

// probeAll counts the keys in b, each of at most inlineKey bytes, and
// empties it. The probe loop is written out here, not called per key: the
// call cost more than a probe that hits.
func (c *strCounter) probeAll(b *probeBuf) {
	c.room(b.n)
	slots, mask := c.slots, uint64(len(c.slots)-1)
	added := 0
next:
	for j := range b.n {
		h, w0, w1, klen := b.hs[j], b.w0[j], b.w1[j], b.lens[j]
		tag := uint32(h>>32) | 1
		for i := h & mask; ; i = (i + 1) & mask {
			s := &slots[i]
			if s.tag == tag && s.klen == klen && s.w0 == w0 && s.w1 == w1 {
				s.count++
				continue next
			}
			if s.tag == 0 {
				*s = counterSlot{w0: w0, w1: w1, tag: tag, klen: klen, count: 1}
				added++
				continue next
			}
		}
	}
	c.n += added
	b.n = 0
}

// room grows the table if adding n keys could take it past its load limit.
func (c *strCounter) room(n int) {
	if 4*(c.n+n) > 3*len(c.slots) {
		c.grow()
	}
}

// addLong counts one occurrence of a key longer than inlineKey, at once.
func (c *strCounter) addLong(key []byte) { c.addLongN(key, 1) }

// addLongN counts n occurrences of a key longer than inlineKey, at once.
func (c *strCounter) addLongN(key []byte, n int64) {
	c.room(1)
	h := maphash.Bytes(c.mseed, key)
	mask := uint64(len(c.slots) - 1)
	tag, klen, w0 := uint32(h>>32)|1, uint32(len(key)), binary.LittleEndian.Uint64(key)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.tag == tag && s.klen == klen && s.w0 == w0 && bytes.Equal(c.long(s), key) {
			s.count += n
			return
		}
		if s.tag == 0 {
			*s = counterSlot{w0: w0, w1: uint64(len(c.arena)), tag: tag, klen: klen, count: n}
			c.arena = append(c.arena, key...)
			c.n++
			return
		}
	}
}

// merge adds the counts of o, another counter, to c's and leaves o as it
// was. It is fastest when their seeds are the same (counterSeeds).
func (c *strCounter) merge(o *strCounter) {
	o.drain()
	c.drain()
	c.room(o.n) // so no key grows the slots below
next:
	for j := range o.slots {
		src := &o.slots[j]
		switch {
		case src.tag == 0:
			continue
		case src.klen > inlineKey:
			c.addLongN(o.long(src), src.count)
			continue
		}
		h := hashShort(c.seed, src.w0, src.w1, int(src.klen))
		tag, mask := uint32(h>>32)|1, uint64(len(c.slots)-1)
		for i := h & mask; ; i = (i + 1) & mask {
			s := &c.slots[i]
			if s.tag == tag && s.klen == src.klen && s.w0 == src.w0 && s.w1 == src.w1 {
				s.count += src.count
				continue next
			}
			if s.tag == 0 {
				*s = counterSlot{w0: src.w0, w1: src.w1, tag: tag, klen: src.klen, count: src.count}
				c.n++
				continue next
			}
		}
	}
}

// long returns the bytes of a long key's slot.
func (c *strCounter) long(s *counterSlot) []byte { return c.arena[s.w1 : s.w1+uint64(s.klen)] }

// takeAfter calls fn for every key, after the byte lead, and its count, in
// no particular order (Flush encodes keys after a byte: no copy of each),
// and then forgets every key as reset does. It empties each slot as it
// passes it, so the table needs no second pass to clear it. The bytes are
// valid only during the call.
func (c *strCounter) takeAfter(lead byte, fn func(key []byte, count int64)) {
	c.drain()
	var short [1 + inlineKey]byte
	short[0] = lead
	long := []byte{lead}
	for i := range c.slots {
		s := &c.slots[i]
		switch {
		case s.tag == 0:
			continue
		case s.klen > inlineKey:
			long = append(long[:1], c.long(s)...)
			fn(long, s.count)
		default:
			binary.LittleEndian.PutUint64(short[1:], s.w0)
			binary.LittleEndian.PutUint64(short[1+8:], s.w1)
			fn(short[:1+s.klen], s.count)
		}
		*s = counterSlot{}
	}
	c.forget(true)
}

// grow doubles the slots (at least 1024) and re-inserts every key; hashes
// are recomputed from the slots (long keys from the arena).
func (c *strCounter) grow() {
	old := c.slots
	c.slots = make([]counterSlot, max(1024, 2*len(old)))
	mask := uint64(len(c.slots) - 1)
	for j := range old {
		s := &old[j]
		if s.tag == 0 {
			continue
		}
		h := hashShort(c.seed, s.w0, s.w1, int(s.klen))
		if s.klen > inlineKey {
			h = maphash.Bytes(c.mseed, c.long(s))
		}
		i := h & mask
		for c.slots[i].tag != 0 {
			i = (i + 1) & mask
		}
		c.slots[i] = *s
	}
}

// reset forgets every key, keeping the memory unless the keys filled under
// an eighth of it: takeAfter and reset cost in proportion to the slots, so
// after one large batch, small ones would keep paying for it. The table
// shrinks to twice the keys and grows back if later batches need it.
func (c *strCounter) reset() { c.forget(false) }

// forget forgets every key as reset does; cleared tells that the slots are
// all empty already.
func (c *strCounter) forget(cleared bool) {
	c.q = probeQueue{}
	c.arena = c.arena[:0]
	if c.n == 0 {
		return // empty already: its last use decided its size
	}
	if n := len(c.slots); n > 1024 && 8*c.n < n {
		c.slots = make([]counterSlot, max(1024, 1<<bits.Len(uint(2*c.n))))
	} else if !cleared {
		clear(c.slots)
	}
	c.n = 0
}
