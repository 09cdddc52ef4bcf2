package cluster

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"github.com/hashicorp/raft"
)

// TestMuxRoutes checks that the mux hands Raft connections of its cluster
// to the Raft listener, gRPC connections (with their first byte intact) to
// the gRPC listener, and closes Raft connections of another cluster.
func TestMuxRoutes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := clusterIDOf([]Peer{{"s1", "a:1"}}), clusterIDOf([]Peer{{"s1", "b:1"}})
	m := newMux(ln, ours, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.close()
	addr := raft.ServerAddress(ln.Addr().String())

	// Raft, same cluster: delivered after the preamble.
	c, err := (&streamLayer{clusterID: ours, conns: newConnSet(), dialer: &net.Dialer{}}).Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("raft"))
	got := accept(t, m.raft, 4)
	if got != "raft" {
		t.Errorf("raft listener read %q; want %q", got, "raft")
	}

	// gRPC: delivered with its preface.
	g, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Write([]byte("PRI * HTTP/2.0"))
	if got := accept(t, m.grpc, 14); got != "PRI * HTTP/2.0" {
		t.Errorf("grpc listener read %q", got)
	}

	// Raft, another cluster: closed.
	o, err := (&streamLayer{clusterID: theirs, conns: newConnSet(), dialer: &net.Dialer{}}).Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := o.Read(make([]byte, 1)); err == nil {
		t.Errorf("a connection of another cluster was kept open (read %d bytes)", n)
	}
}

func accept(t *testing.T, l *chanListener, n int) string {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePeers(t *testing.T) {
	peers, err := ParsePeers("s2=127.0.1.2:7077, s1=127.0.1.1:7077")
	if err != nil || formatPeers(peers) != "s1=127.0.1.1:7077,s2=127.0.1.2:7077" {
		t.Errorf("ParsePeers = %v, %v", peers, err)
	}
	for _, bad := range []string{"", "s1", "=h:1", "s1=nohost", "s1=h:1,s1=h:2", "s1=h:1,s2=h:1"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) = nil error", bad)
		}
	}
}

func TestParseMaster(t *testing.T) {
	addrs, err := ParseMaster("gostream://h1:7077,h2:7077")
	if err != nil || strings.Join(addrs, " ") != "h1:7077 h2:7077" {
		t.Errorf("ParseMaster = %v, %v", addrs, err)
	}
	for _, bad := range []string{"local[*]", "gostream://", "gostream://h1", "h1:7077"} {
		if _, err := ParseMaster(bad); err == nil {
			t.Errorf("ParseMaster(%q) = nil error", bad)
		}
	}
}

// TestDialFromListenAddress checks that a worker's Raft and gRPC
// connections to a member leave from its --listen address, 127.0.2.2
// here, so that the member sees them come from there. Its addresses are
// none of 127.0.1.x: the fault tests of cluster/clustertest run their
// workers there and cut them apart with iptables rules matching their
// addresses alone (-s 127.0.1.2 -d 127.0.1.1 -j DROP), which would drop
// this test's connections too while such a test runs on the machine.
func TestDialFromListenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	id := clusterIDOf([]Peer{{"s1", "a:1"}})
	m := newMux(ln, id, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer m.close()
	addr := ln.Addr().String()
	dialer := dialerFrom("127.0.2.2:7000")
	const want = "127.0.2.2"

	c, err := (&streamLayer{clusterID: id, conns: newConnSet(), dialer: dialer}).Dial(raft.ServerAddress(addr), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := m.raft.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got := rc.RemoteAddr().(*net.TCPAddr).IP.String(); got != want {
		t.Errorf("a Raft connection came from %s; want %s", got, want)
	}

	pool := newClientPool(dialer)
	defer pool.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = pool.control(addr).Status(ctx, &clusterpb.StatusRequest{}) // fails: nobody serves gRPC
	}()
	gc, err := m.grpc.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := gc.RemoteAddr().(*net.TCPAddr).IP.String(); got != want {
		t.Errorf("a gRPC connection came from %s; want %s", got, want)
	}
	gc.Close()
	cancel()
	<-done
}

func TestDialerFrom(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.1.2:7000": "127.0.1.2:0",
		"[::1]:7000":     "[::1]:0",
		"0.0.0.0:7000":   "",
		"[::]:7000":      "",
		":7000":          "",
		"localhost:7000": "",
	} {
		got := ""
		if a := dialerFrom(listen).LocalAddr; a != nil {
			got = a.String()
		}
		if got != want {
			t.Errorf("dialerFrom(%q) binds %q; want %q", listen, got, want)
		}
	}
}
