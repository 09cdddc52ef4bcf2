package state

import (
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// TestOpenPebbleFullDisk opens a new and an existing state directory on a
// disk that is full for Pebble's MANIFEST: the open fails with an error
// that says so, and the directory is still there to open once there is
// space. Pebble calls Logger.Fatalf when it cannot write its
// MANIFEST, and that panic used to end the process.
func TestOpenPebbleFullDisk(t *testing.T) {
	mem := vfs.NewMem()
	opts := DefaultOptions()
	opts.fs = mem
	p, err := OpenPebble("/existing", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	opts.fs = errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if op.OpKind() == errorfs.OpKindWrite && strings.Contains(path, "MANIFEST") {
			return syscall.ENOSPC
		}
		return nil
	}))
	for _, dir := range []string{"/new", "/existing"} {
		p, err := OpenPebble(dir, opts)
		if err == nil {
			p.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "free space") {
			t.Errorf("%s: %v, want an error saying no space is left", dir, err)
		}
	}
	opts.fs = mem
	p, err = OpenPebble("/existing", opts)
	if err != nil {
		t.Fatalf("with space again: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
