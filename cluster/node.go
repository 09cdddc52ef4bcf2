package cluster

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config configures a Node. Start it from DefaultConfig and set Name,
// Listen, DataDir and, on a first start, Peers.
type Config struct {
	// Name is the worker's name and Raft server id. Required.
	Name string
	// Listen is the host:port the worker binds, for both Raft and gRPC; it
	// must be the address Peers gives Name. Required.
	Listen string
	// DataDir holds the worker's identity, Raft log and snapshots. Required.
	DataDir string
	// Peers is the bootstrap group, this worker included. Required on a
	// first start unless Join is set; on a restart nil means the peers the
	// data directory was created with, and anything else must equal them.
	Peers []Peer
	// Join names members of a running group (host:port) that a new worker
	// asks to add it (any one that answers is enough; a follower forwards
	// to the leader). Only on a first start, instead of Peers: a restart
	// rejoins with its log, and Join, if set, must reach the same cluster.
	Join []string
	// Logger receives the worker's logs; default slog.Default(). Raft's own
	// logs go to it at Debug, its warnings and errors at Warn and Error.
	Logger *slog.Logger

	// HeartbeatTimeout is how long a follower waits without hearing from the
	// leader before it starts a (pre-)election (a random wait between it
	// and twice it); default 300ms. Lower finds a lost leader sooner, but
	// a leader whose heartbeats stall longer (a stalled machine or
	// network, a process paused) is deposed, and its jobs' drivers
	// restart on the next one.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes before it
	// tries again; default 300ms.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays one without reaching a
	// quorum; default 250ms. At most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one; default 4096.
	SnapshotThreshold uint64
	// ApplyTimeout bounds the wait for a command to be logged; default 5s.
	ApplyTimeout time.Duration
	// DownAfter is how long a member may leave the leader's probes
	// unanswered before the leader holds it down and moves its work to
	// the others; default 1s.
	DownAfter time.Duration
	// HelloTimeout bounds the start-up check of the peers: a peer that is
	// not running refuses at once, a running one answers in milliseconds,
	// so only a hung peer makes a start wait this long; default 5s.
	HelloTimeout time.Duration
	// Driver runs the leader's jobs, one run per running job (see Driver);
	// default: none, so a registered job waits, running no batch.
	Driver Driver
	// Registered lists the jobs and functions this worker's binary
	// registered; default engine.Registered. The leader refuses a job while
	// a member's list differs from its own.
	Registered func() []string
	// ShuffleMemory bounds the bytes of partials the worker holds for the
	// state partitions it owns until their reduce takes them (Inbox);
	// default 256 MiB.
	ShuffleMemory int64
	// StateReplicas is how many workers keep each state partition of a
	// job: 1 (its owner) or 2 (and a standby, which every batch's changes
	// reach before the batch commits). Default 0: 2 when the group has 2
	// or more workers, else 1.
	StateReplicas int
	// MapMemory bounds the memory of each job's map tasks on the worker:
	// half for the records its Kafka readers fetch ahead between batches,
	// half for the partial aggregations; default 64 MiB.
	MapMemory int64
	// Cores is how many cores the worker uses (gostream worker --cores):
	// its map tasks run as many aggregating workers at most (GOMAXPROCS
	// bounds them too). At most MaxCores. Default 0: the machine's cores
	// (GOMAXPROCS at the process's start: its CPUs, a container's CPU
	// limit, or the GOMAXPROCS environment variable) divided among the
	// members that run on this machine (a loopback address, or a host
	// resolving to one of its interface addresses), at least 1 each;
	// recomputed when members join or leave.
	Cores int
	// SetGOMAXPROCS makes the worker set the process's GOMAXPROCS to its
	// cores, each time they change: for a process running one worker, as
	// gostream worker does. Go then no longer updates GOMAXPROCS when a
	// container's CPU limit changes.
	SetGOMAXPROCS bool

	// probeEvery, when set, replaces probeInterval (tests).
	probeEvery time.Duration
}

// DefaultConfig returns a Config with every default set. The timeouts let
// the followers of a leader killed elect another within about 0.6-0.9 s
// on loopback or a LAN (both must notice: the first one to campaign gets
// no pre-vote from the other while that one still hears a leader).
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		SnapshotThreshold:  4096,
		ApplyTimeout:       5 * time.Second,
		DownAfter:          time.Second,
		HelloTimeout:       5 * time.Second,
		ShuffleMemory:      DefaultShuffleMemory,
		MapMemory:          DefaultMapMemory,
	}
}

// Validate checks c. Peers may be nil (a restart takes them from the data
// directory); when set, they must name this worker at its Listen address.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: a worker needs a name (--name)", ErrConfig)
	case c.DataDir == "":
		return fmt.Errorf("%w: a worker needs a data directory (--data)", ErrConfig)
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.ApplyTimeout <= 0 || c.HelloTimeout <= 0 || c.DownAfter <= 0:
		return fmt.Errorf("%w: timeouts must be positive (start from DefaultConfig)", ErrConfig)
	case c.ShuffleMemory <= 0 || c.MapMemory <= 0:
		return fmt.Errorf("%w: ShuffleMemory and MapMemory must be positive (start from DefaultConfig)", ErrConfig)
	case c.StateReplicas < 0 || c.StateReplicas > 2:
		return fmt.Errorf("%w: --state-replicas %d: want 1 (no standby) or 2 (a standby for each state partition)", ErrConfig, c.StateReplicas)
	case c.StateReplicas == 2 && c.Peers != nil && len(c.Peers) < 2:
		return fmt.Errorf("%w: --state-replicas 2 needs 2 or more workers; --peers names one", ErrConfig)
	case c.Peers != nil && c.Join != nil:
		return fmt.Errorf("%w: --peers and --join together: give --peers to bootstrap a new cluster, or --join to add this worker to a running one", ErrConfig)
	case c.Cores < 0 || c.Cores > MaxCores:
		return fmt.Errorf("%w: --cores %d: want a number of cores from 1 to %d, or auto to share this machine's %d cores among the workers that run on it", ErrConfig, c.Cores, MaxCores, machineCores)
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("%w: LeaderLeaseTimeout %v exceeds HeartbeatTimeout %v", ErrConfig, c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: --listen %q: %w", ErrConfig, c.Listen, err)
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: --join %q: %w (want host:port,... naming members of the running cluster)", ErrConfig, a, err)
		}
	}
	if c.Peers != nil {
		i := slices.IndexFunc(c.Peers, func(p Peer) bool { return p.Name == c.Name })
		if i < 0 {
			return fmt.Errorf("%w: --peers %s does not name this worker, %s", ErrConfig, formatPeers(c.Peers), c.Name)
		}
		if c.Peers[i].Addr != c.Listen {
			return fmt.Errorf("%w: --peers gives %s the address %s, but it listens on %s (make them equal: other workers reach it there)", ErrConfig, c.Name, c.Peers[i].Addr, c.Listen)
		}
	}
	return nil
}

// Pre-vote needs the transport's support; raft silently turns it off
// without.
var _ raft.WithPreVote = (*raft.NetworkTransport)(nil)

// Node is a running worker: a member of the Raft group, serving the Control
// service on its listening address. Its goroutines (the mux, the gRPC
// server, the leadership watcher) are stopped and waited for by Close.
type Node struct {
	cfg       Config
	log       *slog.Logger
	peers     []Peer // the bootstrap peers; nil on a worker that joined
	clusterID [clusterIDLen]byte
	joinIndex uint64 // the log index of its AddMember; 0 if it bootstrapped the group
	fsm       *FSM
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	trans     *raft.NetworkTransport
	mux       *mux
	grpc      *grpc.Server
	dialer    *net.Dialer // dials members from the --listen address; see dialerFrom
	clients   *clientPool
	inbox     *Inbox
	jobs      *jobManager
	states    *jobStates
	maps      *mapJobs
	cores     atomic.Int32 // see Cores; set by updateCores
	// coresLocal is how many members run on this machine, as updateCores
	// last counted them (0 with Config.Cores set); used by updateCores
	// alone.
	coresLocal int
	lookupHost hostIP    // resolves members' hosts: net.DefaultResolver.LookupIPAddr
	liveness   *liveness // the leader's view of the members
	drains     drains    // the members the leader drains before their removal
	// planMu is held (read) by a job's driver while it plans an epoch with
	// the members and logs it, and (write) while a member's removal is
	// logged: an epoch is never planned with a member and logged after its
	// removal, which the state machine would refuse.
	planMu    sync.RWMutex
	leaders   leaderLog // the leader changes this member saw
	stop      chan struct{}
	stopCtx   context.Context // canceled by Close
	cancel    context.CancelFunc
	ready     chan struct{} // closed once raft runs; the fields above are set
	sawLeader atomic.Bool   // a leader was seen, or the log holds the group's Init
	failed    chan struct{} // closed by fail
	failOnce  sync.Once
	failErr   error // why the node failed, set before failed closes
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start checks cfg's data directory and peers, then starts the worker:
// it binds cfg.Listen, bootstraps the group (cfg.Peers) or joins a running
// one (cfg.Join) on a first start, or rejoins it with its log, and serves
// until Close. A data directory of another cluster or worker, of a worker
// removed from its group, or a peer started with other --peers, is refused
// before anything in the directory changes; a refused join leaves the
// directory as it was.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	id, err := readIdentity(cfg.DataDir, cfg.Name, cfg.Peers)
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(cfg.DataDir)
	existed := statErr == nil
	g, err := groupOf(ctx, &cfg, id)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, peers: g.peers, clusterID: g.id, joinIndex: g.joinIndex, fsm: NewFSM(), stop: make(chan struct{}), ready: make(chan struct{}), failed: make(chan struct{})}
	n.stopCtx, n.cancel = context.WithCancel(context.Background())
	n.inbox = NewInbox(cfg.ShuffleMemory, 0)
	n.jobs = newJobManager(n, cfg.Driver)
	n.states = newJobStates(cfg.DataDir, n.ClusterID(), log)
	n.maps = newMapJobs(cfg.MapMemory, n.Cores)
	n.lookupHost = net.DefaultResolver.LookupIPAddr
	n.updateCores(ctx)
	n.liveness = newLiveness(cfg.Name, cfg.DownAfter, log)
	if cfg.probeEvery > 0 {
		n.liveness.every = cfg.probeEvery
	}
	n.dialer = dialerFrom(cfg.Listen)
	n.clients = newClientPool(n.dialer)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		n.clients.close()
		return nil, fmt.Errorf("%w: listening on %s: %w (is another worker running there? is the address on this machine?)", ErrConfig, cfg.Listen, err)
	}
	// Serve Hello at once: peers starting at the same time ask each other.
	n.serve(ln)
	if err := n.helloPeers(ctx, n.peers); err != nil {
		n.Close()
		return nil, err
	}
	switch {
	case g.join: // its identity is written once the leader added it
		if err = os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			err = fmt.Errorf("%w: %w (check the path is writable)", ErrDataDir, err)
		}
	case id == nil:
		err = writeIdentity(cfg.DataDir, identity{Format: identityFormat, ClusterID: n.ClusterID(), Name: cfg.Name, Peers: formatPeers(n.peers)})
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startRaft(); err != nil {
		n.Close()
		return nil, err
	}
	switch {
	case g.join:
		err = n.join(ctx)
		if err != nil {
			n.Close()
			if cerr := clearNewDir(cfg.DataDir, existed); cerr != nil {
				err = errors.Join(err, fmt.Errorf("%w: removing what the failed join wrote into %s: %w (delete it before you join again)", ErrDataDir, cfg.DataDir, cerr))
			}
			return nil, err
		}
	case id != nil:
		// A worker removed while it was down learns it from the members.
		err = n.helloPeers(ctx, n.configPeers())
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	close(n.ready)
	if err := n.Err(); err != nil { // a peer's hello came while this one started
		n.Close()
		return nil, err
	}
	n.wg.Go(n.helloUntilFormed)
	n.wg.Go(n.watchMembers)
	n.wg.Go(n.sweepStates)
	return n, nil
}

// helloInterval is how often a worker not yet part of a formed group says
// hello to its peers again.
const helloInterval = 250 * time.Millisecond

// helloUntilFormed says hello to the peers every helloInterval until the
// node is part of a formed group, and fails the node when one disagrees:
// two workers started at the same instant may both miss each other's
// start-up hello.
func (n *Node) helloUntilFormed() {
	t := time.NewTicker(helloInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if n.formed() {
			return
		}
		if err := n.helloPeers(n.stopCtx, n.peers); err != nil {
			n.fail(err)
			return
		}
	}
}

// formed reports whether the node is part of a formed group: it has seen a
// leader, or its log holds the group's Init (committed by a quorum).
func (n *Node) formed() bool {
	if n.sawLeader.Load() {
		return true
	}
	select {
	case <-n.ready:
	default:
		return false
	}
	if addr, _ := n.raft.LeaderWithID(); addr != "" || n.fsm.ClusterID() != "" {
		n.sawLeader.Store(true)
		return true
	}
	return false
}

// fail records err, why the node cannot go on, and closes Failed. The
// node keeps running until its owner calls Close.
func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.log.Error("cluster: the worker must stop", "name", n.cfg.Name, "err", err)
		n.failErr = err
		close(n.failed)
	})
}

// Failed is closed when the node cannot go on (Err says why): its owner
// should Close it and exit with Err. Today that happens only when a peer
// was started with other --peers before this node was part of a formed
// group (see the package doc, "Peers that disagree").
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err is why the node failed, once Failed is closed; nil before.
func (n *Node) Err() error {
	select {
	case <-n.failed:
		return n.failErr
	default:
		return nil
	}
}

// peersDisagree is the error of a peer, name at addr, started with peers
// theirs, which are not this worker's.
func (n *Node) peersDisagree(name, addr string, theirs []Peer) error {
	return fmt.Errorf("%w: %s at %s was started with --peers %s; this worker, %s, with --peers %s (start every worker with the same --peers)",
		ErrPeersDisagree, name, addr, formatPeers(theirs), n.cfg.Name, formatPeers(n.peers))
}

// ClusterID is the group's id, in hex.
func (n *Node) ClusterID() string { return hex.EncodeToString(n.clusterID[:]) }

// FSM is the node's copy of the replicated state.
func (n *Node) FSM() *FSM { return n.fsm }

// Inbox holds the partials map tasks pushed to the state partitions this
// node owns.
func (n *Node) Inbox() *Inbox { return n.inbox }

// StateReplicas is how many workers keep each state partition of a job
// (Config.StateReplicas, its default resolved): the assignment gives each
// partition a standby when it is 2 (PlaceState).
func (n *Node) StateReplicas() int {
	if n.cfg.StateReplicas > 0 {
		return n.cfg.StateReplicas
	}
	if len(n.fsm.Members()) >= 2 || len(n.peers) >= 2 {
		return 2
	}
	return 1
}

// fenceView implements shuffleFence.
func (n *Node) fenceView() (name, clusterID string, term uint64, err error) {
	select {
	case <-n.ready:
	default:
		return "", "", 0, status.Errorf(codes.Unavailable, "%v: %s is starting (retry)", ErrNoLeader, n.cfg.Name)
	}
	return n.cfg.Name, n.ClusterID(), n.raft.CurrentTerm(), nil
}

// job implements shuffleFence with FSM.fenceJob.
func (n *Node) job(name string) (*clusterpb.Job, bool) { return n.fsm.fenceJob(name) }

// jobChanges implements shuffleFence.
func (n *Node) jobChanges() <-chan struct{} { return n.fsm.jobChanges() }

// serve starts the mux and the gRPC server on ln.
func (n *Node) serve(ln net.Listener) {
	n.mux = newMux(ln, n.clusterID, n.log)
	n.grpc = grpc.NewServer(peerServerOptions()...)
	clusterpb.RegisterControlServer(n.grpc, &controlServer{n: n})
	clusterpb.RegisterShuffleServer(n.grpc, &shuffleServer{fence: n, inbox: n.inbox})
	clusterpb.RegisterStatePartitionsServer(n.grpc, newStateServer(n))
	clusterpb.RegisterTaskServer(n.grpc, &taskServer{n: n})
	n.wg.Go(func() {
		_ = n.grpc.Serve(n.mux.grpc) // returns once Stop closes the listener
	})
}

// startRaft opens the stores and starts Raft on the mux. On error the
// caller calls Close, which releases what was started.
func (n *Node) startRaft() error {
	hlog := newHCLogger(n.log, n.stop)
	var err error
	n.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(n.cfg.DataDir, raftDBName),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return fmt.Errorf("%w: opening %s: %w (is another worker using this --data?)", ErrDataDir, filepath.Join(n.cfg.DataDir, raftDBName), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, hlog)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{chanListener: n.mux.raft, clusterID: n.clusterID, conns: n.mux.raftConns, dialer: n.dialer},
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  hlog,
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.Logger = hlog
	existing, err := raft.HasExistingState(n.store, n.store, snaps)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	if !existing && n.peers != nil { // a joining worker waits for the leader to replicate its log
		var servers []raft.Server
		for _, p := range n.peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, n.store, n.store, snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("cluster: bootstrapping %s: %w", formatPeers(n.peers), err)
		}
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.store, n.store, snaps, n.trans); err != nil {
		return fmt.Errorf("cluster: starting Raft: %w", err)
	}
	n.wg.Go(n.watchLeadership)
	n.wg.Go(n.watchLeaders)
	n.wg.Go(n.watchLiveness)
	n.wg.Go(func() {
		n.jobs.loop(n.stop)
		n.jobs.close()
	})
	n.log.Info("cluster: worker started", "name", n.cfg.Name, "listen", n.cfg.Listen, "cluster", n.ClusterID(), "rejoined", existing)
	return nil
}

// watchLeadership logs leadership changes (a lost one with why: whom
// this member still reaches) and, on becoming leader of a group not yet
// initialized, logs Init; while this member knows no leader, it says so
// (checkLeaderKnown).
func (n *Node) watchLeadership() {
	t := time.NewTicker(n.cfg.HeartbeatTimeout)
	defer t.Stop()
	var led uint64 // the term this member leads, 0 while it does not
	var noLeaderSince, warned time.Time
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.checkLeaderKnown(&noLeaderSince, &warned)
		case leader := <-n.raft.LeaderCh():
			n.liveness.probeNow()
			n.jobs.wake()
			if !leader {
				if led != 0 {
					n.lostLeadership(led)
				}
				led = 0
				continue
			}
			led = n.raft.CurrentTerm()
			n.log.Info("cluster: became the leader", "name", n.cfg.Name, "term", led)
			if n.fsm.ClusterID() != "" {
				continue
			}
			members := make([]*clusterpb.Member, len(n.peers))
			for i, p := range n.peers {
				members[i] = &clusterpb.Member{Name: p.Name, Address: p.Addr}
			}
			err := n.apply(&clusterpb.Command{Kind: &clusterpb.Command_Init{Init: &clusterpb.Init{ClusterId: n.ClusterID(), Members: members}}})
			if err != nil {
				n.log.Warn("cluster: logging the cluster's init failed; the next leader retries", "err", err)
			}
		}
	}
}

// apply logs c with the current term and waits until it is applied here.
// It returns raft.ErrNotLeader on a follower, or the FSM's refusal.
func (n *Node) apply(c *clusterpb.Command) error {
	_, err := n.applyIndex(c)
	return err
}

func (n *Node) applyIndex(c *clusterpb.Command) (uint64, error) {
	return applyCommand(n.raft, c, n.cfg.ApplyTimeout)
}

// applyCommand logs c through r with r's current term, waits until it is
// applied, and returns its index, or the FSM's refusal.
func applyCommand(r *raft.Raft, c *clusterpb.Command, timeout time.Duration) (uint64, error) {
	return applyInTerm(r, c, r.CurrentTerm(), timeout)
}

// applyInTerm logs c through r as a command of term, waits until it is
// applied, and returns its index, or the FSM's refusal: ErrStaleTerm when
// it was logged in another term.
func applyInTerm(r *raft.Raft, c *clusterpb.Command, term uint64, timeout time.Duration) (uint64, error) {
	c.Term = term
	data, err := EncodeCommand(c)
	if err != nil {
		return 0, err
	}
	f := r.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return 0, err
	}
	if err, ok := f.Response().(error); ok {
		return 0, err
	}
	return f.Index(), nil
}

// helloPeers asks every other one of peers that answers within
// HelloTimeout which group it belongs to, and returns ErrPeersDisagree
// naming both peer lists when one disagrees, or ErrRemoved when one says
// this worker was removed from the group. Peers that do not answer are
// not running yet: helloUntilFormed asks them again. Each hello goes on a
// connection of its own, closed after it: a peer not listening yet
// refuses it, and the node's connection to that peer, made once it is
// needed, does not wait out the backoff of that refusal.
func (n *Node) helloPeers(ctx context.Context, peers []Peer) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HelloTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	req := &clusterpb.HelloRequest{Header: n.header(0), Peers: peersToProto(n.peers), JoinIndex: n.joinIndex}
	removed := false
	for _, p := range peers {
		if p.Name == n.cfg.Name {
			continue
		}
		wg.Go(func() {
			cc, err := n.clients.dial(p.Addr)
			if err != nil {
				return
			}
			defer cc.Close()
			resp, err := clusterpb.NewControlClient(cc).Hello(ctx, req)
			if err != nil {
				return // not running yet, or not answering: Raft's handshake guards
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case resp.ClusterId != n.ClusterID():
				errs = append(errs, n.peersDisagree(p.Name, p.Addr, peersFromProto(resp.Peers)))
			case resp.Removed:
				removed = true
			}
		})
	}
	wg.Wait()
	if removed {
		return n.markRemoved()
	}
	return errors.Join(errs...)
}

// header is the Header of a request this node sends.
func (n *Node) header(epoch uint64) *clusterpb.Header {
	h := &clusterpb.Header{ClusterId: n.ClusterID(), From: n.cfg.Name, Epoch: epoch}
	if n.raft != nil {
		h.Term = n.raft.CurrentTerm()
	}
	return h
}

// peerAddr is name's address in peers, "" if peers do not name it.
func peerAddr(peers []Peer, name string) string {
	if i := slices.IndexFunc(peers, func(p Peer) bool { return p.Name == name }); i >= 0 {
		return peers[i].Addr
	}
	return ""
}

func peersToProto(peers []Peer) []*clusterpb.Member {
	out := make([]*clusterpb.Member, len(peers))
	for i, p := range peers {
		out[i] = &clusterpb.Member{Name: p.Name, Address: p.Addr}
	}
	return out
}

func peersFromProto(ms []*clusterpb.Member) []Peer {
	out := make([]Peer, len(ms))
	for i, m := range ms {
		out[i] = Peer{Name: m.Name, Addr: m.Address}
	}
	return out
}

// Close stops the node: Raft shuts down (a leader hands nothing over; the
// others elect a new one), the gRPC server stops, the listener closes and
// the log store is closed. It waits for every goroutine the node started.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.cancel()
		var errs []error
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		}
		if n.grpc != nil {
			stopGRPC(n.grpc, 2*time.Second)
		}
		if n.trans != nil {
			errs = append(errs, n.trans.Close())
		}
		if n.mux != nil {
			n.mux.close()
		}
		n.wg.Wait()
		n.maps.close() // after the gRPC server: no task starts now
		errs = append(errs, n.states.close())
		n.clients.close()
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// stopGRPC stops s gracefully, or at once after timeout.
func stopGRPC(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
		<-done
	}
}

// hcLogger adapts raft's hclog output to slog: raft's info and debug lines
// at Debug, its warnings and errors at Warn and Error, except, once
// stopping is closed, errors saying that a connection or the transport is
// closed or was reset: Close ends raft's connection handlers by closing
// them, and peers stopping at the same time reset theirs, so those are at
// Debug.
func newHCLogger(log *slog.Logger, stopping <-chan struct{}) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: slogWriter{log: log, stopping: stopping},
	})
}

// slogWriter receives hclog's formatted lines, "<time> [LEVEL] name: msg".
type slogWriter struct {
	log      *slog.Logger
	stopping <-chan struct{}
}

// closedTexts are how a closed connection (net.ErrClosed), a closed
// transport and a connection its peer reset (the peer stopping too, or
// closing the connection this node was reading when it stopped) read in
// raft's log lines.
var closedTexts = [][]byte{[]byte(net.ErrClosed.Error()), []byte(raft.ErrTransportShutdown.Error()), []byte(syscall.ECONNRESET.Error())}

func (w slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelDebug
	switch {
	case bytes.Contains(line, []byte("[ERROR]")) && !w.closedByStop(line):
		level = slog.LevelError
	case bytes.Contains(line, []byte("[WARN]")):
		level = slog.LevelWarn
	}
	if _, rest, ok := bytes.Cut(line, []byte("] ")); ok {
		line = rest
	}
	w.log.Log(context.Background(), level, string(bytes.TrimSpace(line)))
	return len(p), nil
}

// closedByStop reports whether line says that the node's own connection
// or transport is closed while the node stops.
func (w slogWriter) closedByStop(line []byte) bool {
	select {
	case <-w.stopping:
	default:
		return false
	}
	return slices.ContainsFunc(closedTexts, func(t []byte) bool { return bytes.Contains(line, t) })
}

// errNotLeader reports whether err says this node is not the leader.
func errNotLeader(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress)
}
