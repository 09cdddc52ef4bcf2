package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// table holds every committed key of a partition in changelog mode. It is
// free of pointers but for its three slices, so that the garbage collector
// does not scan millions of keys: the keys and values lie in one arena,
// entries locate them, and an open-addressing hash table (linear probing)
// of slots indexes the entries.
//
// A deleted key keeps its entry, marked dead, until the next fold snapshot
// has written the deletion back (see appendDirty). Bytes no longer needed
// (overwritten values that moved, dead entries after their snapshot) are
// garbage; compact drops them once they outweigh the bytes in use.
//
// Keys and values are below 4 GiB each, like in a Pebble batch.
type table struct {
	seed    maphash.Seed
	slots   []uint64 // 0 empty, or the hash's high 32 bits << 32 | entry index+1
	entries []entry
	arena   []byte
	dirty   []uint32 // entries written since the last appendDirty
	live    int64    // live keys
	used    int      // cost (see entryCost) of the live and dirty entries
}

// entry is one key: its bytes at arena[off:], followed by room for vcap
// value bytes of which vlen are the value.
type entry struct {
	off              int
	hash             uint64
	klen, vlen, vcap uint32
	flags            uint8
}

const (
	entryLive  uint8 = 1 << iota // the key is committed (not deleted)
	entryDirty                   // written since the last fold snapshot
)

// entryCost is the memory of an entry and its slot beyond its arena bytes,
// counted with them to decide when to compact.
const entryCost = 32 + 8

// minSlots is the size of the slot array of an empty table.
const minSlots = 64

func newTable() table {
	return table{seed: maphash.MakeSeed(), slots: make([]uint64, minSlots)}
}

func (t *table) key(e *entry) []byte {
	end := e.off + int(e.klen)
	return t.arena[e.off:end:end]
}

// value returns e's value, capped so that appending to it copies.
func (t *table) value(e *entry) []byte {
	start := e.off + int(e.klen)
	end := start + int(e.vlen)
	return t.arena[start:end:end]
}

func (e *entry) cost() int { return int(e.klen) + int(e.vcap) + entryCost }

// find returns the index of key's entry, or -1 and the hash of key.
func (t *table) find(key []byte) (idx int, hash uint64) {
	hash = maphash.Bytes(t.seed, key)
	mask := len(t.slots) - 1
	for i := int(hash) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1, hash
		}
		if s>>32 == hash>>32 {
			idx := int(uint32(s)) - 1
			if bytes.Equal(t.key(&t.entries[idx]), key) {
				return idx, hash
			}
		}
	}
}

// get returns the value of key. The slice is valid until the table changes.
func (t *table) get(key []byte) ([]byte, bool) {
	idx, _ := t.find(key)
	if idx < 0 || t.entries[idx].flags&entryLive == 0 {
		return nil, false
	}
	return t.value(&t.entries[idx]), true
}

// put sets key to value and reports whether key was absent.
func (t *table) put(key, value []byte) (added bool) {
	idx, hash := t.find(key)
	if idx < 0 {
		t.insert(key, value, hash)
		return true
	}
	e := &t.entries[idx]
	if e.flags&(entryLive|entryDirty) == 0 {
		t.used += e.cost() // a dead entry whose bytes were counted as garbage
	}
	added = e.flags&entryLive == 0
	if added {
		t.live++
	}
	t.markDirty(idx, entryLive)
	if len(value) > int(e.vcap) {
		// Move the entry to the end of the arena with room to grow: a
		// count encoded as a varint grows a byte at a time.
		vcap := max(len(value), 2*int(e.vcap))
		t.used += vcap - int(e.vcap)
		off := len(t.arena)
		t.arena = append(t.arena, t.key(e)...)
		t.arena = slices.Grow(t.arena, vcap)[:off+int(e.klen)+vcap]
		e.off, e.vcap = off, uint32(vcap)
	}
	e.vlen = uint32(len(value))
	copy(t.arena[e.off+int(e.klen):], value)
	t.compactIfWasteful()
	return added
}

// del deletes key and reports whether it was present.
func (t *table) del(key []byte) (removed bool) {
	idx, _ := t.find(key)
	if idx < 0 || t.entries[idx].flags&entryLive == 0 {
		return false
	}
	t.live--
	t.markDirty(idx, 0)
	return true
}

// markDirty sets entry idx's flags to live (entryLive or 0) plus dirty.
func (t *table) markDirty(idx int, live uint8) {
	e := &t.entries[idx]
	if e.flags&entryDirty == 0 {
		t.dirty = append(t.dirty, uint32(idx))
	}
	e.flags = live | entryDirty
}

func (t *table) insert(key, value []byte, hash uint64) {
	if (len(t.entries)+1)*4 > len(t.slots)*3 {
		t.rehash(2 * len(t.slots))
	}
	e := entry{off: len(t.arena), hash: hash, klen: uint32(len(key)), vlen: uint32(len(value)), vcap: uint32(len(value))}
	t.arena = append(append(t.arena, key...), value...)
	t.entries = append(t.entries, e)
	t.place(len(t.entries)-1, hash)
	t.used += e.cost()
	t.live++
	t.markDirty(len(t.entries)-1, entryLive)
}

// place puts entry idx, of the given hash, into a free slot.
func (t *table) place(idx int, hash uint64) {
	mask := len(t.slots) - 1
	i := int(hash) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = hash>>32<<32 | uint64(idx+1)
}

// rehash rebuilds the slots, n of them (a power of two).
func (t *table) rehash(n int) {
	t.slots = make([]uint64, n)
	for i := range t.entries {
		t.place(i, t.entries[i].hash)
	}
}

// compactIfWasteful compacts the table when its garbage exceeds the bytes
// in use, so that compactions cost an amortized constant per byte written.
func (t *table) compactIfWasteful() {
	if size := len(t.arena) + len(t.entries)*entryCost; size-t.used > t.used {
		t.compact()
	}
}

// compact copies the live and dirty entries into a new arena, dropping the
// garbage and the room values had to grow.
func (t *table) compact() {
	arena := make([]byte, 0, t.used)
	entries := make([]entry, 0, int(t.live)+len(t.dirty))
	t.dirty, t.used = t.dirty[:0], 0
	for i := range t.entries {
		e := t.entries[i]
		if e.flags&(entryLive|entryDirty) == 0 {
			continue
		}
		if e.flags&entryDirty != 0 {
			t.dirty = append(t.dirty, uint32(len(entries)))
		}
		off := len(arena)
		arena = append(arena, t.key(&e)...)
		arena = append(arena, t.value(&e)...)
		e.off, e.vcap = off, e.vlen
		t.used += e.cost()
		entries = append(entries, e)
	}
	t.arena, t.entries = arena, entries
	n := minSlots
	for n*3 < len(entries)*4 {
		n *= 2
	}
	t.rehash(n)
}

// appendDirty appends to dst, as a delta, every key written since the last
// call with its value or its deletion, and forgets that they were written.
func (t *table) appendDirty(dst []byte) []byte {
	for _, idx := range t.dirty {
		e := &t.entries[idx]
		live := e.flags&entryLive != 0
		dst = appendDeltaWrite(dst, t.key(e), t.value(e), !live)
		e.flags &^= entryDirty
		if !live {
			t.used -= e.cost()
		}
	}
	t.dirty = t.dirty[:0]
	t.compactIfWasteful()
	return dst
}

// clean forgets that the keys were written, as after a fold: it makes the
// keys loaded from the data keys of a partition clean.
func (t *table) clean() {
	for _, idx := range t.dirty {
		e := &t.entries[idx]
		e.flags &^= entryDirty
		if e.flags&entryLive == 0 {
			t.used -= e.cost()
		}
	}
	t.dirty = t.dirty[:0]
}

// sorted returns the indices of the live entries in ascending key order,
// reusing order's memory.
func (t *table) sorted(order []sortRef) []sortRef {
	order = order[:0]
	for i := range t.entries {
		e := &t.entries[i]
		if e.flags&entryLive == 0 {
			continue
		}
		var p [8]byte
		copy(p[:], t.key(e))
		order = append(order, sortRef{prefix: binary.BigEndian.Uint64(p[:]), idx: uint32(i)})
	}
	slices.SortFunc(order, func(a, b sortRef) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return bytes.Compare(t.key(&t.entries[a.idx]), t.key(&t.entries[b.idx]))
	})
	return order
}

// sortRef is an entry to sort: the first 8 bytes of its key (zero-padded),
// which decide most comparisons without touching the arena, and its index.
type sortRef struct {
	prefix uint64
	idx    uint32
}

// apply applies one write of a delta (see decodeDelta).
func (t *table) apply(key, value []byte, del bool) error {
	if del {
		t.del(key)
	} else {
		t.put(key, value)
	}
	return nil
}
