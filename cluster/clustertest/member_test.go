package clustertest_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/proto/clusterpb"
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

// holds reports whether the job's assignment gives w a Kafka partition
// (reads), makes it the owner of a state partition (owns), or its standby
// (standsBy).
func holds(a *clusterpb.Assignment, w string) (reads, owns, standsBy bool) {
	for _, k := range a.GetKafka() {
		reads = reads || k.Worker == w
	}
	for _, sp := range a.GetState() {
		owns = owns || sp.Owner == w && !sp.Moving
		standsBy = standsBy || sp.Standby == w
	}
	return reads, owns, standsBy
}

// waitLogged waits until one of ws logged line.
func waitLogged(t *testing.T, line string, ws ...*clustertest.Worker) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, w := range ws {
			if b, err := os.ReadFile(w.LogPath); err == nil && strings.Contains(string(b), line) {
				t.Logf("%s logged %q", w.Name, line)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker logged %q within 20 s", line)
		}
	}
}

// removeWhenSafe removes w, asking again while the leader refuses because
// w holds the only current copy of a state partition (its standby copy
// is being made), and waits for w to exit saying it was removed.
func removeWhenSafe(t *testing.T, c *clustertest.Cluster, w *clustertest.Worker) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, err := c.Remove(t, w.Name)
		if err == nil {
			break
		}
		if !strings.Contains(out, "only copy of state") || time.Now().After(deadline) {
			t.Fatalf("cluster remove %s: %v\n%s", w.Name, err, out)
		}
	}
	wantExit(t, w, w.Name+" was removed from cluster")
}

// TestClusterRescale: a job runs batch after batch on three worker
// processes (trigger 200ms, real Kafka with 4 partitions, new lines
// produced all along, 4 state partitions) while a 4th worker joins: the
// driver gives it a Kafka partition and, standby first, a state partition
// to own; then a worker that is not the leader is removed, and then the
// leader itself: the driver moves their work to the others. The jsonl
// file holds each batch once, in order, counts never go back, and at the
// end the exact counts of every line produced.
//
//	flock /tmp/gostream-kafka.lock env GOSTREAM_KAFKA_BACKEND=process \
//	  go test -count=1 -v -run '^TestClusterRescale$' ./cluster/clustertest
func TestClusterRescale(t *testing.T) {
	skipShort(t)
	s := startStreaming(t, streamSetup{partitions: 4, lines: 5000, vocab: words, submit: []string{"--shuffle-partitions", "4"}})
	all := newJobView(t, s.c.Workers...)
	all.waitJob(t, "the job commits a batch", func(js *clusterpb.JobStatus) bool { return js.LastCommitted >= 1 })

	joined := time.Now()
	s4 := s.c.Join(t, "s4")
	s.c.WaitLeader(t)
	all = newJobView(t, s.c.Workers...)
	js := all.waitJob(t, "s4 reads a Kafka partition and owns a state partition", func(js *clusterpb.JobStatus) bool {
		reads, owns, _ := holds(js.Assignment, s4.Name)
		return reads && owns
	})
	t.Logf("s4 reads and owns %v after it was started with --join: epoch %d: %v", time.Since(joined).Round(time.Millisecond), js.Assignment.GetEpoch(), js.Assignment)
	// The standby s4 displaced, standby first, drops its copy once s4's is
	// current.
	waitLogged(t, "cluster: dropped this worker's copy of a state partition it no longer holds", s.c.Workers[:3]...)

	var follower *clustertest.Worker
	for _, w := range s.c.Workers[:3] {
		if w.Name != js.Driver {
			follower = w
		}
	}
	removed := time.Now()
	removeWhenSafe(t, s.c, follower)
	js = all.waitJob(t, "the removed follower holds nothing", func(js *clusterpb.JobStatus) bool {
		reads, owns, standsBy := holds(js.Assignment, follower.Name)
		return !reads && !owns && !standsBy
	})
	t.Logf("%s holds nothing %v after cluster remove: epoch %d: %v", follower.Name, time.Since(removed).Round(time.Millisecond), js.Assignment.GetEpoch(), js.Assignment)

	leader := workerNamed(t, s.c, js.Driver)
	removed = time.Now()
	removeWhenSafe(t, s.c, leader)
	js = all.waitJob(t, "a new leader drives the job without the removed one", func(js *clusterpb.JobStatus) bool {
		reads, owns, standsBy := holds(js.Assignment, leader.Name)
		return js.Driver != "" && js.Driver != leader.Name && !reads && !owns && !standsBy
	})
	t.Logf("leader %s removed: %s drives epoch %d without it %v after cluster remove: %v", leader.Name, js.Driver, js.Assignment.GetEpoch(), time.Since(removed).Round(time.Millisecond), js.Assignment)
	s.waitExact(t)
}
