package engine

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/gostream/gostream/engine/loop"
	"github.com/gostream/gostream/engine/task"
	"github.com/gostream/gostream/state"
)

// DefaultMemory is a query's memory budget, in bytes, unless
// DataStreamWriter.Memory sets another.
const DefaultMemory = 512 << 20

// MinMemory is the smallest memory budget a query accepts: below it the
// engine's fixed costs (the Go runtime, a Kafka client per partition,
// Pebble's own structures) leave nothing to split.
const MinMemory = 64 << 20

// memoryPlan is a query's memory budget split among what holds memory in
// it. planMemory is the one place that splits it; every consumer takes its
// share from here.
type memoryPlan struct {
	budget int64

	// Pebble, off the Go heap (cgo allocations): memtables and the block
	// cache.
	memTable, blockCache int64
	// The state partitions' in-memory tables (changelog mode), per
	// partition, and their read caches once they left memory.
	stateTable, readCache int64
	// What the partition readers of a continuous query fetch ahead, over
	// all partitions (kafkasrc.Config.FetchAheadBytes).
	fetchAhead int64
	// What one batch's groups may take from map to sink: its exchange
	// buckets, final aggregation, changed rows and staged state writes.
	batch int64
	// Groups a map worker's partial aggregation holds before it flushes
	// them to the exchange.
	partialGroups int
}

// How a budget B is split. fixedBytes (32 MiB) stay unsplit for the Go
// runtime, the program's code and the Kafka clients; of the rest, R:
//   - Pebble, off the Go heap: memtables of R/32, up to three at once (one
//     filling, two flushing), and a block cache of R/32: 1/8 R;
//   - the state partitions' in-memory tables: 1/4 R over all partitions;
//   - a batch's groups, from its exchange buckets to its sink: 1/4 R (the
//     next batch, mapped meanwhile, holds only its exchange buckets);
//   - the map workers' partial aggregations: 1/16 R;
//   - the records a continuous query fetches ahead: 1/16 R.
//
// That plans at most 5/8 R of live data on the Go heap and leaves 1/4 R
// for the garbage the collector has not yet freed: the Go runtime's soft
// limit is B less Pebble's part and the code (goLimit), so the collector
// runs every 1/4 R allocated instead of letting the heap double.
const (
	fixedBytes         = 32 << 20
	codeBytes          = 16 << 20 // the program's code and data, outside the Go runtime's limit
	memTableShare      = 32
	blockCacheShare    = 32
	pebbleMemtables    = 3 // state.Options.MemTableStopWritesThreshold (2) + 1
	stateShare         = 4
	batchShare         = 4
	partialShare       = 16
	fetchAheadShare    = 16
	maxReadCache       = 16 << 20
	maxMemTable        = 256 << 20
	backlogStateTables = 16 << 20
)

// planMemory splits budget (bytes, at least MinMemory) for a query with
// parts state partitions. A backlog query (AvailableNow, Once) keeps no
// read cache (it reads each key about once a batch) and at most 16 MiB of
// state in memory per partition: its batches are large, and a state too
// large for memory leaves it in the first batches anyway.
func planMemory(budget int64, parts int, backlog bool) memoryPlan {
	m := memoryPlan{budget: budget}
	budget -= fixedBytes
	m.memTable = min(max(budget/memTableShare, 1<<20), maxMemTable)
	m.blockCache = budget / blockCacheShare
	m.stateTable = budget / stateShare / int64(max(parts, 1))
	m.readCache = min(m.stateTable/2, maxReadCache) // used only once the table is freed
	if backlog {
		m.stateTable, m.readCache = min(m.stateTable, backlogStateTables), 0
	}
	m.fetchAhead = budget / fetchAheadShare
	m.batch = budget / batchShare
	workers := int64(runtime.GOMAXPROCS(0))
	m.partialGroups = task.PartialGroups(budget / partialShare / workers)
	return m
}

// pebbleBytes is what Pebble holds off the Go heap at most.
func (m memoryPlan) pebbleBytes() int64 { return pebbleMemtables*m.memTable + m.blockCache }

// goLimit is the Go runtime's soft memory limit for the query: the budget
// less what Pebble allocates outside the Go heap.
func (m memoryPlan) goLimit() int64 { return m.budget - m.pebbleBytes() - codeBytes }

// stateOptions sizes the state store's memory.
func (m memoryPlan) stateOptions(o *state.Options) {
	o.MemTableSize = uint64(m.memTable)
	o.MemTableStopWritesThreshold = pebbleMemtables - 1
	o.CacheSize = m.blockCache
	o.ChangelogMaxBytes = m.stateTable
	o.ReadCacheSize = m.readCache
}

// Bytes of memory a batch takes per group, besides the group's encoded key
// and value in the exchange (loop.Sizer counts them): its slot in the
// final aggregation's table, its staged state write's header and, in
// update mode, its changed row (a Row of Values, 72 bytes each).
const (
	groupBytes      = 96
	changedRowBytes = 192
)

// sizer caps a query's batches so that the groups of one fit m.batch.
func (m memoryPlan) sizer(update bool) loop.Sizer {
	s := loop.Sizer{BatchBytes: m.batch, GroupBytes: groupBytes}
	if update {
		s.GroupBytes += changedRowBytes
	}
	return s
}

// BatchSizer caps the batches of a query whose memory budget is budget
// bytes (WriteStream().Memory; 0: DefaultMemory) as local mode does: the
// groups of one batch fit the budget's share for a batch. update is set
// unless the output mode is complete (update mode's changed rows count
// too). A cluster's driver caps its batches with it.
func BatchSizer(budget int64, update bool) loop.Sizer {
	if budget == 0 {
		budget = DefaultMemory
	}
	return planMemory(budget, 1, false).sizer(update)
}

// goLimits holds the Go soft memory limits of the running queries: the
// process's limit (debug.SetMemoryLimit) is their sum while any runs,
// unless GOMEMLIMIT set one for the process.
var goLimits struct {
	sync.Mutex
	sum      int64
	previous int64 // the limit before the first query raised it
}

// claimGoMemory adds a query's Go limit to the process's, and returns the
// function that gives it back when the query ends.
func claimGoMemory(limit int64) (release func()) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return func() {}
	}
	goLimits.Lock()
	defer goLimits.Unlock()
	if goLimits.sum == 0 {
		goLimits.previous = debug.SetMemoryLimit(-1)
	}
	goLimits.sum += limit
	debug.SetMemoryLimit(goLimits.sum)
	return func() {
		goLimits.Lock()
		defer goLimits.Unlock()
		goLimits.sum -= limit
		if goLimits.sum == 0 {
			debug.SetMemoryLimit(goLimits.previous)
		} else {
			debug.SetMemoryLimit(goLimits.sum)
		}
	}
}

// checkMemory validates a budget given to DataStreamWriter.Memory.
func checkMemory(budget int64) error {
	if budget < MinMemory || budget > math.MaxInt64/2 {
		return fmt.Errorf("%w: memory budget %d bytes: use at least %d MiB (the Go runtime, the Kafka clients and Pebble need about that much)",
			ErrAnalysis, budget, MinMemory>>20)
	}
	return nil
}
