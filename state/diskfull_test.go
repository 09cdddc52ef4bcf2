package state

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// TestPebbleDiskFull fills the file system of a state directory while a
// partition commits and syncs, as the engine does (every write fails with
// ENOSPC from then on): the commit or sync that finds it returns ErrNoSpace
// naming the directory, and so does every later one; nothing panics, the
// provider closes, and once space is back the directory opens at a version
// at or after the last synced one, holding exactly that version's state.
func TestPebbleDiskFull(t *testing.T) {
	for _, mode := range []string{"changelog", "plain"} {
		t.Run(mode, func(t *testing.T) {
			var full atomic.Bool
			fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
				if full.Load() && op.OpKind() == errorfs.OpKindWrite {
					return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
				}
				return nil
			}))
			opts := changelogTestOptions(4 << 10)
			if mode == "plain" {
				opts = plainTestOptions()
			}
			opts.fs, opts.DeferSync = fs, true
			const dir, partition = "query/state", 1
			p, s := openPartition(t, dir, opts, partition)

			committed := map[int64]map[string]string{} // the state of each version
			state := map[string]string{}
			synced := NoVersion
			var failed error
			for v := int64(0); failed == nil; v++ {
				if v == 1000 {
					t.Fatal("no write failed in 1000 versions with the file system full")
				}
				if v == 20 {
					full.Store(true)
				}
				for i := range int64(50) {
					k, val := fmt.Sprint("key", (v*50+i)%700), fmt.Sprint("v", v)
					if failed = s.Put([]byte(k), []byte(val)); failed != nil {
						break
					}
					state[k] = val
				}
				if failed == nil {
					failed = s.Commit(v)
				}
				if failed == nil {
					committed[v] = maps.Clone(state)
					failed = p.Sync()
				}
				if failed == nil {
					synced = v
				}
			}
			if !errors.Is(failed, ErrNoSpace) || !strings.Contains(failed.Error(), "no space left on device writing state to "+dir+": free space") {
				t.Fatalf("the write that found the file system full returned %v; want ErrNoSpace naming %s", failed, dir)
			}
			if synced < 19 {
				t.Fatalf("version %d was the last synced; want 19, the last before the file system filled", synced)
			}
			if err := s.Commit(synced + 100); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("a commit after the failure returned %v; want ErrNoSpace", err)
			}
			if err := p.Sync(); !errors.Is(err, ErrNoSpace) {
				t.Fatalf("a sync after the failure returned %v; want ErrNoSpace", err)
			}
			t.Logf("the write that found the file system full: %v", failed)
			if err := p.Close(); err != nil && !errors.Is(err, ErrNoSpace) {
				t.Fatalf("closing after the failure: %v", err) // a fold's may be reported again
			}

			full.Store(false) // space freed
			p, s = openPartition(t, dir, opts, partition)
			defer func() { check(t, p.Close()) }()
			v := s.Version()
			want, ok := committed[v]
			if v < synced || !ok {
				t.Fatalf("reopened at version %d; want a committed version from %d on", v, synced)
			}
			got := map[string]string{}
			check(t, s.Scan(func(k, val []byte) error {
				got[string(k)] = string(val)
				return nil
			}))
			if !maps.Equal(got, want) {
				t.Fatalf("reopened at version %d with %d keys; want that version's %d keys", v, len(got), len(want))
			}
			check(t, s.Put([]byte("after"), []byte("space freed")))
			check(t, s.Commit(v+1))
			check(t, p.Sync())
		})
	}
}
