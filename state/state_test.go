package state_test

import (
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
	dir := t.TempDir()
	return statetest.Storage{Open: func() (state.Provider, error) {
		return state.OpenPebble(dir, testOptions())
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

// TestPebbleConformanceSmallReadCache runs the suite with a read cache of a
// few entries, so that reads and commits keep evicting cached values.
func TestPebbleConformanceSmallReadCache(t *testing.T) {
	statetest.RunConformance(t, func(t *testing.T) statetest.Storage {
		dir := t.TempDir()
		opts := testOptions()
		opts.ReadCacheSize = 300
		return statetest.Storage{Open: func() (state.Provider, error) { return state.OpenPebble(dir, opts) }}
	})
}

// TestPebbleConformanceNoReadCache runs the suite with the read cache off.
func TestPebbleConformanceNoReadCache(t *testing.T) {
	statetest.RunConformance(t, func(t *testing.T) statetest.Storage {
		dir := t.TempDir()
		opts := testOptions()
		opts.ReadCacheSize = 0
		return statetest.Storage{Open: func() (state.Provider, error) { return state.OpenPebble(dir, opts) }}
	})
}

func TestPebbleDurability(t *testing.T) {
	statetest.RunDurability(t, newPebbleStorage)
}
