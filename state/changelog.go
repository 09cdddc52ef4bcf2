package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble"
)

// changelog is the state of a store in changelog mode (Options.Changelog):
// the whole committed state in memory, the staged writes encoded as the
// next changelog record, and the fold in flight.
type changelog struct {
	table table
	delta []byte // the staged writes, as a delta
	refs  []int  // for each staged write, its key's slot+1 in table (see table.applyDelta)
	// lastDelta and lastWrites are the size of the last delta that held a
	// write and its writes: the next batch's delta and refs are made that
	// large, and an eighth more, at its first write, rather than grown by
	// appending one write at a time (large ones are dropped between
	// batches; see discard).
	lastDelta, lastWrites int
	// handOver makes the next discard give up delta instead of keeping
	// its memory: a commit handed it to its caller (CommitRecord).
	handOver bool

	// lagging are the records committed by CommitRecords and not yet
	// applied to table, oldest first: the committed state is table with
	// them applied (see pebbleStore.catchUp). laggingBytes is their size.
	lagging      [][]byte
	laggingBytes int64

	// logged is the size of the changelog records written since the last
	// fold started; the next fold starts when it reaches foldAt.
	logged int64

	// While folding, a goroutine writes foldBuf back up to foldVersion and
	// sends its error on done.
	folding     bool
	foldVersion int64
	foldBuf     []byte
	done        chan error
}

// stage stages a put of value under key, or its deletion, and returns the
// change of the key count; a deletion of an absent key is not staged. The
// engine's Put follows its Get of the same key, whose lookup the table
// reuses, and Commit applies the write at the slot found here.
func (l *changelog) stage(key, value []byte, del bool) (change int64) {
	slot, existed := l.table.lookup(key)
	if del && !existed {
		return 0
	}
	if len(l.refs) == 0 {
		l.reserve()
	}
	l.delta = appendDeltaWrite(l.delta, key, value, del)
	l.refs = append(l.refs, slot+1)
	return keyCountChange(existed, del)
}

// memory is the memory of the changelog state, as ChangelogMaxBytes counts
// it: the table and the buffers.
func (l *changelog) memory() int64 {
	return l.table.memory() + int64(cap(l.delta)+intLen*cap(l.refs)+cap(l.foldBuf)) + l.laggingBytes
}

// staged is the memory the state would take with the staged writes
// committed: the table grows by about the size of their delta.
func (l *changelog) staged() int64 { return l.memory() + int64(len(l.delta)) }

// discard drops the staged writes. Buffers over keepBytes are dropped too,
// not kept for the next batch: the garbage collector sizes the heap to twice
// what is live, and a large batch's buffers are live only while it commits.
func (l *changelog) discard() {
	if !EmptyRecord(l.delta) {
		l.lastDelta, l.lastWrites = len(l.delta), len(l.refs)
	}
	if l.handOver {
		l.delta, l.handOver = nil, false
	}
	l.delta, l.refs = newDelta(keep(l.delta)), keep(l.refs)
}

// reserve makes room in the empty delta and refs for a batch like the
// last one.
func (l *changelog) reserve() {
	l.delta = slices.Grow(l.delta, max(l.lastDelta+l.lastDelta/8-len(l.delta), 0))
	l.refs = slices.Grow(l.refs, l.lastWrites+l.lastWrites/8)
}

// keepBytes is the largest buffer a store keeps from one batch to the next.
const keepBytes = 256 << 10

// keep returns b emptied, or nil if its memory is over keepBytes.
func keep[E any](b []E) []E {
	if cap(b)*int(unsafe.Sizeof(*new(E))) > keepBytes {
		return nil
	}
	return b[:0]
}

// slowLoad is how long loading a partition may take before it is logged.
const slowLoad = 100 * time.Millisecond

// errOverBound stops loading a partition whose state does not fit in
// ChangelogMaxBytes.
var errOverBound = errors.New("state: partition state over ChangelogMaxBytes")

// loadChangelog reads the partition's data keys into memory and replays its
// changelog over them (changelog mode). It stops, reporting false and
// leaving s.log unset, as soon as the state takes more memory than
// ChangelogMaxBytes.
func (s *pebbleStore) loadChangelog() (fits bool, err error) {
	start := time.Now()
	l := &changelog{table: newTable(), delta: newDelta(nil), done: make(chan error, 1)}
	t := &l.table
	fit := func() error {
		if l.memory() > s.provider.changelogMax {
			return errOverBound
		}
		return nil
	}
	var records int
	var size int64
	err = s.scanData(func(key, value []byte) error {
		t.put(key, value)
		return fit()
	})
	t.clean()
	loaded := t.live
	if err == nil {
		records, size, err = s.eachLog(func(_ int64, d []byte) error {
			if err := t.applyDelta(d, nil); err != nil {
				return err
			}
			return fit()
		})
	}
	if errors.Is(err, errOverBound) {
		s.logOverBound("state: partition state does not fit in memory, opening it in plain mode", l.memory())
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if t.live != s.hist.keys() {
		return false, s.corrupt("its data and changelog hold %d keys, its metadata says %d", t.live, s.hist.keys())
	}
	l.logged = size
	s.log = l
	if took := time.Since(start); took >= slowLoad {
		s.provider.log.Info("state: loaded partition into memory", "partition", s.partition,
			"keys", loaded, "changelog_records", records, "changelog_bytes", size, "took", took)
	}
	return true, nil
}

// logOverBound logs that the partition's state took memory bytes, more
// than ChangelogMaxBytes, and the way to keep it in memory.
func (s *pebbleStore) logOverBound(msg string, memory int64) {
	s.provider.log.Info(msg, "partition", s.partition, "keys", s.hist.keys(), "memory_bytes", memory,
		"max_bytes", s.provider.changelogMax, "hint", "raise ChangelogMaxBytes to keep the state in memory")
}

// leaveChangelog switches the store to plain mode for the rest of its life,
// after the commit of version took its state past ChangelogMaxBytes: it
// waits for the fold in flight, folds the keys written since in one synced
// batch and drops the table. Until that batch commits, the changelog
// records hold the committed state, so a failure loses nothing.
func (s *pebbleStore) leaveChangelog(version int64) error {
	return s.foldAndLeave(version, s.log.memory(), "state: partition state outgrew memory, going on in plain mode")
}

// leaveChangelogStaged switches the store to plain mode in the middle of a
// batch whose staged writes would take the state past ChangelogMaxBytes
// once committed (a backlog query's first large batches): it folds the
// committed state as leaveChangelog does, then stages the batch's writes
// again as data keys. Without it the table would take the whole batch in
// before the commit found it too large.
func (s *pebbleStore) leaveChangelogStaged() error {
	l := s.log
	if err := s.foldAndLeave(s.hist.version, l.staged(), "state: partition state outgrows memory with the batch being written, going on in plain mode"); err != nil {
		return err
	}
	err := decodeDelta(l.delta, func(key, value []byte, del bool) error {
		s.keyBuf = appendDataKey(s.keyBuf[:0], s.prefix, key)
		return s.stageWrite(key, value, del)
	})
	if err != nil {
		return s.fail("leave changelog mode after", s.hist.version, err)
	}
	s.record = l.delta // the batch's record goes on in plain mode (KeepsRecord)
	return nil
}

// foldAndLeave folds the committed state, at version, into data keys and
// switches the store to plain mode, logging msg and the memory it took.
func (s *pebbleStore) foldAndLeave(version, memory int64, msg string) error {
	l := s.log
	if err := s.collectFold(true); err != nil {
		return err
	}
	l.foldBuf = l.table.forgetDirty(newDelta(l.foldBuf), true)
	if err := fold(s.provider, s.prefix, l.foldBuf, version); err != nil {
		return s.fail("leave changelog mode after", version, err)
	}
	s.logOverBound(msg, memory)
	s.usePebble()
	return nil
}

// foldOnOpen writes the partition's changelog, if any, back as data keys in
// one synced batch (plain mode, which reads only data keys). A read-only
// provider reads and checks the changelog, and writes nothing.
func (s *pebbleStore) foldOnOpen() (err error) {
	b := s.db.NewBatch()
	defer func() { err = errors.Join(err, b.Close()) }()
	records, _, err := s.eachLog(func(_ int64, d []byte) error { return stageDelta(b, s.prefix, d) })
	if err != nil || records == 0 {
		return err
	}
	if err := stageLogDeletion(b, s.prefix, s.hist.version); err != nil || s.provider.readOnly {
		return err
	}
	if err := s.provider.writes.write(func() error { return b.Commit(pebble.Sync) }); errors.Is(err, ErrNoSpace) {
		return err
	} else if err != nil {
		return fmt.Errorf("state: folding the changelog of partition %d in %s: %w", s.partition, s.provider.dir, err)
	}
	s.provider.log.Info("state: folded changelog into data keys", "partition", s.partition, "changelog_records", records)
	return nil
}

// eachLog calls fn with each changelog record of the partition in version
// order and returns their number and total size. It checks the invariant
// of the package doc: log keys are well formed (so their versions increase,
// as keys sort by version), and the last one is the metadata's version.
// errBadDelta from fn is reported as ErrCorrupt.
func (s *pebbleStore) eachLog(fn func(version int64, d []byte) error) (records int, size int64, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendPrefix(nil, s.prefix, tagLog),
		UpperBound: appendPrefix(nil, s.prefix, tagLog+1),
	})
	if err != nil {
		return 0, 0, s.readError(err)
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	last := NoVersion
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != logKeyLen || k[prefixLen]&0x80 != 0 {
			return 0, 0, s.corrupt("malformed changelog key %q", k)
		}
		last = logKeyVersion(k)
		d, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, s.readError(err)
		}
		if err := fn(last, d); errors.Is(err, errBadDelta) {
			return 0, 0, s.corrupt("changelog record of version %d: %v", last, err)
		} else if err != nil {
			return 0, 0, err
		}
		records++
		size += int64(len(d))
	}
	if err := it.Error(); err != nil {
		return 0, 0, s.readError(err)
	}
	if records > 0 && last != s.hist.version {
		return 0, 0, s.corrupt("its last changelog record is of version %d, its metadata of version %d", last, s.hist.version)
	}
	return records, size, nil
}

// stageDelta stages the writes of delta d into b as data keys of partition.
func stageDelta(b *pebble.Batch, partition uint32, d []byte) error {
	var key []byte
	return decodeDelta(d, func(k, v []byte, del bool) error {
		key = appendDataKey(key[:0], partition, k)
		if del {
			return b.Delete(key, nil)
		}
		return b.Set(key, v, nil)
	})
}

// stageLogDeletion stages the deletion of partition's changelog records of
// versions up to version.
func stageLogDeletion(b *pebble.Batch, partition uint32, version int64) error {
	// version+1 wraps to the top bit for math.MaxInt64: still above every
	// log key.
	return b.DeleteRange(appendPrefix(nil, partition, tagLog), appendLogKey(nil, partition, version+1), nil)
}

// foldAt is the size of the changelog since the last fold that starts the
// next: four times the partition's state in memory, within
// Options.foldBounds. A fold writes back every key written since the last
// one, up to the whole state, and that costs far more per byte than the
// changelog records it drops (one Pebble key per state key, against one
// value per commit): where a batch writes most keys, as word count's
// complete table does, folding at a fixed size a fraction of the state's
// rewrote the state every few batches (in the bench suite's throughput
// run, folding and its Pebble work took 10% of the CPU). Tied to the state,
// a fold costs at most a quarter of the changelog it drops, and a restart
// replays at most a few times the state it loads anyway.
func (s *pebbleStore) foldAt() int64 {
	p := s.provider
	return min(max(4*int64(s.log.table.size()), p.foldLow), p.foldHigh)
}

// maybeFold starts a fold after the commit of version when enough changelog
// accumulated since the last one and that one has finished.
func (s *pebbleStore) maybeFold(version int64) {
	l := s.log
	if l.folding || l.logged < s.foldAt() {
		return
	}
	l.foldBuf = l.table.appendDirty(newDelta(l.foldBuf))
	l.logged, l.folding, l.foldVersion = 0, true, version
	p, partition, d := s.provider, s.prefix, l.foldBuf
	go func() { l.done <- fold(p, partition, d, version) }()
}

// fold writes delta d, the state of the keys written since the last fold,
// back as data keys and drops the changelog records up to version. The keys
// go in batches of foldChunk writes, unsynced; the last carries the records'
// deletion and is synced. A crash before it leaves every record, and
// replaying them over the data keys, some now at version's state, comes to
// the same state, since a record holds the keys' values, not changes to
// them.
func fold(p *pebbleProvider, partition uint32, d []byte, version int64) (err error) {
	b := p.db.NewBatch()
	defer func() { err = errors.Join(err, b.Close()) }()
	var key []byte
	err = decodeDelta(d, func(k, v []byte, del bool) error {
		if int(b.Count()) == foldChunk {
			if err := p.writes.write(func() error { return b.Commit(pebble.NoSync) }); err != nil {
				return err
			}
			b.Reset()
		}
		key = appendDataKey(key[:0], partition, k)
		if del {
			return b.Delete(key, nil)
		}
		return b.Set(key, v, nil)
	})
	if err != nil {
		return err
	}
	if err := stageLogDeletion(b, partition, version); err != nil {
		return err
	}
	return p.writes.write(func() error { return b.Commit(pebble.Sync) })
}

// foldChunk is how many writes a fold commits at a time. Pebble publishes
// commits in order, so a fold in one batch of tens of thousands of keys held
// every commit behind it while the keys went into the memtable: 20-40 ms of
// stalled batches in a query running about a hundred a second.
const foldChunk = 1024

// collectFold collects the fold in flight, if any has finished or, with
// wait, once it finishes. A failed fold makes the store fail; collectFold
// returns that error.
func (s *pebbleStore) collectFold(wait bool) error {
	l := s.log
	if !l.folding {
		return nil
	}
	var err error
	if wait {
		err = <-l.done
	} else {
		select {
		case err = <-l.done:
		default:
			return nil
		}
	}
	l.folding, l.foldBuf = false, keep(l.foldBuf)
	if err != nil {
		return s.fail("fold the changelog up to", l.foldVersion, err)
	}
	return nil
}

// scanLog is Scan in changelog mode.
func (s *pebbleStore) scanLog(fn func(key, value []byte) error) error {
	l := s.log
	for _, r := range l.table.sorted() {
		if err := fn(l.table.key(r.off), l.table.value(r.off)); err != nil {
			return err
		}
	}
	return nil
}

// commitRecords is CommitRecords on a store in changelog mode with no
// staged writes: it writes the records as they are, as version's
// changelog record, with the metadata in one synced batch, and keeps them
// to apply to the table later (catchUp): on the store's next use, or once
// enough changelog accumulated for a fold, or once they take the memory
// past ChangelogMaxBytes. Malformed records are ErrCorrupt, and nothing is
// written.
func (s *pebbleStore) commitRecords(version int64, recs [][]byte, keys int64) error {
	if err := s.alive(); err != nil {
		return err
	}
	if err := s.hist.checkCommit(s.partition, version); err != nil {
		return err
	}
	size := 1 // the records' writes after one format byte
	for i, rec := range recs {
		if err := decodeDelta(rec, func([]byte, []byte, bool) error { return nil }); err != nil {
			return fmt.Errorf("%w: partition %d: record %d of version %d: %w", ErrCorrupt, s.partition, i, version, err)
		}
		size += len(rec) - 1
	}
	op := s.batch.SetDeferred(logKeyLen, size)
	appendLogKey(op.Key[:0], s.prefix, version)
	op.Value[0] = deltaFormat
	n := 1
	for _, rec := range recs {
		n += copy(op.Value[n:], rec[1:])
	}
	if err := op.Finish(); err != nil {
		return s.fail("commit", version, err)
	}
	if err := s.commitHistory(version, keys); err != nil {
		return err
	}
	if err := s.apply("commit", version); err != nil {
		return err
	}
	l := s.log
	l.logged += int64(size)
	for _, rec := range recs {
		if !EmptyRecord(rec) {
			l.lagging = append(l.lagging, rec)
		}
	}
	l.laggingBytes += int64(size)
	if (l.folding || l.logged < s.foldAt()) && l.memory() <= s.provider.changelogMax {
		return nil
	}
	if err := s.catchUp(); err != nil {
		return err
	}
	return s.afterLogCommit(version)
}

// catchUp applies the records committed by commitRecords to the table, and
// checks that they leave the key count their commits gave. A count that
// differs makes the store fail: its copy is not what the records' writer
// held. It logs what it applied at Debug level, at Info when it took
// slowLoad or more.
func (s *pebbleStore) catchUp() error {
	l := s.log
	if l == nil || len(l.lagging) == 0 {
		return nil
	}
	start := time.Now()
	for _, rec := range l.lagging {
		if err := l.table.applyDelta(rec, nil); err != nil {
			return s.fail("apply the changelog records up to", s.hist.version, err)
		}
	}
	level, took := slog.LevelDebug, time.Since(start)
	if took >= slowLoad {
		level = slog.LevelInfo
	}
	s.provider.log.Log(context.Background(), level, "state: applied changelog records to memory", "partition", s.partition,
		"version", s.hist.version, "records", len(l.lagging), "bytes", l.laggingBytes, "took", took)
	clear(l.lagging)
	l.lagging, l.laggingBytes = keep(l.lagging), 0
	if l.table.live != s.hist.keys() {
		s.err = s.corrupt("its changelog records up to version %d leave %d keys, their commits said %d", s.hist.version, l.table.live, s.hist.keys())
		return s.err
	}
	return nil
}
