package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/engine"
	"github.com/gostream/gostream/internal/embedtest"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

func addMemberCmd(name, addr string) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_AddMember{AddMember: &clusterpb.AddMember{Member: &clusterpb.Member{Name: name, Address: addr}}}}
}

func removeMemberCmd(name string) *clusterpb.Command {
	return &clusterpb.Command{Kind: &clusterpb.Command_RemoveMember{RemoveMember: &clusterpb.RemoveMember{Name: name}}}
}

func memberList(f *FSM) string {
	var out []string
	for _, m := range f.Members() {
		out = append(out, m.Name+"="+m.Address)
	}
	return strings.Join(out, ",")
}

// TestFSMMembers checks AddMember and RemoveMember: a member joins sorted
// by name, a retried join is a no-op, a taken name or address is refused,
// a removal is recorded with its log index so that a worker that joined
// later under the same name is not the one removed, the last member
// stays, and a snapshot keeps the removals.
func TestFSMMembers(t *testing.T) {
	a := newFSMApplier(t)
	if err := a.apply(addMemberCmd("s4", "127.0.1.4:7077")); !errors.Is(err, ErrRefused) {
		t.Fatalf("AddMember before Init = %v, want ErrRefused", err)
	}
	a.mustApply(initCmd())
	a.mustApply(addMemberCmd("s0", "127.0.1.9:7077"))
	a.mustApply(addMemberCmd("s0", "127.0.1.9:7077")) // a retried join
	if got, want := memberList(a.f), "s0=127.0.1.9:7077,s1=127.0.1.1:7077,s2=127.0.1.2:7077,s3=127.0.1.3:7077"; got != want {
		t.Fatalf("members %s, want %s", got, want)
	}
	for _, c := range []struct{ name, addr, want string }{
		{"s1", "127.0.1.8:7077", "s1 is a member at 127.0.1.1:7077"},
		{"s5", "127.0.1.2:7077", "s2 uses the address 127.0.1.2:7077"},
	} {
		err := a.apply(addMemberCmd(c.name, c.addr))
		if !errors.Is(err, ErrMemberExists) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddMember %s at %s = %v, want ErrMemberExists saying %q", c.name, c.addr, err, c.want)
		}
	}

	a.mustApply(removeMemberCmd("s2"))
	removedAt := a.index
	a.mustApply(removeMemberCmd("s2")) // a retried removal
	a.mustApply(removeMemberCmd("s9")) // not a member: nothing to do
	if got, want := memberList(a.f), "s0=127.0.1.9:7077,s1=127.0.1.1:7077,s3=127.0.1.3:7077"; got != want {
		t.Fatalf("members %s, want %s", got, want)
	}
	if !a.f.Removed("s2", 0) || a.f.Removed("s1", 0) || a.f.Removed("s9", 0) {
		t.Fatalf("Removed: s2 %v, s1 %v, s9 %v; want only s2", a.f.Removed("s2", 0), a.f.Removed("s1", 0), a.f.Removed("s9", 0))
	}
	a.mustApply(addMemberCmd("s2", "127.0.1.7:7077"))
	joinedAt := a.index
	if a.f.Removed("s2", joinedAt) {
		t.Error("the s2 that joined after the removal counts as removed")
	}
	if !a.f.Removed("s2", removedAt-1) {
		t.Error("the s2 that joined before the removal does not count as removed")
	}

	for _, n := range []string{"s0", "s1", "s2"} {
		a.mustApply(removeMemberCmd(n))
	}
	if err := a.apply(removeMemberCmd("s3")); !errors.Is(err, ErrLastMember) {
		t.Fatalf("removing the last member = %v, want ErrLastMember", err)
	}

	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(stateBytes(t, a.f)))); err != nil {
		t.Fatal(err)
	}
	if memberList(g) != "s3=127.0.1.3:7077" || !g.Removed("s2", joinedAt) || !g.Removed("s0", 0) {
		t.Fatalf("restored: members %s, s2 removed %v", memberList(g), g.Removed("s2", joinedAt))
	}
	select {
	case <-g.MembersChanged():
	default:
		t.Error("Restore did not signal MembersChanged")
	}
}

// startJoiner starts a worker named name on a free address that joins the
// group through the members at via.
func (g *nodeGroup) startJoiner(name string, via ...string) (Config, *Node, error) {
	cfg := g.cfgs[0]
	cfg.Name, cfg.Listen, cfg.DataDir, cfg.Peers, cfg.Join = name, freeAddrs(g.t, 1)[0], filepath.Join(g.t.TempDir(), name), nil, via
	cfg.Logger = slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	n, err := Start(context.Background(), cfg)
	if n != nil {
		g.t.Cleanup(func() { n.Close() })
	}
	return cfg, n, err
}

// waitMembers waits until the status through addrs names exactly names,
// each reached by the leader.
func (g *nodeGroup) waitMembers(addrs []string, names ...string) *clusterpb.StatusResponse {
	return g.waitStatus(addrs, func(st *clusterpb.StatusResponse) error {
		var got []string
		for _, m := range st.Members {
			got = append(got, m.Member.GetName())
		}
		if !slices.Equal(got, names) {
			return fmt.Errorf("members %v, want %v", got, names)
		}
		return allReachable(st)
	})
}

// waitFailed waits until n fails and returns its error.
func waitFailed(t *testing.T, n *Node) error {
	t.Helper()
	select {
	case <-n.Failed():
		return n.Err()
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not fail within 20s", n.cfg.Name)
		return nil
	}
}

// TestNodeJoinAndRemove grows a 3-worker group with a 4th through a
// follower: it gets the log (a job registered before it joined), the
// state machine's member and a Raft vote, restarts from its data
// directory without --join, and is removed again: it fails with
// ErrRemoved and its data directory is refused from then on. Then the
// leader removes itself: it hands its leadership over first.
func TestNodeJoinAndRemove(t *testing.T) {
	g := newNodeGroup(t, 3)
	st := g.waitStatus(g.addrs(), allReachable)
	c := NewClient(g.addrs())
	defer c.Close()
	if _, err := c.RegisterJob(context.Background(), wordcountJob(t, "wc")); err != nil {
		t.Fatal(err)
	}
	var follower string
	for _, cfg := range g.cfgs {
		if cfg.Name != st.Leader {
			follower = cfg.Listen
		}
	}
	cfg, s4, err := g.startJoiner("s4", follower)
	if err != nil {
		t.Fatalf("joining through follower %s: %v", follower, err)
	}
	addrs := append(g.addrs(), cfg.Listen)
	g.waitMembers(addrs, "s1", "s2", "s3", "s4")
	waitFor(t, 10*time.Second, func() error {
		if _, ok := s4.FSM().Job("wc"); !ok {
			return errors.New("s4 has no job wc")
		}
		if got := memberList(s4.FSM()); !strings.Contains(got, "s4="+cfg.Listen) {
			return fmt.Errorf("s4's members are %s", got)
		}
		return nil
	})
	if s4.ClusterID() != g.nodes[0].ClusterID() {
		t.Fatalf("s4 joined cluster %s, the group is %s", s4.ClusterID(), g.nodes[0].ClusterID())
	}

	// Restarted from its data directory, without --join.
	s4.Close()
	restart := cfg
	restart.Join = nil
	if s4, err = Start(context.Background(), restart); err != nil {
		t.Fatalf("restarting s4 without --join: %v", err)
	}
	defer s4.Close()
	withPeers := restart
	withPeers.Listen = freeAddrs(t, 1)[0]
	withPeers.Peers = []Peer{{Name: "s4", Addr: withPeers.Listen}}
	if _, err := Start(context.Background(), withPeers); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "without --peers") {
		t.Errorf("starting s4's data directory with --peers = %v, want ErrConfig saying to restart without --peers", err)
	}
	g.waitMembers(addrs, "s1", "s2", "s3", "s4")

	members, err := c.RemoveMember(context.Background(), "s4")
	if err != nil {
		t.Fatalf("removing s4: %v", err)
	}
	if got := memberNames(members); got != "s1, s2, s3" {
		t.Fatalf("members after removing s4: %s", got)
	}
	if err := waitFailed(t, s4); !errors.Is(err, ErrRemoved) {
		t.Fatalf("s4 failed with %v, want ErrRemoved", err)
	}
	s4.Close()
	if _, err := Start(context.Background(), restart); !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "--join") || !strings.Contains(err.Error(), restart.DataDir) {
		t.Fatalf("restarting removed s4 = %v, want ErrRemoved naming its data directory and --join", err)
	}
	if _, err := c.RemoveMember(context.Background(), "s4"); err != nil {
		t.Fatalf("removing s4 again (a retry) = %v, want no error", err)
	}
	g.waitMembers(g.addrs(), "s1", "s2", "s3")

	leader := g.leader()
	if _, err := c.RemoveMember(context.Background(), leader.cfg.Name); err != nil {
		t.Fatalf("removing the leader %s: %v", leader.cfg.Name, err)
	}
	if err := waitFailed(t, leader); !errors.Is(err, ErrRemoved) {
		t.Fatalf("the removed leader failed with %v, want ErrRemoved", err)
	}
	var left []string
	for _, cfg := range g.cfgs {
		if cfg.Name != leader.cfg.Name {
			left = append(left, cfg.Name)
		}
	}
	st = g.waitMembers(g.addrs(), left...)
	if st.Leader == leader.cfg.Name {
		t.Fatalf("leader is still %s", st.Leader)
	}
}

// TestRemovedMemberAsksPeers: a worker removed while running that does
// not learn it from its log (its state machine held here; on a loaded
// machine the removal's commit may not reach it before the leader drops
// it from Raft's configuration) hears from no leader again, asks the
// members, which say it was removed, and fails with ErrRemoved (before:
// it kept asking for votes, refused, until stopped).
func TestRemovedMemberAsksPeers(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	cfg, s4, err := g.startJoiner("s4", g.addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	g.waitMembers(append(g.addrs(), cfg.Listen), "s1", "s2", "s3", "s4")
	s4.fsm.mu.Lock() // s4 applies no entry from now on
	held := true
	release := func() {
		if held {
			held = false
			s4.fsm.mu.Unlock()
		}
	}
	defer release() // before the cleanups close s4
	c := NewClient(g.addrs())
	defer c.Close()
	if _, err := c.RemoveMember(context.Background(), "s4"); err != nil {
		t.Fatalf("removing s4: %v", err)
	}
	if err := waitFailed(t, s4); !errors.Is(err, ErrRemoved) {
		t.Fatalf("s4 failed with %v, want ErrRemoved", err)
	}
}

// TestNodeJoinRefused checks the joins the leader refuses, each with an
// error naming the cause, leaving the joiner's data directory as it was:
// a name taken, an address taken, other registered functions, an
// unreachable cluster, --join with --peers, and a joiner the leader
// cannot reach.
func TestNodeJoinRefused(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	s3 := g.cfgs[2]
	g.nodes[2].Close() // its address is a member's, free to bind
	g.waitStatus(g.addrs()[:2], func(st *clusterpb.StatusResponse) error {
		if st.Leader == "" || st.Leader == "s3" {
			return fmt.Errorf("leader %q", st.Leader)
		}
		return nil
	})

	join := func(name, addr string, configure func(*Config)) (string, error) {
		cfg := g.cfgs[0]
		cfg.Name, cfg.Listen, cfg.Peers, cfg.Join = name, addr, nil, g.addrs()[:2]
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
		configure(&cfg)
		n, err := Start(context.Background(), cfg)
		if n != nil {
			n.Close()
			t.Fatalf("%s joined at %s", name, addr)
		}
		return cfg.DataDir, err
	}
	for _, c := range []struct {
		what, name, addr string
		configure        func(*Config)
		is               error
		want             string
	}{
		{"a taken name", "s1", freeAddrs(t, 1)[0], func(*Config) {}, ErrMemberExists, "Raft member s1 is at"},
		{"a taken address", "s9", s3.Listen, func(*Config) {}, ErrMemberExists, "Raft member s3 is at " + s3.Listen},
		{"other functions", "s9", freeAddrs(t, 1)[0], func(c *Config) { c.Registered = func() []string { return []string{"job other"} } }, nil, "only s9 has [job other]"},
		{"an unreachable cluster", "s9", freeAddrs(t, 1)[0], func(c *Config) { c.Join = freeAddrs(t, 1) }, ErrUnreachable, "--join"},
		{"--join with --peers", "s9", freeAddrs(t, 1)[0], func(c *Config) { c.Peers = []Peer{{Name: "s9", Addr: c.Listen}} }, ErrConfig, "--peers and --join together"},
	} {
		dir, err := join(c.name, c.addr, c.configure)
		if err == nil || (c.is != nil && !errors.Is(err, c.is) && !strings.Contains(err.Error(), c.is.Error())) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("joining with %s: %v, want %v saying %q", c.what, err, c.is, c.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("joining with %s left its data directory %s: %v", c.what, dir, err)
		}
	}
	// A worker the leader cannot reach would count in every quorum.
	leader := g.leader()
	free := freeAddrs(t, 1)[0]
	if _, err := leader.addMember(context.Background(), &clusterpb.Member{Name: "s9", Address: free}, leader.registered()); err == nil || !strings.Contains(err.Error(), "cannot reach it at "+free) {
		t.Errorf("adding s9 at %s, where nothing listens: %v, want an error saying the leader cannot reach it", free, err)
	}
	st := g.waitStatus(g.addrs()[:2], func(st *clusterpb.StatusResponse) error { return nil })
	if len(st.Members) != 3 {
		t.Fatalf("after refused joins the Raft group has %d members: %v", len(st.Members), st.Members)
	}
	if got := memberList(g.nodes[0].FSM()); strings.Contains(got, "s9") {
		t.Fatalf("after refused joins the members are %s", got)
	}
}

// TestNodeRemoveRefused checks the removals the leader refuses with an
// error naming the cause: an unknown name, below a quorum of answering
// members, and the last member; and that a worker removed while it was
// down is refused when it starts again.
func TestNodeRemoveRefused(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	c := NewClient(g.addrs())
	defer c.Close()
	if _, err := c.RemoveMember(context.Background(), "s9"); err == nil || !strings.Contains(err.Error(), "s9 is not a member") || !strings.Contains(err.Error(), "s1, s2, s3") {
		t.Errorf("removing s9 = %v, want an error naming the members", err)
	}

	// s3 down: removing s2 would leave s1 and s3 with one answering.
	down := slices.IndexFunc(g.nodes, func(n *Node) bool { return n.raft.State() != raft.Leader })
	name := g.cfgs[down].Name
	g.nodes[down].Close()
	other := ""
	for _, cfg := range g.cfgs {
		if cfg.Name != name {
			other = cfg.Name // the leader or the other follower
		}
	}
	_, err := c.RemoveMember(context.Background(), other)
	if !errors.Is(err, ErrQuorum) && (err == nil || !strings.Contains(err.Error(), ErrQuorum.Error())) {
		t.Fatalf("removing %s with %s down = %v, want ErrQuorum", other, name, err)
	}
	if !strings.Contains(err.Error(), "not answering: "+name) {
		t.Errorf("removing %s with %s down = %v, want it to name %s", other, name, err, name)
	}

	// Removing the member that is down works, and it is refused when it
	// starts again.
	if _, err := c.RemoveMember(context.Background(), name); err != nil {
		t.Fatalf("removing %s, which is down: %v", name, err)
	}
	cfg := g.cfgs[down]
	cfg.Peers = nil
	n, err := Start(context.Background(), cfg)
	if n != nil {
		n.Close()
	}
	if !errors.Is(err, ErrRemoved) {
		t.Fatalf("restarting %s, removed while it was down = %v, want ErrRemoved", name, err)
	}
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, identityName))
	if err != nil || !bytes.Contains(raw, []byte(`"removed": true`)) {
		t.Fatalf("%s's identity after the refused restart: %s %v; want it marked removed", name, raw, err)
	}

	// A member owning a job's state partition without a standby that holds
	// a full copy keeps the only copy: removing it would lose state.
	leader := g.leader()
	owner := leader.cfg.Name
	j := testJob("wc")
	a := &clusterpb.Assignment{Epoch: 1, State: []*clusterpb.StatePartition{{FirstKeyGroup: 0, EndKeyGroup: j.KeyGroups, Owner: owner}}}
	for _, cmd := range []*clusterpb.Command{registerCmd(j), assignCmd("wc", a), appendCmd("wc", offsets(0, 0, 5), commit(0))} {
		if err := leader.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.RemoveMember(context.Background(), owner); err == nil || !strings.Contains(err.Error(), ErrOnlyCopy.Error()) || !strings.Contains(err.Error(), "job wc's state partitions 0") {
		t.Errorf("removing %s, which holds job wc's only copy = %v, want ErrOnlyCopy naming the partition", owner, err)
	}

	one := newNodeGroup(t, 1)
	one.waitStatus(one.addrs(), allReachable)
	oc := NewClient(one.addrs())
	defer oc.Close()
	if _, err := oc.RemoveMember(context.Background(), "s1"); err == nil || !strings.Contains(err.Error(), "last member") {
		t.Errorf("removing the only member = %v, want an error saying it is the last", err)
	}
}

// TestCheckNoOnlyCopy: a member may be removed unless it owns a state
// partition of a job with committed batches whose standby holds no full
// copy (none, or not ready since it was added).
func TestCheckNoOnlyCopy(t *testing.T) {
	job := func(committed int64, sps ...*clusterpb.StatePartition) *clusterpb.Job {
		j := testJob("wc")
		j.Assignment = &clusterpb.Assignment{Epoch: 1, State: sps}
		for b := int64(0); b <= committed; b++ {
			j.BatchLog = append(j.BatchLog, offsets(b, b, b+1), commit(b))
		}
		return j
	}
	sp := func(owner, standby string, readyFrom int64) *clusterpb.StatePartition {
		return &clusterpb.StatePartition{Owner: owner, Standby: standby, StandbyReadyFrom: readyFrom}
	}
	for _, c := range []struct {
		what string
		job  *clusterpb.Job
		name string
		want string // "" for no error
	}{
		{"no batch committed", job(-1, sp("s1", "", 0)), "s1", ""},
		{"standby ready", job(3, sp("s1", "s2", 2), sp("s2", "s1", 0)), "s1", ""},
		{"the standby itself", job(3, sp("s1", "s2", 5)), "s2", ""},
		{"standby not ready", job(3, sp("s2", "s3", 0), sp("s1", "s2", 4)), "s1", "job wc's state partitions 1 ("},
		{"no standby", job(0, sp("s1", "", 0), sp("s1", "", 0)), "s1", "job wc's state partitions 0, 1 ("},
	} {
		err := checkNoOnlyCopy([]*clusterpb.Job{c.job}, c.name)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: removing %s: %v, want no error", c.what, c.name, err)
		case c.want != "" && (!errors.Is(err, ErrOnlyCopy) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: removing %s: %v, want ErrOnlyCopy naming %q", c.what, c.name, err, c.want)
		}
	}
}

// TestBatchDriverWorkerRemoved: a complete-mode word count runs batch after
// batch on three in-process workers; a worker that is not the leader stops
// answering (closed) while the leader does not hold it down (DownAfter of
// an hour), so a batch's tasks on it keep failing; it is removed then (the
// operator replacing a lost machine). The driver treats a worker that is
// no longer a member as lost: it logs an epoch without it ("s2 removed"),
// runs the batch in flight again, and the counts stay exact. Before, the
// batch was tried again in the removed worker's epoch until the job
// failed.
func TestBatchDriverWorkerRemoved(t *testing.T) {
	rng := testseed.Rand(t)
	brokers := embedtest.Start(t, "logs", 3)
	g := newNodeGroupWith(t, 3, func(c *Config) {
		c.Driver = BatchDriver
		c.DownAfter = time.Hour
	})
	g.waitStatus(g.addrs(), allReachable)
	produce, truth := wordProducer(t, rng, brokers)
	j := startCounting(t, g, "wc-removed", brokers, 3)
	for range 5 {
		produce(200 + rng.IntN(200))
	}
	// Every state partition's standby holds a full copy once a batch
	// committed after the first epoch: the removal loses nothing.
	j.waitBatch(3)
	leader := g.leader()
	var gone *Node
	for _, n := range g.nodes {
		if n != leader {
			gone = n
		}
	}
	name := gone.cfg.Name
	gone.Close()
	produce(300)
	// The batch whose tasks fail on gone is in flight now. Removed as
	// cluster remove does, through any member to whichever is the leader
	// then: the leader may step down as gone stops answering (a loaded
	// machine), and the client asks the next one.
	c := NewClient(g.addrs())
	defer c.Close()
	if _, err := c.RemoveMember(context.Background(), name); err != nil {
		t.Fatalf("removing %s: %v", name, err)
	}
	for range 5 {
		produce(200 + rng.IntN(200))
	}
	j.waitCounts(truth)
	job, _ := g.leader().fsm.Job(j.name)
	if ws := assigned(job.Assignment); slices.Contains(ws, name) {
		t.Errorf("epoch %d still assigns work to %s: %v", job.Assignment.GetEpoch(), name, job.Assignment)
	}
	if logs := g.logs.String(); !strings.Contains(logs, name+" removed") {
		t.Errorf("the logs do not say the job moved off %s because it was removed", name)
	}
}

// TestBatchDriverStartFails: a driver that cannot start (here, a job
// registered with a trigger it cannot read) fails the job with the cause,
// not with a panic of its cleanup (before: newJobDriver's cleanup closed a
// nil driver, and the job failed with "nil pointer dereference").
func TestBatchDriverStartFails(t *testing.T) {
	brokers := embedtest.Start(t, "logs", 1)
	g := newNodeGroupWith(t, 1, func(c *Config) { c.Driver = BatchDriver })
	g.waitStatus(g.addrs(), allReachable)
	p, err := engine.NewSession().ReadStream().Format("kafka").Option("kafka.bootstrap.servers", brokers).
		Option("subscribe", "logs").Load().GroupBy(engine.Col("value")).Count().
		WriteStream().Format("jsonl").Option("path", "-").OutputMode(engine.Complete).QueryName("bad-trigger").Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := NewJob("bad-trigger", p)
	if err != nil {
		t.Fatal(err)
	}
	job.Options["trigger"] = "sometimes"
	if err := g.leader().apply(registerCmd(job)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		j, _ := g.leader().fsm.Job("bad-trigger")
		if j.GetState() != clusterpb.JobState_FAILED {
			return fmt.Errorf("job state %v", j.GetState())
		}
		if !strings.Contains(j.Error, `trigger "sometimes"`) || strings.Contains(j.Error, "panic") {
			t.Fatalf("the job failed with %q, want the trigger's error", j.Error)
		}
		return nil
	})
}
