package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/status"
)

const (
	// retainLeaderChanges is how many leader changes a member keeps for
	// cluster status.
	retainLeaderChanges = 20
	// reachTimeout bounds each member's answer when a member checks whom
	// it reaches (after losing the leadership, or without a leader).
	reachTimeout = 500 * time.Millisecond
	// noLeaderWarnAfter is how long a member goes without a leader before
	// it says so in its log; it says so again every noLeaderWarnEvery.
	noLeaderWarnAfter = 2 * time.Second
	noLeaderWarnEvery = 30 * time.Second
)

// leaderLog is the last leader changes a member saw, oldest first. Safe
// for concurrent use.
type leaderLog struct {
	mu struct {
		sync.Mutex
		changes []*clusterpb.LeaderChange
	}
}

// add records that leader ("" for none) leads in term from now, unless
// the last change says so already; reason may be "".
func (l *leaderLog) add(leader string, term uint64, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.mu.changes); n > 0 {
		if last := l.mu.changes[n-1]; last.Leader == leader && last.Term == term {
			return
		}
	}
	l.mu.changes = append(l.mu.changes, &clusterpb.LeaderChange{TimeMs: time.Now().UnixMilli(), Leader: leader, Term: term, Reason: reason})
	if n := len(l.mu.changes); n > retainLeaderChanges {
		l.mu.changes = slices.Delete(l.mu.changes, 0, n-retainLeaderChanges)
	}
}

// explain gives the last change to no leader reason, unless it has one
// already, or records one with reason when the last change is another.
func (l *leaderLog) explain(term uint64, reason string) {
	l.mu.Lock()
	if n := len(l.mu.changes); n > 0 && l.mu.changes[n-1].Leader == "" {
		if l.mu.changes[n-1].Reason == "" {
			l.mu.changes[n-1].Reason = reason
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.add("", term, reason)
}

// lastLeader is the last leader recorded, "" if none.
func (l *leaderLog) lastLeader() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range slices.Backward(l.mu.changes) {
		if c.Leader != "" {
			return c.Leader
		}
	}
	return ""
}

// list returns a copy of the changes, oldest first.
func (l *leaderLog) list() []*clusterpb.LeaderChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*clusterpb.LeaderChange, len(l.mu.changes))
	for i, c := range l.mu.changes {
		out[i] = &clusterpb.LeaderChange{TimeMs: c.TimeMs, Leader: c.Leader, Term: c.Term, Reason: c.Reason}
	}
	return out
}

// watchLeaders records the leader changes raft observes until the node
// stops. On the node's own election it records how long no leader had
// been heard from, and tells the liveness view that the previous leader
// has been silent since then.
func (n *Node) watchLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.stop:
			return
		case o := <-ch:
			leader := string(o.Data.(raft.LeaderObservation).LeaderID)
			reason := ""
			if leader == n.cfg.Name {
				reason = "elected"
				if last := n.raft.LastContact(); !last.IsZero() {
					reason = fmt.Sprintf("elected: no leader heard from for %v", time.Since(last).Round(time.Millisecond))
					if prev := n.leaders.lastLeader(); prev != "" {
						n.liveness.silent(prev, last)
					}
				}
			}
			n.leaders.add(leader, n.raft.CurrentTerm(), reason)
		}
	}
}

// reach asks every other member for its MemberInfo, each within
// reachTimeout, and returns what each answered (nil for a member that did
// not answer) and the error of each that did not.
func (n *Node) reach(ctx context.Context) (infos []*clusterpb.MemberInfoResponse, errs []error, servers []raft.Server) {
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	infos, errs = make([]*clusterpb.MemberInfoResponse, len(servers)), make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		if string(srv.ID) == n.cfg.Name {
			infos[i] = n.memberInfo()
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, reachTimeout)
			defer cancel()
			infos[i], errs[i] = n.clients.control(string(srv.Address)).MemberInfo(ctx, &clusterpb.MemberInfoRequest{Header: n.header(0)})
		})
	}
	wg.Wait()
	return infos, errs, servers
}

// whyNoLeader describes, after n lost its leadership or while it knows no
// leader, whom it reaches: a member in a newer term (another leader was
// elected: this member was cut off or paused), or too few members for a
// majority, naming those it cannot reach.
func (n *Node) whyNoLeader(ctx context.Context) string {
	infos, errs, servers := n.reach(ctx)
	var unreachable, newer []string
	reached := 0
	for i, srv := range servers {
		switch {
		case infos[i] != nil && infos[i].Term > n.raft.CurrentTerm():
			newer = append(newer, fmt.Sprintf("%s is %s in term %d", srv.ID, infos[i].State, infos[i].Term))
			reached++
		case infos[i] != nil:
			reached++
		case errors.Is(errs[i], ErrStaleTerm) || strings.Contains(status.Convert(errs[i]).Message(), ErrStaleTerm.Error()):
			newer = append(newer, fmt.Sprintf("%s: %s", srv.ID, status.Convert(errs[i]).Message()))
			reached++
		default:
			unreachable = append(unreachable, fmt.Sprintf("%s at %s (%s)", srv.ID, srv.Address, status.Convert(errs[i]).Message()))
		}
	}
	quorum := len(servers)/2 + 1
	var b strings.Builder
	if len(newer) > 0 {
		fmt.Fprintf(&b, "a newer term began without this member (%s)", strings.Join(newer, "; "))
	}
	if reached < quorum {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "no majority: %s reaches %d of %d members, itself included, and a leader needs %d; it cannot reach %s",
			n.cfg.Name, reached, len(servers), quorum, strings.Join(unreachable, ", "))
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "%s reaches %d of %d members: an election is under way", n.cfg.Name, reached, len(servers))
	}
	return b.String()
}

// lostLeadership logs why n lost the leadership of term and keeps it for
// cluster status.
func (n *Node) lostLeadership(term uint64) {
	why := n.whyNoLeader(n.stopCtx)
	n.leaders.explain(n.raft.CurrentTerm(), "lost the leadership of term "+fmt.Sprint(term)+": "+why)
	n.log.Warn("cluster: lost leadership: "+why, "name", n.cfg.Name, "term", term)
}

// checkLeaderKnown logs, while n knows no leader for noLeaderWarnAfter and
// then every noLeaderWarnEvery, that it makes no progress and why; and
// once it knows one again, after how long. since is when n last knew one
// (zero while it does), warned when it last said so. Before it logs, it
// asks the members whether n was removed from the group, and fails n if
// so: a member removed while running learns it from its state machine
// only if the removal's commit reaches it before the leader drops it from
// Raft's configuration, and otherwise hears from no leader again, every
// vote it asks for refused.
func (n *Node) checkLeaderKnown(since, warned *time.Time) {
	if _, id := n.raft.LeaderWithID(); id != "" {
		if !warned.IsZero() {
			n.log.Info("cluster: a leader is reachable again", "name", n.cfg.Name, "leader", id, "after", time.Since(*since).Round(time.Millisecond))
		}
		*since, *warned = time.Time{}, time.Time{}
		return
	}
	now := time.Now()
	if since.IsZero() {
		*since = now
	}
	if now.Sub(*since) < noLeaderWarnAfter || !warned.IsZero() && now.Sub(*warned) < noLeaderWarnEvery {
		return
	}
	*warned = now
	if err := n.helloPeers(n.stopCtx, n.configPeers()); errors.Is(err, ErrRemoved) {
		n.fail(err)
		return
	}
	why := n.whyNoLeader(n.stopCtx)
	n.leaders.explain(n.raft.CurrentTerm(), "no leader: "+why)
	n.log.Warn("cluster: no leader reachable from this member for "+now.Sub(*since).Round(time.Second).String()+"; it makes no progress: "+why,
		"name", n.cfg.Name, "term", n.raft.CurrentTerm(), "state", n.raft.State().String())
}
