package cluster

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/gostream/gostream/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// assign moves the rig to the next epoch with state's owners and standbys,
// applied on every worker (as their Raft apply would).
func (r *stateRig) assign(parts ...*clusterpb.StatePartition) {
	r.t.Helper()
	r.epoch++
	j := proto.CloneOf(r.job)
	j.Assignment = &clusterpb.Assignment{Epoch: r.epoch, State: parts}
	r.job = j
	for _, w := range r.workers {
		w.fence.setJob(proto.CloneOf(j))
	}
}

// part is state partition i of the rig's job (4 key groups in 2
// partitions) with owner and standby.
func part(i int32, owner, standby string) *clusterpb.StatePartition {
	return &clusterpb.StatePartition{FirstKeyGroup: 2 * i, EndKeyGroup: 2*i + 2, Owner: owner, Standby: standby}
}

// setDown makes member unreachable for the others (down) or reachable.
func (r *stateRig) setDown(member string, down bool) {
	r.downMu.Lock()
	defer r.downMu.Unlock()
	r.down[member] = down
}

// wordsOf counts the words of a batch's tasks into total and returns the
// batch's changed groups with their running counts.
func wordsOf(total map[string]int64, tasks [][]string) map[string]int64 {
	batch := map[string]int64{}
	for _, lines := range tasks {
		countWords(batch, lines)
		countWords(total, lines)
	}
	for w := range batch {
		batch[w] = total[w]
	}
	return batch
}

// TestStatePromotedStandby: the owner of a state partition, s1, is lost
// while batch 2 runs: before its reduce committed, after it committed but
// before it replicated, or after it replicated (the driver had no answer).
// In epoch 2 its standby s2 owns the partition and s3, a new worker with
// no state, stands by. The batch runs again: s2 merges batch 2 from its
// copy when it is at batch 1, answers it from its state without merging it
// again when it is at 2, and sends s3 a full copy; the counts are exact on
// both, and batch 3 replicates to s3 as usual. s1 comes back: in epoch 2
// it serves nothing of what it still holds (its reduce, rows and
// replication requests are refused), and in epoch 3, the standby of both
// partitions again, its old copies are replaced by full copies.
func TestStatePromotedStandby(t *testing.T) {
	for _, lost := range []string{"before the commit", "after the commit", "after the replicate"} {
		t.Run(lost, func(t *testing.T) {
			r := newStateRigOf(t, "s1", "s2", "s3")
			total := map[string]int64{}
			batches := [][][]string{{{"a b", "c"}, {"d a"}}, {{"b b"}, {"e"}}, {{"a f"}, {"g b c"}}, {{"a h"}, {"b"}}}
			for batch, tasks := range batches[:2] {
				wordsOf(total, tasks)
				r.runBatch(int64(batch), 3, tasks)
			}
			r.checkStores(1, total)

			// Batch 2 in epoch 1: partition 1 (owner s2) reduces;
			// partition 0's owner s1 is lost at some point of its reduce.
			want2 := wordsOf(total, batches[2])
			r.push(2, 3, batches[2])
			if _, _, err := r.reduce(2, 3, 1, 2); err != nil {
				t.Fatal(err)
			}
			switch lost {
			case "after the commit":
				r.setDown("s2", true)
				_, _, err := r.reduce(2, 3, 0, 2)
				wantStatus(t, err, codes.FailedPrecondition, "standby s2 is not a member")
				r.setDown("s2", false)
			case "after the replicate":
				if _, _, err := r.reduce(2, 3, 0, 2); err != nil {
					t.Fatal(err)
				}
			}
			s1, s2 := r.workers["s1"], r.workers["s2"]
			v1, _ := r.storeCounts(s1, 0)
			v2, _ := r.storeCounts(s2, 0)
			if want := map[string][2]int64{"before the commit": {1, 1}, "after the commit": {2, 1}, "after the replicate": {2, 2}}[lost]; v1 != want[0] || v2 != want[1] {
				t.Fatalf("partition 0 before the failover: s1 at %d, s2 at %d; want %v", v1, v2, want)
			}

			r.setDown("s1", true)
			r.assign(part(0, "s2", "s3"), part(1, "s2", "s3"))
			changed, dones := r.runBatch(2, 3, batches[2])
			if !maps.Equal(changed, want2) {
				t.Fatalf("batch 2 run again by the promoted standby changed %v, want %v", changed, want2)
			}
			if applied := lost == "after the replicate"; dones[0].Applied != applied || !dones[1].Applied || dones[0].Standby != "s3" {
				t.Fatalf("batch 2 run again: %v, %v; want partition 0 applied %v, partition 1 applied, standby s3", dones[0], dones[1], applied)
			}
			r.checkStores(2, total)
			wordsOf(total, batches[3])
			r.runBatch(3, 3, batches[3])
			r.checkStores(3, total)

			// s1 is back, without a role in epoch 2: what it holds is
			// never served.
			r.setDown("s1", false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, epoch := range []uint64{1, 2} {
				h := &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: epoch}
				text := map[uint64]string{1: ErrStaleEpoch.Error(), 2: "the owner of state partition 0 is s2, not s1"}[epoch]
				_, err := ReducePartition(ctx, s1.cc, &clusterpb.ReduceRequest{Header: h, Job: "wc", Batch: 3, Partition: 0, Tasks: 1}, func([]byte) error { return nil })
				wantStatus(t, err, codes.FailedPrecondition, text)
			}
			_, err := r.replicate(s1, 3, 3, 0, false, nil, false, nil)
			wantStatus(t, err, codes.FailedPrecondition, "the standby of state partition 0 is s3, not s1")

			// Epoch 3: s1 stands by for both partitions again, far behind.
			r.assign(part(0, "s2", "s1"), part(1, "s3", "s1"))
			r.runBatch(3, 3, batches[3]) // the batch in flight runs again in the new epoch
			r.checkStores(3, total)
			batch4 := [][]string{{"i a"}}
			wordsOf(total, batch4)
			r.runBatch(4, 3, batch4)
			r.checkStores(4, total)
			if !strings.Contains(r.logs.String(), `msg="cluster: sent a full copy of a state partition to its standby" node=s2 job=wc batch=2 partition=0 standby=s3 standby_was_at=-1`) {
				t.Fatalf("no full copy to s3 logged")
			}
		})
	}
}

// TestStatePromotedLaggingStandby: a standby commits each batch's records
// as its owner sent them and applies them to its memory only when the
// partition is next used (state.CommitRecords). s2, the standby of
// partition 0, holds batches 0-3 so, not applied, when its owner s1 is
// lost; promoted, its first reduce applies them, then merges batch 4,
// and the counts are exact on s2 and on s3, its new standby (sent a full
// copy). Restarted before (as a worker killed with records not applied,
// or while it applied them: that writes nothing), it loads them from disk
// instead.
func TestStatePromotedLaggingStandby(t *testing.T) {
	for _, restarted := range []bool{false, true} {
		t.Run(fmt.Sprintf("restarted=%v", restarted), func(t *testing.T) {
			r := newStateRigOf(t, "s1", "s2", "s3")
			total := map[string]int64{}
			batches := [][][]string{{{"a b", "c"}, {"d a"}}, {{"b b"}, {"e"}}, {{"a f"}, {"g b c"}}, {{"a h"}, {"b"}}, {{"i a"}, {"c"}}}
			for batch, tasks := range batches[:4] {
				wordsOf(total, tasks)
				r.runBatch(int64(batch), 3, tasks)
			}
			s2 := r.workers["s2"]
			if restarted {
				dir := s2.states.dir
				if err := s2.states.close(); err != nil {
					t.Fatal(err)
				}
				s2.states = newJobStates(filepath.Dir(dir), "c1", s2.server.log)
				s2.server.states = s2.states
			}
			r.setDown("s1", true)
			r.assign(part(0, "s2", "s3"), part(1, "s2", "s3"))
			wordsOf(total, batches[4])
			r.runBatch(4, 3, batches[4])
			applied := regexp.MustCompile(`msg="state: applied changelog records to memory" node=s2 .* partition=0 version=3 records=4 `)
			if got := applied.MatchString(r.logs.String()); got == restarted {
				t.Fatalf("s2 logged %q: %v, want %v", applied, got, !restarted)
			}
			r.checkStores(4, total)
		})
	}
}

// TestStateFullCopyFarBehind: a standby that missed batches (its owner
// could not reach it) is brought to the owner's version by the next
// batch's reduce, with a full copy.
func TestStateFullCopyFarBehind(t *testing.T) {
	r := newStateRig(t)
	total := map[string]int64{}
	b0 := [][]string{{"a b"}}
	wordsOf(total, b0)
	r.runBatch(0, 3, b0)
	r.setDown("s2", true)
	for batch := int64(1); batch <= 3; batch++ {
		tasks := [][]string{{fmt.Sprintf("a w%d", batch)}}
		wordsOf(total, tasks)
		r.push(batch, 3, tasks)
		_, _, err := r.reduce(batch, 3, 0, 1) // s1 commits, its standby is unreachable
		wantStatus(t, err, codes.FailedPrecondition, "standby s2 is not a member")
	}
	r.setDown("s2", false)
	tasks := [][]string{{"a z"}}
	wordsOf(total, tasks)
	r.push(4, 3, tasks)
	changed, done, err := r.reduce(4, 3, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v, counts := r.storeCounts(r.workers["s2"], 0); v != 4 || !maps.Equal(counts, partCounts(r, 0, total)) {
		t.Fatalf("standby s2 after batch 4: version %d, %v; want 4, %v", v, counts, partCounts(r, 0, total))
	}
	if done.Standby != "s2" || changed["a"] != total["a"] {
		t.Fatalf("batch 4: %v, changed %v", done, changed)
	}
}

// partCounts are the counts of total that partition p holds.
func partCounts(r *stateRig, p int, total map[string]int64) map[string]int64 {
	_, owned := r.storeCounts(r.owner(p), p)
	out := map[string]int64{}
	for w := range owned {
		out[w] = total[w]
	}
	return out
}

// TestStateFullCopyRefused: a full copy cut short, with a corrupt
// message (malformed, keys out of order, a CRC that differs), from an
// older epoch, or whose epoch passes while it streams leaves the
// standby's old copy exactly as it was; a whole copy then replaces it.
func TestStateFullCopyRefused(t *testing.T) {
	r := newStateRig(t)
	r.runBatch(0, 3, [][]string{{"a b c d"}})
	s1, s2 := r.workers["s1"], r.workers["s2"]
	oldV, old := r.storeCounts(s2, 0)
	// s1's partition 0 at batch 2, which s2 never saw.
	r.setDown("s2", true)
	for batch := int64(1); batch <= 2; batch++ {
		r.push(batch, 3, [][]string{{"a b e f g h"}})
		_, _, err := r.reduce(batch, 3, 0, 1)
		wantStatus(t, err, codes.FailedPrecondition, "standby s2 is not a member")
	}
	r.setDown("s2", false)
	ps, err := s1.states.partition(r.job, 0)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	err = scanRecords(ps.st, func(rec []byte) error { recs = append(recs, rec); return nil })
	ps.unlock(false, s1.server.log)
	if err != nil {
		t.Fatal(err)
	}
	// One group per record, to cut and reorder them.
	var one [][]byte
	for _, rec := range recs {
		if err := state.EachWrite(rec, func(k, v []byte, _ bool) error {
			one = append(one, state.AppendPut(state.NewRecord(nil), k, v))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(one) < 3 {
		t.Fatalf("partition 0 holds %d groups; the test needs 3 or more", len(one))
	}
	swapped := append([][]byte{one[1], one[0]}, one[2:]...)
	cases := []struct {
		name  string
		epoch uint64
		recs  [][]byte
		cut   bool
		end   func(*clusterpb.ReplicateEnd)
		hook  bool // the epoch passes before the commit
		code  codes.Code
		text  string
	}{
		{"cut short", 1, one, true, nil, false, codes.DataLoss, "without its end message"},
		{"malformed", 1, [][]byte{one[0], one[1][:len(one[1])-2]}, false, nil, false, codes.DataLoss, state.ErrCorrupt.Error()},
		{"out of order", 1, swapped, false, nil, false, codes.DataLoss, "ascending key order"},
		{"crc", 1, one, false, func(e *clusterpb.ReplicateEnd) { e.Crc ^= 1 }, false, codes.DataLoss, "CRC"},
		{"fewer bytes", 1, one, false, func(e *clusterpb.ReplicateEnd) { e.Bytes-- }, false, codes.DataLoss, "were sent"},
		{"stale epoch", 0, one, false, nil, false, codes.FailedPrecondition, ErrStaleEpoch.Error()},
		{"epoch passes", 1, one, false, nil, true, codes.FailedPrecondition, ErrStaleEpoch.Error()},
	}
	for _, c := range cases {
		if c.hook {
			s2.server.fence = &viewHook{shuffleFence: s2.fence, on: func(n int) {
				if n == 2 { // the check before the commit
					s2.fence.set(3, 2)
				}
			}}
		}
		r.epoch = c.epoch
		_, err := r.replicate(s2, 3, 2, 0, true, c.recs, c.cut, c.end)
		wantStatus(t, err, c.code, c.text)
		if v, counts := r.storeCounts(s2, 0); v != oldV || !maps.Equal(counts, old) {
			t.Fatalf("%s: the standby is at version %d with %v; want its old copy, %d with %v", c.name, v, counts, oldV, old)
		}
		s2.server.fence = s2.fence
		s2.fence.set(3, 1)
		r.epoch = 1
	}
	resp, err := r.replicate(s2, 3, 2, 0, true, recs, false, nil)
	if err != nil || resp.Applied || resp.NeedsCopy {
		t.Fatalf("the whole copy: %v, %v", resp, err)
	}
	_, want := r.storeCounts(s1, 0)
	if v, counts := r.storeCounts(s2, 0); v != 2 || !maps.Equal(counts, want) {
		t.Fatalf("after the whole copy the standby is at version %d with %v; want 2, %v", v, counts, want)
	}
}

// fillPartition commits groups groups (keys of 12 bytes, states of 8) on
// w's partition p at version, as if batches had counted them.
func fillPartition(tb testing.TB, r *stateRig, w *stateWorker, p int, groups int, version int64) {
	tb.Helper()
	ps, err := w.states.partition(r.job, r.job.Assignment.State[p].FirstKeyGroup)
	if err != nil {
		tb.Fatal(err)
	}
	defer ps.unlock(false, w.server.log)
	for i := range groups {
		if err := ps.st.Put(fmt.Appendf(nil, "group%07d", i), fmt.Appendf(nil, "%08d", i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := ps.st.Commit(version); err != nil {
		tb.Fatal(err)
	}
}

// rewritePartition writes every one of groups groups of partition 0 on its
// owner w at version, and replicates the batch to its standby.
func rewritePartition(tb testing.TB, r *stateRig, w *stateWorker, groups int, version int64) {
	tb.Helper()
	ps, err := w.states.partition(r.job, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer ps.unlock(false, w.server.log)
	for i := range groups {
		key, value := fmt.Appendf(nil, "group%07d", i), fmt.Appendf(nil, "%08d", int(version)*groups+i)
		if err := ps.st.Put(key, value); err != nil {
			tb.Fatal(err)
		}
	}
	rec, err := state.CommitRecord(ps.st, version)
	if err != nil {
		tb.Fatal(err)
	}
	recs, err := recordMessages(rec)
	if err != nil {
		tb.Fatal(err)
	}
	sp := r.job.Assignment.State[0]
	h := &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: r.epoch}
	if err := w.server.replicate(context.Background(), h, "wc", version, 0, sp.Standby, recs, ps.st); err != nil {
		tb.Fatal(err)
	}
}

// resetStates gives w an empty state directory, as a new worker has.
func resetStates(tb testing.TB, w *stateWorker) {
	tb.Helper()
	if err := w.states.close(); err != nil {
		tb.Fatal(err)
	}
	w.states = newJobStates(tb.TempDir(), "c1", w.server.log)
	w.server.states = w.states
}

// BenchmarkStateFullCopy measures the full copy of a state partition of
// 100k groups (2.3 MB of records: it fits changelog mode's memory) or 1M
// (23 MB: its stores go through Pebble) from its owner to its standby
// over loopback gRPC, as a reduce sends it to a standby that is new (an
// empty state directory) or behind (holding an older copy of every group,
// which the copy replaces): MB/s of records, groups/s, from the owner's
// scan to the standby's commit.
//
//	go test -run '^$' -bench BenchmarkStateFullCopy -benchtime 5x ./cluster
func BenchmarkStateFullCopy(b *testing.B) {
	for _, c := range []struct {
		groups  int
		standby string
	}{{100_000, "new"}, {100_000, "behind"}, {1_000_000, "new"}, {1_000_000, "behind"}} {
		groups, standby := c.groups, c.standby
		b.Run(fmt.Sprintf("groups=%d/standby=%s", groups, standby), func(b *testing.B) {
			r := newStateRig(b)
			s1, s2 := r.workers["s1"], r.workers["s2"]
			fillPartition(b, r, s1, 0, groups, 0)
			ps, err := s1.states.partition(r.job, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer ps.unlock(false, s1.server.log)
			var size int64
			if err := scanRecords(ps.st, func(rec []byte) error { size += int64(len(rec)); return nil }); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			h := &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 1}
			ctx := context.Background()
			var took time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				// The owner moves two batches on: its standby is behind.
				batch := int64(2*i + 2)
				if err := ps.st.Put([]byte("group0000000"), fmt.Appendf(nil, "%08d", batch)); err != nil {
					b.Fatal(err)
				}
				if err := ps.st.Commit(batch); err != nil {
					b.Fatal(err)
				}
				if standby == "new" {
					resetStates(b, s2)
				} else if i == 0 {
					fillPartition(b, r, s2, 0, groups, 0)
				}
				b.StartTimer()
				start := time.Now()
				if err := s1.server.replicate(ctx, h, "wc", batch, 0, "s2", nil, ps.st); err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
			}
			b.StopTimer()
			if v, _ := r.storeCounts(s2, 0); v != int64(2*b.N) {
				b.Fatalf("the standby is at version %d, want %d", v, 2*b.N)
			}
			b.ReportMetric(float64(groups)*float64(b.N)/took.Seconds(), "groups/s")
		})
	}
}

// BenchmarkStateTakeover measures a state partition's takeover by its
// standby: from the new epoch (its owner s1 lost, its standby s2 the
// owner) applied on the workers to the promoted owner's first reduce
// answered (a batch of two lines merged into its copy of 100k groups, no
// replay from the start): with no standby in the new epoch, with a new
// worker s3 as standby (the reduce sends it a full copy before it
// answers), with s2's store closed before (a standby that restarted: the
// copy is loaded from disk first), and with s2 holding 6 batches that
// rewrote every group as records not yet applied to its memory
// (state.CommitRecords: 14 MB, about its fold threshold; the reduce
// applies them first).
//
//	go test -run '^$' -bench BenchmarkStateTakeover -benchtime 5x ./cluster
func BenchmarkStateTakeover(b *testing.B) {
	const groups = 100_000
	for _, c := range []struct {
		name    string
		standby string
		cold    bool
		lagging int // batches s2 holds not applied
	}{{"standby=none", "", false, 0}, {"standby=new", "s3", false, 0}, {"standby=none/cold", "", true, 0}, {"standby=none/lagging", "", false, 6}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				r := newStateRigOf(b, "s1", "s2", "s3")
				s1, s2 := r.workers["s1"], r.workers["s2"]
				fillPartition(b, r, s1, 0, groups, 0)
				fillPartition(b, r, s2, 0, groups, 0)
				for v := range c.lagging {
					rewritePartition(b, r, s1, groups, int64(v+1))
				}
				if c.cold {
					dir := s2.states.dir
					if err := s2.states.close(); err != nil {
						b.Fatal(err)
					}
					s2.states = newJobStates(filepath.Dir(dir), "c1", s2.server.log)
					s2.server.states = s2.states
				}
				b.StartTimer()
				r.assign(part(0, "s2", c.standby), part(1, "s2", c.standby))
				batch := int64(c.lagging + 1)
				r.push(batch, 3, [][]string{{"a b"}, {"c"}})
				if _, done, err := r.reduce(batch, 3, 0, 2); err != nil || done.Rows < groups {
					b.Fatalf("%v, %v", done, err)
				}
			}
		})
	}
}

// TestStateReleasesLostPartitions: a worker that no longer holds a
// partition in the job's epoch closes its store (its memory is freed)
// once a request of the job reaches it, keeps its data on disk at its
// version, serves none of it, and, holding the partition again, is
// brought to the owner's version by a full copy.
func TestStateReleasesLostPartitions(t *testing.T) {
	r := newStateRig(t)
	total := map[string]int64{}
	b0 := [][]string{{"a b c d"}}
	wordsOf(total, b0)
	r.runBatch(0, 3, b0)
	s1 := r.workers["s1"]
	open := func() bool {
		s1.states.mu.Lock()
		p := s1.states.mu.jobs["wc"].parts[0]
		s1.states.mu.Unlock()
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.st != nil
	}
	if !open() {
		t.Fatal("s1 does not hold partition 0 open after batch 0")
	}
	// Epoch 2: s2 owns both partitions, s1 stands by for partition 1 only.
	r.assign(part(0, "s2", ""), part(1, "s2", "s1"))
	b1 := [][]string{{"a e"}}
	wordsOf(total, b1)
	r.runBatch(1, 3, b1)
	if open() {
		t.Fatal("s1 holds partition 0 open in epoch 2, where it has no role")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ReducePartition(ctx, s1.cc, &clusterpb.ReduceRequest{Header: &clusterpb.Header{ClusterId: "c1", Term: 3, Epoch: 2}, Job: "wc", Batch: 2, Partition: 0, Rows: true}, func([]byte) error { return nil })
	wantStatus(t, err, codes.FailedPrecondition, "the owner of state partition 0 is s2, not s1")
	if v, counts := r.storeCounts(s1, 0); v != 0 || len(counts) == 0 {
		t.Fatalf("s1's partition 0 on disk: version %d, %v; want batch 0's", v, counts)
	}
	// Epoch 3: s1 stands by for partition 0 again, two batches behind.
	r.assign(part(0, "s2", "s1"), part(1, "s2", "s1"))
	b2 := [][]string{{"a f"}}
	wordsOf(total, b2)
	r.runBatch(2, 3, b2)
	r.checkStores(2, total)
}
