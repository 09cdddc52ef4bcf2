package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/gostream/gostream/internal/dirsnap"
	"github.com/gostream/gostream/state"
)

func TestOpenPebbleRefusesForeignDirectories(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    error
	}{
		{"unrelated files", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, state.ErrNotStateDir},
		{"another application's pebble database", func(t *testing.T, dir string) {
			db, err := pebble.Open(dir, &pebble.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Set([]byte("their key"), []byte("their value"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}, state.ErrNotStateDir},
		{"damaged manifest", func(t *testing.T, dir string) {
			p, err := state.OpenPebble(dir, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
			if len(manifests) == 0 {
				t.Fatal("no MANIFEST file to damage")
			}
			for _, m := range manifests {
				b, err := os.ReadFile(m)
				if err != nil {
					t.Fatal(err)
				}
				for i := range b {
					b[i] ^= 0x5a
				}
				if err := os.WriteFile(m, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, state.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.prepare(t, dir)
			before, err := dirsnap.Take(dir)
			if err != nil {
				t.Fatal(err)
			}
			p, err := state.OpenPebble(dir, testOptions())
			if err == nil {
				p.Close()
				t.Fatal("OpenPebble accepted the directory")
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("OpenPebble: %v; want %v naming %s", err, tt.want, dir)
			}
			after, err := dirsnap.Take(dir)
			if err != nil {
				t.Fatal(err)
			}
			if d := before.Diff(after); len(d) > 0 {
				t.Fatalf("OpenPebble changed the directory it refused: %s", strings.Join(d, "; "))
			}
		})
	}
}

func TestOpenPebbleCorruptMetadata(t *testing.T) {
	dir := t.TempDir()
	p, err := state.OpenPebble(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The metadata key of partition 2 (see the package doc), with garbage.
	if err := db.Set([]byte("\x00\x00\x00\x02m"), []byte("garbage"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = state.OpenPebble(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Open(1); err != nil {
		t.Fatalf("an intact partition: %v", err)
	}
	_, err = p.Open(2)
	if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "partition 2") {
		t.Fatalf("Open(2) of a corrupt partition: %v; want ErrCorrupt naming partition 2", err)
	}
}

func TestOpenPebbleAcceptsInterruptedCreation(t *testing.T) {
	dir := t.TempDir()
	// A crash between creating the database and marking it leaves an empty
	// Pebble database.
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := state.OpenPebble(dir, testOptions())
	if err != nil {
		t.Fatalf("OpenPebble of an empty database: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := state.DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	tests := []struct {
		field  string
		change func(*state.Options)
	}{
		{"RetainVersions", func(o *state.Options) { o.RetainVersions = -1 }},
		{"RetainVersions", func(o *state.Options) { o.Changelog = true }}, // with the default 2
		{"Changelog", func(o *state.Options) { o.Changelog = true }},
		{"ChangelogMaxBytes", func(o *state.Options) { o.RetainVersions, o.Changelog, o.ChangelogMaxBytes = 0, true, 0 }},
		{"CacheSize", func(o *state.Options) { o.CacheSize = 0 }},
		{"MemTableSize", func(o *state.Options) { o.MemTableSize = 1 << 10 }},
		{"MemTableSize", func(o *state.Options) { o.MemTableSize = 4 << 30 }},
		{"MemTableStopWritesThreshold", func(o *state.Options) { o.MemTableStopWritesThreshold = 1 }},
		{"MaxOpenFiles", func(o *state.Options) { o.MaxOpenFiles = 1 }},
	}
	for _, tt := range tests {
		opts := state.DefaultOptions()
		tt.change(&opts)
		err := opts.Validate()
		if !errors.Is(err, state.ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("Validate with a bad %s: %v", tt.field, err)
		}
		if _, err := state.OpenPebble(t.TempDir(), opts); !errors.Is(err, state.ErrInvalidOptions) {
			t.Errorf("OpenPebble with a bad %s: %v", tt.field, err)
		}
	}
}
