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
// concurrently. In changelog mode a store also owns at most one
// goroutine folding its changelog; Store.Close and Provider.Close wait for
// it.
//
// # Pebble layout
//
// Every key starts with the 4-byte big-endian partition number, so each
// partition is an independent key range, followed by a tag:
//
//	p | 'd' | key                 committed value of key
//	p | 'm'                       metadata: version and restore points (version, key count)
//	p | 'u' | version | key       undo record: the value key had before version (or its absence)
//	p | 'l' | version             changelog record: the writes of version (changelog mode)
//
// Versions in keys are 8-byte big-endian, so records sort by version. A
// commit writes the data, the undo records of that version, the new
// metadata and the pruning of undo records older than Options.RetainVersions
// in one Pebble batch synced to the write-ahead log, so a crash leaves the
// partition either wholly at the old version or wholly at the new one.
// Rollback applies undo records from the newest version down in one synced
// batch. The key 0xffffffff "gostream-state" marks a directory as ours.
//
// In changelog mode (Options.Changelog) a commit writes instead one
// changelog record and the metadata, in one synced batch. A changelog record
// is a format byte, then for each write in order an op byte (put or
// delete), the uvarint length of the key, the key, and for a put the
// uvarint length of the value and the value. The committed state of a
// partition is its data keys with its changelog records applied in version
// order; the last record, if any, is of the metadata's version. A fold
// writes the keys changed since the previous fold back as data keys, a
// thousand at a time, then deletes the records it covers in the last, synced
// batch; records hold values, not changes, so replaying them over a fold
// cut short by a crash comes to the same state. A partition opened
// in plain mode folds its whole changelog first, so either mode can open a
// directory the other wrote. Layout 1 directories without changelog
// records are still valid, so the layout keeps its name.
//
// CommitRecords, in changelog mode, writes the records it is given as they
// are as the version's changelog record, and the metadata with the key
// count its caller gives: the layout is the same. It leaves the records
// out of memory ("lagging") until the store is next read or written, or a
// fold is due, and then applies them and checks the key count; a crash
// before that loses nothing, as the records are durable.
//
// # Memory
//
// Reads go through a per-partition cache of committed values
// (Options.ReadCacheSize): keys enter when read from Pebble, commits update
// the cached ones. The block cache is sized on top of the memtables, whose
// memory Pebble reserves in it.
//
// In changelog mode an open partition instead holds its whole committed
// state in a hash table over one arena of key and value bytes (no pointer
// per key for the garbage collector to scan), and Get never reads Pebble.
// The table and its buffers may take up to Options.ChangelogMaxBytes
// (counted as their capacity: arena with garbage and room to grow, hash
// slots, the list of keys written since the last fold, the staged
// changelog record, the fold's and Scan's buffers, the lagging records
// CommitRecords has not applied yet). A commit that takes a
// partition past it, or a write that would with the writes staged before
// it, switches the store to plain mode until it is closed: it waits for the
// fold in flight, folds the rest of the changelog in one synced batch (a
// crash before that batch leaves the changelog records, so the next open
// replays them) and frees the table; writes staged meanwhile are staged
// again as Pebble keys. Buffers over 256 KiB are not kept from one batch to
// the next. A partition opened in
// changelog mode stops loading once past the bound and opens in plain mode.
// So memory stays bounded whatever the number of keys in either mode.
package state
