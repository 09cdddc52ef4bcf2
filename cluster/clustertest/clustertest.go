// Package clustertest runs a cluster of real `gostream worker` processes
// for tests, as package kafkatest runs Kafka brokers.
//
// Start builds the gostream binary (once per Start, through the go build
// cache; set GOSTREAM_BIN to use a built one), starts the workers on
// 127.0.1.1, 127.0.1.2, ... (on distinct ports of 127.0.0.1 where those
// loopback aliases do not bind), each with its own data directory under the
// test's temporary directory, and waits for a leader. A worker can be
// stopped (SIGTERM), killed (SIGKILL) and restarted with its data. At the
// end of the test every worker still running is stopped, and the logs of
// all of them are printed if the test failed.
//
// Typical use:
//
//	c := clustertest.Start(t, 3)
//	st := c.WaitLeader(t)
//	c.Workers[0].Stop(t)
//
// clustertest owns only the processes and files it starts.
package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/internal/freeport"
	"github.com/gostream/gostream/proto/clusterpb"
)

// BinEnv names a gostream binary to run instead of building one.
const BinEnv = "GOSTREAM_BIN"

// Timeouts of the harness's waits.
const (
	stopTimeout   = 15 * time.Second
	leaderTimeout = 30 * time.Second
)

// Cluster is a group of worker processes started by Start.
type Cluster struct {
	// Bin is the gostream binary the workers run.
	Bin string
	// Workers are the workers, s1 first.
	Workers []*Worker
	peers   string
}

// Worker is one `gostream worker` process.
type Worker struct {
	Name    string
	Addr    string // host:port of its Raft and gRPC traffic
	DataDir string
	LogPath string // its stderr and stdout, appended across restarts
	bin     string
	peers   string // --peers of a worker that bootstraps the group
	join    string // --join of a worker that joins it (see Cluster.Join)
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	err     error         // cmd.Wait's result, set before done closes
}

// Start builds gostream and starts n workers that bootstrap one group,
// then waits for its leader.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := New(t, n)
	for _, w := range c.Workers {
		w.Start(t)
	}
	c.WaitLeader(t)
	return c
}

// New builds gostream and prepares n workers without starting them.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{Bin: Binary(t)}
	addrs, err := workerAddrs(1, n)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	var peers []string
	for i, a := range addrs {
		peers = append(peers, fmt.Sprintf("s%d=%s", i+1, a))
	}
	c.peers = strings.Join(peers, ",")
	dir := t.TempDir()
	for i, a := range addrs {
		name := fmt.Sprintf("s%d", i+1)
		c.Workers = append(c.Workers, &Worker{
			Name: name, Addr: a, bin: c.Bin, peers: c.peers,
			DataDir: filepath.Join(dir, name, "data"),
			LogPath: filepath.Join(dir, name+".log"),
		})
	}
	t.Cleanup(func() {
		for _, w := range c.Workers {
			if w.Running() {
				w.stop(syscall.SIGTERM)
			}
		}
		if t.Failed() {
			for _, w := range c.Workers {
				log, _ := os.ReadFile(w.LogPath)
				t.Logf("clustertest: log of %s:\n%s", w.Name, log)
			}
		}
	})
	return c
}

// Peers is the --peers the workers were given.
func (c *Cluster) Peers() string { return c.peers }

// Master is the cluster's --master: gostream://addr,addr,...
func (c *Cluster) Master() string {
	var addrs []string
	for _, w := range c.Workers {
		addrs = append(addrs, w.Addr)
	}
	return cluster.MasterScheme + strings.Join(addrs, ",")
}

// Client returns a Control client of every worker, closed at the test's end.
func (c *Cluster) Client(t testing.TB) *cluster.Client {
	addrs, err := cluster.ParseMaster(c.Master())
	if err != nil {
		t.Fatal(err)
	}
	cl := cluster.NewClient(addrs)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// WaitLeader polls the cluster's status until it has a leader that reaches
// every running worker, and returns that status.
func (c *Cluster) WaitLeader(t testing.TB) *clusterpb.StatusResponse {
	t.Helper()
	cl := c.Client(t)
	deadline := time.Now().Add(leaderTimeout)
	for {
		st, err := cl.Status(context.Background())
		if err == nil {
			err = c.checkLeader(st)
		}
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("clustertest: no leader reaching every running worker after %v: %v", leaderTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) checkLeader(st *clusterpb.StatusResponse) error {
	if st.Leader == "" {
		return fmt.Errorf("no leader (asked %s)", st.AnsweredBy)
	}
	for _, w := range c.Workers {
		if !w.Running() {
			continue
		}
		i := slices.IndexFunc(st.Members, func(m *clusterpb.MemberStatus) bool { return m.Member.GetName() == w.Name })
		switch {
		case i < 0:
			return fmt.Errorf("%s is not a member (yet)", w.Name)
		case st.Members[i].State == "Unreachable" || st.Members[i].State == "Unknown":
			return fmt.Errorf("%s is %s to leader %s: %s", w.Name, st.Members[i].State, st.Leader, st.Members[i].Error)
		}
	}
	return nil
}

// Command returns a command running the gostream binary with args.
func (c *Cluster) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Stop stops every running worker with SIGTERM, all at once, and waits.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.signal(syscall.SIGTERM)
	for _, w := range c.Workers {
		if w.cmd != nil {
			w.wait(t)
		}
	}
}

// signal sends sig to every running worker.
func (c *Cluster) signal(sig syscall.Signal) {
	for _, w := range c.Workers {
		if w.Running() {
			_ = w.cmd.Process.Signal(sig)
		}
	}
}

// Start starts the worker with its data directory: the first time it
// bootstraps the group, later it rejoins with its log.
func (w *Worker) Start(t testing.TB) {
	t.Helper()
	if w.Running() {
		t.Fatalf("clustertest: %s is running already", w.Name)
	}
	if err := os.MkdirAll(w.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(w.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(w.bin, append([]string{"worker", "--name", w.Name, "--listen", w.Addr, "--data", w.DataDir}, w.groupArgs()...)...)
	cmd.Dir = w.Dir()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("clustertest: starting %s: %v", w.Name, err)
	}
	w.cmd, w.done, w.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		w.err = cmd.Wait()
		close(done)
	}(w.done)
}

// Dir is the worker's working directory, which holds its data directory:
// a job's jsonl:PATH with a relative PATH is a file there when the worker
// leads, as each machine of a real cluster has its own files.
func (w *Worker) Dir() string { return filepath.Dir(w.DataDir) }

// Pid is the process id of the worker's last start, 0 if it never
// started.
func (w *Worker) Pid() int {
	if w.cmd == nil || w.cmd.Process == nil {
		return 0
	}
	return w.cmd.Process.Pid
}

// Running reports whether the worker's process is running.
func (w *Worker) Running() bool {
	if w.cmd == nil {
		return false
	}
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (w *Worker) Stop(t testing.TB) {
	t.Helper()
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("clustertest: %s did not stop cleanly: %v", w.Name, err)
	}
}

// Kill sends SIGKILL and waits.
func (w *Worker) Kill(t testing.TB) {
	t.Helper()
	_ = w.stop(syscall.SIGKILL)
}

// Restart stops the worker with SIGTERM and starts it again.
func (w *Worker) Restart(t testing.TB) {
	t.Helper()
	w.Stop(t)
	w.Start(t)
}

// stop signals the process and waits for it, killing it after
// stopTimeout. It returns the exit error.
func (w *Worker) stop(sig syscall.Signal) error {
	if w.cmd == nil {
		return errors.New("never started")
	}
	_ = w.cmd.Process.Signal(sig)
	select {
	case <-w.done:
	case <-time.After(stopTimeout):
		_ = w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("still running %v after %v, killed", sig, stopTimeout)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return w.err
}

// wait waits for an exit already signalled, failing t unless it is clean.
func (w *Worker) wait(t testing.TB) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(stopTimeout):
		_ = w.cmd.Process.Kill()
		<-w.done
		t.Fatalf("clustertest: %s still running after %v, killed", w.Name, stopTimeout)
	}
	if w.err != nil {
		t.Fatalf("clustertest: %s exited with %v", w.Name, w.err)
	}
}

// Binary returns the gostream binary: $GOSTREAM_BIN, or one built from
// this module into the test's temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(BinEnv); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "gostream")
	var out bytes.Buffer
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gostream/gostream/cmd/gostream")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("clustertest: building gostream: %v\n%s", err, out.Bytes())
	}
	return bin
}

// workerAddrs picks a free port for each of n workers, the first being
// worker first (from 1): on 127.0.1.i for worker i when that loopback
// alias binds, else on 127.0.0.1. Every listener is held until all are
// chosen, so no address is picked twice, and the ports lie below the
// ephemeral range (freeport), where no other socket is given them before
// the workers bind them.
func workerAddrs(first, n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var addrs []string
	for i := range n {
		ln, err := freeport.Listen(fmt.Sprintf("127.0.1.%d", first+i))
		if err != nil {
			if ln, err = freeport.Listen("127.0.0.1"); err != nil {
				return nil, err
			}
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// FreeAddr returns a loopback address nothing listens on, for tests of
// unreachable members.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addrs, err := workerAddrs(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}
