package state

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// NewMemory returns a Provider that keeps state in memory, for tests. It has
// the same semantics as a Pebble provider, with DefaultOptions().RetainVersions,
// except durability: the state lives as long as the Provider, so a partition
// closed and opened again shows its committed state, but Close loses it all.
func NewMemory() Provider {
	p := &memProvider{retain: DefaultOptions().RetainVersions}
	p.mu.parts = make(map[int]*memPartition)
	return p
}

type memProvider struct {
	retain int
	mu     struct {
		sync.Mutex
		parts  map[int]*memPartition
		closed bool
	}
}

// memPartition is the committed state of one partition; it outlives the
// stores opened on it.
type memPartition struct {
	data map[string][]byte
	undo map[int64][]memUndo // by version
	hist history
	open *memStore
}

// memUndo is the value key had before a commit.
type memUndo struct {
	key     string
	prev    []byte
	existed bool
}

// memWrite is a staged Put (del unset) or Delete.
type memWrite struct {
	key   string
	value []byte
	del   bool
}

func (p *memProvider) Open(partition int) (Store, error) {
	if err := checkPartition(partition); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, fmt.Errorf("%w: memory provider; open a new one", ErrClosed)
	}
	part := p.mu.parts[partition]
	if part == nil {
		part = &memPartition{data: make(map[string][]byte), undo: make(map[int64][]memUndo), hist: newHistory()}
		p.mu.parts[partition] = part
	}
	if part.open != nil {
		return nil, fmt.Errorf("%w: partition %d of the memory provider; close its store first", ErrPartitionOpen, partition)
	}
	part.open = &memStore{provider: p, partition: partition, part: part}
	return part.open, nil
}

// Sync does nothing: the memory provider's commits last as long as it does.
func (p *memProvider) Sync() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return fmt.Errorf("%w: memory provider; open a new one", ErrClosed)
	}
	return nil
}

func (p *memProvider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return fmt.Errorf("%w: memory provider closed twice", ErrClosed)
	}
	p.mu.closed = true
	for _, part := range p.mu.parts {
		if part.open != nil {
			part.open.closeLocked()
		}
	}
	p.mu.parts = nil
	return nil
}

type memStore struct {
	provider  *memProvider
	partition int
	part      *memPartition // nil once closed
	staged    []memWrite
}

func (s *memStore) usable() error {
	if s.part == nil {
		return fmt.Errorf("%w: store of partition %d; open the partition again", ErrClosed, s.partition)
	}
	return nil
}

func (s *memStore) Partition() int { return s.partition }

func (s *memStore) Version() int64 {
	if s.part == nil {
		return NoVersion
	}
	return s.part.hist.version
}

func (s *memStore) Get(key []byte) ([]byte, bool, error) {
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	v, ok := s.part.data[string(key)]
	return v, ok, nil
}

func (s *memStore) Put(key, value []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.staged = append(s.staged, memWrite{key: string(key), value: bytes.Clone(value)})
	return nil
}

func (s *memStore) Delete(key []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.staged = append(s.staged, memWrite{key: string(key), del: true})
	return nil
}

func (s *memStore) Commit(version int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	part := s.part
	if err := part.hist.checkCommit(s.partition, version); err != nil {
		return err
	}
	undo := make([]memUndo, 0, len(s.staged))
	for _, w := range s.staged {
		prev, existed := part.data[w.key]
		undo = append(undo, memUndo{key: w.key, prev: prev, existed: existed})
		if w.del {
			delete(part.data, w.key)
		} else {
			part.data[w.key] = w.value
		}
	}
	part.undo[version] = undo
	s.staged = s.staged[:0]
	if _, pruneTo, prune := part.hist.commit(version, int64(len(part.data)), s.provider.retain); prune {
		for v := range part.undo {
			if v <= pruneTo {
				delete(part.undo, v)
			}
		}
	}
	return nil
}

func (s *memStore) Discard() { s.staged = s.staged[:0] }

func (s *memStore) Rollback(v int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.Discard()
	part := s.part
	undoFrom, undo, err := part.hist.rollback(s.partition, v)
	if err != nil || !undo {
		return err
	}
	versions := make([]int64, 0, len(part.undo))
	for u := range part.undo {
		if u >= undoFrom {
			versions = append(versions, u)
		}
	}
	slices.Sort(versions)
	for _, u := range slices.Backward(versions) {
		for _, r := range part.undo[u] {
			if r.existed {
				part.data[r.key] = r.prev
			} else {
				delete(part.data, r.key)
			}
		}
		delete(part.undo, u)
	}
	return nil
}

func (s *memStore) Scan(fn func(key, value []byte) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	keys := make([]string, 0, len(s.part.data))
	for k := range s.part.data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn([]byte(k), s.part.data[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Len() int64 {
	if s.part == nil {
		return 0
	}
	return s.part.hist.keys()
}

func (s *memStore) Close() error {
	s.provider.mu.Lock()
	defer s.provider.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	s.closeLocked()
	return nil
}

// closeLocked releases the partition; the provider's mutex is held.
func (s *memStore) closeLocked() {
	s.staged = nil
	s.part.open = nil
	s.part = nil
}

// checkPartition reports a partition number no provider accepts.
func checkPartition(partition int) error {
	if partition < 0 || partition > MaxPartition {
		return fmt.Errorf("%w: %d is outside [0, %d]", ErrPartition, partition, MaxPartition)
	}
	return nil
}
