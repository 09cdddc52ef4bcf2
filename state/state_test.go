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
