package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/gostream/gostream/internal/logbuf"
)

// fakeHosts resolves names under .invalid from names, and fails the test
// on any other name: no test asks real DNS.
func fakeHosts(t *testing.T, names map[string]string) hostIP {
	return func(ctx context.Context, host string) ([]net.IPAddr, error) {
		if !strings.HasSuffix(host, ".invalid") {
			t.Errorf("a lookup of %q, not a name under .invalid", host)
			return nil, &net.DNSError{Err: "not asked", Name: host}
		}
		ip, ok := names[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
}

// TestLocalHosts checks which members' addresses count as running on this
// machine: loopback addresses, named or not, and this machine's interface
// addresses, named or not; not another address, nor a name that does not
// resolve.
func TestLocalHosts(t *testing.T) {
	l := localHosts{
		lookup: fakeHosts(t, map[string]string{"loop.invalid": "127.0.0.1", "this-machine.invalid": "192.0.2.7", "elsewhere.invalid": "192.0.2.8"}),
		ifaces: []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(24, 32)}, &net.IPAddr{IP: net.ParseIP("192.0.2.9")}},
	}
	for addr, want := range map[string]bool{
		"127.0.1.2:7077":            true,
		"[::1]:7077":                true,
		"loop.invalid:7077":         true,
		"192.0.2.7:7077":            true,
		"this-machine.invalid:7077": true,
		"192.0.2.8:7077":            false,
		"elsewhere.invalid:7077":    false,
		"unknown.invalid:7077":      false, // does not resolve
		"no-port":                   false,
	} {
		if got := l.here(context.Background(), addr); got != want {
			t.Errorf("%s here: %v, want %v", addr, got, want)
		}
	}
	self := "192.0.2.7:7077"
	if got := l.count(context.Background(), self, []string{self, "127.0.1.2:7077", "unknown.invalid:7077", "192.0.2.8:7077"}); got != 2 {
		t.Errorf("members here: %d, want 2 (this worker and the loopback one)", got)
	}
	if got := l.count(context.Background(), self, nil); got != 1 {
		t.Errorf("members here of none known: %d, want 1 (this worker)", got)
	}
}

// TestSharedCores checks the default cores' arithmetic: the machine's
// cores divided among the members here, at least 1 each.
func TestSharedCores(t *testing.T) {
	for _, c := range []struct{ machine, local, want int }{{2, 3, 1}, {16, 1, 16}, {16, 3, 5}, {2, 2, 1}, {1, 1, 1}, {4, 0, 4}} {
		if got := sharedCores(c.machine, c.local); got != c.want {
			t.Errorf("%d cores among %d members: %d each, want %d", c.machine, c.local, got, c.want)
		}
	}
}

// coresNode is a Node without Raft, enough for updateCores: its members
// are peers until fsm applies a membership.
func coresNode(t *testing.T, cfg Config, peers []Peer) (*Node, *fsmApplier, *logbuf.Buffer) {
	logs := &logbuf.Buffer{}
	a := newFSMApplier(t)
	n := &Node{cfg: cfg, log: slog.New(slog.NewTextHandler(logs, nil)), peers: peers, fsm: a.f, lookupHost: fakeHosts(t, nil)}
	return n, a, logs
}

// TestUpdateCores checks a worker's cores: by default the machine's shared
// among the members on this machine, from the bootstrap peers first, then
// the group's members as they join and leave, logged once per change; an
// explicit Config.Cores wins whatever the members.
func TestUpdateCores(t *testing.T) {
	defer func(c int) { machineCores = c }(machineCores)
	machineCores = 12
	peers := []Peer{{Name: "s1", Addr: "127.0.1.1:7077"}, {Name: "s2", Addr: "127.0.1.2:7077"}}
	n, a, logs := coresNode(t, Config{Name: "s1", Listen: "127.0.1.1:7077"}, peers)
	ctx := context.Background()
	steps := []struct {
		cmd  func()
		want int
		log  string
	}{
		{func() {}, 6, "this worker uses 6 of 12 cores: 2 members run on this machine"},
		{func() { a.mustApply(initCmd()) }, 4, "this worker uses 4 of 12 cores: 3 members run on this machine"},
		{func() { a.mustApply(addMemberCmd("s4", "far.invalid:7077")) }, 4, ""},
		{func() { a.mustApply(addMemberCmd("s5", "127.0.1.5:7077")) }, 3, "this worker uses 3 of 12 cores: 4 members run on this machine"},
		{func() { a.mustApply(removeMemberCmd("s2")); a.mustApply(removeMemberCmd("s3")) }, 6, "this worker uses 6 of 12 cores: 2 members run on this machine"},
	}
	for i, s := range steps {
		before := strings.Count(logs.String(), "\n")
		s.cmd()
		n.updateCores(ctx)
		n.updateCores(ctx) // no change: no log
		if got := n.Cores(); got != s.want {
			t.Errorf("step %d: %d cores, want %d", i, got, s.want)
		}
		lines := strings.Split(logs.String(), "\n")[before:]
		lines = lines[:len(lines)-1]
		switch {
		case s.log == "" && len(lines) != 0:
			t.Errorf("step %d: logged %q, want nothing", i, lines)
		case s.log != "" && (len(lines) != 1 || !strings.Contains(lines[0], s.log)):
			t.Errorf("step %d: logged %q, want one line saying %q", i, lines, s.log)
		}
	}

	n, a, logs = coresNode(t, Config{Name: "s1", Listen: "127.0.1.1:7077", Cores: 5}, peers)
	n.updateCores(ctx)
	a.mustApply(initCmd())
	n.updateCores(ctx)
	if n.Cores() != 5 || strings.Count(logs.String(), "this worker uses 5 cores (--cores); the machine has 12") != 1 {
		t.Errorf("Config.Cores 5: %d cores, logged %q", n.Cores(), logs)
	}
}

// TestMachineCoresEnv runs this test binary again with GOMAXPROCS=5 in
// its environment: the machine's cores follow the variable, and a worker
// with Config.SetGOMAXPROCS sets GOMAXPROCS to its share.
func TestMachineCoresEnv(t *testing.T) {
	if os.Getenv("GOSTREAM_TEST_CORES_CHILD") != "" {
		n, _, _ := coresNode(t, Config{Name: "s1", Listen: "127.0.1.1:7077", SetGOMAXPROCS: true}, []Peer{{Name: "s1", Addr: "127.0.1.1:7077"}, {Name: "s2", Addr: "127.0.1.2:7077"}})
		n.updateCores(context.Background())
		fmt.Printf("machine %d, gomaxprocs %d\n", machineCores, runtime.GOMAXPROCS(0))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMachineCoresEnv$", "-test.v")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=5", "GOSTREAM_TEST_CORES_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the child test: %v\n%s", err, out)
	}
	if want := "machine 5, gomaxprocs 2"; !strings.Contains(string(out), want) {
		t.Fatalf("with GOMAXPROCS=5, two workers here: the child says\n%s\nwant %q", out, want)
	}
}

// TestConfigCores checks Config.Validate's bounds of Cores.
func TestConfigCores(t *testing.T) {
	for _, c := range []int{-1, MaxCores + 1} {
		cfg := DefaultConfig()
		cfg.Name, cfg.Listen, cfg.DataDir, cfg.Cores = "s1", "127.0.0.1:7077", t.TempDir(), c
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--cores %d: want a number of cores from 1 to %d", c, MaxCores)) {
			t.Errorf("Cores %d: %v, want an error naming --cores", c, err)
		}
	}
}
