package state

import (
	"errors"
	"fmt"
)

// Changelog records travel too: a cluster worker sends each batch's record
// of a state partition to the partition's standby replica, which commits
// it on its own store at the same version (CommitRecords). A record built
// with NewRecord and AppendPut has the format of the records a store
// writes in changelog mode (see the package doc).

// NewRecord starts an empty changelog record in dst's memory.
func NewRecord(dst []byte) []byte { return newDelta(dst) }

// AppendPut appends a put of value under key to rec.
func AppendPut(rec, key, value []byte) []byte { return appendDeltaWrite(rec, key, value, false) }

// EmptyRecord reports whether rec, a well-formed record, holds no write.
func EmptyRecord(rec []byte) bool { return len(rec) <= 1 }

// EachWrite calls fn with each write of rec in order: value is nil for a
// deletion. The slices alias rec. A malformed record is ErrCorrupt, after
// fn saw the writes before the damage; an error of fn is returned
// unchanged.
func EachWrite(rec []byte, fn func(key, value []byte, del bool) error) error {
	err := decodeDelta(rec, fn)
	if errors.Is(err, errBadDelta) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// ApplyRecord stages the writes of rec on st for its next Commit. A
// malformed record is ErrCorrupt; st's staged writes are then those
// before the damage, for the caller to Discard.
func ApplyRecord(st Store, rec []byte) error {
	return EachWrite(rec, func(key, value []byte, del bool) error {
		if del {
			return st.Delete(key)
		}
		return st.Put(key, value)
	})
}

// CommitRecords commits version on st as the writes of recs, changelog
// records holding them in order, which leave st with keys keys (the key
// count of the store they were taken from, at version): a cluster
// worker's standby commits the records its partition's owner sent.
// Writes staged on st before are committed with them. On error st's
// staged writes are dropped; malformed records are ErrCorrupt and commit
// nothing.
//
// A Pebble store in changelog mode writes the records as they are, as
// version's changelog record, durably before CommitRecords returns, and
// keeps them (the caller must not change them after the call) to apply to
// its memory later: on the store's next read or write, or when enough
// changelog has accumulated for a fold (at most twice Options.MemTableSize
// of records), whichever comes first. Applying them checks keys then: a
// count that differs makes the store fail with ErrCorrupt. Other stores
// stage the records (ApplyRecord), commit them, and check keys against Len.
func CommitRecords(st Store, version int64, recs [][]byte, keys int64) error {
	if ps, ok := st.(*pebbleStore); ok && ps.log != nil && EmptyRecord(ps.log.delta) {
		return ps.commitRecords(version, recs, keys)
	}
	for _, rec := range recs {
		if err := ApplyRecord(st, rec); err != nil {
			st.Discard()
			return err
		}
	}
	if err := st.Commit(version); err != nil {
		st.Discard()
		return err
	}
	if n := st.Len(); n != keys {
		return fmt.Errorf("%w: partition %d: the records of version %d leave %d keys, their writer said %d", ErrCorrupt, st.Partition(), version, n, keys)
	}
	return nil
}

// KeepsRecord reports whether st keeps the writes staged from now until
// its next commit as a changelog record, which CommitRecord hands over: a
// Pebble store in changelog mode does (the record it commits as the
// version's changelog), also for a batch whose writes take the store out
// of changelog mode. Ask before the batch's first write.
func KeepsRecord(st Store) bool {
	ps, ok := st.(*pebbleStore)
	return ok && ps.log != nil
}

// CommitRecord commits st's staged writes as version, as st.Commit does,
// and returns them as a changelog record (each write once, in the order
// staged), which the caller then owns: the store no longer uses its
// memory. The record is nil for a store that keeps none (see KeepsRecord).
func CommitRecord(st Store, version int64) ([]byte, error) {
	if ps, ok := st.(*pebbleStore); ok {
		return ps.commit(version, true)
	}
	return nil, st.Commit(version)
}

// SplitRecord cuts rec, a changelog record, between writes into records
// of about size bytes each, holding rec's writes in order: a record is
// cut once its writes reach size, so it is over size only by its last
// write. The first aliases rec; each other is a copy in memory of its
// own. A record without writes gives none. rec is read only if it is size
// bytes or more: the damage of a malformed record found while cutting it
// is ErrCorrupt.
func SplitRecord(rec []byte, size int) ([][]byte, error) {
	if len(rec) == 0 || rec[0] != deltaFormat {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, errBadDelta)
	}
	if len(rec) < size { // a record is cut once it reaches size
		if EmptyRecord(rec) {
			return nil, nil
		}
		return [][]byte{rec}, nil
	}
	var out [][]byte
	start := 1 // of the writes not in out yet
	for at := 1; at < len(rec); {
		n, ok := writeLen(rec[at:])
		if !ok {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, errBadDelta)
		}
		if at += n; at-start+1 < size && at < len(rec) {
			continue
		}
		if start == 1 {
			out = append(out, rec[:at:at])
		} else {
			out = append(out, append(newDelta(make([]byte, 0, at-start+1)), rec[start:at]...))
		}
		start = at
	}
	return out, nil
}

// writeLen is the length of the write at the front of w, the writes of a
// delta: false if it is malformed.
func writeLen(w []byte) (int, bool) {
	if w[0] != deltaPut && w[0] != deltaDelete {
		return 0, false
	}
	_, rest, ok := cutBytes(w[1:])
	if ok && w[0] == deltaPut {
		_, rest, ok = cutBytes(rest)
	}
	return len(w) - len(rest), ok
}
