package operators

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// keyTable maps encoded group keys to dense group numbers 0, 1, 2, ... in
// insertion order. It is an open-addressing hash table with linear probing
// whose keys live back to back in one arena, so adding a group allocates
// nothing per key and looking one up costs one hash and, almost always, one
// comparison. It replaces map[string]int32 on the aggregation hot path.
type keyTable struct {
	seed  maphash.Seed
	slots []keySlot
	arena []byte
	ends  []uint32 // key i is arena[ends[i-1]:ends[i]]
}

type keySlot struct {
	tag   uint32 // high bits of the hash, to skip most comparisons
	group uint32 // group number + 1; 0 marks an empty slot
}

func newKeyTable() *keyTable { return &keyTable{seed: maphash.MakeSeed()} }

// len is the number of keys.
func (t *keyTable) len() int { return len(t.ends) }

// key returns key number i; it is valid until the next reset.
func (t *keyTable) key(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.arena[start:t.ends[i]]
}

// find returns the group number of key, adding it if absent.
func (t *keyTable) find(key []byte) (group int, added bool) {
	if 2*(len(t.ends)+1) > len(t.slots) {
		t.grow()
	}
	h := maphash.Bytes(t.seed, key)
	tag, mask := uint32(h>>32), uint64(len(t.slots)-1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.group == 0 {
			t.arena = append(t.arena, key...)
			t.ends = append(t.ends, uint32(len(t.arena)))
			t.slots[i] = keySlot{tag: tag, group: uint32(len(t.ends))}
			return len(t.ends) - 1, true
		}
		if s.tag == tag && bytes.Equal(t.key(int(s.group-1)), key) {
			return int(s.group - 1), false
		}
	}
}

// grow doubles the slots (at least 1024) and re-inserts every key.
func (t *keyTable) grow() {
	n := max(1024, 2*len(t.slots))
	t.slots = make([]keySlot, n)
	mask := uint64(n - 1)
	for g := range t.ends {
		h := maphash.Bytes(t.seed, t.key(g))
		i := h & mask
		for t.slots[i].group != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = keySlot{tag: uint32(h >> 32), group: uint32(g + 1)}
	}
}

// sortedGroups returns the group numbers in key order. It sorts on each
// key's first 8 bytes as a number and compares whole keys only on ties: most
// comparisons then touch neither the arena nor bytes.Compare.
func (t *keyTable) sortedGroups() []int32 {
	type entry struct {
		prefix uint64 // the key's first 8 bytes, big-endian, zero padded
		group  int32
	}
	entries := make([]entry, t.len())
	for g := range entries {
		var b [8]byte
		copy(b[:], t.key(g))
		entries[g] = entry{binary.BigEndian.Uint64(b[:]), int32(g)}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return bytes.Compare(t.key(int(a.group)), t.key(int(b.group)))
	})
	order := make([]int32, len(entries))
	for i, e := range entries {
		order[i] = e.group
	}
	return order
}

// reset forgets every key, keeping the memory.
func (t *keyTable) reset() {
	clear(t.slots)
	t.arena = t.arena[:0]
	t.ends = t.ends[:0]
}
