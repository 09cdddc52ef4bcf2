package clustertest_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
)

// wantExit waits for w to exit by itself with an error whose log says
// every one of wants.
func wantExit(t *testing.T, w *clustertest.Worker, wants ...string) {
	t.Helper()
	log, err := w.WaitExit(t, 30*time.Second)
	if err == nil {
		t.Fatalf("%s exited cleanly, want an error", w.Name)
	}
	for _, want := range wants {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log does not say %q:\n%s", w.Name, want, log)
		}
	}
}

// TestMembership: a 4th worker process joins a running group with --join
// and restarts without it; `gostream cluster remove` removes a worker,
// which stops, and whose data directory is refused from then on; bad
// input gets an error naming the cause: a name taken, an unreachable
// cluster, an unknown name, a removal below a quorum.
func TestMembership(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	s4 := c.Join(t, "s4")
	st := c.WaitLeader(t)
	if len(st.Members) != 4 {
		t.Fatalf("members after s4 joined: %v", st.Members)
	}
	out, err := run(t, c, nil, "cluster", "status", "--master", c.Master())
	if err != nil || !strings.Contains(out, "s4 ") || !strings.Contains(out, s4.Addr) {
		t.Fatalf("cluster status after s4 joined: %v\n%s", err, out)
	}
	s4.Restart(t) // without --join: its data directory knows the cluster
	c.WaitLeader(t)

	s2 := c.Workers[1]
	out, err = c.Remove(t, "s2")
	if err != nil || !strings.Contains(out, "removed s2; members: s1, s3, s4") {
		t.Fatalf("cluster remove s2: %v\n%s", err, out)
	}
	wantExit(t, s2, "s2 was removed from cluster")
	os.Truncate(s2.LogPath, 0)
	s2.Start(t)
	wantExit(t, s2, "s2 was removed from cluster", "must not run again", "--join")

	out, err = c.Remove(t, "s9")
	if err == nil || !strings.Contains(out, "s9 is not a member of the cluster; its members are s1, s3, s4") {
		t.Errorf("cluster remove s9: %v, want an error naming the members", err)
	}

	taken := c.Joiner(t, "s1")
	taken.Start(t)
	wantExit(t, taken, "worker s1 cannot join", "member exists", "Raft member s1 is at")
	if _, err := os.Stat(taken.DataDir); !os.IsNotExist(err) {
		t.Errorf("the refused joiner's data directory %s: %v, want it not created", taken.DataDir, err)
	}
	lost := c.Joiner(t, "s5")
	lost.SetJoin(clustertest.FreeAddr(t))
	lost.Start(t)
	wantExit(t, lost, "no member reachable", "--join")

	s4.Kill(t)
	out, err = c.Remove(t, "s1")
	if err == nil || !strings.Contains(out, "fewer than a quorum of 2") || !strings.Contains(out, "not answering: s4") {
		t.Errorf("cluster remove s1 with s4 down: %v, want an error saying the quorum would be lost", err)
	}
}
