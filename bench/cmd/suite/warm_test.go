package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMemAvailable(t *testing.T) {
	const meminfo = "MemTotal:       24683792 kB\nMemFree:        18190972 kB\nMemAvailable:   22731680 kB\nBuffers:           32720 kB\n"
	n, err := parseMemAvailable(strings.NewReader(meminfo))
	if err != nil || n != 22731680<<10 {
		t.Fatalf("parseMemAvailable = %d, %v; want %d", n, err, int64(22731680)<<10)
	}
	if _, err := parseMemAvailable(strings.NewReader("MemTotal: 1 kB\n")); !errors.Is(err, errNoMemAvailable) {
		t.Errorf("without the line: %v, want errNoMemAvailable", err)
	}
	if _, err := parseMemAvailable(strings.NewReader("MemAvailable: 12 MB\n")); err == nil {
		t.Error("MemAvailable not in kB: no error")
	}
}

func TestWarmMemory(t *testing.T) {
	for _, n := range []int64{0, 1, 8 << 20} {
		if err := warmMemory(n); err != nil {
			t.Errorf("warmMemory(%d): %v", n, err)
		}
	}
}
