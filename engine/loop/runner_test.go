package loop

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gostream/gostream/kafkasrc"
)

// fakeSource serves fixed offsets; its followers "fetch" up to latest.
type fakeSource struct {
	mu        sync.Mutex
	latest    kafkasrc.Offsets
	following bool
	arrived   chan struct{}
	listing   atomic.Int32 // Offsets calls under way, to catch overlaps
	overlaps  atomic.Int32
}

func newFakeSource(latest kafkasrc.Offsets) *fakeSource {
	return &fakeSource{latest: latest, arrived: make(chan struct{}, 1)}
}

func (s *fakeSource) Offsets(ctx context.Context) (kafkasrc.Offsets, kafkasrc.Offsets, error) {
	if s.listing.Add(1) > 1 {
		s.overlaps.Add(1)
	}
	defer s.listing.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	earliest := s.latest.Clone()
	for _, parts := range earliest {
		for p := range parts {
			parts[p] = 0
		}
	}
	return earliest, s.latest.Clone(), ctx.Err()
}

func (s *fakeSource) Follow(kafkasrc.Offsets) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.following = true
	return nil
}

func (s *fakeSource) Buffered() kafkasrc.Offsets {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.following {
		return nil
	}
	return s.latest.Clone()
}

func (s *fakeSource) Arrived() <-chan struct{} { return s.arrived }

// fakeLog keeps the entries as text and fails a test that writes them out
// of the protocol's order or two at a time.
type fakeLog struct {
	t       *testing.T
	mu      sync.Mutex
	busy    bool
	entries []string
	planned int64 // last batch logged, -1 before any
	commit  int64 // last batch committed, -1 before any
}

func newFakeLog(t *testing.T) *fakeLog { return &fakeLog{t: t, planned: -1, commit: -1} }

func (l *fakeLog) write(es ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy {
		l.t.Errorf("two writes to the batch log at once: %v", es)
	}
	l.entries = append(l.entries, es...)
	return nil
}

func (l *fakeLog) check(e OffsetsEntry) {
	if e.BatchID != l.planned+1 || l.commit != l.planned {
		l.t.Errorf("offsets %d logged after offsets %d and commit %d", e.BatchID, l.planned, l.commit)
	}
	l.planned = e.BatchID
}

func (l *fakeLog) WriteOffsets(_ context.Context, e OffsetsEntry) error {
	l.mu.Lock()
	l.check(e)
	l.mu.Unlock()
	return l.write(fmt.Sprintf("offsets %d", e.BatchID))
}

func (l *fakeLog) WriteCommit(_ context.Context, id int64, next *OffsetsEntry) error {
	l.mu.Lock()
	if id != l.planned || id != l.commit+1 {
		l.t.Errorf("commit %d after offsets %d and commit %d", id, l.planned, l.commit)
	}
	l.commit = id
	es := []string{fmt.Sprintf("commit %d", id)}
	if next != nil {
		l.check(*next)
		es = append(es, fmt.Sprintf("offsets %d", next.BatchID))
	}
	l.mu.Unlock()
	return l.write(es...)
}

type fakeMapped struct {
	batch   int64
	records int64
}

func (m *fakeMapped) Records() int64 { return m.records }

// fakeExecutor "maps" a batch by counting its offsets, after a random
// pause, and fails a test whose calls overlap where they must not.
type fakeExecutor struct {
	t         *testing.T
	rnd       func() time.Duration
	mapping   atomic.Int32
	finishing atomic.Int32 // Output and Sync calls under way
	mu        sync.Mutex
	output    []int64
	failAt    int64 // the batch whose output fails, -1 for none
}

var errSink = errors.New("sink unavailable")

func (x *fakeExecutor) Map(ctx context.Context, e OffsetsEntry, ranges []kafkasrc.Range, _ bool) (Mapped, error) {
	if x.mapping.Add(1) > 1 {
		x.t.Errorf("batch %d maps while another batch maps", e.BatchID)
	}
	defer x.mapping.Add(-1)
	time.Sleep(x.rnd())
	m := &fakeMapped{batch: e.BatchID}
	for _, r := range ranges {
		m.records += r.Len()
	}
	return m, ctx.Err()
}

func (x *fakeExecutor) Output(ctx context.Context, m Mapped) (OutputStats, error) {
	if x.finishing.Add(1) > 1 {
		x.t.Errorf("batch %d outputs while another batch outputs or syncs", m.(*fakeMapped).batch)
	}
	defer x.finishing.Add(-1)
	time.Sleep(x.rnd())
	id := m.(*fakeMapped).batch
	if id == x.failAt {
		return OutputStats{}, fmt.Errorf("batch %d: %w", id, errSink)
	}
	x.mu.Lock()
	x.output = append(x.output, id)
	x.mu.Unlock()
	return OutputStats{Groups: m.Records()}, ctx.Err()
}

func (x *fakeExecutor) Sync(ctx context.Context, batch int64) error {
	if x.finishing.Add(1) > 1 {
		x.t.Errorf("batch %d syncs while another batch outputs or syncs", batch)
	}
	defer x.finishing.Add(-1)
	time.Sleep(x.rnd())
	return nil
}

type fakeReporter struct {
	reports []Report
	records int64
}

func (r *fakeReporter) Report(rep Report, m Mapped) {
	if m.(*fakeMapped).batch != rep.Entry.BatchID {
		panic(fmt.Sprintf("report of batch %d with batch %d's Mapped", rep.Entry.BatchID, m.(*fakeMapped).batch))
	}
	r.reports = append(r.reports, rep)
	r.records += rep.Records
}

// fakeParts returns parts over latest whose actions pause up to 2 ms at
// random, with the seed logged.
func fakeParts(t *testing.T, latest kafkasrc.Offsets) (Parts, *fakeLog, *fakeExecutor, *fakeReporter) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	pause := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return time.Duration(rnd.IntN(2000)) * time.Microsecond
	}
	log, exec, rep := newFakeLog(t), &fakeExecutor{t: t, rnd: pause, failAt: -1}, &fakeReporter{}
	return Parts{Log: log, Executor: exec, Source: newFakeSource(latest), Reporter: rep}, log, exec, rep
}

// TestRunAvailableNow runs an AvailableNow query over a backlog through
// Run: the batches cover the backlog once, the log's entries follow the
// protocol (offsets N+1 after commit N, one write at a time), the executor's
// calls overlap only where allowed, and every batch is reported.
func TestRunAvailableNow(t *testing.T) {
	for range 20 {
		latest := kafkasrc.Offsets{"logs": {0: 300, 1: 200, 2: 100}}
		parts, log, exec, rep := fakeParts(t, latest)
		core := NewCore(Config{Trigger: Trigger{Kind: AvailableNow}, Starting: kafkasrc.StartingOffsets{Earliest: true}, MaxOffsetsPerTrigger: 64}, Recovery{LastCommitted: -1})
		if err := Run(context.Background(), core, parts); err != nil {
			t.Fatal(err)
		}
		if rep.records != 600 {
			t.Fatalf("%d records reported, want 600", rep.records)
		}
		if n := int64(len(rep.reports)); log.commit != n-1 || log.planned != n-1 || len(exec.output) != int(n) {
			t.Fatalf("%d reports, last commit %d, last offsets %d, %d outputs: want all equal", n, log.commit, log.planned, len(exec.output))
		}
		if last := rep.reports[len(rep.reports)-1]; !Covers(last.Entry.End, latest) {
			t.Fatalf("the last batch ends at %s, want %s", last.Entry.End, latest)
		}
	}
}

// TestRunFailureLogsNothingAfter fails batch 2's output: Run returns that
// error, batch 2 never commits and no later batch is logged.
func TestRunFailureLogsNothingAfter(t *testing.T) {
	parts, log, exec, rep := fakeParts(t, kafkasrc.Offsets{"logs": {0: 1000}})
	exec.failAt = 2
	core := NewCore(Config{Trigger: Trigger{Kind: AvailableNow}, Starting: kafkasrc.StartingOffsets{Earliest: true}, MaxOffsetsPerTrigger: 160}, Recovery{LastCommitted: -1})
	err := Run(context.Background(), core, parts)
	if !errors.Is(err, errSink) {
		t.Fatalf("Run returned %v, want the sink's error", err)
	}
	if log.commit != 1 || log.planned != 2 || len(rep.reports) != 2 {
		t.Fatalf("after batch 2 failed: last commit %d, last offsets %d, %d reports; want commit 1, offsets 2, 2 reports (%v)",
			log.commit, log.planned, len(rep.reports), log.entries)
	}
}

// TestRunStopsWhenCancelled cancels a default-trigger query waiting for
// data: Run returns context.Canceled promptly.
func TestRunStopsWhenCancelled(t *testing.T) {
	parts, log, _, _ := fakeParts(t, kafkasrc.Offsets{"logs": {0: 10}})
	ctx, cancel := context.WithCancel(context.Background())
	core := NewCore(Config{Trigger: Trigger{Kind: Default}, Starting: kafkasrc.StartingOffsets{Earliest: true}}, Recovery{LastCommitted: -1})
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, core, parts) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		log.mu.Lock()
		committed := log.commit
		log.mu.Unlock()
		if committed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batch 0 did not commit within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the cancellation")
	}
}
