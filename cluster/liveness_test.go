package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLivenessView: members are up until they have not answered for
// downAfter, an answer brings a down member back, each change (a first
// answer since the node leads included) closes the
// channel changes returned before it, the node itself is never down, a
// member no longer in the group is forgotten and reset makes everyone up
// again.
func TestLivenessView(t *testing.T) {
	l := newLiveness("s1", time.Second, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	members := []string{"s1", "s2", "s3"}
	l.check(t0, members)
	ch := l.changes()
	l.answered("s2", t0.Add(400*time.Millisecond))
	if !closed(ch) {
		t.Errorf("changes not closed when s2, unknown, answered")
	}
	ch = l.changes()
	l.answered("s2", t0.Add(400*time.Millisecond)) // heard already: no change
	l.check(t0.Add(999*time.Millisecond), members)
	wantDown := func(what string, want ...string) {
		t.Helper()
		for _, m := range members {
			down, _ := l.down(m)
			if down != slices.Contains(want, m) || l.live(m) == down {
				t.Errorf("%s: %s down %v; want down: %v", what, m, down, want)
			}
		}
	}
	wantDown("before downAfter")
	if closed(ch) {
		t.Errorf("changes closed with no change")
	}
	l.check(t0.Add(time.Second), members)
	wantDown("s3 silent for 1s", "s3")
	if !closed(ch) {
		t.Errorf("changes not closed when s3 went down")
	}
	ch = l.changes()
	l.check(t0.Add(1400*time.Millisecond), members)
	wantDown("s2 answered at 0.4s", "s2", "s3")
	if !closed(ch) {
		t.Errorf("changes not closed when s2 went down")
	}
	ch = l.changes()
	l.answered("s3", t0.Add(1500*time.Millisecond))
	wantDown("s3 answered", "s2")
	if !closed(ch) {
		t.Errorf("changes not closed when s3 came back")
	}
	l.answered("s9", t0) // not a member
	l.check(t0.Add(1600*time.Millisecond), []string{"s1", "s3"})
	if down, _ := l.down("s2"); down {
		t.Errorf("s2, removed, is still down")
	}
	l.check(t0.Add(1700*time.Millisecond), members) // s2 again: up until 2.7s
	wantDown("s2 added again")
	l.check(t0.Add(2700*time.Millisecond), members)
	wantDown("everyone silent", "s2", "s3")
	ch = l.changes()
	l.reset()
	wantDown("reset")
	if !closed(ch) {
		t.Errorf("changes not closed by a reset that brought members back")
	}
}

// TestLivenessState: a member is unknown until it answers a probe sent
// since the view began to expect it (a probe of an earlier leadership
// does not count), up once it did, down after downAfter of silence,
// unknown again after a reset; the node itself is always up.
func TestLivenessState(t *testing.T) {
	l := newLiveness("s1", time.Second, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	members := []string{"s1", "s2", "s3", "s4"}
	want := func(what string, states ...memberState) {
		t.Helper()
		for i, m := range members {
			if got := l.state(m); got != states[i] {
				t.Errorf("%s: %s state %d; want %d", what, m, got, states[i])
			}
		}
	}
	want("before the first check", memberUp, memberUnknown, memberUnknown, memberUnknown)
	l.check(t0, members)
	l.answered("s2", t0.Add(500*time.Millisecond))
	l.answered("s4", t0.Add(-time.Millisecond)) // sent before the view expected it
	want("s2 answered", memberUp, memberUp, memberUnknown, memberUnknown)
	l.check(t0.Add(time.Second), members)
	want("s3 and s4 silent for 1s", memberUp, memberUp, memberDown, memberDown)
	l.answered("s3", t0.Add(time.Second))
	want("s3 answered", memberUp, memberUp, memberUp, memberDown)
	l.reset()
	want("reset", memberUp, memberUnknown, memberUnknown, memberUnknown)
}

// TestLivenessAwaitHeard: awaitHeard returns once every member it waits
// for answered a probe or is down, or at its bound: a new job's first
// epoch waits so for the members a new leader has not heard from yet.
func TestLivenessAwaitHeard(t *testing.T) {
	l := newLiveness("s1", time.Second, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	members := []string{"s1", "s2", "s3"}
	l.check(t0, members)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.awaitHeard(context.Background(), members, time.Hour)
	}()
	returned := func() bool {
		select {
		case <-done:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	if returned() {
		t.Fatalf("awaitHeard returned with s2 and s3 unknown")
	}
	l.answered("s2", t0.Add(100*time.Millisecond))
	if returned() {
		t.Fatalf("awaitHeard returned with s3 unknown")
	}
	l.check(t0.Add(time.Second), members) // s3 silent for downAfter: down
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("awaitHeard still waits with s2 up and s3 down")
	}

	l = newLiveness("s1", time.Second, slog.New(slog.DiscardHandler))
	l.check(t0, members)
	done = make(chan struct{})
	go func() {
		defer close(done)
		l.awaitHeard(context.Background(), members, time.Hour)
	}()
	l.answered("s2", t0.Add(100*time.Millisecond))
	l.answered("s3", t0.Add(100*time.Millisecond))
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("awaitHeard still waits once s2 and s3 answered")
	}
	l.check(t0, []string{"s1", "s2", "s3", "s4"})
	l.awaitHeard(context.Background(), []string{"s1", "s2", "s3", "s4"}, time.Millisecond) // s4 unknown: the bound ends it
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.awaitHeard(ctx, []string{"s1", "s4"}, time.Hour) // ended by ctx
}

// TestLivenessProbesAtOnce: a new leader probes the members as soon as
// it leads and the group's members are known, not at its next round: with
// rounds an hour apart, the first leader, and the one elected after it is
// closed, still hear from every running member.
func TestLivenessProbesAtOnce(t *testing.T) {
	g := newNodeGroupWith(t, 3, func(c *Config) { c.probeEvery = time.Hour })
	heard := func(leader *Node, members ...string) {
		t.Helper()
		waitFor(t, 20*time.Second, func() error {
			for _, m := range members {
				if s := leader.liveness.state(m); s != memberUp {
					return fmt.Errorf("leader %s: %s is %v, not up", leader.cfg.Name, m, s)
				}
			}
			return nil
		})
	}
	first := g.nodes[g.leaderIndex()]
	heard(first, "s1", "s2", "s3")
	first.Close()
	var others []string
	for _, n := range g.nodes {
		if n != first {
			others = append(others, n.cfg.Name)
		}
	}
	var next *Node
	waitFor(t, 20*time.Second, func() error {
		for _, n := range g.nodes {
			if n != first && n.raft.State() == raft.Leader {
				next = n
				return nil
			}
		}
		return fmt.Errorf("no new leader")
	})
	heard(next, others...)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestLivenessDetects: the leader holds a member down once it stops
// answering, whether its connections hang (a paused process: a listener
// that accepts and never answers) or are refused (a killed one), and up
// again once it answers; the members that answer stay up throughout.
func TestLivenessDetects(t *testing.T) {
	var hung hungListener
	g := newNodeGroupStarting(t, 4, 3, func(c *Config) {
		c.HelloTimeout = 200 * time.Millisecond
		if c.Name == "s4" {
			hung.listen(t, c.Listen)
		}
	})
	defer hung.close()
	var leader *Node
	waitFor(t, 20*time.Second, func() error {
		for _, n := range g.nodes[:3] {
			if n.raft.State().String() == "Leader" {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	wantDown := func(what string, down bool) {
		t.Helper()
		waitFor(t, 10*time.Second, func() error {
			for _, m := range []string{"s1", "s2", "s3"} {
				if d, since := leader.liveness.down(m); d {
					t.Fatalf("%s: %s is down, silent for %v", what, m, since)
				}
			}
			if d, since := leader.liveness.down("s4"); d != down {
				return fmt.Errorf("%s: s4 down %v (silent for %v); want %v", what, d, since, down)
			}
			return nil
		})
	}
	wantDown("s4 hangs", true)
	if hung.accepted() == 0 {
		t.Fatalf("the leader never connected to the hung s4")
	}

	hung.close()
	n4, err := Start(context.Background(), g.cfgs[3])
	if err != nil {
		t.Fatal(err)
	}
	g.nodes[3] = n4
	ch := leader.liveness.changes()
	wantDown("s4 started", false)
	if !closed(ch) {
		t.Errorf("changes not closed when s4 came back")
	}

	ch = leader.liveness.changes()
	n4.Close()
	wantDown("s4 closed", true)
	if !closed(ch) {
		t.Errorf("changes not closed when s4 went down")
	}
}

// hungListener accepts connections and never reads or answers, as a
// paused process's kernel does.
type hungListener struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	once  sync.Once
}

func (h *hungListener) listen(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	h.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	})
}

func (h *hungListener) accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *hungListener) close() {
	h.once.Do(func() {
		h.ln.Close()
		h.wg.Wait()
		for _, c := range h.conns {
			c.Close()
		}
	})
}
