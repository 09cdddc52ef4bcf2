package task

import (
	"encoding/binary"
	"fmt"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/state"
)

// DedupReducer is the reduce task of one query's dropDuplicates: for one
// state partition and one batch, it keeps the rows of its exchange buckets
// whose key the partition's state store has not seen, records their keys
// under the batch's id and commits the store at the batch's version. It is
// safe for concurrent use.
type DedupReducer struct {
	x *operators.Dedup
}

// NewDedupReducer returns the reduce task of x.
func NewDedupReducer(x *operators.Dedup) *DedupReducer {
	return &DedupReducer{x: x}
}

// Reduce reduces batch into st, the store of one state partition, whose
// exchange buckets are buckets, in map task order, and adds to out.Rows
// the row of each key new to st: the first of its rows in bucket order.
// With out.Record, Reduced.Record is the batch's changelog record: the put
// of each such key (its state: the batch that first saw it).
// out.BeforeCommit is called right before the commit, whose error refuses
// it.
//
// st maps each key seen to the batch that first saw it. A store below
// version batch gets the new keys put and commits version batch. A store
// at version batch already holds the batch (it committed before a crash,
// and the batch runs again with the same ranges): Reduce writes nothing
// and adds the rows of the keys the batch first saw, so a re-run emits
// what the first run did. A version above batch is refused by the store's
// Commit (state.ErrVersion).
//
// It returns the number of rows added. On error, st's staged writes are
// dropped. buckets are read only during the call.
func (r *DedupReducer) Reduce(st state.Store, batch int64, buckets [][]byte, out ReduceOptions) (Reduced, error) {
	res := Reduced{Applied: st.Version() == batch}
	fail := func(err error) (Reduced, error) {
		st.Discard()
		return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
	}
	row := make(operators.Row, len(r.x.Schema()))
	enc := binary.AppendVarint(nil, batch)
	seen := map[string]struct{}{} // keys of this batch: a key's first row wins
	rec := newRecorder(st, out.Record, res.Applied)
	into := rec.store()
	for _, b := range buckets {
		err := operators.EachEntry(b, func(key, encRow []byte) error {
			if _, ok := seen[string(key)]; ok {
				return nil
			}
			seen[string(key)] = struct{}{}
			old, found, err := st.Get(key)
			if err != nil {
				return err
			}
			switch {
			case !found && res.Applied:
				return fmt.Errorf("%w: the state lacks key %q of a batch it committed", state.ErrCorrupt, key)
			case !found:
				if err := into.Put(key, enc); err != nil {
					return err
				}
			default:
				first, n := binary.Varint(old)
				if n <= 0 {
					return fmt.Errorf("%w: bad batch id in the state of key %q", state.ErrCorrupt, key)
				}
				if !res.Applied || first != batch {
					return nil // seen in an earlier batch
				}
				rec.put(key, enc)
			}
			if out.Rows != nil {
				if err := r.x.DecodeRow(row, encRow); err != nil {
					return err
				}
				out.Rows.Add(row)
			}
			res.Groups++
			return nil
		})
		if err != nil {
			return fail(err)
		}
	}
	if res.Applied {
		res.Record = rec.rec
		return res, nil
	}
	if out.BeforeCommit != nil {
		if err := out.BeforeCommit(); err != nil {
			return fail(err)
		}
	}
	var err error
	if res.Record, err = rec.commit(batch); err != nil {
		return fail(err)
	}
	return res, nil
}
