package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/proto/clusterpb"
)

// TestBatchDriverReportAfterLeaderChange: after a leader change with no
// new input, the new leader reports the job's last committed batch (jobs
// status NAME, Watch), from the progress the driver before it logged
// through Raft. Before, it reported nothing until new input came.
func TestBatchDriverReportAfterLeaderChange(t *testing.T) {
	g, j, _, truth := countingOnThree(t, 2, "wc-report", 2)
	j.waitCounts(truth)
	old := j.leader()
	job, _ := old.fsm.Job(j.name)
	_, last := batchLogEnds(job.BatchLog)
	// The report is logged after the commit, without waiting: every member
	// holds it once it is committed.
	waitFor(t, 10*time.Second, func() error {
		for _, n := range g.nodes {
			jb, _ := n.fsm.Job(j.name)
			if got := jb.GetLastReport().GetBatchId(); jb.GetLastReport() == nil || got != last {
				return fmt.Errorf("%s holds the last report of batch %d (set: %v); want %d", n.cfg.Name, got, jb.GetLastReport() != nil, last)
			}
		}
		return nil
	})
	term := j.transferLeadership()
	c := NewClient(g.addrs())
	defer c.Close()
	var st *clusterpb.JobStatus
	waitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sts, err := c.Jobs(ctx, j.name)
		if err != nil {
			return err
		}
		st = sts[0]
		if st.DriverTerm == term {
			return fmt.Errorf("the status comes from the driver of term %d still", term)
		}
		return nil
	})
	if len(st.Progress) == 0 {
		t.Fatalf("the new leader's status of job %s has no progress report; want batch %d's", j.name, last)
	}
	var p engine.Progress
	if err := json.Unmarshal(st.Progress[len(st.Progress)-1], &p); err != nil {
		t.Fatal(err)
	}
	if p.BatchID != last || st.LastCommitted != last {
		t.Fatalf("the new leader reports batch %d, last committed %d; want %d", p.BatchID, st.LastCommitted, last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var watched *clusterpb.Report
	errSeen := errors.New("seen")
	err := c.Watch(ctx, j.name, nil, func(ev *clusterpb.WatchEvent) error {
		if r := ev.GetReport(); r != nil {
			watched = r
			return errSeen
		}
		return nil
	})
	if !errors.Is(err, errSeen) || watched.GetBatchId() != last {
		t.Fatalf("watching job %s on the new leader: %v, report %v; want batch %d's report", j.name, err, watched, last)
	}
}

// TestFSMJobReport: SetJobReport keeps the report of a committed batch,
// without its output, as the job's last report; a report of a batch not
// committed yet, or older than the last report, changes nothing.
func TestFSMJobReport(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	report := func(batch int64) *clusterpb.Command {
		return &clusterpb.Command{Kind: &clusterpb.Command_SetJobReport{SetJobReport: &clusterpb.SetJobReport{Job: "wc",
			Report: &clusterpb.Report{BatchId: batch, Progress: fmt.Appendf(nil, `{"batchId":%d}`, batch), Output: []byte("rows")}}}}
	}
	last := func() *clusterpb.Report {
		j, _ := a.f.Job("wc")
		return j.LastReport
	}
	a.mustApply(report(0))
	if r := last(); r != nil {
		t.Fatalf("a report of batch 0, not committed, was kept: %v", r)
	}
	a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0), offsets(1, 10, 20), commit(1)))
	a.mustApply(report(1))
	a.mustApply(report(0))
	if r := last(); r.GetBatchId() != 1 || string(r.GetProgress()) != `{"batchId":1}` || r.GetOutput() != nil {
		t.Fatalf("last report %v; want batch 1's progress without output", r)
	}
	if err := a.apply(&clusterpb.Command{Kind: &clusterpb.Command_SetJobReport{SetJobReport: &clusterpb.SetJobReport{Job: "nope", Report: &clusterpb.Report{}}}}); !errors.Is(err, ErrRefused) {
		t.Fatalf("a report of an unknown job: %v, want ErrRefused", err)
	}
}

// transferLeadership hands the leader's leadership over and waits for a
// leader in a later term; it returns the term of the leader before.
func (j *countingJob) transferLeadership() uint64 {
	j.t.Helper()
	old := j.leader()
	term := old.raft.CurrentTerm()
	if err := old.raft.LeadershipTransfer().Error(); err != nil {
		j.t.Fatal(err)
	}
	waitFor(j.t, 20*time.Second, func() error {
		if l := j.leader(); l == nil || l.raft.CurrentTerm() == term {
			return fmt.Errorf("no leader after term %d yet", term)
		}
		return nil
	})
	return term
}
