package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/protobuf/proto"
)

// commitLog is a batch log whose last committed batch is last.
func commitLog(last int64) []*clusterpb.BatchLogEntry {
	var log []*clusterpb.BatchLogEntry
	for b := int64(0); b <= last; b++ {
		log = append(log,
			&clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Offsets{Offsets: &clusterpb.OffsetsEntry{BatchId: b}}},
			&clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Commit{Commit: b}})
	}
	return log
}

// sweep runs w's sweep over the rig's job, committed through batch
// committed, as the state machine would hold it.
func (r *stateRig) sweep(w *stateWorker, committed int64) {
	r.t.Helper()
	job := proto.CloneOf(r.job)
	job.BatchLog = commitLog(committed)
	if err := w.states.sweep(job, w.name, func() (*clusterpb.Job, bool) { return proto.CloneOf(job), true }); err != nil {
		r.t.Fatal(err)
	}
}

// onDisk lists the partitions (first key groups) of the rig's job in w's
// store, nil if w has no store of it open.
func (r *stateRig) onDisk(w *stateWorker) []int {
	r.t.Helper()
	w.states.mu.Lock()
	js := w.states.mu.jobs[r.job.Name]
	w.states.mu.Unlock()
	if js == nil {
		return nil
	}
	parts, err := js.provider.Partitions()
	if err != nil {
		r.t.Fatal(err)
	}
	return parts
}

// TestStateSweep: a worker drops its copy of a state partition it no
// longer holds once two other workers hold current copies (the owner, and
// a standby whose copy the job committed a batch with), never before, and
// removes the job's directory once it holds nothing of the job; a copy in
// use or the partition of a job without standbys owned elsewhere follow
// the same rules.
func TestStateSweep(t *testing.T) {
	r := newStateRigOf(t, "s1", "s2", "s3")
	total := map[string]int64{}
	r.assign(part(0, "s1", "s2"), part(1, "s2", "s3"))
	b0 := [][]string{{"a b c d e f"}}
	wordsOf(total, b0)
	r.runBatch(0, 3, b0)
	s1, s2, s3 := r.workers["s1"], r.workers["s2"], r.workers["s3"]
	if got := r.onDisk(s1); !slices.Equal(got, []int{0}) {
		t.Fatalf("s1 holds partitions %v after batch 0; want [0]", got)
	}

	// Epoch: s1 lost partition 0 to s2, whose new standby s3 is not
	// current until batch 1 commits.
	r.assign(part(0, "s2", "s3"), part(1, "s2", "s3"))
	r.job.Assignment.State[0].StandbyReadyFrom = 1
	r.sweep(s1, 0)
	if got := r.onDisk(s1); !slices.Equal(got, []int{0}) {
		t.Fatalf("s1 dropped its copy of partition 0 while the only other current copy was s2's: it holds %v", got)
	}
	b1 := [][]string{{"a g"}}
	wordsOf(total, b1)
	r.runBatch(1, 3, b1) // s3 gets a full copy of partition 0

	// A copy in use stays.
	s1.states.mu.Lock()
	p := s1.states.mu.jobs["wc"].parts[0]
	s1.states.mu.Unlock()
	p.mu.Lock()
	r.sweep(s1, 1)
	p.mu.Unlock()
	if got := r.onDisk(s1); !slices.Equal(got, []int{0}) {
		t.Fatalf("s1 dropped partition 0 while it was in use: it holds %v", got)
	}

	dir := filepath.Join(s1.states.dir, "wc")
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	r.sweep(s1, 1)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("s1 holds no partition of job wc, yet its directory is there: %v", err)
	}
	if got := r.logs.String(); !strings.Contains(got, "dropped this worker's copy of a state partition") || !strings.Contains(got, "removed the state of a job this worker holds no partition of") {
		t.Fatalf("s1 logged neither the drop nor the removal:\n%s", got)
	}
	r.checkStores(1, total)

	// The workers that hold the partitions keep them, whatever the batch.
	for _, w := range []*stateWorker{s2, s3} {
		r.sweep(w, 1)
		if got := r.onDisk(w); !slices.Equal(got, []int{0, 2}) {
			t.Fatalf("%s holds partitions %v after a sweep; want [0 2]", w.name, got)
		}
	}

	// One replica: s3 loses its standby role of partition 1 to no one,
	// s2 owning it. s3's copy goes; s2's, the only one, stays.
	r.assign(part(0, "s2", "s3"), part(1, "s2", ""))
	b2 := [][]string{{"h"}}
	wordsOf(total, b2)
	r.runBatch(2, 3, b2)
	r.sweep(s3, 2)
	r.sweep(s2, 2)
	if got := r.onDisk(s3); !slices.Equal(got, []int{0}) {
		t.Fatalf("s3 holds partitions %v; want [0]: it stands by for partition 0 only", got)
	}
	if got := r.onDisk(s2); !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("s2 holds partitions %v; want [0 2]: it owns both", got)
	}

	// s1 gets partition 0 back as standby: a full copy, as for a new one.
	r.assign(part(0, "s2", "s1"), part(1, "s2", ""))
	b3 := [][]string{{"a"}}
	wordsOf(total, b3)
	r.runBatch(3, 3, b3)
	if v, counts := r.storeCounts(s1, 0); v != 3 {
		t.Fatalf("s1's partition 0 at version %d, %v; want 3", v, counts)
	}
}

// TestStateSweepClearsInterruptedRemoval: what a removal interrupted
// after its rename left is deleted at the next start, and a job's
// directory is otherwise left alone.
func TestStateSweepClearsInterruptedRemoval(t *testing.T) {
	dir := t.TempDir()
	s := newJobStates(dir, "c1", slog.Default())
	left := filepath.Join(s.dir, removingPrefix+"wc", "state")
	kept := filepath.Join(s.dir, jobDirName("%removing"), "state") // a job named so
	for _, d := range []string{left, kept} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.clearRemoving(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(left)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted removal's directory is still there: %v", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the directory of job %q is gone: %v", "%removing", err)
	}
}

// notHeld lists the partitions (first key groups) of job that n keeps on
// disk though its state machine's epoch gives them to others.
func notHeld(n *Node, job string) ([]int, error) {
	j, ok := n.fsm.Job(job)
	if !ok {
		return nil, fmt.Errorf("%s does not know job %s", n.cfg.Name, job)
	}
	n.states.mu.Lock()
	js := n.states.mu.jobs[job]
	n.states.mu.Unlock()
	if js == nil {
		return nil, nil
	}
	parts, err := js.provider.Partitions()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(parts, func(first int) bool {
		return slices.ContainsFunc(j.Assignment.GetState(), func(sp *clusterpb.StatePartition) bool {
			return int(sp.FirstKeyGroup) == first && (sp.Owner == n.cfg.Name || sp.Standby == n.cfg.Name)
		})
	}), nil
}

// waitNoStrayCopies produces lines until every node in nodes keeps on
// disk only the partitions of job its epoch gives it.
func waitNoStrayCopies(t *testing.T, produce func(int), job string, nodes ...*Node) {
	t.Helper()
	waitFor(t, 20*time.Second, func() error {
		produce(5)
		for _, n := range nodes {
			stray, err := notHeld(n, job)
			if err != nil {
				return err
			}
			if len(stray) > 0 {
				return fmt.Errorf("%s keeps partitions %v of job %s on disk, which it no longer holds", n.cfg.Name, stray, job)
			}
		}
		return nil
	})
}
