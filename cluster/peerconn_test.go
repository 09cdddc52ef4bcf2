//go:build linux

package cluster

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tcpRepair is Linux's TCP_REPAIR socket option (linux/tcp.h): closed in
// repair mode, a socket goes away without sending anything.
const tcpRepair = 19

// TestPeerConnVanishedPeer: a call waiting on a clientPool connection
// whose peer vanished without a word (no FIN, no reset: a machine
// restarted, a NAT that forgot the connection) fails Unavailable within
// seconds: TCP keepalive probes the idle connection and the peer's reset
// ends it. Without the probes the call waits for gRPC's ping (10 s) or
// Go's default keepalive (15 s). The peer vanishes through TCP_REPAIR,
// which needs CAP_NET_ADMIN (root, as the chaos suite's iptables); skipped
// with -short.
func TestPeerConnVanishedPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs CAP_NET_ADMIN (TCP_REPAIR); skipped with -short")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	srv := grpc.NewServer(peerServerOptions()...)
	clusterpb.RegisterControlServer(srv, blockingControl{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(hookListener{Listener: ln, accepted: accepted})
	}()
	defer func() {
		srv.Stop()
		<-served
	}()
	pool := newClientPool(dialerFrom("127.0.0.1:0"))
	defer pool.close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := pool.control(ln.Addr().String()).Watch(ctx, &clusterpb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	conn := <-accepted
	// The event carried the ACK of the call; once the client acknowledged
	// the event, neither side has anything left to send.
	waitFor(t, 10*time.Second, func() error {
		if n := unacked(t, conn); n > 0 {
			return fmt.Errorf("%d segments of the server not acknowledged", n)
		}
		return nil
	})
	vanish(t, conn)
	errc := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		errc <- err
	}()
	const bound = 8 * time.Second
	select {
	case err := <-errc:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the stream from the vanished peer: %v; want %v", err, codes.Unavailable)
		}
	case <-time.After(bound):
		t.Fatalf("a stream from a peer that vanished still waits %v later", bound)
	}
}

// unacked is the number of segments c sent that its peer has not
// acknowledged.
func unacked(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.Unacked
}

// vanish closes c in TCP repair mode: the peer gets no FIN and no reset,
// and c's port answers the peer's next packet with a reset.
func vanish(t *testing.T, c net.Conn) {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpRepair, 1) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("setting TCP_REPAIR: %v (the test needs CAP_NET_ADMIN: run it as root)", serr)
	}
	c.Close()
}

// hookListener passes each connection it accepts to accepted too.
type hookListener struct {
	net.Listener
	accepted chan<- net.Conn
}

func (l hookListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- c:
		default:
		}
	}
	return c, err
}

// blockingControl's Watch sends one event and waits for its caller to
// go.
type blockingControl struct {
	clusterpb.UnimplementedControlServer
}

func (blockingControl) Watch(_ *clusterpb.WatchRequest, stream grpc.ServerStreamingServer[clusterpb.WatchEvent]) error {
	if err := stream.Send(&clusterpb.WatchEvent{}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}
