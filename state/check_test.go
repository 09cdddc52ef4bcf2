package state_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gostream/gostream/internal/dirsnap"
	"github.com/gostream/gostream/state"
)

// TestCheckPebble checks a state directory with a log not yet flushed, in
// changelog mode and in plain mode: CheckPebble reports its label, its
// partitions' versions and a partition beyond those asked for, and writes
// nothing. OpenPebble then refuses another label, also writing nothing.
// The directory is created without a label, as before labels, and
// OpenPebble labels it.
func TestCheckPebble(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	opts := state.DefaultOptions()
	opts.RetainVersions, opts.Changelog = 0, true
	sum, err := state.CheckPebble(dir, opts, 2)
	if err != nil || sum.Exists {
		t.Fatalf("missing directory: %+v, %v", sum, err)
	}
	p, err := state.OpenPebble(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if sum, err := state.CheckPebble(dir, opts, 2); err != nil || sum.Label != nil {
		t.Fatalf("without a label: %+v, %v", sum, err)
	}
	opts.Label = []byte("checkpoint A")
	if p, err = state.OpenPebble(dir, opts); err != nil {
		t.Fatal(err)
	}
	for part, version := range map[int]int64{0: 3, 2: 1} {
		st, err := p.Open(part)
		if err != nil {
			t.Fatal(err)
		}
		for v := int64(1); v <= version; v++ {
			if err := errors.Join(st.Put([]byte("k"), []byte{byte(v)}), st.Commit(v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := dirsnap.Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, changelog := range []bool{true, false} {
		o := opts
		o.Changelog = changelog
		sum, err := state.CheckPebble(dir, o, 2)
		if err != nil || !sum.Exists || !bytes.Equal(sum.Label, opts.Label) || !slices.Equal(sum.Versions, []int64{3, state.NoVersion}) || sum.Beyond != 2 {
			t.Fatalf("changelog %v: %+v, %v; want label %q, versions [3 -1], partition 2 beyond", changelog, sum, err, opts.Label)
		}
	}
	other := opts
	other.Label = []byte("checkpoint B")
	if _, err := state.OpenPebble(dir, other); !errors.Is(err, state.ErrNotStateDir) {
		t.Fatalf("OpenPebble with another label: %v, want ErrNotStateDir", err)
	}
	after, err := dirsnap.Take(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(after); len(d) > 0 {
		t.Fatalf("CheckPebble or a refused OpenPebble changed the directory: %v", d)
	}
}
