package state_test

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/gostream/gostream/state"
	"github.com/gostream/gostream/state/statetest"
)

func TestMemoryConformance(t *testing.T) {
	statetest.RunConformance(t, func(t *testing.T) statetest.Storage {
		p := state.NewMemory()
		return statetest.Storage{Open: func() (state.Provider, error) { return p, nil }}
	})
}

func newPebbleStorage(t *testing.T) statetest.Storage {
	return pebbleStorage(t, testOptions())
}

func pebbleStorage(t *testing.T, opts state.Options) statetest.Storage {
	dir := t.TempDir()
	return statetest.Storage{Open: func() (state.Provider, error) {
		return state.OpenPebble(dir, opts)
	}}
}

// testOptions are the defaults with a quiet logger.
func testOptions() state.Options {
	opts := state.DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	return opts
}

func TestPebbleConformance(t *testing.T) {
	statetest.RunConformance(t, newPebbleStorage)
}

// TestPebbleConformanceReadCacheSizes runs the suite with a read cache of a
// few entries, so that reads keep evicting cached values, and with none.
func TestPebbleConformanceReadCacheSizes(t *testing.T) {
	for _, size := range []int64{300, 0} {
		t.Run(fmt.Sprintf("ReadCacheSize=%d", size), func(t *testing.T) {
			statetest.RunConformance(t, func(t *testing.T) statetest.Storage {
				opts := testOptions()
				opts.ReadCacheSize = size
				return pebbleStorage(t, opts)
			})
		})
	}
}

func TestPebbleDurability(t *testing.T) {
	statetest.RunDurability(t, newPebbleStorage)
}

// TestPebbleRetainNone checks RetainVersions 0: commits apply and survive a
// reopen, and no commit can be undone.
func TestPebbleRetainNone(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.RetainVersions = 0
	open := func() (state.Provider, state.Store) {
		p, err := state.OpenPebble(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.Open(0)
		if err != nil {
			t.Fatal(err)
		}
		return p, s
	}
	p, s := open()
	for v := range int64(3) {
		if err := s.Put([]byte("k"), []byte{byte('0' + v)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Rollback(1); !errors.Is(err, state.ErrVersionGone) {
		t.Fatalf("Rollback(1) with RetainVersions 0: %v, want ErrVersionGone", err)
	}
	if err := s.Rollback(2); err != nil {
		t.Fatalf("Rollback to the current version: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, s = open()
	defer p.Close()
	v, found, err := s.Get([]byte("k"))
	if err != nil || !found || string(v) != "2" || s.Version() != 2 || s.Len() != 1 {
		t.Fatalf("after reopen: %q %v %v, version %d, len %d; want \"2\" at version 2, 1 key", v, found, err, s.Version(), s.Len())
	}
}

// retainNoneOptions are testOptions without undo history.
func retainNoneOptions() state.Options {
	opts := testOptions()
	opts.RetainVersions = 0
	return opts
}

// changelogOptions are testOptions in changelog mode; foldBytes, if not 0,
// makes folds frequent.
func changelogOptions(foldBytes int64) state.Options {
	opts := retainNoneOptions()
	opts.Changelog = true
	if foldBytes != 0 {
		state.SetFoldBytes(&opts, foldBytes)
	}
	return opts
}

func TestPebbleRetainNoneConformance(t *testing.T) {
	runNoRollback(t, retainNoneOptions())
}

// runNoRollback runs the suites for stores without undo history.
func runNoRollback(t *testing.T, opts state.Options) {
	newStorage := func(t *testing.T) statetest.Storage { return pebbleStorage(t, opts) }
	t.Run("Conformance", func(t *testing.T) { statetest.RunConformanceNoRollback(t, newStorage) })
	t.Run("Durability", func(t *testing.T) { statetest.RunDurabilityNoRollback(t, newStorage) })
}

// TestChangelogConformance runs the suite in changelog mode with the
// default fold threshold (no fold happens) and with a fold after nearly
// every commit.
func TestChangelogConformance(t *testing.T) {
	for _, foldBytes := range []int64{0, 1} {
		t.Run(fmt.Sprintf("foldBytes=%d", foldBytes), func(t *testing.T) { runNoRollback(t, changelogOptions(foldBytes)) })
	}
}
