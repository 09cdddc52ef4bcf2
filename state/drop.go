package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
)

// partitionBounds returns the key range [lower, upper) holding every key
// of partition: its 4-byte prefix up to the next partition's.
func partitionBounds(partition int) (lower, upper []byte) {
	return binary.BigEndian.AppendUint32(nil, uint32(partition)), binary.BigEndian.AppendUint32(nil, uint32(partition)+1)
}

func (p *pebbleProvider) Partitions() ([]int, error) {
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%w: state directory %s; open it again", ErrClosed, p.dir)
	}
	// The marker and label sort after every partition's keys.
	it, err := p.db.NewIter(&pebble.IterOptions{UpperBound: markerKey[:4]})
	if err != nil {
		return nil, fmt.Errorf("state: listing the partitions of %s: %w", p.dir, err)
	}
	var out []int
	for ok := it.First(); ok; {
		partition := binary.BigEndian.Uint32(it.Key())
		meta := appendPrefix(nil, partition, tagMeta)
		if it.SeekGE(meta) && string(it.Key()) == string(meta) {
			h, err := decodeMeta(it.Value())
			if err != nil {
				return nil, errors.Join(fmt.Errorf("%w: %s, partition %d: %v", ErrCorrupt, p.dir, partition, err), it.Close())
			}
			if h.version != NoVersion {
				out = append(out, int(partition))
			}
		}
		_, next := partitionBounds(int(partition))
		ok = it.SeekGE(next)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("state: listing the partitions of %s: %w", p.dir, err)
	}
	return out, nil
}

func (p *pebbleProvider) Drop(partition int) error {
	if err := checkPartition(partition); err != nil {
		return err
	}
	lower, upper := partitionBounds(partition)
	p.mu.Lock()
	switch {
	case p.mu.closed:
		p.mu.Unlock()
		return fmt.Errorf("%w: state directory %s; open it again", ErrClosed, p.dir)
	case p.mu.stores[partition] != nil:
		p.mu.Unlock()
		return fmt.Errorf("%w: partition %d in %s; close its store before dropping it", ErrPartitionOpen, partition, p.dir)
	}
	// One range deletion, synced: Pebble applies a batch whole or not at
	// all, after a crash too. The lock keeps the partition from being
	// opened meanwhile.
	err := p.writes.write(func() error { return p.db.DeleteRange(lower, upper, pebble.Sync) })
	p.mu.Unlock()
	if errors.Is(err, ErrNoSpace) {
		return err
	} else if err != nil {
		return fmt.Errorf("state: dropping partition %d in %s: %w", partition, p.dir, err)
	}
	// The deletion is durable; compacting its range gives the disk space
	// back now rather than whenever Pebble's own compactions reach it.
	if err := p.db.Compact(lower, upper, false); err != nil {
		return fmt.Errorf("state: partition %d in %s is dropped, but compacting its range failed: %w", partition, p.dir, err)
	}
	return nil
}

func (p *memProvider) Partitions() ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, fmt.Errorf("%w: memory provider; open a new one", ErrClosed)
	}
	var out []int
	for partition, part := range p.mu.parts {
		if part.hist.version != NoVersion {
			out = append(out, partition)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (p *memProvider) Drop(partition int) error {
	if err := checkPartition(partition); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.mu.closed:
		return fmt.Errorf("%w: memory provider; open a new one", ErrClosed)
	case p.mu.parts[partition] != nil && p.mu.parts[partition].open != nil:
		return fmt.Errorf("%w: partition %d of the memory provider; close its store before dropping it", ErrPartitionOpen, partition)
	}
	delete(p.mu.parts, partition)
	return nil
}
