package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MasterScheme prefixes a cluster's --master: gostream://host:port,...
const MasterScheme = "gostream://"

// ParseMaster parses a --master of the form gostream://host:port,host:port
// into its addresses. Any member is enough; more are tried in turn.
func ParseMaster(master string) ([]string, error) {
	rest, ok := strings.CutPrefix(master, MasterScheme)
	if !ok {
		return nil, fmt.Errorf("%w: --master %q: want %shost:port,... naming one or more workers", ErrConfig, master, MasterScheme)
	}
	var addrs []string
	for a := range strings.SplitSeq(rest, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: --master %q: %w", ErrConfig, master, err)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: --master %q names no worker: want %shost:port,...", ErrConfig, master, MasterScheme)
	}
	return addrs, nil
}

const (
	// DefaultAttemptTimeout bounds one call to one member.
	DefaultAttemptTimeout = 3 * time.Second
	// RemoveTimeout bounds one removal's call to one member: the leader
	// drains a member holding the only copy of state first, which takes a
	// job's next two batches.
	RemoveTimeout = time.Minute
	// DefaultLeaderWait bounds the wait for a leader when members answer
	// that they have none.
	DefaultLeaderWait = 10 * time.Second
)

// Client calls the Control service of a cluster through any of its
// members: each call tries the addresses in turn until one answers. A
// follower forwards leader-only calls to the leader. Safe for concurrent
// use; Close releases its connections.
type Client struct {
	addrs   []string
	timeout time.Duration
	pool    *clientPool
	hint    string // what to check when no member answers
}

// NewClient returns a client of the members at addrs. It connects lazily:
// an unreachable cluster shows at the first call.
func NewClient(addrs []string) *Client {
	return &Client{addrs: addrs, timeout: DefaultAttemptTimeout, pool: newClientPool(dialerFrom("")), hint: "check --master or $GOSTREAM_MASTER"}
}

// Close closes the client's connections.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// Status returns the cluster's status, from the leader when one is known.
func (c *Client) Status(ctx context.Context) (*clusterpb.StatusResponse, error) {
	return try(ctx, c, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.StatusResponse, error) {
		return cc.Status(ctx, &clusterpb.StatusRequest{Header: &clusterpb.Header{}})
	})
}

// RegisterJob logs job in the cluster's state machine. Registering the same
// job again is a no-op; another job under a registered name is refused.
func (c *Client) RegisterJob(ctx context.Context, job *clusterpb.Job) (*clusterpb.RegisterJobResponse, error) {
	return try(ctx, c, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.RegisterJobResponse, error) {
		return cc.RegisterJob(ctx, &clusterpb.RegisterJobRequest{Header: &clusterpb.Header{}, Job: job})
	})
}

// Jobs returns the status of every job, or of the named one only with its
// last progress reports, from the leader.
func (c *Client) Jobs(ctx context.Context, job string) ([]*clusterpb.JobStatus, error) {
	resp, err := try(ctx, c, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.JobsResponse, error) {
		return cc.Jobs(ctx, &clusterpb.JobsRequest{Header: &clusterpb.Header{}, Job: job})
	})
	return resp.GetJobs(), err
}

// StopJob stops a job: its stop is logged, and StopJob returns once the
// leader stopped its driver. Stopping a job that is not running is a
// no-op. It returns the job's status.
func (c *Client) StopJob(ctx context.Context, job string) (*clusterpb.JobStatus, error) {
	resp, err := try(ctx, c, func(ctx context.Context, cc clusterpb.ControlClient) (*clusterpb.StopJobResponse, error) {
		return cc.StopJob(ctx, &clusterpb.StopJobRequest{Header: &clusterpb.Header{}, Job: job})
	})
	return resp.GetJob(), err
}

// Watch follows a job: fn receives its status, the reports kept of the
// batches after after (nil: the last report kept only), then each report
// to come, until the job is no longer RUNNING (fn receives a
// last status, and Watch returns nil), ctx ends (ctx's error), or fn
// returns an error (that error). When the leader changes, Watch follows
// the new one, asking for the reports after the last one fn received, so
// fn sees a batch's report once unless a batch runs again under a new
// leader. fn is called from Watch's goroutine.
func (c *Client) Watch(ctx context.Context, job string, after *int64, fn func(*clusterpb.WatchEvent) error) error {
	for {
		w, err := try(ctx, c, func(actx context.Context, cc clusterpb.ControlClient) (*watchStream, error) {
			return openWatch(ctx, actx, cc, &clusterpb.WatchRequest{Header: &clusterpb.Header{}, Job: job, AfterBatch: after})
		})
		if err != nil {
			return err
		}
		ev := w.first
		for err == nil {
			if r := ev.GetReport(); r != nil {
				after = &r.BatchId
			}
			if err = fn(ev); err != nil {
				w.cancel()
				return err
			}
			// The stream opens with a status, then the reports; a status
			// after them ends it.
			if st := ev.GetStatus(); st != nil && st.State != clusterpb.JobState_RUNNING && ev != w.first {
				w.cancel()
				return nil
			}
			ev, err = w.stream.Recv()
		}
		w.cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The stream broke (the leader stopped, or lost its leadership):
		// watch through whichever member answers.
	}
}

// watchStream is an open Watch stream and its first event.
type watchStream struct {
	stream grpc.ServerStreamingClient[clusterpb.WatchEvent]
	first  *clusterpb.WatchEvent
	cancel context.CancelFunc
}

// openWatch opens a Watch stream that lives as long as ctx, and waits for
// its first event for as long as actx.
func openWatch(ctx, actx context.Context, cc clusterpb.ControlClient, req *clusterpb.WatchRequest) (*watchStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(actx, cancel)
	stream, err := cc.Watch(sctx, req)
	var first *clusterpb.WatchEvent
	if err == nil {
		first, err = stream.Recv()
	}
	if !stop() {
		// actx ended first and cancelled the stream: Recv's Canceled is
		// ours, the member merely did not answer in time.
		err = status.FromContextError(actx.Err()).Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return &watchStream{stream: stream, first: first, cancel: cancel}, nil
}

// try calls fn on each member in turn until one answers. An answer that is
// an error other than Unavailable or DeadlineExceeded ends the search. While
// a member answers that it has no leader (an election is under way), the
// members are tried again, for up to DefaultLeaderWait.
func try[T any](ctx context.Context, c *Client, fn func(context.Context, clusterpb.ControlClient) (T, error)) (T, error) {
	return tryWithin(ctx, c, c.timeout, fn)
}

// tryWithin is try with attempts of up to timeout each.
func tryWithin[T any](ctx context.Context, c *Client, timeout time.Duration, fn func(context.Context, clusterpb.ControlClient) (T, error)) (T, error) {
	var zero T
	deadline := time.Now().Add(DefaultLeaderWait)
	for {
		var tried []string
		noLeader := false
		for _, addr := range c.addrs {
			actx, cancel := context.WithTimeout(ctx, timeout)
			resp, err := fn(actx, c.pool.control(addr))
			cancel()
			if err == nil {
				return resp, nil
			}
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			st := status.Convert(err)
			switch st.Code() {
			case codes.Unavailable, codes.DeadlineExceeded:
				tried = append(tried, fmt.Sprintf("%s: %s", addr, st.Message()))
				noLeader = noLeader || strings.Contains(st.Message(), ErrNoLeader.Error())
				continue
			}
			return zero, fmt.Errorf("cluster: %s: %s", addr, st.Message())
		}
		if !noLeader {
			return zero, fmt.Errorf("%w at %s (%s) (are the workers running? %s)",
				ErrUnreachable, strings.Join(c.addrs, ", "), strings.Join(tried, "; "), c.hint)
		}
		if time.Now().After(deadline) {
			return zero, fmt.Errorf("%w after %v: %s (is a majority of the workers running?)", ErrNoLeader, DefaultLeaderWait, strings.Join(tried, "; "))
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
