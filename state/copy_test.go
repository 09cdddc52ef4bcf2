package state_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gostream/gostream/state"
)

// copyStores are the stores a Copy is checked on: memory; Pebble with
// undo records and without (where a Copy spares reads); Pebble in
// changelog mode (a cluster worker's), and with a memory bound so small
// that its partitions work through Pebble.
func copyStores(t *testing.T) map[string]func(t *testing.T) state.Provider {
	pebble := func(change func(*state.Options)) func(t *testing.T) state.Provider {
		return func(t *testing.T) state.Provider {
			opts := testOptions()
			change(&opts)
			p, err := state.OpenPebble(t.TempDir(), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p
		}
	}
	return map[string]func(t *testing.T) state.Provider{
		"memory":         func(*testing.T) state.Provider { return state.NewMemory() },
		"pebble":         pebble(func(*state.Options) {}),
		"pebble/no-undo": pebble(func(o *state.Options) { o.RetainVersions = 0 }),
		"changelog":      pebble(func(o *state.Options) { o.Changelog, o.RetainVersions = true, 0 }),
		"changelog/over": pebble(func(o *state.Options) { o.Changelog, o.RetainVersions, o.ChangelogMaxBytes = true, 0, 2048 }),
	}
}

// commitMap commits kv on st at version.
func commitMap(t *testing.T, st state.Store, version int64, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if err := st.Put([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Commit(version); err != nil {
		t.Fatal(err)
	}
}

// storeMap reads st's committed state.
func storeMap(t *testing.T, st state.Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := st.Scan(func(k, v []byte) error { m[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(len(m)) != st.Len() {
		t.Fatalf("Scan gave %d keys, Len says %d", len(m), st.Len())
	}
	return m
}

// copyRecords encodes kv as a copy sends it: puts in ascending key order,
// cut into records of about chunk bytes.
func copyRecords(kv map[string]string, chunk int) [][]byte {
	var recs [][]byte
	rec := state.NewRecord(nil)
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		rec = state.AppendPut(rec, []byte(k), []byte(kv[k]))
		if len(rec) >= chunk {
			recs, rec = append(recs, rec), state.NewRecord(nil)
		}
	}
	if !state.EmptyRecord(rec) {
		recs = append(recs, rec)
	}
	return recs
}

// applyCopy stages recs on st as a Copy and returns Finish's count.
func applyCopy(st state.Store, recs [][]byte) (int64, error) {
	c, err := state.NewCopy(st)
	if err != nil {
		return 0, err
	}
	for _, rec := range recs {
		if err := c.Apply(rec); err != nil {
			return 0, err
		}
	}
	return c.Finish()
}

// TestCopyReplaces: a copy committed on a store leaves exactly the copy's
// keys and values, whatever the store held (nothing, the same keys, other
// keys, more keys), at the commit's version; random states, seed logged.
func TestCopyReplaces(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	randomState := func(n int) map[string]string {
		m := map[string]string{}
		for range n {
			m[fmt.Sprintf("k%03d", rnd.IntN(200))] = fmt.Sprint(rnd.IntN(1000))
		}
		return m
	}
	for name, open := range copyStores(t) {
		t.Run(name, func(t *testing.T) {
			cases := []struct {
				name      string
				old, copy map[string]string
			}{
				{"empty store", nil, map[string]string{"a": "1", "b": "2"}},
				{"empty copy", map[string]string{"a": "1", "b": "2"}, map[string]string{}},
				{"disjoint", map[string]string{"a": "1", "c": "3"}, map[string]string{"b": "2", "d": "4"}},
				{"overlap", map[string]string{"a": "1", "b": "2", "c": "3", "e": "9"}, map[string]string{"b": "20", "c": "3", "d": "4"}},
			}
			for i := range 20 {
				cases = append(cases, struct {
					name      string
					old, copy map[string]string
				}{fmt.Sprint("random ", i), randomState(rnd.IntN(150)), randomState(rnd.IntN(150))})
			}
			p := open(t)
			for i, c := range cases {
				st, err := p.Open(i)
				if err != nil {
					t.Fatal(err)
				}
				if c.old != nil {
					commitMap(t, st, 3, c.old)
				}
				n, err := applyCopy(st, copyRecords(c.copy, 40))
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if n != int64(len(c.copy)) {
					t.Fatalf("%s: Finish counted %d keys, the copy has %d", c.name, n, len(c.copy))
				}
				if err := st.Commit(7); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got := storeMap(t, st); st.Version() != 7 || !maps.Equal(got, c.copy) {
					t.Fatalf("%s: version %d, %v; want 7, %v", c.name, st.Version(), got, c.copy)
				}
				// Committed for good: opened again, the store holds the copy.
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				if st, err = p.Open(i); err != nil {
					t.Fatal(err)
				}
				if got := storeMap(t, st); st.Version() != 7 || !maps.Equal(got, c.copy) {
					t.Fatalf("%s reopened: version %d, %v; want 7, %v", c.name, st.Version(), got, c.copy)
				}
				st.Close()
			}
		})
	}
}

// TestCopyRefusesAndDiscards: a copy cut short, or with a malformed
// record, a deletion or keys out of order, is dropped with Discard and
// leaves the store's state and version exactly as they were; the store
// then takes a good copy.
func TestCopyRefusesAndDiscards(t *testing.T) {
	old := map[string]string{"a": "1", "b": "2", "z": "26"}
	good := map[string]string{"b": "3", "c": "4", "d": "5"}
	recs := copyRecords(good, 1) // one put per record
	// A record with a deletion: a store's changelog record may hold one,
	// a copy never does.
	withDelete := [][]byte{recs[0], deleteRecord(t, "c")}
	cases := []struct {
		name string
		recs [][]byte
		err  error
	}{
		{"cut short", recs[:2], nil},
		{"malformed", [][]byte{recs[0], recs[1][:len(recs[1])-1]}, state.ErrCorrupt},
		{"out of order", [][]byte{recs[1], recs[0]}, state.ErrCorrupt},
		{"repeated key", [][]byte{recs[0], recs[0]}, state.ErrCorrupt},
		{"deletion", withDelete, state.ErrCorrupt},
	}
	for name, open := range copyStores(t) {
		t.Run(name, func(t *testing.T) {
			p := open(t)
			st, err := p.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { st.Close() }()
			commitMap(t, st, 3, old)
			for _, c := range cases {
				_, err := applyCopy(st, c.recs)
				if c.err != nil && !errors.Is(err, c.err) || c.err == nil && err != nil {
					t.Fatalf("%s: %v, want %v", c.name, err, c.err)
				}
				st.Discard()
				if got := storeMap(t, st); st.Version() != 3 || !maps.Equal(got, old) {
					t.Fatalf("%s: after Discard version %d, %v; want 3, %v", c.name, st.Version(), got, old)
				}
				// The same holds once the store is opened again (a
				// worker closes a partition whose request failed).
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				if st, err = p.Open(0); err != nil {
					t.Fatal(err)
				}
				if got := storeMap(t, st); st.Version() != 3 || !maps.Equal(got, old) {
					t.Fatalf("%s: reopened at version %d, %v; want 3, %v", c.name, st.Version(), got, old)
				}
			}
			if _, err := applyCopy(st, recs); err != nil {
				t.Fatal(err)
			}
			if err := st.Commit(5); err != nil {
				t.Fatal(err)
			}
			if got := storeMap(t, st); !maps.Equal(got, good) {
				t.Fatalf("after the good copy: %v, want %v", got, good)
			}
		})
	}
}

// deleteRecord is a record deleting key.
func deleteRecord(t *testing.T, key string) []byte {
	t.Helper()
	rec := state.AppendDelete(state.NewRecord(nil), []byte(key))
	var dels int
	if err := state.EachWrite(rec, func(_, _ []byte, del bool) error {
		if del {
			dels++
		}
		return nil
	}); err != nil || dels != 1 {
		t.Fatalf("a deletion record: %d deletions, %v", dels, err)
	}
	return rec
}
