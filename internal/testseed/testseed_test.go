package testseed

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recorder is a testing.TB that records what Seed reports.
type recorder struct {
	testing.TB
	logs, fatals []string
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return "TestX/a b" }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func TestSeedReplaysEnv(t *testing.T) {
	t.Setenv(Env, "1234")
	r := &recorder{TB: t}
	if got := Seed(r); got != 1234 {
		t.Fatalf("Seed = %d with %s=1234", got, Env)
	}
	want := "random seed 1234; replay: GOSTREAM_SEED=1234 go test -run '^TestX$/^a_b$'"
	if len(r.logs) != 1 || r.logs[0] != want {
		t.Fatalf("logged %q, want %q", r.logs, want)
	}
	if a, b := Rand(t).Uint64(), Rand(t).Uint64(); a != b {
		t.Fatalf("two generators from %s=1234 differ: %d, %d", Env, a, b)
	}
}

func TestSeedFresh(t *testing.T) {
	t.Setenv(Env, "") // restored after the test
	os.Unsetenv(Env)
	seen := map[uint64]bool{}
	for range 4 {
		r := &recorder{TB: t}
		seed := Seed(r)
		seen[seed] = true
		if len(r.logs) != 1 || !strings.HasPrefix(r.logs[0], fmt.Sprintf("random seed %d;", seed)) {
			t.Fatalf("seed %d logged as %q", seed, r.logs)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("four fresh seeds: %v, want different ones", seen)
	}
}

func TestSeedBadEnv(t *testing.T) {
	t.Setenv(Env, "-3")
	r := &recorder{TB: t}
	Seed(r)
	if len(r.fatals) != 1 || !strings.Contains(r.fatals[0], `GOSTREAM_SEED="-3"`) {
		t.Fatalf("reported %q, want a failure naming GOSTREAM_SEED", r.fatals)
	}
}

func TestRunPattern(t *testing.T) {
	for name, want := range map[string]string{
		"TestX":          `^TestX$`,
		"TestX/a_b/c(d)": `^TestX$/^a_b$/^c\(d\)$`,
		"TestX/a b":      `^TestX$/^a_b$`,
	} {
		if got := runPattern(name); got != want {
			t.Errorf("runPattern(%q) = %q, want %q", name, got, want)
		}
	}
}
