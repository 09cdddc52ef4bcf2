package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// fsmApplier feeds commands to an FSM as raft would: increasing indexes,
// in the given term.
type fsmApplier struct {
	t     *testing.T
	f     *FSM
	index uint64
	term  uint64
}

func newFSMApplier(t *testing.T) *fsmApplier {
	return &fsmApplier{t: t, f: NewFSM(), term: 1}
}

func (a *fsmApplier) log(c *clusterpb.Command) *raft.Log {
	a.t.Helper()
	if c.Term == 0 {
		c.Term = a.term
	}
	data, err := EncodeCommand(c)
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	return &raft.Log{Index: a.index, Term: a.term, Type: raft.LogCommand, Data: data}
}

func (a *fsmApplier) apply(c *clusterpb.Command) error {
	a.t.Helper()
	if r := a.f.Apply(a.log(c)); r != nil {
		return r.(error)
	}
	return nil
}

func (a *fsmApplier) mustApply(c *clusterpb.Command) {
	a.t.Helper()
	if err := a.apply(c); err != nil {
		a.t.Fatalf("apply %v: %v", c, err)
	}
}

func initCmd() *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_Init{Init: &clusterpb.Init{ClusterId: "c1", Members: []*clusterpb.Member{
		{Name: "s1", Address: "127.0.1.1:7077"}, {Name: "s2", Address: "127.0.1.2:7077"}, {Name: "s3", Address: "127.0.1.3:7077"},
	}}}}
}

func testJob(name string) *clusterpb.Job {
	return &clusterpb.Job{Name: name, Plan: []byte("plan"), Options: map[string]string{"subscribe": "logs"}, ShufflePartitions: 4, KeyGroups: 128, PlanFingerprint: "fp1"}
}

func stateCmd(job string, st clusterpb.JobState, errText string) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_SetJobState{SetJobState: &clusterpb.SetJobState{Job: job, State: st, Error: errText}}}
}

func registerCmd(j *clusterpb.Job) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_RegisterJob{RegisterJob: &clusterpb.RegisterJob{Job: j}}}
}

func offsets(id, from, until int64) *clusterpb.BatchLogEntry {
	return &clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Offsets{Offsets: &clusterpb.OffsetsEntry{
		BatchId: id, BatchTimestampMs: 1000 + id,
		Start: OffsetsToProto(kafkasrc.Offsets{"logs": {0: from, 1: from}}),
		End:   OffsetsToProto(kafkasrc.Offsets{"logs": {0: until, 1: until}}),
	}}}
}

func commit(id int64) *clusterpb.BatchLogEntry {
	return &clusterpb.BatchLogEntry{Kind: &clusterpb.BatchLogEntry_Commit{Commit: id}}
}

func appendCmd(job string, es ...*clusterpb.BatchLogEntry) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_AppendBatchLog{AppendBatchLog: &clusterpb.AppendBatchLog{Job: job, Entries: es}}}
}

func assignCmd(job string, a *clusterpb.Assignment) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_SetAssignment{SetAssignment: &clusterpb.SetAssignment{Job: job, Assignment: a}}}
}

func testAssignment(epoch uint64) *clusterpb.Assignment {
	return &clusterpb.Assignment{
		Epoch: epoch,
		Kafka: []*clusterpb.KafkaAssignment{{Topic: "logs", Partition: 0, Worker: "s1"}, {Topic: "logs", Partition: 1, Worker: "s2"}},
		State: []*clusterpb.StatePartition{
			{FirstKeyGroup: 0, EndKeyGroup: 64, Owner: "s1", Standby: "s2"},
			{FirstKeyGroup: 64, EndKeyGroup: 128, Owner: "s3", Standby: "s1"},
		},
	}
}

// stateBytes is the FSM's state as a snapshot encodes it.
func stateBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMApply(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	a.mustApply(appendCmd("wc", offsets(0, 0, 10)))
	a.mustApply(appendCmd("wc", commit(0), offsets(1, 10, 20))) // one entry, as the local loop writes it
	a.mustApply(assignCmd("wc", testAssignment(1)))

	if got := a.f.ClusterID(); got != "c1" {
		t.Errorf("ClusterID = %q", got)
	}
	if got := len(a.f.Members()); got != 3 {
		t.Errorf("%d members", got)
	}
	j, ok := a.f.Job("wc")
	if !ok {
		t.Fatal("job wc missing")
	}
	want := []*clusterpb.BatchLogEntry{offsets(0, 0, 10), commit(0), offsets(1, 10, 20)}
	if len(j.BatchLog) != len(want) {
		t.Fatalf("batch log %v; want %v", j.BatchLog, want)
	}
	for i := range want {
		if !proto.Equal(j.BatchLog[i], want[i]) {
			t.Errorf("entry %d = %v; want %v", i, j.BatchLog[i], want[i])
		}
	}
	if got := OffsetsFromProto(j.BatchLog[2].GetOffsets().End); got.String() != `{"logs":{"0":20,"1":20}}` {
		t.Errorf("end offsets %s", got)
	}
	if j.Assignment.GetEpoch() != 1 {
		t.Errorf("assignment epoch %d", j.Assignment.GetEpoch())
	}
	// The returned job is the caller's copy.
	j.BatchLog = nil
	if j2, _ := a.f.Job("wc"); len(j2.BatchLog) != 3 {
		t.Error("changing a returned job changed the FSM")
	}
}

// TestFSMJobChanges: the channel jobChanges returns is closed by a job's
// registration and new assignment epoch, not by its batch log.
func TestFSMJobChanges(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for _, c := range []struct {
		cmd     *clusterpb.Command
		changes bool
	}{
		{registerCmd(testJob("wc")), true},
		{appendCmd("wc", offsets(0, 0, 10)), false},
		{assignCmd("wc", testAssignment(1)), true},
	} {
		ch := a.f.jobChanges()
		a.mustApply(c.cmd)
		if closed(ch) != c.changes {
			t.Errorf("after %v: jobChanges closed %v; want %v", c.cmd, closed(ch), c.changes)
		}
	}
}

// TestFSMRefuses checks that every bad command is refused with ErrRefused
// and leaves the state as it was.
func TestFSMRefuses(t *testing.T) {
	otherInit := initCmd()
	otherInit.GetInit().ClusterId = "c2"
	unsorted := testAssignment(2)
	unsorted.Kafka[0], unsorted.Kafka[1] = unsorted.Kafka[1], unsorted.Kafka[0]
	gap := testAssignment(2)
	gap.State[1].FirstKeyGroup = 65
	short := testAssignment(2)
	short.State[1].EndKeyGroup = 100
	stranger := testAssignment(2)
	stranger.Kafka[0].Worker = "s9"
	selfStandby := testAssignment(2)
	selfStandby.State[0].Standby = "s1"
	otherJob := testJob("wc")
	otherJob.Plan = []byte("another plan")
	fewGroups := testJob("small")
	fewGroups.KeyGroups = 2
	badOffsets := offsets(2, 20, 30)
	badOffsets.GetOffsets().End[0], badOffsets.GetOffsets().End[1] = badOffsets.GetOffsets().End[1], badOffsets.GetOffsets().End[0]
	for _, tc := range []struct {
		name string
		cmd  *clusterpb.Command
	}{
		{"init of another cluster", otherInit},
		{"same name, another job", registerCmd(otherJob)},
		{"fewer key groups than partitions", registerCmd(fewGroups)},
		{"unknown job", appendCmd("nope", commit(1))},
		{"commit of an unplanned batch", appendCmd("wc", commit(2))},
		{"plan before commit", appendCmd("wc", offsets(2, 20, 30))},
		{"batch planned twice with other offsets", appendCmd("wc", offsets(1, 10, 21))},
		{"a gap in the batches", appendCmd("wc", commit(1), offsets(3, 20, 30))},
		{"unsorted offsets", appendCmd("wc", commit(1), badOffsets)},
		{"last entry bad, first ones good", appendCmd("wc", commit(1), offsets(2, 20, 30), commit(3))},
		{"epoch skipped", assignCmd("wc", testAssignment(3))},
		{"epoch repeated with other content", assignCmd("wc", func() *clusterpb.Assignment { a := testAssignment(1); a.Kafka[0].Worker = "s3"; return a }())},
		{"kafka partitions unsorted", assignCmd("wc", unsorted)},
		{"key group gap", assignCmd("wc", gap)},
		{"key groups not covered", assignCmd("wc", short)},
		{"not a member", assignCmd("wc", stranger)},
		{"standby = owner", assignCmd("wc", selfStandby)},
		{"stop of an unknown job", stateCmd("nope", clusterpb.JobState_STOPPED, "")},
		{"set running", stateCmd("wc", clusterpb.JobState_RUNNING, "")},
		{"failed without an error", stateCmd("wc", clusterpb.JobState_FAILED, "")},
		{"stopped with an error", stateCmd("wc", clusterpb.JobState_STOPPED, "boom")},
		{"registered stopped", registerCmd(func() *clusterpb.Job { j := testJob("new"); j.State = clusterpb.JobState_STOPPED; return j }())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newFSMApplier(t)
			a.mustApply(initCmd())
			a.mustApply(registerCmd(testJob("wc")))
			a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0), offsets(1, 10, 20)))
			a.mustApply(assignCmd("wc", testAssignment(1)))
			before := stateBytes(t, a.f)
			err := a.apply(tc.cmd)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("apply = %v; want ErrRefused", err)
			}
			t.Log(err)
			if !bytes.Equal(stateBytes(t, a.f), before) {
				t.Error("a refused command changed the state")
			}
		})
	}
}

// TestFSMStaleTerm checks that a command proposed in an older term than
// the one it was logged in is refused.
func TestFSMStaleTerm(t *testing.T) {
	a := newFSMApplier(t)
	a.term = 7
	c := registerCmd(testJob("wc"))
	c.Term = 5
	if err := a.apply(c); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("apply = %v; want ErrStaleTerm", err)
	}
	if _, ok := a.f.Job("wc"); ok {
		t.Error("a stale command was applied")
	}
}

// TestFSMIdempotent applies every command twice, as a client's retry after
// a leader change would log it again: the second time is a no-op.
func TestFSMIdempotent(t *testing.T) {
	once, twice := newFSMApplier(t), newFSMApplier(t)
	cmds := []*clusterpb.Command{
		initCmd(),
		registerCmd(testJob("wc")),
		appendCmd("wc", offsets(0, 0, 10)),
		appendCmd("wc", commit(0), offsets(1, 10, 20)),
		assignCmd("wc", testAssignment(1)),
		appendCmd("wc", commit(1)),
		stateCmd("wc", clusterpb.JobState_STOPPED, ""),
	}
	for _, c := range cmds {
		once.mustApply(proto.CloneOf(c))
		twice.mustApply(proto.CloneOf(c))
		twice.mustApply(proto.CloneOf(c))
	}
	// A retry of "commit 0, offsets 1" after "commit 1": both logged.
	twice.mustApply(appendCmd("wc", commit(0), offsets(1, 10, 20)))
	if !bytes.Equal(stateBytes(t, once.f), stateBytes(t, twice.f)) {
		t.Error("applying commands twice gave another state than once")
	}
}

// TestFSMSnapshotRestore checks that a restored snapshot is the state, and
// that the restored FSM goes on applying as the original.
func TestFSMSnapshotRestore(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	a.mustApply(registerCmd(testJob("other")))
	a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0), offsets(1, 10, 20)))
	a.mustApply(assignCmd("wc", testAssignment(1)))
	a.mustApply(stateCmd("other", clusterpb.JobState_FAILED, "driver on s1: boom"))
	snap := stateBytes(t, a.f)

	b := newFSMApplier(t)
	b.mustApply(registerCmd(testJob("gone"))) // replaced by the restore
	if err := b.f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stateBytes(t, b.f), snap) {
		t.Fatal("restored state differs from the snapshot")
	}
	if _, ok := b.f.Job("gone"); ok {
		t.Error("restore kept a job of the old state")
	}
	if j, _ := b.f.Job("other"); j.State != clusterpb.JobState_FAILED || j.Error != "driver on s1: boom" {
		t.Errorf("restored job other: %v %q; want FAILED with its error", j.State, j.Error)
	}
	next := appendCmd("wc", commit(1), offsets(2, 20, 30))
	a.mustApply(proto.CloneOf(next))
	b.mustApply(proto.CloneOf(next))
	if !bytes.Equal(stateBytes(t, a.f), stateBytes(t, b.f)) {
		t.Error("the restored FSM applied a command differently")
	}

	for _, bad := range [][]byte{{0xff, 0xff}, mustMarshal(t, &clusterpb.State{Format: 99})} {
		if err := NewFSM().Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
			t.Errorf("Restore(%x) = nil; want an error", bad)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFSMTrimsBatchLog checks that a long-running job's batch log is
// trimmed as a local checkpoint's is, so snapshots stay small, and that
// the trimmed log still takes the next batches.
func TestFSMTrimsBatchLog(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(registerCmd(testJob("wc")))
	a.mustApply(appendCmd("wc", offsets(0, 0, 1)))
	maxLen := 0
	const batches = 1000
	for id := int64(1); id < batches; id++ {
		a.mustApply(appendCmd("wc", commit(id-1), offsets(id, id, id+1)))
		j, _ := a.f.Job("wc")
		maxLen = max(maxLen, len(j.BatchLog))
	}
	j, _ := a.f.Job("wc")
	if maxLen >= 2*compactAfter {
		t.Errorf("the batch log reached %d entries; want fewer than %d", maxLen, 2*compactAfter)
	}
	first := entryBatch(j.BatchLog[0])
	if last := entryBatch(j.BatchLog[len(j.BatchLog)-1]); last != batches-1 || first > last-retainBatches+1 {
		t.Errorf("the log holds batches %d..%d; want at least the last %d of %d", first, last, retainBatches, batches)
	}
	a.mustApply(appendCmd("wc", commit(batches-1)))
	if len(stateBytes(t, a.f)) > 64<<10 {
		t.Errorf("snapshot of %d bytes", len(stateBytes(t, a.f)))
	}
}

func TestOffsetsProtoRoundTrip(t *testing.T) {
	o := kafkasrc.Offsets{"b": {2: 5, 0: 7}, "a": {1: -2}}
	ps := OffsetsToProto(o)
	if err := checkOffsets(ps); err != nil {
		t.Fatal(err)
	}
	if got := OffsetsFromProto(ps); got.String() != o.String() {
		t.Errorf("round trip %s; want %s", got, o)
	}
}

// TestFSMJobState walks a job through its states: a stop, a failure after
// it (a no-op), a new registration of the same job (running again, with
// its batch log), of the same plan with other tunables, and of another
// plan, refused while it runs and after it stopped. Job changes signal
// Changed.
func TestFSMJobState(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0)))
	check := func(want clusterpb.JobState, wantErr string) {
		t.Helper()
		j, _ := a.f.Job("wc")
		if j.State != want || j.Error != wantErr || len(j.BatchLog) != 2 {
			t.Fatalf("job wc: %v %q with %d log entries; want %v %q with 2", j.State, j.Error, len(j.BatchLog), want, wantErr)
		}
	}
	drain := func() bool {
		select {
		case <-a.f.Changed():
			return true
		default:
			return false
		}
	}
	if !drain() {
		t.Error("registering a job did not signal Changed")
	}
	check(clusterpb.JobState_RUNNING, "")

	other := testJob("wc")
	other.Plan, other.PlanFingerprint = []byte("another plan"), "fp2"
	if err := a.apply(registerCmd(other)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "jobs stop wc") {
		t.Errorf("registering another plan while wc runs = %v; want ErrRefused saying how to stop it", err)
	}

	a.mustApply(stateCmd("wc", clusterpb.JobState_STOPPED, ""))
	if !drain() {
		t.Error("a stop did not signal Changed")
	}
	check(clusterpb.JobState_STOPPED, "")
	a.mustApply(stateCmd("wc", clusterpb.JobState_FAILED, "late")) // a failure reported after the stop
	check(clusterpb.JobState_STOPPED, "")

	if err := a.apply(registerCmd(other)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "choose another name") {
		t.Errorf("registering another plan for stopped wc = %v; want ErrRefused", err)
	}
	a.mustApply(registerCmd(testJob("wc")))
	check(clusterpb.JobState_RUNNING, "")

	a.mustApply(stateCmd("wc", clusterpb.JobState_FAILED, "driver on s2: boom"))
	check(clusterpb.JobState_FAILED, "driver on s2: boom")
	tuned := testJob("wc")
	tuned.Plan, tuned.Options, tuned.ShufflePartitions = []byte("same plan, other rate"), map[string]string{"trigger": "1s"}, 8
	a.mustApply(registerCmd(tuned))
	check(clusterpb.JobState_RUNNING, "")
	j, _ := a.f.Job("wc")
	if string(j.Plan) != "same plan, other rate" || j.Options["trigger"] != "1s" || j.ShufflePartitions != 4 {
		t.Errorf("after a new registration with other tunables: plan %q, options %v, %d partitions; want the new plan and options, 4 partitions", j.Plan, j.Options, j.ShufflePartitions)
	}
	a.mustApply(stateCmd("wc", clusterpb.JobState_FINISHED, ""))
	check(clusterpb.JobState_FINISHED, "")
}

// TestFSMEpochHistory: each new epoch adds its epoch, time and reason to
// the job's history, which keeps the last epochHistory; a retried
// SetAssignment adds nothing; the history survives a snapshot and its
// restore.
func TestFSMEpochHistory(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	const epochs = epochHistory + 5
	for e := uint64(1); e <= epochs; e++ {
		as := testAssignment(e)
		if e%2 == 0 {
			as.Kafka[0].Worker = "s3"
		}
		c := &clusterpb.Command{Kind: &clusterpb.Command_SetAssignment{SetAssignment: &clusterpb.SetAssignment{
			Job: "wc", Assignment: as, Reason: fmt.Sprintf("reason %d", e), TimeMs: int64(1000 * e)}}}
		a.mustApply(c)
		a.mustApply(proto.CloneOf(c)) // a retry
	}
	j, _ := a.f.Job("wc")
	if len(j.Epochs) != epochHistory {
		t.Fatalf("%d epochs kept; want %d", len(j.Epochs), epochHistory)
	}
	for i, ec := range j.Epochs {
		e := uint64(epochs - epochHistory + 1 + i)
		if ec.Epoch != e || ec.Reason != fmt.Sprintf("reason %d", e) || ec.TimeMs != int64(1000*e) {
			t.Errorf("history %d: %v; want epoch %d, reason %d, time %d", i, ec, e, e, 1000*e)
		}
	}
	b := NewFSM()
	if err := b.Restore(io.NopCloser(bytes.NewReader(stateBytes(t, a.f)))); err != nil {
		t.Fatal(err)
	}
	if jb, _ := b.Job("wc"); !proto.Equal(jb, j) {
		t.Errorf("restored job %v; want %v", jb, j)
	}
}

// TestFSMStandbyReadyFrom: the state machine says from which committed
// batch each standby holds a current copy, whatever the proposer sent: a
// job's first epoch, nothing committed yet, at once; a standby that stays,
// as before; one that was the owner, at once (the last committed batch);
// any other, once the next batch planned commits.
func TestFSMStandbyReadyFrom(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	a.mustApply(registerCmd(testJob("wc")))
	first := testAssignment(1) // [0,64) s1/s2, [64,128) s3/s1
	first.State[0].StandbyReadyFrom = 99
	a.mustApply(assignCmd("wc", first))
	readyFrom := func() []int64 {
		j, _ := a.f.Job("wc")
		return []int64{j.Assignment.State[0].StandbyReadyFrom, j.Assignment.State[1].StandbyReadyFrom}
	}
	if got := readyFrom(); !slices.Equal(got, []int64{-1, -1}) {
		t.Fatalf("first epoch: ready from %v; want [-1 -1]", got)
	}
	a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0), offsets(1, 10, 20), commit(1), offsets(2, 20, 30)))
	// Partition 0 moves to its standby s2, s1 its standby now; partition
	// 1 gets s2 as its standby.
	second := testAssignment(2)
	second.State[0].Owner, second.State[0].Standby = "s2", "s1"
	second.State[1].Standby = "s2"
	a.mustApply(assignCmd("wc", second))
	if got := readyFrom(); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("second epoch: ready from %v; want [1 3]", got)
	}
	a.mustApply(appendCmd("wc", commit(2), offsets(3, 30, 40)))
	third := proto.CloneOf(second)
	third.Epoch = 3
	a.mustApply(assignCmd("wc", third))
	if got := readyFrom(); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("third epoch, standbys unchanged: ready from %v; want [1 3]", got)
	}
}

// TestFSMFenceJob checks that fenceJob gives a job as Job does without its
// batch log, epoch history and report, and that a view taken before Apply
// and Restore changed the job (a new epoch, a log entry, a stop, a new
// registration with other options, a restored snapshot) stays as it was,
// though a goroutine reads it meanwhile (run with -race).
func TestFSMFenceJob(t *testing.T) {
	a := newFSMApplier(t)
	a.mustApply(initCmd())
	if _, ok := a.f.fenceJob("wc"); ok {
		t.Fatal("fenceJob found a job before it was registered")
	}
	a.mustApply(registerCmd(testJob("wc")))
	a.mustApply(appendCmd("wc", offsets(0, 0, 10), commit(0)))
	a.mustApply(assignCmd("wc", testAssignment(1)))
	snap := stateBytes(t, a.f)

	view, ok := a.f.fenceJob("wc")
	if !ok {
		t.Fatal("fenceJob does not find job wc")
	}
	full, _ := a.f.Job("wc")
	full.BatchLog, full.Epochs, full.LastReport = nil, nil, nil
	if !proto.Equal(view, full) {
		t.Fatalf("fenceJob = %v; want Job without its log, epochs and report: %v", view, full)
	}
	was := proto.CloneOf(view)

	// The reader reads the view, as a fence check does, after each value it
	// hands over on turn, so each change below overlaps one read.
	turn, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for range turn {
			_ = proto.Size(view) + len(view.Options["subscribe"]) + int(view.Assignment.State[1].StandbyReadyFrom)
		}
	}()
	next := testAssignment(2)
	next.State[1].Owner, next.State[1].Standby = "s1", "s3"
	tuned := testJob("wc")
	tuned.Plan, tuned.Options = []byte("same plan, other rate"), map[string]string{"trigger": "1s"}
	for _, c := range []*clusterpb.Command{assignCmd("wc", next), appendCmd("wc", offsets(1, 10, 20)), stateCmd("wc", clusterpb.JobState_STOPPED, ""), registerCmd(tuned)} {
		turn <- struct{}{}
		a.mustApply(c)
	}
	now, _ := a.f.fenceJob("wc")
	turn <- struct{}{}
	if err := a.f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	close(turn)
	<-done

	if !proto.Equal(view, was) {
		t.Errorf("a view taken before the changes became %v; want it as it was: %v", view, was)
	}
	if now.Assignment.GetEpoch() != 2 || string(now.Plan) != "same plan, other rate" || now.Options["trigger"] != "1s" || now.State != clusterpb.JobState_RUNNING {
		t.Errorf("fenceJob after the changes = %v; want epoch 2, the new plan and options, RUNNING", now)
	}
	if restored, _ := a.f.fenceJob("wc"); !proto.Equal(restored, was) {
		t.Errorf("fenceJob after restoring the snapshot = %v; want %v", restored, was)
	}
}
