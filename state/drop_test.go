package state

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// TestPebbleDropCrash drops a partition and loses power right after: the
// directory opened again lacks the partition whole and keeps the other.
func TestPebbleDropCrash(t *testing.T) {
	mem := vfs.NewStrictMem()
	opts := DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.fs = mem
	const dir = "query/state"
	p, err := OpenPebble(dir, opts)
	check(t, err)
	for part := range 2 {
		s, err := p.Open(part)
		check(t, err)
		for k := range 500 {
			check(t, s.Put(fmt.Appendf(nil, "key%d", k), []byte("v")))
		}
		check(t, s.Commit(0))
		check(t, s.Close())
	}
	check(t, p.Drop(0))

	mem.SetIgnoreSyncs(true)
	check(t, p.Close())
	mem.ResetToSyncedState()
	mem.SetIgnoreSyncs(false)

	p, err = OpenPebble(dir, opts)
	check(t, err)
	defer func() { check(t, p.Close()) }()
	parts, err := p.Partitions()
	check(t, err)
	if !slices.Equal(parts, []int{1}) {
		t.Fatalf("partitions after a drop and a crash: %v, want [1]", parts)
	}
	for part, want := range []int64{0, 500} {
		s, err := p.Open(part)
		check(t, err)
		if s.Len() != want {
			t.Fatalf("partition %d holds %d keys after a crash; want %d", part, s.Len(), want)
		}
	}
}

// TestPebbleDropFreesDisk checks that a dropped partition's disk space
// comes back at once: the sstables shrink to well under the dropped
// partition's size. (Pebble's write-ahead logs are recycled files whose
// size follows the largest commit, not the data kept.)
func TestPebbleDropFreesDisk(t *testing.T) {
	dir := t.TempDir()
	opts := DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	p, err := OpenPebble(dir, opts)
	check(t, err)
	s, err := p.Open(3)
	check(t, err)
	value := make([]byte, 1000)
	for k := range 20_000 { // 20 MB
		check(t, s.Put(fmt.Appendf(nil, "key%d", k), value))
	}
	check(t, s.Commit(0))
	check(t, p.Close())
	p, err = OpenPebble(dir, opts) // flushes the log's commits to sstables
	check(t, err)
	defer func() { check(t, p.Close()) }()
	before := dirSize(t, dir)
	if before < 10<<20 {
		t.Fatalf("the sstables hold %d bytes with the partition; want 10 MiB or more", before)
	}
	check(t, p.Drop(3))
	// Pebble deletes the files a compaction made obsolete in the
	// background.
	deadline := time.Now().Add(10 * time.Second)
	after := dirSize(t, dir)
	for after > before/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		after = dirSize(t, dir)
	}
	t.Logf("the sstables held %d bytes, %d after the drop", before, after)

	if after > before/4 {
		t.Fatalf("the sstables hold %d bytes after the drop, %d before; want under a quarter", after, before)
	}
}

// dirSize is the size of the sstables in dir, a Pebble directory; a file
// deleted while it is listed counts nothing.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	check(t, err)
	var n int64
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".sst" {
			continue
		}
		info, err := e.Info()
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			t.Fatal(err)
		default:
			n += info.Size()
		}
	}
	return n
}
