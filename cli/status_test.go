package cli

import (
	"strings"
	"testing"

	"github.com/gostream/gostream/proto/clusterpb"
)

// TestPrintEpochs: cluster status shows each job's last statusEpochs
// assignment epoch changes, jobs status all the job keeps, with their time
// (UTC) and reason.
func TestPrintEpochs(t *testing.T) {
	j := &clusterpb.JobStatus{Name: "wc", LastPlanned: 9, LastCommitted: 8, Assignment: &clusterpb.Assignment{Epoch: 7}}
	for e := uint64(1); e <= 7; e++ {
		j.Epochs = append(j.Epochs, &clusterpb.EpochChange{Epoch: e, TimeMs: 1764954000000 + int64(e), Reason: "reason of " + string(rune('0'+e))})
	}
	j.Epochs[6].Reason = "s2 down: Kafka partitions logs-1 s2 -> s1"
	var status strings.Builder
	if err := printStatus(&status, &clusterpb.StatusResponse{Leader: "s1", Jobs: []*clusterpb.JobStatus{j}}); err != nil {
		t.Fatal(err)
	}
	want := "job wc, last 5 assignment epochs:\n" +
		"  2025-12-05 17:00:00.003Z  epoch 3: reason of 3\n" +
		"  2025-12-05 17:00:00.004Z  epoch 4: reason of 4\n" +
		"  2025-12-05 17:00:00.005Z  epoch 5: reason of 5\n" +
		"  2025-12-05 17:00:00.006Z  epoch 6: reason of 6\n" +
		"  2025-12-05 17:00:00.007Z  epoch 7: s2 down: Kafka partitions logs-1 s2 -> s1\n"
	if !strings.HasSuffix(status.String(), want) {
		t.Errorf("cluster status:\n%s\nwant it to end with\n%s", status.String(), want)
	}
	var job strings.Builder
	if err := printJobStatus(&job, j, 5); err != nil {
		t.Fatal(err)
	}
	if got := job.String(); !strings.Contains(got, "last 7 assignment epochs:\n  2025-12-05 17:00:00.001Z  epoch 1: reason of 1\n") || !strings.Contains(got, "epoch 7: s2 down") {
		t.Errorf("jobs status:\n%s\nwant its 7 epochs", got)
	}
}
