package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Membership changes of a running group: a worker started with --join asks
// any member to add it (Join, forwarded to the leader), and `gostream
// cluster remove` asks any member to remove one (RemoveMember). The leader
// logs the state machine's member entry first, then changes Raft's
// configuration (AddVoter, RemoveServer), so a retry after a failure in
// between finds the entry logged and finishes the change.

func (s *controlServer) Join(ctx context.Context, req *clusterpb.JoinRequest) (*clusterpb.JoinResponse, error) {
	return leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (*clusterpb.JoinResponse, error) {
		return cc.Join(ctx, &clusterpb.JoinRequest{Header: h, Member: req.Member, Registered: req.Registered})
	}, func() (*clusterpb.JoinResponse, error) {
		return s.n.addMember(ctx, req.Member, req.Registered)
	})
}

func (s *controlServer) RemoveMember(ctx context.Context, req *clusterpb.RemoveMemberRequest) (*clusterpb.RemoveMemberResponse, error) {
	return leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (*clusterpb.RemoveMemberResponse, error) {
		return cc.RemoveMember(ctx, &clusterpb.RemoveMemberRequest{Header: h, Name: req.Name})
	}, func() (*clusterpb.RemoveMemberResponse, error) {
		return s.n.removeMember(ctx, req.Name)
	})
}

func (c closedControl) Join(context.Context, *clusterpb.JoinRequest, ...grpc.CallOption) (*clusterpb.JoinResponse, error) {
	return nil, c.fail()
}

func (c closedControl) RemoveMember(context.Context, *clusterpb.RemoveMemberRequest, ...grpc.CallOption) (*clusterpb.RemoveMemberResponse, error) {
	return nil, c.fail()
}

// addMember adds m to the group, on the leader: it checks that m's name
// and address are not a member's (the same member again is a retried
// join), that m's binary registered the leader's jobs and functions, and
// that the leader reaches m (Hello), logs AddMember, then makes m a Raft
// voter.
func (n *Node) addMember(ctx context.Context, m *clusterpb.Member, registered []string) (*clusterpb.JoinResponse, error) {
	if m.GetName() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "%v: a joining worker needs a name (--name)", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(m.GetAddress()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v: worker %s joins with the address %q: %v", ErrConfig, m.Name, m.Address, err)
	}
	if err := n.sameRegistered(m.Name, registered); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "worker %s cannot join: %v", m.Name, err)
	}
	servers, err := n.servers()
	if err != nil {
		return nil, applyStatus(err)
	}
	for _, srv := range servers {
		id, addr := string(srv.ID), string(srv.Address)
		if (id == m.Name) != (addr == m.Address) {
			return nil, status.Errorf(codes.AlreadyExists, "%v: worker %s cannot join at %s: Raft member %s is at %s (choose another --name or --listen, or remove %s first with `gostream cluster remove %s`)",
				ErrMemberExists, m.Name, m.Address, id, addr, id, id)
		}
	}
	// A voter the leader cannot reach would count in every quorum from now
	// on: a group of one would stop.
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HelloTimeout)
	resp, err := n.clients.control(m.Address).Hello(ctx, &clusterpb.HelloRequest{Header: n.header(0), Peers: peersToProto(n.peers)}, grpc.WaitForReady(true))
	cancel()
	switch {
	case err != nil:
		return nil, status.Errorf(codes.FailedPrecondition, "worker %s cannot join: the leader %s cannot reach it at %s: %s (is --listen an address the other workers reach?)", m.Name, n.cfg.Name, m.Address, status.Convert(err).Message())
	case resp.GetMember().GetName() != m.Name || resp.ClusterId != n.ClusterID():
		return nil, status.Errorf(codes.FailedPrecondition, "worker %s cannot join at %s: worker %s of cluster %s answers there", m.Name, m.Address, resp.GetMember().GetName(), resp.ClusterId)
	}
	index, err := n.applyIndex(&clusterpb.Command{Kind: &clusterpb.Command_AddMember{AddMember: &clusterpb.AddMember{Member: m}}})
	switch {
	case errors.Is(err, ErrMemberExists):
		return nil, status.Error(codes.AlreadyExists, err.Error())
	case err != nil:
		return nil, applyStatus(err)
	}
	if err := n.raft.AddVoter(raft.ServerID(m.Name), raft.ServerAddress(m.Address), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v: making %s a Raft voter: %v (join again: the member entry is logged, a retry finishes it)", ErrNoLeader, m.Name, err)
	}
	n.log.Info("cluster: member joined", "name", m.Name, "address", m.Address, "index", index)
	return &clusterpb.JoinResponse{ClusterId: n.ClusterID(), Members: n.fsm.Members(), JoinIndex: index}, nil
}

// removeMember removes the member name from the group, on the leader: it
// refuses a name that is not a member, the last member, and a removal
// after which fewer members answer than a quorum of those left; it drains
// a member holding the only current copy of state partitions first
// (drain); it logs RemoveMember, then removes the member from Raft's
// configuration. The
// leader removing itself hands its leadership over first and asks the new
// leader. Removing a removed member again is a no-op.
func (n *Node) removeMember(ctx context.Context, name string) (*clusterpb.RemoveMemberResponse, error) {
	servers, err := n.servers()
	if err != nil {
		return nil, applyStatus(err)
	}
	members := n.fsm.Members()
	inRaft := slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == name })
	inFSM := slices.ContainsFunc(members, func(m *clusterpb.Member) bool { return m.Name == name })
	if !inRaft && !inFSM {
		if n.fsm.Removed(name, 0) {
			return &clusterpb.RemoveMemberResponse{Members: members}, nil
		}
		names := make([]string, len(servers))
		for i, s := range servers {
			names[i] = string(s.ID)
		}
		return nil, status.Errorf(codes.NotFound, "%v: %s is not a member of the cluster; its members are %s (gostream cluster status)", ErrUnknownMember, name, strings.Join(names, ", "))
	}
	var left []raft.Server
	for _, s := range servers {
		if string(s.ID) != name && s.Suffrage == raft.Voter {
			left = append(left, s)
		}
	}
	if len(left) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "%v: %s is the last member of the cluster; a cluster keeps one (stop the worker instead)", ErrLastMember, name)
	}
	if err := n.checkQuorumWithout(ctx, name, left); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	drained, err := n.drain(ctx, name)
	defer drained()
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err // the leadership moved: retry
		}
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if name == n.cfg.Name {
		return n.handOverAndRemove(ctx, name)
	}
	n.planMu.Lock()
	index, err := n.applyIndex(&clusterpb.Command{Kind: &clusterpb.Command_RemoveMember{RemoveMember: &clusterpb.RemoveMember{Name: name}}})
	n.planMu.Unlock()
	if err != nil {
		return nil, applyStatus(err)
	}
	if inRaft {
		if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v: removing %s from Raft's configuration: %v (remove it again: the removal is logged, a retry finishes it)", ErrNoLeader, name, err)
		}
	}
	n.log.Info("cluster: member removed", "name", name, "index", index)
	return &clusterpb.RemoveMemberResponse{Members: n.fsm.Members()}, nil
}

// checkQuorumWithout refuses to remove name when fewer of the voters left
// answer within memberInfoTimeout than a quorum of them (naming why each
// other did not): the group would stop making progress.
func (n *Node) checkQuorumWithout(ctx context.Context, name string, left []raft.Server) error {
	errs := make([]error, len(left))
	var wg sync.WaitGroup
	for i, srv := range left {
		if string(srv.ID) == n.cfg.Name {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, memberInfoTimeout)
			defer cancel()
			// WaitForReady: a connection that failed a moment ago (the
			// member was starting) is dialed again, not failed at once.
			_, errs[i] = n.clients.control(string(srv.Address)).MemberInfo(ctx, &clusterpb.MemberInfoRequest{Header: n.header(0)}, grpc.WaitForReady(true))
		})
	}
	wg.Wait()
	var up, down []string
	for i, srv := range left {
		if errs[i] == nil {
			up = append(up, string(srv.ID))
		} else {
			down = append(down, fmt.Sprintf("%s (%s)", srv.ID, status.Convert(errs[i]).Message()))
		}
	}
	if quorum := len(left)/2 + 1; len(up) < quorum {
		return fmt.Errorf("%w: removing %s leaves %d members of which %d answer (%s; not answering: %s), fewer than a quorum of %d: the cluster would stop (start the members that do not answer first, or remove those instead)",
			ErrQuorum, name, len(left), len(up), strings.Join(up, ", "), strings.Join(down, ", "), quorum)
	}
	return nil
}

// checkNoOnlyCopy refuses to remove name while it holds the only current
// copy of a state partition of one of jobs: it owns the partition, and the
// partition has no standby holding a full copy (none yet since it moved
// there, or none kept with one replica). Removed, its state would be lost.
func checkNoOnlyCopy(jobs []*clusterpb.Job, name string) error {
	held := onlyCopiesOf(jobs, name)
	if len(held) == 0 {
		return nil
	}
	return fmt.Errorf("%w: removing %s would lose state: it holds the only current copy of %s (no standby holds a full copy yet, or none is kept: --state-replicas 1)",
		ErrOnlyCopy, name, strings.Join(held, "; "))
}

// handOverAndRemove hands the leadership over to another member, then asks
// the new leader to remove name, this member.
func (n *Node) handOverAndRemove(ctx context.Context, name string) (*clusterpb.RemoveMemberResponse, error) {
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v: %s is the leader and could not hand its leadership over before its removal: %v (retry)", ErrNoLeader, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	for {
		if addr, id := n.raft.LeaderWithID(); addr != "" && string(id) != n.cfg.Name {
			n.log.Info("cluster: handed the leadership over before its removal", "name", name, "leader", id)
			return n.clients.control(string(addr)).RemoveMember(ctx, &clusterpb.RemoveMemberRequest{Header: &clusterpb.Header{}, Name: name})
		}
		select {
		case <-ctx.Done():
			return nil, status.Errorf(codes.Unavailable, "%v: %s handed its leadership over, but no new leader is known yet (retry)", ErrNoLeader, name)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// servers is the latest Raft configuration's servers.
func (n *Node) servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// memberNames lists the names of ms, comma separated.
func memberNames(ms []*clusterpb.Member) string { return strings.Join(nameList(ms), ", ") }

// nameList is the names of ms, in order.
func nameList(ms []*clusterpb.Member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}

// memberAddr is the address of the member name, "" if it is none.
func (n *Node) memberAddr(name string) string {
	for _, m := range n.fsm.Members() {
		if m.Name == name {
			return m.Address
		}
	}
	return ""
}

// watchMembers fails the node once the state machine says it was removed
// from the group, after it marked its data directory removed, so neither
// this run nor a restart with the directory goes on; until then, it
// updates the worker's cores after each membership change, and has the
// leader's liveness probe the members at once.
func (n *Node) watchMembers() {
	for {
		select {
		case <-n.stop:
			return
		case <-n.fsm.MembersChanged():
		}
		if n.fsm.Removed(n.cfg.Name, n.joinIndex) {
			n.fail(n.markRemoved())
			return
		}
		n.liveness.probeNow()
		n.updateCores(n.stopCtx)
	}
}

// markRemoved records in the data directory's identity that the worker
// was removed, and returns the error saying so.
func (n *Node) markRemoved() error {
	err := removedError(n.cfg.Name, n.ClusterID(), n.cfg.DataDir)
	id, rerr := readIdentity(n.cfg.DataDir, n.cfg.Name, nil)
	if rerr == nil && id != nil && !id.Removed {
		id.Removed = true
		rerr = writeIdentity(n.cfg.DataDir, *id)
	}
	if rerr != nil && !errors.Is(rerr, ErrRemoved) {
		n.log.Error("cluster: marking the data directory removed failed", "dir", n.cfg.DataDir, "err", rerr)
	}
	return err
}

// removedError says that worker name was removed from cluster id, and
// what to do with its data directory dir.
func removedError(name, id, dir string) error {
	return fmt.Errorf("%w: %s was removed from cluster %s (gostream cluster remove %s); its data directory %s must not run again: delete it and start the worker with --join naming a member's address to add it again",
		ErrRemoved, name, id, name, dir)
}

// joinedClusterID asks the members at addrs for their cluster's id.
func joinedClusterID(ctx context.Context, addrs []string, dialer *net.Dialer) (string, error) {
	c := &Client{addrs: addrs, timeout: DefaultAttemptTimeout, pool: newClientPool(dialer), hint: "check --join"}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("joining the cluster at %s: %w", strings.Join(addrs, ","), err)
	}
	if st.ClusterId == "" {
		return "", fmt.Errorf("%w: joining the cluster at %s (--join): %s answers that the cluster has no leader yet (retry once it has one: gostream cluster status)", ErrNoLeader, strings.Join(addrs, ","), st.AnsweredBy)
	}
	return st.ClusterId, nil
}

// RemoveMember removes the member name from the cluster and returns the
// members left. The leader refuses the last member, a name that is not a
// member, and a removal after which fewer members would answer than a
// quorum of those left; it drains a member holding the only current copy
// of state partitions first, within RemoveTimeout.
func (c *Client) RemoveMember(ctx context.Context, name string) ([]*clusterpb.Member, error) {
	resp, err := tryWithin(ctx, c, RemoveTimeout, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.RemoveMemberResponse, error) {
		return cc.RemoveMember(ctx, &clusterpb.RemoveMemberRequest{Header: &clusterpb.Header{}, Name: name})
	})
	return resp.GetMembers(), err
}

// clearNewDir removes what a failed join wrote into dir, which was new
// (existed false) or empty: the directory is left as it was.
func clearNewDir(dir string, existed bool) error {
	if !existed {
		return os.RemoveAll(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// group is what a starting worker knows of its group.
type group struct {
	peers     []Peer // the bootstrap peers; nil for a worker that joined
	id        [clusterIDLen]byte
	joinIndex uint64 // see Node.joinIndex
	join      bool   // a new worker, joining through cfg.Join
}

// groupOf resolves a starting worker's group from its configuration and
// the identity of its data directory (nil: a new directory). A restart
// takes the group from the directory; cfg.Join, if set then, must reach
// the directory's cluster, and is dropped.
func groupOf(ctx context.Context, cfg *Config, id *identity) (group, error) {
	switch {
	case id == nil && cfg.Peers != nil:
		return group{peers: cfg.Peers, id: clusterIDOf(cfg.Peers)}, nil
	case id == nil && cfg.Join != nil:
		hexID, err := joinedClusterID(ctx, cfg.Join, dialerFrom(cfg.Listen))
		if err != nil {
			return group{}, err
		}
		raw, err := parseClusterID(hexID)
		if err != nil {
			return group{}, fmt.Errorf("%w: the cluster at %s answers with %w", ErrProtocol, strings.Join(cfg.Join, ","), err)
		}
		return group{id: raw, join: true}, nil
	case id == nil:
		return group{}, fmt.Errorf("%w: %s is a new data directory: give --peers naming every worker to bootstrap a new cluster, or --join naming a member to join a running one", ErrConfig, cfg.DataDir)
	}
	if cfg.Join != nil {
		// Only a definite other cluster is refused: an unreachable one is
		// the directory's own, rejoined through its log.
		if other, err := joinedClusterID(ctx, cfg.Join, dialerFrom(cfg.Listen)); err == nil && other != id.ClusterID {
			return group{}, fmt.Errorf("%w: %s belongs to cluster %s, but --join %s reaches cluster %s: give a member of the directory's cluster, or a new --data to join that one",
				ErrDataDir, cfg.DataDir, id.ClusterID, strings.Join(cfg.Join, ","), other)
		}
		cfg.Join = nil
	}
	if id.Join != "" {
		raw, err := parseClusterID(id.ClusterID)
		if err != nil {
			return group{}, fmt.Errorf("%w: %s: %w (restore it or use a new directory)", ErrDataDir, filepath.Join(cfg.DataDir, identityName), err)
		}
		return group{id: raw, joinIndex: id.JoinIndex}, nil
	}
	if cfg.Peers == nil {
		peers, err := ParsePeers(id.Peers)
		if err != nil {
			return group{}, fmt.Errorf("%w: %s: %w", ErrDataDir, identityName, err)
		}
		cfg.Peers = peers
		if err := cfg.Validate(); err != nil {
			return group{}, err
		}
	}
	return group{peers: cfg.Peers, id: clusterIDOf(cfg.Peers)}, nil
}

// join asks the members at cfg.Join to add this worker, whose Raft runs
// with an empty log: the leader logs it as a member, makes it a voter and
// replicates its log to it. Then the data directory records the cluster
// it joined.
func (n *Node) join(ctx context.Context) error {
	c := &Client{addrs: n.cfg.Join, timeout: n.cfg.ApplyTimeout + DefaultAttemptTimeout, pool: n.clients, hint: "check --join"}
	resp, err := try(ctx, c, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.JoinResponse, error) {
		return cc.Join(ctx, &clusterpb.JoinRequest{Header: &clusterpb.Header{}, Member: &clusterpb.Member{Name: n.cfg.Name, Address: n.cfg.Listen}, Registered: n.registered()})
	})
	join := strings.Join(n.cfg.Join, ",")
	switch {
	case err != nil:
		return fmt.Errorf("worker %s cannot join the cluster at %s: %w", n.cfg.Name, join, err)
	case resp.ClusterId != n.ClusterID():
		return fmt.Errorf("%w: worker %s asked cluster %s to join, and cluster %s added it (check --join)", ErrProtocol, n.cfg.Name, n.ClusterID(), resp.ClusterId)
	}
	n.joinIndex = resp.JoinIndex
	n.log.Info("cluster: joined the cluster", "name", n.cfg.Name, "cluster", n.ClusterID(), "members", memberNames(resp.Members))
	return writeIdentity(n.cfg.DataDir, identity{Format: identityFormat, ClusterID: n.ClusterID(), Name: n.cfg.Name, Join: join, JoinIndex: resp.JoinIndex})
}

// configPeers is the Raft configuration's servers as peers.
func (n *Node) configPeers() []Peer {
	servers, _ := n.servers()
	peers := make([]Peer, len(servers))
	for i, s := range servers {
		peers[i] = Peer{Name: string(s.ID), Addr: string(s.Address)}
	}
	return peers
}
