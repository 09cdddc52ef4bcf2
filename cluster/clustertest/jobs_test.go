package clustertest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/proto/clusterpb"
)

// wantOut fails t unless out contains each of wants.
func wantOut(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

// TestJobsCLI: against three worker processes, `gostream submit --master`
// registers the job and follows it (Ctrl-C detaches, saying how to stop
// it); `jobs list` and `jobs status` show it running, driven by the
// leader; a job the CLI does not know, another plan under a running job's
// name, a stop of an unknown job and an unreachable master are refused
// with clear errors; `jobs stop` stops it.
func TestJobsCLI(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	m := c.Master()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	submit := c.Command(ctx, "submit", "wordcount", "--master", m, "--brokers", "127.0.0.1:9", "--trigger", "1s")
	var out logbuf.Buffer
	submit.Stdout, submit.Stderr = &out, &out
	if err := submit.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "is driven by"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("submit does not follow the job after 30 s:\n%s", out.String())
		}
	}
	if err := submit.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := submit.Wait(); err != nil {
		t.Fatalf("submit after Ctrl-C: %v\n%s", err, out.String())
	}
	t.Logf("gostream submit:\n%s", out.String())
	wantOut(t, "submit's output", out.String(), "job wordcount submitted to "+m,
		"detached from job wordcount, which runs on; stop it with: gostream jobs stop wordcount --master "+m)

	leader := c.WaitLeader(t).Leader
	list, err := run(t, c, nil, "jobs", "list", "--master", m)
	if err != nil {
		t.Fatal(err)
	}
	wantOut(t, "jobs list", list, "wordcount", "running", leader+" (term")
	status, err := run(t, c, []string{"GOSTREAM_MASTER=" + m}, "jobs", "status", "wordcount")
	if err != nil {
		t.Fatal(err)
	}
	wantOut(t, "jobs status", status, "job wordcount: running", "driver: "+leader, "no progress reports")

	free := clustertest.FreeAddr(t)
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"submit", "no-such-job", "--master", m, "--brokers", "127.0.0.1:9"}, []string{`unknown job`, `"no-such-job"`, "wordcount"}},
		{[]string{"submit", "wordcount", "--master", m, "--brokers", "127.0.0.1:9", "--topic", "other"}, []string{`job "wordcount" is running with another plan`, "gostream jobs stop wordcount"}},
		{[]string{"jobs", "stop", "nope", "--master", m}, []string{`unknown job "nope"`, "[wordcount]"}},
		{[]string{"jobs", "list", "--master", "gostream://" + free}, []string{"no member reachable", free, "are the workers running?"}},
		{[]string{"submit", "wordcount", "--master", "gostream://" + free, "--brokers", "127.0.0.1:9"}, []string{"no member reachable", free}},
	} {
		out, err := run(t, c, nil, tc.args...)
		if err == nil {
			t.Errorf("gostream %v succeeded; want an error", tc.args)
		}
		wantOut(t, fmt.Sprint(tc.args), out, tc.wants...)
	}

	stopped, err := run(t, c, nil, "jobs", "stop", "wordcount", "--master", m)
	if err != nil {
		t.Fatal(err)
	}
	wantOut(t, "jobs stop", stopped, "job wordcount: stopped")
	list, err = run(t, c, nil, "jobs", "list", "--master", m)
	if err != nil {
		t.Fatal(err)
	}
	wantOut(t, "jobs list after the stop", list, "stopped")
}

// TestJobDriverMoves: when the leader's process is killed, the new leader
// runs the job's driver, in its term.
func TestJobDriverMoves(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	cl := c.Client(t)
	ctx := context.Background()
	if _, err := cl.RegisterJob(ctx, wordcountJob(t)); err != nil {
		t.Fatal(err)
	}
	driven := func(not string) *clusterpb.JobStatus {
		t.Helper()
		var js *clusterpb.JobStatus
		deadline := time.Now().Add(30 * time.Second)
		for {
			jobs, err := cl.Jobs(ctx, "wordcount")
			if err == nil {
				if js = jobs[0]; js.Driver != "" && js.Driver != not {
					return js
				}
				err = fmt.Errorf("driver %q", js.Driver)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no driver other than %q after 30 s: %v", not, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := driven("")
	if leader := c.WaitLeader(t).Leader; first.Driver != leader {
		t.Fatalf("the driver runs on %s; want the leader %s", first.Driver, leader)
	}
	for _, w := range c.Workers {
		if w.Name == first.Driver {
			w.Kill(t)
		}
	}
	moved := driven(first.Driver)
	if moved.DriverTerm <= first.DriverTerm {
		t.Errorf("the driver moved to %s in term %d; want a term after %d", moved.Driver, moved.DriverTerm, first.DriverTerm)
	}
	t.Logf("the driver moved from %s (term %d) to %s (term %d)", first.Driver, first.DriverTerm, moved.Driver, moved.DriverTerm)
}

// TestSubmitUnknownFunction: a plan calling a function this process
// registered and the workers did not is refused when it is registered,
// naming the function.
func TestSubmitUnknownFunction(t *testing.T) {
	skipShort(t)
	regs := engine.NewRegistrations()
	t.Cleanup(regs.Close)
	if err := regs.RegisterUDF("test_only_shout", strings.ToUpper); err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, 3)
	lines := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", "127.0.0.1:9").Option("subscribe", "logs").
		Load().Select(engine.Col("value").Cast(engine.String).As("line"))
	p, err := lines.Filter(engine.Udf("test_only_shout", engine.Col("line")).Ne("")).WriteStream().Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := cluster.NewJob("shout", p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client(t).RegisterJob(context.Background(), job)
	if err == nil || !strings.Contains(err.Error(), `no function "test_only_shout"`) || !strings.Contains(err.Error(), "cannot run on s") {
		t.Fatalf("registering a plan with a function the workers lack = %v; want an error naming it", err)
	}
	t.Log(err)
}
