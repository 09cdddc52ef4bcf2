package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A member that holds the only current copy of a state partition (one
// replica, or a standby not current yet) is drained before its removal:
// the leader marks it draining, so the jobs' drivers plan it no new work
// and move its state partitions off it standby first at their next batch
// boundaries (nextAssignment: the partition gets a standby on another
// worker, a temporary one with one replica, whose copy the next batch's
// reduce makes current, and which then takes it over); once it holds no
// only copy, it is removed.

// memberDraining is the memberState, beside the liveness view's, of a
// member that is up and being drained: the planner gives it no new work.
const memberDraining = memberDown + 1

// drains is the set of members the leader is draining.
type drains struct {
	mu    sync.Mutex
	names map[string]int // by name, how many removals drain it
}

// add marks name draining until the returned func is called.
func (d *drains) add(name string) (done func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names == nil {
		d.names = map[string]int{}
	}
	d.names[name]++
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.names[name]--; d.names[name] == 0 {
			delete(d.names, name)
		}
	}
}

func (d *drains) has(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.names[name] > 0
}

// planState is how the jobs' drivers see member when they plan an epoch:
// its liveness, and draining when it is up and being drained.
func (n *Node) planState(member string) memberState {
	if st := n.liveness.state(member); st != memberUp || !n.drains.has(member) {
		return st
	}
	return memberDraining
}

// drainPoll is how often drain looks whether the member is drained;
// drainStall is how long it waits while no job holding one of the
// member's only copies commits a batch or changes its epoch (an idle job
// moves nothing: a partition moves with a batch's commit).
const (
	drainPoll  = 50 * time.Millisecond
	drainStall = 5 * time.Second
)

// drain moves every state partition of which name holds the only current
// copy off it and returns once none is left (nil at once when it holds
// none), with name still draining until done is called: the caller
// removes it meanwhile. It gives up, with an error saying what is left and
// why, when a job holding such a partition is not running (no driver moves
// it), when name is not up within drainStall (its copy cannot be sent),
// when no such job commits a batch or changes its epoch for drainStall, or
// shortly before ctx ends; it fails Unavailable (ErrNoLeader: retry) when
// the node loses its leadership, as the drain is the leader's.
func (n *Node) drain(ctx context.Context, name string) (done func(), err error) {
	done = func() {}
	if checkNoOnlyCopy(n.fsm.Jobs(), name) == nil {
		return done, nil
	}
	for _, j := range n.fsm.Jobs() {
		if only := onlyCopies(j, name); len(only) > 0 && j.State != clusterpb.JobState_RUNNING {
			return done, fmt.Errorf("%w: %s holds the only current copy of job %s's state partitions %s, and the job is %s: no driver moves them; submit the job again (it resumes from its batch log and moves them), then remove %s",
				ErrOnlyCopy, name, j.Name, strings.Join(only, ", "), strings.ToLower(j.State.String()), name)
		}
	}
	if err := n.awaitUp(ctx, name); err != nil {
		return done, err
	}
	done = n.drains.add(name)
	start := time.Now()
	n.log.Info("cluster: draining a member before its removal: its state partitions move off it at the jobs' next batches", "name", name)
	deadline := start.Add(time.Minute)
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(-time.Second) // to answer before the caller gives up
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	var progress string // the commits and epochs of the jobs still to drain
	moved := start
	for {
		jobs := n.fsm.Jobs()
		held := onlyCopiesOf(jobs, name)
		if len(held) == 0 {
			n.log.Info("cluster: drained a member before its removal", "name", name, "took", time.Since(start))
			return done, nil
		}
		if n.raft.State() != raft.Leader {
			// The new leader's drivers know nothing of this drain: the
			// caller asks the new leader, which drains name itself.
			done()
			return func() {}, status.Errorf(codes.Unavailable, "%v: %s lost its leadership while draining %s (retry)", ErrNoLeader, n.cfg.Name, name)
		}
		if p := drainProgress(jobs, name); p != progress {
			progress, moved = p, time.Now()
		}
		if now := time.Now(); !now.Before(deadline) || now.Sub(moved) >= drainStall {
			done()
			return func() {}, fmt.Errorf("%w: %s was drained for %v and still holds the only current copy of %s: a partition moves off it standby first, once a batch committed with the new standby, and a job commits a batch only when new input arrives (none committed for %v; gostream jobs status); run the removal again once the jobs have input",
				ErrOnlyCopy, name, time.Since(start).Round(time.Millisecond), strings.Join(held, "; "), now.Sub(moved).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			done()
			return func() {}, ctx.Err()
		case <-t.C:
		}
	}
}

// awaitUp returns once the leader's liveness view has name up: a leader
// elected a moment ago has heard no probe answer yet (unknown), and a
// probe slow on a loaded machine may have marked it down for a moment. It
// fails when name is not up for drainStall, or when ctx ends.
func (n *Node) awaitUp(ctx context.Context, name string) error {
	deadline := time.Now().Add(drainStall)
	for n.liveness.state(name) != memberUp {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w: %s holds the only current copy of state partitions and has not answered the leader for %v: its partitions cannot be copied off it; start it again, then remove it", ErrOnlyCopy, name, drainStall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
	return nil
}

// onlyCopies lists (by index) the state partitions of j of which name
// holds the only current copy: it owns them, and they have no standby
// holding a full copy.
func onlyCopies(j *clusterpb.Job, name string) []string {
	_, committed := batchLogEnds(j.BatchLog)
	if committed < 0 {
		return nil // no state yet
	}
	var only []string
	for i, sp := range j.GetAssignment().GetState() {
		if sp.Owner == name && (sp.Standby == "" || committed < sp.StandbyReadyFrom) {
			only = append(only, fmt.Sprint(i))
		}
	}
	return only
}

// onlyCopiesOf names, job by job, the state partitions of jobs of which
// name holds the only current copy.
func onlyCopiesOf(jobs []*clusterpb.Job, name string) []string {
	var held []string
	for _, j := range jobs {
		if only := onlyCopies(j, name); len(only) > 0 {
			held = append(held, fmt.Sprintf("job %s's state partitions %s", j.Name, strings.Join(only, ", ")))
		}
	}
	return slices.Clip(held)
}

// drainProgress sums up where the jobs holding one of name's only copies
// are: each one's last committed batch and epoch.
func drainProgress(jobs []*clusterpb.Job, name string) string {
	var b strings.Builder
	for _, j := range jobs {
		if len(onlyCopies(j, name)) > 0 {
			_, committed := batchLogEnds(j.BatchLog)
			fmt.Fprintf(&b, "%s:%d:%d ", j.Name, committed, j.GetAssignment().GetEpoch())
		}
	}
	return b.String()
}
