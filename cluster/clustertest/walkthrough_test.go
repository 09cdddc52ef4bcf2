package clustertest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
)

// The README's cluster walkthrough is the fenced block after this marker.
const walkthroughMarker = "<!-- walkthrough: run by TestREADMEWalkthrough -->"

// readmeWalkthrough returns the lines of the README's cluster walkthrough.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), walkthroughMarker)
	if !ok {
		t.Fatalf("README.md has no %q", walkthroughMarker)
	}
	_, after, ok = strings.Cut(after, "```\n")
	block, _, ok2 := strings.Cut(after, "```\n")
	if !ok || !ok2 {
		t.Fatalf("README.md: no fenced block after %q", walkthroughMarker)
	}
	return block
}

// freeLoopbackPort returns a port free on 127.0.1.1, 127.0.1.2 and
// 127.0.1.3, or fails when those loopback aliases do not bind.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.1.1:0")
		if err != nil {
			t.Skipf("the walkthrough's worker addresses 127.0.1.1-3 do not bind here: %v", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		free := true
		for _, host := range []string{"127.0.1.2", "127.0.1.3"} {
			l, err := net.Listen("tcp", net.JoinHostPort(host, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		ln.Close()
		if free {
			return port
		}
	}
	t.Fatal("no port free on all of 127.0.1.1-3")
	return ""
}

// TestREADMEWalkthrough runs the README's cluster walkthrough as written
// (with bash -e, the gostream binary on PATH, in the repository's root):
// the in-memory broker, three workers on 127.0.1.1-3, the sample log
// produced, the job submitted with the jsonl sink, jobs list, cluster status
// and the cleanup. Only its addresses and data directory are replaced by
// free ports and a temporary directory, so it runs beside anything else. The
// counts submit prints must be the sample log's words, counted here.
func TestREADMEWalkthrough(t *testing.T) {
	script := readmeWalkthrough(t)
	port := freeLoopbackPort(t)
	script = strings.NewReplacer(
		"127.0.0.1:9092", clustertest.FreeAddr(t),
		":7077", ":"+port,
		"/tmp/gs", filepath.Join(t.TempDir(), "gs"),
	).Replace(script)
	bin := clustertest.Binary(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// The walkthrough's background processes are in bash's process group;
	// whatever is left of it when bash ends or times out is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	t.Logf("the walkthrough:\n%s\nits standard error:\n%s", script, stderr.String())
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\nits output:\n%s", err, stdout.String())
	}

	sample, err := os.ReadFile("../../examples/wordcount/sample.log")
	if err != nil {
		t.Fatal(err)
	}
	truth := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSuffix(string(sample), "\n"), "\n") {
		for _, w := range strings.Split(line, " ") {
			truth[w]++
		}
	}
	last, counts := lastCounts(t, stdout.String())
	if last < 0 {
		t.Fatalf("submit printed no rows:\n%s", stdout.String())
	}
	wantCounts(t, fmt.Sprintf("the walkthrough's submit (batch %d)", last), counts, truth)
	for _, want := range []string{"wordcount  finished", "leader: s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the walkthrough's output has no %q:\n%s", want, stdout.String())
		}
	}
}
