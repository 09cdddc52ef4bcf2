package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWorkerProfiles checks that worker --cpuprofile profiles the worker
// until it stops, that --memprofile writes a heap profile when it stops,
// and that a profile it cannot create fails the worker naming the flag.
func TestWorkerProfiles(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	path, mem := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "mem.pprof")
	args := []string{"worker", "--name", "s1", "--listen", addr, "--data", filepath.Join(dir, "data"), "--peers", "s1=" + addr}

	_, _, err = runCLI(t, "", append(args, "--cpuprofile", filepath.Join(dir, "missing", "cpu.pprof"))...)
	if err == nil || !strings.Contains(err.Error(), "--cpuprofile") || strings.Contains(err.Error(), "unknown flag") {
		t.Fatalf("worker with an uncreatable --cpuprofile: err = %v, want one naming --cpuprofile", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCmd("gostream")
	cmd.SetArgs(append(args, "--cpuprofile", path, "--memprofile", mem))
	cmd.SetOut(new(strings.Builder))
	cmd.SetErr(new(strings.Builder))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("worker --cpuprofile created no profile in 10s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	for _, p := range []string{path, mem} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // a profile is gzipped protobuf
			t.Fatalf("the worker's profile %s is %d bytes, not gzipped: %q", p, len(b), b[:min(len(b), 16)])
		}
	}
}

// TestWorkerJoinErrors checks worker --join's bad input: with --peers, and
// naming no running member; and cluster remove without a name.
func TestWorkerJoinErrors(t *testing.T) {
	addrs := make([]string, 2)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	dir := filepath.Join(t.TempDir(), "data")
	base := []string{"worker", "--name", "s4", "--listen", addrs[0], "--data", dir}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{append(base, "--join", addrs[1], "--peers", "s4="+addrs[0]), []string{"--peers and --join together"}},
		{append(base, "--join", addrs[1]), []string{"no member reachable at " + addrs[1], "check --join"}},
		{append(base, "--join", "nowhere"), []string{"--join \"nowhere\""}},
		{[]string{"cluster", "remove", "--master", "gostream://" + addrs[1]}, []string{"accepts 1 arg"}},
	} {
		_, _, err := runCLI(t, "", c.args...)
		for _, want := range c.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("gostream %s: %v, want an error saying %q", strings.Join(c.args, " "), err, want)
			}
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused worker's data directory %s: %v, want none", dir, err)
	}
}

// TestWorkerCoresErrors checks worker --cores's bad values: each is
// refused naming the flag and what it takes, before the worker starts.
func TestWorkerCoresErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, v := range []string{"0", "-2", "x", "1.5", "4097", ""} {
		args := []string{"worker", "--name", "s1", "--listen", "127.0.0.1:1", "--data", dir, "--peers", "s1=127.0.0.1:1", "--cores", v}
		_, _, err := runCLI(t, "", args...)
		if want := fmt.Sprintf("--cores %q: use a number of cores from 1 to 4096, or auto", v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("gostream %s: %v, want an error saying %q", strings.Join(args, " "), err, want)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused worker's data directory %s: %v, want none", dir, err)
	}
}
