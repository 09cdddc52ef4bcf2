package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// memberInfoTimeout bounds the leader's wait for each member's answer when
// it builds a Status.
const memberInfoTimeout = time.Second

// controlServer serves the Control service of a Node.
//
// Requests from a client (Header.From == "") to a follower are forwarded to
// the leader once; a forwarded request that reaches a member that is no
// longer the leader is not forwarded again. Fencing: a request from a
// member carries its term; a leader refuses a forwarded request from a
// newer term (it was deposed), and a member refuses a leader's request from
// an older term.
type controlServer struct {
	clusterpb.UnimplementedControlServer
	n *Node
}

// checkCluster refuses a request while the node is starting or from
// another cluster.
func (s *controlServer) checkCluster(h *clusterpb.Header) error {
	select {
	case <-s.n.ready:
	default:
		return status.Errorf(codes.Unavailable, "%v: %s is starting (retry)", ErrNoLeader, s.n.cfg.Name)
	}
	if id := h.GetClusterId(); id != "" && id != s.n.ClusterID() {
		return status.Errorf(codes.FailedPrecondition, "%v: %s is a member of cluster %s, the request came from cluster %s (member %q)", ErrPeersDisagree, s.n.cfg.Name, s.n.ClusterID(), id, h.GetFrom())
	}
	return nil
}

// fenceForward refuses a request forwarded from a member in a newer term
// than this leader's.
func (s *controlServer) fenceForward(h *clusterpb.Header) error {
	if term := s.n.raft.CurrentTerm(); h.GetTerm() > term {
		return status.Errorf(codes.FailedPrecondition, "%v: %s is leader in term %d, but %s is in term %d already", ErrStaleTerm, s.n.cfg.Name, term, h.GetFrom(), h.GetTerm())
	}
	return nil
}

// fenceLeader refuses a leader's request from an older term than this
// member's.
func (s *controlServer) fenceLeader(h *clusterpb.Header) error {
	if term := s.n.raft.CurrentTerm(); h.GetTerm() < term {
		return status.Errorf(codes.FailedPrecondition, "%v: a request of term %d from %s; %s is in term %d", ErrStaleTerm, h.GetTerm(), h.GetFrom(), s.n.cfg.Name, term)
	}
	return nil
}

// forwardable reports the leader's address when a request with header h
// should be forwarded to it.
func (s *controlServer) forwardable(h *clusterpb.Header) (string, bool) {
	if h.GetFrom() != "" || s.n.raft.State() == raft.Leader {
		return "", false
	}
	addr, _ := s.n.raft.LeaderWithID()
	return string(addr), addr != ""
}

func (s *controlServer) Status(ctx context.Context, req *clusterpb.StatusRequest) (*clusterpb.StatusResponse, error) {
	if err := s.checkCluster(req.Header); err != nil {
		return nil, err
	}
	if addr, ok := s.forwardable(req.Header); ok {
		// Bounded, so that this member's own view still reaches the
		// client when the leader it knows is cut off from it.
		fctx, cancel := context.WithTimeout(ctx, 2*reachTimeout)
		resp, err := s.n.clients.control(addr).Status(fctx, &clusterpb.StatusRequest{Header: s.n.header(0)})
		cancel()
		if err == nil {
			return resp, nil
		}
		s.n.log.Debug("cluster: forwarding Status to the leader failed; answering with this member's view", "leader", addr, "err", err)
	}
	if s.n.raft.State() == raft.Leader {
		if err := s.fenceForward(req.Header); err != nil {
			return nil, err
		}
		// A leader just elected, its state machine not yet at the log
		// before its term, would show jobs missing (a whole cluster
		// started again): it answers once it caught up, or after a
		// bound, with what it has.
		wctx, cancel := context.WithTimeout(ctx, 2*reachTimeout)
		s.n.jobs.awaitLeading(wctx)
		cancel()
	}
	return s.n.status(ctx), nil
}

func (s *controlServer) MemberInfo(ctx context.Context, req *clusterpb.MemberInfoRequest) (*clusterpb.MemberInfoResponse, error) {
	if err := s.checkCluster(req.Header); err != nil {
		return nil, err
	}
	if err := s.fenceLeader(req.Header); err != nil {
		return nil, err
	}
	return s.n.memberInfo(), nil
}

// leaderOnly runs a leader-only call with header h: a follower forwards a
// client's request to the leader once (forward, with the follower's
// header), the leader runs it (local).
func leaderOnly[T any](s *controlServer, ctx context.Context, h *clusterpb.Header, forward func(context.Context, clusterpb.ControlClient, *clusterpb.Header) (T, error), local func() (T, error)) (T, error) {
	var zero T
	if err := s.checkCluster(h); err != nil {
		return zero, err
	}
	if addr, ok := s.forwardable(h); ok {
		resp, err := forward(ctx, s.n.clients.control(addr), s.n.header(0))
		if st := status.Convert(err); st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded {
			return zero, status.Errorf(codes.Unavailable, "%v: %s cannot reach leader %s: %s (retry)", ErrNoLeader, s.n.cfg.Name, addr, st.Message())
		}
		return resp, err
	}
	if s.n.raft.State() != raft.Leader {
		return zero, status.Errorf(codes.Unavailable, "%v: %s is not the leader and knows none (retry)", ErrNoLeader, s.n.cfg.Name)
	}
	if err := s.fenceForward(h); err != nil {
		return zero, err
	}
	return local()
}

func (s *controlServer) RegisterJob(ctx context.Context, req *clusterpb.RegisterJobRequest) (*clusterpb.RegisterJobResponse, error) {
	return leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (*clusterpb.RegisterJobResponse, error) {
		return cc.RegisterJob(ctx, &clusterpb.RegisterJobRequest{Header: h, Job: req.Job})
	}, func() (*clusterpb.RegisterJobResponse, error) {
		if err := s.n.checkJob(ctx, req.Job); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		index, err := s.n.applyIndex(&clusterpb.Command{Kind: &clusterpb.Command_RegisterJob{RegisterJob: &clusterpb.RegisterJob{Job: req.Job}}})
		if err != nil {
			return nil, applyStatus(err)
		}
		resp := &clusterpb.RegisterJobResponse{Term: s.n.raft.CurrentTerm(), Index: index, LastCommitted: -1}
		if j, ok := s.n.fsm.Job(req.Job.GetName()); ok {
			resp.LastCommitted = jobStatus(j).LastCommitted
		}
		return resp, nil
	})
}

func (s *controlServer) Jobs(ctx context.Context, req *clusterpb.JobsRequest) (*clusterpb.JobsResponse, error) {
	return leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (*clusterpb.JobsResponse, error) {
		return cc.Jobs(ctx, &clusterpb.JobsRequest{Header: h, Job: req.Job})
	}, func() (*clusterpb.JobsResponse, error) {
		return s.n.jobs.jobs(req.Job)
	})
}

func (s *controlServer) StopJob(ctx context.Context, req *clusterpb.StopJobRequest) (*clusterpb.StopJobResponse, error) {
	return leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (*clusterpb.StopJobResponse, error) {
		return cc.StopJob(ctx, &clusterpb.StopJobRequest{Header: h, Job: req.Job})
	}, func() (*clusterpb.StopJobResponse, error) {
		return s.n.jobs.stop(ctx, req.Job)
	})
}

func (s *controlServer) Watch(req *clusterpb.WatchRequest, stream grpc.ServerStreamingServer[clusterpb.WatchEvent]) error {
	ctx := stream.Context()
	_, err := leaderOnly(s, ctx, req.Header, func(ctx context.Context, cc clusterpb.ControlClient, h *clusterpb.Header) (struct{}, error) {
		fwd := proto.CloneOf(req)
		fwd.Header = h
		from, err := cc.Watch(ctx, fwd)
		for err == nil {
			var ev *clusterpb.WatchEvent
			if ev, err = from.Recv(); err == nil {
				err = stream.Send(ev)
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return struct{}{}, err
	}, func() (struct{}, error) {
		return struct{}{}, s.n.jobs.watch(ctx, req.Job, req.AfterBatch, stream.Send)
	})
	return err
}

// applyStatus maps an error of Node.apply to a gRPC status.
func applyStatus(err error) error {
	switch {
	case errNotLeader(err):
		return status.Errorf(codes.Unavailable, "%v: %v (retry)", ErrNoLeader, err)
	case errors.Is(err, ErrRefused), errors.Is(err, ErrStaleTerm):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

func (s *controlServer) Hello(ctx context.Context, req *clusterpb.HelloRequest) (*clusterpb.HelloResponse, error) {
	if id := req.Header.GetClusterId(); id != s.n.ClusterID() {
		theirs := peersFromProto(req.Peers)
		if s.n.formed() {
			s.n.log.Warn("cluster: a worker started with other --peers said hello; it refuses to start",
				"from", req.Header.GetFrom(), "their_peers", formatPeers(theirs), "our_peers", formatPeers(s.n.peers))
		} else {
			from := req.Header.GetFrom()
			s.n.fail(s.n.peersDisagree(from, peerAddr(theirs, from), theirs))
		}
	}
	return &clusterpb.HelloResponse{
		Member:    &clusterpb.Member{Name: s.n.cfg.Name, Address: s.n.cfg.Listen},
		ClusterId: s.n.ClusterID(),
		Peers:     peersToProto(s.n.peers),
		Removed:   req.Header.GetClusterId() == s.n.ClusterID() && s.n.fsm.Removed(req.Header.GetFrom(), req.JoinIndex),
	}, nil
}

// memberInfo is this member's own Raft view.
func (n *Node) memberInfo() *clusterpb.MemberInfoResponse {
	lastContact := int64(-1)
	switch t := n.raft.LastContact(); {
	case n.raft.State() == raft.Leader:
		lastContact = 0
	case !t.IsZero():
		lastContact = time.Since(t).Milliseconds()
	}
	return &clusterpb.MemberInfoResponse{
		Member:        &clusterpb.Member{Name: n.cfg.Name, Address: n.cfg.Listen},
		State:         n.raft.State().String(),
		Term:          n.raft.CurrentTerm(),
		LastContactMs: lastContact,
		AppliedIndex:  n.raft.AppliedIndex(),
		ClusterId:     n.ClusterID(),
		Registered:    n.registered(),
		Cores:         int32(n.Cores()),
	}
}

// status builds a Status from this member's view: its Raft
// configuration, each member's own view as it answers within
// reachTimeout, and the leader changes this member saw. On the leader, a
// member its liveness holds down is Down, with how long it has not
// answered. A member that is not the leader answers with its own view:
// whom it reaches from where it is (a minority side reaches too few).
func (n *Node) status(ctx context.Context) *clusterpb.StatusResponse {
	_, leader := n.raft.LeaderWithID()
	resp := &clusterpb.StatusResponse{ClusterId: n.ClusterID(), AnsweredBy: n.cfg.Name, Leader: string(leader), Term: n.raft.CurrentTerm(),
		LeaderChanges: n.leaders.list()}
	isLeader := n.raft.State() == raft.Leader
	infos, errs, servers := n.reach(ctx)
	resp.Members = make([]*clusterpb.MemberStatus, len(servers))
	for i, srv := range servers {
		m := &clusterpb.MemberStatus{Member: &clusterpb.Member{Name: string(srv.ID), Address: string(srv.Address)}, State: "Unreachable", LastContactMs: -1}
		resp.Members[i] = m
		if infos[i] != nil {
			fillMember(m, infos[i])
		} else {
			m.Error = status.Convert(errs[i]).Message()
		}
		if down, since := n.liveness.down(string(srv.ID)); isLeader && down {
			m.State, m.Error = "Down", fmt.Sprintf("no answer to the leader for %v", since.Round(time.Millisecond))
		}
	}
	for _, j := range n.fsm.Jobs() {
		resp.Jobs = append(resp.Jobs, jobStatus(j))
	}
	return resp
}

func fillMember(m *clusterpb.MemberStatus, info *clusterpb.MemberInfoResponse) {
	m.State, m.Term, m.LastContactMs, m.AppliedIndex, m.Cores = info.State, info.Term, info.LastContactMs, info.AppliedIndex, info.Cores
}

// jobStatus summarizes j.
func jobStatus(j *clusterpb.Job) *clusterpb.JobStatus {
	js := &clusterpb.JobStatus{Name: j.Name, ShufflePartitions: j.ShufflePartitions, KeyGroups: j.KeyGroups, Assignment: j.Assignment,
		State: j.State, Error: j.Error, Epochs: j.Epochs}
	js.LastPlanned, js.LastCommitted = batchLogEnds(j.BatchLog)
	return js
}

// How the connections of a clientPool (a worker's to its peers, a
// Client's to the members) connect again and find a hung peer. gRPC's
// defaults suit a client of a distant service: a connection that failed
// waits 1 s before it tries again, then 1.6 times longer after each
// failure up to 120 s, failing every call at once (Unavailable) meanwhile,
// and an attempt may take 20 s; a connection whose peer stopped answering
// (a cut network, a paused process) hangs until TCP gives up, minutes
// later, and once the network heals TCP sends again only after its own
// backoff. A member would so stay unreachable for seconds after a fault
// healed, where a connection is made in milliseconds (loopback, a LAN).
// (peerTCPKeepAlive, the dialer's, finds a connection whose peer vanished
// while nothing was sent on it.)
const (
	// peerBackoffBase and peerBackoffMax bound the wait before a failed
	// connection tries again (with gRPC's default multiplier and jitter).
	peerBackoffBase = 100 * time.Millisecond
	peerBackoffMax  = time.Second
	// peerConnectTimeout bounds an attempt to connect (TCP and the HTTP/2
	// handshake).
	peerConnectTimeout = 2 * time.Second
	// peerKeepaliveTime is how long a connection may stay silent before
	// it pings the peer: gRPC's minimum for a client.
	peerKeepaliveTime = 10 * time.Second
	// peerKeepaliveTimeout is how long a ping, or bytes sent on the
	// connection (TCP_USER_TIMEOUT), may stay unanswered before the
	// connection is closed; the calls made after it make a new one.
	peerKeepaliveTimeout = 2 * time.Second
)

// peerDialOptions are the options of a clientPool's connections:
// shuffleDialOptions, a short capped backoff and keepalive.
func peerDialOptions() []grpc.DialOption {
	return append(shuffleDialOptions(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: peerBackoffBase, Multiplier: backoff.DefaultConfig.Multiplier,
				Jitter: backoff.DefaultConfig.Jitter, MaxDelay: peerBackoffMax},
			MinConnectTimeout: peerConnectTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: peerKeepaliveTime, Timeout: peerKeepaliveTimeout, PermitWithoutStream: true}))
}

// peerServerOptions are the options of a worker's gRPC server:
// shuffleServerOptions, and the keepalive pings of peerDialOptions allowed
// (by default a gRPC server closes the connection of a client that pings
// more often than every 5 minutes).
func peerServerOptions() []grpc.ServerOption {
	return append(shuffleServerOptions(),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: peerKeepaliveTime / 2, PermitWithoutStream: true}))
}

// clientPool keeps one gRPC connection per address, created on first use
// with its dialer and peerDialOptions, and closed by close.
type clientPool struct {
	dialer *net.Dialer
	mu     struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

func newClientPool(dialer *net.Dialer) *clientPool {
	p := &clientPool{dialer: dialer}
	p.mu.conns = map[string]*grpc.ClientConn{}
	return p
}

// control returns a Control client for addr. Calls through it fail with
// codes.Unavailable once the pool is closed.
func (p *clientPool) control(addr string) clusterpb.ControlClient {
	cc, err := p.conn(addr)
	if err != nil {
		return closedControl{err: err}
	}
	return clusterpb.NewControlClient(cc)
}

// conn returns the connection to addr, or ErrClosed once the pool is
// closed.
func (p *clientPool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return nil, ErrClosed
	}
	cc, ok := p.mu.conns[addr]
	if !ok {
		var err error
		if cc, err = p.dial(addr); err != nil {
			return nil, err
		}
		p.mu.conns[addr] = cc
	}
	return cc, nil
}

// dial returns a new connection to addr, with the pool's dialer and
// options, that the caller closes. It connects on first use.
func (p *clientPool) dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append(peerDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return p.dialer.DialContext(ctx, "tcp", addr)
		}))...)
}

func (p *clientPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	for _, cc := range p.mu.conns {
		cc.Close()
	}
	clear(p.mu.conns)
}

// closedControl answers every call with Unavailable.
type closedControl struct{ err error }

func (c closedControl) fail() error {
	if c.err != nil && !errors.Is(c.err, ErrClosed) {
		return status.Error(codes.Unavailable, c.err.Error())
	}
	return status.Error(codes.Unavailable, ErrClosed.Error())
}

func (c closedControl) Status(context.Context, *clusterpb.StatusRequest, ...grpc.CallOption) (*clusterpb.StatusResponse, error) {
	return nil, c.fail()
}

func (c closedControl) RegisterJob(context.Context, *clusterpb.RegisterJobRequest, ...grpc.CallOption) (*clusterpb.RegisterJobResponse, error) {
	return nil, c.fail()
}

func (c closedControl) MemberInfo(context.Context, *clusterpb.MemberInfoRequest, ...grpc.CallOption) (*clusterpb.MemberInfoResponse, error) {
	return nil, c.fail()
}

func (c closedControl) Jobs(context.Context, *clusterpb.JobsRequest, ...grpc.CallOption) (*clusterpb.JobsResponse, error) {
	return nil, c.fail()
}

func (c closedControl) StopJob(context.Context, *clusterpb.StopJobRequest, ...grpc.CallOption) (*clusterpb.StopJobResponse, error) {
	return nil, c.fail()
}

func (c closedControl) Watch(context.Context, *clusterpb.WatchRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[clusterpb.WatchEvent], error) {
	return nil, c.fail()
}

func (c closedControl) Hello(context.Context, *clusterpb.HelloRequest, ...grpc.CallOption) (*clusterpb.HelloResponse, error) {
	return nil, c.fail()
}
