package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A worker's one listening port carries Raft and gRPC. The mux tells them
// apart by a connection's first byte: a Raft connection starts with
// raftPreamble and the cluster id (clusterIDLen bytes), a gRPC connection with
// HTTP/2's client preface, "PRI * HTTP/2.0...". Anything else is closed.
const (
	raftPreamble = 'R'
	grpcPreamble = 'P'
	clusterIDLen = 16 // bytes of the raw cluster id
)

// sniffTimeout bounds the wait for a new connection's first bytes.
const sniffTimeout = 5 * time.Second

// mux accepts connections on one listener and hands them to the Raft
// stream layer or the gRPC server. Its accept loop and one goroutine per
// connection being sniffed are owned by it: close stops and waits for them.
type mux struct {
	ln        net.Listener
	clusterID [clusterIDLen]byte
	log       *slog.Logger
	raft      *chanListener
	grpc      *chanListener
	raftConns *connSet // accepted and dialed Raft connections
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// newMux serves ln until close.
func newMux(ln net.Listener, clusterID [clusterIDLen]byte, log *slog.Logger) *mux {
	m := &mux{ln: ln, clusterID: clusterID, log: log, raft: newChanListener(ln.Addr()), grpc: newChanListener(ln.Addr()), raftConns: newConnSet()}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				m.log.Error("cluster: accepting connections stopped", "addr", m.ln.Addr(), "err", err)
			}
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(c)
		}()
	}
}

// route reads c's preamble and hands c on, or closes it.
func (m *mux) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReaderSize(c, 64)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	switch first[0] {
	case grpcPreamble:
		_ = c.SetReadDeadline(time.Time{})
		m.grpc.deliver(&bufferedConn{Conn: c, r: br})
	case raftPreamble:
		var hdr [1 + clusterIDLen]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.Close()
			return
		}
		if [clusterIDLen]byte(hdr[1:]) != m.clusterID {
			m.log.Warn("cluster: refused a Raft connection from another cluster (was every worker started with the same --peers?)",
				"from", c.RemoteAddr(), "their_cluster", fmt.Sprintf("%x", hdr[1:]), "our_cluster", fmt.Sprintf("%x", m.clusterID))
			c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if tc := m.raftConns.add(&bufferedConn{Conn: c, r: br}); tc != nil {
			m.raft.deliver(tc)
		}
	default:
		c.Close()
	}
}

// close stops accepting, closes both inner listeners and every Raft
// connection, and waits for the mux's goroutines. gRPC connections belong
// to the gRPC server, which closes them when it stops.
func (m *mux) close() {
	m.closeOnce.Do(func() {
		m.ln.Close()
		m.raft.Close()
		m.grpc.Close()
	})
	m.wg.Wait()
	m.raftConns.closeAll()
}

// connSet tracks open connections so that closeAll can close them: raft's
// NetworkTransport closes neither the connections it accepted nor those in
// its pool when it is closed, and the goroutines reading them end only
// when they close.
type connSet struct {
	mu struct {
		sync.Mutex
		conns  map[*trackedConn]struct{}
		closed bool
	}
}

func newConnSet() *connSet {
	s := &connSet{}
	s.mu.conns = map[*trackedConn]struct{}{}
	return s
}

// add tracks c until it is closed. Once the set is closed, add closes c and
// returns nil.
func (s *connSet) add(c net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		c.Close()
		return nil
	}
	tc := &trackedConn{Conn: c, set: s}
	s.mu.conns[tc] = struct{}{}
	return tc
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.mu.closed = true
	conns := s.mu.conns
	s.mu.conns = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// trackedConn is a connection of a connSet.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.mu.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// bufferedConn is a net.Conn whose first bytes were read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to Accept, or closes it once the listener is closed.
func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// streamLayer is the Raft transport's side of the mux: it accepts the
// connections the mux routes to Raft and dials other members with the Raft
// preamble.
type streamLayer struct {
	*chanListener
	clusterID [clusterIDLen]byte
	conns     *connSet    // tracks dialed connections
	dialer    *net.Dialer // dials members; see dialerFrom
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.dialer.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, err
	}
	var hdr [1 + clusterIDLen]byte
	hdr[0] = raftPreamble
	copy(hdr[1:], s.clusterID[:])
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(hdr[:]); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	if tc := s.conns.add(c); tc != nil {
		return tc, nil
	}
	return nil, net.ErrClosed
}

// peerTCPKeepAlive is the TCP keepalive of a worker's connections to its
// peers and a Client's to the members: a connection idle for 2 s is
// probed every second, so one whose peer vanished without a word (a
// machine restarted, a NAT or firewall that forgot the connection) ends
// at the peer's reset, or after 2 probes unanswered, instead of letting a
// call wait on it for Go's default (15 s, then 9 probes 15 s apart).
var peerTCPKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 2}

// dialerFrom returns a dialer with peerTCPKeepAlive whose connections
// leave from listen's host when that host is a specific IP address, so
// that members see a worker's connections come from its own address (and
// firewall rules on that address apply to them); connections leave from
// the address the system picks otherwise (a host name, 0.0.0.0 or ::, or
// "").
func dialerFrom(listen string) *net.Dialer {
	d := &net.Dialer{KeepAliveConfig: peerTCPKeepAlive}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return d
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return d
	}
	d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	return d
}
