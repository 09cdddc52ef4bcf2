package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gostream/gostream/proto/clusterpb"
)

// assignment waits until the job's last batch holds the counts truth,
// then returns the job, with its assignment, as the leader has it.
func (j *countingJob) assignment(truth map[string]int64) *clusterpb.Job {
	j.t.Helper()
	j.waitCounts(truth)
	return j.job()
}

// checkEpochReason checks that epoch e gives the reason want, or is the
// first epoch of a new driver run, which plans the work afresh after a
// leader change (any time, on a loaded machine) and says so instead.
func checkEpochReason(t *testing.T, e *clusterpb.EpochChange, want string) {
	t.Helper()
	switch {
	case strings.Contains(e.GetReason(), want):
	case strings.HasPrefix(e.GetReason(), "a driver run on "):
		t.Logf("epoch %d: %s (a leader change came first)", e.GetEpoch(), e.GetReason())
	default:
		t.Errorf("epoch %d's reason %q; want it to say %q", e.GetEpoch(), e.GetReason(), want)
	}
}

// TestBatchDriverNewKafkaPartitions: Kafka partitions added to the topic
// while a job runs get workers in a new assignment epoch, planned at a
// batch boundary, whose reason names them; the job goes on and counts
// their lines exactly (before: the job failed, naming the partition).
func TestBatchDriverNewKafkaPartitions(t *testing.T) {
	_, j, produce, truth := countingOnThree(t, 2, "wc", 4)

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(j.brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := j.job().Assignment.GetEpoch()
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx, 2, "logs"); err != nil {
		t.Fatal(err)
	}
	produce(100) // round robin: every partition gets lines
	job := j.assignment(truth)
	if got := len(job.Assignment.GetKafka()); got != 4 {
		t.Errorf("%d Kafka partitions assigned; want 4", got)
	}
	i := slices.IndexFunc(job.Epochs, func(e *clusterpb.EpochChange) bool { return e.Epoch > before })
	if i < 0 {
		t.Fatalf("no epoch after %d: %v", before, job.Epochs)
	}
	checkEpochReason(t, job.Epochs[i], "new Kafka partitions logs-2, logs-3")
}

// TestBatchDriverRescale: a worker that joins while a job runs gets a
// Kafka partition and, standby first, a state partition to own, in epochs
// planned at batch boundaries; a worker removed hands its work over; the
// counts stay exact throughout. Each worker left keeps on disk only the
// state partitions it holds (before: the copies of those it handed over
// stayed forever).
func TestBatchDriverRescale(t *testing.T) {
	g, j, produce, truth := countingOnThree(t, 4, "wc", 4)
	st := g.waitStatus(g.addrs(), allReachable)

	cfg, s4, err := g.startJoiner("s4", g.addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	j.joined = append(j.joined, s4)
	g.waitMembers(append(g.addrs(), cfg.Listen), "s1", "s2", "s3", "s4")
	for i := 0; ; i++ {
		produce(20)
		job := j.assignment(truth)
		if strings.Contains(kafkaOf(job.Assignment), ":s4") && strings.Contains(stateOf(job.Assignment), ":s4/") {
			break
		}
		if i == 100 {
			t.Fatalf("s4 joined 100 batches ago and neither reads nor owns: %s | %s", kafkaOf(job.Assignment), stateOf(job.Assignment))
		}
	}
	// The partition s4 took over had another standby before: its copy goes.
	waitNoStrayCopies(t, produce, "wc", append([]*Node{s4}, g.nodes...)...)

	removed := "s1"
	if st.Leader == removed {
		removed = "s2"
	}
	c := NewClient(g.addrs())
	defer c.Close()
	if _, err := c.RemoveMember(context.Background(), removed); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		produce(20)
		job := j.assignment(truth)
		if !strings.Contains(kafkaOf(job.Assignment)+" "+stateOf(job.Assignment), removed) {
			checkEpochReason(t, job.Epochs[len(job.Epochs)-1], removed+" removed")
			for _, e := range job.Epochs {
				t.Logf("epoch %d: %s", e.Epoch, e.Reason)
			}
			break
		}
		if i == 100 {
			t.Fatalf("%s removed 100 batches ago and still assigned work: %s | %s", removed, kafkaOf(job.Assignment), stateOf(job.Assignment))
		}
	}
	left := []*Node{s4}
	for _, n := range g.nodes {
		if n.cfg.Name != removed {
			left = append(left, n)
		}
	}
	waitNoStrayCopies(t, produce, "wc", left...)
	j.waitCounts(truth)
}
