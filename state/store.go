package state

import "math"

// NoVersion is the version of a store that has never committed.
const NoVersion int64 = -1

// MaxPartition is the largest partition number a Provider accepts.
const MaxPartition = math.MaxInt32

// Store is the state of one shuffle partition.
//
// A Store is not safe for concurrent use: one goroutine (the partition's
// reduce task) owns it. Slices returned by Get and passed to Scan's callback
// belong to the store and must not be modified.
type Store interface {
	// Partition is the shuffle partition this store holds.
	Partition() int
	// Version is the last committed version, the version given to the last
	// Rollback, or NoVersion for a new store.
	Version() int64
	// Get reads the committed value of key. The returned slice is valid only
	// until the next call on the store; copy it to keep it.
	Get(key []byte) (value []byte, found bool, err error)
	// Put stages a write of value under key for the next Commit. The store
	// copies key and value. Reads do not see staged writes. A key is written
	// (by Put or Delete) at most once per version: the engine guarantees it
	// and the store relies on it.
	Put(key, value []byte) error
	// Delete stages the removal of key for the next Commit, like Put.
	Delete(key []byte) error
	// Commit atomically and durably applies the staged writes as version.
	// version must be above Version(); otherwise Commit returns ErrVersion,
	// applies nothing and keeps the staged writes. With Options.DeferSync,
	// a commit is durable once Provider.Sync returns.
	Commit(version int64) error
	// Discard drops the staged writes.
	Discard()
	// Rollback drops the staged writes (even when it fails) and restores the
	// committed state as of version v: the state of the last commit at or below v. Version()
	// becomes v. v above Version() is ErrVersion. At least the last
	// RetainVersions commits can be undone (Options.RetainVersions, default
	// 2); reaching further back is ErrVersionGone. Rollback(NoVersion)
	// empties a store whose retained history reaches back to its creation.
	Rollback(v int64) error
	// Scan calls fn for every committed key in ascending byte order. The
	// slices are valid only during the call. An error from fn stops the scan
	// and is returned unchanged.
	Scan(fn func(key, value []byte) error) error
	// Len is the number of committed keys.
	Len() int64
	// Close drops staged writes and releases the partition so that it can
	// be opened again. Closing twice returns ErrClosed.
	Close() error
}

// Provider opens the stores of one query's state, one per shuffle partition.
// Its methods are safe for concurrent use.
type Provider interface {
	// Open opens the store of partition, in [0, MaxPartition]. A partition
	// is open at most once at a time (ErrPartitionOpen); after Store.Close it
	// can be opened again and shows the committed state.
	Open(partition int) (Store, error)
	// Sync makes every commit of its stores so far durable. Commits are
	// durable as they return unless Options.DeferSync is set; Sync then
	// lets a caller overlap the wait for the disk with other work, and
	// makes many partitions' commits durable with one wait.
	Sync() error
	// Partitions lists, in ascending order, the partitions holding a
	// committed version, open or not.
	Partitions() ([]int, error)
	// Drop deletes partition's state whole, atomically and durably: after
	// a crash the partition is either as it was or gone, never in part.
	// The partition must not be open (ErrPartitionOpen); opened again, it
	// is a new store at NoVersion.
	Drop(partition int) error
	// Close closes every store it opened, then the provider itself. Call it
	// once the goroutines owning the stores have stopped using them.
	Close() error
}
