package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Summary is what CheckPebble found in a state directory.
type Summary struct {
	// Exists is false for a missing or empty directory, which OpenPebble
	// would create; the other fields are then zero.
	Exists bool
	// Label is the directory's Options.Label, nil if it has none.
	Label []byte
	// Versions holds the version of partitions 0 to n-1, NoVersion for a
	// partition that never committed.
	Versions []int64
	// Beyond is the lowest partition at or above n that holds any key, or
	// -1 if none does.
	Beyond int
}

// CheckPebble reads the state in dir as OpenPebble and then Provider.Open
// of partitions 0 to n-1 would, and fails where they would, without
// writing anything to dir: Pebble is opened read-only (its log replayed in
// memory), each partition is loaded and its changelog checked but not
// folded. A caller that must refuse a damaged directory without changing
// it checks it first, then opens it. opts are those OpenPebble will get;
// their Label is not compared, the caller compares Summary.Label.
func CheckPebble(dir string, opts Options, n int) (sum Summary, err error) {
	if err := opts.Validate(); err != nil {
		return sum, err
	}
	if n < 0 || n > MaxPartition {
		return sum, fmt.Errorf("%w: %d partitions", ErrPartition, n)
	}
	popts, w := opts.pebble(dir)
	defer popts.Cache.Unref()
	sum.Beyond = -1
	fresh, err := isEmptyDir(popts.FS, dir)
	if err != nil {
		return sum, fmt.Errorf("state: cannot read state directory %s: %w (check that it exists and is readable)", dir, err)
	}
	if fresh {
		return sum, nil
	}
	db, marked, label, err := openReadOnly(dir, popts)
	if err != nil {
		return sum, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = openError(dir, cerr)
		}
	}()
	sum.Exists, sum.Label = true, bytes.Clone(label)
	if !marked { // an interrupted creation: no keys at all
		sum.Versions = make([]int64, n)
		for i := range sum.Versions {
			sum.Versions[i] = NoVersion
		}
		return sum, nil
	}
	p := newPebbleProvider(dir, db, opts, w)
	p.readOnly = true
	for part := range n {
		st, err := p.Open(part)
		if err != nil {
			return sum, err
		}
		sum.Versions = append(sum.Versions, st.Version())
		if err := st.Close(); err != nil {
			return sum, err
		}
	}
	if sum.Beyond, err = firstPartitionFrom(db, uint32(n)); err != nil {
		return sum, openError(dir, err)
	}
	return sum, nil
}

// firstPartitionFrom returns the lowest partition at or above from that
// holds a key, or -1.
func firstPartitionFrom(db *pebble.DB, from uint32) (part int, err error) {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint32(nil, from),
		UpperBound: markerKey[:4], // the marker's partition bytes are above MaxPartition
	})
	if err != nil {
		return -1, err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	if it.First() {
		return int(binary.BigEndian.Uint32(it.Key())), nil
	}
	return -1, it.Error()
}
