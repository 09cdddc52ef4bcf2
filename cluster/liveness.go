package cluster

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

// probeInterval is how often the leader asks each member how it is.
const probeInterval = 200 * time.Millisecond

// liveness is the leader's view of the members: when each last answered a
// probe (Control.MemberInfo, every probeInterval) and whether it is down,
// which it is once it has not answered for downAfter. A killed worker
// refuses the probes, a paused (SIGSTOP) or cut-off one lets them hang:
// either way the answers stop, so both are down after downAfter. Raft's
// own heartbeats cannot tell the second case before their transport's
// timeout, and report no last contact per follower.
//
// A member the view has not seen yet, and every member when the node
// becomes the leader, is not down until it has not answered for
// downAfter, but unknown (state) until it answers a probe the view sent.
// The node itself is always up. Its methods are safe for concurrent use.
type liveness struct {
	self      string
	downAfter time.Duration
	log       *slog.Logger
	every     time.Duration // between probe rounds
	// wake starts a round of watchLiveness at once, instead of at its next
	// tick, when the node's leadership or the group's members change: a
	// new leader, or a new member, is probed right away, and a deposed
	// leader forgets its view right away.
	wake chan struct{}
	mu   struct {
		sync.Mutex
		members map[string]*memberLife
		changed chan struct{} // closed and replaced when a member goes down, comes back or is first heard from
	}
}

// memberLife is one member's liveness.
type memberLife struct {
	answered time.Time // of its last answer, or when the view began to expect one
	since    time.Time // when the view began to expect an answer
	heard    bool      // it answered a probe sent since
	down     bool
}

// memberState is a member's liveness as the leader sees it.
type memberState int

const (
	memberUp      memberState = iota // it answered a probe since the node leads
	memberUnknown                    // no answer yet since the node leads, and not down yet
	memberDown                       // no answer for downAfter
)

func newLiveness(self string, downAfter time.Duration, log *slog.Logger) *liveness {
	l := &liveness{self: self, downAfter: downAfter, log: log, every: probeInterval, wake: make(chan struct{}, 1)}
	l.mu.members = map[string]*memberLife{}
	l.mu.changed = make(chan struct{})
	return l
}

// probeNow wakes watchLiveness for a round now; it never blocks.
func (l *liveness) probeNow() {
	select {
	case l.wake <- struct{}{}:
	default: // a round is due already
	}
}

// reset forgets every member: each is up again until it has not answered
// for downAfter from now.
func (l *liveness) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := false
	for _, m := range l.mu.members {
		changed = changed || m.down
	}
	clear(l.mu.members)
	if changed {
		l.changedLocked()
	}
}

// answered records member's answer to a probe sent at sent: a member that
// was down or unknown is up.
func (l *liveness) answered(member string, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.mu.members[member]
	if m == nil {
		return // not a member any more, or the view was reset since
	}
	if sent.After(m.answered) {
		m.answered = sent
	}
	first := !m.heard && !sent.Before(m.since)
	m.heard = m.heard || first
	switch {
	case m.down:
		m.down = false
		l.log.Info("cluster: member is back: it answers again", "member", member)
		l.changedLocked()
	case first: // unknown until now
		l.changedLocked()
	}
}

// silent records that member has not been heard from since at: it is
// down once downAfter passed since then, unless it answers a probe
// before. A new leader so counts the silence of the leader before it,
// which its Raft saw, instead of waiting downAfter from its election.
func (l *liveness) silent(member string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if member == l.self {
		return
	}
	if m := l.mu.members[member]; m == nil {
		l.mu.members[member] = &memberLife{answered: at, since: time.Now()}
	} else if !m.down && at.Before(m.answered) {
		m.answered = at
	}
}

// check brings the view to members, the group's members at now: a new
// one is expected to answer within downAfter, one that has not answered
// for downAfter is down.
func (l *liveness) check(now time.Time, members []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.mu.members {
		if !slices.Contains(members, name) {
			delete(l.mu.members, name)
		}
	}
	for _, name := range members {
		if name == l.self {
			continue
		}
		m := l.mu.members[name]
		switch {
		case m == nil:
			l.mu.members[name] = &memberLife{answered: now, since: now}
		case !m.down && now.Sub(m.answered) >= l.downAfter:
			m.down = true
			l.log.Info("cluster: member is down: it has not answered for "+now.Sub(m.answered).Round(time.Millisecond).String(), "member", name)
			l.changedLocked()
		}
	}
}

func (l *liveness) changedLocked() {
	close(l.mu.changed)
	l.mu.changed = make(chan struct{})
}

// down reports whether member is down and how long ago it last answered
// (0 for the node itself and for a member it does not know).
func (l *liveness) down(member string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.mu.members[member]
	if m == nil {
		return false, 0
	}
	return m.down, time.Since(m.answered)
}

// state is member's liveness: the node itself is up, a member the view
// does not know yet is unknown.
func (l *liveness) state(member string) memberState {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.mu.members[member]
	switch {
	case member == l.self:
		return memberUp
	case m == nil || (!m.heard && !m.down):
		return memberUnknown
	case m.down:
		return memberDown
	}
	return memberUp
}

// live reports whether member is not down.
func (l *liveness) live(member string) bool {
	d, _ := l.down(member)
	return !d
}

// changes returns a channel closed at the next time a member goes down,
// comes back, or answers for the first time since the node leads (it was
// unknown).
func (l *liveness) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.changed
}

// probeResult is a probe's outcome: whether member answered the probe
// sent at sent.
type probeResult struct {
	member string
	sent   time.Time
	ok     bool
}

// watchLiveness keeps n.liveness while n is the leader: it probes every
// other member every probe interval and as soon as n's leadership or
// the members change (probeNow), at most one probe in flight per member, each bounded by
// downAfter, and resets the view whenever n is not the leader. It returns
// once n stops, after its probes returned.
func (n *Node) watchLiveness() {
	l := n.liveness
	t := time.NewTicker(l.every)
	defer t.Stop()
	results := make(chan probeResult)
	inFlight := map[string]bool{}
	defer func() {
		for len(inFlight) > 0 {
			delete(inFlight, (<-results).member)
		}
	}()
	leading := false
	for {
		select {
		case <-n.stop:
			return
		case r := <-results:
			delete(inFlight, r.member)
			if r.ok && leading {
				l.answered(r.member, r.sent)
			}
			continue
		case <-l.wake:
		case <-t.C:
		}
		if n.raft.State() != raft.Leader {
			if leading {
				l.reset()
			}
			leading = false
			continue
		}
		leading = true
		now := time.Now()
		var names []string
		for _, m := range n.fsm.Members() {
			names = append(names, m.Name)
			if m.Name == n.cfg.Name || inFlight[m.Name] {
				continue
			}
			inFlight[m.Name] = true
			go func() {
				ctx, cancel := context.WithTimeout(n.stopCtx, l.downAfter)
				defer cancel()
				_, err := n.clients.control(m.Address).MemberInfo(ctx, &clusterpb.MemberInfoRequest{Header: n.header(0)})
				results <- probeResult{member: m.Name, sent: now, ok: err == nil}
			}()
		}
		l.check(now, names)
	}
}

// awaitHeard waits until none of members is unknown to l (each answered a
// probe since the node leads, or is down), at most bound, or until ctx
// ends.
func (l *liveness) awaitHeard(ctx context.Context, members []string, bound time.Duration) {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		changed := l.changes()
		if !slices.ContainsFunc(members, func(m string) bool { return l.state(m) == memberUnknown }) {
			return
		}
		select {
		case <-changed:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
