package state

import (
	"bytes"
	"fmt"
)

// Copy stages on a store a whole copy of another store's state, so that
// the store's next Commit replaces its state with the copy: a cluster
// worker sends a state partition this way to a standby that has none of it
// or an old version. The copy arrives as records (see NewRecord) of puts
// in ascending key order, Scan's order, each staged as it comes; the
// deletion of every committed key the copy lacks is staged along the way
// and by Finish. Nothing is written before the Commit: a copy cut short is
// dropped with the store's Discard and leaves its state as it was.
//
// A Copy is used by the store's owning goroutine, like the store.
type Copy struct {
	st Store
	// old are the store's committed keys, concatenated, in ascending
	// order; ends[i] is the end of the i-th; next is the first not yet
	// passed by the copy.
	old  []byte
	ends []int
	next int
	last []byte // the copy's last key
	puts int64
}

// NewCopy starts a copy onto st, which must have no staged writes. It
// reads st's committed keys: the memory it keeps is their size.
func NewCopy(st Store) (*Copy, error) {
	c := &Copy{st: st}
	err := st.Scan(func(key, _ []byte) error {
		c.old = append(c.old, key...)
		c.ends = append(c.ends, len(c.old))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Apply stages the puts of rec, the copy's next record. A record that is
// malformed, holds a deletion, or a key not above the copy's last one is
// ErrCorrupt: the store's staged writes are then for the caller to
// Discard.
func (c *Copy) Apply(rec []byte) error {
	return EachWrite(rec, func(key, value []byte, del bool) error {
		if del {
			return fmt.Errorf("%w: a copy's record %d deletes a key", ErrCorrupt, c.puts)
		}
		if c.puts > 0 && bytes.Compare(key, c.last) <= 0 {
			return fmt.Errorf("%w: a copy's key %d is not above the one before (the copy must be in ascending key order)", ErrCorrupt, c.puts)
		}
		c.last = append(c.last[:0], key...)
		existed, err := c.deleteBelow(key, false)
		if err != nil {
			return err
		}
		c.puts++
		return c.stage(key, value, false, existed)
	})
}

// stage stages a put of value under key, or key's deletion, on the store;
// existed says whether its committed state holds key, which spares a
// Pebble store's read of it.
func (c *Copy) stage(key, value []byte, del, existed bool) error {
	if ps, ok := c.st.(*pebbleStore); ok {
		return ps.stageKnown(key, value, del, existed)
	}
	if del {
		return c.st.Delete(key)
	}
	return c.st.Put(key, value)
}

// Finish stages the deletion of the store's keys the copy lacks and
// returns the number of keys in the copy. Call it after the last Apply,
// then Commit the store.
func (c *Copy) Finish() (keys int64, err error) {
	_, err = c.deleteBelow(nil, true)
	return c.puts, err
}

// deleteBelow stages the deletion of the old keys below key, or all the
// rest with all, and passes key itself when it is an old key (its put
// replaces it): existed reports that.
func (c *Copy) deleteBelow(key []byte, all bool) (existed bool, err error) {
	for ; c.next < len(c.ends); c.next++ {
		start := 0
		if c.next > 0 {
			start = c.ends[c.next-1]
		}
		old := c.old[start:c.ends[c.next]]
		cmp := -1
		if !all {
			cmp = bytes.Compare(old, key)
		}
		switch {
		case cmp > 0:
			return false, nil
		case cmp == 0:
			c.next++
			return true, nil
		}
		if err := c.stage(old, nil, true, true); err != nil {
			return false, err
		}
	}
	return false, nil
}
