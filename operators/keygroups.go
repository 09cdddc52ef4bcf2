package operators

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// MaxKeyGroups bounds a query's key groups.
const MaxKeyGroups = 1 << 16

// KeyGroup returns the key group, in [0, groups), of an encoded group key:
// xxhash64(key) % groups. It is stable across processes and versions:
// state is laid out by it.
func KeyGroup(key []byte, groups int) int {
	return int(xxhash.Sum64(key) % uint64(groups))
}

// KeyGroupRange is the key groups [First, End) a state partition owns.
type KeyGroupRange struct {
	First, End int
}

// Exchange routes a partial aggregation's groups to state partitions by
// key group: a key's group is KeyGroup(key, groups), and each state
// partition owns a contiguous range of groups. A query's key groups are
// fixed for its life, so state partitions can move, and their number can
// change, without rewriting keys. Local mode has as many key groups as
// partitions, partition p owning group p (PartitionExchange). An Exchange
// is immutable and safe for concurrent use.
type Exchange struct {
	groups uint64
	parts  int
	// owner is the partition owning each key group; nil when partition p
	// owns group p alone (local mode), which saves a dependent load per
	// group on Flush's path.
	owner []int32
	owned []int // key groups of each partition
}

// NewExchange returns the Exchange of groups key groups (1 to
// MaxKeyGroups) split among state partitions owning ranges: partition i
// owns ranges[i], the ranges in order, each not empty, the first starting
// at 0, each starting where the one before ends, the last ending at groups.
func NewExchange(groups int, ranges []KeyGroupRange) (*Exchange, error) {
	if groups < 1 || groups > MaxKeyGroups {
		return nil, fmt.Errorf("operators: %d key groups: want 1 to %d", groups, MaxKeyGroups)
	}
	x := &Exchange{groups: uint64(groups), parts: len(ranges), owner: make([]int32, groups), owned: make([]int, len(ranges))}
	identity := groups == len(ranges)
	next := 0
	for p, r := range ranges {
		if r.First != next || r.End <= r.First || r.End > groups {
			return nil, fmt.Errorf("operators: state partition %d owns key groups [%d, %d): the partitions' ranges must follow each other from 0 to %d without gaps, each not empty (the next starts at %d)", p, r.First, r.End, groups, next)
		}
		for g := r.First; g < r.End; g++ {
			x.owner[g] = int32(p)
		}
		x.owned[p] = r.End - r.First
		identity = identity && r.First == p
		next = r.End
	}
	if next != groups {
		return nil, fmt.Errorf("operators: the state partitions own key groups [0, %d) of %d: every key group needs an owner", next, groups)
	}
	if identity {
		x.owner = nil
	}
	return x, nil
}

// PartitionExchange returns the Exchange of parts partitions (1 to
// MaxKeyGroups) and as many key groups, partition p owning group p: a key
// goes to partition xxhash64(key) % parts.
func PartitionExchange(parts int) (*Exchange, error) {
	ranges := make([]KeyGroupRange, max(parts, 0))
	for p := range ranges {
		ranges[p] = KeyGroupRange{First: p, End: p + 1}
	}
	return NewExchange(parts, ranges)
}

// Partitions is the number of state partitions.
func (x *Exchange) Partitions() int { return x.parts }

// KeyGroups is the number of key groups.
func (x *Exchange) KeyGroups() int { return int(x.groups) }

// Partition returns the state partition of an encoded group key.
func (x *Exchange) Partition(key []byte) int { return x.owning(x.group(key)) }

// group is KeyGroup(key, x.KeyGroups()); Flush calls it and owning,
// which the compiler inlines, where it would not inline Partition.
func (x *Exchange) group(key []byte) uint64 { return xxhash.Sum64(key) % x.groups }

// share is partition p's share of n evenly hashed keys.
func (x *Exchange) share(p, n int) int { return int(uint64(n) * uint64(x.owned[p]) / x.groups) }

// owning returns the partition owning key group g.
func (x *Exchange) owning(g uint64) int {
	if o := x.owner; o != nil {
		return int(o[g])
	}
	return int(g)
}
