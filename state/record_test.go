package state

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gostream/gostream/internal/testseed"
)

// TestRecordIsTheChangelogRecord: a record built with NewRecord and
// AppendPut is, byte for byte, the changelog record a store in changelog
// mode writes for the same puts; ApplyRecord stages it on a memory store
// and on a Pebble store, whose commits then hold the puts.
func TestRecordIsTheChangelogRecord(t *testing.T) {
	puts := [][2]string{{"b", "2"}, {"a", ""}, {"long key", string(make([]byte, 300))}}
	rec := NewRecord(nil)
	for _, kv := range puts {
		rec = AppendPut(rec, []byte(kv[0]), []byte(kv[1]))
	}

	opts := DefaultOptions()
	opts.Changelog, opts.RetainVersions = true, 0
	prov, err := OpenPebble(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	st, err := prov.Open(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range puts {
		if err := st.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Commit(3); err != nil {
		t.Fatal(err)
	}
	written, closer, err := prov.(*pebbleProvider).db.Get(appendLogKey(nil, 5, 3))
	if err != nil {
		t.Fatalf("the changelog record of version 3: %v", err)
	}
	if string(written) != string(rec) {
		t.Fatalf("the store wrote the record %q, AppendPut built %q", written, rec)
	}
	closer.Close()

	want := map[string]string{}
	for _, kv := range puts {
		want[kv[0]] = kv[1]
	}
	for name, p := range map[string]Provider{"memory": NewMemory(), "pebble": prov} {
		st, err := p.Open(9)
		if err != nil {
			t.Fatal(err)
		}
		if err := ApplyRecord(st, rec); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := st.Commit(3); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := map[string]string{}
		if err := st.Scan(func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) || st.Version() != 3 {
			t.Fatalf("%s: after ApplyRecord and Commit(3): version %d, %q; want %q", name, st.Version(), got, want)
		}
	}
}

// TestRecordMalformed: EachWrite and ApplyRecord refuse a malformed
// record with ErrCorrupt, after the writes before the damage.
func TestRecordMalformed(t *testing.T) {
	good := AppendPut(NewRecord(nil), []byte("k"), []byte("v"))
	if EmptyRecord(good) || !EmptyRecord(NewRecord(nil)) {
		t.Fatal("EmptyRecord is wrong")
	}
	for name, rec := range map[string][]byte{
		"empty":      nil,
		"format":     {9},
		"op":         append(append([]byte(nil), good...), 7),
		"truncated":  good[:len(good)-1],
		"key length": append(append([]byte(nil), good...), deltaPut, 0xff),
	} {
		var n int
		err := EachWrite(rec, func(_, _ []byte, _ bool) error { n++; return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
		if name == "op" || name == "key length" {
			if n != 1 {
				t.Errorf("%s: fn saw %d writes before the damage, want 1", name, n)
			}
		}
	}
}

// TestCommitRecord: a Pebble store in changelog mode keeps its batch's
// writes as a record (KeepsRecord) and CommitRecord hands over the very
// changelog record the commit wrote, which the store's next batch leaves
// as it was, also for a batch whose writes take the store out of changelog
// mode half-way (writes before and after the switch); other stores keep
// none and CommitRecord commits alone.
func TestCommitRecord(t *testing.T) {
	small := changelogTestOptions(1 << 20)
	small.ChangelogMaxBytes = 64 << 10
	for _, c := range []struct {
		name  string
		opts  *Options // nil: NewMemory
		keeps bool
		n     int // new keys in the second batch
	}{
		{"memory", nil, false, 10},
		{"plain", ptr(plainTestOptions()), false, 10},
		{"changelog", ptr(changelogTestOptions(1 << 20)), true, 10},
		{"changelog/leaves mid-batch", &small, true, 20_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p Provider
			if c.opts == nil {
				p = NewMemory()
			} else {
				var err error
				p, err = OpenPebble(t.TempDir(), *c.opts)
				check(t, err)
			}
			defer p.Close()
			s, err := p.Open(2)
			check(t, err)
			check(t, s.Put([]byte("gone"), []byte("soon")))
			check(t, s.Commit(1))
			if got := KeepsRecord(s); got != c.keeps {
				t.Fatalf("KeepsRecord = %v, want %v", got, c.keeps)
			}
			want := AppendPut(NewRecord(nil), []byte("first"), []byte("1"))
			want = appendDeltaWrite(want, []byte("gone"), nil, true)
			check(t, s.Put([]byte("first"), []byte("1")))
			check(t, s.Delete([]byte("gone")))
			for i := range c.n {
				k, v := fmt.Appendf(nil, "key%d", i), fmt.Appendf(nil, "value%d", i)
				check(t, s.Put(k, v))
				want = AppendPut(want, k, v)
			}
			rec, err := CommitRecord(s, 2)
			check(t, err)
			if s.Version() != 2 || s.Len() != int64(c.n+1) {
				t.Fatalf("after CommitRecord(2): version %d, %d keys; want 2, %d", s.Version(), s.Len(), c.n+1)
			}
			if !c.keeps {
				if rec != nil {
					t.Fatalf("a store that keeps no record handed over %q", rec)
				}
				return
			}
			if in := s.(*pebbleStore).log != nil; in == (c.n > 1000) {
				t.Fatalf("in changelog mode after the batch: %v", in)
			}
			if !bytes.Equal(rec, want) {
				t.Fatalf("the record handed over has %d bytes, want %d: %q...", len(rec), len(want), rec[:min(len(rec), 40)])
			}
			if s.(*pebbleStore).log != nil {
				written, closer, err := p.(*pebbleProvider).db.Get(appendLogKey(nil, 2, 2))
				check(t, err)
				if !bytes.Equal(written, rec) {
					t.Fatalf("the store wrote the record %q, handed over %q", written, rec)
				}
				closer.Close()
			}
			kept := bytes.Clone(rec)
			for i := range 50 {
				check(t, s.Put(fmt.Appendf(nil, "next%d", i), []byte("x")))
			}
			if _, err := CommitRecord(s, 3); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec, kept) {
				t.Fatal("the next batch changed the record handed over")
			}
		})
	}
}

// TestSplitRecord cuts random records of puts and deletions into records
// of about size bytes: their writes are the record's, in order, each is
// over size only by its last write, the first shares the record's memory
// and the others have their own; a record without writes gives none, and
// a malformed one cut is ErrCorrupt.
func TestSplitRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	type write struct {
		key, value string
		del        bool
	}
	writes := func(rec []byte) []write {
		var ws []write
		check(t, EachWrite(rec, func(k, v []byte, del bool) error {
			ws = append(ws, write{string(k), string(v), del})
			return nil
		}))
		return ws
	}
	for range 200 {
		rec := NewRecord(nil)
		for i := range r.IntN(100) {
			key, value := fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte("v"), r.IntN(300))
			rec = appendDeltaWrite(rec, key, value, r.IntN(5) == 0)
		}
		size := 1 + r.IntN(2000)
		parts, err := SplitRecord(rec, size)
		check(t, err)
		var got []write
		for i, part := range parts {
			ws := writes(part)
			if len(ws) == 0 {
				t.Fatalf("size %d: part %d has no write", size, i)
			}
			last := appendDeltaWrite(nil, []byte(ws[len(ws)-1].key), []byte(ws[len(ws)-1].value), ws[len(ws)-1].del)
			if (len(ws) > 1 && len(part)-len(last) >= size) || (i < len(parts)-1 && len(part) < size) {
				t.Fatalf("size %d: part %d of %d bytes, its last write %d bytes", size, i, len(part), len(last))
			}
			if shares := &part[0] == &rec[0]; shares != (i == 0) {
				t.Fatalf("part %d shares the record's memory: %v", i, shares)
			}
			got = append(got, ws...)
		}
		if want := writes(rec); !slices.Equal(got, want) {
			t.Fatalf("size %d: the parts hold %d writes, the record %d", size, len(got), len(want))
		}
	}
	if parts, err := SplitRecord(NewRecord(nil), 10); err != nil || len(parts) != 0 {
		t.Fatalf("an empty record: %d parts, %v", len(parts), err)
	}
	good := AppendPut(NewRecord(nil), []byte("k"), []byte("v"))
	for _, bad := range [][]byte{nil, {9}, append(bytes.Clone(good), 7), good[:len(good)-1]} {
		if _, err := SplitRecord(bad, 1); !errors.Is(err, ErrCorrupt) {
			t.Errorf("SplitRecord(%q): %v, want ErrCorrupt", bad, err)
		}
	}
}
