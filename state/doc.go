// Package state holds the versioned key-value state of streaming aggregations:
// one Store per shuffle partition, committed once per micro-batch under the
// batch id as its version, with an optional bounded undo history
// (Options.RetainVersions) so that a commit can be rolled back. The engine
// keeps none: a batch re-run after its state committed skips the partitions
// that hold it instead.
//
// Two implementations share the Store contract: OpenPebble keeps all
// partitions of one query in one Pebble database (bounded memory, durable,
// crash-safe), and NewMemory keeps them in maps for tests. The package
// touches only its own directory; checkpoints, offsets and the Kafka
// changelog belong to the engine and cluster packages.
//
// # Concurrency
//
// A Store is owned by one goroutine (its partition's reduce task). Stores of
// different partitions, and Provider.Open and Provider.Close, may be used
// concurrently.
//
// # Pebble layout
//
// Every key starts with the 4-byte big-endian partition number, so each
// partition is an independent key range, followed by a tag:
//
//	p | 'd' | key                 committed value of key
//	p | 'm'                       metadata: version and restore points (version, key count)
//	p | 'u' | version | key       undo record: the value key had before version (or its absence)
//
// A commit writes the data, the undo records of that version, the new
// metadata and the pruning of undo records older than Options.RetainVersions
// in one Pebble batch synced to the write-ahead log, so a crash leaves the
// partition either wholly at the old version or wholly at the new one.
// Rollback applies undo records from the newest version down in one synced
// batch. The key 0xffffffff "gostream-state" marks a directory as ours.
//
// # Memory
//
// Reads go through a per-partition cache of committed values
// (Options.ReadCacheSize): keys enter when read from Pebble, commits update
// the cached ones. The block cache is sized on top of the memtables, whose
// memory Pebble reserves in it.
package state
