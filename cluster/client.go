package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gostream/gostream/proto/clusterpb"
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
}

// NewClient returns a client of the members at addrs. It connects lazily:
// an unreachable cluster shows at the first call.
func NewClient(addrs []string) *Client {
	return &Client{addrs: addrs, timeout: DefaultAttemptTimeout, pool: newClientPool()}
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

// try calls fn on each member in turn until one answers. An answer that is
// an error other than Unavailable or DeadlineExceeded ends the search. While
// a member answers that it has no leader (an election is under way), the
// members are tried again, for up to DefaultLeaderWait.
func try[T any](ctx context.Context, c *Client, fn func(context.Context, clusterpb.ControlClient) (T, error)) (T, error) {
	var zero T
	deadline := time.Now().Add(DefaultLeaderWait)
	for {
		var tried []string
		noLeader := false
		for _, addr := range c.addrs {
			actx, cancel := context.WithTimeout(ctx, c.timeout)
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
			return zero, fmt.Errorf("%w at %s (%s) (are the workers running? check --master or $GOSTREAM_MASTER)",
				ErrUnreachable, strings.Join(c.addrs, ", "), strings.Join(tried, "; "))
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
