// Package registry holds named entries a binary registers once and plans
// refer to by name: gostream's jobs and Go functions. A Registry is safe for
// concurrent use. Its Fingerprint lets two binaries check that they hold the
// same names with the same signatures, the way a cluster checks its workers
// at submit time.
package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// ErrDuplicate is returned for a name registered twice.
var ErrDuplicate = errors.New("registry: name registered twice")

// Registry maps names to entries of type T. Names match in any case, as
// Spark's function names do: "F" is "f".
//
// Register refuses a name already registered: it returns an error wrapping
// ErrDuplicate, and the name becomes unusable (Lookup reports the conflict),
// so that a binary that registers two different things under one name, and
// ignores Register's error in an init func, fails when the name is used
// instead of running whichever came first.
type Registry[T any] struct {
	kind string         // "job", "function": for messages
	sig  func(T) string // an entry's signature, for Fingerprint

	mu struct {
		sync.RWMutex
		m    map[string]*entry[T] // by lower-case name
		next uint64               // id of the next entry
	}
}

type entry[T any] struct {
	name     string // as registered
	v        T
	id       uint64
	conflict bool // registered twice
}

// New returns an empty registry of kind (a noun for messages, such as
// "function"). sig is an entry's signature for Fingerprint, such as
// "func(string) bigint"; nil means entries are compared by name alone.
func New[T any](kind string, sig func(T) string) *Registry[T] {
	r := &Registry[T]{kind: kind, sig: sig}
	r.mu.m = map[string]*entry[T]{}
	return r
}

// Register adds v under name, for the life of the process.
func (r *Registry[T]) Register(name string, v T) error {
	_, err := r.add(name, v)
	return err
}

func (r *Registry[T]) add(name string, v T) (uint64, error) {
	if name == "" {
		return 0, fmt.Errorf("a %s needs a name", r.kind)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := strings.ToLower(name)
	if e, dup := r.mu.m[key]; dup {
		e.conflict = true
		return 0, fmt.Errorf("%w: %s %q (register each name once)", ErrDuplicate, r.kind, name)
	}
	r.mu.next++
	r.mu.m[key] = &entry[T]{name: name, v: v, id: r.mu.next}
	return r.mu.next, nil
}

// Lookup returns the entry registered under name. It fails for a name never
// registered, with a message listing the known names, and for a name
// registered twice.
func (r *Registry[T]) Lookup(name string) (T, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.mu.m[strings.ToLower(name)]
	var zero T
	switch {
	case !ok:
		return zero, fmt.Errorf("no %s %q in this binary, which has [%s]", r.kind, name, strings.Join(r.namesLocked(), ", "))
	case e.conflict:
		return zero, fmt.Errorf("%w: %s %q, twice in this binary (register each name once)", ErrDuplicate, r.kind, name)
	}
	return e.v, nil
}

func (r *Registry[T]) namesLocked() []string {
	names := make([]string, 0, len(r.mu.m))
	for _, e := range r.sortedLocked() {
		names = append(names, e.name)
	}
	return names
}

// sortedLocked returns the entries sorted by name.
func (r *Registry[T]) sortedLocked() []*entry[T] {
	es := make([]*entry[T], 0, len(r.mu.m))
	for _, e := range r.mu.m {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es
}

// All returns the entries in name order (a name registered twice, once).
func (r *Registry[T]) All() []T {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]T, 0, len(r.mu.m))
	for _, e := range r.sortedLocked() {
		out = append(out, e.v)
	}
	return out
}

// Signatures describes each entry as "name signature" (a name registered
// twice as "name (registered twice)"), sorted by name: what Fingerprint
// hashes, for saying how two registries differ.
func (r *Registry[T]) Signatures() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.mu.m))
	for _, e := range r.sortedLocked() {
		n := e.name
		switch {
		case e.conflict:
			out = append(out, n+" (registered twice)")
		case r.sig != nil:
			out = append(out, n+" "+r.sig(e.v))
		default:
			out = append(out, n)
		}
	}
	return out
}

// Fingerprint is Hash of Signatures: two registries with the same names
// and signatures have the same fingerprint, whatever the order they were
// registered in.
func (r *Registry[T]) Fingerprint() string { return Hash(r.Signatures()) }

// Hash is a hex SHA-256 of lines, each ended by a newline.
func Hash(lines []string) string {
	h := sha256.New()
	for _, s := range lines {
		h.Write([]byte(s))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Scope returns a scope whose registrations last until its Close.
func (r *Registry[T]) Scope() *Scope[T] { return &Scope[T]{r: r} }

// Scope registers entries in a Registry until Close removes them: a test
// registers through a scope it closes in t.Cleanup, so its names do not
// leak into the tests after it (or into its own next run under -count).
// Scopes registering the same name at the same time (parallel tests) get
// ErrDuplicate like any other registration. Safe for concurrent use.
type Scope[T any] struct {
	r  *Registry[T]
	mu sync.Mutex
	// ids of the entries added through the scope, by lower-case name.
	added map[string]uint64
}

// Register adds v under name until Close.
func (s *Scope[T]) Register(name string, v T) error {
	id, err := s.r.add(name, v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.added == nil {
		s.added = map[string]uint64{}
	}
	s.added[strings.ToLower(name)] = id
	return nil
}

// Close removes the entries registered through s. An entry someone else
// registered under the same name since (a duplicate) is removed with it.
func (s *Scope[T]) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	for key, id := range s.added {
		if e, ok := s.r.mu.m[key]; ok && e.id == id {
			delete(s.r.mu.m, key)
		}
	}
	s.added = nil
}
