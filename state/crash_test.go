package state

import (
	"errors"
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

// TestPebbleDeferSync checks Options.DeferSync in both modes: after a crash,
// the commits before the last Provider.Sync are there, and of those after it
// none or a prefix, each whole.
func TestPebbleDeferSync(t *testing.T) {
	for _, changelog := range []bool{false, true} {
		t.Run(fmt.Sprintf("changelog=%v", changelog), func(t *testing.T) {
			fs := vfs.NewStrictMem()
			opts := DefaultOptions()
			opts.Logger = slog.New(slog.DiscardHandler)
			opts.fs, opts.DeferSync = fs, true
			if changelog {
				opts.Changelog, opts.RetainVersions = true, 0
			}
			const dir = "query/state"
			p, err := OpenPebble(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			stores := make([]Store, 2)
			for i := range stores {
				if stores[i], err = p.Open(i); err != nil {
					t.Fatal(err)
				}
			}
			commit := func(v int64) {
				for i, s := range stores {
					for k := range 300 {
						check(t, s.Put(fmt.Appendf(nil, "key%d", k), fmt.Appendf(nil, "v%d-%d-%d", v, i, k)))
					}
					check(t, s.Commit(v))
				}
			}
			commit(0)
			commit(1)
			check(t, p.Sync())
			commit(2) // never synced

			fs.SetIgnoreSyncs(true)
			check(t, p.Close())
			fs.ResetToSyncedState()
			fs.SetIgnoreSyncs(false)

			if p, err = OpenPebble(dir, opts); err != nil {
				t.Fatalf("reopen after crash: %v", err)
			}
			defer func() { check(t, p.Close()) }()
			for i := range stores {
				s, err := p.Open(i)
				if err != nil {
					t.Fatal(err)
				}
				v := s.Version()
				if v != 1 && v != 2 {
					t.Fatalf("partition %d at version %d after a crash; want 1 (synced) or 2", i, v)
				}
				n := 0
				check(t, s.Scan(func(k, val []byte) error {
					n++
					if want := fmt.Sprintf("v%d-%d-%s", v, i, k[3:]); string(val) != want {
						t.Fatalf("partition %d at version %d: %s = %s, want %s", i, v, k, val, want)
					}
					return nil
				}))
				if n != 300 || s.Len() != 300 {
					t.Fatalf("partition %d: %d keys scanned, Len %d; want 300", i, n, s.Len())
				}
			}
		})
	}
	p := NewMemory()
	check(t, p.Sync())
	check(t, p.Close())
	if err := p.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
}
