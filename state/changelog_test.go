package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/internal/testseed"
)

// TestTable runs random writes, fold snapshots, scans and prefetches against
// a table and a map, with values that grow and shrink so that entries move
// and the arena compacts.
func TestTable(t *testing.T) {
	r := testseed.Rand(t)
	tb := newTable()
	want := map[string]string{}
	written := map[string]bool{} // since the last appendDirty
	for step := range 200_000 {
		k := fmt.Sprint("k", r.IntN(3000))
		if r.IntN(3000) == 0 {
			k = "" // the empty key
		}
		if r.IntN(2) == 0 { // a hint, for this key or another: it changes nothing
			tb.prefetch([]byte(fmt.Sprint("k", r.IntN(3500))))
		}
		switch op := r.IntN(100); {
		case op < 40:
			v := strings.Repeat("v", r.IntN(20))
			if added := tb.put([]byte(k), []byte(v)); added != !has(want, k) {
				t.Fatalf("step %d: put(%q) added %v", step, k, added)
			}
			want[k], written[k] = v, true
		case op < 60:
			if removed := tb.del([]byte(k)); removed != has(want, k) {
				t.Fatalf("step %d: del(%q) removed %v", step, k, removed)
			}
			if has(want, k) {
				delete(want, k)
				written[k] = true
			}
		case op < 98:
			v, found := tb.get([]byte(k))
			if w, ok := want[k]; found != ok || string(v) != w || cap(v) != len(v) {
				t.Fatalf("step %d: get(%q) = %q (cap %d), %v; want %q, %v", step, k, v, cap(v), found, w, ok)
			}
		case op < 99:
			tableBatch(t, r, &tb, want, written)
		default:
			got := map[string]*string{}
			check(t, decodeDelta(tb.appendDirty(newDelta(nil)), func(k, v []byte, del bool) error {
				if del {
					got[string(k)] = nil
				} else {
					got[string(k)] = new(string(v))
				}
				return nil
			}))
			if len(got) != len(written) {
				t.Fatalf("step %d: appendDirty wrote %d keys, %d were written", step, len(got), len(written))
			}
			for k := range written {
				if w, ok := want[k]; (got[k] == nil) == ok || (ok && *got[k] != w) {
					t.Fatalf("step %d: appendDirty holds %q for %q, want %q (present %v)", step, deref(got[k]), k, w, ok)
				}
			}
			clear(written)
			checkSorted(t, &tb, want)
		}
		if tb.live != int64(len(want)) {
			t.Fatalf("step %d: %d live keys, want %d", step, tb.live, len(want))
		}
	}
	if size := tb.size(); size > 2*tb.used+2*(headerLen+slotLen)+64 {
		t.Fatalf("table holds %d bytes, %d in use: garbage is not compacted", size, tb.used)
	}
}

// tableBatch stages writes as the store does, each after a get of its key,
// of another key or of none, and applies them as one delta. Values grow
// past their room, so that records move and the garbage crosses the
// compaction threshold in the middle of the delta, keys repeat, and new
// keys can make the slots grow.
func tableBatch(t *testing.T, r *rand.Rand, tb *table, want map[string]string, written map[string]bool) {
	t.Helper()
	d, refs := newDelta(nil), []int{}
	type write struct {
		k, v string
		del  bool
	}
	var writes []write
	for range r.IntN(200) {
		k := fmt.Sprint("k", r.IntN(3500))
		switch r.IntN(4) {
		case 0, 1:
			tb.get([]byte(k))
		case 2:
			tb.get([]byte(fmt.Sprint("k", r.IntN(3500))))
		}
		w := write{k: k, v: strings.Repeat("w", r.IntN(40)), del: r.IntN(4) == 0}
		slot, existed := tb.lookup([]byte(k))
		if _, ok := want[k]; existed != ok {
			t.Fatalf("lookup(%q) reports present %v, want %v", k, existed, ok)
		}
		if w.del && !existed {
			continue // as the store: a deletion of an absent key is not staged
		}
		d = appendDeltaWrite(d, []byte(k), []byte(w.v), w.del)
		refs = append(refs, slot+1)
		writes = append(writes, w)
	}
	check(t, tb.applyDelta(d, refs))
	for _, w := range writes {
		if w.del {
			delete(want, w.k)
		} else {
			want[w.k] = w.v
		}
		written[w.k] = true
	}
	for _, w := range writes {
		if v, found := tb.get([]byte(w.k)); found != has(want, w.k) || string(v) != want[w.k] {
			t.Fatalf("after a batch get(%q) = %q, %v; want %q", w.k, v, found, want[w.k])
		}
	}
}

// TestTableApplyDelta applies one delta staged as the store stages it,
// whose writes move every record twice, so that the garbage crosses the
// compaction threshold half-way, and insert enough new keys to grow the
// slots: the writes at slots found before must land on their keys all the
// same.
func TestTableApplyDelta(t *testing.T) {
	tb := newTable()
	want := map[string]string{}
	for i := range 1000 {
		k := fmt.Sprint("key", i)
		tb.put([]byte(k), []byte("v"))
		want[k] = "v"
	}
	tb.clean()
	d, refs := newDelta(nil), []int(nil)
	for round, v := range []string{"vv", "vvv"} {
		for i := range 1300 {
			k := fmt.Sprint("new", round, "-", i)
			if i >= 300 {
				k = fmt.Sprint("key", i-300)
			}
			if i%3 == 0 { // a Put after a Get, else after nothing
				tb.get([]byte(k))
			}
			slot, existed := tb.lookup([]byte(k))
			del := existed && i%10 == 9 && round == 1
			d = appendDeltaWrite(d, []byte(k), []byte(v), del)
			refs = append(refs, slot+1)
			if want[k] = v; del {
				delete(want, k)
			}
		}
	}
	slots := len(tb.slots)
	check(t, tb.applyDelta(d, refs))
	if len(tb.slots) == slots {
		t.Fatal("the slots did not grow")
	}
	if tb.live != int64(len(want)) || tb.size() > 2*tb.used {
		t.Fatalf("%d live keys, %d bytes with %d in use; want %d keys, garbage compacted", tb.live, tb.size(), tb.used, len(want))
	}
	checkSorted(t, &tb, want)
}

func has(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func deref(p *string) string {
	if p == nil {
		return "<deleted>"
	}
	return *p
}

// checkSorted checks that tb's live entries, sorted, are want in key order.
func checkSorted(t *testing.T, tb *table, want map[string]string) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(want))
	order := tb.sorted()
	if len(order) != len(keys) {
		t.Fatalf("sorted: %d keys, want %d", len(order), len(keys))
	}
	for i, r := range order {
		if k, v := tb.key(r.off), tb.value(r.off); string(k) != keys[i] || string(v) != want[keys[i]] {
			t.Fatalf("sorted[%d] = %q: %q, want %q: %q", i, k, v, keys[i], want[keys[i]])
		}
	}
}

// TestTableSortsByFullKey checks keys that share their first 8 bytes or
// are shorter than 8 bytes (zero-padded prefixes tie).
func TestTableSortsByFullKey(t *testing.T) {
	tb := newTable()
	want := map[string]string{}
	for _, k := range []string{"", "\x00", "\x00\x00", "a", "a\x00", "abcdefgh", "abcdefgh\x00", "abcdefghz", "abcdefgg\xff", "\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\x00"} {
		tb.put([]byte(k), []byte("v"+k))
		want[k] = "v" + k
	}
	checkSorted(t, &tb, want)
}

func FuzzDecodeDelta(f *testing.F) {
	d := newDelta(nil)
	d = appendDeltaWrite(d, []byte("key"), []byte("value"), false)
	d = appendDeltaWrite(d, []byte("gone"), nil, true)
	d = appendDeltaWrite(d, nil, nil, false)
	f.Add(d)
	f.Add([]byte{deltaFormat, deltaPut, 0x80})
	f.Add([]byte{deltaFormat, deltaPut, 2, 'a'})
	f.Add([]byte{deltaFormat, 7})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, d []byte) {
		again := newDelta(nil)
		err := decodeDelta(d, func(k, v []byte, del bool) error {
			again = appendDeltaWrite(again, k, v, del)
			return nil
		})
		if err != nil && !errors.Is(err, errBadDelta) {
			t.Fatalf("decodeDelta: %v", err)
		}
		// A valid delta has one encoding (minimal uvarints aside).
		if err == nil && len(again) > len(d) {
			t.Fatalf("decodeDelta(%x) decoded writes that encode as %x", d, again)
		}
	})
}

// changelogTestOptions are the options of the changelog tests: quiet, with
// folds every foldBytes of changelog.
func changelogTestOptions(foldBytes int64) Options {
	opts := DefaultOptions()
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.RetainVersions = 0
	opts.Changelog = true
	opts.foldBytes = foldBytes
	return opts
}

// plainTestOptions are the options of the changelog tests in plain mode,
// with undo history.
func plainTestOptions() Options {
	opts := changelogTestOptions(0)
	opts.Changelog, opts.RetainVersions = false, 2
	return opts
}

// modelStore writes random batches to a store and to a map.
type modelStore struct {
	t       *testing.T
	r       *rand.Rand
	keys    int
	want    map[string]string
	version int64
}

func newModelStore(t *testing.T, seed uint64, keys int) *modelStore {
	return &modelStore{t: t, r: rand.New(rand.NewPCG(seed, 0)), keys: keys, want: map[string]string{}, version: NoVersion}
}

// commit writes a batch of up to n random puts and deletes and commits it
// as the next version.
func (m *modelStore) commit(s Store, n int) {
	m.t.Helper()
	next := maps.Clone(m.want)
	seen := map[string]bool{}
	for range m.r.IntN(n + 1) {
		k := fmt.Sprint("key", m.r.IntN(m.keys))
		if seen[k] {
			continue // a key is written at most once per version
		}
		seen[k] = true
		// The engine reads a key before writing it; the store may reuse
		// that read's lookup, but not one of another key.
		switch m.r.IntN(3) {
		case 0:
			m.get(s, k)
		case 1:
			m.get(s, fmt.Sprint("key", m.r.IntN(m.keys)))
		}
		if m.r.IntN(4) == 0 {
			check(m.t, s.Delete([]byte(k)))
			delete(next, k)
			continue
		}
		v := fmt.Sprint(m.version, "-", strings.Repeat("x", m.r.IntN(30)))
		check(m.t, s.Put([]byte(k), []byte(v)))
		next[k] = v
	}
	m.version += 1 + int64(m.r.IntN(2)) // versions may skip
	check(m.t, s.Commit(m.version))
	m.want = next
}

// commitEvery puts a new value of every key in one batch and commits it as
// the next version.
func (m *modelStore) commitEvery(s Store) {
	m.t.Helper()
	next := maps.Clone(m.want)
	for i := range m.keys {
		k, v := fmt.Sprint("key", i), fmt.Sprint(m.version, "-", strings.Repeat("x", m.r.IntN(30)))
		check(m.t, s.Put([]byte(k), []byte(v)))
		next[k] = v
	}
	m.version++
	check(m.t, s.Commit(m.version))
	m.want = next
}

// get checks that s holds the committed value of k.
func (m *modelStore) get(s Store, k string) {
	m.t.Helper()
	w, ok := m.want[k]
	if v, found, err := s.Get([]byte(k)); err != nil || found != ok || string(v) != w {
		m.t.Fatalf("Get(%q) = %q, %v, %v; want %q, %v", k, v, found, err, w, ok)
	}
}

// expect checks that s holds exactly the model's state, through Scan, Get
// and Len.
func (m *modelStore) expect(s Store) {
	m.t.Helper()
	got := map[string]string{}
	var last []byte
	check(m.t, s.Scan(func(k, v []byte) error {
		if last != nil && bytes.Compare(last, k) >= 0 {
			return fmt.Errorf("scan order: %q after %q", k, last)
		}
		last = append(last[:0], k...)
		got[string(k)] = string(v)
		return nil
	}))
	if s.Version() != m.version || s.Len() != int64(len(m.want)) || !maps.Equal(got, m.want) {
		m.t.Fatalf("store at version %d with %d keys (%d scanned); want version %d with %d keys",
			s.Version(), s.Len(), len(got), m.version, len(m.want))
	}
	for k := range m.want {
		m.get(s, k)
	}
}

// partitionKeys returns the keys of partition with tag in db, and their values.
func partitionKeys(t *testing.T, db *pebble.DB, partition uint32, tag byte) map[string]string {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: appendPrefix(nil, partition, tag),
		UpperBound: appendPrefix(nil, partition, tag+1),
	})
	check(t, err)
	defer func() { check(t, it.Close()) }()
	kv := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		kv[string(it.Key()[prefixLen:])] = string(it.Value())
	}
	check(t, it.Error())
	return kv
}

func openPartition(t *testing.T, dir string, opts Options, partition int) (*pebbleProvider, *pebbleStore) {
	t.Helper()
	p, err := OpenPebble(dir, opts)
	check(t, err)
	s, err := p.Open(partition)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	return p.(*pebbleProvider), s.(*pebbleStore)
}

// TestChangelogFold commits many versions with folds in between, some
// while the previous fold still runs, then checks that a finished fold
// leaves the data keys at the committed state and no changelog record, and
// that the state survives reopening in both modes.
// TestChangelogFoldAt checks when a fold starts with the default bounds:
// at a quarter memtable of changelog for a small state, at four times the
// state's size in memory for a larger one, and at two memtables at most.
func TestChangelogFoldAt(t *testing.T) {
	opts := changelogTestOptions(0)
	opts.MemTableSize = 1 << 20
	p, s := openPartition(t, t.TempDir(), opts, 0)
	defer func() { check(t, p.Close()) }()
	if got := s.foldAt(); got != 256<<10 {
		t.Fatalf("empty state: fold at %d bytes, want a quarter memtable (%d)", got, 256<<10)
	}
	value := make([]byte, 1000)
	put := func(n int) {
		for i := range n {
			check(t, s.Put(fmt.Appendf(nil, "key%06d", i), value))
		}
		check(t, s.Commit(s.Version()+1))
	}
	put(200) // about 200 KB in memory: four times that
	if got, want := s.foldAt(), 4*int64(s.log.table.size()); got != want || got <= 256<<10 || got >= 2<<20 {
		t.Fatalf("state of %d bytes: fold at %d, want %d", s.log.table.size(), got, want)
	}
	put(2000) // 2 MB: more than two memtables at four times
	if got := s.foldAt(); got != 2<<20 {
		t.Fatalf("state of %d bytes: fold at %d, want two memtables (%d)", s.log.table.size(), got, 2<<20)
	}
}

func TestChangelogFold(t *testing.T) {
	dir := t.TempDir()
	opts := changelogTestOptions(2 << 10)
	const partition = 3
	p, s := openPartition(t, dir, opts, partition)
	m := newModelStore(t, testseed.Seed(t), 500)
	folds := 0
	for i := range 300 {
		m.commit(s, 40)
		if s.log.folding {
			folds++
			if i%3 == 0 {
				check(t, s.collectFold(true))
			}
		}
		if i%50 == 0 {
			m.expect(s)
		}
	}
	if folds < 10 {
		t.Fatalf("%d folds in 300 commits", folds)
	}
	// A batch of more than foldBytes, committed with no fold running,
	// starts a fold of everything.
	check(t, s.collectFold(true))
	m.commitEvery(s) // 500 keys of 9 bytes or more
	if !s.log.folding {
		t.Fatal("no fold started")
	}
	check(t, s.collectFold(true))
	m.expect(s)
	if logs := partitionKeys(t, p.db, partition, tagLog); len(logs) != 0 {
		t.Fatalf("%d changelog records left after a fold", len(logs))
	}
	if data := partitionKeys(t, p.db, partition, tagData); !maps.Equal(data, m.want) {
		t.Fatalf("after a fold the data keys hold %d keys, want %d", len(data), len(m.want))
	}
	m.commit(s, 40) // a record for the reopen to replay
	check(t, p.Close())

	p, s = openPartition(t, dir, opts, partition)
	m.expect(s)
	check(t, p.Close())
	plain := opts
	plain.Changelog = false
	p, s = openPartition(t, dir, plain, partition)
	m.expect(s)
	check(t, p.Close())
}

// TestChangelogFoldCutShort writes the first foldChunk keys of a fold, as
// a crash before the fold's last batch leaves them, and checks that both
// modes open the partition at its committed state: the changelog records,
// replayed over data keys some of which are newer than the last fold, come
// to the same state. Then a fold of more than a chunk runs to its end.
func TestChangelogFoldCutShort(t *testing.T) {
	dir := t.TempDir()
	opts := changelogTestOptions(1 << 40) // no fold but the test's
	const partition = 2
	p, s := openPartition(t, dir, opts, partition)
	m := newModelStore(t, testseed.Seed(t), 3*foldChunk)
	for range 30 {
		m.commit(s, 400)
	}
	b := p.db.NewBatch()
	n := 0
	check(t, decodeDelta(s.log.table.appendDirty(newDelta(nil)), func(k, v []byte, del bool) error {
		if n++; n > foldChunk {
			return nil
		}
		if key := appendDataKey(nil, partition, k); del {
			return b.Delete(key, nil)
		} else {
			return b.Set(key, v, nil)
		}
	}))
	if n <= foldChunk {
		t.Fatalf("%d keys written since the last fold, want more than one chunk", n)
	}
	check(t, b.Commit(pebble.Sync))
	check(t, b.Close())
	m.commit(s, 400) // a record after the cut fold's version
	check(t, p.Close())
	for _, changelog := range []bool{true, false} {
		o := opts
		o.Changelog = changelog
		p, s := openPartition(t, dir, o, partition)
		m.expect(s)
		check(t, p.Close())
	}

	// A whole fold of more than a chunk.
	opts.foldBytes = 1
	p, s = openPartition(t, dir, opts, partition)
	m.commit(s, 3*foldChunk)
	if !s.log.folding {
		t.Fatal("no fold started")
	}
	check(t, s.collectFold(true))
	if logs := partitionKeys(t, p.db, partition, tagLog); len(logs) != 0 {
		t.Fatalf("%d changelog records left after a fold", len(logs))
	}
	if data := partitionKeys(t, p.db, partition, tagData); !maps.Equal(data, m.want) {
		t.Fatalf("after a fold the data keys hold %d keys, want %d", len(data), len(m.want))
	}
	check(t, p.Close())
}

// TestChangelogModeSwitch opens one directory in plain and changelog mode
// in turn, committing in each, including a rollback in changelog mode of
// commits made in plain mode.
func TestChangelogModeSwitch(t *testing.T) {
	dir := t.TempDir()
	const partition = 1
	plain := plainTestOptions()
	m := newModelStore(t, testseed.Seed(t), 300)
	var before map[string]string // the state before the last plain commit
	for round, mode := range []string{"plain", "changelog", "plain", "changelog", "plain"} {
		opts := plain
		if mode == "changelog" {
			opts = changelogTestOptions(1 << 10)
		}
		p, s := openPartition(t, dir, opts, partition)
		if got, want := s.InMemory(), mode == "changelog"; got != want {
			t.Fatalf("round %d (%s mode): InMemory() = %v, want %v", round, mode, got, want)
		}
		m.expect(s)
		if mode == "changelog" && round == 1 {
			// The undo history of the plain commits is still there.
			v := m.version
			check(t, s.Rollback(v-1))
			m.want, m.version = before, v-1
			m.expect(s)
		}
		for range 30 {
			before = maps.Clone(m.want)
			m.commit(s, 60)
		}
		m.expect(s)
		check(t, p.Close())
		if mode == "plain" {
			db, err := pebble.Open(dir, &pebble.Options{})
			check(t, err)
			logs := partitionKeys(t, db, partition, tagLog)
			check(t, db.Close())
			if len(logs) != 0 {
				t.Fatalf("round %d: plain mode left %d changelog records", round, len(logs))
			}
		}
	}
}

// TestChangelogCrash simulates power losses right after a commit in
// changelog mode, through Commit or CommitRecords, folds possibly in
// flight, records CommitRecords committed possibly not applied to memory
// yet: the directory opened again must hold exactly the last committed
// version, in either mode.
func TestChangelogCrash(t *testing.T) {
	fs := vfs.NewStrictMem()
	opts := changelogTestOptions(4 << 10)
	opts.fs = fs
	const dir, partition = "query/state", 2
	m := newModelStore(t, testseed.Seed(t), 2000)
	for round := range 8 {
		o := opts
		o.Changelog = round%4 != 3 // now and then a plain reopen folds it all
		p, s := openPartition(t, dir, o, partition)
		m.expect(s)
		for i := range 20 + round {
			if i%3 == 0 {
				m.commit(s, 100)
			} else {
				m.commitRecords(s, 100)
			}
		}
		if round%2 == 0 { // a write applies the records first
			check(t, s.Put([]byte("staged"), []byte("never committed")))
		}
		// Crash: from here on nothing reaches stable storage, including
		// the rest of a fold in flight.
		fs.SetIgnoreSyncs(true)
		check(t, p.Close())
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)
	}
	p, s := openPartition(t, dir, opts, partition)
	defer func() { check(t, p.Close()) }()
	m.expect(s)
}

// TestChangelogCorrupt damages the changelog of a partition and checks
// that opening it, in either mode, reports ErrCorrupt naming the
// partition and the directory and changes nothing.
func TestChangelogCorrupt(t *testing.T) {
	const partition = 5
	logKey := func(v int64) []byte { return appendLogKey(nil, partition, v) }
	tests := []struct {
		name   string
		damage func(b *pebble.Batch, last int64) error
		want   string
	}{
		{"garbled record", func(b *pebble.Batch, last int64) error {
			return b.Set(logKey(last-1), []byte{deltaFormat, deltaPut, 200, 'k'}, nil)
		}, "malformed"},
		{"unknown format", func(b *pebble.Batch, last int64) error {
			return b.Set(logKey(last), []byte{9}, nil)
		}, "malformed"},
		{"record above the metadata version", func(b *pebble.Batch, last int64) error {
			return b.Set(logKey(last+1), newDelta(nil), nil)
		}, "version"},
		{"last record missing", func(b *pebble.Batch, last int64) error {
			return b.Delete(logKey(last), nil)
		}, "version"},
		{"malformed key", func(b *pebble.Batch, last int64) error {
			return b.Set(append(logKey(last), 0), newDelta(nil), nil)
		}, "key"},
	}
	for _, tt := range tests {
		for _, changelog := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/changelog=%v", tt.name, changelog), func(t *testing.T) {
				dir := t.TempDir()
				opts := changelogTestOptions(0)
				p, s := openPartition(t, dir, opts, partition)
				m := newModelStore(t, testseed.Seed(t), 50)
				for range 5 {
					m.commit(s, 20)
				}
				check(t, p.Close())

				db, err := pebble.Open(dir, &pebble.Options{})
				check(t, err)
				b := db.NewBatch()
				check(t, tt.damage(b, m.version))
				check(t, b.Commit(pebble.Sync))
				before := allKeys(t, db)
				check(t, db.Close())

				opts.Changelog = changelog
				pr, err := OpenPebble(dir, opts)
				check(t, err)
				_, err = pr.Open(partition)
				check(t, pr.Close())
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "partition 5") ||
					!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Open of a damaged changelog: %v; want ErrCorrupt naming partition 5, %s and %q", err, dir, tt.want)
				}
				db, err = pebble.Open(dir, &pebble.Options{})
				check(t, err)
				after := allKeys(t, db)
				check(t, db.Close())
				if !maps.Equal(before, after) {
					t.Fatal("opening a damaged partition changed its keys")
				}
			})
		}
	}
}

// allKeys reads every key of db and its value.
func allKeys(t *testing.T, db *pebble.DB) map[string]string {
	t.Helper()
	it, err := db.NewIter(nil)
	check(t, err)
	kv := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		kv[string(it.Key())] = string(it.Value())
	}
	check(t, errors.Join(it.Error(), it.Close()))
	return kv
}

// BenchmarkTable is the changelog table's side of a word count's batches:
// a table of 250k keys, and per batch 10k distinct keys drawn with Zipf
// frequencies, each read and written back as the store does (Get, then Put
// staging the write, then Commit applying the delta). Values are varint
// counts, which grow a byte at a time.
func BenchmarkTable(b *testing.B) {
	const keys, batchKeys, batches = 250_000, 10_000, 8
	tb := newTable()
	key := func(dst []byte, i int) []byte { // "word%07d" without fmt's allocation
		dst = append(dst[:0], "word0000000"...)
		for j := len(dst) - 1; i > 0; j, i = j-1, i/10 {
			dst[j] = byte('0' + i%10)
		}
		return dst
	}
	var k []byte
	for i := range keys {
		k = key(k, i)
		tb.put(k, binary.AppendUvarint(nil, uint64(i%100)))
	}
	tb.clean()
	// Batches of distinct keys; rank r is key r*7919%keys, so that hot keys
	// lie all over the arena.
	r := rand.New(rand.NewPCG(1, 0))
	zipf := rand.NewZipf(r, 1.1, 1, keys-1)
	order := make([][]int, batches)
	for i := range order {
		seen := map[int]bool{}
		for len(order[i]) < batchKeys {
			if id := int(zipf.Uint64()) * 7919 % keys; !seen[id] {
				seen[id] = true
				order[i] = append(order[i], id)
			}
		}
	}
	var value []byte
	d, refs := newDelta(nil), []int(nil)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		d, refs = newDelta(d), refs[:0]
		for _, id := range order[n%batches] {
			k = key(k, id)
			old, _ := tb.get(k)
			c, _ := binary.Uvarint(old)
			value = binary.AppendUvarint(value[:0], c+1)
			slot, _ := tb.lookup(k) // Put
			d = appendDeltaWrite(d, k, value, false)
			refs = append(refs, slot+1)
		}
		if err := tb.applyDelta(d, refs); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*batchKeys), "ns/key")
}

// commitUntilPlain commits batches of new keys to s, in changelog mode,
// until the state outgrows ChangelogMaxBytes and the store leaves
// changelog mode, checking that the state in memory stays within the bound
// after every commit until then.
func commitUntilPlain(t *testing.T, s *pebbleStore, m *modelStore) {
	t.Helper()
	bound := s.provider.changelogMax
	for range 10_000 {
		if !s.InMemory() {
			return
		}
		if mem := s.log.memory(); mem > bound {
			t.Fatalf("version %d: the state takes %d bytes in memory, ChangelogMaxBytes is %d", m.version, mem, bound)
		}
		m.commit(s, 40)
	}
	t.Fatalf("the store kept %d keys in memory under a bound of %d bytes", s.Len(), bound)
}

// TestChangelogMaxBytes grows a partition in changelog mode past a small
// ChangelogMaxBytes: the store must fold its changelog, go on in plain mode
// with the exact state, and log why; reopening it must load it in memory
// only under a bound it fits in.
func TestChangelogMaxBytes(t *testing.T) {
	dir := t.TempDir()
	var logs logbuf.Buffer
	small := changelogTestOptions(2 << 10)
	small.ChangelogMaxBytes = 16 << 10
	small.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	large := changelogTestOptions(2 << 10)
	const partition = 6
	noLog := func(p *pebbleProvider) {
		t.Helper()
		if recs := partitionKeys(t, p.db, partition, tagLog); len(recs) != 0 {
			t.Fatalf("%d changelog records left in plain mode", len(recs))
		}
	}

	p, s := openPartition(t, dir, small, partition)
	m := newModelStore(t, testseed.Seed(t), 1<<20) // almost every key new
	commitUntilPlain(t, s, m)
	if s.log != nil || s.cache == nil {
		t.Fatal("InMemory() is false but the store is not in plain mode")
	}
	m.expect(s)
	noLog(p)
	if data := partitionKeys(t, p.db, partition, tagData); !maps.Equal(data, m.want) {
		t.Fatalf("after leaving changelog mode the data keys hold %d keys, want %d", len(data), len(m.want))
	}
	if got := logs.String(); strings.Count(got, "raise ChangelogMaxBytes") != 1 || !strings.Contains(got, "partition=6") {
		t.Fatalf("leaving changelog mode logged %q; want one message naming the partition and the fix", got)
	}
	for i := 0; i < 60 || len(m.want) < 1000; i++ { // several times the bound
		m.commit(s, 40)
	}
	m.expect(s)
	noLog(p)
	full := s.Len()
	check(t, p.Close())

	// The state no longer fits: it opens in plain mode, and again after
	// changelog records written under a large bound.
	for round, opts := range []Options{small, large, small, large} {
		p, s = openPartition(t, dir, opts, partition)
		if got, want := s.InMemory(), opts.ChangelogMaxBytes == large.ChangelogMaxBytes; got != want {
			t.Fatalf("round %d: reopened with ChangelogMaxBytes %d: InMemory() = %v, want %v", round, opts.ChangelogMaxBytes, got, want)
		}
		m.expect(s)
		if !s.InMemory() {
			noLog(p)
		}
		if round == 0 {
			// Loading stopped once past the bound, not after loading
			// the whole state (several times the bound).
			msgs := regexp.MustCompile(`does not fit.* memory_bytes=(\d+)`).FindAllStringSubmatch(logs.String(), -1)
			if len(msgs) != 1 {
				t.Fatalf("opening a state over the bound logged %q; want one message", logs.String())
			}
			if mem, _ := strconv.ParseInt(msgs[0][1], 10, 64); mem > 2*opts.ChangelogMaxBytes || full < 1000 {
				t.Fatalf("loading %d keys took %d bytes before it stopped, ChangelogMaxBytes is %d", full, mem, opts.ChangelogMaxBytes)
			}
		}
		for range 10 {
			m.commit(s, 40)
		}
		m.expect(s)
		check(t, p.Close())
	}
}

// TestChangelogMaxBytesRollback rolls a partition in changelog mode back
// to a version, committed in plain mode, whose state does not fit in
// ChangelogMaxBytes: the store must go on in plain mode.
func TestChangelogMaxBytesRollback(t *testing.T) {
	dir := t.TempDir()
	const partition = 7
	p, s := openPartition(t, dir, plainTestOptions(), partition)
	big := map[string]string{}
	for i := range 2000 {
		k, v := fmt.Sprint("key", i), fmt.Sprint("value", i)
		check(t, s.Put([]byte(k), []byte(v)))
		big[k] = v
	}
	check(t, s.Commit(1))
	for i := range 1990 {
		check(t, s.Delete(fmt.Append(nil, "key", i)))
	}
	check(t, s.Commit(2))
	check(t, p.Close())

	opts := changelogTestOptions(0)
	opts.ChangelogMaxBytes = 16 << 10
	p, s = openPartition(t, dir, opts, partition)
	defer func() { check(t, p.Close()) }()
	if !s.InMemory() {
		t.Fatal("a state of 10 keys did not open in memory")
	}
	check(t, s.Rollback(1))
	m := &modelStore{t: t, r: testseed.Rand(t), keys: 3000, want: big, version: 1}
	if s.InMemory() {
		t.Fatal("a rollback to 2000 keys kept them in memory")
	}
	m.expect(s)
	for range 10 {
		m.commit(s, 40)
	}
	m.expect(s)
}

// TestChangelogMaxBytesCrash simulates a power loss right after the commit
// that takes a partition out of changelog mode, folds possibly in flight
// before it: the directory opened again must hold exactly the last
// committed version, under either bound.
func TestChangelogMaxBytesCrash(t *testing.T) {
	first := testseed.Seed(t)
	for seed := first; seed < first+4; seed++ {
		fs := vfs.NewStrictMem()
		opts := changelogTestOptions(1 << 10)
		opts.fs = fs
		opts.ChangelogMaxBytes = 16 << 10
		const dir, partition = "query/state", 2
		p, s := openPartition(t, dir, opts, partition)
		m := newModelStore(t, seed, 1<<20)
		commitUntilPlain(t, s, m)
		check(t, s.Put([]byte("staged"), []byte("never committed")))
		fs.SetIgnoreSyncs(true)
		check(t, p.Close())
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)

		large := opts
		large.ChangelogMaxBytes = DefaultOptions().ChangelogMaxBytes
		for _, o := range []Options{opts, large} {
			// Loaded afresh, without garbage or room to grow, the state
			// may fit under the small bound again.
			p, s = openPartition(t, dir, o, partition)
			if o.ChangelogMaxBytes == large.ChangelogMaxBytes && !s.InMemory() {
				t.Fatalf("seed %d: reopened with ChangelogMaxBytes %d: not in memory", seed, o.ChangelogMaxBytes)
			}
			m.expect(s)
			check(t, p.Close())
		}
	}
}

// TestChangelogMaxBytesMidBatch stages, in changelog mode, one batch too
// large to fit under ChangelogMaxBytes: the store must go on in plain mode
// while the batch is being written, not take it into memory first, and the
// batch must commit whole. A power loss after the switch and before the
// commit must leave the version before it.
func TestChangelogMaxBytesMidBatch(t *testing.T) {
	for _, crash := range []bool{false, true} {
		fs := vfs.NewStrictMem()
		var logs logbuf.Buffer
		opts := changelogTestOptions(1 << 10)
		opts.fs = fs
		opts.ChangelogMaxBytes = 64 << 10
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		const dir, partition = "query/state", 3
		p, s := openPartition(t, dir, opts, partition)
		m := newModelStore(t, testseed.Seed(t), 500)
		for range 20 {
			m.commit(s, 40)
		}
		if !s.InMemory() {
			t.Fatal("a state of a few hundred keys is not in memory")
		}
		next := maps.Clone(m.want)
		var peak int64
		for i := range 20_000 {
			k, v := fmt.Sprint("big", i), fmt.Sprint("value", i)
			check(t, s.Put([]byte(k), []byte(v)))
			next[k] = v
			if s.InMemory() {
				peak = max(peak, s.log.staged())
			}
		}
		if s.InMemory() || peak > opts.ChangelogMaxBytes+1<<10 {
			t.Fatalf("crash=%v: after staging 20,000 new keys: InMemory() = %v, staged state peaked at %d bytes; want plain mode, under %d bytes",
				crash, s.InMemory(), peak, opts.ChangelogMaxBytes)
		}
		if got := logs.String(); !strings.Contains(got, "with the batch being written") || !strings.Contains(got, "partition=3") {
			t.Fatalf("the switch logged %q; want a message naming the partition", got)
		}
		if crash {
			fs.SetIgnoreSyncs(true)
			check(t, p.Close())
			fs.ResetToSyncedState()
			fs.SetIgnoreSyncs(false)
		} else {
			m.version++
			check(t, s.Commit(m.version))
			m.want = next
			m.expect(s)
			check(t, p.Close())
		}
		large := opts
		large.ChangelogMaxBytes = DefaultOptions().ChangelogMaxBytes
		for _, o := range []Options{opts, large} {
			p, s = openPartition(t, dir, o, partition)
			m.expect(s)
			m.commit(s, 40)
			check(t, p.Close())
		}
	}
}

// TestTableSortedFollowsChanges sorts after each kind of change the kept
// order must follow: new keys, a deletion, a key deleted and put back
// before and after a sort, a value that outgrows its room (the record
// moves), and a compaction.
func TestTableSortedFollowsChanges(t *testing.T) {
	tb := newTable()
	want := map[string]string{}
	put := func(k, v string) { tb.put([]byte(k), []byte(v)); want[k] = v }
	del := func(k string) { tb.del([]byte(k)); delete(want, k) }
	for _, k := range []string{"m", "c", "x", "a", "longer than eight", "longer than eighty"} {
		put(k, "1")
	}
	checkSorted(t, &tb, want)
	put("b", "1") // new
	put("z", "1")
	del("x")
	checkSorted(t, &tb, want)
	put("x", "2") // back in place, after a sort saw it deleted
	del("m")
	put("m", "3") // back in place before any sort
	checkSorted(t, &tb, want)
	put("c", strings.Repeat("9", 40)) // moves
	put("longer than eight", strings.Repeat("8", 40))
	checkSorted(t, &tb, want)
	tb.compact()
	checkSorted(t, &tb, want)
	put("aa", "1")
	checkSorted(t, &tb, want)
	if n := len(tb.sorted()); n != len(want) {
		t.Fatalf("sorted twice: %d records, want %d", n, len(want))
	}
}

// TestTableSortsRandomKeys checks the sort against sort.Strings on keys
// of every length that share prefixes of every length and hold every byte.
func TestTableSortsRandomKeys(t *testing.T) {
	r := testseed.Rand(t)
	tb := newTable()
	want := map[string]string{}
	alphabet := []byte{0, 1, 'a', 'b', 0x7f, 0x80, 0xff}
	for range 20_000 {
		k := make([]byte, r.IntN(14))
		for i := range k {
			k[i] = alphabet[r.IntN(len(alphabet))]
		}
		tb.put(k, []byte{1})
		want[string(k)] = "\x01"
	}
	checkSorted(t, &tb, want)
}

// BenchmarkTableSorted sorts a partition's keys for a complete-mode scan:
// 60,000 words of 2 to 12 letters, many sharing a prefix.
func BenchmarkTableSorted(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := newTable()
	for tb.live < 60_000 {
		k := make([]byte, 2+r.IntN(11))
		for i := range k {
			k[i] = 'a' + byte(r.IntN(6))
		}
		tb.put(k, []byte{1})
	}
	// first: nothing sorted before (every scan did this before the order was
	// kept); again: the order of the last scan, no key changed since.
	for _, again := range []bool{false, true} {
		b.Run(map[bool]string{false: "first", true: "again"}[again], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !again {
					b.StopTimer()
					for _, r := range tb.order {
						tb.arena[r.off] &^= recordListed
					}
					tb.order = tb.order[:0]
					b.StartTimer()
				}
				tb.sorted()
			}
		})
	}
}

// TestChangelogReservesLastBatch stages a batch as large as the last one
// (its delta and refs over keepBytes, so dropped after the commit) and
// checks that the store made room for it at its first write, rather than
// growing the delta and refs write by write.
func TestChangelogReservesLastBatch(t *testing.T) {
	p, s := openPartition(t, t.TempDir(), changelogTestOptions(0), 0)
	defer func() { check(t, p.Close()) }()
	const n = 50_000 // about 800 KB of delta and 400 KB of refs
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key%08d", i)
	}
	for _, k := range keys {
		check(t, s.Put(k, k))
	}
	check(t, s.Commit(0))
	if got := cap(s.log.delta) + intLen*cap(s.log.refs); got > 2*keepBytes {
		t.Fatalf("the store kept %d bytes of buffers after the commit", got)
	}
	check(t, s.Put(keys[0], keys[0]))
	delta, refs := cap(s.log.delta), cap(s.log.refs)
	for _, k := range keys[1:] {
		check(t, s.Put(k, k))
	}
	if cap(s.log.delta) != delta || cap(s.log.refs) != refs {
		t.Fatalf("the batch's delta grew from %d to %d bytes and its refs from %d to %d after its first write, want room for it all from the start",
			delta, cap(s.log.delta), refs, cap(s.log.refs))
	}
	check(t, s.Commit(1))
}
