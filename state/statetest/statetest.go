// Package statetest is the conformance suite for state.Provider
// implementations. Run it from a test of each implementation:
//
//	func TestConformance(t *testing.T) {
//		statetest.RunConformance(t, newStorage)
//	}
//
//	func TestDurability(t *testing.T) {
//		statetest.RunDurability(t, newStorage)
//	}
//
//	func newStorage(t *testing.T) statetest.Storage {
//		dir := t.TempDir()
//		return statetest.Storage{Open: func() (state.Provider, error) {
//			return state.OpenPebble(dir, state.DefaultOptions())
//		}}
//	}
package statetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/gostream/gostream/state"
)

// Storage is one empty place for state, handed to each subtest.
type Storage struct {
	// Open opens a provider over the storage. The suite calls it once per
	// subtest, and again after closing the provider in RunDurability. Its
	// stores must keep the default retention
	// (state.DefaultOptions().RetainVersions, 2), or none for the
	// NoRollback variants of the suite.
	Open func() (state.Provider, error)

	// retain is the RetainVersions the stores keep, set by the runner.
	retain int
}

type suite []struct {
	name string
	run  func(t *testing.T, st Storage)
	// history marks a subtest of rollbacks to older versions, left out
	// for stores that keep none.
	history bool
}

func (s suite) run(t *testing.T, newStorage func(t *testing.T) Storage, retain int) {
	for _, tt := range s {
		if tt.history && retain == 0 {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			st := newStorage(t)
			st.retain = retain
			tt.run(t, st)
		})
	}
}

// RunConformance runs the Store and Provider contract as subtests of t.
// newStorage is called once per subtest and must return empty storage.
func RunConformance(t *testing.T, newStorage func(t *testing.T) Storage) {
	conformance.run(t, newStorage, retain)
}

// RunConformanceNoRollback is RunConformance for stores that keep no undo
// history (state.Options.RetainVersions 0), whose Rollback accepts only the
// current version: it leaves out the rollbacks to older versions and checks
// that they fail instead.
func RunConformanceNoRollback(t *testing.T, newStorage func(t *testing.T) Storage) {
	conformance.run(t, newStorage, 0)
}

var conformance = suite{
	{"EmptyStore", testEmptyStore, false},
	{"PutGetDelete", testPutGetDelete, false},
	{"StagedWritesInvisible", testStagedWritesInvisible, false},
	{"StoreCopiesArguments", testStoreCopiesArguments, false},
	{"CommitVersionOrder", testCommitVersionOrder, false},
	{"LenAccounting", testLenAccounting, false},
	{"ScanOrder", testScanOrder, false},
	{"Discard", testDiscard, false},
	{"Rollback", testRollback, true},
	{"RollbackBetweenVersions", testRollbackBetweenVersions, true},
	{"RollbackVersionGone", testRollbackVersionGone, true},
	{"PartitionsIsolated", testPartitionsIsolated, false},
	{"OpenClose", testOpenClose, false},
	{"Drop", testDrop, false},
	{"RollbackCurrentOnly", testRollbackCurrentOnly, false},
	{"Model", func(t *testing.T, st Storage) { testModel(t, st, false) }, false},
}

// RunDurability checks, as subtests of t, that a provider opened again
// after Close sees every committed version and the rollback history. Run
// it for implementations that persist state.
func RunDurability(t *testing.T, newStorage func(t *testing.T) Storage) {
	durability.run(t, newStorage, retain)
}

// RunDurabilityNoRollback is RunDurability for stores that keep no undo
// history, like RunConformanceNoRollback.
func RunDurabilityNoRollback(t *testing.T, newStorage func(t *testing.T) Storage) {
	durability.run(t, newStorage, 0)
}

var durability = suite{
	{"Reopen", testReopen, false},
	{"DropReopen", testDropReopen, false},
	{"Model", func(t *testing.T, st Storage) { testModel(t, st, true) }, false},
}

// open opens a provider over st, closed at the end of the test unless the
// test closes it first.
func open(t *testing.T, st Storage) state.Provider {
	t.Helper()
	p, err := st.Open()
	if err != nil {
		t.Fatalf("open provider: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil && !errors.Is(err, state.ErrClosed) {
			t.Errorf("close provider: %v", err)
		}
	})
	return p
}

func openStore(t *testing.T, p state.Provider, partition int) state.Store {
	t.Helper()
	s, err := p.Open(partition)
	if err != nil {
		t.Fatalf("open partition %d: %v", partition, err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// write stages puts (kv pairs) and commits them as version.
func write(t *testing.T, s state.Store, version int64, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		must(t, s.Put([]byte(kv[i]), []byte(kv[i+1])))
	}
	must(t, s.Commit(version))
}

// contents reads a store through Scan, checking the order and Len.
func contents(t *testing.T, s state.Store) map[string]string {
	t.Helper()
	got := map[string]string{}
	var last []byte
	err := s.Scan(func(k, v []byte) error {
		if last != nil && bytes.Compare(last, k) >= 0 {
			return fmt.Errorf("scan order: %q after %q", k, last)
		}
		last = append(last[:0:0], k...)
		got[string(k)] = string(v)
		return nil
	})
	must(t, err)
	if n := s.Len(); n != int64(len(got)) {
		t.Fatalf("Len() = %d, Scan saw %d keys", n, len(got))
	}
	return got
}

// expect checks the version and the whole committed contents of s,
// through Scan and through Get.
func expect(t *testing.T, s state.Store, version int64, want map[string]string) {
	t.Helper()
	if v := s.Version(); v != version {
		t.Fatalf("Version() = %d, want %d", v, version)
	}
	if got := contents(t, s); !maps.Equal(got, want) {
		t.Fatalf("partition %d at version %d holds %q, want %q", s.Partition(), version, got, want)
	}
	for k, w := range want {
		v, found, err := s.Get([]byte(k))
		must(t, err)
		if !found || string(v) != w {
			t.Fatalf("Get(%q) = %q, %v; want %q", k, v, found, w)
		}
	}
}

func expectErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func testEmptyStore(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 3)
	if s.Partition() != 3 {
		t.Fatalf("Partition() = %d, want 3", s.Partition())
	}
	expect(t, s, state.NoVersion, map[string]string{})
	if _, found, err := s.Get([]byte("missing")); err != nil || found {
		t.Fatalf("Get on an empty store: found %v, err %v", found, err)
	}
}

func testPutGetDelete(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	write(t, s, 0, "a", "1", "b", "2", "", "empty key")
	expect(t, s, 0, map[string]string{"a": "1", "b": "2", "": "empty key"})
	must(t, s.Delete([]byte("a")))
	must(t, s.Put([]byte("b"), []byte("")))
	must(t, s.Commit(1))
	expect(t, s, 1, map[string]string{"b": "", "": "empty key"})
	if _, found, err := s.Get([]byte("a")); err != nil || found {
		t.Fatalf("Get of a deleted key: found %v, err %v", found, err)
	}
}

func testStagedWritesInvisible(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	write(t, s, 0, "a", "old")
	must(t, s.Put([]byte("a"), []byte("new")))
	must(t, s.Put([]byte("b"), []byte("new")))
	must(t, s.Delete([]byte("c")))
	expect(t, s, 0, map[string]string{"a": "old"})
	if _, found, _ := s.Get([]byte("b")); found {
		t.Fatal("Get sees a staged Put")
	}
	must(t, s.Commit(1))
	expect(t, s, 1, map[string]string{"a": "new", "b": "new"})
}

func testStoreCopiesArguments(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	key, value := []byte("key"), []byte("value")
	must(t, s.Put(key, value))
	copy(key, "XXX")
	copy(value, "XXXXX")
	must(t, s.Commit(0))
	expect(t, s, 0, map[string]string{"key": "value"})

	// The engine's pattern: read the old value, write back a merge of it.
	old, _, err := s.Get([]byte("key"))
	must(t, err)
	must(t, s.Put([]byte("key"), append(old, '!')))
	must(t, s.Commit(1))
	expect(t, s, 1, map[string]string{"key": "value!"})
	if st.retain > 0 {
		must(t, s.Rollback(0))
		expect(t, s, 0, map[string]string{"key": "value"})
	}
}

func testCommitVersionOrder(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	expectErr(t, s.Commit(state.NoVersion), state.ErrVersion, "Commit(NoVersion) on a new store")
	write(t, s, 0, "a", "1")
	must(t, s.Put([]byte("b"), []byte("2")))
	expectErr(t, s.Commit(0), state.ErrVersion, "Commit of the current version")
	expect(t, s, 0, map[string]string{"a": "1"})
	must(t, s.Commit(5)) // the staged write survived the refused commit; gaps are allowed
	expect(t, s, 5, map[string]string{"a": "1", "b": "2"})
	expectErr(t, s.Commit(3), state.ErrVersion, "Commit of an older version")
	must(t, s.Commit(6)) // an empty commit advances the version
	expect(t, s, 6, map[string]string{"a": "1", "b": "2"})
}

func testLenAccounting(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	steps := []struct {
		name    string
		puts    []string
		deletes []string
		want    int64
	}{
		{"insert three", []string{"a", "b", "c"}, nil, 3},
		{"overwrite two", []string{"a", "b"}, nil, 3},
		{"delete present and absent", nil, []string{"a", "zz"}, 2},
		{"insert, overwrite and delete at once", []string{"d", "b"}, []string{"c"}, 2},
		{"reinsert deleted", []string{"a", "c"}, nil, 4},
		{"delete all", nil, []string{"a", "b", "c", "d"}, 0},
		{"nothing", nil, nil, 0},
	}
	for i, step := range steps {
		for _, k := range step.puts {
			must(t, s.Put([]byte(k), []byte(step.name)))
		}
		for _, k := range step.deletes {
			must(t, s.Delete([]byte(k)))
		}
		must(t, s.Commit(int64(i)))
		if n := s.Len(); n != step.want {
			t.Fatalf("%s: Len() = %d, want %d", step.name, n, step.want)
		}
		contents(t, s) // Len matches Scan
	}
	if st.retain == 0 {
		return
	}
	// Len comes back with rollbacks too.
	must(t, s.Rollback(int64(len(steps)-3)))
	if n := s.Len(); n != 4 {
		t.Fatalf("after rollback over a delete-all: Len() = %d, want 4", n)
	}
}

func testScanOrder(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	keys := []string{"b", "a", "", "ab", "\xff", "\x00", "\x00\x00", "a\x00", "B", "\xff\xff\xff\xff"}
	for _, k := range keys {
		must(t, s.Put([]byte(k), []byte("v"+k)))
	}
	must(t, s.Commit(0))
	var got []string
	must(t, s.Scan(func(k, v []byte) error {
		if string(v) != "v"+string(k) {
			t.Errorf("Scan: %q holds %q", k, v)
		}
		got = append(got, string(k))
		return nil
	}))
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Scan order %q, want %q", got, want)
	}

	stop := errors.New("stop")
	calls := 0
	err := s.Scan(func(k, v []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 {
		t.Fatalf("Scan with a failing callback: %d calls, err %v; want 3 calls and the callback's error", calls, err)
	}
}

func testDiscard(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	write(t, s, 0, "a", "1", "b", "1")
	must(t, s.Put([]byte("a"), []byte("2")))
	must(t, s.Put([]byte("c"), []byte("2")))
	must(t, s.Delete([]byte("b")))
	s.Discard()
	must(t, s.Commit(1))
	expect(t, s, 1, map[string]string{"a": "1", "b": "1"})
	// After a Discard the same keys can be written again in the same version.
	must(t, s.Put([]byte("a"), []byte("3")))
	s.Discard()
	must(t, s.Put([]byte("a"), []byte("4")))
	must(t, s.Commit(2))
	expect(t, s, 2, map[string]string{"a": "4", "b": "1"})
}

func testRollback(t *testing.T, st Storage) {
	v0 := map[string]string{"a": "0", "b": "0"}
	v1 := map[string]string{"a": "1", "b": "0", "c": "1"}
	v2 := map[string]string{"a": "2", "c": "1", "d": "2"}
	p := open(t, st)
	partition := 0
	build := func(t *testing.T) state.Store { // on a partition of its own
		partition++
		s := openStore(t, p, partition)
		write(t, s, 0, "a", "0", "b", "0")
		write(t, s, 1, "a", "1", "c", "1")
		must(t, s.Put([]byte("a"), []byte("2")))
		must(t, s.Delete([]byte("b")))
		must(t, s.Put([]byte("d"), []byte("2")))
		must(t, s.Commit(2))
		expect(t, s, 2, v2)
		return s
	}
	t.Run("one version", func(t *testing.T) {
		s := build(t)
		must(t, s.Put([]byte("staged"), []byte("x")))
		must(t, s.Rollback(1))
		expect(t, s, 1, v1)
		// Re-run batch 2 with other writes: the old batch 2 must leave no trace.
		write(t, s, 2, "e", "2")
		expect(t, s, 2, map[string]string{"a": "1", "b": "0", "c": "1", "e": "2"})
		must(t, s.Rollback(1))
		expect(t, s, 1, v1)
	})
	t.Run("two versions", func(t *testing.T) {
		s := build(t)
		must(t, s.Rollback(0))
		expect(t, s, 0, v0)
		write(t, s, 1, "z", "1")
		expect(t, s, 1, map[string]string{"a": "0", "b": "0", "z": "1"})
	})
	t.Run("step by step", func(t *testing.T) {
		s := build(t)
		must(t, s.Rollback(2)) // to the current version: nothing to undo
		expect(t, s, 2, v2)
		must(t, s.Rollback(1))
		expect(t, s, 1, v1)
		must(t, s.Rollback(0))
		expect(t, s, 0, v0)
		expectErr(t, s.Rollback(1), state.ErrVersion, "Rollback above the current version")
	})
	t.Run("to creation", func(t *testing.T) {
		s := openStore(t, p, 0)
		write(t, s, 0, "a", "0")
		write(t, s, 1, "b", "1")
		must(t, s.Rollback(state.NoVersion))
		expect(t, s, state.NoVersion, map[string]string{})
		write(t, s, 0, "c", "0")
		expect(t, s, 0, map[string]string{"c": "0"})
	})
}

func testRollbackBetweenVersions(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	write(t, s, 0, "a", "0")
	write(t, s, 5, "a", "5")
	must(t, s.Rollback(3))
	expect(t, s, 3, map[string]string{"a": "0"})
	expectErr(t, s.Commit(3), state.ErrVersion, "Commit of the version rolled back to")
	write(t, s, 4, "b", "4")
	expect(t, s, 4, map[string]string{"a": "0", "b": "4"})
	must(t, s.Rollback(3))
	expect(t, s, 3, map[string]string{"a": "0"})
}

func testRollbackVersionGone(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	for v := range int64(5) {
		write(t, s, v, "k", fmt.Sprint(v), fmt.Sprint("k", v), "x")
	}
	at := func(v int64) map[string]string {
		m := map[string]string{"k": fmt.Sprint(v)}
		for i := range v + 1 {
			m[fmt.Sprint("k", i)] = "x"
		}
		return m
	}
	expectErr(t, s.Rollback(state.NoVersion), state.ErrVersionGone, "Rollback(NoVersion) after 5 commits")
	expectErr(t, s.Rollback(1), state.ErrVersionGone, "Rollback over 3 commits")
	expect(t, s, 4, at(4)) // refused rollbacks change nothing
	must(t, s.Rollback(2))
	expect(t, s, 2, at(2))
	// The undone commits are gone: nothing older than 2 is reachable.
	expectErr(t, s.Rollback(1), state.ErrVersionGone, "Rollback below the oldest restore point")
	write(t, s, 3, "k", "3b")
	must(t, s.Rollback(2))
	expect(t, s, 2, at(2))
}

// testRollbackCurrentOnly checks the rollbacks every store accepts or
// refuses, whatever its history: to the current version (dropping the
// staged writes), above it, and older than the history kept.
func testRollbackCurrentOnly(t *testing.T, st Storage) {
	s := openStore(t, open(t, st), 0)
	for v := range int64(st.retain + 2) {
		write(t, s, v, "k", fmt.Sprint(v))
	}
	last := int64(st.retain + 1)
	want := map[string]string{"k": fmt.Sprint(last)}
	must(t, s.Put([]byte("staged"), []byte("x")))
	must(t, s.Rollback(last))
	expect(t, s, last, want)
	must(t, s.Commit(last+1)) // the staged write was dropped
	expect(t, s, last+1, want)
	expectErr(t, s.Rollback(last+2), state.ErrVersion, "Rollback above the current version")
	expectErr(t, s.Rollback(0), state.ErrVersionGone, "Rollback older than the history kept")
	expect(t, s, last+1, want)
}

func testPartitionsIsolated(t *testing.T, st Storage) {
	p := open(t, st)
	// Partition numbers whose encodings are prefixes of each other's ranges.
	parts := []int{0, 1, 255, 256, 65536, state.MaxPartition}
	stores := make([]state.Store, len(parts))
	for i, n := range parts {
		stores[i] = openStore(t, p, n)
		for v := range int64(i + 1) {
			write(t, stores[i], v, "shared", fmt.Sprint(n, "@", v), fmt.Sprint("own", n), "x")
		}
	}
	want := func(i int, v int64) map[string]string {
		return map[string]string{"shared": fmt.Sprint(parts[i], "@", v), fmt.Sprint("own", parts[i]): "x"}
	}
	for i, s := range stores {
		expect(t, s, int64(i), want(i, int64(i)))
	}
	rolledBack := 1 // store 2 goes back one version
	if st.retain == 0 {
		rolledBack = 0
	}
	must(t, stores[2].Rollback(int64(2-rolledBack)))
	must(t, stores[len(stores)-1].Put([]byte("staged"), nil))
	for i, s := range stores {
		v := int64(i)
		if i == 2 {
			v -= int64(rolledBack)
		}
		expect(t, s, v, want(i, v))
	}
	if _, err := p.Open(-1); !errors.Is(err, state.ErrPartition) {
		t.Fatalf("Open(-1): %v, want ErrPartition", err)
	}
}

func testOpenClose(t *testing.T, st Storage) {
	p := open(t, st)
	s := openStore(t, p, 7)
	write(t, s, 0, "a", "0")
	must(t, s.Put([]byte("staged"), []byte("x")))
	if _, err := p.Open(7); !errors.Is(err, state.ErrPartitionOpen) {
		t.Fatalf("second Open(7): %v, want ErrPartitionOpen", err)
	}
	must(t, s.Close())
	expectErr(t, s.Close(), state.ErrClosed, "second Close")
	expectErr(t, s.Put([]byte("a"), nil), state.ErrClosed, "Put after Close")
	_, _, err := s.Get([]byte("a"))
	expectErr(t, err, state.ErrClosed, "Get after Close")
	expectErr(t, s.Commit(1), state.ErrClosed, "Commit after Close")

	s = openStore(t, p, 7)
	expect(t, s, 0, map[string]string{"a": "0"}) // staged writes died with the old store
	must(t, s.Commit(1))
	if st.retain > 0 {
		must(t, s.Rollback(state.NoVersion)) // history survives a store reopen
		expect(t, s, state.NoVersion, map[string]string{})
	}

	s2 := openStore(t, p, 8)
	must(t, p.Close())
	expectErr(t, s2.Put([]byte("a"), nil), state.ErrClosed, "Put after Provider.Close")
	if _, err := p.Open(9); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("Open after Provider.Close: %v, want ErrClosed", err)
	}
}

func testReopen(t *testing.T, st Storage) {
	p := open(t, st)
	s := openStore(t, p, 1)
	write(t, s, 0, "a", "0", "b", "0")
	write(t, s, 1, "a", "1", "c", "1")
	must(t, s.Put([]byte("staged"), []byte("lost")))
	must(t, p.Close())

	p = open(t, st)
	s = openStore(t, p, 1)
	expect(t, s, 1, map[string]string{"a": "1", "b": "0", "c": "1"})
	if other := openStore(t, p, 2); other.Version() != state.NoVersion {
		t.Fatalf("untouched partition reopened at version %d", other.Version())
	}
	want := map[string]string{"a": "1", "b": "0", "c": "1", "z": "2"}
	if st.retain > 0 {
		must(t, s.Rollback(state.NoVersion)) // the undo history is durable too
		expect(t, s, state.NoVersion, map[string]string{})
		want = map[string]string{"z": "2"}
	}
	write(t, s, 2, "z", "2")
	must(t, p.Close())

	s = openStore(t, open(t, st), 1)
	expect(t, s, 2, want)
}

// partitions lists p's partitions, failing t on an error.
func partitions(t *testing.T, p state.Provider) []int {
	t.Helper()
	got, err := p.Partitions()
	must(t, err)
	return got
}

func testDrop(t *testing.T, st Storage) {
	p := open(t, st)
	if got := partitions(t, p); len(got) != 0 {
		t.Fatalf("Partitions of empty storage = %v, want none", got)
	}
	for _, part := range []int{5, 1, 2} {
		s := openStore(t, p, part)
		write(t, s, 3, "k", fmt.Sprint(part))
		must(t, s.Close())
	}
	openStore(t, p, 7) // open, never committed: not listed
	if got, want := partitions(t, p), []int{1, 2, 5}; !slices.Equal(got, want) {
		t.Fatalf("Partitions = %v, want %v", got, want)
	}
	s := openStore(t, p, 2)
	if err := p.Drop(2); !errors.Is(err, state.ErrPartitionOpen) {
		t.Fatalf("Drop of an open partition: %v, want ErrPartitionOpen", err)
	}
	expect(t, s, 3, map[string]string{"k": "2"})
	must(t, s.Close())
	must(t, p.Drop(2))
	must(t, p.Drop(9)) // nothing there: a no-op
	if err := p.Drop(-1); !errors.Is(err, state.ErrPartition) {
		t.Fatalf("Drop(-1): %v, want ErrPartition", err)
	}
	if got, want := partitions(t, p), []int{1, 5}; !slices.Equal(got, want) {
		t.Fatalf("Partitions after Drop(2) = %v, want %v", got, want)
	}
	expect(t, openStore(t, p, 2), state.NoVersion, map[string]string{})
	expect(t, openStore(t, p, 1), 3, map[string]string{"k": "1"})
	expect(t, openStore(t, p, 5), 3, map[string]string{"k": "5"})
}

func testDropReopen(t *testing.T, st Storage) {
	p := open(t, st)
	for _, part := range []int{1, 2} {
		s := openStore(t, p, part)
		write(t, s, 0, "a", "0")
		write(t, s, 1, "b", "1")
		must(t, s.Close())
	}
	must(t, p.Drop(1))
	must(t, p.Close())

	p = open(t, st)
	if got, want := partitions(t, p), []int{2}; !slices.Equal(got, want) {
		t.Fatalf("Partitions after Drop(1) and a reopen = %v, want %v", got, want)
	}
	expect(t, openStore(t, p, 1), state.NoVersion, map[string]string{})
	expect(t, openStore(t, p, 2), 1, map[string]string{"a": "0", "b": "1"})
}
