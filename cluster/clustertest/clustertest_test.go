package clustertest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/cluster"
	"github.com/gostream/gostream/cluster/clustertest"
	"github.com/gostream/gostream/engine"
	_ "github.com/gostream/gostream/examples/wordcount"
	"github.com/gostream/gostream/proto/clusterpb"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped with -short")
	}
}

// run runs the gostream binary with args (and env added) to completion,
// returning its combined output and exit error.
func run(t *testing.T, c *clustertest.Cluster, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.Command(ctx, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("gostream %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// TestClusterStatus: three workers form a group, and `cluster status` run
// against any one of them (by --master or $GOSTREAM_MASTER) lists the three
// members and exactly one leader.
func TestClusterStatus(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	checkStatus := func(out string) {
		t.Helper()
		leaders := 0
		for _, w := range c.Workers {
			line := ""
			for l := range strings.Lines(out) {
				if strings.HasPrefix(l, w.Name+" ") {
					line = l
				}
			}
			if !strings.Contains(line, w.Addr) {
				t.Errorf("no line for %s at %s", w.Name, w.Addr)
			}
			if strings.Contains(line, "Leader") {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%d leaders in the status", leaders)
		}
		if !strings.Contains(out, "leader: s") {
			t.Error("the status names no leader")
		}
	}
	out, err := run(t, c, nil, "cluster", "status", "--master", "gostream://"+c.Workers[2].Addr)
	if err != nil {
		t.Fatal(err)
	}
	checkStatus(out)
	out, err = run(t, c, []string{"GOSTREAM_MASTER=" + c.Master()}, "cluster", "status")
	if err != nil {
		t.Fatal(err)
	}
	checkStatus(out)
}

// wordcountJob is the registration of the wordcount job, as submit makes
// it.
func wordcountJob(t *testing.T) *clusterpb.Job {
	t.Helper()
	wc, err := engine.LookupJob("wordcount")
	if err != nil {
		t.Fatal(err)
	}
	p, err := wc.Build(engine.NewSession(), engine.JobParams{Brokers: "127.0.0.1:9", Topic: "logs"}).
		WriteStream().OutputMode(engine.Complete).QueryName("wordcount").Plan()
	if err != nil {
		t.Fatal(err)
	}
	job, err := cluster.NewJob("wordcount", p)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// jobIn returns the named job of a status, or nil.
func jobIn(st *clusterpb.StatusResponse, name string) *clusterpb.JobStatus {
	for _, j := range st.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// TestClusterRestartKeepsState: a job registered through a follower (which
// forwards it to the leader) survives the whole cluster stopped with
// SIGTERM and started again from its data directories.
func TestClusterRestartKeepsState(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	st := c.WaitLeader(t)
	var follower *clustertest.Worker
	for _, w := range c.Workers {
		if w.Name != st.Leader {
			follower = w
		}
	}
	fcl := cluster.NewClient([]string{follower.Addr})
	defer fcl.Close()
	if _, err := fcl.RegisterJob(context.Background(), wordcountJob(t)); err != nil {
		t.Fatalf("registering through follower %s: %v", follower.Name, err)
	}
	cl := c.Client(t)
	c.Stop(t)
	for _, w := range c.Workers {
		w.Start(t)
	}
	st = c.WaitLeader(t)
	j := jobIn(st, "wordcount")
	if j == nil || j.ShufflePartitions != 4 || j.KeyGroups != 128 {
		t.Fatalf("after the restart, job %v; want wordcount with 4 shuffle partitions and 128 key groups", j)
	}
	// Registering it again is a no-op; another job under its name is refused.
	if _, err := cl.RegisterJob(context.Background(), wordcountJob(t)); err != nil {
		t.Errorf("registering the same job again: %v", err)
	}
	other := wordcountJob(t)
	other.Options["trigger"] = "1s"
	if _, err := cl.RegisterJob(context.Background(), other); err == nil || !strings.Contains(err.Error(), "running with another plan") {
		t.Errorf("registering another job under the same name: %v; want refused", err)
	}
}

// TestWorkerRejoins: a worker stopped while the cluster goes on rejoins with
// its data and catches up: alone afterwards (no quorum, so it answers from
// its own state), it shows the job registered while it was down.
func TestWorkerRejoins(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	w := c.Workers[0]
	w.Stop(t)
	c.WaitLeader(t)
	if _, err := c.Client(t).RegisterJob(context.Background(), wordcountJob(t)); err != nil {
		t.Fatal(err)
	}
	w.Start(t)
	st := c.WaitLeader(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var leaderIndex, index uint64
		for _, m := range st.Members {
			switch m.Member.GetName() {
			case st.Leader:
				leaderIndex = m.AppliedIndex
			case w.Name:
				index = m.AppliedIndex
			}
		}
		if index > 0 && index >= leaderIndex {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s applied index %d, the leader %d", w.Name, index, leaderIndex)
		}
		time.Sleep(50 * time.Millisecond)
		st = c.WaitLeader(t)
	}
	for _, o := range c.Workers[1:] {
		o.Stop(t)
	}
	out, err := run(t, c, nil, "cluster", "status", "--master", "gostream://"+w.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wordcount") || !strings.Contains(out, "answered by "+w.Name) {
		t.Errorf("the rejoined worker, alone, should answer from its own state, with the job")
	}
}

// hashDir hashes every file's path and content under dir.
func hashDir(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Write([]byte(path + "\x00" + info.Mode().String() + "\x00"))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestForeignDataDirRefused: a worker started on the data directory of
// another cluster, or of another worker, is refused with an error that
// says so, and nothing in the directory changes.
func TestForeignDataDirRefused(t *testing.T) {
	skipShort(t)
	a := clustertest.Start(t, 3)
	a.Stop(t)
	dir := a.Workers[0].DataDir
	before := hashDir(t, dir)
	b := clustertest.New(t, 3) // another cluster: other addresses
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"another cluster's", []string{"--name", "s1", "--listen", b.Workers[0].Addr, "--peers", b.Peers()}, "belongs to cluster"},
		{"another worker's", []string{"--name", "s2", "--listen", a.Workers[1].Addr, "--peers", a.Peers()}, "belongs to worker s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, a, nil, append([]string{"worker", "--data", dir}, tc.args...)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("worker on %s data dir: %v; want refused with %q", tc.name, err, tc.want)
			}
			if after := hashDir(t, dir); after != before {
				t.Error("the refused worker changed the data directory")
			}
		})
	}
}

// TestPeersDisagreeRefused: a worker started with other --peers than the
// running group's is refused with an error naming both.
func TestPeersDisagreeRefused(t *testing.T) {
	skipShort(t)
	c := clustertest.Start(t, 3)
	w := c.Workers[2]
	w.Stop(t)
	peers := c.Peers() + ",s4=" + clustertest.FreeAddr(t)
	out, err := run(t, c, nil, "worker", "--name", w.Name, "--listen", w.Addr, "--data", t.TempDir(), "--peers", peers)
	if err == nil || !strings.Contains(out, "was started with --peers "+c.Peers()) || !strings.Contains(out, peers) {
		t.Errorf("worker with other --peers: %v; want refused naming both peer lists", err)
	}
}

// TestPeersDisagreeAtOnce: two fresh workers whose --peers disagree,
// started at the same instant (each order, several rounds), both exit
// with an error naming both peer lists, whichever missed the other's
// start-up hello.
func TestPeersDisagreeAtOnce(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, 2)
	for round := range 4 {
		short := c.Peers()
		long := short + ",s3=" + clustertest.FreeAddr(t)
		args := [][]string{
			{"worker", "--name", "s1", "--listen", c.Workers[0].Addr, "--data", t.TempDir(), "--peers", short},
			{"worker", "--name", "s2", "--listen", c.Workers[1].Addr, "--data", t.TempDir(), "--peers", long},
		}
		if round%2 == 1 {
			args[0], args[1] = args[1], args[0]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var outs [2]bytes.Buffer
		var cmds [2]*exec.Cmd
		for i := range cmds {
			cmds[i] = c.Command(ctx, args[i]...)
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		}
		for i, cmd := range cmds {
			if err := cmd.Start(); err != nil {
				t.Fatalf("starting gostream %s: %v", strings.Join(args[i], " "), err)
			}
		}
		for i, cmd := range cmds {
			err := cmd.Wait()
			out := outs[i].String()
			if err == nil || !strings.Contains(out, "peers disagree") || !strings.Contains(out, "--peers "+short) || !strings.Contains(out, "--peers "+long) {
				t.Errorf("round %d: gostream %s: %v (%v); want an exit naming both peer lists; output:\n%s", round, strings.Join(args[i], " "), err, context.Cause(ctx), out)
			}
		}
		cancel()
	}
}

// TestUnreachableMaster: `cluster status` against addresses where no worker
// listens fails with an error naming every address tried.
func TestUnreachableMaster(t *testing.T) {
	skipShort(t)
	c := clustertest.New(t, 0)
	a1, a2 := clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	out, err := run(t, c, nil, "cluster", "status", "--master", "gostream://"+a1+","+a2)
	if err == nil || !strings.Contains(out, "no member reachable at "+a1+", "+a2) {
		t.Errorf("status of an unreachable cluster: %v; want an error naming %s and %s", err, a1, a2)
	}
}
