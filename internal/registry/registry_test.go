package registry

import (
	"errors"
	"strings"
	"testing"
)

func sig(v int) string { return strings.Repeat("i", v) }

func TestRegisterDuplicate(t *testing.T) {
	r := New[int]("function", sig)
	if err := r.Register("f", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Lookup("f"); err != nil || v != 1 {
		t.Fatalf("Lookup(f) = %d, %v", v, err)
	}
	err := r.Register("f", 2)
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), `function "f"`) {
		t.Fatalf("second Register(f) = %v, want ErrDuplicate naming the function", err)
	}
	// The name is unusable: an ignored error must not run either entry.
	if _, err := r.Lookup("f"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Lookup of a name registered twice = %v, want ErrDuplicate", err)
	}
	if got := r.Signatures(); len(got) != 1 || got[0] != "f (registered twice)" {
		t.Fatalf("Signatures = %q", got)
	}
	if err := r.Register("", 3); err == nil {
		t.Fatal("Register of an empty name succeeded")
	}
}

func TestLookupUnknownListsNames(t *testing.T) {
	r := New[int]("job", nil)
	_ = r.Register("b", 1)
	_ = r.Register("a", 1)
	_, err := r.Lookup("c")
	if err == nil || !strings.Contains(err.Error(), `no job "c" in this binary, which has [a, b]`) {
		t.Fatalf("Lookup(c) = %v", err)
	}
	if got := strings.Join(r.Signatures(), ","); got != "a,b" {
		t.Fatalf("Signatures = %s", got)
	}
}

func TestScope(t *testing.T) {
	r := New[int]("function", sig)
	_ = r.Register("global", 1)
	for round := range 2 { // a second round is a test run again under -count=2
		s := r.Scope()
		if err := s.Register("scoped", 2); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.Register("global", 3); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("round %d: scoped Register of a global name = %v", round, err)
		}
		if v, err := r.Lookup("scoped"); err != nil || v != 2 {
			t.Fatalf("round %d: Lookup(scoped) = %d, %v", round, v, err)
		}
		s.Close()
		if _, err := r.Lookup("scoped"); err == nil {
			t.Fatalf("round %d: scoped name still registered after Close", round)
		}
		// The duplicate attempt marked the global name; it stays global.
		if got := strings.Join(r.Signatures(), ","); got != "global (registered twice)" {
			t.Fatalf("round %d: Signatures after Close = %s", round, got)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a, b := New[int]("function", sig), New[int]("function", sig)
	_ = a.Register("x", 1)
	_ = a.Register("y", 2)
	_ = b.Register("y", 2)
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("registries with different names have the same fingerprint")
	}
	_ = b.Register("x", 1)
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("the same entries registered in another order changed the fingerprint")
	}
	c := New[int]("function", sig)
	_ = c.Register("x", 1)
	_ = c.Register("y", 3) // same names, another signature
	if c.Fingerprint() == a.Fingerprint() {
		t.Fatal("another signature kept the fingerprint")
	}
}

func TestNamesInAnyCase(t *testing.T) {
	r := New[int]("function", sig)
	s := r.Scope()
	if err := s.Register("Status_Class", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Lookup("STATUS_CLASS"); err != nil || v != 1 {
		t.Fatalf("Lookup(STATUS_CLASS) = %d, %v", v, err)
	}
	if err := r.Register("status_class", 2); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Register(status_class) after Status_Class = %v, want ErrDuplicate", err)
	}
	if got := strings.Join(r.Signatures(), ","); got != "Status_Class (registered twice)" {
		t.Fatalf("Signatures = %s", got)
	}
	s.Close()
	if got := r.Signatures(); len(got) != 0 {
		t.Fatalf("Signatures after Close = %q", got)
	}
}
