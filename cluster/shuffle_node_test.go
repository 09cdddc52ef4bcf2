package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/internal/testseed"
	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestShuffleBetweenNodes runs the shuffle over real TCP between two Nodes
// of a Raft group: a job is registered and assigned (state partition 0 to
// s1, 1 to s2), each node runs a map task that pushes its partials to both
// owners, through the worker's one port, and each owner's Take returns
// exactly what the two tasks sent. A push planned in an older term, or in
// an epoch that passed, is refused. Pushes are made in the current term,
// again when an election came between (in-process Raft on a loaded
// machine).
func TestShuffleBetweenNodes(t *testing.T) {
	g := newNodeGroup(t, 2)
	g.waitStatus(g.addrs(), allReachable)
	leader := g.leader()
	job := testJob("wc")
	if err := leader.apply(registerCmd(job)); err != nil {
		t.Fatal(err)
	}
	for epoch := uint64(1); epoch <= 2; epoch++ {
		a := &clusterpb.Assignment{Epoch: epoch, State: []*clusterpb.StatePartition{
			{FirstKeyGroup: 0, EndKeyGroup: 64, Owner: "s1", Standby: "s2"},
			{FirstKeyGroup: 64, EndKeyGroup: 128, Owner: "s2", Standby: "s1"},
		}}
		if err := leader.apply(assignCmd("wc", a)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		for _, n := range g.nodes {
			if j, ok := n.fsm.Job("wc"); !ok || j.Assignment.GetEpoch() != 2 {
				return fmt.Errorf("%s has not applied epoch 2", n.cfg.Name)
			}
		}
		return nil
	})
	// pushed pushes st on cc to owner in owner's term (which its fence
	// checks), or in the term before with stale; a push refused as stale because an
	// election came between reading the term and the answer (on a loaded
	// machine, any time) is made again in the new term.
	pushed := func(cc grpc.ClientConnInterface, owner *Node, st ShuffleTask, blocks [][]byte, size int, stale bool) error {
		for {
			term := owner.raft.CurrentTerm()
			st.Term = term
			if stale {
				st.Term--
			}
			err := push(context.Background(), cc, st, blocks, size)
			if !strings.Contains(status.Convert(err).Message(), ErrStaleTerm.Error()) || owner.raft.CurrentTerm() == term {
				return err
			}
			t.Logf("%v; again in term %d", err, owner.raft.CurrentTerm())
		}
	}
	rng := rand.New(rand.NewPCG(testseed.Seed(t), 0))
	sent := make([][][]byte, 2) // per partition, task 0's blocks then task 1's
	for task, n := range g.nodes {
		for part, owner := range g.nodes {
			blocks := randomBlocks(rng, 1+rng.IntN(10), 300<<10)
			cc, err := n.clients.conn(owner.cfg.Listen)
			if err != nil {
				t.Fatal(err)
			}
			st := ShuffleTask{Job: "wc", Batch: 7, Partition: int32(part), Task: int32(task), Attempt: 1, Epoch: 2, ClusterID: n.ClusterID(), From: n.cfg.Name}
			if err := pushed(cc, owner, st, blocks, 64<<10, false); err != nil {
				t.Fatal(err)
			}
			sent[part] = append(sent[part], blocks...)

			stale := st
			stale.Attempt = 2
			wantCode(t, pushed(cc, owner, stale, blocks, 0, true), codes.FailedPrecondition, ErrStaleTerm.Error())
			stale.Epoch = 1
			wantCode(t, pushed(cc, owner, stale, blocks, 0, false), codes.FailedPrecondition, ErrStaleEpoch.Error())
		}
	}
	for part, owner := range g.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := owner.Inbox().Take(ctx, "wc", 7, int32(part), 2)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := equalBlocks(p.Blocks, sent[part]); err != nil {
			t.Fatalf("partition %d at %s: %v", part, owner.cfg.Name, err)
		}
		p.Release()
	}
}
