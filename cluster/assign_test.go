package cluster

import (
	"fmt"
	"testing"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/protobuf/proto"
)

// TestNextAssignment: a job's first assignment spreads its Kafka
// partitions over the workers, one each in turn by name, and places its
// state partitions with owners in turn and standbys on the next worker;
// the next epoch keeps every partition where it was (sticky), gives a new
// Kafka partition to the worker reading the fewest and keeps the state
// partitions; with one worker there is no standby.
func TestNextAssignment(t *testing.T) {
	var parts []kafkaPartition
	for p := range int32(4) {
		parts = append(parts, kafkaPartition{"logs", 3 - p})
	}
	j := &clusterpb.Job{Name: "wc", KeyGroups: 128, ShufflePartitions: 4}
	a, _ := nextAssignment(j, parts, []string{"s3", "s1", "s2"}, allLive, 2)
	if a.Epoch != 1 {
		t.Fatalf("epoch %d; want 1", a.Epoch)
	}
	if got, want := kafkaOf(a), "logs-0:s1 logs-1:s2 logs-2:s3 logs-3:s1"; got != want {
		t.Errorf("kafka %s; want %s", got, want)
	}
	if got, want := stateOf(a), "[0,32):s1/s2 [32,64):s2/s3 [64,96):s3/s1 [96,128):s1/s2"; got != want {
		t.Errorf("state %s; want %s", got, want)
	}

	// Partition 3 moved to s2 in an epoch before; a partition 4 appears.
	a.Kafka[3].Worker = "s2"
	j.Assignment = a
	next, reason := nextAssignment(j, append(parts, kafkaPartition{"logs", 4}), []string{"s1", "s2", "s3"}, allLive, 2)
	if next.Epoch != 2 {
		t.Fatalf("epoch %d; want 2", next.Epoch)
	}
	if got, want := kafkaOf(next), "logs-0:s1 logs-1:s2 logs-2:s3 logs-3:s2 logs-4:s1"; got != want {
		t.Errorf("next kafka %s; want %s", got, want)
	}
	if got, want := stateOf(next), stateOf(a); got != want {
		t.Errorf("next state %s; want %s as before", got, want)
	}
	if want := "new Kafka partitions logs-4 -> s1"; reason != want {
		t.Errorf("reason %q; want %q", reason, want)
	}

	one, _ := nextAssignment(&clusterpb.Job{Name: "wc", KeyGroups: 2, ShufflePartitions: 2}, parts[:1], []string{"s1"}, allLive, 2)
	if got, want := kafkaOf(one)+" "+stateOf(one), "logs-3:s1 [0,1):s1/ [1,2):s1/"; got != want {
		t.Errorf("one worker: %s; want %s", got, want)
	}
}

func allLive(string) bool { return true }

func kafkaOf(a *clusterpb.Assignment) string {
	s := ""
	for i, k := range a.Kafka {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s-%d:%s", k.Topic, k.Partition, k.Worker)
	}
	return s
}

func stateOf(a *clusterpb.Assignment) string {
	s := ""
	for i, p := range a.State {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("[%d,%d):%s/%s", p.FirstKeyGroup, p.EndKeyGroup, p.Owner, p.Standby)
	}
	return s
}

// TestPlaceState: key groups split into contiguous, even ranges; owners in
// turn; a standby on the next worker with 2 replicas and 2 or more
// workers.
func TestPlaceState(t *testing.T) {
	got := PlaceState(10, 3, []string{"a", "b"}, 2)
	want := []*clusterpb.StatePartition{
		{FirstKeyGroup: 0, EndKeyGroup: 3, Owner: "a", Standby: "b"},
		{FirstKeyGroup: 3, EndKeyGroup: 6, Owner: "b", Standby: "a"},
		{FirstKeyGroup: 6, EndKeyGroup: 10, Owner: "a", Standby: "b"},
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("partition %d: %v, want %v", i, got[i], want[i])
		}
	}
	for _, c := range []struct {
		workers  []string
		replicas int
	}{{[]string{"a", "b"}, 1}, {[]string{"a"}, 2}} {
		for _, p := range PlaceState(4, 4, c.workers, c.replicas) {
			if p.Standby != "" || p.EndKeyGroup != p.FirstKeyGroup+1 {
				t.Fatalf("%v with %d replicas: %v", c.workers, c.replicas, p)
			}
		}
	}
}
