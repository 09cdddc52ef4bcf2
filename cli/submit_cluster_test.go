package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/kafkasrc"
)

// startWorker starts a one-member cluster in this process whose leader
// drives jobs with d, and returns its --master.
func startWorker(t *testing.T, d cluster.Driver) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := cluster.DefaultConfig()
	cfg.Name, cfg.Listen, cfg.DataDir, cfg.Peers, cfg.Driver = "s1", addr, t.TempDir(), []cluster.Peer{{Name: "s1", Addr: addr}}, d
	n, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return cluster.MasterScheme + addr
}

// fakeDriver reports two batches, each with a console table, then ends as
// its job says: "finish" returns nil, "fail" an error, anything else runs
// until stopped.
func fakeDriver(ctx context.Context, run *cluster.JobRun) error {
	for b := range int64(2) {
		p := engine.Progress{BatchID: b, NumInputRows: 3, DurationMs: map[string]int64{"triggerExecution": 5},
			Sources: []engine.SourceProgress{{EndOffset: kafkasrc.Offsets{"logs": {0: 3 * (b + 1)}}}}}
		run.Report(p, fmt.Appendf(nil, "-------------------------------------------\nBatch: %d\n-------------------------------------------\n", b))
	}
	switch run.Job.Options["trigger"] {
	case "available-now":
		return nil
	case "once":
		return errors.New("boom")
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestSubmitToCluster: submit --master gostream:// registers the job and
// follows it: the console output and a progress line per batch, then it
// returns when the job finished, and fails when the job failed.
func TestSubmitToCluster(t *testing.T) {
	master := startWorker(t, cluster.DriverFunc(fakeDriver))
	out, errOut, err := runCLI(t, "", "submit", "wordcount", "--master", master, "--brokers", "127.0.0.1:9", "--trigger", "available-now")
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Batch: 0\n", "Batch: 1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	for _, want := range []string{"submitted to " + master, "batch 0: 3 input rows", `batch 1: 3 input rows in 5ms`, `end offsets {"logs":{"0":6}}`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}

	_, errOut, err = runCLI(t, "", "submit", "wordcount-words", "--master", master, "--brokers", "127.0.0.1:9", "--trigger", "once")
	if err == nil || !strings.Contains(err.Error(), "job wordcount-words failed: driver on s1: boom") {
		t.Errorf("submit of a failing job = %v; want its failure\nstderr:\n%s", err, errOut)
	}

	// The jobs commands see both.
	out, _, err = runCLI(t, "", "jobs", "list", "--master", master)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jobs list:\n%s", out)
	for _, want := range []string{"wordcount  ", "finished", "wordcount-words", "failed: driver on s1: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("jobs list lacks %q", want)
		}
	}
	out, _, err = runCLI(t, "", "jobs", "status", "wordcount", "--master", master, "--last", "1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jobs status:\n%s", out)
	if !strings.Contains(out, "job wordcount: finished") || !strings.Contains(out, "last 1 progress reports:\nbatch 1: 3 input rows") {
		t.Errorf("jobs status lacks the state or the last report")
	}
}

// TestSubmitToClusterDetach: Ctrl-C while submit follows a job detaches,
// says how to stop the job, and the job runs on; jobs stop stops it.
func TestSubmitToClusterDetach(t *testing.T) {
	master := startWorker(t, cluster.DriverFunc(fakeDriver))
	cmd := newRootCmd("gostream")
	var out, errOut logbuf.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"submit", "wordcount", "--master", master, "--brokers", "127.0.0.1:9", "--sink", "jsonl:-"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errOut.String(), "batch 1:") || !strings.Contains(errOut.String(), "driven by s1") {
		if time.Now().After(deadline) {
			t.Fatalf("no report of batch 1 after 20 s; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // Ctrl-C
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := "detached from job wordcount, which runs on; stop it with: gostream jobs stop wordcount --master " + master; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
	}
	list, _, err := runCLI(t, "", "jobs", "list", "--master", master)
	if err != nil || !strings.Contains(list, "running") || !strings.Contains(list, "s1 (term") {
		t.Fatalf("jobs list after detaching = %v:\n%s\nwant the job running, driven by s1", err, list)
	}
	stopped, _, err := runCLI(t, "", "jobs", "stop", "wordcount", "--master", master)
	if err != nil || !strings.Contains(stopped, "job wordcount: stopped") {
		t.Fatalf("jobs stop = %v: %s", err, stopped)
	}
	if _, _, err := runCLI(t, "", "jobs", "stop", "nope", "--master", master); err == nil || !strings.Contains(err.Error(), `unknown job "nope"`) {
		t.Errorf("jobs stop nope = %v; want unknown job", err)
	}
}

// TestSubmitToClusterRefuses: flags that mean something only in this
// process, and a bad --master, are refused before anything is sent.
func TestSubmitToClusterRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--master", "gostream://127.0.0.1:1"}, "needs --brokers"},
		{[]string{"--master", "gostream://127.0.0.1:1", "--brokers", "b:9092", "--checkpoint", "/tmp/x"}, "--checkpoint cannot be used"},
		{[]string{"--master", "gostream://127.0.0.1:1", "--brokers", "b:9092", "--input", "f"}, "--input cannot be used"},
		{[]string{"--master", "yarn"}, `--master "yarn": use local[*]`},
		{[]string{"--master", "gostream://"}, "names no worker"},
	} {
		_, _, err := runCLI(t, "", append([]string{"submit", "wordcount"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("submit %v = %v; want %q", tc.args, err, tc.want)
		}
	}
}
