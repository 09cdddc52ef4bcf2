package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestParseRangeLow(t *testing.T) {
	for in, want := range map[string]int{"32768\t60999\n": 32768, "1024 65535": 1024, "": 0, "x 1": 0, "1": 0} {
		if got := parseRangeLow(in); got != want {
			t.Errorf("parseRangeLow(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestListenBelowEphemeral checks that Listen's ports lie below the
// ephemeral range (where the machine has one that leaves room) and are
// distinct while held.
func TestListenBelowEphemeral(t *testing.T) {
	high := ephemeralLow()
	seen := map[int]bool{}
	for range 20 {
		ln, err := Listen("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		port, _ := strconv.Atoi(p)
		if high-lowest >= 1000 && (port < lowest || port >= high) {
			t.Errorf("port %d outside [%d, %d)", port, lowest, high)
		}
		if seen[port] {
			t.Errorf("port %d picked twice while held", port)
		}
		seen[port] = true
	}
}
