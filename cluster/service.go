package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
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
		resp, err := s.n.clients.control(addr).Status(ctx, &clusterpb.StatusRequest{Header: s.n.header(0)})
		if err == nil {
			return resp, nil
		}
		s.n.log.Debug("cluster: forwarding Status to the leader failed; answering with this member's view", "leader", addr, "err", err)
	}
	if s.n.raft.State() == raft.Leader {
		if err := s.fenceForward(req.Header); err != nil {
			return nil, err
		}
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

func (s *controlServer) RegisterJob(ctx context.Context, req *clusterpb.RegisterJobRequest) (*clusterpb.RegisterJobResponse, error) {
	if err := s.checkCluster(req.Header); err != nil {
		return nil, err
	}
	if addr, ok := s.forwardable(req.Header); ok {
		resp, err := s.n.clients.control(addr).RegisterJob(ctx, &clusterpb.RegisterJobRequest{Header: s.n.header(0), Job: req.Job})
		if st := status.Convert(err); st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded {
			return nil, status.Errorf(codes.Unavailable, "%v: %s cannot reach leader %s: %s (retry)", ErrNoLeader, s.n.cfg.Name, addr, st.Message())
		}
		return resp, err
	}
	if s.n.raft.State() != raft.Leader {
		return nil, status.Errorf(codes.Unavailable, "%v: %s is not the leader and knows none (retry)", ErrNoLeader, s.n.cfg.Name)
	}
	if err := s.fenceForward(req.Header); err != nil {
		return nil, err
	}
	index, err := s.n.applyIndex(&clusterpb.Command{Kind: &clusterpb.Command_RegisterJob{RegisterJob: &clusterpb.RegisterJob{Job: req.Job}}})
	if err != nil {
		return nil, applyStatus(err)
	}
	return &clusterpb.RegisterJobResponse{Term: s.n.raft.CurrentTerm(), Index: index}, nil
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
	}
}

// status builds a Status from this member's view: its Raft configuration,
// and each member's own view as it answers within memberInfoTimeout (only
// a leader asks: its term fences the request).
func (n *Node) status(ctx context.Context) *clusterpb.StatusResponse {
	_, leader := n.raft.LeaderWithID()
	resp := &clusterpb.StatusResponse{ClusterId: n.ClusterID(), AnsweredBy: n.cfg.Name, Leader: string(leader), Term: n.raft.CurrentTerm()}
	var servers []raft.Server
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		servers = f.Configuration().Servers
	}
	isLeader := n.raft.State() == raft.Leader
	resp.Members = make([]*clusterpb.MemberStatus, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		m := &clusterpb.MemberStatus{Member: &clusterpb.Member{Name: string(srv.ID), Address: string(srv.Address)}, State: "Unknown", LastContactMs: -1}
		resp.Members[i] = m
		switch {
		case string(srv.ID) == n.cfg.Name:
			fillMember(m, n.memberInfo())
		case isLeader:
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, memberInfoTimeout)
				defer cancel()
				info, err := n.clients.control(string(srv.Address)).MemberInfo(ctx, &clusterpb.MemberInfoRequest{Header: n.header(0)})
				if err != nil {
					m.State, m.Error = "Unreachable", status.Convert(err).Message()
					return
				}
				fillMember(m, info)
			})
		}
	}
	wg.Wait()
	for _, j := range n.fsm.Jobs() {
		resp.Jobs = append(resp.Jobs, jobStatus(j))
	}
	return resp
}

func fillMember(m *clusterpb.MemberStatus, info *clusterpb.MemberInfoResponse) {
	m.State, m.Term, m.LastContactMs, m.AppliedIndex = info.State, info.Term, info.LastContactMs, info.AppliedIndex
}

// jobStatus summarizes j.
func jobStatus(j *clusterpb.Job) *clusterpb.JobStatus {
	js := &clusterpb.JobStatus{Name: j.Name, ShufflePartitions: j.ShufflePartitions, KeyGroups: j.KeyGroups, LastPlanned: -1, LastCommitted: -1, Assignment: j.Assignment}
	for _, e := range j.BatchLog {
		if o := e.GetOffsets(); o != nil {
			js.LastPlanned = o.BatchId
		} else {
			js.LastCommitted = e.GetCommit()
		}
	}
	return js
}

// clientPool keeps one gRPC connection per address, created on first use
// and closed by close.
type clientPool struct {
	mu struct {
		sync.Mutex
		conns  map[string]*grpc.ClientConn
		closed bool
	}
}

func newClientPool() *clientPool {
	p := &clientPool{}
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
		cc, err = grpc.NewClient(addr, append(shuffleDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, err
		}
		p.mu.conns[addr] = cc
	}
	return cc, nil
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

func (c closedControl) Hello(context.Context, *clusterpb.HelloRequest, ...grpc.CallOption) (*clusterpb.HelloResponse, error) {
	return nil, c.fail()
}
