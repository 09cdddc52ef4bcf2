package state

import (
	"errors"
	"fmt"
)

// Changelog records travel too: a cluster worker sends each batch's record
// of a state partition to the partition's standby replica, which stages it
// on its own store (ApplyRecord) and commits it at the same version. A
// record built with NewRecord and AppendPut has the format of the records
// a store writes in changelog mode (see the package doc).

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
