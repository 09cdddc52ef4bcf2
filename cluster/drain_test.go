package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

// TestNextAssignmentDrain: with one replica, the partitions of a member
// being removed get a temporary standby on the least loaded worker,
// their owner staying; once a batch committed with it, the standby owns
// the partition and none is kept. Its Kafka partitions move at once.
func TestNextAssignmentDrain(t *testing.T) {
	parts := []kafkaPartition{{"logs", 0}, {"logs", 1}, {"logs", 2}}
	members := []string{"s1", "s2", "s3"}
	j := &clusterpb.Job{Name: "wc", KeyGroups: 3, ShufflePartitions: 3, BatchLog: []*clusterpb.BatchLogEntry{offsets(4, 0, 10), commit(4)}}
	j.Assignment, _ = nextAssignment(j, parts, members, allLive, 1)
	if got, want := stateOf(j.Assignment), "[0,1):s1/ [1,2):s2/ [2,3):s3/"; got != want {
		t.Fatalf("first epoch %s; want %s", got, want)
	}
	draining := func(w string) memberState {
		if w == "s2" {
			return memberDraining
		}
		return memberUp
	}
	next, reason := nextAssignment(j, parts, members, draining, 1)
	if got, want := stateOf(next), "[0,1):s1/ [1,2):s2/s1 [2,3):s3/"; got != want {
		t.Errorf("draining s2: state %s; want %s", got, want)
	}
	if got, want := kafkaOf(next), "logs-0:s1 logs-1:s1 logs-2:s3"; got != want {
		t.Errorf("draining s2: kafka %s; want %s", got, want)
	}
	if want := "s2 being removed: Kafka partitions logs-1 s2 -> s1; state partitions (owner/standby) 1 s2/- -> s2/s1; s1 takes state partition 1 over once a batch committed with it as standby"; reason != want {
		t.Errorf("draining s2: reason %q\nwant %q", reason, want)
	}
	// Planned again before the batch with s1 as standby committed (the
	// state machine sets standby_ready_from to the next batch): no change.
	next.State[1].StandbyReadyFrom = 5
	j.Assignment = next
	if again, reason := nextAssignment(j, parts, members, draining, 1); !sameWork(again, next) || reason != "" {
		t.Errorf("planned again before the copy: %s (%q); want no change", stateOf(again), reason)
	}
	if err := checkNoOnlyCopy([]*clusterpb.Job{j}, "s2"); !errors.Is(err, ErrOnlyCopy) {
		t.Errorf("s2 before batch 5: %v; want ErrOnlyCopy", err)
	}
	j.BatchLog = append(j.BatchLog, offsets(5, 10, 20), commit(5))
	last, reason := nextAssignment(j, parts, members, draining, 1)
	if got, want := stateOf(last), "[0,1):s1/ [1,2):s1/ [2,3):s3/"; got != want {
		t.Errorf("after batch 5: state %s; want %s", got, want)
	}
	if !strings.Contains(reason, "1 s2/s1 -> s1/-") {
		t.Errorf("after batch 5: reason %q; want it to move partition 1 to s1", reason)
	}
	j.Assignment = last
	if err := checkNoOnlyCopy([]*clusterpb.Job{j}, "s2"); err != nil {
		t.Errorf("s2 drained: %v", err)
	}
}

// TestBatchDriverRemoveDrains: with one state replica, removing a worker
// that owns state partitions while a job runs drains it first: its
// partitions move to the other workers standby first at the next batches,
// then it is removed, and the counts stay exact, also when the leader has
// heard no probe answer from it yet and when the leadership moves while it
// drains. Before, the removal was refused (it
// held the only copy).
func TestBatchDriverRemoveDrains(t *testing.T) {
	g, j, produce, truth := countingOnThreeWith(t, 3, "wc-drain", 3, func(c *Config) { c.StateReplicas = 1 })
	li := g.leaderIndex() // waits for one, through an election
	leader := g.nodes[li]
	i := slices.IndexFunc(g.nodes, func(n *Node) bool { return n != leader })
	name, third := g.nodes[i].cfg.Name, g.nodes[3-li-i]
	if err := checkNoOnlyCopy([]*clusterpb.Job{j.job()}, name); !errors.Is(err, ErrOnlyCopy) {
		t.Fatalf("%s holds no only copy before its removal (%v): the test needs one", name, err)
	}
	// The leader's view of the members as a leader elected a moment ago
	// has it (on a loaded machine, any time): no probe answered yet. The
	// drain waits for the member's answer; before, it gave up at once
	// ("does not answer the leader").
	c := NewClient(g.addrs())
	defer c.Close()
	leader.liveness.reset()
	removed := make(chan error, 1)
	go func() {
		_, err := c.RemoveMember(context.Background(), name)
		removed <- err
	}()
	// The leadership moves to the third member as the drain begins (an
	// election, on a loaded machine, any time): the drain is the leader's,
	// so the client asks the new leader, which drains the member again.
	// Before, the old leader drained on, unheard of by the new leader's
	// drivers, until the call's time ran out.
	waitFor(t, 20*time.Second, func() error {
		if !strings.Contains(g.logs.String(), "cluster: draining a member before its removal") {
			return errors.New("the leader has not begun to drain")
		}
		return nil
	})
	if err := leader.raft.LeadershipTransferToServer(raft.ServerID(third.cfg.Name), raft.ServerAddress(third.cfg.Listen)).Error(); err != nil {
		t.Logf("handing the leadership over to %s: %v", third.cfg.Name, err)
	}
	var err error
	for waiting := true; waiting; {
		produce(20) // batches move the partitions
		select {
		case err = <-removed:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("removing %s, which owns state partitions with one replica: %v", name, err)
	}
	// Once drained, its partitions have current standbys: the next epoch
	// gives them to those.
	waitFor(t, 20*time.Second, func() error {
		produce(20)
		if job := j.job(); slices.Contains(holders(job.Assignment), name) {
			return fmt.Errorf("%s removed, yet the job's epoch gives it work: %s | %s", name, kafkaOf(job.Assignment), stateOf(job.Assignment))
		}
		return nil
	})
	j.waitCounts(truth)
	if !strings.Contains(g.logs.String(), "cluster: drained a member before its removal") {
		t.Errorf("the leader did not log the drain")
	}
}

// TestRemoveRefusedUndrainable: a member holding the only copy of a state
// partition of a job that is not running (no driver moves it) is refused
// at once, with what to do.
func TestRemoveRefusedUndrainable(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	leader := g.leader()
	owner := leader.cfg.Name
	jb := testJob("wc")
	a := &clusterpb.Assignment{Epoch: 1, State: []*clusterpb.StatePartition{{FirstKeyGroup: 0, EndKeyGroup: jb.KeyGroups, Owner: owner}}}
	for _, cmd := range []*clusterpb.Command{registerCmd(jb), assignCmd("wc", a), appendCmd("wc", offsets(0, 0, 5), commit(0)), stateCmd("wc", clusterpb.JobState_STOPPED, "")} {
		if err := leader.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	c := NewClient(g.addrs())
	defer c.Close()
	_, err := c.RemoveMember(context.Background(), owner)
	if err == nil || !strings.Contains(err.Error(), ErrOnlyCopy.Error()) || !strings.Contains(err.Error(), "job wc's state partitions 0, and the job is stopped") || !strings.Contains(err.Error(), "submit the job again") {
		t.Fatalf("removing %s, which holds stopped job wc's only copy = %v; want ErrOnlyCopy saying to submit the job again", owner, err)
	}
}
