package cluster

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// stateFormat is the format of State, and so of snapshots.
const stateFormat = 1

// The batch log of a job is trimmed as a local checkpoint's is (package
// engine): once it holds 2*compactAfter entries, only the entries of the
// last retainBatches batches are kept. Trimming happens in Apply, so every
// member trims at the same log index and snapshots stay small.
const (
	retainBatches = 100 // like Spark's minBatchesToRetain
	compactAfter  = 4 * retainBatches
)

// FSM is the replicated state machine: members, jobs, each job's batch log
// and its assignment. It implements raft.FSM.
//
// Apply, Snapshot and Restore are called by raft from one goroutine; the
// read methods (ClusterID, Members, Job, Jobs, fenceJob) may be called
// from any goroutine, concurrently with them. Every value a read method
// returns is the caller's own copy, but for the plan, options and
// assignment fenceJob shares, which Apply never changes in place.
//
// Apply is deterministic: its result depends only on the state and the log
// entry. A command it refuses leaves the state unchanged and is returned as
// an error wrapping ErrRefused or ErrStaleTerm. Every command is idempotent:
// applying one again, as a client's retry after a leader change does, is a
// no-op.
//
// Changed signals, to one receiver, that a job was registered, changed
// state, or that a snapshot was restored; MembersChanged, to one receiver,
// that the group was initialized with its members, members were added or
// removed, or a snapshot restored;
// PlacementChanged, to one receiver, that a job committed a batch or moved
// to a new assignment epoch, or a snapshot was restored.
type FSM struct {
	mu               sync.RWMutex
	state            *clusterpb.State // replaced whole by Restore, changed in place by Apply
	jobsChanged      chan struct{}    // closed and replaced when a job changes (jobChanges); guarded by mu
	changed          chan struct{}    // capacity 1: a pending signal covers later ones
	membersChanged   chan struct{}    // capacity 1, likewise
	placementChanged chan struct{}    // capacity 1, likewise
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an empty state machine.
func NewFSM() *FSM {
	return &FSM{state: emptyState(), jobsChanged: make(chan struct{}), changed: make(chan struct{}, 1), membersChanged: make(chan struct{}, 1), placementChanged: make(chan struct{}, 1)}
}

// jobChanges returns a channel closed once, after the call, a job is
// registered, changes state or gets a new assignment epoch, or a snapshot
// is restored. Any number of goroutines may wait on it.
func (f *FSM) jobChanges() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.jobsChanged
}

// jobsChangedLocked closes the channel jobChanges returned and replaces it.
func (f *FSM) jobsChangedLocked() {
	close(f.jobsChanged)
	f.jobsChanged = make(chan struct{})
}

// Changed receives a value after jobs were registered, changed state or
// were restored from a snapshot. It has one receiver: the node's job
// manager.
func (f *FSM) Changed() <-chan struct{} { return f.changed }

// MembersChanged receives a value after the group was initialized with
// its members, members were added or removed, or a snapshot was restored.
// It has one receiver: the node's member watch.
func (f *FSM) MembersChanged() <-chan struct{} { return f.membersChanged }

// PlacementChanged receives a value after a job committed a batch or moved
// to a new assignment epoch, or a snapshot was restored: where the current
// copies of its state partitions are may have changed. It has one
// receiver: the node's state sweeper (sweepStates).
func (f *FSM) PlacementChanged() <-chan struct{} { return f.placementChanged }

func (f *FSM) signal() { notify(f.changed) }

// notify sends on ch, a channel of capacity 1, unless a value is pending.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func emptyState() *clusterpb.State {
	return &clusterpb.State{Format: stateFormat, Jobs: map[string]*clusterpb.Job{}}
}

// EncodeCommand encodes c as a Raft log entry's data.
func EncodeCommand(c *clusterpb.Command) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(c)
}

// Apply applies one committed log entry. It returns nil, or an error when
// the command was refused.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c clusterpb.Command
	if err := proto.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("%w: log index %d is not a command: %w", ErrRefused, l.Index, err)
	}
	if c.Term != l.Term {
		return fmt.Errorf("%w: the command was proposed in term %d and logged in term %d (re-read the state and retry)", ErrStaleTerm, c.Term, l.Term)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	switch k := c.Kind.(type) {
	case *clusterpb.Command_Init:
		err = f.initLocked(k.Init)
		defer notify(f.membersChanged)
	case *clusterpb.Command_RegisterJob:
		err = f.registerJobLocked(k.RegisterJob.GetJob())
		f.jobsChangedLocked()
		defer f.signal()
	case *clusterpb.Command_SetJobState:
		err = f.setJobStateLocked(k.SetJobState)
		f.jobsChangedLocked()
		defer f.signal()
	case *clusterpb.Command_AppendBatchLog:
		err = f.appendBatchLogLocked(k.AppendBatchLog)
		if slices.ContainsFunc(k.AppendBatchLog.GetEntries(), func(e *clusterpb.BatchLogEntry) bool { return e.GetOffsets() == nil }) {
			defer notify(f.placementChanged)
		}
	case *clusterpb.Command_SetAssignment:
		err = f.setAssignmentLocked(k.SetAssignment)
		f.jobsChangedLocked()
		defer notify(f.placementChanged)
	case *clusterpb.Command_SetJobReport:
		err = f.setJobReportLocked(k.SetJobReport)
	case *clusterpb.Command_AddMember:
		err = f.addMemberLocked(k.AddMember.GetMember())
		defer notify(f.membersChanged)
	case *clusterpb.Command_RemoveMember:
		err = f.removeMemberLocked(k.RemoveMember.GetName(), l.Index)
		defer notify(f.membersChanged)
	default:
		err = fmt.Errorf("log index %d holds an unknown command (is every worker running the same gostream version?)", l.Index)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

func (f *FSM) initLocked(in *clusterpb.Init) error {
	if in.GetClusterId() == "" {
		return fmt.Errorf("init without a cluster id")
	}
	if err := checkMembers(in.GetMembers()); err != nil {
		return err
	}
	s := f.state
	if s.ClusterId != "" {
		if s.ClusterId == in.ClusterId && equalMembers(s.Members, in.Members) {
			return nil
		}
		return fmt.Errorf("the cluster was initialized as %s already", s.ClusterId)
	}
	s.ClusterId = in.ClusterId
	s.Members = cloneMembers(in.Members)
	return nil
}

// addMemberLocked adds m, a worker joining the group. The same member
// again is a retried join; another member's name or address is refused.
func (f *FSM) addMemberLocked(m *clusterpb.Member) error {
	s := f.state
	switch {
	case s.ClusterId == "":
		return fmt.Errorf("a member added before the cluster's init")
	case m.GetName() == "" || m.GetAddress() == "":
		return fmt.Errorf("a member without a name or address")
	}
	for _, old := range s.Members {
		switch {
		case old.Name == m.Name && old.Address == m.Address:
			return nil
		case old.Name == m.Name:
			return fmt.Errorf("%w: %s is a member at %s already (choose another --name, or remove it first with `gostream cluster remove %s`)", ErrMemberExists, m.Name, old.Address, m.Name)
		case old.Address == m.Address:
			return fmt.Errorf("%w: %s uses the address %s already (choose another --listen)", ErrMemberExists, old.Name, m.Address)
		}
	}
	i, _ := slices.BinarySearchFunc(s.Members, m.Name, func(x *clusterpb.Member, name string) int { return cmp.Compare(x.Name, name) })
	s.Members = slices.Insert(s.Members, i, proto.CloneOf(m))
	return nil
}

// removeMemberLocked removes the member name, logged at index, and
// records the removal; a name that is not a member is a no-op (a retried
// removal). The last member stays.
func (f *FSM) removeMemberLocked(name string, index uint64) error {
	s := f.state
	i := slices.IndexFunc(s.Members, func(m *clusterpb.Member) bool { return m.Name == name })
	switch {
	case i < 0:
		return nil
	case len(s.Members) == 1:
		return fmt.Errorf("%w: %s is the last member", ErrLastMember, name)
	}
	s.Members = slices.Delete(s.Members, i, i+1)
	s.Removed = append(s.Removed, &clusterpb.Removal{Name: name, Index: index})
	return nil
}

// checkMembers checks that ms is sorted by name, without duplicates.
func checkMembers(ms []*clusterpb.Member) error {
	if len(ms) == 0 {
		return fmt.Errorf("no members")
	}
	for i, m := range ms {
		switch {
		case m.GetName() == "" || m.GetAddress() == "":
			return fmt.Errorf("member %d has no name or address", i)
		case i > 0 && ms[i-1].Name >= m.Name:
			return fmt.Errorf("members not sorted by name, or %q twice", m.Name)
		}
	}
	return nil
}

func equalMembers(a, b []*clusterpb.Member) bool {
	return slices.EqualFunc(a, b, func(x, y *clusterpb.Member) bool { return proto.Equal(x, y) })
}

func cloneMembers(ms []*clusterpb.Member) []*clusterpb.Member {
	out := make([]*clusterpb.Member, len(ms))
	for i, m := range ms {
		out[i] = proto.CloneOf(m)
	}
	return out
}

func (f *FSM) registerJobLocked(j *clusterpb.Job) error {
	switch {
	case j.GetName() == "":
		return fmt.Errorf("a job without a name")
	case j.ShufflePartitions < 1:
		return fmt.Errorf("job %q: %d shuffle partitions; want 1 or more", j.Name, j.ShufflePartitions)
	case j.KeyGroups < j.ShufflePartitions:
		return fmt.Errorf("job %q: %d key groups for %d shuffle partitions; want at least one key group per partition", j.Name, j.KeyGroups, j.ShufflePartitions)
	case len(j.BatchLog) > 0 || j.Assignment != nil || j.State != clusterpb.JobState_RUNNING || j.Error != "":
		return fmt.Errorf("job %q: registered with a batch log, an assignment or a state", j.Name)
	}
	old, ok := f.state.Jobs[j.Name]
	switch {
	case !ok:
		f.state.Jobs[j.Name] = proto.CloneOf(j)
	case sameJob(old, j):
		old.State, old.Error = clusterpb.JobState_RUNNING, "" // runs again from its batch log
	case old.State == clusterpb.JobState_RUNNING:
		return fmt.Errorf("job %q is running with another plan or options (stop it first with `gostream jobs stop %s`, or choose another name)", j.Name, j.Name)
	case old.PlanFingerprint == "" || old.PlanFingerprint != j.PlanFingerprint:
		return fmt.Errorf("job %q was registered with another plan, which its batch log and state belong to (choose another name)", j.Name)
	default:
		// The same plan with other tunables (rate limits, options): it runs
		// again from its batch log, with the partitioning it was first
		// registered with.
		old.Plan, old.Options = slices.Clone(j.Plan), maps.Clone(j.Options)
		old.State, old.Error = clusterpb.JobState_RUNNING, ""
	}
	return nil
}

// sameJob reports whether a and b are the same registration: the same
// name, plan, options and partitioning.
func sameJob(a, b *clusterpb.Job) bool {
	strip := func(j *clusterpb.Job) *clusterpb.Job {
		return &clusterpb.Job{Name: j.Name, Plan: j.Plan, Options: j.Options, ShufflePartitions: j.ShufflePartitions, KeyGroups: j.KeyGroups, PlanFingerprint: j.PlanFingerprint}
	}
	return proto.Equal(strip(a), strip(b))
}

func (f *FSM) setJobStateLocked(s *clusterpb.SetJobState) error {
	j, err := f.job(s.GetJob())
	if err != nil {
		return err
	}
	switch {
	case s.State == clusterpb.JobState_RUNNING:
		return fmt.Errorf("job %q: SetJobState to RUNNING (register the job again instead)", j.Name)
	case (s.State == clusterpb.JobState_FAILED) != (s.Error != ""):
		return fmt.Errorf("job %q: SetJobState %v with error %q: want an error with FAILED only", j.Name, s.State, s.Error)
	case j.State != clusterpb.JobState_RUNNING:
		return nil // ended already: a retry, or a failure after a stop
	}
	j.State, j.Error = s.State, s.Error
	return nil
}

func (f *FSM) job(name string) (*clusterpb.Job, error) {
	j, ok := f.state.Jobs[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownJob, name)
	}
	return j, nil
}

func (f *FSM) appendBatchLogLocked(a *clusterpb.AppendBatchLog) error {
	j, err := f.job(a.GetJob())
	if err != nil {
		return err
	}
	if len(a.Entries) == 0 {
		return fmt.Errorf("job %q: an empty batch log append", j.Name)
	}
	// The entries go into the log at once, each checked against those
	// before it, and come out again unless all are good.
	n := len(j.BatchLog)
	for _, e := range a.Entries {
		if err := checkEntry(e); err != nil {
			j.BatchLog = j.BatchLog[:n]
			return fmt.Errorf("job %q: %w", j.Name, err)
		}
		switch dup, err := logged(j.BatchLog, e); {
		case err != nil:
			j.BatchLog = j.BatchLog[:n]
			return fmt.Errorf("job %q: %w", j.Name, err)
		case dup:
			continue // a retried append
		}
		if err := checkNext(j.BatchLog, e); err != nil {
			j.BatchLog = j.BatchLog[:n]
			return fmt.Errorf("job %q: %w", j.Name, err)
		}
		j.BatchLog = append(j.BatchLog, proto.CloneOf(e))
	}
	if len(j.BatchLog) >= 2*compactAfter {
		last := entryBatch(j.BatchLog[len(j.BatchLog)-1])
		i := slices.IndexFunc(j.BatchLog, func(e *clusterpb.BatchLogEntry) bool { return entryBatch(e) > last-retainBatches })
		j.BatchLog = slices.Clone(j.BatchLog[i:])
	}
	return nil
}

// entryBatch is the batch an entry is about.
func entryBatch(e *clusterpb.BatchLogEntry) int64 {
	if o := e.GetOffsets(); o != nil {
		return o.BatchId
	}
	return e.GetCommit()
}

// checkEntry checks one entry on its own.
func checkEntry(e *clusterpb.BatchLogEntry) error {
	switch k := e.GetKind().(type) {
	case *clusterpb.BatchLogEntry_Offsets:
		o := k.Offsets
		if o.GetBatchId() < 0 {
			return fmt.Errorf("offsets entry with batch id %d", o.GetBatchId())
		}
		if err := checkOffsets(o.Start); err != nil {
			return fmt.Errorf("batch %d start: %w", o.BatchId, err)
		}
		if err := checkOffsets(o.End); err != nil {
			return fmt.Errorf("batch %d end: %w", o.BatchId, err)
		}
	case *clusterpb.BatchLogEntry_Commit:
		if k.Commit < 0 {
			return fmt.Errorf("commit of batch %d", k.Commit)
		}
	default:
		return fmt.Errorf("a batch log entry that is neither offsets nor commit")
	}
	return nil
}

// checkOffsets checks that os is sorted by topic and partition, each once,
// so that equal offsets are equal messages.
func checkOffsets(os []*clusterpb.PartitionOffset) error {
	for i := 1; i < len(os); i++ {
		if comparePartition(os[i-1], os[i]) >= 0 {
			return fmt.Errorf("offsets not sorted, or %s-%d twice", os[i].Topic, os[i].Partition)
		}
	}
	return nil
}

func comparePartition(a, b *clusterpb.PartitionOffset) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// logged reports whether e is in log already; an entry of the same kind
// for the same batch with another content is an error.
func logged(log []*clusterpb.BatchLogEntry, e *clusterpb.BatchLogEntry) (bool, error) {
	id := entryBatch(e)
	_, isOffsets := e.Kind.(*clusterpb.BatchLogEntry_Offsets)
	for i := len(log) - 1; i >= 0; i-- {
		old := log[i]
		if entryBatch(old) != id {
			continue
		}
		if _, oldOffsets := old.Kind.(*clusterpb.BatchLogEntry_Offsets); oldOffsets != isOffsets {
			continue
		}
		if proto.Equal(old, e) {
			return true, nil
		}
		return false, fmt.Errorf("batch %d has other offsets logged already", id)
	}
	return false, nil
}

// checkNext checks that e may follow log: batch N is planned after batch
// N-1 committed, and a batch commits after it was planned, once. These are
// the rules of a local checkpoint's batch log.
func checkNext(log []*clusterpb.BatchLogEntry, e *clusterpb.BatchLogEntry) error {
	planned, committed := batchLogEnds(log)
	id := entryBatch(e)
	_, isOffsets := e.Kind.(*clusterpb.BatchLogEntry_Offsets)
	switch {
	case isOffsets && len(log) > 0 && (id != planned+1 || committed != planned):
		return fmt.Errorf("batch %d planned after batch %d, the last committed being %d", id, planned, committed)
	case !isOffsets && id != planned:
		return fmt.Errorf("batch %d committed, the last planned being %d", id, planned)
	case !isOffsets && id == committed:
		return fmt.Errorf("batch %d committed twice", id)
	}
	return nil
}

// batchLogEnds returns the last batch planned and the last committed in
// log, -1 for none.
func batchLogEnds(log []*clusterpb.BatchLogEntry) (planned, committed int64) {
	planned, committed = -1, -1
	for i := len(log) - 1; i >= 0 && (planned < 0 || committed < 0); i-- {
		switch k := log[i].Kind.(type) {
		case *clusterpb.BatchLogEntry_Offsets:
			if planned < 0 {
				planned = k.Offsets.BatchId
			}
		case *clusterpb.BatchLogEntry_Commit:
			if committed < 0 {
				committed = k.Commit
			}
		}
	}
	return planned, committed
}

// setJobReportLocked keeps s's report, without its output, as the job's
// last_report, if its batch is committed and newer than the last_report.
func (f *FSM) setJobReportLocked(s *clusterpb.SetJobReport) error {
	j, err := f.job(s.GetJob())
	if err != nil {
		return err
	}
	r := s.GetReport()
	if r == nil {
		return fmt.Errorf("job %q: a report without its report", j.Name)
	}
	if _, committed := batchLogEnds(j.BatchLog); r.BatchId > committed || (j.LastReport != nil && r.BatchId <= j.LastReport.BatchId) {
		return nil
	}
	j.LastReport = &clusterpb.Report{BatchId: r.BatchId, Progress: slices.Clone(r.Progress)}
	return nil
}

// epochHistory is how many epoch changes a job keeps (Job.epochs).
const epochHistory = 20

// setAssignmentLocked makes s the job's assignment, sets each state
// partition's standby_ready_from from the epoch before (see StatePartition)
// and adds the epoch, its time and reason to the job's epoch history.
func (f *FSM) setAssignmentLocked(s *clusterpb.SetAssignment) error {
	j, err := f.job(s.GetJob())
	if err != nil {
		return err
	}
	a := s.GetAssignment()
	if a == nil {
		return fmt.Errorf("job %q: an empty assignment", j.Name)
	}
	cur := j.GetAssignment().GetEpoch()
	if a.Epoch == cur && sameWork(a, j.Assignment) {
		return nil
	}
	if a.Epoch != cur+1 {
		return fmt.Errorf("job %q: assignment epoch %d after epoch %d; want %d", j.Name, a.Epoch, cur, cur+1)
	}
	if err := f.checkAssignmentLocked(j, a); err != nil {
		return fmt.Errorf("job %q, assignment epoch %d: %w", j.Name, a.Epoch, err)
	}
	next := proto.CloneOf(a)
	planned, committed := batchLogEnds(j.BatchLog)
	for _, sp := range next.State {
		i := slices.IndexFunc(j.GetAssignment().GetState(), func(p *clusterpb.StatePartition) bool {
			return p.FirstKeyGroup == sp.FirstKeyGroup && p.EndKeyGroup == sp.EndKeyGroup
		})
		switch {
		case i >= 0 && sp.Standby == j.Assignment.State[i].Standby:
			sp.StandbyReadyFrom = j.Assignment.State[i].StandbyReadyFrom
		case i >= 0 && sp.Standby != j.Assignment.State[i].Owner:
			sp.StandbyReadyFrom = planned + 1
		default: // the owner before, or a job's first epoch: its state is current
			sp.StandbyReadyFrom = committed
		}
	}
	j.Assignment = next
	j.Epochs = append(j.Epochs, &clusterpb.EpochChange{Epoch: a.Epoch, TimeMs: s.TimeMs, Reason: s.Reason})
	if n := len(j.Epochs); n > epochHistory {
		j.Epochs = slices.Clone(j.Epochs[n-epochHistory:])
	}
	return nil
}

// checkAssignmentLocked checks that a names members only, gives each Kafka
// partition once and splits the job's key groups into contiguous ranges,
// each with an owner and, if any, a standby on another member.
func (f *FSM) checkAssignmentLocked(j *clusterpb.Job, a *clusterpb.Assignment) error {
	member := func(name string) bool {
		return slices.ContainsFunc(f.state.Members, func(m *clusterpb.Member) bool { return m.Name == name })
	}
	for i, k := range a.Kafka {
		if i > 0 && cmp.Or(cmp.Compare(a.Kafka[i-1].Topic, k.Topic), cmp.Compare(a.Kafka[i-1].Partition, k.Partition)) >= 0 {
			return fmt.Errorf("kafka partitions not sorted, or %s-%d twice", k.Topic, k.Partition)
		}
		if !member(k.Worker) {
			return fmt.Errorf("kafka partition %s-%d given to %q, not a member", k.Topic, k.Partition, k.Worker)
		}
	}
	next := int32(0)
	for _, p := range a.State {
		switch {
		case p.FirstKeyGroup != next || p.EndKeyGroup <= p.FirstKeyGroup:
			return fmt.Errorf("state partition [%d, %d) does not start at key group %d or is empty", p.FirstKeyGroup, p.EndKeyGroup, next)
		case !member(p.Owner):
			return fmt.Errorf("state partition [%d, %d) owned by %q, not a member", p.FirstKeyGroup, p.EndKeyGroup, p.Owner)
		case p.Standby != "" && (p.Standby == p.Owner || !member(p.Standby)):
			return fmt.Errorf("state partition [%d, %d) has standby %q: want another member than its owner", p.FirstKeyGroup, p.EndKeyGroup, p.Standby)
		}
		next = p.EndKeyGroup
	}
	if next != j.KeyGroups {
		return fmt.Errorf("state partitions cover key groups [0, %d) of [0, %d)", next, j.KeyGroups)
	}
	return nil
}

// ClusterID returns the id the cluster's first leader logged, "" before.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.ClusterId
}

// Members returns the members, sorted by name.
func (f *FSM) Members() []*clusterpb.Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return cloneMembers(f.state.Members)
}

// Removed reports whether the worker name that joined the group at log
// index joinIndex (0: it bootstrapped the group) was removed since: a
// worker that joined later under the same name is another one.
func (f *FSM) Removed(name string, joinIndex uint64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.ContainsFunc(f.state.Removed, func(r *clusterpb.Removal) bool { return r.Name == name && r.Index > joinIndex })
}

// Job returns the named job, with its batch log and assignment.
func (f *FSM) Job(name string) (*clusterpb.Job, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.state.Jobs[name]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(j), true
}

// fenceJob returns the named job as the fence checks and the requests they
// admit use it: its registration (name, plan, options, partitioning,
// fingerprint, state and error) and its assignment, without its batch log,
// epoch history and last report. Unlike Job's, its plan, options and
// assignment are the state machine's own: Apply and Restore replace them
// whole and never change them in place, so the caller may read them from
// any goroutine but must not modify them.
func (f *FSM) fenceJob(name string) (*clusterpb.Job, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	j, ok := f.state.Jobs[name]
	if !ok {
		return nil, false
	}
	return &clusterpb.Job{Name: j.Name, Plan: j.Plan, Options: j.Options, ShufflePartitions: j.ShufflePartitions, KeyGroups: j.KeyGroups,
		Assignment: j.Assignment, State: j.State, Error: j.Error, PlanFingerprint: j.PlanFingerprint}, true
}

// Jobs returns every job, sorted by name.
func (f *FSM) Jobs() []*clusterpb.Job {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*clusterpb.Job, 0, len(f.state.Jobs))
	for _, j := range f.state.Jobs {
		out = append(out, proto.CloneOf(j))
	}
	slices.SortFunc(out, func(a, b *clusterpb.Job) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Snapshot copies the state; the copy is encoded by Persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{state: proto.CloneOf(f.state)}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	raw, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("cluster: reading a snapshot: %w", err)
	}
	s := emptyState()
	if err := proto.Unmarshal(raw, s); err != nil {
		return fmt.Errorf("cluster: a damaged snapshot: %w", err)
	}
	if s.Format != stateFormat {
		return fmt.Errorf("cluster: a snapshot of format %d; this gostream reads format %d (run the same gostream version on every worker)", s.Format, stateFormat)
	}
	if s.Jobs == nil {
		s.Jobs = map[string]*clusterpb.Job{}
	}
	f.mu.Lock()
	f.state = s
	f.jobsChangedLocked()
	f.mu.Unlock()
	f.signal()
	notify(f.membersChanged)
	notify(f.placementChanged)
	return nil
}

// fsmSnapshot is a snapshot's content: the State message, encoded
// deterministically. Persist runs concurrently with Apply on its own copy.
type fsmSnapshot struct {
	state *clusterpb.State
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.state)
	if err == nil {
		_, err = sink.Write(raw)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: writing a snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// OffsetsToProto returns o as sorted partition offsets.
func OffsetsToProto(o kafkasrc.Offsets) []*clusterpb.PartitionOffset {
	var out []*clusterpb.PartitionOffset
	for topic, parts := range o {
		for p, off := range parts {
			out = append(out, &clusterpb.PartitionOffset{Topic: topic, Partition: p, Offset: off})
		}
	}
	slices.SortFunc(out, comparePartition)
	return out
}

// OffsetsFromProto returns ps as Offsets; it is never nil.
func OffsetsFromProto(ps []*clusterpb.PartitionOffset) kafkasrc.Offsets {
	o := kafkasrc.Offsets{}
	for _, p := range ps {
		if o[p.Topic] == nil {
			o[p.Topic] = map[int32]int64{}
		}
		o[p.Topic][p.Partition] = p.Offset
	}
	return o
}
