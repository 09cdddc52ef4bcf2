// Package testseed gives the random choices of a test their seed: a new one
// on every run, logged so that a failure can be replayed, or the one the
// GOSTREAM_SEED environment variable names. It is for tests only.
package testseed

import (
	crand "crypto/rand"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Env is the environment variable that replays a seed:
//
//	GOSTREAM_SEED=1234 go test -run '^TestX$' ./pkg
const Env = "GOSTREAM_SEED"

// Seed returns the seed of t's random choices: the value of GOSTREAM_SEED
// when it is set, else a fresh random one. It logs the seed and the command
// that replays it (go test shows the line when t fails, or under -v). A
// GOSTREAM_SEED that is not an unsigned integer fails t. Seed must be
// called from the goroutine running t, as t.Fatal must.
func Seed(t testing.TB) uint64 {
	t.Helper()
	var seed uint64
	if s, ok := os.LookupEnv(Env); ok {
		var err error
		if seed, err = strconv.ParseUint(strings.TrimSpace(s), 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer, the seed a test logged", Env, s)
		}
	} else {
		var b [8]byte
		_, _ = crand.Read(b[:]) // never fails (crypto/rand's contract)
		seed = binary.LittleEndian.Uint64(b[:])
	}
	t.Logf("random seed %d; replay: %s=%d go test -run '%s'", seed, Env, seed, runPattern(t.Name()))
	return seed
}

// Rand returns a generator seeded with Seed(t).
func Rand(t testing.TB) *rand.Rand {
	t.Helper()
	return rand.New(rand.NewPCG(Seed(t), 0))
}

// runPattern is the -run pattern that selects the test named name alone:
// go test's -run matches each slash-separated element of a test's name,
// in which spaces have become underscores.
func runPattern(name string) string {
	parts := strings.Split(strings.ReplaceAll(name, " ", "_"), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
