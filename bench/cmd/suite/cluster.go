package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/internal/freeport"
	"github.com/gostream/gostream/proto/clusterpb"
)

// clusterWorkers is how many `gostream worker` processes gostream-cluster
// runs, on 127.0.1.1, 127.0.1.2, ...
const clusterWorkers = 3

// leaderTimeout bounds the wait for the workers to elect a leader that
// reaches every one of them.
const leaderTimeout = time.Minute

// workerGroup is the running workers of one gostream-cluster run.
type workerGroup struct {
	workers []*child
	master  string // submit's --master
}

// startWorkers starts clusterWorkers workers with fresh data directories
// under j.dir, their logs beside the run's log (logPrefix-sN.log), and
// waits until they elected a leader that reaches them all. The caller
// stops them with stop.
func (s *suite) startWorkers(ctx context.Context, j job, logPrefix string) (*workerGroup, error) {
	addrs, peers := make([]string, clusterWorkers), make([]string, clusterWorkers)
	for i := range addrs {
		addr, err := freeAddr(fmt.Sprintf("127.0.1.%d", i+1))
		if err != nil {
			return nil, err
		}
		addrs[i], peers[i] = addr, fmt.Sprintf("s%d=%s", i+1, addr)
	}
	g := &workerGroup{master: cluster.MasterScheme + strings.Join(addrs, ",")}
	for i, addr := range addrs {
		name := fmt.Sprintf("s%d", i+1)
		cmd := exec.Command(s.cfg.gostream, "worker", "--name", name, "--listen", addr,
			"--data", filepath.Join(j.dir, "workers", name), "--peers", strings.Join(peers, ","))
		w, err := startProcess(cmd, logPrefix+"-"+name+".log")
		if err != nil {
			g.stop()
			return nil, err
		}
		g.workers = append(g.workers, w)
	}
	if err := g.waitLeader(ctx, addrs); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// waitLeader polls the cluster's status until a leader reaches every
// worker, a worker exits, ctx ends or leaderTimeout passes.
func (g *workerGroup) waitLeader(ctx context.Context, addrs []string) error {
	cl := cluster.NewClient(addrs)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	for {
		st, err := cl.Status(ctx)
		if err == nil {
			err = allReached(st)
		}
		if err == nil {
			return nil
		}
		for _, w := range g.workers {
			select {
			case <-w.exited:
				return fmt.Errorf("worker exited before the cluster had a leader: %v", w.err)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader reaching every worker after %v (logs: %s): %w", leaderTimeout, g.workers[0].logPath, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// allReached tells whether the status has a leader that reaches every
// worker.
func allReached(st *clusterpb.StatusResponse) error {
	leader, members := st.GetLeader(), st.GetMembers()
	if leader == "" {
		return fmt.Errorf("no leader yet")
	}
	if len(members) < clusterWorkers {
		return fmt.Errorf("leader %s knows %d members, want %d", leader, len(members), clusterWorkers)
	}
	for _, m := range members {
		if s := m.GetState(); s == "Unreachable" || s == "Unknown" {
			return fmt.Errorf("%s is %s to leader %s: %s", m.GetMember().GetName(), s, leader, m.GetError())
		}
	}
	return nil
}

// pids returns the workers' process ids.
func (g *workerGroup) pids() []int {
	pids := make([]int, len(g.workers))
	for i, w := range g.workers {
		pids[i] = w.cmd.Process.Pid
	}
	return pids
}

// stop stops every worker with SIGTERM, all at once, and waits for them.
func (g *workerGroup) stop() {
	for _, w := range g.workers {
		syscall.Kill(-w.cmd.Process.Pid, syscall.SIGTERM)
	}
	for _, w := range g.workers {
		w.stop()
	}
}

// freeAddr returns host:port with a port free on host at the moment, below
// the kernel's ephemeral range (freeport), where no other socket is given
// it before the worker binds it.
func freeAddr(host string) (string, error) {
	l, err := freeport.Listen(host)
	if err != nil {
		return "", fmt.Errorf("gostream-cluster needs the loopback address %s (Linux routes 127.0.0.0/8 to loopback): %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProcess starts cmd in its own process group, stdout and stderr to
// logPath, without sampling it (a group's sampler includes it: see
// startChild's with).
func startProcess(cmd *exec.Cmd, logPath string) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	c := &child{cmd: cmd, logPath: logPath, start: time.Now(), exited: make(chan struct{})}
	go func() {
		defer close(c.exited)
		c.err = cmd.Wait()
		logFile.Close()
	}()
	return c, nil
}
