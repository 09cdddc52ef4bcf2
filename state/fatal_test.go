package state

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// TestPebbleBackgroundFatal fills the file system for Pebble's MANIFEST
// alone, then flushes in the background: the flush cannot record its
// sstable and Pebble calls Logger.Fatalf on its own goroutine, where a
// panic would end the process. Writes stop with ErrNoSpace instead, and the
// provider closes without waiting for the goroutine Fatalf parked.
func TestPebbleBackgroundFatal(t *testing.T) {
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if full.Load() && op.OpKind() == errorfs.OpKindWrite && strings.Contains(path, "MANIFEST") {
			return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return nil
	}))
	opts := changelogTestOptions(4 << 10)
	opts.fs, opts.DeferSync = fs, true
	const dir = "query/state"
	p, s := openPartition(t, dir, opts, 0)
	for v := range int64(3) {
		for i := range 100 {
			check(t, s.Put(fmt.Appendf(nil, "key%d", i), fmt.Appendf(nil, "v%d", v)))
		}
		check(t, s.Commit(v))
	}
	check(t, p.Sync())

	full.Store(true)
	if _, err := p.db.AsyncFlush(); err != nil {
		t.Fatalf("AsyncFlush: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fmt.Sprint(p.writes.failure()), "MANIFEST") {
		if time.Now().After(deadline) {
			t.Fatalf("writes did not stop with the flush's MANIFEST error within 10 s; failure: %v", p.writes.failure())
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := p.writes.failure()
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "writing state to "+dir+": free space") {
		t.Fatalf("writes stopped with %v; want ErrNoSpace naming %s", err, dir)
	}
	check(t, s.Put([]byte("key0"), []byte("after")))
	if err := s.Commit(3); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a commit after the background failure returned %v; want ErrNoSpace", err)
	}
	if err := p.Sync(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a sync after the background failure returned %v; want ErrNoSpace", err)
	}
	if err := p.Close(); err != nil && !errors.Is(err, ErrNoSpace) {
		t.Fatalf("closing after the background failure: %v", err)
	}
}
