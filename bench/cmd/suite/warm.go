package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// warmMemory touches n bytes of fresh anonymous memory, a page at a time,
// and gives them back, so that the run started next finds that much free
// memory the machine has just used. The suite does it right before every
// timed run, so that each run starts alike whatever ran before it.
//
// It matters on virtual machines whose host takes back the memory a guest
// frees (virtio-balloon free page reporting): there a process's first touch
// of a page the host took back costs about 10 us (a fault in the host too),
// against 1-2 us for one freed a moment ago. Without the step a run's speed
// would depend on how much memory the run before it had just freed: local
// gostream after a gostream-cluster round would find three workers' freed
// heaps, the cluster after a local round would fault in most of its own.
//
// n is capped at half of MemAvailable (/proc/meminfo), so that the step
// never pushes the page cache or the brokers out; 0 does nothing.
func warmMemory(n int64) error {
	if n <= 0 {
		return nil
	}
	if avail, err := memAvailable(); err == nil {
		n = min(n, avail/2)
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("warm memory: map %d bytes: %w (lower -warm-memory, or 0 to skip the step)", n, err)
	}
	page := os.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
	return syscall.Munmap(b)
}

var errNoMemAvailable = errors.New("no MemAvailable line")

// memAvailable is the machine's MemAvailable in bytes.
func memAvailable() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseMemAvailable(f)
}

// parseMemAvailable reads MemAvailable, in bytes, from /proc/meminfo's text.
func parseMemAvailable(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:"))
		if !ok {
			continue
		}
		kb, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if !ok {
			return 0, fmt.Errorf("meminfo: MemAvailable %q is not in kB", rest)
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(kb)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: MemAvailable: %w", err)
		}
		return n << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoMemAvailable
}
