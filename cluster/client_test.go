package cluster

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
)

// watchServer is a Control service whose Watch either hangs (as a
// forward to a leader cut off does) or sends a running job's status, then
// its end.
type watchServer struct {
	clusterpb.UnimplementedControlServer
	hang bool
}

func (s watchServer) Watch(req *clusterpb.WatchRequest, stream grpc.ServerStreamingServer[clusterpb.WatchEvent]) error {
	if s.hang {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	for _, state := range []clusterpb.JobState{clusterpb.JobState_RUNNING, clusterpb.JobState_STOPPED} {
		ev := &clusterpb.WatchEvent{Kind: &clusterpb.WatchEvent_Status{Status: &clusterpb.JobStatus{Name: req.Job, State: state}}}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// serveControl serves srv on a loopback port until the test ends.
func serveControl(t *testing.T, srv clusterpb.ControlServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	clusterpb.RegisterControlServer(g, srv)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

// TestWatchSkipsAHungMember: a member whose Watch sends nothing within the
// attempt timeout (a follower forwarding to a leader that was cut off) is
// passed over for the next one, as an unreachable one is; before, its
// stream, cancelled by the client itself, ended the Watch with "context
// canceled" (submit exited, with the job running on).
func TestWatchSkipsAHungMember(t *testing.T) {
	hung, good := serveControl(t, watchServer{hang: true}), serveControl(t, watchServer{})
	c := NewClient([]string{hung, good})
	defer c.Close()
	c.timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var states []clusterpb.JobState
	err := c.Watch(ctx, "j", nil, func(ev *clusterpb.WatchEvent) error {
		states = append(states, ev.GetStatus().GetState())
		return nil
	})
	if err != nil || len(states) != 2 {
		t.Fatalf("Watch = %v after statuses %v; want the job followed to its end through %s", err, states, good)
	}
}
