package state

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/vfs"
)

// Options configures OpenPebble. Start from DefaultOptions and change the
// fields you need; the zero Options is not valid.
//
// The memory a Pebble provider holds is bounded whatever the number of keys:
// about CacheSize + MemTableSize × MemTableStopWritesThreshold, plus one
// batch of staged writes per open store. Everything else spills to disk,
// unless Changelog is set: then add up to ChangelogMaxBytes per open
// partition.
type Options struct {
	// RetainVersions is how many of the latest commits of a partition can be
	// rolled back. Default 2. 0 writes no undo records at all, the cheapest
	// commits: Rollback then only accepts the current version (the engine
	// uses 0, as it re-runs a batch whose state committed without rolling
	// it back).
	RetainVersions int
	// CacheSize is the size in bytes of the block cache shared by all
	// partitions, on top of the memtables (Pebble reserves their memory in
	// the same cache, so OpenPebble adds it). Default 64 MiB.
	CacheSize int64
	// ReadCacheSize bounds, in bytes, the committed values each open
	// partition keeps in memory for Get (an estimate including overhead).
	// Default 16 MiB; 0 turns the cache off. Changelog mode ignores it.
	ReadCacheSize int64
	// MemTableSize is the size in bytes of one Pebble memtable. Default
	// 16 MiB; at least 1 MiB and below 4 GiB.
	MemTableSize uint64
	// MemTableStopWritesThreshold is how many memtables may be full and
	// waiting for flush before commits stall. Default 2; at least 2.
	MemTableStopWritesThreshold int
	// MaxOpenFiles is a soft limit on the files Pebble keeps open. Default
	// 1000; at least 16.
	MaxOpenFiles int
	// Changelog selects changelog mode, for low-latency queries with small
	// batches. Default false. An open partition then keeps all its
	// committed keys and values in memory, so Get never reads Pebble, and a
	// Commit writes one changelog record holding the batch's writes instead
	// of one Pebble key per written key. Every MemTableSize/4 bytes of
	// changelog, a background fold writes the keys changed since the last
	// fold back as ordinary keys and drops the records it covers.
	//
	// It costs memory proportional to each open partition's state (its
	// keys and values plus about 40 bytes a key, up to twice that while
	// the table grows or before it compacts) on top of the bound above,
	// up to ChangelogMaxBytes a partition, and opening a partition reads
	// its whole state and replays its changelog. A partition whose state
	// outgrows ChangelogMaxBytes leaves changelog mode until it is closed:
	// it folds its changelog and reads and writes through Pebble as
	// without Changelog, so memory stays bounded whatever the number of
	// keys. It requires RetainVersions 0. A state directory may be opened
	// with or without Changelog from one run to the next: a partition
	// opened without it folds its changelog first.
	Changelog bool
	// ChangelogMaxBytes bounds the memory, in bytes, that one open
	// partition's state may take in changelog mode: its table (the arena
	// of keys and values with their headers, room to grow and garbage not
	// yet compacted, the hash slots and the list of keys written since the
	// last fold) and its buffers (the staged changelog record, the fold's
	// copy of the written keys, Scan's sort order, the records
	// CommitRecords committed and has not applied yet). Default 64 MiB; it
	// must be positive when Changelog is set, and is ignored otherwise.
	//
	// When a commit takes a partition past it, the store waits for the
	// fold in flight, folds the rest of its changelog in one synced batch,
	// frees the table and goes on as a store without Changelog (Get
	// through Pebble and ReadCacheSize's cache) until it is closed;
	// Store.InMemory then reports false. Opening a partition whose state
	// does not fit stops loading it once past the bound and opens it the
	// same way. Both are logged at Info level.
	ChangelogMaxBytes int64
	// DeferSync makes Store.Commit return once its batch is written to
	// Pebble's log, without waiting for the disk: Provider.Sync makes the
	// commits so far durable. A crash before Sync may lose commits, each
	// whole and in order: a partition reopens at a version it committed.
	// Default false: every Commit is durable as it returns. The engine
	// sets it to output a batch while its state reaches the disk, and syncs
	// before the batch's commit-log entry.
	DeferSync bool
	// Label names the owner of the state, such as the checkpoint it belongs
	// to. OpenPebble writes it with the directory's marker when it creates
	// the directory, and into a directory that has none; it refuses a
	// directory labeled otherwise (ErrNotStateDir) without changing it.
	// CheckPebble returns a directory's label. Default (nil): none.
	Label []byte
	// Logger receives the provider's and Pebble's messages. Default (nil):
	// slog.Default(). Pebble's own messages are logged at Debug level.
	Logger *slog.Logger

	// fs replaces the real file system in tests (crash simulation).
	fs vfs.FS
	// foldBytes, if not 0, fixes the changelog size that starts a fold (see
	// foldBounds), so that tests fold often.
	foldBytes int64
}

// DefaultOptions returns the default Options.
func DefaultOptions() Options {
	return Options{
		RetainVersions:              2,
		CacheSize:                   64 << 20,
		ReadCacheSize:               16 << 20,
		MemTableSize:                16 << 20,
		MemTableStopWritesThreshold: 2,
		MaxOpenFiles:                1000,
		ChangelogMaxBytes:           64 << 20,
	}
}

// Validate reports the first field out of range, wrapping ErrInvalidOptions.
func (o Options) Validate() error {
	switch {
	case o.RetainVersions < 0:
		return o.invalid("RetainVersions", o.RetainVersions, "at least 0 (default 2)")
	case o.Changelog && o.RetainVersions != 0:
		return o.invalid("RetainVersions", o.RetainVersions, "0 when Changelog is set, as changelog mode keeps no undo history (set RetainVersions to 0, or Changelog to false)")
	case o.Changelog && o.ChangelogMaxBytes < 1:
		return o.invalid("ChangelogMaxBytes", o.ChangelogMaxBytes, "positive when Changelog is set (default 64 MiB; set it, or Changelog to false)")
	case o.CacheSize < 1:
		return o.invalid("CacheSize", o.CacheSize, "positive (default 64 MiB)")
	case o.ReadCacheSize < 0:
		return o.invalid("ReadCacheSize", o.ReadCacheSize, "at least 0 (default 16 MiB)")
	case o.MemTableSize < 1<<20 || o.MemTableSize >= 4<<30:
		return o.invalid("MemTableSize", o.MemTableSize, "between 1 MiB and 4 GiB (default 16 MiB)")
	case o.MemTableStopWritesThreshold < 2:
		return o.invalid("MemTableStopWritesThreshold", o.MemTableStopWritesThreshold, "at least 2 (default 2)")
	case o.MaxOpenFiles < 16:
		return o.invalid("MaxOpenFiles", o.MaxOpenFiles, "at least 16 (default 1000)")
	}
	return nil
}

func (Options) invalid(field string, value any, want string) error {
	return fmt.Errorf("%w: %s is %v; it must be %s (start from state.DefaultOptions())", ErrInvalidOptions, field, value, want)
}

// foldBounds are the changelog sizes, in bytes, between which a fold
// starts (see pebbleStore.foldAt): at least a quarter of a memtable, so
// that the changelog records of a small state are folded and deleted while
// their memtable still holds them, and at most two memtables. foldBytes,
// set by tests, fixes both.
func (o Options) foldBounds() (low, high int64) {
	if o.foldBytes != 0 {
		return o.foldBytes, o.foldBytes
	}
	return int64(o.MemTableSize / 4), int64(2 * o.MemTableSize)
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}
