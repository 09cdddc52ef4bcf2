package kafkatest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment variables that select and configure the backend.
const (
	// BackendEnv selects the backend: "auto" (also "", the default),
	// "docker", "process" or "external". auto is docker when a Docker engine
	// answers, else process.
	BackendEnv = "GOSTREAM_KAFKA_BACKEND"
	// BrokersEnv lists the seed brokers of an external cluster as
	// host:port,host:port. Required when BackendEnv is "external".
	BrokersEnv = "GOSTREAM_KAFKA_BROKERS"
	// ImageEnv names the image the docker backend runs. Default
	// [DefaultImage]; scripts/kafka-image.sh builds one locally and prints
	// the line that sets it.
	ImageEnv = "GOSTREAM_KAFKA_IMAGE"
)

// backend is a running Kafka cluster that a Cluster talks to.
type backend interface {
	// addrs returns the seed brokers as host:port.
	addrs() []string
	// persistent reports whether data outlives stop, so that the Cluster
	// must delete the topics it created.
	persistent() bool
	// runTool runs the Kafka command-line tool whose class is main to
	// completion with args, feeding it stdin (nil for none), and returns
	// its combined stdout and stderr. Safe for concurrent use.
	runTool(ctx context.Context, main string, stdin io.Reader, args ...string) ([]byte, error)
	// stop stops what the backend started and waits for it. Called once.
	stop() error
}

// brokerControl is a backend whose brokers can crash and come back:
// the process and docker backends.
type brokerControl interface {
	// killBroker kills broker id (SIGKILL) and waits until it is gone.
	killBroker(id int) error
	// restartBroker starts killed broker id again on its files and ports
	// and waits until every broker lists it.
	restartBroker(ctx context.Context, id int) error
}

type backendKind string

const (
	backendDocker   backendKind = "docker"
	backendProcess  backendKind = "process"
	backendExternal backendKind = "external"
)

// dockerProbeTimeout bounds the check whether a Docker engine answers.
const dockerProbeTimeout = 5 * time.Second

// backendFromEnv reads BackendEnv. For "auto" it calls dockerUp, which
// reports why no Docker engine answers (nil if one does), and picks docker
// or process; logf is told which and why.
func backendFromEnv(ctx context.Context, dockerUp func(context.Context) error, logf func(string, ...any)) (backendKind, error) {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv(BackendEnv))); v {
	case "", "auto":
		ctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
		defer cancel()
		if err := dockerUp(ctx); err != nil {
			logf("kafkatest: %s=auto: no Docker engine answers (%v); using local JVM processes", BackendEnv, err)
			return backendProcess, nil
		}
		logf("kafkatest: %s=auto: a Docker engine answers; using containers", BackendEnv)
		return backendDocker, nil
	case "docker":
		return backendDocker, nil
	case "process":
		return backendProcess, nil
	case "external":
		return backendExternal, nil
	default:
		return "", fmt.Errorf("%w: %s=%q (use auto, docker, process or external)", ErrBackend, BackendEnv, v)
	}
}

// pollInterval is how often readiness conditions are re-checked.
const pollInterval = 250 * time.Millisecond

// waitBrokers polls the cluster at seeds until its metadata lists at least n
// brokers and a controller, ctx ends, or exited returns an error (a broker
// that died). exited may be nil.
func waitBrokers(ctx context.Context, seeds []string, n int, exited func() error, logf func(string, ...any)) error {
	seen := map[int32]bool{}
	var last error
	for {
		if exited != nil {
			if err := exited(); err != nil {
				return err
			}
		}
		last = pollBrokers(ctx, seeds, n, seen, logf)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: cluster at %v did not list %d brokers and a controller: %v (last: %v)",
				ErrNotReady, seeds, n, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// pollBrokers asks every seed broker for metadata, each through a new
// client so that no answer is served from an earlier, stale view, and
// reports nil once every one of them lists n brokers and a controller.
func pollBrokers(ctx context.Context, seeds []string, n int, seen map[int32]bool, logf func(string, ...any)) error {
	for _, seed := range seeds {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.DialTimeout(2*time.Second))
		if err != nil {
			return fmt.Errorf("client for %s: %v", seed, err)
		}
		reqCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := kadm.NewClient(cl).BrokerMetadata(reqCtx)
		cancel()
		cl.Close()
		if err != nil {
			return fmt.Errorf("broker %s: %v", seed, err)
		}
		for _, b := range m.Brokers {
			if !seen[b.NodeID] {
				seen[b.NodeID] = true
				logf("kafkatest: broker %d up at %s:%d", b.NodeID, b.Host, b.Port)
			}
		}
		if len(m.Brokers) < n || m.Controller < 0 {
			return fmt.Errorf("broker %s lists %d of %d brokers, controller %d", seed, len(m.Brokers), n, m.Controller)
		}
	}
	return nil
}
