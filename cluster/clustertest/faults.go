package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RuleTag begins the comment (iptables -m comment) of every rule a Faults
// adds: RuleTag-PID-N, PID the test binary's process. A rule of a process
// no longer running is stale and removed by the next Cluster.Faults.
const RuleTag = "gostream-clustertest"

// injectors numbers the Faults of this process, for their rules' tags.
var injectors struct {
	sync.Mutex
	n int
}

// Role chooses a worker by its Raft role at the moment of a fault.
type Role int

const (
	// Leader is the group's leader.
	Leader Role = iota
	// Follower is a running worker other than the leader.
	Follower
)

func (r Role) String() string {
	if r == Leader {
		return "leader"
	}
	return "follower"
}

// Faults injects network faults between a Cluster's workers (Cut,
// CutOneWay, Isolate, Delay) through iptables rules on the OUTPUT chains
// that match only the workers' own 127.0.1.x addresses (a worker's Raft
// and gRPC connections leave from its --listen IP), so no other traffic
// is touched, and picks the worker of a role at fault time (Pick). The process faults are the
// Worker's: Kill then Start (kill -9, restart), Pause then Resume (SIGSTOP,
// SIGCONT). Heal undoes every network fault; it runs at the test's end
// too (before the cluster's workers stop), whether the test failed or not.
//
// Network faults need iptables and root: without them they fail the
// test, saying so. A Faults is safe for use by one goroutine at a time.
type Faults struct {
	c   *Cluster
	tag string
	mu  struct {
		sync.Mutex
		rules   []rule
		proxies []*delayProxy
	}
}

// rule is one iptables rule: its table and its specification after the
// chain (OUTPUT).
type rule struct {
	table string
	spec  []string
}

// Faults returns a fault injector of c. It first removes the stale rules
// an earlier test binary that was killed left behind, and registers
// Heal at the test's end.
func (c *Cluster) Faults(t testing.TB) *Faults {
	t.Helper()
	injectors.Lock()
	injectors.n++
	n := injectors.n
	injectors.Unlock()
	f := &Faults{c: c, tag: fmt.Sprintf("%s-%d-%d", RuleTag, os.Getpid(), n)}
	if _, err := exec.LookPath("iptables"); err == nil {
		if err := sweepStaleRules(); err != nil {
			t.Fatalf("clustertest: removing stale fault rules: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := f.heal(); err != nil {
			t.Errorf("clustertest: healing the faults: %v", err)
		}
	})
	return f
}

// Pick returns a running worker of the role: the leader named by the
// cluster's status (waiting for one, as WaitLeader does, if there is
// none), or a follower chosen with rng.
func (f *Faults) Pick(t testing.TB, role Role, rng *rand.Rand) *Worker {
	t.Helper()
	leader := f.c.WaitLeader(t).Leader
	var followers []*Worker
	for _, w := range f.c.Workers {
		switch {
		case w.Name == leader && role == Leader:
			return w
		case w.Name != leader && w.Running():
			followers = append(followers, w)
		}
	}
	if role == Leader || len(followers) == 0 {
		t.Fatalf("clustertest: no running %s (leader %q)", role, leader)
	}
	return followers[rng.IntN(len(followers))]
}

// Cut drops every packet between a and b, both ways, until Heal.
func (f *Faults) Cut(t testing.TB, a, b *Worker) {
	t.Helper()
	f.CutOneWay(t, a, b)
	f.CutOneWay(t, b, a)
}

// CutOneWay drops every packet from's address sends to to's, until Heal.
// The other way passes, so TCP connections between them hang rather
// than fail at once.
func (f *Faults) CutOneWay(t testing.TB, from, to *Worker) {
	t.Helper()
	fromIP, _ := f.ipPort(t, from)
	toIP, _ := f.ipPort(t, to)
	f.add(t, rule{"filter", []string{"-s", fromIP, "-d", toIP, "-j", "DROP"}})
}

// Isolate cuts w from every other worker, both ways, until Heal.
func (f *Faults) Isolate(t testing.TB, w *Worker) {
	t.Helper()
	for _, o := range f.c.Workers {
		if o != w {
			f.Cut(t, w, o)
		}
	}
}

// Delay delays every byte between a and b by d, both ways, until Heal: new
// connections from one to the other are redirected (a DNAT rule in the
// nat table's OUTPUT chain) to a proxy of this process that forwards
// each byte d after it came, and the connections already open are reset
// (a REJECT rule) so that they are made again through the proxy.
func (f *Faults) Delay(t testing.TB, a, b *Worker, d time.Duration) {
	t.Helper()
	f.delayOneWay(t, a, b, d)
	f.delayOneWay(t, b, a, d)
}

// delayOneWay delays the connections from opens to to's listener.
func (f *Faults) delayOneWay(t testing.TB, from, to *Worker, d time.Duration) {
	t.Helper()
	fromIP, _ := f.ipPort(t, from)
	toIP, toPort := f.ipPort(t, to)
	p, err := startDelayProxy(to.Addr, d)
	if err != nil {
		t.Fatalf("clustertest: delaying %s -> %s: %v", from.Name, to.Name, err)
	}
	f.mu.Lock()
	f.mu.proxies = append(f.mu.proxies, p)
	f.mu.Unlock()
	match := []string{"-p", "tcp", "-s", fromIP, "-d", toIP, "--dport", toPort}
	f.add(t, rule{"nat", append(match, "-j", "DNAT", "--to-destination", p.ln.Addr().String())})
	f.add(t, rule{"filter", append(match, "-j", "REJECT", "--reject-with", "tcp-reset")})
}

// ipPort returns w's IP and port, failing t unless network faults can
// single w's traffic out: iptables present, w on an address of its own.
func (f *Faults) ipPort(t testing.TB, w *Worker) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatalf("clustertest: network faults need iptables (and root): %v", err)
	}
	ip, port, err := net.SplitHostPort(w.Addr)
	if err != nil {
		t.Fatalf("clustertest: %s's address %s: %v", w.Name, w.Addr, err)
	}
	for _, o := range f.c.Workers {
		if o != w && strings.HasPrefix(o.Addr, ip+":") {
			t.Fatalf("clustertest: network faults need each worker on an IP of its own; %s and %s share %s (does 127.0.1.x bind here?)", w.Name, o.Name, ip)
		}
	}
	return ip, port
}

// add inserts r, tagged, first in its table's OUTPUT chain.
func (f *Faults) add(t testing.TB, r rule) {
	t.Helper()
	r.spec = append(r.spec, "-m", "comment", "--comment", f.tag)
	if err := iptables(append([]string{"-t", r.table, "-I", "OUTPUT", "1"}, r.spec...)...); err != nil {
		t.Fatalf("clustertest: adding a fault rule: %v", err)
	}
	f.mu.Lock()
	f.mu.rules = append(f.mu.rules, r)
	f.mu.Unlock()
}

// Heal undoes every network fault in place: it stops the delay proxies,
// whose connections reset so that they are made again directly, then
// removes the rules. In that order: a connection whose DNAT rule is gone
// before its proxy closes it never gets the proxy's FIN or reset, and
// hangs until it sends again or TCP keepalive finds it dead.
func (f *Faults) Heal(t testing.TB) {
	t.Helper()
	if err := f.heal(); err != nil {
		t.Fatalf("clustertest: healing the faults: %v", err)
	}
}

func (f *Faults) heal() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.mu.proxies {
		p.close()
	}
	f.mu.proxies = nil
	var errs []error
	for _, r := range f.mu.rules {
		if err := iptables(append([]string{"-t", r.table, "-D", "OUTPUT"}, r.spec...)...); err != nil {
			errs = append(errs, err)
		}
	}
	f.mu.rules = nil
	return errors.Join(errs...)
}

// iptables runs iptables with args.
func iptables(args ...string) error {
	out, err := exec.Command("iptables", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sweepStaleRules removes the rules, in the OUTPUT chains of the filter
// and nat tables, whose tag names a process that no longer runs.
func sweepStaleRules() error {
	var errs []error
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables", "-t", table, "-S", "OUTPUT").Output()
		if err != nil {
			return fmt.Errorf("iptables -t %s -S OUTPUT: %w", table, err)
		}
		for _, spec := range staleRules(string(out), processRuns) {
			if err := iptables(append([]string{"-t", table, "-D", "OUTPUT"}, spec...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// staleRules returns the specifications (after the chain) of the rules
// of `iptables -S OUTPUT` output whose comment is a tag of a process for
// which runs is false.
func staleRules(listing string, runs func(pid int) bool) [][]string {
	var stale [][]string
	for _, line := range strings.Split(listing, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" {
			continue
		}
		for i, fl := range fields[:len(fields)-1] {
			if fl != "--comment" {
				continue
			}
			pid, ok := tagPID(strings.Trim(fields[i+1], `"`))
			if ok && !runs(pid) {
				stale = append(stale, fields[2:])
			}
		}
	}
	return stale
}

// tagPID returns the process of a rule tag RuleTag-PID-N.
func tagPID(comment string) (int, bool) {
	rest, ok := strings.CutPrefix(comment, RuleTag+"-")
	if !ok {
		return 0, false
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil
}

// processRuns reports whether a process pid runs.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// delayProxy forwards the connections it accepts to one address, each
// byte d after it came, both ways.
type delayProxy struct {
	ln     net.Listener
	to     string
	d      time.Duration
	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startDelayProxy(to string, d time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &delayProxy{ln: ln, to: to, d: d, ctx: ctx, cancel: cancel}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// serve accepts connections until the listener closes.
func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.relay(in)
	}
}

// relay forwards in to a new connection to p.to, both ways, until either
// side closes or the proxy does.
func (p *delayProxy) relay(in net.Conn) {
	defer p.wg.Done()
	var dialer net.Dialer
	out, err := dialer.DialContext(p.ctx, "tcp", p.to)
	if err != nil {
		in.Close()
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		in.Close()
		out.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	for _, pair := range [][2]net.Conn{{out, in}, {in, out}} {
		go func() {
			defer wg.Done()
			defer cancel()
			delayCopy(pair[0], pair[1], p.d)
		}()
	}
	wg.Wait()
	in.Close()
	out.Close()
}

// delayCopy copies src to dst, each chunk d after it was read, until src
// ends or dst fails.
func delayCopy(dst io.Writer, src io.Reader, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	chunks := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range chunks {
			time.Sleep(time.Until(c.at.Add(d)))
			if _, err := dst.Write(c.b); err != nil {
				for range chunks { // drain: the reader ends once src closes
				}
				return
			}
		}
	}()
	for {
		b := make([]byte, 32<<10)
		n, err := src.Read(b)
		if n > 0 {
			chunks <- chunk{b[:n], time.Now()}
		}
		if err != nil {
			break
		}
	}
	close(chunks)
	<-done
}

// close stops accepting, closes every relayed connection and waits.
func (p *delayProxy) close() {
	p.ln.Close()
	p.cancel()
	p.wg.Wait()
}

// Quit sends SIGQUIT to every running worker, which prints the stacks of
// its goroutines to its log and exits, and waits for them: it shows where a
// stalled cluster waits.
func (c *Cluster) Quit(t testing.TB) {
	t.Helper()
	c.signal(syscall.SIGQUIT)
	for _, w := range c.Workers {
		if w.cmd != nil {
			select {
			case <-w.done:
			case <-time.After(stopTimeout):
				t.Errorf("clustertest: %s still running %v after SIGQUIT", w.Name, stopTimeout)
			}
		}
	}
}
