package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
)

// OpenPebble opens, or creates, the state of one query in dir: one Pebble
// database holding every partition. A directory that does not exist or is
// empty is initialized; one that holds anything but gostream state is
// refused with ErrNotStateDir, a damaged one with ErrCorrupt, and in both
// cases left untouched.
func OpenPebble(dir string, opts Options) (Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	popts, w := opts.pebble(dir)
	defer popts.Cache.Unref() // the DB holds its own reference
	var marked bool
	var label []byte
	fs := popts.FS
	fresh, err := isEmptyDir(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("state: cannot read state directory %s: %w (check that it exists and is readable)", dir, err)
	}
	if fresh {
		if err := makeDurableDir(fs, dir); err != nil {
			return nil, fmt.Errorf("state: cannot create state directory %s: %w (check the permissions of its parent)", dir, err)
		}
	} else {
		ro, m, l, err := openReadOnly(dir, popts)
		if err != nil {
			return nil, err
		}
		marked, label = m, bytes.Clone(l)
		if err := ro.Close(); err != nil {
			return nil, openError(dir, err)
		}
		if label != nil && opts.Label != nil && !bytes.Equal(label, opts.Label) {
			return nil, fmt.Errorf("%w: %s is labeled %q, not %q; point the query at its own checkpoint directory, nothing in %s was changed",
				ErrNotStateDir, dir, label, opts.Label, dir)
		}
	}
	db, err := openWritable(dir, popts)
	if err != nil {
		return nil, err
	}
	w.opened.Store(true)
	if !marked || (label == nil && opts.Label != nil) {
		b := db.NewBatch()
		err := b.Set(markerKey, []byte(markerValue), nil)
		if err == nil && opts.Label != nil {
			err = b.Set(labelKey, opts.Label, nil)
		}
		if err == nil {
			err = w.write(func() error { return b.Commit(pebble.Sync) })
		}
		if err := errors.Join(err, b.Close()); err != nil {
			return nil, errors.Join(fmt.Errorf("state: cannot initialize state directory %s: %w", dir, err), w.close(db))
		}
		if !marked {
			w.log.Info("state: created state directory")
		}
	}
	return newPebbleProvider(dir, db, opts, w), nil
}

// openWritable opens dir for writing. Pebble reports a MANIFEST it cannot
// create or write as it opens (on a full disk) through Logger.Fatalf, whose
// panic is returned as an error.
func openWritable(dir string, popts *pebble.Options) (db *pebble.DB, err error) {
	const hint = "check that its disk has free space and is writable"
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("state: cannot open state directory %s for writing: %v (%s)", dir, r, hint)
		}
	}()
	db, err = pebble.Open(dir, popts)
	switch {
	case err == nil:
		return db, nil
	case pebble.IsCorruptionError(err):
		return nil, openError(dir, err)
	}
	return nil, fmt.Errorf("state: cannot open state directory %s for writing: %w (%s)", dir, err, hint)
}

func newPebbleProvider(dir string, db *pebble.DB, opts Options, w *writes) *pebbleProvider {
	p := &pebbleProvider{dir: dir, db: db, retain: opts.RetainVersions, readCache: opts.ReadCacheSize,
		changelog: opts.Changelog, changelogMax: opts.ChangelogMaxBytes, log: w.log, commitSync: pebble.Sync, writes: w}
	if opts.DeferSync {
		p.commitSync = pebble.NoSync
	}
	p.foldLow, p.foldHigh = opts.foldBounds()
	p.mu.stores = make(map[int]*pebbleStore)
	return p
}

// pebble returns the Pebble options of a state directory, with a block
// cache the caller unreferences once the database is open, and the guard
// of its writes.
func (opts Options) pebble(dir string) (*pebble.Options, *writes) {
	fs := opts.fs
	if fs == nil {
		fs = vfs.Default
	}
	w := &writes{dir: dir, log: opts.logger().With("dir", dir), stopped: make(chan struct{})}
	fs = vfs.OnDiskFull(fs, w.diskFull)
	// Pebble reserves its memtables' memory out of the block cache: size
	// the cache for both, or with full memtables no block stays cached and
	// every read goes to the file system and decompresses again.
	cache := pebble.NewCache(opts.CacheSize + int64(opts.MemTableSize)*int64(opts.MemTableStopWritesThreshold+1))
	return &pebble.Options{
		FS:                          fs,
		Cache:                       cache,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: opts.MemTableStopWritesThreshold,
		MaxOpenFiles:                opts.MaxOpenFiles,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{w},
		EventListener:               &pebble.EventListener{BackgroundError: w.backgroundError},
		// Bloom filters let Get of an absent key (a new group) skip most
		// sstables. Blocks are not compressed: snappy was 5% of a
		// continuous query's CPU (flushes and compactions of folds) and the
		// state's files are small. One level's options apply to all deeper
		// levels.
		Levels: []pebble.LevelOptions{{FilterPolicy: bloom.FilterPolicy(10), Compression: pebble.NoCompression}},
	}, w
}

// isEmptyDir reports whether dir is missing or empty.
func isEmptyDir(fs vfs.FS, dir string) (bool, error) {
	names, err := fs.List(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	return len(names) == 0, nil
}

// makeDurableDir creates dir and its missing parents, and syncs the parent
// of each directory it creates: Pebble syncs the directory it writes in but
// not its parent, so a crash could otherwise lose a new directory whole.
func makeDurableDir(fs vfs.FS, dir string) error {
	var created []string
	for d := dir; ; {
		if _, err := fs.Stat(d); err == nil {
			break
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		created = append(created, d)
		parent := fs.PathDir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		f, err := fs.OpenDir(fs.PathDir(d))
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openReadOnly opens the non-empty dir read-only, so without writing to
// it, and checks that it holds gostream state. It reports whether the
// marker is present and the label, if any, valid until db is closed; a
// Pebble database without the marker is accepted only if it holds no keys
// at all (its creation was interrupted before the marker was written).
func openReadOnly(dir string, popts *pebble.Options) (db *pebble.DB, marked bool, label []byte, err error) {
	desc, err := pebble.Peek(dir, popts.FS)
	if err != nil || !desc.Exists {
		return nil, false, nil, fmt.Errorf("%w: %s holds no Pebble database (%v); point the query at its own checkpoint directory or an empty one, nothing in %s was changed",
			ErrNotStateDir, dir, err, dir)
	}
	ro := popts.Clone()
	ro.ReadOnly = true
	if db, err = pebble.Open(dir, ro); err != nil {
		return nil, false, nil, openError(dir, err)
	}
	defer func() {
		if err != nil {
			db.Close()
			db = nil
		}
	}()
	if marked, err = checkMarker(dir, db); err != nil || !marked {
		return db, marked, nil, err
	}
	switch v, closer, err := db.Get(labelKey); {
	case err == nil:
		label = bytes.Clone(v)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, false, nil, openError(dir, err)
	}
	return db, true, label, nil
}

// checkMarker reports whether db holds the marker of gostream state, or
// fails if it holds something else.
func checkMarker(dir string, db *pebble.DB) (marked bool, err error) {
	v, closer, err := db.Get(markerKey)
	switch {
	case err == nil:
		defer closer.Close()
		if string(v) != markerValue {
			return false, fmt.Errorf("%w: %s holds gostream state of layout %q, this build reads %q; use the gostream version that wrote it, or start from a fresh checkpoint",
				ErrNotStateDir, dir, v, markerValue)
		}
		return true, nil
	case !errors.Is(err, pebble.ErrNotFound):
		return false, openError(dir, err)
	}
	it, err := db.NewIter(nil)
	if err != nil {
		return false, openError(dir, err)
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	if it.First() {
		return false, fmt.Errorf("%w: %s is a Pebble database of another application; point the query at its own checkpoint directory or an empty one, nothing in %s was changed",
			ErrNotStateDir, dir, dir)
	}
	if err := it.Error(); err != nil {
		return false, openError(dir, err)
	}
	return false, nil
}

// openError wraps an error from opening or reading dir.
func openError(dir string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: %v; restore it from a backup or start the query from a fresh checkpoint directory, nothing in %s was changed",
			ErrCorrupt, dir, err, dir)
	}
	return fmt.Errorf("state: cannot open state directory %s: %w", dir, err)
}

// pebbleLogger sends Pebble's messages to slog.
type pebbleLogger struct{ w *writes }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.w.log.Enabled(context.Background(), slog.LevelDebug) {
		l.w.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

// Fatalf reports an error Pebble cannot go on from (a MANIFEST or log it
// could not write: a full disk) and does not return, as Pebble requires.
// While the database opens, and on a write's goroutine (writes.run), it
// panics with a pebbleFatal, which openWritable and run return as an
// error. On Pebble's own goroutines (flushes, compactions), where a panic
// would end the process, it stops all writes with err instead (a full file
// system makes that ErrNoSpace), so that the engine stops the query with a
// message, and parks the goroutine for the life of the process with
// whatever locks of Pebble's it holds; the database is then never closed.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	if !strings.HasPrefix(err.Error(), "pebble: ") {
		err = fmt.Errorf("pebble: %w", err)
	}
	l.w.log.Error(err.Error(), "component", "pebble")
	if !l.w.opened.Load() || onWriteGoroutine() {
		panic(pebbleFatal{err})
	}
	l.w.fatal(err)
	select {}
}

// pebbleFatal is the panic of pebbleLogger.Fatalf.
type pebbleFatal struct{ err error }

func (f pebbleFatal) Error() string { return f.err.Error() }

// write runs fn, a write to the database, and reports its failure. Pebble
// does not return every failed write as an error: when its log cannot be
// written (a full disk) it panics on the next write or calls Fatalf, and a
// write may then wait forever for one that failed before it. So no write is
// tried once the file system reported a full disk or a write failed; fn
// runs on a goroutine of its own, whose panic is its error; and a write
// still in Pebble when another fails is abandoned, its goroutine left
// behind. After a panic or an abandoned write the provider's Close leaves
// the database open (its files locked until the process exits): Pebble may
// hold its commit lock, and closing would wait forever.
func (p *writes) write(fn func() error) error {
	if err := p.failure(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go p.run(fn, done)
	finished := func(err error) error {
		if err != nil {
			return p.failed(err)
		}
		return nil
	}
	select {
	case err := <-done:
		return finished(err)
	case <-p.stopped:
	}
	t := time.NewTimer(abandonAfter)
	defer t.Stop()
	select {
	case err := <-done:
		return finished(err)
	case <-t.C:
	}
	p.mu.Lock()
	p.mu.leaveOpen = true
	p.mu.Unlock()
	return p.failure()
}

// run is the goroutine of a write: it sends fn's result, or the error of
// its panic, to done. Fatalf recognizes it on the stack (see
// onWriteGoroutine).
func (p *writes) run(fn func() error, done chan<- error) {
	defer func() {
		if r := recover(); r != nil {
			done <- p.panicked(r)
		}
	}()
	done <- fn()
}

// runFunc is the name of writes.run in stack frames.
const runFunc = "github.com/gostream/gostream/state.(*writes).run"

// onWriteGoroutine reports whether its caller runs on a write's goroutine
// (writes.run), which recovers a panic.
func onWriteGoroutine() bool {
	pc := make([]uintptr, 128) // Pebble's deepest write is some 30 frames
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if f.Function == runFunc {
			return true
		}
		if !more {
			return false
		}
	}
}

// abandonAfter is how long a write in Pebble when writes stop may take to
// return before it is abandoned: one that failed returns at once, one
// waiting behind a failed write never does.
const abandonAfter = time.Second

// panicked returns the error of a panic of Pebble's in a write.
func (p *writes) panicked(r any) error {
	if f, ok := r.(pebbleFatal); ok {
		return f.err // from DB.Apply: its commit lock is not held
	}
	cause, ok := r.(error)
	if !ok {
		panic(r) // a bug, not a failed write
	}
	p.mu.Lock()
	p.mu.leaveOpen = true
	p.mu.Unlock()
	return cause
}

// stop stops all writes (see write).
func (p *writes) stop() { p.stopOnce.Do(func() { close(p.stopped) }) }

// failure returns the error that stopped writes, if any.
func (p *writes) failure() error {
	if p.full.Load() {
		return p.failed(nil)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.failed
}

// failed records that a write failed with cause (nil: the file system
// reported a full disk), stops all writes and returns the error every later
// write returns.
func (p *writes) failed(cause error) error {
	defer p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.mu.failed != nil:
	case p.full.Load() || vfs.IsNoSpaceError(cause):
		p.mu.failed = fmt.Errorf("%w writing state to %s: free space on its file system and restart", ErrNoSpace, p.dir)
		if cause != nil {
			p.mu.failed = fmt.Errorf("%w (%v)", p.mu.failed, cause)
		}
	default:
		p.mu.failed = fmt.Errorf("state: writing state to %s: %w", p.dir, cause)
	}
	return p.mu.failed
}

// fatal stops all writes for good with Pebble's fatal error err: a
// goroutine of Pebble's is parked, maybe holding its locks, so the database
// is never closed.
func (p *writes) fatal(err error) {
	p.mu.Lock()
	p.mu.leaveOpen = true
	p.mu.Unlock()
	p.failed(err)
}

// diskFull is called, on any goroutine and with Pebble's locks held, when
// the file system reports a full disk.
func (p *writes) diskFull() {
	p.full.Store(true)
	p.stop()
}

// backgroundError is Pebble's report of a failed flush or compaction,
// which it retries. A full disk stops writes: they would pile up in memory.
func (p *writes) backgroundError(err error) {
	if vfs.IsNoSpaceError(err) {
		p.diskFull()
	}
	p.log.Warn("state: background write failed", "component", "pebble", "err", err)
}

type pebbleProvider struct {
	dir          string
	db           *pebble.DB
	retain       int
	readCache    int64 // Options.ReadCacheSize
	changelog    bool  // Options.Changelog
	changelogMax int64 // Options.ChangelogMaxBytes
	foldLow      int64 // Options.foldBounds()
	foldHigh     int64
	commitSync   *pebble.WriteOptions // pebble.NoSync with Options.DeferSync
	readOnly     bool                 // opened by CheckPebble: stores load and check, never write
	log          *slog.Logger
	writes       *writes
	mu           struct {
		sync.Mutex
		stores map[int]*pebbleStore
		closed bool
	}
}

// writes guards the writes to a state directory's database (see write).
// Its mutex is never held while taking another: a fold takes it while the
// provider's Close holds the provider's.
type writes struct {
	dir      string
	log      *slog.Logger
	full     atomic.Bool   // the file system reported a full disk
	opened   atomic.Bool   // the database is open (see pebbleLogger.Fatalf)
	stopped  chan struct{} // closed once writes stop
	stopOnce sync.Once
	mu       struct {
		sync.Mutex
		failed    error // a write failed: none is tried again
		leaveOpen bool  // a write panicked or was abandoned: the database is never closed
	}
}

func (p *pebbleProvider) Open(partition int) (Store, error) {
	if err := checkPartition(partition); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, fmt.Errorf("%w: state directory %s; open it again", ErrClosed, p.dir)
	}
	if p.mu.stores[partition] != nil {
		return nil, fmt.Errorf("%w: partition %d in %s; close its store first", ErrPartitionOpen, partition, p.dir)
	}
	s := &pebbleStore{provider: p, partition: partition, prefix: uint32(partition), db: p.db}
	meta := appendPrefix(nil, s.prefix, tagMeta)
	v, closer, err := p.db.Get(meta)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		s.hist = newHistory()
	case err != nil:
		return nil, s.readError(err)
	default:
		s.hist, err = decodeMeta(v)
		closer.Close()
		if err != nil {
			return nil, s.corrupt("%v", err)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.batch = p.db.NewBatch()
	p.mu.stores[partition] = s
	return s, nil
}

func (p *pebbleProvider) Sync() error {
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: state directory %s; open it again", ErrClosed, p.dir)
	}
	// An empty log record, synced: Pebble's log is one file written in
	// commit order, so its sync covers every commit before it.
	if err := p.writes.write(func() error { return p.db.LogData(nil, pebble.Sync) }); errors.Is(err, ErrNoSpace) {
		return err
	} else if err != nil {
		return fmt.Errorf("state: syncing state directory %s: %w", p.dir, err)
	}
	return nil
}

func (p *pebbleProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return fmt.Errorf("%w: state directory %s closed twice", ErrClosed, p.dir)
	}
	p.mu.closed = true
	var errs []error
	for _, s := range p.mu.stores {
		errs = append(errs, s.closeLocked())
	}
	errs = append(errs, p.writes.close(p.db))
	return errors.Join(errs...)
}

// close closes db, unless a write panicked or was abandoned (see write).
// After a failed write the error of closing (the log could not be written
// either) is the failure already reported.
func (p *writes) close(db *pebble.DB) error {
	p.mu.Lock()
	leaveOpen := p.mu.leaveOpen
	p.mu.Unlock()
	if leaveOpen {
		return nil
	}
	err := db.Close()
	if err == nil || p.failure() != nil {
		return nil
	}
	return fmt.Errorf("state: closing state directory %s: %w", p.dir, err)
}

// load makes the store serve the partition's committed state: in changelog
// mode from memory if it fits in ChangelogMaxBytes, else from Pebble with
// the changelog folded first.
func (s *pebbleStore) load() error {
	s.log = nil // the table of the state before a rollback
	if s.provider.changelog {
		if fits, err := s.loadChangelog(); err != nil || fits {
			return err
		}
	}
	s.usePebble()
	return s.foldOnOpen()
}

// usePebble makes the store read its committed state from Pebble through
// the read cache (plain mode).
func (s *pebbleStore) usePebble() {
	s.log = nil
	s.cache, s.cacheMax = make(map[string][]byte), s.provider.readCache
}

// pebbleStore stages writes in a Pebble batch and the previous values of the
// written keys in an arena; Commit turns the latter into undo records. In
// changelog mode (log set) it keeps the committed state in log instead, and
// stages writes as a changelog record, until the state outgrows
// ChangelogMaxBytes (see leaveChangelog).
type pebbleStore struct {
	provider  *pebbleProvider
	partition int
	prefix    uint32
	db        *pebble.DB // nil once closed
	hist      history
	err       error      // set when a commit, rollback or fold failed half-way
	log       *changelog // nil in plain mode

	batch *pebble.Batch
	delta int64 // change of the key count by the staged writes
	// record holds the staged writes as a changelog record in plain mode
	// for a batch whose writes took the store out of changelog mode
	// (leaveChangelogStaged), so that CommitRecord hands it over still;
	// nil otherwise.
	record []byte

	// Staged undo records: undo[i] describes arena[undo[i-1].end:undo[i].end],
	// the key followed by its previous value.
	arena []byte
	undo  []undoRef

	// The last key read (a data key) and what it held, valid until the
	// committed state changes. The engine calls Get then Put on each key, so
	// Put finds the previous value here instead of reading it again.
	lastKey   []byte
	lastValue []byte
	lastFound bool
	lastValid bool

	// readIter serves Gets of the committed version, from the first read
	// after a change to the next commit or rollback. Reads in ascending key
	// order (the engine's) move it forward through blocks it already holds,
	// where independent point lookups would load and checksum every level's
	// index and filter blocks again once the state outgrows the block cache.
	readIter *pebble.Iterator

	// cache holds committed values by key, read through and written back
	// on commit, up to cacheMax bytes (estimated): most batches read the
	// same hot keys again, and a Pebble seek costs far more than a map
	// lookup. pend lists the staged writes to apply to it on commit.
	cache      map[string][]byte
	cacheBytes int64
	cacheMax   int64
	pend       []pendRef
	pendArena  []byte

	keyBuf  []byte
	metaBuf []byte
}

// pendRef is a staged write in pendArena: key up to keyEnd, then the value
// up to end.
type pendRef struct {
	keyEnd, end int
	del         bool
}

// cacheEntryOverhead estimates the memory of a cache entry beyond its key
// and value bytes (map slot, string and slice headers).
const cacheEntryOverhead = 64

type undoRef struct {
	keyEnd, end int
	existed     bool
}

// usable reports why the store cannot be used, if it cannot, and brings
// its table up to date with the records CommitRecords committed.
func (s *pebbleStore) usable() error {
	if err := s.alive(); err != nil {
		return err
	}
	return s.catchUp()
}

// alive reports why the store cannot be used: closed, or failed (a fold
// that failed since the last call makes it fail).
func (s *pebbleStore) alive() error {
	if s.db == nil {
		return fmt.Errorf("%w: store of partition %d in %s; open the partition again", ErrClosed, s.partition, s.provider.dir)
	}
	if s.log != nil && s.log.folding {
		s.collectFold(false) // sets s.err if the fold failed
	}
	return s.err
}

// corrupt reports damage found in the partition.
func (s *pebbleStore) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s: partition %d: %s; start the query from a fresh checkpoint directory",
		ErrCorrupt, s.provider.dir, s.partition, fmt.Sprintf(format, args...))
}

// readError wraps an error reading the partition from Pebble.
func (s *pebbleStore) readError(err error) error {
	return fmt.Errorf("state: reading partition %d in %s: %w", s.partition, s.provider.dir, err)
}

func (s *pebbleStore) Partition() int { return s.partition }

func (s *pebbleStore) Version() int64 { return s.hist.version }

// InMemory reports whether the store holds its committed state in memory
// (changelog mode), where reads cost the same in any key order; callers
// such as the engine's merge then need not sort the keys they read. It
// turns false for good when the state outgrows Options.ChangelogMaxBytes.
func (s *pebbleStore) InMemory() bool { return s.log != nil }

func (s *pebbleStore) Len() int64 { return s.hist.keys() }

// Prefetch hints that key will be read soon: in changelog mode, its memory
// starts loading into the CPU caches (see table.prefetch). It does nothing
// otherwise, and never fails.
func (s *pebbleStore) Prefetch(key []byte) {
	if s.log != nil && len(s.log.lagging) == 0 {
		s.log.table.prefetch(key)
	}
}

func (s *pebbleStore) Get(key []byte) ([]byte, bool, error) {
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	return s.read(key)
}

// read returns the committed value of key, leaving its data key in keyBuf
// in plain mode.
func (s *pebbleStore) read(key []byte) ([]byte, bool, error) {
	if s.log != nil {
		v, found := s.log.table.get(key)
		return v, found, nil
	}
	s.keyBuf = appendDataKey(s.keyBuf[:0], s.prefix, key)
	if s.lastValid && bytes.Equal(s.keyBuf, s.lastKey) {
		return s.lastValue, s.lastFound, nil // a Put after its Get
	}
	if v, ok := s.cache[string(key)]; ok {
		s.lastKey = append(s.lastKey[:0], s.keyBuf...)
		s.lastValue = append(s.lastValue[:0], v...)
		s.lastFound, s.lastValid = true, true
		return s.lastValue, true, nil
	}
	found, err := s.seek(s.keyBuf)
	if err != nil {
		s.lastValid = false
		return nil, false, s.readError(err)
	}
	s.lastFound = found
	if !found {
		s.lastValue = s.lastValue[:0]
	}
	s.lastKey = append(s.lastKey[:0], s.keyBuf...)
	s.lastValid = true
	if !s.lastFound {
		return nil, false, nil
	}
	s.cachePut(key, s.lastValue)
	return s.lastValue, true, nil
}

// cachePut caches a committed value read from Pebble. When the cache is
// full it drops an eighth of it in one pass (random entries: Go's map
// iteration order), so that a state larger than the cache costs an
// amortized constant per insert rather than a map iteration each.
func (s *pebbleStore) cachePut(key, value []byte) {
	size := int64(len(key)+len(value)) + cacheEntryOverhead
	if size > s.cacheMax {
		return
	}
	if s.cacheBytes+size > s.cacheMax {
		for k, v := range s.cache {
			if s.cacheBytes+size <= s.cacheMax-s.cacheMax/8 {
				break
			}
			delete(s.cache, k)
			s.cacheBytes -= int64(len(k)+len(v)) + cacheEntryOverhead
		}
	}
	s.cache[string(key)] = append([]byte(nil), value...)
	s.cacheBytes += size
}

// dropCache forgets every cached value.
func (s *pebbleStore) dropCache() {
	clear(s.cache)
	s.cacheBytes = 0
}

// cacheDel forgets key's cached value.
func (s *pebbleStore) cacheDel(key []byte) {
	if v, ok := s.cache[string(key)]; ok {
		delete(s.cache, string(key))
		s.cacheBytes -= int64(len(key)+len(v)) + cacheEntryOverhead
	}
}

// seek positions readIter at dataKey and, if present, copies its value to
// lastValue.
// nextSteps is how far stepTo walks before giving up for a seek: a batch
// usually reads a dense run of keys in order, so the key wanted is most
// often the iterator's next one, and Next costs much less than SeekGE.
const nextSteps = 4

// stepTo reports whether it, positioned at or before dataKey, reaches
// dataKey within nextSteps calls of Next. When it reports false the caller
// seeks (it is then left anywhere, or past dataKey if dataKey is absent).
func (s *pebbleStore) stepTo(it *pebble.Iterator, dataKey []byte) bool {
	if !it.Valid() {
		return false
	}
	for range nextSteps {
		switch c := bytes.Compare(it.Key(), dataKey); {
		case c == 0:
			return true
		case c > 0 || !it.Next():
			return false
		}
	}
	return false
}

func (s *pebbleStore) seek(dataKey []byte) (bool, error) {
	if s.readIter == nil {
		it, err := s.db.NewIter(&pebble.IterOptions{
			LowerBound: appendPrefix(nil, s.prefix, tagData),
			UpperBound: appendPrefix(nil, s.prefix, tagData+1),
		})
		if err != nil {
			return false, err
		}
		s.readIter = it
	}
	it := s.readIter
	if !s.stepTo(it, dataKey) && (!it.SeekGE(dataKey) || !bytes.Equal(it.Key(), dataKey)) {
		return false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return false, err
	}
	s.lastValue = append(s.lastValue[:0], v...)
	return true, nil
}

// closeReads releases readIter: the committed state is about to change.
func (s *pebbleStore) closeReads() error {
	if s.readIter == nil {
		return nil
	}
	err := s.readIter.Close()
	s.readIter = nil
	return err
}

func (s *pebbleStore) Put(key, value []byte) error { return s.stage(key, value, false) }

func (s *pebbleStore) Delete(key []byte) error { return s.stage(key, nil, true) }

func (s *pebbleStore) stage(key, value []byte, del bool) error {
	if err := s.usable(); err != nil {
		return err
	}
	if s.log != nil {
		s.delta += s.log.stage(key, value, del)
		if s.log.staged() > s.provider.changelogMax {
			return s.leaveChangelogStaged()
		}
		return nil
	}
	prev, existed, err := s.read(key)
	if err != nil {
		return err
	}
	if del && !existed {
		return nil
	}
	if s.provider.retain > 0 {
		s.arena = append(s.arena, key...)
		keyEnd := len(s.arena)
		s.arena = append(s.arena, prev...)
		s.undo = append(s.undo, undoRef{keyEnd: keyEnd, end: len(s.arena), existed: existed})
	}
	s.delta += keyCountChange(existed, del)
	return s.stageWrite(key, value, del)
}

// stageKnown is stage for a caller that knows whether key exists in the
// committed state (a Copy, which read every committed key): in plain mode
// without undo records it skips the read of key's committed value.
func (s *pebbleStore) stageKnown(key, value []byte, del, existed bool) error {
	if s.log != nil || s.provider.retain > 0 {
		return s.stage(key, value, del)
	}
	if err := s.usable(); err != nil {
		return err
	}
	if del && !existed {
		return nil
	}
	s.delta += keyCountChange(existed, del)
	s.keyBuf = appendDataKey(s.keyBuf[:0], s.prefix, key)
	return s.stageWrite(key, value, del)
}

// stageWrite stages a put or deletion of key in plain mode; s.keyBuf holds
// key's data key.
func (s *pebbleStore) stageWrite(key, value []byte, del bool) (err error) {
	if s.record != nil {
		s.record = appendDeltaWrite(s.record, key, value, del)
	}
	if s.cacheMax > 0 {
		s.pendArena = append(s.pendArena, key...)
		pkEnd := len(s.pendArena)
		s.pendArena = append(s.pendArena, value...)
		s.pend = append(s.pend, pendRef{keyEnd: pkEnd, end: len(s.pendArena), del: del})
	}
	if del {
		err = s.batch.Delete(s.keyBuf, nil)
	} else {
		err = s.batch.Set(s.keyBuf, value, nil)
	}
	if err != nil {
		return fmt.Errorf("state: staging a write to partition %d in %s: %w", s.partition, s.provider.dir, err)
	}
	return nil
}

// keyCountChange is the change of the key count by a write to a key that
// existed or not (a Delete of an absent key is never staged).
func keyCountChange(existed, del bool) int64 {
	switch {
	case del:
		return -1
	case !existed:
		return 1
	}
	return 0
}

func (s *pebbleStore) Commit(version int64) error {
	_, err := s.commit(version, false)
	return err
}

// commit is Commit. With handOver it returns the changelog record of the
// staged writes (see CommitRecord), nil if the store keeps none, and no
// longer uses its memory.
func (s *pebbleStore) commit(version int64, handOver bool) (rec []byte, _ error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if err := s.hist.checkCommit(s.partition, version); err != nil {
		return nil, err
	}
	var err error
	if s.log != nil {
		s.keyBuf = appendLogKey(s.keyBuf[:0], s.prefix, version)
		err = s.batch.Set(s.keyBuf, s.log.delta, nil) // copied into the batch
		s.log.logged += int64(len(s.log.delta))
		rec, s.log.handOver = s.log.delta, handOver
	} else {
		rec = s.record
		err = s.stageUndoRecords(version)
	}
	if err != nil {
		return nil, s.fail("commit", version, err)
	}
	if err := s.commitHistory(version, s.hist.keys()+s.delta); err != nil {
		return nil, err
	}
	if err := s.apply("commit", version); err != nil {
		return nil, err
	}
	if !handOver {
		rec = nil
	}
	if s.log != nil {
		return rec, s.afterLogCommit(version)
	}
	return rec, nil
}

// commitHistory moves the history to version, leaving keys keys, and
// stages the pruning of the undo records it no longer needs.
func (s *pebbleStore) commitHistory(version, keys int64) error {
	// With RetainVersions 0 the pruned range is just version's own undo
	// records, never written: skip the range tombstone.
	if from, to, prune := s.hist.commit(version, keys, s.provider.retain); prune && from < version {
		lower := appendUndoKey(nil, s.prefix, from, nil)
		upper := appendUndoKey(nil, s.prefix, to+1, nil)
		if err := s.batch.DeleteRange(lower, upper, nil); err != nil {
			return s.fail("commit", version, err)
		}
	}
	return nil
}

// afterLogCommit follows the commit of version in changelog mode, with the
// table up to date: it starts a fold if one is due, and leaves changelog
// mode if the state outgrew ChangelogMaxBytes.
func (s *pebbleStore) afterLogCommit(version int64) error {
	s.maybeFold(version) // its snapshot of the written keys takes memory too
	if s.log.memory() > s.provider.changelogMax {
		return s.leaveChangelog(version)
	}
	return nil
}

// stageUndoRecords stages the undo records of version (plain mode).
func (s *pebbleStore) stageUndoRecords(version int64) error {
	start := 0
	for _, u := range s.undo { // none when RetainVersions is 0
		key, prev := s.arena[start:u.keyEnd], s.arena[u.keyEnd:u.end]
		start = u.end
		op := s.batch.SetDeferred(undoPrefixLen+len(key), 1+len(prev))
		appendUndoKey(op.Key[:0], s.prefix, version, key)
		op.Value[0] = undoAbsent
		if u.existed {
			op.Value[0] = undoPresent
		}
		copy(op.Value[1:], prev)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	return nil
}

func (s *pebbleStore) Discard() {
	if s.batch == nil { // closed
		return
	}
	s.batch.Reset()
	s.arena, s.undo, s.delta, s.record = s.arena[:0], s.undo[:0], 0, nil
	s.pendArena, s.pend = s.pendArena[:0], s.pend[:0]
	if s.log != nil {
		s.log.discard()
	}
}

// applyPending brings the cached values, or in changelog mode the
// committed state, up to date with the commit.
func (s *pebbleStore) applyPending() error {
	if s.log != nil {
		return s.log.table.applyDelta(s.log.delta, s.log.refs)
	}
	start := 0
	for _, p := range s.pend {
		key, value := s.pendArena[start:p.keyEnd], s.pendArena[p.keyEnd:p.end]
		start = p.end
		switch old, cached := s.cache[string(key)]; {
		case p.del:
			s.cacheDel(key)
		case cached:
			s.cacheBytes += int64(len(value) - len(old))
			s.cache[string(key)] = append(old[:0], value...)
		}
		// A key written but not cached stays out: it enters when a later
		// batch reads it back, so keys written once never churn the cache.
	}
	return nil
}

func (s *pebbleStore) Rollback(v int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.Discard()
	s.dropCache() // values of the versions undone
	old := s.hist.version
	undoFrom, undo, err := s.hist.rollback(s.partition, v)
	if err != nil || (!undo && v == old) {
		return err
	}
	if undo {
		if err := s.stageUndo(undoFrom); err != nil {
			return s.fail("roll back to", v, err)
		}
	}
	if err := s.apply("roll back to", v); err != nil {
		return err
	}
	if undo && s.log != nil {
		// Only history committed in plain mode has undo records, and a
		// changelog commit prunes it: no changelog record or fold exists,
		// so the data keys now hold the whole state.
		if err := s.load(); err != nil {
			return s.fail("roll back to", v, err)
		}
	}
	s.provider.log.Info("state: rolled back", "partition", s.partition, "from", old, "to", v)
	return nil
}

// stageUndo stages the undo records of versions from and above, newest
// first so that for a key written in several versions the oldest previous
// value is written last and wins, and stages their deletion.
func (s *pebbleStore) stageUndo(from int64) (err error) {
	lower := appendUndoKey(nil, s.prefix, from, nil)
	upper := appendPrefix(nil, s.prefix, tagUndo+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	for ok := it.Last(); ok; ok = it.Prev() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(k) < undoPrefixLen || len(v) == 0 || v[0] > undoPresent {
			return fmt.Errorf("%w: %s: partition %d: malformed undo record %q; start the query from a fresh checkpoint directory",
				ErrCorrupt, s.provider.dir, s.partition, k)
		}
		s.keyBuf = appendDataKey(s.keyBuf[:0], s.prefix, k[undoPrefixLen:])
		if v[0] == undoPresent {
			err = s.batch.Set(s.keyBuf, v[1:], nil)
		} else {
			err = s.batch.Delete(s.keyBuf, nil)
		}
		if err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return s.batch.DeleteRange(lower, upper, nil)
}

// apply writes the metadata into the staged batch and commits it durably.
// s.hist already holds the new history.
func (s *pebbleStore) apply(what string, version int64) error {
	s.lastValid = false
	if err := s.closeReads(); err != nil {
		return s.fail(what, version, err)
	}
	s.keyBuf = appendPrefix(s.keyBuf[:0], s.prefix, tagMeta)
	s.metaBuf = appendMeta(s.metaBuf[:0], &s.hist)
	if err := s.batch.Set(s.keyBuf, s.metaBuf, nil); err != nil {
		return s.fail(what, version, err)
	}
	if err := s.provider.writes.write(func() error { return s.batch.Commit(s.provider.commitSync) }); err != nil {
		s.dropCache()
		return s.fail(what, version, err)
	}
	if err := s.applyPending(); err != nil {
		return s.fail(what, version, err)
	}
	s.Discard()
	return nil
}

// fail makes the store unusable: s.hist may be ahead of what is durable.
// A full disk is reported as it is: opening the directory again after
// freeing space is all there is to do.
func (s *pebbleStore) fail(what string, version int64, err error) error {
	if errors.Is(err, ErrNoSpace) {
		s.err = err
		return err
	}
	s.err = fmt.Errorf("%w: partition %d in %s: %s version %d: %v; close the provider and open %s again to find the durable version",
		ErrFailed, s.partition, s.provider.dir, what, version, err, s.provider.dir)
	return s.err
}

func (s *pebbleStore) Scan(fn func(key, value []byte) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	if s.log != nil {
		return s.scanLog(fn)
	}
	return s.scanData(fn)
}

// scanData calls fn for each data key of the partition in Pebble.
func (s *pebbleStore) scanData(fn func(key, value []byte) error) (err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendPrefix(nil, s.prefix, tagData),
		UpperBound: appendPrefix(nil, s.prefix, tagData+1),
	})
	if err != nil {
		return fmt.Errorf("state: scanning partition %d in %s: %w", s.partition, s.provider.dir, err)
	}
	defer func() {
		// fn's error is returned unchanged.
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: scanning partition %d in %s: %w", s.partition, s.provider.dir, cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: scanning partition %d in %s: %w", s.partition, s.provider.dir, err)
		}
		if err := fn(it.Key()[prefixLen:], v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: scanning partition %d in %s: %w", s.partition, s.provider.dir, err)
	}
	return nil
}

func (s *pebbleStore) Close() error {
	s.provider.mu.Lock()
	defer s.provider.mu.Unlock()
	if s.db == nil {
		return fmt.Errorf("%w: store of partition %d in %s closed twice", ErrClosed, s.partition, s.provider.dir)
	}
	return s.closeLocked()
}

// closeLocked drops staged writes and releases the partition; the
// provider's mutex is held.
func (s *pebbleStore) closeLocked() error {
	delete(s.provider.mu.stores, s.partition)
	var ferr error
	if s.log != nil {
		ferr = s.collectFold(true)
		s.log = nil
	}
	rerr := s.closeReads()
	s.db = nil
	err := errors.Join(s.batch.Close(), rerr, ferr)
	s.batch = nil
	if err != nil {
		return fmt.Errorf("state: closing partition %d in %s: %w", s.partition, s.provider.dir, err)
	}
	return nil
}
