package cluster

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memMember is one member of an in-memory Raft group: its stores outlive
// its Raft instance, so it can be restarted with its log.
type memMember struct {
	id    raft.ServerID
	fsm   *FSM
	store *raft.InmemStore
	snaps *raft.InmemSnapshotStore
	trans *raft.InmemTransport
	raft  *raft.Raft
}

type memGroup struct {
	t       *testing.T
	members []*memMember
}

func memConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 100 * time.Millisecond
	c.ElectionTimeout = 100 * time.Millisecond
	c.LeaderLeaseTimeout = 50 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.TrailingLogs = 2 // so a snapshot truncates the log and a lagging member needs InstallSnapshot
	c.SnapshotThreshold = 1 << 30
	c.Logger = hclog.New(&hclog.LoggerOptions{Name: string(id), Level: hclog.Warn, Output: io.Discard})
	return c
}

// newMemGroup bootstraps n members on raft's in-memory transport.
func newMemGroup(t *testing.T, n int) *memGroup {
	g := &memGroup{t: t}
	var servers []raft.Server
	for i := range n {
		id := raft.ServerID(fmt.Sprintf("s%d", i+1))
		m := &memMember{id: id, store: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
		g.members = append(g.members, m)
		servers = append(servers, raft.Server{ID: id, Address: raft.ServerAddress(id)})
	}
	for _, m := range g.members {
		if err := raft.BootstrapCluster(memConfig(m.id), m.store, m.store, m.snaps, g.transport(m), raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		g.start(m)
	}
	t.Cleanup(func() {
		for _, m := range g.members {
			if m.raft != nil {
				m.raft.Shutdown().Error()
			}
		}
	})
	return g
}

// transport gives m a new in-memory transport connected both ways to every
// other member's.
func (g *memGroup) transport(m *memMember) *raft.InmemTransport {
	_, m.trans = raft.NewInmemTransport(raft.ServerAddress(m.id))
	for _, o := range g.members {
		if o != m && o.trans != nil {
			m.trans.Connect(o.trans.LocalAddr(), o.trans)
			o.trans.Connect(m.trans.LocalAddr(), m.trans)
		}
	}
	return m.trans
}

// start starts m's Raft with a new FSM on its stores.
func (g *memGroup) start(m *memMember) {
	m.fsm = NewFSM()
	r, err := raft.NewRaft(memConfig(m.id), m.fsm, m.store, m.store, m.snaps, m.trans)
	if err != nil {
		g.t.Fatal(err)
	}
	m.raft = r
}

// stop shuts m down and disconnects it.
func (g *memGroup) stop(m *memMember) {
	if err := m.raft.Shutdown().Error(); err != nil {
		g.t.Fatal(err)
	}
	m.raft = nil
	for _, o := range g.members {
		if o != m && o.trans != nil {
			o.trans.Disconnect(m.trans.LocalAddr())
		}
	}
	m.trans.DisconnectAll()
}

// restart starts a stopped m again with its stores and a new transport.
func (g *memGroup) restart(m *memMember) {
	g.transport(m)
	g.start(m)
}

// leader waits for exactly one running leader among the running members.
func (g *memGroup) leader() *memMember {
	g.t.Helper()
	var l *memMember
	waitFor(g.t, 10*time.Second, func() error {
		l = nil
		for _, m := range g.members {
			if m.raft != nil && m.raft.State() == raft.Leader {
				if l != nil {
					return fmt.Errorf("two leaders: %s and %s", l.id, m.id)
				}
				l = m
			}
		}
		if l == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return l
}

// apply logs c through the leader, retrying while leadership moves.
func (g *memGroup) apply(c *clusterpb.Command) {
	g.t.Helper()
	waitFor(g.t, 10*time.Second, func() error {
		_, err := applyCommand(g.leader().raft, c, time.Second)
		return err
	})
}

// converged waits until every running member's state equals the leader's.
func (g *memGroup) converged() {
	g.t.Helper()
	l := g.leader()
	waitFor(g.t, 10*time.Second, func() error {
		want := stateBytes(g.t, l.fsm)
		for _, m := range g.members {
			if m.raft != nil && !bytes.Equal(stateBytes(g.t, m.fsm), want) {
				return fmt.Errorf("%s's state differs from the leader's (%s)", m.id, l.id)
			}
		}
		return nil
	})
}

// TestRaftGroupReplicates checks that a 3-member group elects one leader
// and every member applies the leader's commands to the same state.
func TestRaftGroupReplicates(t *testing.T) {
	g := newMemGroup(t, 3)
	g.apply(initCmd())
	g.apply(registerCmd(testJob("wc")))
	g.apply(appendCmd("wc", offsets(0, 0, 10)))
	g.apply(appendCmd("wc", commit(0), offsets(1, 10, 20)))
	g.apply(assignCmd("wc", testAssignment(1)))
	g.converged()
	for _, m := range g.members {
		j, ok := m.fsm.Job("wc")
		if !ok || len(j.BatchLog) != 3 || j.Assignment.GetEpoch() != 1 {
			t.Errorf("%s: job %v", m.id, j)
		}
	}
}

// TestRaftLeaderLoss checks that when the leader stops, the others elect a
// new leader in a later term that keeps the state and takes commands.
func TestRaftLeaderLoss(t *testing.T) {
	g := newMemGroup(t, 3)
	g.apply(initCmd())
	g.apply(registerCmd(testJob("wc")))
	g.converged()
	old := g.leader()
	oldTerm := old.raft.CurrentTerm()
	g.stop(old)
	l := g.leader()
	if l == old || l.raft.CurrentTerm() <= oldTerm {
		t.Fatalf("new leader %s in term %d after %s in term %d", l.id, l.raft.CurrentTerm(), old.id, oldTerm)
	}
	g.apply(appendCmd("wc", offsets(0, 0, 10)))
	g.converged()
	if j, ok := l.fsm.Job("wc"); !ok || len(j.BatchLog) != 1 {
		t.Fatalf("the new leader's job: %v", j)
	}
	g.restart(old)
	g.converged()
}

// TestRaftFollowerRestart checks that a follower stopped while the group
// goes on, and the leader snapshots and trims its log, catches up when it
// restarts with its stores: from the leader's snapshot (Restore) and the
// entries after it.
func TestRaftFollowerRestart(t *testing.T) {
	g := newMemGroup(t, 3)
	g.apply(initCmd())
	g.apply(registerCmd(testJob("wc")))
	g.converged()
	l := g.leader()
	var f *memMember
	for _, m := range g.members {
		if m != l {
			f = m
			break
		}
	}
	g.stop(f)
	g.apply(appendCmd("wc", offsets(0, 0, 10)))
	for id := int64(1); id < 20; id++ {
		g.apply(appendCmd("wc", commit(id-1), offsets(id, id*10, id*10+10)))
	}
	if err := g.leader().raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	g.apply(appendCmd("wc", commit(19)))
	g.restart(f)
	g.converged()
	if snaps, err := f.snaps.List(); err != nil || len(snaps) == 0 {
		t.Errorf("the restarted follower caught up without the leader's snapshot (%v): the test did not exercise Restore", err)
	}
	j, _ := f.fsm.Job("wc")
	if got := jobStatus(j); got.LastCommitted != 19 || got.LastPlanned != 19 {
		t.Errorf("restarted follower: last planned %d, committed %d; want 19, 19", got.LastPlanned, got.LastCommitted)
	}
}
