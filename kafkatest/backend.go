package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment variables that select and configure the backend.
const (
	// BackendEnv selects the backend: "process" (also "" and "auto", the
	// default) or "external".
	BackendEnv = "GOSTREAM_KAFKA_BACKEND"
	// BrokersEnv lists the seed brokers of an external cluster as
	// host:port,host:port. Required when BackendEnv is "external".
	BrokersEnv = "GOSTREAM_KAFKA_BROKERS"
)

// backend is a running Kafka cluster that a Cluster talks to.
type backend interface {
	// addrs returns the seed brokers as host:port.
	addrs() []string
	// persistent reports whether data outlives stop, so that the Cluster
	// must delete the topics it created.
	persistent() bool
	// stop stops what the backend started and waits for it. Called once.
	stop() error
}

type backendKind string

const (
	backendProcess  backendKind = "process"
	backendExternal backendKind = "external"
)

// backendFromEnv reads BackendEnv.
func backendFromEnv() (backendKind, error) {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv(BackendEnv))); v {
	case "", "auto", "process":
		return backendProcess, nil
	case "external":
		return backendExternal, nil
	default:
		return "", fmt.Errorf("%w: %s=%q (use process, auto or external)", ErrBackend, BackendEnv, v)
	}
}

// pollInterval is how often readiness conditions are re-checked.
const pollInterval = 250 * time.Millisecond

// waitBrokers polls the cluster at seeds until its metadata lists at least n
// brokers and a controller, ctx ends, or exited returns an error (a process
// that died). exited may be nil.
func waitBrokers(ctx context.Context, seeds []string, n int, exited func() error, logf func(string, ...any)) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("%w: client for %v: %v", ErrNotReady, seeds, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	seen := map[int32]bool{}
	var last error
	for {
		if exited != nil {
			if err := exited(); err != nil {
				return err
			}
		}
		reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := adm.BrokerMetadata(reqCtx)
		cancel()
		if err != nil {
			last = err
		} else {
			for _, b := range m.Brokers {
				if !seen[b.NodeID] {
					seen[b.NodeID] = true
					logf("kafkatest: broker %d up at %s:%d", b.NodeID, b.Host, b.Port)
				}
			}
			if len(m.Brokers) >= n && m.Controller >= 0 {
				return nil
			}
			last = fmt.Errorf("metadata lists %d of %d brokers, controller %d", len(m.Brokers), n, m.Controller)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: cluster at %v did not list %d brokers and a controller: %v (last: %v)",
				ErrNotReady, seeds, n, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}
