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
}

// ReduceOptions say where Reduce (Reducer's, or DedupReducer's: see
// there) puts the groups a batch changed, and what it checks before it
// writes; the zero ReduceOptions take no group (complete mode) and check
// nothing.
type ReduceOptions struct {
	// Rows, if not nil, receives each changed group's output row (update
	// mode). It is grown by the batch's groups before any row is added.
	Rows *operators.RowBuffer
	// States, if not nil, is called with each changed group's key and
	// state as the store holds them with the batch committed: the batch's
	// changelog record, one put per group, and what
	// operators.Aggregation.DecodeRow turns into the group's row. The
	// slices are valid only during the call; an error stops the reduce.
	States func(key, state []byte) error
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
	if res.Applied {
		if out.Rows == nil && out.States == nil {
			return res, nil
		}
		if err := final.EachCommitted(st, r.committed(out)); err != nil {
			return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
		}
		return res, nil
	}
	var emit operators.Emit
	if out.Rows != nil {
		emit = func(row operators.Row) error {
			out.Rows.Add(row)
			return nil
		}
	}
	var into operators.StateStore = st
	if out.States != nil {
		into = newStatesTap(st, out.States)
	}
	if err := final.MergeInto(into, emit); err != nil {
		st.Discard()
		return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
	}
	if out.BeforeCommit != nil {
		if err := out.BeforeCommit(); err != nil {
			st.Discard()
			return Reduced{}, err
		}
	}
	if err := st.Commit(batch); err != nil {
		st.Discard()
		return Reduced{}, fmt.Errorf("state partition %d: %w", st.Partition(), err)
	}
	return res, nil
}

// committed hands a committed group's key and state to out's Rows and
// States.
func (r *Reducer) committed(out ReduceOptions) func(key, state []byte) error {
	row := make(operators.Row, len(r.agg.Schema()))
	return func(key, state []byte) error {
		if out.States != nil {
			if err := out.States(key, state); err != nil {
				return err
			}
		}
		if out.Rows != nil {
			if err := r.agg.DecodeRow(row, key, state); err != nil {
				return fmt.Errorf("state of key %q: %w", key, err)
			}
			out.Rows.Add(row)
		}
		return nil
	}
}

// statesTap passes the writes of MergeInto to its store and to a States
// function. It keeps the store's optional Prefetch and InMemory methods,
// which MergeInto looks for.
type statesTap struct {
	st       state.Store
	states   func(key, state []byte) error
	prefetch func(key []byte) // nil when st has none
	inMemory func() bool      // nil when st has none
}

func newStatesTap(st state.Store, states func(key, state []byte) error) *statesTap {
	t := &statesTap{st: st, states: states}
	if p, ok := st.(interface{ Prefetch(key []byte) }); ok {
		t.prefetch = p.Prefetch
	}
	if m, ok := st.(interface{ InMemory() bool }); ok {
		t.inMemory = m.InMemory
	}
	return t
}

func (t *statesTap) Get(key []byte) ([]byte, bool, error) { return t.st.Get(key) }

func (t *statesTap) Put(key, value []byte) error {
	if err := t.st.Put(key, value); err != nil {
		return err
	}
	return t.states(key, value)
}

// Prefetch passes on to the store's Prefetch, if it has one.
func (t *statesTap) Prefetch(key []byte) {
	if t.prefetch != nil {
		t.prefetch(key)
	}
}

// InMemory reports the store's InMemory, false if it has none.
func (t *statesTap) InMemory() bool { return t.inMemory != nil && t.inMemory() }

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
// ReduceOptions.States and a worker's Reduce and Rows answers carry them).
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
