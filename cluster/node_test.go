package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/freeport"
	"github.com/gostream/gostream/internal/logbuf"
	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

// nodeGroup is n in-process Nodes on loopback ports.
type nodeGroup struct {
	t     *testing.T
	cfgs  []Config
	nodes []*Node
	logs  *logbuf.Buffer
}

func newNodeGroup(t *testing.T, n int) *nodeGroup {
	return newNodeGroupWith(t, n, func(*Config) {})
}

// newNodeGroupWith starts n Nodes, each with its Config changed by
// configure.
func newNodeGroupWith(t *testing.T, n int, configure func(*Config)) *nodeGroup {
	return newNodeGroupStarting(t, n, n, configure)
}

// newNodeGroupStarting makes n Nodes' configs, each changed by configure,
// and starts the first started of them; the others' nodes are nil.
func newNodeGroupStarting(t *testing.T, n, started int, configure func(*Config)) *nodeGroup {
	g := &nodeGroup{t: t, logs: &logbuf.Buffer{}}
	var lns []net.Listener
	var peers []Peer
	for i := range n {
		ln, err := freeport.Listen("127.0.0.1") // see freeAddrs
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		peers = append(peers, Peer{Name: fmt.Sprintf("s%d", i+1), Addr: ln.Addr().String()})
	}
	for _, ln := range lns {
		ln.Close()
	}
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, p := range peers {
		cfg := DefaultConfig()
		cfg.Name, cfg.Listen, cfg.DataDir, cfg.Peers = p.Name, p.Addr, filepath.Join(dir, p.Name), peers
		cfg.Logger = log.With("node", p.Name)
		configure(&cfg)
		g.cfgs = append(g.cfgs, cfg)
	}
	g.nodes = make([]*Node, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range started {
		wg.Go(func() { g.nodes[i], errs[i] = Start(context.Background(), g.cfgs[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range g.nodes {
			if n != nil {
				n.Close()
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s", g.logs)
		}
	})
	return g
}

func (g *nodeGroup) addrs() []string {
	var out []string
	for _, c := range g.cfgs {
		out = append(out, c.Listen)
	}
	return out
}

// leader is the member that is the leader, once waitStatus saw one.
func (g *nodeGroup) leader() *Node {
	g.t.Helper()
	for _, n := range g.nodes {
		if n != nil && n.raft.State() == raft.Leader {
			return n
		}
	}
	g.t.Fatal("no leader")
	return nil
}

// waitStatus polls the cluster through addrs until cond accepts a status.
func (g *nodeGroup) waitStatus(addrs []string, cond func(*clusterpb.StatusResponse) error) *clusterpb.StatusResponse {
	g.t.Helper()
	c := NewClient(addrs)
	defer c.Close()
	var st *clusterpb.StatusResponse
	waitFor(g.t, 20*time.Second, func() error {
		var err error
		if st, err = c.Status(context.Background()); err != nil {
			return err
		}
		return cond(st)
	})
	return st
}

// allReachable accepts a status with a leader that reaches every member.
func allReachable(st *clusterpb.StatusResponse) error {
	if st.Leader == "" {
		return errors.New("no leader")
	}
	for _, m := range st.Members {
		if m.State != "Leader" && m.State != "Follower" {
			return fmt.Errorf("%s is %s %s", m.Member.GetName(), m.State, m.Error)
		}
	}
	return nil
}

// TestNodeGroup runs three in-process Nodes over real TCP: they elect a
// leader through pre-vote, a job registered through a follower reaches
// every member, a follower closed and started again from its data
// directory (without --peers) rejoins, and Close leaves no goroutine behind.
// The status shows each member's share of this machine's cores.
func TestNodeGroup(t *testing.T) {
	before := runtime.NumGoroutine()
	g := newNodeGroup(t, 3)
	st := g.waitStatus(g.addrs(), allReachable)
	if st.ClusterId != g.nodes[0].ClusterID() || len(st.Members) != 3 {
		t.Fatalf("status %v", st)
	}
	for _, m := range st.Members { // three workers on this machine share its cores
		if want := sharedCores(machineCores, 3); m.Cores != int32(want) {
			t.Errorf("status: %s uses %d cores, want %d", m.Member.GetName(), m.Cores, want)
		}
	}
	var follower int
	for i, c := range g.cfgs {
		if c.Name != st.Leader {
			follower = i
		}
	}
	fc := NewClient([]string{g.cfgs[follower].Listen})
	defer fc.Close()
	if _, err := fc.RegisterJob(context.Background(), wordcountJob(t, "wc")); err != nil {
		t.Fatalf("RegisterJob through follower %s: %v", g.cfgs[follower].Name, err)
	}
	for _, n := range g.nodes {
		waitFor(t, 10*time.Second, func() error {
			if _, ok := n.FSM().Job("wc"); !ok {
				return fmt.Errorf("%s has no job wc", n.cfg.Name)
			}
			if n.FSM().ClusterID() != n.ClusterID() {
				return fmt.Errorf("%s: no Init applied", n.cfg.Name)
			}
			return nil
		})
	}
	if !strings.Contains(g.logs.String(), "pre-vote successful") {
		t.Error("no election went through pre-vote")
	}

	if err := g.nodes[follower].Close(); err != nil {
		t.Fatal(err)
	}
	cfg := g.cfgs[follower]
	cfg.Peers = nil // taken from the data directory
	var err error
	if g.nodes[follower], err = Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	g.waitStatus(g.addrs(), allReachable)
	waitFor(t, 10*time.Second, func() error {
		if _, ok := g.nodes[follower].FSM().Job("wc"); !ok {
			return errors.New("the restarted follower has no job wc")
		}
		return nil
	})

	for i, n := range g.nodes {
		if err := n.Close(); err != nil {
			t.Errorf("closing %s: %v", g.cfgs[i].Name, err)
		}
	}
	fc.Close()
	waitFor(t, 10*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

// TestNodeRefusesDataDir checks that a node refuses another cluster's data
// directory, and another worker's, before changing anything.
func TestNodeRefusesDataDir(t *testing.T) {
	g := newNodeGroup(t, 1)
	g.waitStatus(g.addrs(), allReachable)
	g.nodes[0].Close()
	cfg := g.cfgs[0]
	other := cfg
	other.Peers = []Peer{{Name: "s1", Addr: cfg.Listen}, {Name: "s2", Addr: "127.0.0.1:1"}}
	if _, err := Start(context.Background(), other); !errors.Is(err, ErrDataDir) {
		t.Errorf("Start with another cluster's data dir = %v; want ErrDataDir", err)
	}
	renamed := cfg
	renamed.Name, renamed.Peers = "s9", []Peer{{Name: "s9", Addr: cfg.Listen}}
	if _, err := Start(context.Background(), renamed); !errors.Is(err, ErrDataDir) {
		t.Errorf("Start with another worker's data dir = %v; want ErrDataDir", err)
	}
	fresh := cfg
	fresh.DataDir, fresh.Peers = t.TempDir(), nil
	if _, err := Start(context.Background(), fresh); !errors.Is(err, ErrConfig) {
		t.Errorf("Start of a new data dir without peers = %v; want ErrConfig", err)
	}
}

// TestNodeFencesRequests checks the fencing of member-to-member requests:
// a leader's request from an older term than the member's, or a request
// from another cluster, is refused.
func TestNodeFencesRequests(t *testing.T) {
	g := newNodeGroup(t, 1)
	g.waitStatus(g.addrs(), allReachable)
	n := g.nodes[0]
	term := n.raft.CurrentTerm()
	ctl := n.clients.control(n.cfg.Listen)
	for _, tc := range []struct {
		h    *clusterpb.Header
		want string // "" for success
	}{
		{&clusterpb.Header{ClusterId: n.ClusterID(), Term: term, From: "s1"}, ""},
		{&clusterpb.Header{ClusterId: n.ClusterID(), Term: term - 1, From: "s1"}, ErrStaleTerm.Error()},
		{&clusterpb.Header{ClusterId: "0123", Term: term, From: "x"}, ErrPeersDisagree.Error()},
	} {
		_, err := ctl.MemberInfo(context.Background(), &clusterpb.MemberInfoRequest{Header: tc.h})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("MemberInfo(%v) = %v", tc.h, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("MemberInfo(%v) = %v; want %q", tc.h, err, tc.want)
		}
	}
}

// freeAddrs returns n distinct loopback addresses nothing listens on.
func freeAddrs(t *testing.T, n int) []string {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		// Each listener stays open until all are chosen: one closed at
		// once may give its port to the next (raft then refuses the
		// peers' duplicate address). Ports below the ephemeral range: a
		// port the kernel hands out (a listener on port 0, a connection's
		// local port) may be taken before the node binds it.
		ln, err := freeport.Listen("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}

// TestNodePeersDisagreeAtOnce starts two fresh Nodes whose --peers
// disagree at nearly the same instant, in both orders, with random delays
// between them: each stops with ErrPeersDisagree naming both peer lists,
// either from Start or through Failed, whichever missed the other's
// start-up hello.
func TestNodePeersDisagreeAtOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	for round := range 6 {
		addrs := freeAddrs(t, 3)
		short := []Peer{{"s1", addrs[0]}, {"s2", addrs[1]}}
		long := append(slices.Clone(short), Peer{"s3", addrs[2]})
		cfgs := make([]Config, 2)
		logs := &logbuf.Buffer{}
		for i, peers := range [][]Peer{short, long} {
			cfg := DefaultConfig()
			cfg.Name, cfg.Listen, cfg.DataDir, cfg.Peers = peers[i].Name, peers[i].Addr, t.TempDir(), peers
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil)).With("node", cfg.Name)
			cfgs[i] = cfg
		}
		first := round % 2
		delay := time.Duration(rng.IntN(3000)) * time.Microsecond
		t.Logf("round %d: s%d starts first, the other %v later", round, first+1, delay)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				if i != first {
					time.Sleep(delay)
				}
				n, err := Start(context.Background(), cfgs[i])
				if err != nil {
					errs[i] = err
					return
				}
				defer n.Close()
				select {
				case <-n.Failed():
					errs[i] = n.Err()
				case <-time.After(20 * time.Second):
					errs[i] = fmt.Errorf("%s still runs 20 s after start", cfgs[i].Name)
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, ErrPeersDisagree) || !strings.Contains(err.Error(), formatPeers(short)) || !strings.Contains(err.Error(), formatPeers(long)) {
				t.Fatalf("round %d: %s: %v; want %v naming %s and %s\nlogs:\n%s", round, cfgs[i].Name, err, ErrPeersDisagree, formatPeers(short), formatPeers(long), logs)
			}
		}
	}
}

// TestHelloLeavesNoBackoff: a node whose start-up hello a peer refused
// (not listening yet) reaches that peer as soon as it started: the
// node's connection to it does not wait out the backoff of that refusal.
func TestHelloLeavesNoBackoff(t *testing.T) {
	g := newNodeGroupStarting(t, 2, 1, func(*Config) {}) // s1 said hello to s2, which refused
	n2, err := Start(context.Background(), g.cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	g.nodes[1] = n2
	s1 := g.nodes[0]
	if _, err := s1.clients.control(n2.cfg.Listen).Hello(context.Background(), &clusterpb.HelloRequest{Header: s1.header(0), Peers: peersToProto(s1.peers)}); err != nil {
		t.Fatalf("%s's hello to %s once it started: %v", s1.cfg.Name, n2.cfg.Name, err)
	}
}

// TestNodeCloseQuiet closes the three members of a working group at once,
// as SIGTERM to every worker does: a clean stop logs no error, but for a
// member still running failing to reach one already gone (raft names it as
// peer= or target=).
func TestNodeCloseQuiet(t *testing.T) {
	g := newNodeGroup(t, 3)
	g.waitStatus(g.addrs(), allReachable)
	var wg sync.WaitGroup
	for _, n := range g.nodes {
		wg.Go(func() { n.Close() })
	}
	wg.Wait()
	for line := range strings.Lines(g.logs.String()) {
		if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "peer=") && !strings.Contains(line, "target=") {
			t.Errorf("closing logged an error: %s", line)
		}
	}
}
