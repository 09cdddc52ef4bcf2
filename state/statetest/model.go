package statetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/state"
)

// retain is the default state.Options.RetainVersions the suite expects.
const retain = 2

// model is the reference a store is checked against: plain maps, one per
// restore point.
type model struct {
	retain    int
	version   int64
	committed map[string]string
	staged    map[string]*string // nil: Delete
	points    []modelPoint       // oldest first; the last is committed
}

type modelPoint struct {
	version int64
	data    map[string]string
}

func newModel(retain int) *model {
	empty := map[string]string{}
	return &model{retain: retain, version: state.NoVersion, committed: empty, staged: map[string]*string{},
		points: []modelPoint{{state.NoVersion, empty}}}
}

func (m *model) commit(version int64) {
	next := maps.Clone(m.committed)
	for k, v := range m.staged {
		if v == nil {
			delete(next, k)
		} else {
			next[k] = *v
		}
	}
	m.version, m.committed, m.staged = version, next, map[string]*string{}
	m.points = append(m.points, modelPoint{version, next})
	if len(m.points) > m.retain+1 {
		m.points = m.points[len(m.points)-(m.retain+1):]
	}
}

// rollback returns the error the store must return.
func (m *model) rollback(v int64) error {
	m.staged = map[string]*string{}
	if v > m.version {
		return state.ErrVersion
	}
	if v < m.points[0].version {
		return state.ErrVersionGone
	}
	i := len(m.points) - 1
	for m.points[i].version > v {
		i--
	}
	m.points = m.points[:i+1]
	m.version, m.committed = v, m.points[i].data
	return nil
}

// testModel runs random operations against a store and the model and
// compares them after every step. Each case logs its seed (GOSTREAM_SEED
// replays it). With reopen, it also closes and reopens
// the provider now and then.
func testModel(t *testing.T, st Storage, reopen bool) {
	cases := []struct {
		name  string
		keys  int
		steps int
	}{
		{"few keys", 4, 600},
		{"some keys", 40, 1500},
		{"many keys", 400, 1500},
	}
	p, err := st.Open()
	must(t, err)
	defer func() { must(t, p.Close()) }()
	for _, tc := range cases { // each on a partition of its own
		t.Run(tc.name, func(t *testing.T) {
			seed := testseed.Seed(t)
			r := rand.New(rand.NewPCG(seed, 0))
			keys := make([]string, tc.keys)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%03d", i)
			}
			keys[0] = "" // the empty key is a valid group (Spark counts empty words)
			s := openStore(t, p, tc.keys)
			defer func() { must(t, s.Close()) }()
			m := newModel(st.retain)
			for step := range tc.steps {
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("seed %d step %d: %s", seed, step, fmt.Sprintf(format, args...))
				}
				k := keys[r.IntN(len(keys))]
				switch op := r.IntN(100); {
				case op < 30:
					v, found, err := s.Get([]byte(k))
					w, ok := m.committed[k]
					if err != nil || found != ok || string(v) != w {
						fail("Get(%q) = %q, %v, %v; want %q, %v", k, v, found, err, w, ok)
					}
				case op < 55:
					if _, staged := m.staged[k]; staged {
						continue
					}
					v := fmt.Sprint(step)
					must(t, s.Put([]byte(k), []byte(v)))
					m.staged[k] = &v
				case op < 65:
					if _, staged := m.staged[k]; staged {
						continue
					}
					must(t, s.Delete([]byte(k)))
					m.staged[k] = nil
				case op < 80:
					v := m.version + 1 + int64(r.IntN(3)) - int64(r.IntN(2))
					err := s.Commit(v)
					if v <= m.version {
						if !errors.Is(err, state.ErrVersion) {
							fail("Commit(%d) at version %d: %v, want ErrVersion", v, m.version, err)
						}
						continue
					}
					if err != nil {
						fail("Commit(%d): %v", v, err)
					}
					m.commit(v)
				case op < 83:
					s.Discard()
					m.staged = map[string]*string{}
				case op < 93:
					v := m.version - int64(r.IntN(4))
					if v < state.NoVersion {
						v = state.NoVersion
					}
					if err, want := s.Rollback(v), m.rollback(v); !errors.Is(err, want) {
						fail("Rollback(%d): %v, want %v", v, err, want)
					}
				case op < 97 || !reopen:
					must(t, s.Close())
					s = openStore(t, p, tc.keys)
					m.staged = map[string]*string{}
				default:
					must(t, p.Close())
					p, err = st.Open()
					must(t, err)
					s = openStore(t, p, tc.keys)
					m.staged = map[string]*string{}
				}
				if step%50 == 0 {
					expect(t, s, m.version, m.committed)
				}
			}
			expect(t, s, m.version, m.committed)
		})
	}
}
