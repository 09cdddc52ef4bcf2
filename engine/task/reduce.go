package task

import (
	"fmt"

	"github.com/gostream/gostream/operators"
	"github.com/gostream/gostream/state"
)

// Reducer is the reduce task of one query's aggregation: for one state
// partition and one batch, it merges the map tasks' exchange buckets into
// a final aggregation, folds that into the partition's state store and
// commits the store at the batch's version.
//
// A Reducer is safe for concurrent use, one call per state partition at a
// time: it keeps its final aggregators for reuse between calls.
type Reducer struct {
	agg    *operators.Aggregation
	finals freeList[*operators.HashAgg]
}

// NewReducer returns the reduce task of agg.
func NewReducer(agg *operators.Aggregation) *Reducer {
	return &Reducer{agg: agg}
}

// Reduced is what Reduce did to one state partition.
type Reduced struct {
	// Groups is the number of groups the batch updated: the distinct keys
	// of its buckets.
	Groups int64
	// Applied reports that the store held the batch already: nothing was
	// merged into it or written.
	Applied bool
	// Record is the batch's changelog record if ReduceOptions.Record asked
	// for it; the caller owns it.
	Record []byte
}

// ReduceOptions say where Reduce (Reducer's, or DedupReducer's: see
// there) puts the groups a batch changed, and what it checks before it
// writes; the zero ReduceOptions take no group (complete mode) and check
// nothing.
type ReduceOptions struct {
	// Rows, if not nil, receives each changed group's output row (update
	// mode). It is grown by the batch's groups before any row is added.
	Rows *operators.RowBuffer
	// Record asks for the batch's changelog record in Reduced.Record: a
	// put of each changed group's key and state as the store holds them
	// with the batch committed (what RecordRows turns into the groups'
	// rows, and what a standby commits: state.CommitRecords). A store
	// that keeps the record it commits (state.KeepsRecord) hands it over,
	// so the groups are encoded once; for other stores, and for a batch
	// the store held already, Reduce encodes it.
	Record bool
	// BeforeCommit, if not nil, is called right before the store's
	// commit: an error refuses the commit, and nothing is written.
	BeforeCommit func() error
}

// Reduce reduces batch into st, the store of one state partition, whose
// exchange buckets (every map task's, in any order) are buckets.
//
// A store below version batch gets the batch's groups merged into it and
// commits version batch. A store at version batch already holds the batch
// (it committed before a crash, and the batch runs again): Reduce writes
// nothing, and out receives the groups the batch changed as the store
// holds them, so a re-run outputs what the first run did and counts
// nothing twice. A version above batch is refused by the store's Commit
// (state.ErrVersion).
//
// On error, st's staged writes are dropped. buckets are read only during
// the call; st is used only during it.
func (r *Reducer) Reduce(st state.Store, batch int64, buckets [][]byte, out ReduceOptions) (Reduced, error) {
	final, ok := r.finals.get()
	if !ok {
		final = r.agg.NewFinal()
	}
	defer r.finals.put(final)
	defer final.Reset()
	for _, b := range buckets {
		if err := final.Merge(b); err != nil {
			return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
		}
	}
	res := Reduced{Groups: int64(final.Len()), Applied: st.Version() == batch}
	if out.Rows != nil {
		out.Rows.Grow(final.Len(), len(r.agg.Schema()))
	}
	rec := newRecorder(st, out.Record, res.Applied)
	if res.Applied {
		if out.Rows == nil && !out.Record {
			return res, nil
		}
		if err := final.EachCommitted(st, r.committed(out.Rows, rec)); err != nil {
			return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
		}
		res.Record = rec.rec
		return res, nil
	}
	var emit operators.Emit
	if out.Rows != nil {
		emit = func(row operators.Row) error {
			out.Rows.Add(row)
			return nil
		}
	}
	if err := final.MergeInto(rec.store(), emit); err != nil {
		st.Discard()
		return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
	}
	if out.BeforeCommit != nil {
		if err := out.BeforeCommit(); err != nil {
			st.Discard()
			return Reduced{}, err
		}
	}
	var err error
	if res.Record, err = rec.commit(batch); err != nil {
		st.Discard()
		return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
	}
	return res, nil
}

// committed hands a committed group's key and state to rows and rec.
func (r *Reducer) committed(rows *operators.RowBuffer, rec *recorder) func(key, state []byte) error {
	row := make(operators.Row, len(r.agg.Schema()))
	return func(key, state []byte) error {
		rec.put(key, state)
		if rows != nil {
			if err := r.agg.DecodeRow(row, key, state); err != nil {
				return fmt.Errorf("state of key %q: %w", key, err)
			}
			rows.Add(row)
		}
		return nil
	}
}

// recorder makes a reduce's record of its batch (ReduceOptions.Record):
// the store's own where it keeps one (state.KeepsRecord), else one it
// encodes from the reduce's puts, or from the committed groups of a batch
// the store held already. A recorder asked for nothing records nothing.
type recorder struct {
	st     state.Store
	want   bool   // a record was asked for
	encode bool   // the puts are encoded into rec
	rec    []byte // the record encoded
}

// newRecorder returns the recorder of a reduce of st that wants a record
// or not, and whose batch st has applied already or not.
func newRecorder(st state.Store, want, applied bool) *recorder {
	r := &recorder{st: st, want: want, encode: want && (applied || !state.KeepsRecord(st))}
	if r.encode {
		r.rec = state.NewRecord(nil)
	}
	return r
}

// put records a put of value under key, if the recorder encodes them.
func (r *recorder) put(key, value []byte) {
	if r.encode {
		r.rec = state.AppendPut(r.rec, key, value)
	}
}

// store returns what the reduce writes into: the store, or one that
// records its puts too.
func (r *recorder) store() operators.StateStore {
	if !r.encode {
		return r.st
	}
	return recordTap{r.st, r}
}

// commit commits the store at version and returns the record, nil if none
// was asked for.
func (r *recorder) commit(version int64) ([]byte, error) {
	switch {
	case r.encode:
		return r.rec, r.st.Commit(version)
	case r.want:
		return state.CommitRecord(r.st, version)
	}
	return nil, r.st.Commit(version)
}

// recordTap passes the puts of MergeInto to its store and records them.
// It hides the store's optional Prefetch and InMemory methods, which
// MergeInto looks for: a store that keeps no record of its own is not a
// Pebble store in changelog mode, where they would do something.
type recordTap struct {
	state.Store
	rec *recorder
}

func (t recordTap) Put(key, value []byte) error {
	if err := t.Store.Put(key, value); err != nil {
		return err
	}
	t.rec.put(key, value)
	return nil
}

// EachRow calls fn with the output row of every group st holds (complete
// mode), in key order. The row and its strings are valid only during the
// call.
func (r *Reducer) EachRow(st state.Store, fn operators.Emit) error {
	row := make(operators.Row, len(r.agg.Schema()))
	return st.Scan(func(k, v []byte) error {
		if err := r.agg.DecodeRow(row, k, v); err != nil {
			return fmt.Errorf("state partition %d: %w", st.Partition(), err)
		}
		return fn(row)
	})
}

// RecordRows calls fn with the output row of each group of rec, a
// changelog record whose puts are groups' keys and states (as
// Reduced.Record and a worker's Reduce answers carry them).
// The row and its strings are valid only during the call.
func (r *Reducer) RecordRows(rec []byte, fn operators.Emit) error {
	row := make(operators.Row, len(r.agg.Schema()))
	return state.EachWrite(rec, func(key, st []byte, del bool) error {
		if del {
			return fmt.Errorf("%w: a record of groups deletes key %q", state.ErrCorrupt, key)
		}
		if err := r.agg.DecodeRow(row, key, st); err != nil {
			return fmt.Errorf("state of key %q: %w", key, err)
		}
		return fn(row)
	})
}
