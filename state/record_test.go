package state

import (
	"errors"
	"maps"
	"testing"
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
