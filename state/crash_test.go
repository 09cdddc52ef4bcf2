package state

import (
	"fmt"
	"log/slog"
	"maps"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

// TestPebbleCrashKeepsCommittedState simulates a power loss right after a
// commit: everything not synced to the file system is dropped, then the
// directory is opened again and must hold exactly the last committed
// version, with its rollback history.
func TestPebbleCrashKeepsCommittedState(t *testing.T) {
	fs := vfs.NewStrictMem()
	opts := DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.fs = fs
	const dir = "query/state"

	p, err := OpenPebble(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Open(4)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{{}, {}}
	for i := range 2000 {
		k, v := fmt.Sprint("key", i), fmt.Sprint("v0-", i)
		want[0][k] = v
		check(t, s.Put([]byte(k), []byte(v)))
	}
	check(t, s.Commit(0))
	want[1] = maps.Clone(want[0])
	for i := range 1000 {
		k := fmt.Sprint("key", i*2)
		if i%2 == 0 {
			delete(want[1], k)
			check(t, s.Delete([]byte(k)))
		} else {
			want[1][k] = "v1"
			check(t, s.Put([]byte(k), []byte("v1")))
		}
	}
	check(t, s.Commit(1))
	check(t, s.Put([]byte("staged"), []byte("never committed")))

	// Crash: from here on nothing reaches stable storage.
	fs.SetIgnoreSyncs(true)
	check(t, p.Close())
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)

	p, err = OpenPebble(dir, opts)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer func() { check(t, p.Close()) }()
	s, err = p.Open(4)
	if err != nil {
		t.Fatal(err)
	}
	for v := int64(1); v >= 0; v-- {
		if v == 0 {
			check(t, s.Rollback(0))
		}
		got := map[string]string{}
		check(t, s.Scan(func(k, val []byte) error {
			got[string(k)] = string(val)
			return nil
		}))
		if s.Version() != v || s.Len() != int64(len(want[v])) || !maps.Equal(got, want[v]) {
			t.Fatalf("after crash at version %d: Version %d, Len %d, %d keys scanned; want %d keys",
				v, s.Version(), s.Len(), len(got), len(want[v]))
		}
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
