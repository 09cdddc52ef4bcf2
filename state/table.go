package state

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/gostream/gostream/internal/prefetch"
)

// table holds every committed key of a partition in changelog mode. It is
// free of pointers but for its slices, so that the garbage collector does
// not scan millions of keys: each key is a record in one arena, and an
// open-addressing hash table (linear probing) of slots points at the
// records. A lookup touches its slot, then its record's header, key and
// value, which usually share a cache line.
//
// A record is a header (a flags byte, then the key length, value length
// and value capacity as 4-byte little-endian integers), the key, and room
// for the value. A value that outgrows its room moves the record to the
// end of the arena; the old copy is marked moved.
//
// A deleted key keeps its record, marked dead, until the next fold
// snapshot has written the deletion back (see appendDirty). Bytes no longer
// needed (moved records, dead records after their snapshot) are garbage;
// compact drops them once they outweigh the bytes in use.
//
// Keys and values are below 4 GiB each, like in a Pebble batch, and the
// arena below 1 TiB.
type table struct {
	seed  maphash.Seed
	slots []uint64 // 0 empty, or the hash's high 24 bits << 40 | record offset+1
	arena []byte
	dirty []int // offsets of the records written since the last appendDirty (some since moved)
	n     int   // records in slots (live and dead)
	live  int64 // live keys
	used  int   // cost (see cost) of the live and dirty records

	// last is the slot+1 of the last get's key, or 0: the engine's Put
	// follows its Get, and lookup checks last before searching.
	last int

	// ahead holds the hashes of the last prefetchDepth keys prefetched,
	// whose slots are on their way into the caches; prefetched counts them.
	ahead      [prefetchDepth]uint64
	prefetched int

	// order is what the last sorted call returned: records in key order,
	// each flagged recordListed. Records deleted or moved since are still
	// in it; compact empties it. fresh is sorted's scratch.
	order, fresh []sortRef
}

const (
	recordLive   uint8 = 1 << iota // the key is committed (not deleted)
	recordDirty                    // written since the last fold snapshot
	recordMoved                    // garbage: the record lies further on
	recordListed                   // in order (see sorted)
)

// headerLen is the size of a record's header; slotLen the memory of a slot,
// counted with a record's bytes to decide when to compact.
const (
	headerLen = 13
	slotLen   = 8
)

// intLen is the memory of an int.
const intLen = bits.UintSize / 8

// slotOff masks a slot's record offset+1; the bits above hold the hash.
const slotOff = 1<<40 - 1

// minSlots is the size of the slot array of an empty table.
const minSlots = 64

func newTable() table {
	return table{seed: maphash.MakeSeed(), slots: make([]uint64, minSlots)}
}

func (t *table) flags(off int) uint8 { return t.arena[off] }

func (t *table) klen(off int) int { return int(binary.LittleEndian.Uint32(t.arena[off+1:])) }

func (t *table) vcap(off int) int { return int(binary.LittleEndian.Uint32(t.arena[off+9:])) }

func (t *table) key(off int) []byte {
	start := off + headerLen
	end := start + t.klen(off)
	return t.arena[start:end:end]
}

// value returns the value of the record at off, capped so that appending to
// it copies.
func (t *table) value(off int) []byte {
	start := off + headerLen + t.klen(off)
	end := start + int(binary.LittleEndian.Uint32(t.arena[off+5:]))
	return t.arena[start:end:end]
}

// cost is the memory of the record at off, its slot included.
func (t *table) cost(off int) int { return headerLen + t.klen(off) + t.vcap(off) + slotLen }

// next returns the offset of the record after the one at off.
func (t *table) next(off int) int { return off + headerLen + t.klen(off) + t.vcap(off) }

// appendRecord appends a record of key and value, with room for vcap value
// bytes, to dst.
func appendRecord(dst []byte, flags uint8, key, value []byte, vcap int) []byte {
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(key)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(value)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(vcap))
	dst = append(append(dst, key...), value...)
	return slices.Grow(dst, vcap-len(value))[:len(dst)+vcap-len(value)]
}

func (t *table) record(slot int) int { return int(t.slots[slot]&slotOff) - 1 }

// holds reports whether the record at off is of key.
func (t *table) holds(off int, key []byte) bool {
	return t.klen(off) == len(key) && bytes.Equal(t.arena[off+headerLen:off+headerLen+len(key)], key)
}

// find returns the slot of key's record, or -1 and the hash of key.
func (t *table) find(key []byte) (slot int, hash uint64) {
	hash = maphash.Bytes(t.seed, key)
	mask := len(t.slots) - 1
	for i := int(hash) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1, hash
		}
		if s>>40 == hash>>40 && t.holds(int(s&slotOff)-1, key) {
			return i, hash
		}
	}
}

// prefetchDepth is how many prefetch calls after a key's slot its record is
// asked for: enough for the slot to have arrived by then.
const prefetchDepth = 8

// prefetch starts loading the slot of key and, for the key prefetched
// prefetchDepth calls ago, the record its slot points at, without waiting
// for either. A caller about to get many keys prefetches each key
// 2*prefetchDepth gets ahead: a get then finds its slot and record cached,
// and the misses of successive keys overlap. It changes nothing; a table
// changed since a key was prefetched only makes the hint useless.
func (t *table) prefetch(key []byte) {
	hash := maphash.Bytes(t.seed, key)
	mask := uint64(len(t.slots) - 1)
	i := t.prefetched % prefetchDepth
	if t.prefetched >= prefetchDepth {
		if s := t.slots[t.ahead[i]&mask]; s != 0 {
			prefetch.Line(unsafe.Pointer(&t.arena[int(s&slotOff)-1]))
		}
	}
	t.ahead[i] = hash
	t.prefetched++
	prefetch.Line(unsafe.Pointer(&t.slots[hash&mask]))
}

// lookup returns the slot of key's record, or -1, and whether key is live,
// trying the last get's key first (a write follows its get). The slot
// stays valid until an insert or a compaction rebuilds the slots.
func (t *table) lookup(key []byte) (slot int, live bool) {
	slot = t.last - 1
	if slot < 0 || !t.holds(t.record(slot), key) {
		slot, _ = t.find(key)
	}
	return slot, t.isLive(slot)
}

// isLive reports whether slot, or -1, holds a live key.
func (t *table) isLive(slot int) bool { return slot >= 0 && t.flags(t.record(slot))&recordLive != 0 }

// get returns the value of key. The slice is valid until the table changes.
// It searches key at once: a get rarely follows a get of the same key.
func (t *table) get(key []byte) ([]byte, bool) {
	slot, _ := t.find(key)
	t.last = slot + 1
	if !t.isLive(slot) {
		return nil, false
	}
	return t.value(t.record(slot)), true
}

// put sets key to value and reports whether key was absent.
func (t *table) put(key, value []byte) (added bool) {
	added = t.set(-1, key, value)
	t.compactIfWasteful()
	return added
}

// set sets key, whose slot is given or -1 if unknown, to value without
// compacting, and reports whether key was absent.
func (t *table) set(slot int, key, value []byte) (added bool) {
	if slot < 0 {
		var hash uint64
		if slot, hash = t.find(key); slot < 0 {
			t.insert(key, value, hash)
			return true
		}
	}
	off := t.record(slot)
	flags := t.flags(off)
	if flags&(recordLive|recordDirty) == 0 {
		t.used += t.cost(off) // a dead record whose bytes were counted as garbage
	}
	added = flags&recordLive == 0
	if added {
		t.live++
	}
	if vcap := t.vcap(off); len(value) > vcap {
		// Move the record to the end of the arena with room to grow: a
		// count encoded as a varint grows a byte at a time.
		grown := max(len(value), 2*vcap)
		t.used += grown - vcap
		t.arena[off] = recordMoved
		off = len(t.arena)
		t.arena = appendRecord(t.arena, 0, key, value, grown)
		t.slots[slot] = t.slots[slot]&^slotOff | uint64(off+1)
	} else {
		binary.LittleEndian.PutUint32(t.arena[off+5:], uint32(len(value)))
		copy(t.arena[off+headerLen+len(key):], value)
	}
	t.markDirty(off, recordLive)
	return added
}

// del deletes key and reports whether it was present.
func (t *table) del(key []byte) (removed bool) {
	slot, _ := t.find(key)
	return t.unset(slot)
}

// unset deletes the key of slot, or nothing if slot is -1, and reports
// whether it was present.
func (t *table) unset(slot int) (removed bool) {
	if slot < 0 || t.flags(t.record(slot))&recordLive == 0 {
		return false
	}
	t.live--
	t.markDirty(t.record(slot), 0)
	return true
}

// markDirty sets the flags of the record at off to live (recordLive or 0)
// plus dirty.
func (t *table) markDirty(off int, live uint8) {
	if t.flags(off)&recordDirty == 0 {
		t.dirty = append(t.dirty, off)
	}
	t.arena[off] = live | recordDirty | t.flags(off)&recordListed
}

func (t *table) insert(key, value []byte, hash uint64) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.rehash(2 * len(t.slots))
	}
	off := len(t.arena)
	t.arena = appendRecord(t.arena, 0, key, value, len(value))
	t.place(off, hash)
	t.n++
	t.used += t.cost(off)
	t.live++
	t.markDirty(off, recordLive)
}

// place puts the record at off, of the given hash, into a free slot.
func (t *table) place(off int, hash uint64) {
	mask := len(t.slots) - 1
	i := int(hash) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = hash>>40<<40 | uint64(off+1)
}

// rehash rebuilds the slots, n of them (a power of two), from the records
// in the arena.
func (t *table) rehash(n int) {
	t.slots, t.last = make([]uint64, n), 0
	for off := 0; off < len(t.arena); off = t.next(off) {
		if t.flags(off)&recordMoved == 0 {
			t.place(off, maphash.Bytes(t.seed, t.key(off)))
		}
	}
}

// size is the memory of the arena and of a slot per record.
func (t *table) size() int { return len(t.arena) + t.n*slotLen }

// memory is the memory the table holds, as ChangelogMaxBytes counts it:
// the arena with its garbage and spare capacity, the slots, the dirty list
// and the sort order.
func (t *table) memory() int64 {
	return int64(cap(t.arena)+slotLen*cap(t.slots)+intLen*cap(t.dirty)) +
		int64(cap(t.order)+cap(t.fresh))*int64(unsafe.Sizeof(sortRef{}))
}

// compactIfWasteful compacts the table when its garbage exceeds the bytes
// in use, so that compactions cost an amortized constant per byte written.
func (t *table) compactIfWasteful() {
	if t.size()-t.used > t.used {
		t.compact()
	}
}

// compact copies the live and dirty records into a new arena, dropping the
// garbage and the room values had to grow.
func (t *table) compact() {
	arena := make([]byte, 0, t.used)
	t.dirty, t.used, t.n = t.dirty[:0], 0, 0
	for off := 0; off < len(t.arena); off = t.next(off) {
		flags := t.flags(off)
		if flags&(recordLive|recordDirty) == 0 { // dead and written back, or moved
			continue
		}
		if flags&recordDirty != 0 {
			t.dirty = append(t.dirty, len(arena))
		}
		value := t.value(off)
		arena = appendRecord(arena, flags&^recordListed, t.key(off), value, len(value))
		t.used += headerLen + t.klen(off) + len(value) + slotLen
		t.n++
	}
	t.arena, t.order = arena, t.order[:0]
	n := minSlots
	for n*3 < t.n*4 {
		n *= 2
	}
	t.rehash(n)
}

// applyDelta applies the writes of delta d, then compacts if wasteful:
// never in between. refs, if not nil, holds for each write of d the slot+1
// that lookup returned for its key (0 if absent) since the slots were last
// rebuilt. The writes with a slot go first, as an insert may rebuild the
// slots; a key's writes all have a slot or none, so they keep their order.
func (t *table) applyDelta(d []byte, refs []int) error {
	if refs == nil {
		return t.applyWrites(d)
	}
	pass := func(withSlot bool) error {
		i := 0
		return decodeDelta(d, func(key, value []byte, del bool) error {
			if withSlot {
				t.prefetchRefs(refs, i)
			}
			slot := -1
			if i < len(refs) {
				slot = refs[i] - 1
			}
			i++
			switch {
			case (slot >= 0) != withSlot:
			case del && slot < 0:
				t.del(key)
			case del:
				t.unset(slot)
			default:
				t.set(slot, key, value)
			}
			return nil
		})
	}
	err := pass(true)
	if err == nil && slices.Contains(refs, 0) {
		err = pass(false)
	}
	t.compactIfWasteful()
	return err
}

// prefetchRefs prepares the writes of applyDelta ahead of write i, whose
// slots are refs (slot+1, 0 if absent): it starts loading the slot of the
// write 2*prefetchDepth ahead and the record of the one prefetchDepth
// ahead, whose slot has arrived by then, so that the cache misses of
// successive writes overlap. It changes nothing.
func (t *table) prefetchRefs(refs []int, i int) {
	if j := i + 2*prefetchDepth; j < len(refs) && refs[j] > 0 {
		prefetch.Line(unsafe.Pointer(&t.slots[refs[j]-1]))
	}
	if j := i + prefetchDepth; j < len(refs) && refs[j] > 0 {
		if s := t.slots[refs[j]-1]; s != 0 {
			prefetch.Line(unsafe.Pointer(&t.arena[int(s&slotOff)-1]))
		}
	}
}

// applyWrites applies the writes of delta d in order, whose keys' slots
// are unknown, then compacts if wasteful. It looks each key up
// 2*prefetchDepth writes after prefetching it (see prefetch), so that the
// cache misses of successive keys overlap.
func (t *table) applyWrites(d []byte) error {
	type write struct {
		key, value []byte
		del        bool
	}
	var ahead [2 * prefetchDepth]write
	apply := func(w write) {
		if w.del {
			t.del(w.key)
		} else {
			t.set(-1, w.key, w.value)
		}
	}
	n := 0
	err := decodeDelta(d, func(key, value []byte, del bool) error {
		i := n % len(ahead)
		if n >= len(ahead) {
			apply(ahead[i])
		}
		t.prefetch(key)
		ahead[i] = write{key, value, del}
		n++
		return nil
	})
	for i := max(n-len(ahead), 0); i < n; i++ {
		apply(ahead[i%len(ahead)])
	}
	t.compactIfWasteful()
	return err
}

// appendDirty appends to dst, as a delta, every key written since the last
// call with its value or its deletion, and forgets that they were written.
func (t *table) appendDirty(dst []byte) []byte {
	dst = t.forgetDirty(dst, true)
	t.compactIfWasteful()
	return dst
}

// clean forgets that the keys were written, as after a fold: it makes the
// keys loaded from the data keys of a partition clean.
func (t *table) clean() { t.forgetDirty(nil, false) }

// forgetDirty makes the dirty records clean, the dead ones garbage, and
// with write appends their writes to dst as a delta.
func (t *table) forgetDirty(dst []byte, write bool) []byte {
	for _, off := range t.dirty {
		flags := t.flags(off)
		if flags&recordMoved != 0 {
			continue
		}
		live := flags&recordLive != 0
		if write {
			dst = appendDeltaWrite(dst, t.key(off), t.value(off), !live)
		}
		t.arena[off] = flags &^ recordDirty
		if !live {
			t.used -= t.cost(off)
		}
	}
	t.dirty = t.dirty[:0]
	return dst
}

// sorted returns the live records in ascending key order. The slice is
// valid until the next call, and its records until the table changes.
//
// It brings the last call's order up to date rather than sorting again: it
// drops the records deleted or moved since, sorts the live records not in
// it (new keys, and the new copies of moved records) alone and merges them
// in. A complete-mode scan sorts every key of its partition each batch, and
// once a query's keys have been seen few new ones come: a pass over the
// order then replaces a sort (in the bench suite's throughput run the sort
// had taken 4% of the CPU).
func (t *table) sorted() []sortRef {
	old := t.order[:0]
	for _, r := range t.order {
		switch f := t.flags(r.off); {
		case f&recordLive != 0:
			old = append(old, r)
		case f&recordMoved == 0: // deleted: sorted in again if it comes back
			t.arena[r.off] = f &^ recordListed
		}
	}
	fresh := t.fresh[:0]
	for off := 0; off < len(t.arena); off = t.next(off) {
		if f := t.flags(off); f&(recordLive|recordListed) == recordLive {
			t.arena[off] = f | recordListed
			var p [8]byte
			copy(p[:], t.key(off))
			fresh = append(fresh, sortRef{prefix: binary.BigEndian.Uint64(p[:]), off: off})
		}
	}
	t.sortRefs(fresh)
	t.order, t.fresh = t.merge(old, fresh), keep(fresh)
	return t.order
}

// sortRefs sorts refs by key: by prefix, then by the whole key where
// prefixes tie.
func (t *table) sortRefs(refs []sortRef) {
	radixSort(refs)
	for i := 0; i < len(refs); {
		j := i + 1
		for j < len(refs) && refs[j].prefix == refs[i].prefix {
			j++
		}
		if j-i > 1 { // keys that share their first 8 bytes, or shorter ones padded alike
			slices.SortFunc(refs[i:j], func(a, b sortRef) int { return bytes.Compare(t.key(a.off), t.key(b.off)) })
		}
		i = j
	}
}

// less reports whether a's key sorts before b's.
func (t *table) less(a, b sortRef) bool {
	if a.prefix != b.prefix {
		return a.prefix < b.prefix
	}
	return bytes.Compare(t.key(a.off), t.key(b.off)) < 0
}

// merge merges the sorted refs of fresh into the sorted refs of old, in
// old's memory (grown), from the back: no key is in both.
func (t *table) merge(old, fresh []sortRef) []sortRef {
	i := len(old) - 1
	out := slices.Grow(old, len(fresh))[:len(old)+len(fresh)]
	for j, k := len(fresh)-1, len(out)-1; j >= 0; k-- {
		if i >= 0 && t.less(fresh[j], out[i]) {
			out[k], i = out[i], i-1
		} else {
			out[k], j = fresh[j], j-1
		}
	}
	return out
}

// radixSort sorts refs by prefix, a byte at a time from the lowest (a
// stable least-significant-digit radix sort): eight linear passes at most,
// against a comparison sort's log2(n) (a complete-mode scan sorts every
// key of a partition each batch). A pass over a byte all prefixes share
// is skipped.
func radixSort(refs []sortRef) {
	if len(refs) < 2 {
		return
	}
	src, dst := refs, make([]sortRef, len(refs))
	for shift := 0; shift < 64; shift += 8 {
		var at [256]int
		for _, r := range src {
			at[byte(r.prefix>>shift)]++
		}
		if at[byte(src[0].prefix>>shift)] == len(src) {
			continue
		}
		n := 0
		for b, c := range at {
			at[b], n = n, n+c
		}
		for _, r := range src {
			b := byte(r.prefix >> shift)
			dst[at[b]] = r
			at[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &refs[0] {
		copy(refs, src)
	}
}

// sortRef is a record to sort: the first 8 bytes of its key (zero-padded),
// which decide most comparisons without touching the arena, and its offset.
type sortRef struct {
	prefix uint64
	off    int
}
