package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
)

// A worker keeps the copy of a state partition it no longer holds on disk
// (release): should the partition come back, the copy may spare a full
// one. Once the job's epoch gives the partition to other workers whose
// copies are current, this copy is dropped: nothing reads it (fencing
// refuses every request outside the epoch's roles) and no plan counts on
// it (the planner makes an owner only of a current copy). A job's
// directory that is left without partitions, on a worker the job's epoch
// gives none, is removed too.

// removingPrefix starts the name under jobs/ of a job's directory being
// removed: jobDirName never makes a name with a '%' followed by 'r'
// (url.PathEscape writes '%' as "%25").
const removingPrefix = "%removing-"

// sweepStates runs until the node stops: whenever a job commits a batch or
// moves to a new epoch, it drops the copies of state partitions this
// worker no longer needs (jobStates.sweep). It starts once the state
// machine applied every entry the node's log held when it started: a
// state older than one this worker served in (a restarted worker's,
// before it caught up) could call needless a partition that a later epoch
// made its own again.
func (n *Node) sweepStates() {
	if err := n.states.clearRemoving(); err != nil {
		n.log.Warn("cluster: removing what an interrupted removal of a job's state left", "err", err)
	}
	start := n.raft.LastIndex()
	wait := time.NewTicker(sweepWait)
	defer wait.Stop()
	for {
		if n.raft.AppliedIndex() >= start {
			wait.Stop()
			for _, job := range n.fsm.Jobs() {
				if err := n.states.sweep(job, n.cfg.Name, func() (*clusterpb.Job, bool) { return n.fsm.Job(job.Name) }); err != nil {
					n.log.Warn("cluster: dropping the state a worker no longer needs", "job", job.Name, "err", err)
				}
			}
		}
		select {
		case <-n.stop:
			return
		case <-n.fsm.PlacementChanged():
		case <-wait.C:
		}
	}
}

// sweepWait is how often sweepStates looks whether the state machine
// caught up with the log, until it has.
const sweepWait = 100 * time.Millisecond

// needless reports whether worker name may drop its copy of job's state
// partition starting at key group first: the job's epoch gives the
// partition to other workers only, its owner (whose copy is current: the
// planner makes an owner only of a current copy) and its standby, if it
// has one, once the job committed the batch from which the standby's copy
// is current (standby_ready_from). A partition the epoch does not name is
// kept.
func needless(job *clusterpb.Job, name string, first int32) bool {
	_, committed := batchLogEnds(job.BatchLog)
	for _, sp := range job.GetAssignment().GetState() {
		if sp.FirstKeyGroup == first {
			return sp.Owner != name && sp.Standby != name && (sp.Standby == "" || committed >= sp.StandbyReadyFrom)
		}
	}
	return false
}

// holdsAny reports whether job's epoch gives worker name a state
// partition to own or stand by for.
func holdsAny(job *clusterpb.Job, name string) bool {
	return slices.ContainsFunc(job.GetAssignment().GetState(), func(sp *clusterpb.StatePartition) bool {
		return sp.Owner == name || sp.Standby == name
	})
}

// sweep drops the partitions of job that this worker, name, keeps on disk
// but does not need (needless), then removes the job's directory if none
// is left and the job's epoch gives the worker none. Each is decided again
// with current, the job as the state machine holds it now, right before
// it goes, with the partition (or every partition and the job's store)
// locked: a request that passed its fencing in a newer epoch giving the
// partition back to this worker either came first, and the partition
// stays, or waits and finds it gone. A partition in use is left for the
// next sweep.
func (s *jobStates) sweep(job *clusterpb.Job, name string, current func() (*clusterpb.Job, bool)) error {
	holds := holdsAny(job, name)
	if holds && !slices.ContainsFunc(job.GetAssignment().GetState(), func(sp *clusterpb.StatePartition) bool { return needless(job, name, sp.FirstKeyGroup) }) {
		return nil // the usual case, each batch: nothing to look for
	}
	js, err := s.onDisk(job)
	if js == nil || err != nil {
		return err
	}
	parts, err := js.provider.Partitions()
	if err != nil {
		return err
	}
	var errs []error
	for _, first := range parts {
		if needless(job, name, int32(first)) {
			errs = append(errs, s.drop(js, job.Name, int32(first), name, current))
		}
	}
	if !holds {
		errs = append(errs, s.remove(js, job.Name, name, current))
	}
	return errors.Join(errs...)
}

// onDisk returns job's store if it is open or its directory exists,
// opening it; nil if neither.
func (s *jobStates) onDisk(job *clusterpb.Job) (*jobState, error) {
	s.mu.Lock()
	js, closed := s.mu.jobs[job.Name], s.mu.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, nil
	case js != nil:
		return js, nil
	}
	if _, err := os.Stat(filepath.Join(s.dir, jobDirName(job.Name), "state")); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return s.job(job)
}

// drop drops partition first of js, the store of job jobName on the
// worker name, if it is not in use and current still finds it needless.
func (s *jobStates) drop(js *jobState, jobName string, first int32, name string, current func() (*clusterpb.Job, bool)) error {
	s.mu.Lock()
	if s.mu.closed || s.mu.jobs[jobName] != js {
		s.mu.Unlock()
		return nil
	}
	p := js.parts[first]
	if p == nil {
		p = &partState{provider: js.provider, first: first}
		js.parts[first] = p
	}
	s.mu.Unlock()
	if !p.mu.TryLock() {
		return nil
	}
	defer p.mu.Unlock()
	job, ok := current()
	if !ok || !needless(job, name, first) {
		return nil
	}
	if p.st != nil {
		if err := p.st.Close(); err != nil {
			return err
		}
		p.st = nil
	}
	if err := js.provider.Drop(int(first)); err != nil {
		return err
	}
	sp := job.Assignment.State[slices.IndexFunc(job.Assignment.State, func(sp *clusterpb.StatePartition) bool { return sp.FirstKeyGroup == first })]
	s.log.Info("cluster: dropped this worker's copy of a state partition it no longer holds", "job", job.Name, "epoch", job.Assignment.Epoch,
		"first_key_group", first, "owner", sp.Owner, "standby", sp.Standby)
	return nil
}

// remove closes js, the store of job jobName on the worker name, and
// removes its directory, if it holds no partition, none is in use and
// current's epoch gives the worker none. The directory is renamed first,
// then deleted: a crash leaves it whole or under its removing name, which
// clearRemoving deletes at the next start.
func (s *jobStates) remove(js *jobState, jobName, name string, current func() (*clusterpb.Job, bool)) error {
	s.mu.Lock()
	defer s.mu.Unlock() // held until the directory is renamed: job opens no store meanwhile
	if s.mu.closed || s.mu.jobs[jobName] != js {
		return nil
	}
	if job, ok := current(); !ok || holdsAny(job, name) {
		return nil
	}
	// The partitions are only tried while jobStates.mu is held: nothing
	// waits for a lock under another.
	var locked []*partState
	defer func() {
		for _, p := range locked {
			p.mu.Unlock()
		}
	}()
	for _, p := range js.parts {
		if !p.mu.TryLock() {
			return nil
		}
		locked = append(locked, p)
	}
	if parts, err := js.provider.Partitions(); err != nil || len(parts) > 0 {
		return err
	}
	delete(s.mu.jobs, jobName)
	for _, p := range locked {
		p.st = nil // the provider closes it
	}
	if err := js.provider.Close(); err != nil {
		return fmt.Errorf("closing the store of job %s before removing it: %w", jobName, err)
	}
	dir := filepath.Dir(js.dir) // jobs/NAME, holding state/
	gone := filepath.Join(s.dir, removingPrefix+filepath.Base(dir))
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("removing the state of job %s: %w", jobName, err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.log.Info("cluster: removed the state of a job this worker holds no partition of", "job", jobName, "dir", dir)
	return os.RemoveAll(gone)
}

// clearRemoving deletes what an interrupted remove left under jobs/.
func (s *jobStates) clearRemoving() error {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), removingPrefix) {
			errs = append(errs, os.RemoveAll(filepath.Join(s.dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// syncDir makes the entries of dir (a rename in it) durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
