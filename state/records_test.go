package state

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/gostream/gostream/internal/testseed"
)

// commitRecords writes a batch of up to n random puts and deletes as
// changelog records, cut into a few at random, and commits them with
// CommitRecords as the next version, as a standby commits its owner's
// batch.
func (m *modelStore) commitRecords(s Store, n int) {
	m.t.Helper()
	next := maps.Clone(m.want)
	seen := map[string]bool{}
	recs := [][]byte{NewRecord(nil)}
	for range m.r.IntN(n + 1) {
		k := fmt.Sprint("key", m.r.IntN(m.keys))
		if seen[k] {
			continue
		}
		seen[k] = true
		if m.r.IntN(8) == 0 {
			recs = append(recs, NewRecord(nil))
		}
		last := &recs[len(recs)-1]
		if m.r.IntN(4) == 0 {
			*last = appendDeltaWrite(*last, []byte(k), nil, true) // absent or not, as an owner's record may
			delete(next, k)
			continue
		}
		v := fmt.Sprint(m.version, "-", strings.Repeat("r", m.r.IntN(30)))
		*last = AppendPut(*last, []byte(k), []byte(v))
		next[k] = v
	}
	m.version += 1 + int64(m.r.IntN(2))
	check(m.t, CommitRecords(s, m.version, recs, int64(len(next))))
	m.want = next
}

// TestCommitRecords commits batches through CommitRecords and through
// Commit, in turns at random, on every kind of store, and checks the
// state (every read catches up on the records first), also after the
// store is opened again. Changelog mode folds often, and with a small
// ChangelogMaxBytes it leaves changelog mode on the way.
func TestCommitRecords(t *testing.T) {
	small := changelogTestOptions(2 << 10)
	small.ChangelogMaxBytes = 40 << 10
	for _, c := range []struct {
		name string
		opts *Options // nil: NewMemory
	}{
		{"memory", nil},
		{"plain", ptr(plainTestOptions())},
		{"changelog", ptr(changelogTestOptions(16 << 10))},
		{"changelog/small max", &small},
	} {
		t.Run(c.name, func(t *testing.T) {
			seed := testseed.Seed(t)
			m := newModelStore(t, seed, 1000)
			dir := t.TempDir()
			open := func() (Provider, Store) {
				if c.opts == nil {
					p := NewMemory()
					s, err := p.Open(1)
					check(t, err)
					return p, s
				}
				return openPartition(t, dir, *c.opts, 1)
			}
			p, s := open()
			for i := range 200 {
				switch m.r.IntN(4) {
				case 0:
					m.commit(s, 60)
				default:
					m.commitRecords(s, 60)
				}
				if i%25 == 24 {
					m.expect(s)
				}
				if i%70 == 69 && c.opts != nil {
					check(t, p.Close())
					p, s = open()
					m.expect(s)
				}
			}
			m.expect(s)
			if ps, ok := s.(*pebbleStore); ok && c.name == "changelog/small max" && ps.InMemory() {
				t.Fatalf("a state of %d keys is still in memory with ChangelogMaxBytes %d", s.Len(), small.ChangelogMaxBytes)
			}
			check(t, p.Close())
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestCommitRecordsLazy: a store in changelog mode writes the records
// CommitRecords gives it and applies them to its memory only when it is
// next used, or when enough changelog for a fold has come.
func TestCommitRecordsLazy(t *testing.T) {
	opts := changelogTestOptions(64 << 10)
	p, s := openPartition(t, t.TempDir(), opts, 0)
	defer func() { check(t, p.Close()) }()
	m := newModelStore(t, testseed.Seed(t), 2000)
	m.commit(s, 100)
	live := s.log.table.live
	for range 5 {
		m.commitRecords(s, 100)
	}
	if len(s.log.lagging) == 0 || s.log.table.live != live || s.Len() != int64(len(m.want)) || s.Version() != m.version {
		t.Fatalf("after 5 CommitRecords: %d records lagging, table of %d keys (was %d), Len %d at version %d; want the records lagging, the table as it was, Len %d at version %d",
			len(s.log.lagging), s.log.table.live, live, s.Len(), s.Version(), len(m.want), m.version)
	}
	if logs := partitionKeys(t, p.db, 0, tagLog); len(logs) != 6 {
		t.Fatalf("%d changelog records written, want 6", len(logs))
	}
	m.expect(s) // catches up
	if len(s.log.lagging) != 0 || s.log.laggingBytes != 0 {
		t.Fatalf("%d records lagging after a read", len(s.log.lagging))
	}
	// Enough records for a fold: they are applied, and the fold starts.
	for !s.log.folding {
		m.commitRecords(s, 1000)
		if s.log.laggingBytes > 64<<10 {
			t.Fatalf("%d bytes of records lagging, past the fold threshold", s.log.laggingBytes)
		}
	}
	if len(s.log.lagging) != 0 {
		t.Fatalf("a fold started with %d records lagging", len(s.log.lagging))
	}
	m.expect(s)
}

// TestCommitRecordsRefuses: malformed records commit nothing; records
// whose key count is not the one they leave make the store fail with
// ErrCorrupt when they are applied (changelog mode: on the next read; its
// directory opened again refuses them too), or when they commit.
func TestCommitRecordsRefuses(t *testing.T) {
	rec := AppendPut(NewRecord(nil), []byte("k"), []byte("v"))
	for _, mode := range []string{"memory", "changelog"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			var p Provider
			var s Store
			if mode == "memory" {
				p = NewMemory()
				var err error
				s, err = p.Open(0)
				check(t, err)
			} else {
				p, s = openPartition(t, dir, changelogTestOptions(0), 0)
			}
			defer p.Close()
			check(t, CommitRecords(s, 0, [][]byte{rec}, 1))
			if err := CommitRecords(s, 1, [][]byte{rec, rec[:len(rec)-1]}, 1); !errors.Is(err, ErrCorrupt) || s.Version() != 0 {
				t.Fatalf("a malformed record: %v, version %d; want ErrCorrupt at version 0", err, s.Version())
			}
			if v, found, err := s.Get([]byte("k")); err != nil || !found || string(v) != "v" {
				t.Fatalf("after a malformed record: Get = %q, %v, %v", v, found, err)
			}
			two := AppendPut(NewRecord(nil), []byte("l"), []byte("w"))
			err := CommitRecords(s, 1, [][]byte{two}, 3)
			if mode == "memory" {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("records leaving 2 keys, said 3: %v, want ErrCorrupt", err)
				}
				return
			}
			check(t, err)
			if _, _, err := s.Get([]byte("k")); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "leave 2 keys, their commits said 3") {
				t.Fatalf("the read after records leaving 2 keys, said 3: %v, want ErrCorrupt", err)
			}
			check(t, p.Close())
			p, err = OpenPebble(dir, changelogTestOptions(0))
			check(t, err)
			if _, err := p.Open(0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("opening the partition again: %v, want ErrCorrupt", err)
			}
		})
	}
}
